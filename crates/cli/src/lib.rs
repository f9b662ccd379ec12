//! The codesign-kit command line: the `codesign-kit` binary (`cargo install --path crates/cli`),
//! and the same commands under `cargo xtask` in a checkout, which forwards to [`Command::run`].
//!
//! Exit status: 0 success, 1 failure or policy refusal, 2 usage error; `expiring` exits 3 when
//! something ends within its window; a run whose jobs wait for CertCentral exits 75. Errors go to
//! stderr as one sentence plus its cause, with untrusted text escaped; `--json` makes a command
//! print one JSON document on stdout, and an error one JSON object on stderr
//! ([`ErrorFormat::Json`]).
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: codesign_kit_cli::Command,
//! }
//!
//! let cli = Cli::parse();
//! codesign_kit_cli::init_logging(&codesign_kit_cli::LogArgs::default());
//! let format = codesign_kit_cli::ErrorFormat::of_args(std::env::args_os());
//! std::process::exit(i32::from(codesign_kit_cli::exit_status(cli.command.run(), format)));
//! ```

pub mod commands;

use clap::Subcommand;

/// The product's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// The account's orders (list) and what expires when (expiring).
    #[command(subcommand)]
    Orders(commands::orders::OrdersCommand),
    /// New keys and certificates for the plan's keys whose certificates end within a window; resumable.
    Renew(commands::lifecycle::RenewArgs),
    /// Rotate a job's key under its order: a new key beside the old, the order reissued for it; resumable.
    Reissue(commands::lifecycle::ReissueArgs),
    /// Revoke a certificate or a whole order (and optionally destroy the key on its token).
    Revoke(commands::lifecycle::RevokeArgs),
    /// What expires within a window, from a journal and from CertCentral (exit 3 when something does).
    Expiring(commands::lifecycle::ExpiringArgs),
    /// Provision many keys through the whole pipeline from a plan; resumable.
    Provision(commands::provision::ProvisionArgs),
    /// Every job of a journal (a file, or a database several hosts share): host, step, state, order, certificate.
    Jobs(commands::provision::JobsArgs),
    /// A token's keys and certificates (list).
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// A token key's public key, PEM (SubjectPublicKeyInfo).
    Pubkey(commands::token::PubkeyArgs),
    /// Certificates kept on a token beside their keys (export).
    #[command(subcommand)]
    Cert(commands::token::CertCommand),
    /// What a PKCS#11 token offers for code signing keys: mechanisms, key sizes, PIN state, verdicts.
    Doctor(commands::token::DoctorArgs),
    /// Shell completions for codesign-kit (bash, zsh, fish, powershell, elvish), on standard output.
    Completions(CompletionsArgs),
    /// The codesign-kit man page (roff), on standard output: `codesign-kit man > codesign-kit.1`.
    Man,
    /// Run the local CertCentral (tests, demos): validates like the API, issues from a test CA.
    #[cfg(feature = "emulator")]
    Emulator(commands::emulator::EmulatorArgs),
}

impl Command {
    /// Runs the command.
    ///
    /// # Errors
    /// What stopped it; [`exit_status`] turns it into the exit status.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Keygen(args) => commands::keys::keygen(args),
            Command::Csr(args) => commands::keys::csr(args),
            Command::Inspect(args) => commands::keys::inspect(args),
            Command::Doctor(args) => commands::token::doctor(args),
            Command::Pubkey(args) => commands::token::pubkey(args),
            Command::Token(command) => commands::token::token(command),
            Command::Completions(args) => {
                let mut command = command_line();
                clap_complete::generate(
                    args.shell,
                    &mut command,
                    "codesign-kit",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Man => {
                clap_mangen::Man::new(command_line()).render(&mut std::io::stdout())?;
                Ok(())
            }
            Command::Cert(command) => commands::token::cert(command),
            Command::Order(args) => commands::order::order(args),
            Command::Provision(args) => commands::provision::provision(args),
            Command::Jobs(args) => commands::provision::jobs(args),
            Command::Renew(args) => commands::lifecycle::renew(args),
            Command::Reissue(args) => commands::lifecycle::reissue(args),
            Command::Revoke(args) => commands::lifecycle::revoke(args),
            Command::Expiring(args) => commands::lifecycle::expiring(args),
            Command::Status(args) => commands::order::status(args),
            Command::Download(args) => commands::order::download(args),
            Command::Orders(command) => commands::orders::run(command),
            #[cfg(feature = "emulator")]
            Command::Emulator(args) => commands::emulator::run(args),
        }
    }
}

/// `completions`' arguments.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The whole `codesign-kit` command line, from the same definitions the binary parses with: what
/// completions and the man page are made from.
pub fn command_line() -> clap::Command {
    use clap::{Args, Subcommand};
    let top = clap::Command::new("codesign-kit")
        .version(concat!(
            env!("CARGO_PKG_VERSION"),
            " (",
            env!("CARGO_PKG_NAME"),
            ", commit ",
            env!("CODESIGN_KIT_COMMIT"),
            ")"
        ))
        .subcommand_required(true);
    // The flattened arguments bring their own doc as an about: the command's is set last.
    LogArgs::augment_args(Command::augment_subcommands(top)).about(env!("CARGO_PKG_DESCRIPTION"))
}

/// Exit statuses of the CLI contract.
pub mod exit {
    /// A failure or a policy refusal.
    pub const FAILURE: u8 = 1;
    /// A usage error.
    pub const USAGE: u8 = 2;
    /// `expiring`: something ends within the window (or has ended).
    pub const EXPIRING: u8 = 3;
    /// `provision`, `renew`, `reissue`: no job failed, but some wait for CertCentral (approval,
    /// validation, issuance): run again later. EX_TEMPFAIL of sysexits.h.
    pub const PENDING: u8 = 75;
}

/// A result that is no failure but exits with its own status, saying nothing more (the command
/// printed what it had to say): `expiring` when something ends within the window.
#[derive(Debug)]
pub struct QuietExit(pub u8);

impl std::fmt::Display for QuietExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for QuietExit {}

/// An error that exits with [`exit::USAGE`] rather than [`exit::FAILURE`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Lets a closed pipe end the process quietly, as it ends `cat` (`doctor --json | head`): Rust
/// starts programs with SIGPIPE ignored, so a write to a closed pipe would panic in `println!`.
/// The binaries call it once, first; libraries never do.
#[allow(
    unsafe_code,
    reason = "one libc call, before any thread exists: the default action of SIGPIPE restored"
)]
pub fn default_sigpipe() {
    // SAFETY: `signal` with SIG_DFL installs no handler code; it runs at the start of `main`,
    // before any other thread could be changing signal dispositions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// How much to log, and how: global flags of every command.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Say more: -v what the tool does, -vv and -vvv its details (RUST_LOG, when set, decides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Say only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log lines as text, or as JSON objects (one per line) for log pipelines.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line each.
    Text,
    /// One JSON object each.
    Json,
}

impl Default for LogArgs {
    fn default() -> Self {
        LogArgs {
            verbose: 0,
            quiet: false,
            log_format: LogFormat::Text,
        }
    }
}

/// Sends the libraries' events (a retry that waits, say) to stderr: warnings and worse by
/// default, errors only with `-q`, more with each `-v`, or what `RUST_LOG` chooses. Secrets never
/// reach an event: the libraries redact them where they live. The binaries call it once;
/// libraries never do.
pub fn init_logging(args: &LogArgs) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.without_time().init(),
        LogFormat::Json => builder.json().init(),
    }
}

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

/// How a failed command says why: a line of text, or with `--json` one JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// `error: ...` on stderr.
    Text,
    /// `{"error": {...}}` on stderr, one line: the message, its causes, the hint and the exit
    /// status, for a script that reads the command's `--json` result on stdout.
    Json,
}

impl ErrorFormat {
    /// JSON when the command line asks for `--json` (before any `--`): every command's `--json`
    /// is a flag, so the word cannot be another option's value.
    pub fn of_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ErrorFormat {
        let json = args
            .into_iter()
            .skip(1)
            .take_while(|a| a != "--")
            .any(|a| a == "--json");
        if json {
            ErrorFormat::Json
        } else {
            ErrorFormat::Text
        }
    }

    /// Says an error: `message` the whole chain, `causes` its links.
    pub fn say(self, message: &str, causes: &[String], hint: Option<&str>, status: u8) {
        match self {
            ErrorFormat::Text => eprintln!(
                "error: {}{}",
                commands::io::terminal_safe(message),
                hint.unwrap_or_default()
            ),
            ErrorFormat::Json => {
                let doc = serde_json::json!({ "error": {
                    "message": message,
                    "causes": causes,
                    "hint": hint.map(|h| h.trim().trim_start_matches('(').trim_end_matches(')')),
                    "exit_status": status,
                }});
                eprintln!("{doc}");
            }
        }
    }
}

/// The exit status of a command's result; an error is said on stderr first, escaped (input may
/// reach it: a label, a path, a subject) and with the CLI's hint, as text or JSON.
pub fn exit_status(result: anyhow::Result<()>, format: ErrorFormat) -> u8 {
    match result {
        Ok(()) => 0,
        Err(err) if err.downcast_ref::<QuietExit>().is_some() => err
            .downcast_ref::<QuietExit>()
            .map_or(exit::FAILURE, |q| q.0),
        Err(err) => {
            let status = if err.downcast_ref::<UsageError>().is_some() {
                exit::USAGE
            } else {
                exit::FAILURE
            };
            let causes: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            format.say(&format!("{err:#}"), &causes, hint(&err), status);
            status
        }
    }
}
