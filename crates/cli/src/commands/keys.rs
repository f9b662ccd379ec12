//! `keygen`, `csr`, `inspect`: keys and CSRs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use codesign_kit::keys::files::{InputKind, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE};
use codesign_kit::keys::storage::DigicertToken;
use codesign_kit::keys::{KeyAlgorithm, KeySigner, KeysError, SoftwareKey, SubjectDn, csr};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::io::{Output, overwrite, read_arg, shown_path};
use crate::UsageError;

/// `keygen`'s arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["out", "pkcs11"])))]
pub struct KeygenArgs {
    /// Key algorithm: rsa3072, rsa4096, p256 or p384.
    #[arg(long, value_name = "ALG")]
    alg: String,
    /// Write the private key to this file (PKCS#8 PEM, mode 0600, written atomically; `-` for
    /// standard output).
    #[arg(long, value_name = "KEY.pem")]
    out: Option<PathBuf>,
    /// Generate the key on a PKCS#11 token, e.g. "pkcs11:token=Code%20Signing?module-path=/usr/lib/softhsm/libsofthsm2.so".
    #[arg(long, value_name = "URI")]
    pkcs11: Option<String>,
    /// Token keys: CKA_LABEL of both halves (default: the URI's object=, else codesign-<id>).
    #[arg(long, value_name = "LABEL", requires = "pkcs11")]
    label: Option<String>,
    /// Token keys: CKA_ID in hex (default: the URI's id=, else 16 random bytes).
    #[arg(long, value_name = "HEX", requires = "pkcs11")]
    id: Option<String>,
    /// The PKCS#11 module, when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Token keys: the token is this DigiCert-supported SafeNet eToken (5110-cc, 5110-fips,
    /// 5110plus-fips); an algorithm DigiCert does not take on it is refused before the token is
    /// touched.
    #[arg(long, value_name = "MODEL", requires = "pkcs11")]
    digicert_token: Option<DigicertToken>,
    /// Encrypt the key file with the passphrase held in this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "pkcs11")]
    passphrase_env: Option<String>,
    /// Also write a CSR for the new key to this file (PEM), signed by it in the same process and
    /// login: the step DigiCert's HSM flow asks for. Needs --subject.
    #[arg(long, value_name = "REQ.csr", requires = "subject")]
    csr_out: Option<PathBuf>,
    /// The CSR's subject (with --csr-out), e.g. "CN=Example Corp,O=Example Corp,C=US".
    #[arg(long, value_name = "DN", requires = "csr_out")]
    subject: Option<String>,
    /// Replace the key file or the --csr-out file if it exists (never a token key).
    #[arg(long)]
    force: bool,
    /// Print one JSON document describing the result.
    #[arg(long)]
    json: bool,
}

/// `keygen --csr-out`: where the CSR of the new key goes and its subject, checked before the key
/// is made.
pub struct CsrOut {
    output: Output,
    path: PathBuf,
    subject: SubjectDn,
    force: bool,
}

impl CsrOut {
    /// The `--csr-out` of `args`, when given: the subject parsed and the file checked writable
    /// (never over `inputs`, never over an existing file without --force).
    fn of(args: &KeygenArgs, inputs: &[&Path]) -> Result<Option<CsrOut>> {
        let (Some(path), Some(subject)) = (&args.csr_out, &args.subject) else {
            return Ok(None);
        };
        let subject: SubjectDn = subject.parse().context("--subject is not usable")?;
        let output = Output::new("--csr-out", path, inputs)?;
        if output.is_stdout() && args.json {
            return Err(UsageError(
                "--csr-out - writes the CSR to standard output; --json cannot share it".to_string(),
            )
            .into());
        }
        output.check(overwrite(args.force))?;
        Ok(Some(CsrOut {
            output,
            path: path.clone(),
            subject,
            force: args.force,
        }))
    }

    /// Builds the CSR with `key`, checks it and writes it; what `--json` says of it.
    pub fn write(&self, key: &dyn KeySigner) -> Result<serde_json::Value> {
        let request = csr::build(key, &self.subject).context("cannot build the CSR")?;
        self.output.write(
            request.pem().as_bytes(),
            PUBLIC_FILE_MODE,
            overwrite(self.force),
        )?;
        Ok(serde_json::json!({
            "path": self.path,
            "subject": self.subject.to_string(),
            "signature_algorithm": key.algorithm().signature_algorithm_name(),
        }))
    }

    /// One line for the text report.
    pub fn describe(&self) -> String {
        format!(
            "wrote CSR for {} to {} (self-check: signature verifies)",
            self.subject,
            self.output.describe()
        )
    }

    /// Whether the CSR goes to standard output.
    pub fn is_stdout(&self) -> bool {
        self.output.is_stdout()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CsrFormat {
    Pem,
    Der,
}

/// `csr`'s arguments.
#[derive(Debug, Args)]
pub struct CsrArgs {
    /// The private key: a PEM file (PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1; `-` for standard
    /// input) or a PKCS#11 URI naming a token key by id= and/or object=.
    #[arg(long, value_name = "KEY.pem|URI")]
    key: String,
    /// The PKCS#11 module, when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// The subject, e.g. "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US" (RFC 4514 escaping).
    #[arg(long, value_name = "DN")]
    subject: String,
    /// Write the CSR to this file (`-` for standard output); an existing file is replaced only
    /// with --force.
    #[arg(long, value_name = "REQ.csr")]
    out: PathBuf,
    /// Replace the CSR file if it exists (never the key, nor anything but a regular file).
    #[arg(long)]
    force: bool,
    /// Output encoding.
    #[arg(long, value_enum, default_value = "pem")]
    format: CsrFormat,
    /// The key file's passphrase is in this environment variable.
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,
    /// Print one JSON document describing the result.
    #[arg(long)]
    json: bool,
}

/// `inspect`'s arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The CSR file, PEM or DER (`-` for standard input).
    csr: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Reads a passphrase from the environment variable named by `--passphrase-env`.
pub(crate) fn passphrase_from_env(var: Option<&str>) -> Result<Option<SecretString>> {
    let Some(var) = var else { return Ok(None) };
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(Some(SecretString::from(value))),
        Ok(_) => bail!("--passphrase-env {var}: the environment variable {var} is empty"),
        Err(std::env::VarError::NotPresent) => {
            bail!("--passphrase-env {var}: the environment variable {var} is not set")
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("--passphrase-env {var}: the environment variable {var} is not valid UTF-8")
        }
    }
}

/// An `--alg` value: an unknown name is a usage error; a weak one (RSA-2048) a refusal that says why.
pub fn parse_algorithm(given: &str) -> Result<KeyAlgorithm> {
    given.parse::<KeyAlgorithm>().map_err(|e| match e {
        KeysError::UnknownAlgorithm { .. } => UsageError(format!("--alg: {e}")).into(),
        other => anyhow::Error::new(other).context(format!("--alg {given} is refused")),
    })
}

pub(crate) fn spki_sha256(key: &dyn KeySigner) -> String {
    codesign_kit::keys::spki::sha256_hex(&key.subject_public_key_info())
}

/// `keygen`: a key in a file (`--out`) or on a token (`--pkcs11`).
pub fn keygen(args: KeygenArgs) -> Result<()> {
    let algorithm = parse_algorithm(&args.alg)?;
    match (&args.out, &args.pkcs11) {
        (Some(out), None) => keygen_file(&args, algorithm, out),
        (None, Some(uri)) => {
            if args.force && args.csr_out.is_none() {
                return Err(UsageError(
                    "--force replaces a key file or a --csr-out file; a token key is never replaced"
                        .to_string(),
                )
                .into());
            }
            let csr_out = CsrOut::of(&args, &[])?;
            super::token::keygen(
                &super::token::TokenKeygen {
                    uri,
                    label: args.label.as_deref(),
                    id: args.id.as_deref(),
                    module: args.module.as_deref(),
                    digicert_token: args.digicert_token,
                    json: args.json,
                    csr_out: csr_out.as_ref(),
                },
                algorithm,
            )
        }
        _ => unreachable!("clap requires exactly one of --out and --pkcs11"),
    }
}

fn keygen_file(args: &KeygenArgs, algorithm: KeyAlgorithm, out: &Path) -> Result<()> {
    let passphrase = passphrase_from_env(args.passphrase_env.as_deref())?;
    let output = Output::new("--out", out, &[])?;
    if output.is_stdout() && args.json {
        return Err(UsageError(
            "--out - writes the key to standard output; --json cannot share it".to_string(),
        )
        .into());
    }
    let overwrite = overwrite(args.force);
    // Fail before the (slow) generation when a file cannot be written; the final writes check
    // again.
    output.check(overwrite)?;
    let csr_out = CsrOut::of(args, &[out])?;
    if output.is_stdout() && csr_out.as_ref().is_some_and(CsrOut::is_stdout) {
        return Err(UsageError(
            "--out - and --csr-out - cannot both write to standard output".to_string(),
        )
        .into());
    }
    let key = SoftwareKey::generate(algorithm).context("key generation failed")?;
    let pem = key.to_pkcs8_pem(passphrase.as_ref())?;
    // The CSR first: if it cannot be written, no key file is left without the CSR asked for.
    let csr_json = csr_out.as_ref().map(|c| c.write(&key)).transpose()?;
    output.write(pem.as_bytes(), PRIVATE_FILE_MODE, overwrite)?;
    let fingerprint = spki_sha256(&key);
    if args.json {
        let doc = serde_json::json!({
            "algorithm": algorithm.cli_name(),
            "key": algorithm.to_string(),
            "path": out,
            "encrypted": passphrase.is_some(),
            "mode": "0600",
            "public_key_sha256": fingerprint,
            "csr": csr_json,
        });
        super::io::print_json(&doc)?;
    } else {
        let report = format!(
            "wrote {algorithm} key to {} (PKCS#8{}{})\npublic key SHA-256: {fingerprint}",
            output.describe(),
            if passphrase.is_some() {
                ", encrypted"
            } else {
                ""
            },
            if output.is_stdout() {
                ""
            } else {
                ", mode 0600"
            },
        );
        let report = match &csr_out {
            Some(c) => format!("{report}\n{}", c.describe()),
            None => report,
        };
        if output.is_stdout() || csr_out.as_ref().is_some_and(CsrOut::is_stdout) {
            eprintln!("{report}");
        } else {
            println!("{report}");
        }
    }
    Ok(())
}

/// `csr`: a CSR signed by a key in a file or on a token, checked, written where `--out` says.
pub fn csr(args: CsrArgs) -> Result<()> {
    let subject: SubjectDn = args.subject.parse().context("--subject is not usable")?;
    if args.key.starts_with("pkcs11:") {
        let output = args.output(&[])?;
        let (request, algorithm, spki) =
            super::token::csr(&args.key, args.module.as_deref(), &subject)?;
        return write_csr(&args, &output, &subject, algorithm, &spki, &request);
    }
    let key_path = Path::new(&args.key);
    let output = args.output(&[key_path])?;
    let passphrase = passphrase_from_env(args.passphrase_env.as_deref())?;
    let pem = Zeroizing::new(read_arg(key_path, InputKind::PrivateKey)?);
    let key = SoftwareKey::from_pem(&pem, passphrase.as_ref(), key_path)
        .map_err(|e| match e {
            KeysError::PassphraseRequired { .. } => {
                anyhow::anyhow!("{e}; give its passphrase with --passphrase-env VAR")
            }
            other => anyhow::Error::new(other),
        })
        .with_context(|| format!("cannot use the key {}", shown_path(key_path)))?;
    let request = csr::build(&key, &subject).context("cannot build the CSR")?;
    write_csr(
        &args,
        &output,
        &subject,
        key.algorithm(),
        &key.subject_public_key_info(),
        &request,
    )
}

impl CsrArgs {
    /// Where the CSR goes, checked before any key is touched: never over an input, never over
    /// an existing file without --force, never over anything but a regular file.
    fn output(&self, inputs: &[&Path]) -> Result<Output> {
        let output = Output::new("--out", &self.out, inputs)?;
        if output.is_stdout() && self.json {
            return Err(UsageError(
                "--out - writes the CSR to standard output; --json cannot share it".to_string(),
            )
            .into());
        }
        output.check(overwrite(self.force))?;
        Ok(output)
    }
}

/// Writes a built CSR where `--out` says and reports it.
fn write_csr(
    args: &CsrArgs,
    output: &Output,
    subject: &SubjectDn,
    algorithm: KeyAlgorithm,
    subject_public_key_info: &[u8],
    request: &csr::Csr,
) -> Result<()> {
    let bytes = match args.format {
        CsrFormat::Pem => request.pem().into_bytes(),
        CsrFormat::Der => request.der().to_vec(),
    };
    output.write(&bytes, PUBLIC_FILE_MODE, overwrite(args.force))?;
    let fingerprint = codesign_kit::keys::spki::sha256_hex(subject_public_key_info);
    if args.json {
        let doc = serde_json::json!({
            "path": args.out,
            "format": match args.format { CsrFormat::Pem => "pem", CsrFormat::Der => "der" },
            "subject": subject.to_string(),
            "key": algorithm.to_string(),
            "signature_algorithm": algorithm.signature_algorithm_name(),
            "public_key_sha256": fingerprint,
        });
        super::io::print_json(&doc)?;
    } else {
        let report = format!(
            "wrote CSR for {subject} to {}\nkey: {algorithm}, signature: {}, self-check: signature verifies",
            output.describe(),
            algorithm.signature_algorithm_name(),
        );
        if output.is_stdout() {
            eprintln!("{report}");
        } else {
            println!("{report}");
        }
    }
    Ok(())
}

/// `inspect`: what a CSR holds and whether the code signing key rules accept it (exit 1 if not).
pub fn inspect(args: InspectArgs) -> Result<()> {
    let input = read_arg(&args.csr, InputKind::Csr)?;
    let name = shown_path(&args.csr);
    let report = csr::inspect(&input).with_context(|| name.clone())?;
    if args.json {
        super::io::print_json(&report.to_json_view())?;
    } else {
        print!("{}", super::io::terminal_safe(&render(&args.csr, &report)));
    }
    report.ensure_acceptable().with_context(|| name.clone())?;
    Ok(())
}

fn render(path: &Path, report: &csr::CsrReport) -> String {
    use codesign_kit::keys::spki::SignatureCheck;
    let signature = match &report.signature {
        SignatureCheck::Valid => "verifies".to_string(),
        SignatureCheck::Invalid => "DOES NOT VERIFY".to_string(),
        SignatureCheck::NotVerifiable { reason } => format!("not checked ({reason})"),
    };
    let mut out = format!(
        "CSR {} ({})\n  subject:    {}\n  key:        {}\n  signature:  {}, {signature}\n",
        shown_path(path),
        match report.encoding {
            csr::CsrEncoding::Pem => "PEM",
            csr::CsrEncoding::Der => "DER",
        },
        report.subject,
        describe_key(&report.key),
        report.signature_algorithm,
    );
    if report.requested_extensions.is_empty() {
        out.push_str("  extensions: none requested\n");
    } else {
        out.push_str("  extensions:\n");
        for ext in &report.requested_extensions {
            out.push_str(&format!(
                "    {}{}{}\n",
                ext.name.as_deref().unwrap_or(&ext.oid),
                if ext.critical { " (critical)" } else { "" },
                ext.value
                    .as_deref()
                    .map(|v| format!(": {v}"))
                    .unwrap_or_default(),
            ));
        }
    }
    if report.policy_reasons.is_empty() {
        out.push_str("  policy:     ok (code signing key rules met)\n");
    } else {
        out.push_str("  policy:     REFUSED\n");
        for reason in &report.policy_reasons {
            out.push_str(&format!("    - {reason}\n"));
        }
    }
    out
}

fn describe_key(key: &codesign_kit::keys::policy::KeyDescription) -> String {
    use codesign_kit::keys::policy::KeyDescription;
    match key {
        KeyDescription::Rsa { exponent, .. } => format!("{key}, exponent {exponent}"),
        other => other.to_string(),
    }
}
