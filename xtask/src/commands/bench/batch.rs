//! Batch throughput of the pipeline against the emulator (1 and 2 workers), peak memory of
//! `provision`, and the disk's flush rate as a reference.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::args::BenchArgs;
use super::measure::time;
use secrecy::SecretString;

pub(super) struct Quiet;

impl codesign_kit::pipeline::Observer for Quiet {
    fn step(&self, _: &str, _: codesign_kit::pipeline::Step, _: &str) {}
    fn finished(&self, _: &codesign_kit::pipeline::JobOutcome) {}
}

/// Batch figures: throughput with 1 and 2 workers, and peak memory by plan size.
pub(super) struct Batch {
    pub(super) throughput: Vec<(usize, f64)>,
    /// What the disk under the batch allows: `fdatasync`s per second with 1 and 2 threads.
    pub(super) disk_flushes: Vec<(usize, f64)>,
    pub(super) memory: Vec<(usize, Option<u64>, f64)>,
}

/// `fdatasync`s per second on `dir`'s disk with `threads` threads, each appending 4 KiB and flushing
/// its own file `per_thread` times: every batch job waits for several flushes, so this bounds how
/// far more workers can help.
pub(super) fn disk_flush_rate(dir: &Path, threads: usize, per_thread: usize) -> Result<f64> {
    use std::io::Write;
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                scope.spawn(move || -> Result<()> {
                    let path = dir.join(format!("flush-{i}"));
                    let mut file = std::fs::File::create(&path)?;
                    for _ in 0..per_thread {
                        file.write_all(&[0u8; 4096])?;
                        file.sync_data()?;
                    }
                    drop(file);
                    std::fs::remove_file(&path)?;
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("flush thread")?;
        }
        Ok(())
    })?;
    Ok((threads * per_thread) as f64 / start.elapsed().as_secs_f64())
}

pub(super) const BODY: &str = r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
  "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#;

/// 1, 2, 2, 1, 1, 2, ...: `rounds` runs per count, alternating so that the machine's drift (this
/// disk slows down as files come and go) hits both counts alike.
pub(super) fn one_two_alternating(rounds: usize) -> impl Iterator<Item = usize> {
    (0..rounds.max(1) * 2).map(|round| if matches!(round % 4, 0 | 3) { 1 } else { 2 })
}

/// The median of each count's figures, in order of count.
pub(super) fn medians(figures: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let mut counts: Vec<usize> = figures.iter().map(|(count, _)| *count).collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .into_iter()
        .map(|count| {
            let mut values: Vec<f64> = figures
                .iter()
                .filter(|(c, _)| *c == count)
                .map(|(_, v)| *v)
                .collect();
            values.sort_by(f64::total_cmp);
            (count, values[values.len() / 2])
        })
        .collect()
}

/// Prints one line per count with its ratio to the figure for 1.
pub(super) fn print_scaling(
    figures: &[(usize, f64)],
    line: impl Fn(usize, f64) -> String,
    unit: &str,
) {
    let one = figures.iter().find(|(c, _)| *c == 1).map(|(_, v)| *v);
    for (count, value) in figures {
        let ratio = one
            .map(|o| format!("  x{:.2} of 1 {unit}", value / o))
            .unwrap_or_default();
        println!("  {}{ratio}", line(*count, *value));
    }
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, 100 ticks per second).
pub(super) fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

pub(super) fn batch(args: &BenchArgs) -> Result<Batch> {
    use codesign_kit::order::{ApiKey, BaseUrl, Client, ClientConfig};
    use codesign_kit::pipeline::{Journal, Plan, Provisioner, ProvisionerConfig};
    let key = "bench-batch-key";
    let mut config = certcentral_emulator::EmulatorConfig::new(key);
    config.settings.polls_until_issued = 0;
    config.settings.rate_limits = false;
    let emulator =
        certcentral_emulator::Emulator::start(config, "127.0.0.1:0".parse().expect("loopback"))?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("body.json"), BODY)?;
    let plan_for = |name: &str, jobs: usize| -> Result<PathBuf> {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = {jobs}\nalgorithm = \"p256\"\ndirectory = \"{name}-keys\"\nlabel = \"{name}-{{n}}\"\nsubject = \"CN=Example Corp,C=US\"\n"
            ),
        )?;
        Ok(path)
    };
    // Each round is a fresh plan and journal; keys per second, per round.
    let rounds = args.batch_rounds.max(1) * 2;
    let mut keys_per_second = Vec::new();
    for (round, workers) in one_two_alternating(args.batch_rounds).enumerate() {
        let name = format!("r{round}w{workers}");
        let plan_path = plan_for(&name, args.batch_jobs)?;
        let plan = Plan::load(&plan_path)?;
        // The emulator enforces no limits here, and this measures the tool: no client limits.
        let mut client_config = ClientConfig::new(
            BaseUrl::parse(&emulator.api_base())?,
            ApiKey::new(SecretString::from(key))?,
        );
        client_config.rate_limits = codesign_kit::order::RateLimits::none();
        let client = Client::new(client_config)?;
        let provisioner = Provisioner::new(
            Journal::open(&plan_path.with_extension("journal.sqlite"))?,
            client,
            ProvisionerConfig {
                workers,
                wait: Duration::from_secs(30),
                ..ProvisionerConfig::new(dir.path().join(format!("{name}-records")))
            },
        )?;
        eprintln!(
            "batch: round {}/{rounds}: {} jobs with {workers} worker(s)",
            round + 1,
            args.batch_jobs
        );
        let cpu_before = process_cpu_seconds();
        let (elapsed, summary) = time(|| Ok(provisioner.run(&plan, &Quiet)?))?;
        if summary.done as usize != args.batch_jobs {
            bail!("the batch bench did not finish: {summary:?}");
        }
        if let (Some(before), Some(after)) = (cpu_before, process_cpu_seconds()) {
            eprintln!(
                "batch: {:.2} s wall, {:.2} s CPU (tool and emulator): {:.2} cores busy",
                elapsed.as_secs_f64(),
                after - before,
                (after - before) / elapsed.as_secs_f64()
            );
        }
        keys_per_second.push((workers, args.batch_jobs as f64 / elapsed.as_secs_f64()));
    }
    let throughput = medians(&keys_per_second);
    let mut memory = Vec::new();
    let have_time = Path::new("/usr/bin/time").exists();
    for &jobs in &args.memory_jobs {
        let plan_path = plan_for(&format!("m{jobs}"), jobs)?;
        eprintln!("batch: peak memory of provision with {jobs} jobs");
        let start = Instant::now();
        let mut command = if have_time {
            let mut c = Command::new("/usr/bin/time");
            c.args(["-f", "maxrss_kb=%M"]).arg(std::env::current_exe()?);
            c
        } else {
            Command::new(std::env::current_exe()?)
        };
        let out = command
            .args(["provision", "--plan"])
            .arg(&plan_path)
            .args(["--workers", "2", "--json", "--no-request-limits"])
            .env("DIGICERT_API_KEY", key)
            .env("CERTCENTRAL_BASE_URL", emulator.api_base())
            .output()?;
        let elapsed = start.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "provision with {jobs} jobs failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        let rss = String::from_utf8_lossy(&out.stderr).lines().find_map(|l| {
            l.strip_prefix("maxrss_kb=")
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        memory.push((jobs, rss, elapsed));
    }
    emulator.stop();
    eprintln!("batch: disk flush rate with 1 and 2 threads");
    let mut rates = Vec::new();
    for threads in one_two_alternating(3) {
        rates.push((threads, disk_flush_rate(dir.path(), threads, 1000)?));
    }
    let disk_flushes = medians(&rates);
    Ok(Batch {
        throughput,
        disk_flushes,
        memory,
    })
}
