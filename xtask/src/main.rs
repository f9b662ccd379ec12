//! `cargo xtask`: the developers' front door. It runs every product command of the `codesign-kit`
//! binary (the same code, from `codesign-kit-cli`, with the emulator command on), and the
//! developers' own: `test`, `bench`, `fuzz`, `demo`.
//!
//! Exit status: 0 success, 1 failure or policy refusal, 2 usage error.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Provision code signing keys and certificates, and test, benchmark and fuzz the tool.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: codesign_kit_cli::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Product(codesign_kit_cli::Command),
    /// The whole pipeline on embedded defaults: local CertCentral, throwaway SoftHSM token.
    Demo(commands::demo::DemoArgs),
    /// Per-key timings, side by side with openssl genpkey and pkcs11-tool (--compare).
    Bench(commands::bench::BenchArgs),
    /// Fuzz the parsers of untrusted input (cargo-fuzz, libFuzzer); not part of `test`.
    Fuzz(commands::fuzz::FuzzArgs),
    /// Install what the tests need, then run fmt, clippy and every test.
    Test(commands::test::TestArgs),
}

fn main() -> ExitCode {
    codesign_kit_cli::default_sigpipe();
    let cli = Cli::parse();
    codesign_kit_cli::init_logging(&cli.log);
    let result = match cli.command {
        Command::Product(command) => command.run(),
        Command::Demo(args) => commands::demo::demo(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Fuzz(args) => commands::fuzz::run(args),
        Command::Test(args) => commands::test::run(args),
    };
    let format = codesign_kit_cli::ErrorFormat::of_args(std::env::args_os());
    ExitCode::from(codesign_kit_cli::exit_status(result, format))
}
