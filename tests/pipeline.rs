//! The provisioning pipeline in-process: SoftHSM tokens, the emulator over loopback HTTP, the
//! journal, with pkcs11-tool and OpenSSL as judges.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certcentral_emulator::{
    ApprovalMode, Emulator, EmulatorConfig, Fault, FaultRule, Route, Settings,
};
use codesign_kit::keys::pkcs11::{Module, Pin, Pkcs11Uri};
use codesign_kit::keys::{KeyAlgorithm, KeySigner, SoftwareKey, spki};
use codesign_kit::order::{ApiKey, BaseUrl, Client, ClientConfig, RequestDecision, RetryPolicy};
use codesign_kit::pipeline::{
    JobState, Journal, Observer, Plan, Provisioner, ProvisionerConfig, Step,
};
use codesign_testkit::{SoftHsm, USER_PIN, openssl};
use secrecy::SecretString;

const KEY: &str = "pipeline-test-key-3b9f";

const BODY: &str = r#"{
  "certificate": { "signature_hash": "sha256" },
  "cs_provisioning_method": "email",
  "order_validity": { "years": 1 },
  "skip_approval": true,
  "organization": { "id": 123456 }
}"#;

struct Quiet;
impl Observer for Quiet {
    fn step(&self, _: &str, _: Step, _: &str) {}
    fn finished(&self, _: &codesign_kit::pipeline::JobOutcome) {}
}

fn emulator(settings: Settings) -> Emulator {
    let mut config = EmulatorConfig::new(KEY);
    config.settings = settings;
    Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn client(emu: &Emulator) -> Client {
    let mut config = ClientConfig::new(
        BaseUrl::parse(&emu.api_base()).unwrap(),
        ApiKey::new(SecretString::from(KEY)).unwrap(),
    );
    config.retry = RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(2),
    };
    Client::new(config).unwrap()
}

fn provisioner(
    dir: &Path,
    emu: &Emulator,
    workers: usize,
    signer: Option<Arc<SoftwareKey>>,
) -> Provisioner {
    let journal = Journal::open(&dir.join("journal.sqlite")).unwrap();
    Provisioner::new(
        journal,
        client(emu),
        ProvisionerConfig {
            workers,
            wait: Duration::from_secs(10),
            record_signer: signer,
            ..ProvisionerConfig::new(dir.join("records"))
        },
    )
    .unwrap()
}

fn write_plan(dir: &Path, keys: &str) -> Plan {
    std::fs::write(dir.join("body.json"), BODY).unwrap();
    let text = format!("[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n{keys}");
    std::fs::write(dir.join("plan.toml"), &text).unwrap();
    Plan::load(&dir.join("plan.toml")).unwrap()
}

#[test]
fn twenty_jobs_on_softhsm_with_two_workers_end_with_twenty_certificates() {
    let label = SoftHsm::claim_token();
    let hsm = SoftHsm::process_wide();
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, USER_PIN).unwrap();
    let token_uri = format!(
        "pkcs11:token={label}?module-path={}&pin-source=file:{}",
        hsm.module().display(),
        pin_file.display()
    );
    let emu = emulator(Settings {
        polls_until_issued: 1,
        rate_limits: false,
        ..Settings::default()
    });
    let plan = write_plan(
        dir.path(),
        &format!(
            "[[keys]]\ncount = 18\nalgorithm = \"p256\"\ntoken = \"{token_uri}\"\nlabel = \"cs-{{n:03}}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n\n\
             [[keys]]\ncount = 2\nstart = 19\nalgorithm = \"rsa3072\"\ntoken = \"{token_uri}\"\nlabel = \"cs-{{n:03}}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n"
        ),
    );
    assert_eq!(plan.len(), 20);
    let provisioner = provisioner(dir.path(), &emu, 2, None);
    let summary = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!(summary.done, 20, "{summary:?}");
    assert_eq!(provisioner.journal().counts().unwrap(), (20, 0, 0, 0));
    assert_eq!(emu.order_count(), 20);
    assert_eq!(
        emu.requests_seen(Route::OrdersByAlternativeId),
        0,
        "orders no run had sent before went out without a lookup"
    );

    // Every certificate is on the token with its key's CKA_ID, and carries the key.
    let uri: Pkcs11Uri = token_uri.parse().unwrap();
    let token = Module::resolve(&uri, None)
        .unwrap()
        .find_token(&uri)
        .unwrap();
    let session = token
        .login(&Pin::new(SecretString::from(USER_PIN)))
        .unwrap();
    for n in 1..=20 {
        let job = format!("cs-{n:03}");
        let key = session.find_key(None, Some(&job)).unwrap();
        let row = provisioner.journal().load(&job).unwrap().unwrap();
        assert_eq!(
            key.id(),
            row.key_id.as_slice(),
            "{job}: the journal points to the key"
        );
        let cert = session
            .certificate_for(&key)
            .unwrap()
            .unwrap_or_else(|| panic!("{job}: no certificate"));
        let facts = spki::certificate_facts(&cert).unwrap();
        assert_eq!(
            facts.subject_public_key_info,
            key.subject_public_key_info(),
            "{job}"
        );
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("records/{job}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["certificate"]["sha256"], facts.sha256);
        assert_eq!(record["key"]["audit"]["never_extractable"], true);
        assert_eq!(record["key"]["token"]["model"], "SoftHSM v2");
        let csr_der =
            codesign_kit::keys::csr::to_der(row.csr_pem.as_deref().unwrap().as_bytes()).unwrap();
        assert_eq!(record["csr_sha256"], spki::sha256_hex(&csr_der));
        assert_eq!(record["order"]["order_id"], row.order_id.unwrap());
        let steps: Vec<&str> = record["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps.first(), Some(&"planned"));
        assert!(steps.contains(&"certificate_installed"), "{steps:?}");
        // The chain beside the record, named by it.
        let chain_file = record["chain_file"].as_str().unwrap();
        assert_eq!(
            std::fs::read_to_string(chain_file).unwrap(),
            row.chain_pem.clone().unwrap()
        );
        // Times in RFC 3339, as people and tools read them.
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        for at in [
            &record["written_at"],
            &record["steps"][0]["at"],
            &record["certificate"]["not_after"],
        ] {
            let text = at.as_str().unwrap_or_else(|| panic!("not a string: {at}"));
            time::OffsetDateTime::parse(text, rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }
    // pkcs11-tool agrees: 20 certificates, each with the ID of a private key.
    let listing = hsm.list_objects(&label);
    let certs = codesign_testkit::count_with_id(&listing, "Certificate Object");
    let keys = codesign_testkit::count_with_id(&listing, "Private Key Object");
    assert_eq!((certs, keys), (20, 20), "{listing}");
    // The intermediate of the chain, once, as an authority certificate without a key's ID.
    assert_eq!(
        codesign_testkit::authority_certificates(&listing),
        ["CertCentral Emulator Code Signing CA"],
        "{listing}"
    );
    let ids = |class: &str| -> Vec<String> {
        let mut ids: Vec<String> = listing
            .split(class)
            .skip(1)
            .filter_map(|block| {
                block
                    .lines()
                    .skip(1)
                    .take_while(|l| l.starts_with(' '))
                    .find_map(|l| l.trim().strip_prefix("ID:").map(|id| id.trim().to_string()))
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("Certificate Object"), ids("Private Key Object"));

    // A second run has nothing left to do and orders nothing.
    let again = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!(again.done, 20);
    assert_eq!(emu.order_count(), 20);
}

#[test]
fn pending_orders_are_left_pending_and_finished_by_a_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(Settings {
        approval: ApprovalMode::OneStep,
        polls_until_issued: 0,
        ..Settings::default()
    });
    let plan = write_plan(
        dir.path(),
        "[[keys]]\ncount = 3\nalgorithm = \"p384\"\ndirectory = \"keys\"\nlabel = \"sw-{n}\"\nsubject = \"CN=Example Corp,C=US\"\n",
    );
    let provisioner = Provisioner::new(
        Journal::open(&dir.path().join("journal.sqlite")).unwrap(),
        client(&emu),
        ProvisionerConfig {
            workers: 2,
            ..ProvisionerConfig::new(dir.path().join("records"))
        },
    )
    .unwrap();
    let summary = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!((summary.done, summary.pending.len()), (0, 3), "{summary:?}");
    assert!(
        summary
            .pending
            .iter()
            .all(|o| o.step == Step::OrderSubmitted && o.state == JobState::Pending)
    );
    assert!(
        summary.pending[0]
            .note
            .as_deref()
            .unwrap()
            .contains("needs_approval")
    );

    // Someone approves the requests in CertCentral; the next run picks the orders up.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let c = client(&emu);
    for n in 1..=3 {
        let row = provisioner
            .journal()
            .load(&format!("sw-{n}"))
            .unwrap()
            .unwrap();
        let info = runtime
            .block_on(c.order_info(codesign_kit::order::OrderId(row.order_id.unwrap())))
            .unwrap();
        runtime
            .block_on(c.update_request_status(info.requests[0].id, RequestDecision::Approve, "ok"))
            .unwrap();
    }
    let summary = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!(summary.done, 3, "{summary:?}");
    assert_eq!(emu.order_count(), 3);
    for n in 1..=3 {
        let key = dir.path().join(format!("keys/sw-{n}.pem"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(dir.path().join(format!("keys/sw-{n}.chain.pem")).exists());
    }
}

#[test]
fn injected_faults_never_duplicate_an_order_and_records_are_signed() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(Settings {
        polls_until_issued: 1,
        ..Settings::default()
    });
    for rule in [
        FaultRule {
            route: Route::CreateOrder,
            fault: Fault::Status { status: 503 },
            count: 3,
        },
        FaultRule {
            route: Route::CreateOrder,
            fault: Fault::DropAfterCommit,
            count: 2,
        },
        FaultRule {
            route: Route::CreateOrder,
            fault: Fault::RateLimited {
                retry_after: Some(1),
            },
            count: 1,
        },
        FaultRule {
            route: Route::CreateOrder,
            fault: Fault::MalformedJson,
            count: 1,
        },
        FaultRule {
            route: Route::OrderInfo,
            fault: Fault::Status { status: 500 },
            count: 2,
        },
        FaultRule {
            route: Route::OrdersByAlternativeId,
            fault: Fault::RateLimited { retry_after: None },
            count: 2,
        },
        FaultRule {
            route: Route::Download,
            fault: Fault::DropAfterCommit,
            count: 1,
        },
    ] {
        emu.add_fault(rule);
    }
    let plan = write_plan(
        dir.path(),
        "[[keys]]\ncount = 6\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"f-{n}\"\nsubject = \"CN=Example Corp,C=US\"\n",
    );
    let signer = Arc::new(SoftwareKey::generate(KeyAlgorithm::P256).unwrap());
    let provisioner = provisioner(dir.path(), &emu, 2, Some(signer.clone()));
    let summary = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!(summary.done, 6, "{summary:?}");
    assert_eq!(emu.order_count(), 6, "no duplicate order");
    for n in 1..=6 {
        let row = provisioner
            .journal()
            .load(&format!("f-{n}"))
            .unwrap()
            .unwrap();
        assert_eq!(emu.orders_with_alternative_id(&row.alternative_order_id), 1);
    }
    // The detached record signature verifies with OpenSSL.
    let public = dir.path().join("signer.pub.der");
    std::fs::write(&public, signer.subject_public_key_info()).unwrap();
    let record = dir.path().join("records/f-1.json");
    let signature = dir.path().join("records/f-1.json.sig");
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p(&public),
        "-keyform",
        "DER",
        "-signature",
        &p(&signature),
        &p(&record),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "{out:?}"
    );
    // A changed record does not.
    let mut text = std::fs::read_to_string(&record).unwrap();
    text.push(' ');
    std::fs::write(&record, text).unwrap();
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p(&public),
        "-keyform",
        "DER",
        "-signature",
        &p(&signature),
        &p(&record),
    ]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
}

/// A batch against the emulator with rate limits on (windows shrunk to meet them in seconds: 20
/// per second, 60 per 3 seconds) and the client keeping the same windows: no request is answered
/// 429 and no job fails. The same batch with the client's limits off meets 429s, so the windows
/// really bite.
#[test]
fn a_batch_within_the_rate_limits_meets_no_429() {
    use certcentral_emulator::RateWindow as ServerWindow;
    use codesign_kit::order::{RateLimits, RateWindow};
    let run = |client_limits: RateLimits| {
        let dir = tempfile::tempdir().unwrap();
        let emu = emulator(Settings {
            polls_until_issued: 1,
            rate_limits: true,
            rate_windows: vec![
                ServerWindow {
                    requests: 20,
                    per_ms: 1_000,
                },
                ServerWindow {
                    requests: 60,
                    per_ms: 3_000,
                },
            ],
            latency: Duration::from_millis(5),
            latency_jitter: Duration::from_millis(10),
            ..Settings::default()
        });
        let plan = write_plan(
            dir.path(),
            "[[keys]]\ncount = 24\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"sw-{n:03}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
        );
        let mut config = ClientConfig::new(
            BaseUrl::parse(&emu.api_base()).unwrap(),
            ApiKey::new(SecretString::from(KEY)).unwrap(),
        );
        config.rate_limits = client_limits;
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(2),
        };
        let provisioner = Provisioner::new(
            Journal::open(&dir.path().join("journal.sqlite")).unwrap(),
            Client::new(config).unwrap(),
            ProvisionerConfig {
                workers: 4,
                wait: Duration::from_secs(30),
                ..ProvisionerConfig::new(dir.path().join("records"))
            },
        )
        .unwrap();
        let summary = provisioner.run(&plan, &Quiet).unwrap();
        (summary, emu.rate_limited_count())
    };
    let windows = RateLimits {
        windows: vec![
            RateWindow {
                requests: 20,
                per: Duration::from_secs(1),
            },
            RateWindow {
                requests: 60,
                per: Duration::from_secs(3),
            },
        ],
        margin: Duration::from_millis(50),
    };
    let (summary, refused) = run(windows);
    assert_eq!(refused, 0, "429 answers within the limits");
    assert!(summary.failed.is_empty(), "{summary:?}");
    assert_eq!(summary.done, 24, "{summary:?}");

    let (_, refused) = run(RateLimits::none());
    assert!(
        refused > 0,
        "the control run without limits met no 429: the windows do not bite"
    );
}

/// A hostile CA (or a man in the middle of the download): a bundle in another order, one without
/// its leaf, or one whose leaf carries another key. The job stops before anything is installed
/// (no chain file beside the key, no record), and a later run downloads a good chain and
/// finishes it.
#[test]
fn hostile_chains_are_refused_before_anything_is_installed() {
    use certcentral_emulator::HostileChain;
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(Settings {
        polls_until_issued: 1,
        rate_limits: false,
        ..Settings::default()
    });
    // One good job first, so that another order's leaf exists to be served in the wrong place.
    let plan = write_plan(
        dir.path(),
        "[[keys]]\ncount = 5\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"h-{n}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
    );
    // One worker of each kind: the downloads come in the jobs' order.
    let provisioner = Provisioner::new(
        Journal::open(&dir.path().join("journal.sqlite")).unwrap(),
        client(&emu),
        ProvisionerConfig {
            api_workers: 1,
            wait: Duration::from_secs(10),
            ..ProvisionerConfig::new(dir.path().join("records"))
        },
    )
    .unwrap();
    let variants = [
        (
            HostileChain::Reordered,
            "the leaf is not the first certificate",
        ),
        (
            HostileChain::IssuersSwapped,
            "certificate 2 is not the issuer of certificate 1",
        ),
        (HostileChain::NoLeaf, "no end-entity certificate"),
        (
            HostileChain::OtherKey,
            "does not carry the job's public key",
        ),
    ];
    // Job h-1 gets a good chain; each later job gets one hostile download, in order.
    emu.add_fault(FaultRule {
        route: Route::Download,
        fault: Fault::Delay { millis: 0 },
        count: 1,
    });
    for (variant, _) in variants {
        emu.add_fault(FaultRule {
            route: Route::Download,
            fault: Fault::HostileChain { variant },
            count: 1,
        });
    }
    let summary = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!(summary.done, 1, "{summary:?}");
    assert_eq!(summary.failed.len(), variants.len(), "{summary:?}");
    for ((_, says), failed) in variants.iter().zip(&summary.failed) {
        let note = failed.note.as_deref().unwrap_or("");
        assert!(note.contains(says), "{}: {note}", failed.job_id);
        assert_eq!(failed.step, Step::OrderIssued, "{}", failed.job_id);
        let key = dir
            .path()
            .join("keys")
            .join(format!("{}.pem", failed.job_id));
        assert!(key.exists(), "the key stays");
        assert!(
            !key.with_extension("chain.pem").exists(),
            "{}: a hostile chain was installed",
            failed.job_id
        );
        assert!(
            !dir.path()
                .join("records")
                .join(format!("{}.json", failed.job_id))
                .exists()
        );
    }
    // Run again with honest downloads: every job finishes, with one order each.
    let summary = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!(summary.done, 5, "{summary:?}");
    assert_eq!(emu.order_count(), 5);
}

/// A job waiting on CertCentral holds no token worker: with one token worker, one API worker and
/// the first job's order hanging for two seconds, the other jobs' keys and CSRs are made while it
/// hangs (one after another, a run would build them only after it), and every job still ends
/// with one order.
#[test]
fn a_job_waiting_on_certcentral_holds_no_token_worker() {
    #[derive(Default)]
    struct Steps(std::sync::Mutex<Vec<(String, Step)>>);
    impl Observer for Steps {
        fn step(&self, job_id: &str, step: Step, _: &str) {
            self.0.lock().unwrap().push((job_id.to_string(), step));
        }
        fn finished(&self, _: &codesign_kit::pipeline::JobOutcome) {}
    }
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(Settings {
        polls_until_issued: 1,
        rate_limits: false,
        ..Settings::default()
    });
    let plan = write_plan(
        dir.path(),
        "[[keys]]\ncount = 3\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"w-{n}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
    );
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::Delay { millis: 2_000 },
        count: 1,
    });
    let provisioner = Provisioner::new(
        Journal::open(&dir.path().join("journal.sqlite")).unwrap(),
        client(&emu),
        ProvisionerConfig {
            workers: 1,
            api_workers: 1,
            wait: Duration::from_secs(10),
            ..ProvisionerConfig::new(dir.path().join("records"))
        },
    )
    .unwrap();
    let steps = Steps::default();
    let summary = provisioner.run(&plan, &steps).unwrap();
    assert_eq!(summary.done, 3, "{summary:?}");
    assert_eq!(emu.order_count(), 3);
    let steps = steps.0.into_inner().unwrap();
    let at = |job: &str, step: Step| {
        steps
            .iter()
            .position(|(j, s)| j == job && *s == step)
            .unwrap_or_else(|| panic!("{job} never reached {step:?}: {steps:?}"))
    };
    // The one API worker took w-1 first: its order is the one that hung.
    let hung = at("w-1", Step::OrderSubmitted);
    for job in ["w-2", "w-3"] {
        assert!(
            at(job, Step::CsrBuilt) < hung,
            "{job}'s CSR waited for w-1's order: {steps:?}"
        );
    }
}

/// What a crash inside the record step leaves (the journal at "certificate installed", the record
/// cut short, stray temporary files) is finished on resume: the record is written whole again,
/// nothing is ordered or made again, and the temporary files of writers that no longer run are
/// removed. A SIGKILL cannot be aimed inside this step from outside (no
/// token or network call follows the record's write), so the test builds the state it leaves.
#[test]
fn a_record_cut_short_by_a_crash_is_written_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(Settings {
        polls_until_issued: 0,
        rate_limits: false,
        ..Settings::default()
    });
    let plan = write_plan(
        dir.path(),
        "[[keys]]\ncount = 3\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"r-{n}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
    );
    let records = dir.path().join("records");
    {
        let provisioner = provisioner(dir.path(), &emu, 2, None);
        assert_eq!(provisioner.run(&plan, &Quiet).unwrap().done, 3);
        let journal = provisioner.journal();
        let mut row = journal.load("r-2").unwrap().unwrap();
        row.step = Step::CertificateInstalled;
        row.state = JobState::Open;
        journal
            .save(&row, "as a crash inside the record step leaves it")
            .unwrap();
    }
    let whole = std::fs::read_to_string(records.join("r-2.json")).unwrap();
    std::fs::write(records.join("r-2.json"), &whole[..whole.len() / 3]).unwrap();
    std::fs::write(records.join(".codesign-kit-crash.tmp"), "{").unwrap();
    // What writers killed before their rename left: a record and a key file of a process that
    // has exited, and one of this process, which still runs.
    let mut exited = std::process::Command::new("true").spawn().unwrap();
    exited.wait().unwrap();
    let stray_record = records.join(format!(".codesign-kit-{}-Rec000.tmp", exited.id()));
    let stray_key = dir
        .path()
        .join(format!("keys/.codesign-kit-{}-Key000.tmp", exited.id()));
    let running = records.join(format!(".codesign-kit-{}-Run000.tmp", std::process::id()));
    for file in [&stray_record, &stray_key, &running] {
        std::fs::write(file, "-----BEGIN PRIVATE KEY-----").unwrap();
    }
    let key_before = std::fs::read(dir.path().join("keys/r-2.pem")).unwrap();

    let provisioner = provisioner(dir.path(), &emu, 2, None);
    let summary = provisioner.run(&plan, &Quiet).unwrap();
    assert_eq!(summary.done, 3, "{summary:?}");
    assert_eq!(emu.order_count(), 3);
    assert!(!stray_record.exists() && !stray_key.exists());
    assert!(running.exists(), "a running writer's file is left to it");
    assert!(
        records.join(".codesign-kit-crash.tmp").exists(),
        "a new file without a writer's ID is not an hour old yet"
    );
    let rewritten: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(records.join("r-2.json")).unwrap())
            .expect("the record is whole again");
    let before: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(rewritten["certificate"], before["certificate"]);
    assert_eq!(rewritten["order"], before["order"]);
    assert_eq!(
        std::fs::read(dir.path().join("keys/r-2.pem")).unwrap(),
        key_before,
        "the key was not made again"
    );
    assert_eq!(
        provisioner.journal().load("r-2").unwrap().unwrap().step,
        Step::Done
    );
}
