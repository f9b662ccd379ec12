//! `emulator`: run the local CertCentral until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use certcentral_emulator::{ApprovalMode, Emulator, EmulatorConfig};
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Approval {
    /// skip_approval orders are approved at once; others wait as pending.
    Auto,
    /// Requests start pending and need one approval.
    OneStep,
    /// Requests start submitted and need two approvals.
    TwoStep,
}

/// `emulator`'s arguments.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Loopback address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The account's approval workflow.
    #[arg(long, value_enum, default_value = "auto")]
    approval: Approval,
    /// Order info polls after approval before an order is issued.
    #[arg(long, value_name = "N", default_value_t = 2)]
    polls_until_issued: u32,
    /// Keep orders, organizations and the CA in this file across restarts.
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// Do not enforce CertCentral's rate limits (100 per 5 s, 1000 per 3 min).
    #[arg(long)]
    no_rate_limits: bool,
    /// Once listening, write the base URL (for CERTCENTRAL_BASE_URL) to this file, atomically:
    /// with --listen 127.0.0.1:0, how a script learns the port.
    #[arg(long, value_name = "FILE")]
    url_file: Option<PathBuf>,
    /// Delay every answer this many milliseconds, as over the internet.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Add up to this many milliseconds more to each answer, at random.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    jitter_ms: u64,
}

/// `emulator`: the local CertCentral on loopback until Ctrl-C.
pub fn run(args: EmulatorArgs) -> Result<()> {
    // The key the client reads, so that one shell runs both.
    let api_key = match std::env::var("DIGICERT_API_KEY") {
        Ok(key) if !key.is_empty() => key,
        _ => anyhow::bail!(
            "no API key for the emulator: set DIGICERT_API_KEY; the emulator's account takes that key alone, as the client sends it from the same variable"
        ),
    };
    let mut config = EmulatorConfig::new(api_key);
    config.settings.approval = match args.approval {
        Approval::Auto => ApprovalMode::AutoApprove,
        Approval::OneStep => ApprovalMode::OneStep,
        Approval::TwoStep => ApprovalMode::TwoStep,
    };
    config.settings.polls_until_issued = args.polls_until_issued;
    config.settings.rate_limits = !args.no_rate_limits;
    config.settings.latency = std::time::Duration::from_millis(args.latency_ms);
    config.settings.latency_jitter = std::time::Duration::from_millis(args.jitter_ms);
    config.state_file = args.state_file;
    let emulator = Emulator::start(config, args.listen).context("cannot start the emulator")?;
    println!(
        "CertCentral emulator listening; base URL: {}",
        emulator.api_base()
    );
    println!(
        "accepts the API key in DIGICERT_API_KEY; admin endpoints under {}/_emulator",
        emulator.url()
    );
    println!("export CERTCENTRAL_BASE_URL={}", emulator.api_base());
    if let Some(path) = &args.url_file {
        codesign_kit::keys::files::write_atomically(
            path,
            format!("{}\n", emulator.api_base()).as_bytes(),
            codesign_kit::keys::files::PUBLIC_FILE_MODE,
            codesign_kit::keys::files::Overwrite::Replace,
        )
        .with_context(|| format!("--url-file {}", path.display()))?;
    }
    println!("press Ctrl-C to stop");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else {
            // No runtime to wait on Ctrl-C with: stop at once rather than never.
            let _ = tx.send(());
            return;
        };
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        let _ = tx.send(());
    });
    let _ = rx.recv();
    emulator.stop();
    Ok(())
}
