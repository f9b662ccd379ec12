//! Token commands: `keygen --pkcs11`, `csr --key pkcs11:...`, `doctor`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use codesign_kit::keys::pkcs11::{KeyRequest, Module, Pin, Pkcs11Uri, TokenRef, random_id};
use codesign_kit::keys::storage::DigicertToken;
use codesign_kit::keys::{KeyAlgorithm, KeySigner, SubjectDn, csr};

use crate::UsageError;

/// `doctor`'s arguments.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The token, e.g. "pkcs11:token=Code%20Signing?module-path=/usr/lib/softhsm/libsofthsm2.so".
    #[arg(long, value_name = "URI")]
    pkcs11: String,
    /// The PKCS#11 module, when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// The token is this DigiCert-supported SafeNet eToken (5110-cc, 5110-fips, 5110plus-fips):
    /// say which of its algorithms DigiCert takes.
    #[arg(long, value_name = "MODEL")]
    digicert_token: Option<DigicertToken>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_uri(text: &str) -> Result<Pkcs11Uri> {
    text.parse::<Pkcs11Uri>()
        .map_err(|e| UsageError(e.to_string()).into())
}

pub(crate) fn find_token(uri: &Pkcs11Uri, module: Option<&Path>) -> Result<TokenRef> {
    let module = Module::resolve(uri, super::sources::default_module(module).as_deref())?;
    Ok(module.find_token(uri)?)
}

/// A logged-in session on the token of a key URI (`--key`), which must name the key by `id=`
/// or `object=`.
pub(crate) fn key_session(
    uri_text: &str,
    module: Option<&Path>,
) -> Result<(
    Pkcs11Uri,
    TokenRef,
    codesign_kit::keys::pkcs11::TokenSession,
)> {
    let uri = parse_uri(uri_text)?;
    if uri.id.is_none() && uri.object.is_none() {
        return Err(UsageError(format!(
            "--key {uri}: name the key with id=... or object=... in the URI"
        ))
        .into());
    }
    let token = find_token(&uri, module)?;
    let pin = Pin::resolve(&uri, &token.description(), &super::sources::EnvOrPrompt)?;
    let session = token.login(&pin)?;
    Ok((uri, token, session))
}

/// Where the key of a token URI is kept, after checking that its public key is `spki` (a CSR's):
/// logs in to read the key, as `csr` does.
pub fn storage_of_csr_key(
    uri_text: &str,
    module: Option<&Path>,
    spki: &[u8],
) -> Result<codesign_kit::keys::storage::KeyStorage> {
    let (uri, token, session) = key_session(uri_text, module)?;
    let key = session
        .find_key(uri.id.as_deref(), uri.object.as_deref())
        .context("--key: cannot use the token key")?;
    if key.subject_public_key_info() != spki {
        bail!(
            "--key: the CSR's public key is not the public key of {} on {}; nothing was sent",
            key.label(),
            token.description()
        );
    }
    Ok(token.storage())
}

fn parse_hex_id(text: &str) -> Result<Vec<u8>> {
    let clean: String = text.chars().filter(|c| *c != ':').collect();
    match base16ct::mixed::decode_vec(&clean) {
        Ok(id) if !id.is_empty() => Ok(id),
        _ => Err(UsageError(format!(
            "--id \"{text}\" is not hex bytes (e.g. 01a2 or 01:a2)"
        ))
        .into()),
    }
}

use codesign_kit::keys::text::hex;

/// What `keygen --pkcs11` was asked.
pub struct TokenKeygen<'a> {
    /// The token's URI.
    pub uri: &'a str,
    /// `--label`.
    pub label: Option<&'a str>,
    /// `--id`, hex.
    pub id: Option<&'a str>,
    /// `--module`.
    pub module: Option<&'a Path>,
    /// `--digicert-token`.
    pub digicert_token: Option<DigicertToken>,
    /// `--json`.
    pub json: bool,
    /// `--csr-out` and `--subject`, checked.
    pub csr_out: Option<&'a super::keys::CsrOut>,
}

/// `keygen --pkcs11`: a key pair generated on the token, audited, reported.
pub fn keygen(args: &TokenKeygen<'_>, algorithm: KeyAlgorithm) -> Result<()> {
    let uri = parse_uri(args.uri)?;
    if let Some(model) = args.digicert_token {
        model
            .check(algorithm)
            .map_err(|why| anyhow::anyhow!("cannot generate an {algorithm} key: {why}"))?;
    }
    let id = match (args.id, &uri.id) {
        (Some(hex_id), _) => parse_hex_id(hex_id)?,
        (None, Some(id)) => id.clone(),
        (None, None) => random_id()?,
    };
    let label = args
        .label
        .map(str::to_string)
        .or_else(|| uri.object.clone())
        .unwrap_or_else(|| format!("codesign-{}", hex(&id[..id.len().min(6)])));
    let token = find_token(&uri, args.module)?;
    // Before the PIN is asked or the token logged in to: can it make this key at all?
    token
        .check_capability(algorithm)
        .with_context(|| format!("cannot generate an {algorithm} key"))?;
    let pin = Pin::resolve(&uri, &token.description(), &super::sources::EnvOrPrompt)?;
    let session = token.login(&pin)?;
    let request = KeyRequest {
        algorithm,
        label,
        id: Some(id),
    };
    // Exclusive per label and token across processes until the key exists (a second keygen of
    // this label now is refused by name instead of both passing the duplicate check).
    let _label_lock = session.lock_label(
        &codesign_kit::pipeline::ProvisionerConfig::default_lock_dir(),
        &request.label,
    )?;
    let pending = session
        .generate_key_pair(&request)
        .with_context(|| format!("cannot generate an {algorithm} key"))?;
    let fingerprint = codesign_kit::keys::spki::sha256_hex(&pending.subject_public_key_info());
    let generation_ms = pending.generation_time().as_secs_f64() * 1000.0;
    // The CSR is signed while the key is still pending: if it cannot be built or written, the
    // key is taken off the token again (no key without the CSR asked for).
    let csr_json = match args.csr_out.map(|c| c.write(&*pending)).transpose() {
        Ok(json) => json,
        Err(e) => {
            let removed = match pending.discard() {
                Ok(()) => "the new key was removed from the token".to_string(),
                Err(why) => format!("the new key could not be removed from the token: {why}"),
            };
            return Err(e.context(format!("{}: {removed}", token.description())));
        }
    };
    let (key, audit) = pending.keep();
    let key_uri = key.uri().to_uri_string(false);
    if args.json {
        let doc = serde_json::json!({
            "algorithm": algorithm.cli_name(),
            "key": algorithm.to_string(),
            "uri": key_uri,
            "token": token.summary(),
            "label": key.label(),
            "id": hex(key.id()),
            "audit": audit,
            "public_key_sha256": fingerprint,
            "generation_ms": generation_ms,
            "csr": csr_json,
        });
        super::io::print_json(&doc)?;
    } else {
        let report = format!(
            "generated {algorithm} key on {}\nuri: {key_uri}\naudit: {}\npublic key SHA-256: {fingerprint}",
            token.description(),
            audit.summary()
        );
        match args.csr_out {
            Some(c) if c.is_stdout() => eprintln!("{report}\n{}", c.describe()),
            Some(c) => println!("{report}\n{}", c.describe()),
            None => println!("{report}"),
        }
    }
    Ok(())
}

/// A CSR signed on the token by the key the URI names, with the key's algorithm and public key.
pub fn csr(
    uri_text: &str,
    module: Option<&Path>,
    subject: &SubjectDn,
) -> Result<(csr::Csr, KeyAlgorithm, Vec<u8>)> {
    let (uri, _token, session) = key_session(uri_text, module)?;
    let key = session
        .find_key(uri.id.as_deref(), uri.object.as_deref())
        .context("cannot use the token key")?;
    let request = csr::build(&key, subject).context("cannot build the CSR on the token")?;
    Ok((request, key.algorithm(), key.subject_public_key_info()))
}

/// `doctor`: what a token offers for code signing keys (exit 1 when its PIN is locked).
pub fn doctor(args: DoctorArgs) -> Result<()> {
    let uri = parse_uri(&args.pkcs11)?;
    let token = find_token(&uri, args.module.as_deref())?;
    let report = token.report(args.digicert_token)?;
    if args.json {
        super::io::print_json(&report)?;
        return Ok(());
    }
    let t = &report.token;
    println!("module:  {} ({})", report.module_path, report.module);
    println!(
        "token:   \"{}\" serial {}, model {}, manufacturer {}",
        t.label, t.serial, t.model, t.manufacturer
    );
    let flag = |b: bool| if b { "yes" } else { "no" };
    println!(
        "PIN:     initialized {}, count low {}, final try {}, locked {}, PIN pad {}",
        flag(report.user_pin_initialized),
        flag(report.user_pin_count_low),
        flag(report.user_pin_final_try),
        flag(report.user_pin_locked),
        flag(report.protected_authentication_path)
    );
    let limit = |n: Option<u64>| n.map_or("no limit stated".to_string(), |n| n.to_string());
    println!(
        "limits:  PIN length {}..{}, sessions {}, read-write sessions {}{}",
        report.pin_length.min,
        report.pin_length.max,
        limit(report.max_sessions),
        limit(report.max_rw_sessions),
        if report.write_protected {
            ", write-protected"
        } else {
            ""
        }
    );
    println!(
        "versions: hardware {}, firmware {}; clock {}",
        report.hardware_version, report.firmware_version, report.clock
    );
    if report.user_pin_to_be_changed {
        println!("note:    the token wants its user PIN changed before it lets it work");
    }
    println!("mechanisms:");
    for m in &report.mechanisms {
        match (m.offered, m.min_key_size, m.max_key_size) {
            (true, Some(min), Some(max)) => {
                println!("  {:<28} offered, key sizes {min}..{max}", m.name)
            }
            (true, _, _) => println!("  {:<28} offered", m.name),
            (false, _, _) => println!("  {:<28} not offered", m.name),
        }
    }
    println!("verdicts:");
    for v in &report.verdicts {
        let ok = v.can_generate && v.can_sign;
        println!(
            "  {:<10} {}  ({})",
            v.algorithm.to_string(),
            if ok { "OK  " } else { "NO  " },
            v.detail
        );
    }
    println!("DigiCert code signing key: {}", report.digicert.detail);
    if report.user_pin_locked {
        bail!("{}: the user PIN is locked", token.description());
    }
    Ok(())
}

/// `pubkey`'s arguments.
#[derive(Debug, Args)]
pub struct PubkeyArgs {
    /// The key, e.g. "pkcs11:token=Code%20Signing;object=cs-001" (id= or object=).
    uri: String,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    force: bool,
    /// The PKCS#11 module when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
}

/// `pubkey`: a token key's public key as PEM (SubjectPublicKeyInfo), as `openssl pkey -pubin`
/// reads it.
pub fn pubkey(args: PubkeyArgs) -> Result<()> {
    let out = super::io::Output::new("--out", args.out.as_deref().unwrap_or(Path::new("-")), &[])?;
    let overwrite = super::io::overwrite(args.force);
    out.check(overwrite)?;
    let (uri, _token, session) = key_session(&args.uri, args.module.as_deref())?;
    let key = session
        .find_key(uri.id.as_deref(), uri.object.as_deref())
        .context("cannot use the token key")?;
    let pem = csr::pem_lf("PUBLIC KEY", &key.subject_public_key_info());
    out.write(
        pem.as_bytes(),
        codesign_kit::keys::files::PUBLIC_FILE_MODE,
        overwrite,
    )
}

/// `cert`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// The certificate kept beside a token key (with --chain, its issuers found on the token),
    /// PEM, leaf first.
    Export(CertExportArgs),
    /// Put a downloaded certificate (or chain, leaf first) on a token beside the key whose public
    /// key it carries, with that key's CKA_ID and label; its intermediates go on as CA
    /// certificates.
    Install(CertInstallArgs),
}

/// `cert install`'s arguments.
#[derive(Debug, Args)]
pub struct CertInstallArgs {
    /// The token, e.g. "pkcs11:token=Code%20Signing" (the key is found by the certificate's
    /// public key, not by the URI's id= or object=).
    uri: String,
    /// The certificate or chain: PEM (leaf first, as CertCentral's pem_all and pem_noroot
    /// downloads are) or one DER certificate; `-` for standard input.
    #[arg(value_name = "CERT.pem")]
    certificate: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    /// The PKCS#11 module when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
}

/// `cert export`'s arguments.
#[derive(Debug, Args)]
pub struct CertExportArgs {
    /// The key whose certificate is exported (id= or object=).
    uri: String,
    /// Add the issuers the token holds, up to the first it does not (the root is not kept there).
    #[arg(long)]
    chain: bool,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    force: bool,
    /// The PKCS#11 module when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
}

/// `cert ...`.
pub fn cert(command: CertCommand) -> Result<()> {
    match command {
        CertCommand::Export(args) => cert_export(args),
        CertCommand::Install(args) => cert_install(args),
    }
}

/// A certificate file as a chain: PEM blocks, or one DER certificate.
fn read_chain(path: &Path) -> Result<codesign_kit::order::Chain> {
    use codesign_kit::keys::files::InputKind;
    let bytes = super::io::read_arg(path, InputKind::Certificates)?;
    let name = super::io::shown_path(path);
    let pem_bytes = if bytes.starts_with(&[0x30]) {
        csr::pem_lf("CERTIFICATE", &bytes).into_bytes()
    } else {
        bytes
    };
    let chain = codesign_kit::order::Chain::from_pem(&pem_bytes)
        .with_context(|| format!("{name}: not a certificate or chain"))?;
    chain
        .ensure_path_order()
        .with_context(|| format!("{name}: not a chain (the leaf, then each issuer)"))?;
    Ok(chain)
}

fn cert_install(args: CertInstallArgs) -> Result<()> {
    let uri = parse_uri(&args.uri)?;
    // Everything about the file is checked before the token is touched.
    let chain = read_chain(&args.certificate)?;
    let facts = codesign_kit::keys::spki::certificate_facts(&chain.leaf)?;
    let spki = facts.subject_public_key_info.clone();
    let token = find_token(&uri, args.module.as_deref())?;
    let pin = Pin::resolve(&uri, &token.description(), &super::sources::EnvOrPrompt)?;
    let session = token.login(&pin)?;
    let Some(key) = session.find_key_by_public_key(&spki)? else {
        bail!(
            "{}: no key on {} carries the certificate's public key (SHA-256 {}); nothing was installed",
            super::io::shown_path(&args.certificate),
            token.description(),
            codesign_kit::keys::spki::sha256_hex(&spki)
        );
    };
    if let Some(existing) = session.certificate_for(&key)? {
        let said = if existing == chain.leaf {
            "this certificate is installed already".to_string()
        } else {
            let other = codesign_kit::keys::spki::certificate_facts(&existing)
                .map(|f| format!("{} (serial {})", f.subject, f.serial_hex))
                .unwrap_or_else(|_| "an unreadable certificate".to_string());
            format!(
                "another certificate is kept beside it: {other}; remove it first with `token delete` and type=cert"
            )
        };
        bail!(
            "{}: key \"{}\" (CKA_ID {}): {said}; nothing was installed",
            token.description(),
            key.label(),
            hex(key.id())
        );
    }
    session
        .install_certificate(&key, &chain.leaf)
        .context("cannot install the certificate")?;
    let (mut added, mut present, mut roots) = (0, 0, 0);
    for der in &chain.cas {
        let ca = codesign_kit::keys::spki::certificate_facts(der)?;
        if ca.self_signed {
            roots += 1;
            continue;
        }
        match session.install_authority(der) {
            Ok(true) => added += 1,
            Ok(false) => present += 1,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "the certificate is installed beside key \"{}\", but its issuer {} could not be",
                    key.label(),
                    ca.subject
                )));
            }
        }
    }
    if args.json {
        let doc = serde_json::json!({
            "token": token.summary(),
            "key": key.uri().to_uri_string(false),
            "label": key.label(),
            "id": hex(key.id()),
            "certificate": certificate_json(&chain.leaf),
            "intermediates_added": added,
            "intermediates_present": present,
            "roots_skipped": roots,
        });
        super::io::print_json(&doc)?;
    } else {
        println!(
            "installed {} (serial {}, valid till {}) beside key \"{}\" (CKA_ID {}) on {}",
            codesign_kit::keys::text::escape_unsafe(&facts.subject, false),
            facts.serial_hex,
            time_text(facts.not_after_unix),
            key.label(),
            hex(key.id()),
            token.description()
        );
        println!(
            "intermediate certificates: {added} added, {present} already there{}",
            if roots > 0 {
                "; the root is not stored (the verifier trusts it)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn cert_export(args: CertExportArgs) -> Result<()> {
    let out = super::io::Output::new("--out", args.out.as_deref().unwrap_or(Path::new("-")), &[])?;
    let overwrite = super::io::overwrite(args.force);
    out.check(overwrite)?;
    let (uri, token, session) = key_session(&args.uri, args.module.as_deref())?;
    let key = session
        .find_key(uri.id.as_deref(), uri.object.as_deref())
        .context("cannot use the token key")?;
    let Some(leaf) = session.certificate_for(&key)? else {
        bail!(
            "{}: no certificate is kept beside key \"{}\" (CKA_ID {})",
            token.description(),
            key.label(),
            hex(key.id())
        );
    };
    let certificates = if args.chain {
        session.chain_on_token(&leaf)?
    } else {
        vec![leaf]
    };
    let pem: String = certificates
        .iter()
        .map(|der| csr::pem_lf("CERTIFICATE", der))
        .collect();
    out.write(
        pem.as_bytes(),
        codesign_kit::keys::files::PUBLIC_FILE_MODE,
        overwrite,
    )
}

/// `token`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// The token's keys (label, ID, algorithm) with the certificates beside them (subject,
    /// serial, end), and its CA certificates.
    List(TokenListArgs),
    /// Destroy the objects a URI names (id=, object=, type=) after a confirmation, or with
    /// --yes; a URI matching more than one key's objects is refused.
    Delete(TokenDeleteArgs),
}

/// `token delete`'s arguments.
#[derive(Debug, Args)]
pub struct TokenDeleteArgs {
    /// The objects, e.g. "pkcs11:token=Code%20Signing;object=cs-001" (every object of that
    /// label: private key, public key, certificate) or "...;id=%01;type=cert" (its certificate
    /// alone).
    uri: String,
    /// Do not ask: destroy what matches.
    #[arg(long)]
    yes: bool,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    /// The PKCS#11 module when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
}

/// `token list`'s arguments.
#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// The token, e.g. "pkcs11:token=Code%20Signing".
    uri: String,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    /// The PKCS#11 module when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
}

/// `token ...`.
pub fn token(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::List(args) => token_list(args),
        TokenCommand::Delete(args) => token_delete(args),
    }
}

fn token_delete(args: TokenDeleteArgs) -> Result<()> {
    use codesign_kit::keys::pkcs11::ObjectType;
    let uri = parse_uri(&args.uri)?;
    if uri.id.is_none() && uri.object.is_none() {
        return Err(UsageError(format!(
            "{uri}: name the objects to delete with id=... or object=... (a URI naming neither would match the whole token)"
        ))
        .into());
    }
    let token = find_token(&uri, args.module.as_deref())?;
    let pin = Pin::resolve(&uri, &token.description(), &super::sources::EnvOrPrompt)?;
    let session = token.login(&pin)?;
    let objects =
        session.objects_matching(uri.id.as_deref(), uri.object.as_deref(), uri.object_type)?;
    if objects.is_empty() {
        bail!(
            "{}: no object matches {uri}; nothing was deleted",
            token.description()
        );
    }
    // One key's objects share a CKA_ID and there is one of each kind; more is ambiguous.
    let mut ids: Vec<&[u8]> = objects.iter().map(|o| o.id.as_slice()).collect();
    ids.sort();
    ids.dedup();
    let mut kinds: Vec<Option<ObjectType>> = objects.iter().map(|o| o.kind).collect();
    let total = kinds.len();
    kinds.sort_by_key(|k| k.map(ObjectType::as_str));
    kinds.dedup();
    if ids.len() > 1 || kinds.len() < total {
        let listed: Vec<String> = objects
            .iter()
            .map(|o| format!("  {}", o.describe()))
            .collect();
        bail!(
            "{}: {uri} matches {} objects of more than one key; name one with id=... (and type=...); nothing was deleted:\n{}",
            token.description(),
            objects.len(),
            listed.join("\n")
        );
    }
    if !args.yes {
        eprintln!("{} holds:", token.description());
        for object in &objects {
            eprintln!("  {}", object.describe());
        }
        super::io::confirm_on_terminal(
            &format!(
                "deleting {} object(s) from {} cannot be undone",
                objects.len(),
                token.description()
            ),
            "delete them? type yes to confirm: ",
            "yes",
            "nothing was deleted",
        )?;
    }
    session.destroy_objects(&objects)?;
    if args.json {
        let deleted: Vec<serde_json::Value> = objects
            .iter()
            .map(|o| {
                serde_json::json!({
                    "type": o.kind.map(|k| k.as_str()),
                    "label": o.label,
                    "id": hex(&o.id),
                })
            })
            .collect();
        let doc = serde_json::json!({ "token": token.summary(), "deleted": deleted });
        super::io::print_json(&doc)?;
    } else {
        for object in &objects {
            println!("deleted {}", object.describe());
        }
    }
    Ok(())
}

/// What `token list` shows of a certificate.
fn certificate_json(der: &[u8]) -> serde_json::Value {
    match codesign_kit::keys::spki::certificate_facts(der) {
        Ok(facts) => {
            let till = time_text(facts.not_after_unix);
            serde_json::json!({
                "subject": facts.subject,
                "serial": facts.serial_hex,
                "not_after": till,
                "sha256": facts.sha256,
            })
        }
        Err(e) => serde_json::json!({ "unreadable": e.to_string() }),
    }
}

fn time_text(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn token_list(args: TokenListArgs) -> Result<()> {
    let uri = parse_uri(&args.uri)?;
    let token = find_token(&uri, args.module.as_deref())?;
    let pin = Pin::resolve(&uri, &token.description(), &super::sources::EnvOrPrompt)?;
    let session = token.login(&pin)?;
    let keys = session.list_keys()?;
    let authorities = session.certificates_without_id()?;
    if args.json {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "label": k.label,
                    "id": hex(&k.id),
                    "algorithm": k.algorithm.map(|a| a.cli_name()),
                    "refused": k.refused,
                    "certificate": k.certificate.as_deref().map(certificate_json),
                })
            })
            .collect();
        let authorities: Vec<serde_json::Value> = authorities
            .iter()
            .map(|der| certificate_json(der))
            .collect();
        let doc = serde_json::json!({
            "token": token.summary(),
            "keys": keys,
            "ca_certificates": authorities,
        });
        super::io::print_json(&doc)?;
        return Ok(());
    }
    let shown = |text: &str| codesign_kit::keys::text::escape_unsafe(text, false);
    println!("{}: {} key(s)", token.description(), keys.len());
    for k in &keys {
        let what = match (&k.algorithm, &k.refused) {
            (Some(a), _) => a.cli_name().to_string(),
            (None, Some(why)) => format!("not usable: {}", shown(why)),
            (None, None) => "unknown".to_string(),
        };
        println!("  key \"{}\" id {} {what}", shown(&k.label), hex(&k.id));
        match k.certificate.as_deref().map(certificate_json) {
            Some(c) if c.get("subject").is_some() => println!(
                "    certificate: {}, serial {}, valid till {}",
                shown(c["subject"].as_str().unwrap_or_default()),
                c["serial"].as_str().unwrap_or_default(),
                c["not_after"].as_str().unwrap_or_default()
            ),
            Some(c) => println!("    certificate: {c}"),
            None => println!("    no certificate"),
        }
    }
    for der in &authorities {
        let c = certificate_json(der);
        println!(
            "  CA certificate: {}, valid till {}",
            shown(c["subject"].as_str().unwrap_or("unreadable")),
            c["not_after"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
