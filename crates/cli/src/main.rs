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
    let cli = Cli::parse();
    codesign_kit_cli::init_logging(&cli.log);
    ExitCode::from(codesign_kit_cli::exit_status(cli.command.run()))
}
