//! The PKCS#11 library path in-process on a real SoftHSM2: no orphans on failure, certificate
//! install, several threads at once. pkcs11-tool and OpenSSL judge the results.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use codesign_kit::keys::pkcs11::{KeyRequest, Module, Pin, Pkcs11Uri, TokenRef};
use codesign_kit::keys::{KeyAlgorithm, KeySigner, KeysError, SubjectDn, csr};
use codesign_testkit::{SoftHsm, USER_PIN, openssl_csr_signature_ok};
use secrecy::SecretString;

fn subject() -> SubjectDn {
    "CN=Example Corp,O=Example Corp,C=US".parse().unwrap()
}

/// A token of the process-wide SoftHSM that no other test uses, found through the library.
fn token() -> (&'static SoftHsm, TokenRef, String) {
    let label = SoftHsm::claim_token();
    let hsm = SoftHsm::process_wide();
    let uri: Pkcs11Uri = hsm.uri(&label, "").parse().unwrap();
    let module = Module::resolve(&uri, None).unwrap();
    let token = module.find_token(&uri).unwrap();
    (hsm, token, label)
}

fn pin() -> Pin {
    Pin::new(SecretString::from(USER_PIN))
}

#[test]
fn a_failure_between_keygen_and_csr_leaves_no_object() {
    let (hsm, token, label) = token();
    let session = token.login(&pin()).unwrap();
    let before = session.object_count().unwrap();

    // Simulated failure: the key is made and audited, then the step after it fails.
    let result: Result<(), KeysError> = (|| {
        let pending = session.generate_key_pair(&KeyRequest::new(KeyAlgorithm::P256, "doomed"))?;
        assert_eq!(
            session.object_count()?,
            before + 2,
            "both halves exist while pending"
        );
        assert_eq!(pending.audit().never_extractable, Some(true));
        Err(KeysError::CsrBuild(
            "simulated failure after key generation".into(),
        ))
    })();
    assert!(result.is_err());
    assert_eq!(
        session.object_count().unwrap(),
        before,
        "the pending key was destroyed"
    );
    assert_eq!(hsm.object_count(&label), before, "pkcs11-tool agrees");

    // An explicit discard does the same and reports success. The token's own time is part of
    // the whole call's, which also checks, audits and pairs the halves.
    let start = std::time::Instant::now();
    let pending = session
        .generate_key_pair(&KeyRequest::new(KeyAlgorithm::P384, "discarded"))
        .unwrap();
    let whole_call = start.elapsed();
    assert!(
        pending.generation_time() > std::time::Duration::ZERO
            && pending.generation_time() < whole_call,
        "token time {:?}, whole call {whole_call:?}",
        pending.generation_time()
    );
    pending.discard().unwrap();
    assert_eq!(hsm.object_count(&label), before);

    // A kept key stays.
    let pending = session
        .generate_key_pair(&KeyRequest::new(KeyAlgorithm::P256, "kept"))
        .unwrap();
    let request = csr::build(&*pending, &subject()).unwrap();
    let (key, audit) = pending.keep();
    assert_eq!(audit.local, Some(true));
    assert_eq!(key.label(), "kept");
    assert!(csr::inspect(request.der()).unwrap().is_acceptable());
    assert_eq!(hsm.object_count(&label), before + 2);
}

#[test]
fn duplicate_ids_and_labels_are_refused_before_anything_is_made() {
    let (_hsm, token, _label) = token();
    let session = token.login(&pin()).unwrap();
    let mut request = KeyRequest::new(KeyAlgorithm::P256, "first");
    request.id = Some(vec![0x01, 0x02]);
    let (_key, _) = session.generate_key_pair(&request).unwrap().keep();
    let count = session.object_count().unwrap();

    let mut same_id = KeyRequest::new(KeyAlgorithm::P256, "second");
    same_id.id = Some(vec![0x01, 0x02]);
    let err = session.generate_key_pair(&same_id).err().unwrap();
    assert!(
        err.to_string().contains("CKA_ID 0102 already exists"),
        "{err}"
    );
    let err = session
        .generate_key_pair(&KeyRequest::new(KeyAlgorithm::P256, "first"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("label \"first\""), "{err}");
    assert_eq!(session.object_count().unwrap(), count);
}

#[test]
fn certificates_are_installed_beside_their_key_and_only_there() {
    let (hsm, token, label) = token();
    let session = token.login(&pin()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut request = KeyRequest::new(KeyAlgorithm::Rsa3072, "signer");
    request.id = Some(vec![0xc5, 0x01]);
    let (key, _) = session.generate_key_pair(&request).unwrap().keep();
    let csr_pem = csr::build(&key, &subject()).unwrap().pem();
    let cert = codesign_testkit::openssl_issue_certificate(dir.path(), &csr_pem);

    // A certificate for another key is refused and nothing is stored.
    let other = session
        .generate_key_pair(&KeyRequest::new(KeyAlgorithm::P256, "other"))
        .unwrap();
    let err = session.install_certificate(&other, &cert).unwrap_err();
    assert!(
        err.to_string().contains("its public key is not the key's"),
        "{err}"
    );
    other.discard().unwrap();
    let err = session
        .install_certificate(&key, b"not a certificate")
        .unwrap_err();
    assert!(
        err.to_string().contains("not a readable X.509 certificate"),
        "{err}"
    );
    assert_eq!(session.certificate_for(&key).unwrap(), None);

    session.install_certificate(&key, &cert).unwrap();
    assert_eq!(
        session.certificate_for(&key).unwrap().as_deref(),
        Some(&cert[..])
    );
    let err = session.install_certificate(&key, &cert).unwrap_err();
    assert!(matches!(err, KeysError::DuplicateObject { .. }), "{err}");

    // pkcs11-tool sees the certificate with the key's ID and label.
    let listing = hsm.list_objects(&label);
    let cert_block = listing
        .split("Certificate Object")
        .nth(1)
        .unwrap_or_else(|| panic!("no certificate object in:\n{listing}"));
    assert!(cert_block.contains("label:      signer"), "{cert_block}");
    assert!(cert_block.contains("ID:         c501"), "{cert_block}");
    assert!(
        cert_block.contains("subject:    DN: CN=Example Corp"),
        "{cert_block}"
    );
}

#[test]
fn several_threads_make_keys_at_once_with_one_session_each() {
    let (hsm, token, label) = token();
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let token = token.clone();
            let dir = dir.path();
            scope.spawn(move || {
                let session = token.login(&pin()).unwrap();
                for n in 0..2 {
                    let algorithm = if n == 0 {
                        KeyAlgorithm::P256
                    } else {
                        KeyAlgorithm::P384
                    };
                    let label = format!("w{worker}-k{n}");
                    let pending = session
                        .generate_key_pair(&KeyRequest::new(algorithm, label.clone()))
                        .unwrap();
                    let request = csr::build(&*pending, &subject()).unwrap();
                    let path = dir.join(format!("{label}.csr"));
                    std::fs::write(&path, request.pem()).unwrap();
                    openssl_csr_signature_ok(&path, false).unwrap();
                    let (key, _) = pending.keep();
                    assert_eq!(key.algorithm(), algorithm);
                }
            });
        }
    });
    assert_eq!(hsm.object_count(&label), 16);
}

#[test]
fn keys_are_found_again_by_id_or_label() {
    let (_hsm, token, label) = token();
    let session = token.login(&pin()).unwrap();
    let mut request = KeyRequest::new(KeyAlgorithm::P384, "findme");
    request.id = Some(vec![0xab]);
    let (made, _) = session.generate_key_pair(&request).unwrap().keep();
    let by_id = session.find_key(Some(&[0xab]), None).unwrap();
    let by_label = session.find_key(None, Some("findme")).unwrap();
    assert_eq!(by_id.public_key_bits(), made.public_key_bits());
    assert_eq!(
        by_label.subject_public_key_info(),
        made.subject_public_key_info()
    );
    let err = session.find_key(None, Some("missing")).unwrap_err();
    assert!(
        err.to_string()
            .contains("no private key with label \"missing\""),
        "{err}"
    );
    let uri = made.uri();
    assert_eq!(uri.id.as_deref(), Some(&[0xab][..]));
    assert_eq!(uri.token.as_deref(), Some(label.as_str()));
}

/// Workers share the run's one login: a session opened beside it is logged in without a
/// `C_Login` of its own, and can make keys.
#[test]
fn another_session_shares_the_login() {
    let (_, token, _) = token();
    let login = token.login(&pin()).unwrap();
    let worker = login.open_another().unwrap();
    let key = worker
        .generate_key_pair(&KeyRequest::new(KeyAlgorithm::P256, "beside-login"))
        .unwrap();
    let (key, _) = key.keep();
    assert_eq!(key.label(), "beside-login");
}

/// Key creation is exclusive per label and token across processes: a second holder (here another
/// open file, as another process would have) is refused at once, by name, until the first lets go.
#[test]
fn a_key_label_is_locked_against_a_second_creator() {
    let (_, token, label) = token();
    let session = token.login(&pin()).unwrap();
    let locks = tempfile::tempdir().unwrap();
    let held = session.lock_label(locks.path(), "contested").unwrap();
    let err = session.lock_label(locks.path(), "contested").unwrap_err();
    assert!(matches!(err, KeysError::LabelBusy { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("token \"{label}\"")) && text.contains("\"contested\""),
        "{text}"
    );
    // Another label on the same token is free meanwhile.
    session.lock_label(locks.path(), "uncontested").unwrap();
    drop(held);
    session.lock_label(locks.path(), "contested").unwrap();
    // Each lock took its file away when it ended.
    assert_eq!(std::fs::read_dir(locks.path()).unwrap().count(), 0);
}

/// Lock files are removed when their lock ends, yet two holders never hold one label at once:
/// threads (each with its own open file, as processes have) take and end the same label's lock
/// over and over, and count how many hold it at a time. Without the check that the path still
/// names the file locked, a thread that opened the file just before its holder removed it
/// locks the removed file while another locks the new one.
#[test]
fn removed_lock_files_never_let_two_holders_in() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_, token, _) = token();
    let session = token.login(&pin()).unwrap();
    let locks = tempfile::tempdir().unwrap();
    let holders = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    let taken = AtomicUsize::new(0);
    let sessions: Vec<_> = (0..4).map(|_| session.open_another().unwrap()).collect();
    std::thread::scope(|scope| {
        for worker in sessions {
            let (holders, most, taken, locks) = (&holders, &most, &taken, &locks);
            scope.spawn(move || {
                for _ in 0..3000 {
                    if let Ok(lock) = worker.lock_label(locks.path(), "raced") {
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        taken.fetch_add(1, Ordering::SeqCst);
                        std::thread::yield_now();
                        holders.fetch_sub(1, Ordering::SeqCst);
                        drop(lock);
                    }
                }
            });
        }
    });
    assert!(taken.load(Ordering::SeqCst) > 100, "the lock was taken");
    assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
    assert_eq!(std::fs::read_dir(locks.path()).unwrap().count(), 0);
}

/// The token as a key store: a creation announces the CKA_ID and holds the label; a new key
/// dropped before it is kept leaves nothing; a kept one is found by its ID, installs its
/// certificate once (again: "already on the token") and refuses another.
#[test]
fn a_token_store_makes_finds_and_installs() {
    use codesign_kit::keys::store::{KeyName, KeyStore, TokenStore};
    let (_, token, _) = token();
    let session = token.login(&pin()).unwrap();
    let locks = tempfile::tempdir().unwrap();
    let store = TokenStore::new(&session, locks.path());
    let name = KeyName {
        label: "stored".to_string(),
        id: vec![0x5a, 0x01],
    };
    let before = session.object_count().unwrap();
    assert!(store.find(&name).unwrap().is_none());

    let creation = store.prepare(&name, KeyAlgorithm::P256).unwrap();
    assert_eq!(creation.note(), "5a01");
    // The label is held: a second creation of it now is refused by name.
    let busy = store.prepare(&name, KeyAlgorithm::P256).err().unwrap();
    assert!(matches!(busy, KeysError::LabelBusy { .. }), "{busy}");
    let new = creation.create().unwrap();
    assert!(new.audit().is_some());
    assert_eq!(session.object_count().unwrap(), before + 2);
    drop(new);
    assert_eq!(session.object_count().unwrap(), before, "taken back");

    let kept = store
        .prepare(&name, KeyAlgorithm::P256)
        .unwrap()
        .create()
        .unwrap()
        .keep()
        .unwrap();
    let found = store.find(&name).unwrap().expect("found by its CKA_ID");
    assert!(store.made_by(found.as_ref(), None));
    assert_eq!(
        found.signer().subject_public_key_info(),
        kept.signer().subject_public_key_info()
    );
    assert!(found.audit().unwrap().is_some());
    assert!(
        found.describe()["uri"]
            .as_str()
            .unwrap()
            .contains("id=%5A%01")
    );

    let dir = tempfile::tempdir().unwrap();
    let csr_pem = csr::build(found.signer(), &subject()).unwrap().pem();
    let cert = codesign_testkit::openssl_issue_certificate(dir.path(), &csr_pem);
    let said = found.install(&cert, "").unwrap();
    assert!(said.contains("with CKA_ID 5a01"), "{said}");
    assert_eq!(found.install(&cert, "").unwrap(), "already on the token");
    let other_csr = csr::build(kept.signer(), &"CN=Other Corp,C=US".parse().unwrap())
        .unwrap()
        .pem();
    let other = codesign_testkit::openssl_issue_certificate(dir.path(), &other_csr);
    let err = found.install(&other, "").unwrap_err();
    assert!(err.to_string().contains("another certificate"), "{err}");
}

/// What a key generation killed between its two halves leaves (a public key under the job's
/// CKA_ID, no private key) is destroyed when the job's generation is resumed; a whole pair under
/// its ID is left alone.
#[test]
fn half_a_key_pair_left_by_a_killed_generation_is_discarded() {
    let (hsm, token, label) = token();
    let session = token.login(&pin()).unwrap();
    let mut whole = KeyRequest::new(KeyAlgorithm::P256, "whole");
    whole.id = Some(vec![0xd1, 0x01]);
    session.generate_key_pair(&whole).unwrap().keep();
    let mut half = KeyRequest::new(KeyAlgorithm::P256, "half");
    half.id = Some(vec![0xd1, 0x02]);
    session.generate_key_pair(&half).unwrap().keep();
    // The private half of "half" never reached the token.
    hsm.pkcs11_tool(
        &label,
        &["--delete-object", "--type", "privkey", "--id", "d102"],
    );
    let listing = hsm.list_objects(&label);
    assert_eq!(listing.matches("ID:         d102").count(), 1, "{listing}");

    assert_eq!(session.discard_incomplete_pair(&[0xd1, 0x01]).unwrap(), 0);
    assert_eq!(session.discard_incomplete_pair(&[0xd1, 0x02]).unwrap(), 1);
    let listing = hsm.list_objects(&label);
    assert_eq!(listing.matches("ID:         d102").count(), 0, "{listing}");
    assert_eq!(listing.matches("ID:         d101").count(), 2, "{listing}");
    // The job's key can now be made again under its ID and label.
    session.generate_key_pair(&half).unwrap().keep();
}
