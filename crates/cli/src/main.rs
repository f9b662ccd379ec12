//! `codesign-kit`: provision code signing keys and certificates.

use std::process::ExitCode;

use clap::Parser;

/// Provision code signing keys and certificates: keys on tokens or in files, CSRs, CertCentral
/// orders, batches from a plan.
#[derive(Debug, Parser)]
#[command(
    name = "codesign-kit",
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("CARGO_PKG_NAME"),
        ", commit ",
        env!("CODESIGN_KIT_COMMIT"),
        ")"
    ),
    about,
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: codesign_kit_cli::Command,
    #[command(flatten)]
    log: codesign_kit_cli::LogArgs,
}

fn main() -> ExitCode {
    codesign_kit_cli::default_sigpipe();
    let format = codesign_kit_cli::ErrorFormat::of_args(std::env::args_os());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version are not errors; a usage error under --json is said as JSON too.
        Err(e) if e.use_stderr() && format == codesign_kit_cli::ErrorFormat::Json => {
            let text = e.kind().to_string();
            let rendered = e.render().to_string();
            let detail = rendered
                .lines()
                .next()
                .unwrap_or(&text)
                .trim_start_matches("error: ")
                .to_string();
            format.say(
                &detail,
                std::slice::from_ref(&detail),
                None,
                codesign_kit_cli::exit::USAGE,
            );
            return ExitCode::from(codesign_kit_cli::exit::USAGE);
        }
        Err(e) => e.exit(),
    };
    codesign_kit_cli::init_logging(&cli.log);
    ExitCode::from(codesign_kit_cli::exit_status(cli.command.run(), format))
}
