//! `cargo xtask`: the codesign-kit command line.
//!
//! Exit status: 0 success, 1 failure or policy refusal, 2 usage error. Errors go to stderr as one
//! sentence plus its cause; `--json` makes a command print one JSON document on stdout.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Provision code signing keys and certificates: keys, CSRs, inspection.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a code signing key (RSA-3072/4096, ECC P-256/P-384) on a PKCS#11 token or into a PKCS#8 PEM file.
    Keygen(commands::keys::KeygenArgs),
    /// Build a PKCS#10 CSR signed by a key.
    Csr(commands::keys::CsrArgs),
    /// Show a CSR's key, subject and signature, and judge it against the code signing key rules.
    Inspect(commands::keys::InspectArgs),
    /// Order a code signing certificate from CertCentral (validated first; --dry-run sends nothing).
    Order(commands::order::OrderArgs),
    /// An order's status, requests and certificate ID.
    Status(commands::order::StatusArgs),
    /// Download an issued certificate (chain) by certificate ID or order ID.
    Download(commands::order::DownloadArgs),
    /// Provision many keys through the whole pipeline from a plan; resumable.
    Provision(commands::provision::ProvisionArgs),
    /// The whole pipeline on embedded defaults: local CertCentral, throwaway SoftHSM token.
    Demo(commands::provision::DemoArgs),
    /// What a PKCS#11 token offers for code signing keys: mechanisms, key sizes, PIN state, verdicts.
    Doctor(commands::token::DoctorArgs),
    /// Run the local CertCentral (tests, demos): validates like the API, issues from a test CA.
    Emulator(commands::emulator::EmulatorArgs),
    /// Per-key timings, side by side with openssl genpkey and pkcs11-tool (--compare).
    Bench(commands::bench::BenchArgs),
    /// Fuzz the parsers of untrusted input (cargo-fuzz, libFuzzer); not part of `test`.
    Fuzz(commands::fuzz::FuzzArgs),
    /// Install what the tests need, then run fmt, clippy and every test.
    Test(commands::test::TestArgs),
}

/// Exit statuses of the CLI contract.
pub(crate) mod exit {
    /// A failure or a policy refusal.
    pub const FAILURE: u8 = 1;
    /// A usage error.
    pub const USAGE: u8 = 2;
}

/// An error that should exit with a status other than [`exit::FAILURE`].
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What the user can do about a library's refusal, in this CLI's own flags (the libraries name
/// none).
fn hint(err: &anyhow::Error) -> Option<&'static str> {
    use codesign_kit::keys::KeysError;
    let keys_error = err.chain().find_map(|cause| {
        cause.downcast_ref::<KeysError>().or_else(|| {
            match cause.downcast_ref::<codesign_kit::pipeline::PipelineError>() {
                Some(codesign_kit::pipeline::PipelineError::Key(inner)) => Some(inner),
                _ => None,
            }
        })
    })?;
    match keys_error {
        KeysError::KeyFileExists { .. } => Some(" (pass --force to replace it)"),
        KeysError::DuplicateObject { .. } => Some(" (pass another --id or --label)"),
        KeysError::NoPkcs11Module => {
            Some(" (add module-path=... to the URI, pass --module, or set PKCS11_MODULE)")
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Events of the libraries (a retry that waits, say) go to stderr; RUST_LOG chooses more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_env_filter(filter)
        .init();
    let result = match cli.command {
        Command::Keygen(args) => commands::keys::keygen(args),
        Command::Csr(args) => commands::keys::csr(args),
        Command::Inspect(args) => commands::keys::inspect(args),
        Command::Doctor(args) => commands::token::doctor(args),
        Command::Order(args) => commands::order::order(args),
        Command::Provision(args) => commands::provision::provision(args),
        Command::Demo(args) => commands::provision::demo(args),
        Command::Status(args) => commands::order::status(args),
        Command::Download(args) => commands::order::download(args),
        Command::Emulator(args) => commands::emulator::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Fuzz(args) => commands::fuzz::run(args),
        Command::Test(args) => commands::test::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Input may reach the message (a label, a path, a subject): no control or
            // bidirectional character of it reaches the terminal as it is.
            eprintln!(
                "error: {}{}",
                commands::io::terminal_safe(&format!("{err:#}")),
                hint(&err).unwrap_or_default()
            );
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::from(exit::FAILURE)
            }
        }
    }
}
