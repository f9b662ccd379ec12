//! `bench`: per-key timings on this machine, side by side with OpenSSL and pkcs11-tool
//! (`--compare`), interleaved so that drift hits every column alike.
//!
//! The criterion benchmarks (`cargo bench --bench keygen`) give the fine-grained, statistically
//! checked figures; this command answers "how does it compare with what we use today".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use codesign_kit::keys::pkcs11::{KeyRequest, Module, Pin, Pkcs11Uri};
use codesign_kit::keys::{KeyAlgorithm, SoftwareKey, SubjectDn, csr};
use secrecy::SecretString;
use serde_json::json;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Add the reference columns: `openssl genpkey`; the pkcs11-tool + openssl shell pipeline; raw
    /// C_GenerateKeyPair.
    #[arg(long)]
    compare: bool,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    /// Keys per algorithm and path (default: 30 for RSA, 200 for EC in software; 20 / 50 on the token).
    #[arg(long, value_name = "N")]
    iterations: Option<usize>,
    /// Jobs per batch round (P-256 software keys against the emulator).
    #[arg(long, value_name = "N", default_value_t = 200)]
    batch_jobs: usize,
    /// Batch rounds per worker count (1 and 2 workers alternate; the median round counts).
    #[arg(long, value_name = "N", default_value_t = 3)]
    batch_rounds: usize,
    /// Plan sizes whose peak memory is measured (a `provision` process each).
    #[arg(
        long,
        value_name = "N",
        value_delimiter = ',',
        default_value = "100,10000"
    )]
    memory_jobs: Vec<usize>,
    /// Only these algorithms in the software and token sections (default: all four).
    #[arg(long, value_delimiter = ',', value_name = "ALG")]
    algorithms: Vec<String>,
    /// Run only these sections (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SECTION")]
    only: Vec<Section>,
}

/// The parts of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// Software keygen per algorithm.
    Software,
    /// Keygen + audit + CSR on a SoftHSM token.
    Token,
    /// Batch throughput and peak memory of `provision`.
    Batch,
}

impl BenchArgs {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }

    fn algorithms(&self) -> Result<Vec<KeyAlgorithm>> {
        if self.algorithms.is_empty() {
            return Ok(KeyAlgorithm::ALL.to_vec());
        }
        self.algorithms
            .iter()
            .map(|name| super::keys::parse_algorithm(name))
            .collect()
    }
}

/// Timings of one path.
#[derive(Debug, Clone, Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn stats(&self) -> Option<(f64, f64, f64)> {
        if self.0.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let median = ms[ms.len() / 2];
        let p90 = ms[((ms.len() as f64 * 0.9).ceil() as usize)
            .saturating_sub(1)
            .min(ms.len() - 1)];
        Some((mean, median, p90))
    }
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let start = Instant::now();
    let value = f()?;
    Ok((start.elapsed(), value))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn run_quiet(command: &mut Command) -> Result<()> {
    let out = command.output().context("cannot start a reference tool")?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn openssl_genpkey_args(alg: KeyAlgorithm) -> Vec<String> {
    let mut args: Vec<String> = vec!["genpkey".into()];
    match alg.rsa_bits() {
        Some(bits) => args.extend([
            "-algorithm".into(),
            "RSA".into(),
            "-pkeyopt".into(),
            format!("rsa_keygen_bits:{bits}"),
        ]),
        None => args.extend([
            "-algorithm".into(),
            "EC".into(),
            "-pkeyopt".into(),
            format!(
                "ec_paramgen_curve:{}",
                if alg == KeyAlgorithm::P256 {
                    "P-256"
                } else {
                    "P-384"
                }
            ),
        ]),
    }
    args.extend(["-out".into(), "/dev/null".into()]);
    args
}

struct Row {
    section: &'static str,
    algorithm: KeyAlgorithm,
    ours: Samples,
    /// On the token: the `C_GenerateKeyPair` call inside each of our keys, in the same order as
    /// `ours`. Paired key by key, it gives our overhead without the spread of key generation.
    token_call: Option<Samples>,
    references: Vec<(&'static str, Option<Samples>)>,
}

/// Our overhead over the token's own key generation, paired key by key: the mean of (our whole
/// path - its `C_GenerateKeyPair` call) in ms, and the sum of our times over the sum of the calls'.
fn paired_overhead(ours: &Samples, token_call: &Samples) -> Option<(f64, f64)> {
    if ours.0.is_empty() || ours.0.len() != token_call.0.len() {
        return None;
    }
    let whole: Duration = ours.0.iter().sum();
    let calls: Duration = token_call.0.iter().sum();
    if calls.is_zero() {
        return None;
    }
    let overhead_ms = (whole.as_secs_f64() - calls.as_secs_f64()) * 1000.0 / ours.0.len() as f64;
    Some((overhead_ms, whole.as_secs_f64() / calls.as_secs_f64()))
}

fn software(args: &BenchArgs, rows: &mut Vec<Row>) -> Result<()> {
    let openssl = args.compare && have("openssl");
    for alg in args.algorithms()? {
        let n = args
            .iterations
            .unwrap_or(if alg.rsa_bits().is_some() { 30 } else { 200 });
        eprintln!("software {alg}: {n} keys per path");
        let (mut ours, mut theirs) = (Samples::default(), Samples::default());
        for _ in 0..n {
            ours.0.push(time(|| Ok(SoftwareKey::generate(alg)?))?.0);
            if openssl {
                theirs.0.push(
                    time(|| run_quiet(Command::new("openssl").args(openssl_genpkey_args(alg))))?.0,
                );
            }
        }
        let references = if args.compare {
            vec![("openssl genpkey", openssl.then_some(theirs))]
        } else {
            Vec::new()
        };
        rows.push(Row {
            section: "software keygen",
            algorithm: alg,
            ours,
            token_call: None,
            references,
        });
    }
    Ok(())
}

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn token(args: &BenchArgs, rows: &mut Vec<Row>) -> Result<()> {
    if !Path::new(SOFTHSM).exists() || !have("softhsm2-util") {
        eprintln!("token: SoftHSM2 is not installed; no token figures (apt-get install softhsm2)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    // SAFETY: set before this process loads the module; the bench runs on one thread here.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let pin = "bench-user-pin";
    run_quiet(Command::new("softhsm2-util").args([
        "--init-token",
        "--free",
        "--label",
        "bench",
        "--so-pin",
        "bench-so-pin",
        "--pin",
        pin,
    ]))?;
    let uri: Pkcs11Uri = format!("pkcs11:token=bench?module-path={SOFTHSM}").parse()?;
    let token = Module::resolve(&uri, None)?.find_token(&uri)?;
    let session = token.login(&Pin::new(SecretString::from(pin)))?;
    let subject: SubjectDn = "CN=Example Corp,C=US".parse()?;
    let shell = args.compare && have("pkcs11-tool") && have("openssl") && engine_path().is_some();
    let openssl_conf = dir.path().join("openssl.cnf");
    if let Some(engine) = engine_path() {
        std::fs::write(
            &openssl_conf,
            format!(
                "openssl_conf = init\n[init]\nengines = engines\n[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\ndynamic_path = {}\nMODULE_PATH = {SOFTHSM}\ninit = 0\n",
                engine.display()
            ),
        )?;
    }
    let raw = raw::Raw::open(SOFTHSM, "bench", pin)?;
    let mut counter = 0u64;
    for alg in args.algorithms()? {
        let n = args
            .iterations
            .unwrap_or(if alg.rsa_bits().is_some() { 20 } else { 50 });
        eprintln!("token {alg}: {n} keys per path");
        let (mut ours, mut token_call, mut shell_samples, mut raw_samples) = (
            Samples::default(),
            Samples::default(),
            Samples::default(),
            Samples::default(),
        );
        for _ in 0..n {
            counter += 1;
            let label = format!("k{counter}");
            let (elapsed, pending) = time(|| {
                let pending = session.generate_key_pair(&KeyRequest::new(alg, label.clone()))?;
                csr::build(&*pending, &subject)?;
                Ok(pending)
            })?;
            ours.0.push(elapsed);
            token_call.0.push(pending.generation_time());
            pending.discard()?;
            if args.compare {
                raw_samples.0.push(raw.generate_and_destroy(alg)?);
            }
            if shell {
                let label = format!("s{counter}");
                let key_type = match alg.rsa_bits() {
                    Some(bits) => format!("rsa:{bits}"),
                    None => format!(
                        "EC:{}",
                        if alg == KeyAlgorithm::P256 {
                            "prime256v1"
                        } else {
                            "secp384r1"
                        }
                    ),
                };
                let id = format!("{counter:08x}");
                let (elapsed, ()) = time(|| {
                    run_quiet(
                        Command::new("pkcs11-tool")
                            .args([
                                "--module",
                                SOFTHSM,
                                "--token-label",
                                "bench",
                                "--login",
                                "--pin",
                                pin,
                                "--keypairgen",
                            ])
                            .args([
                                "--key-type",
                                &key_type,
                                "--id",
                                &id,
                                "--label",
                                &label,
                                "--usage-sign",
                            ]),
                    )?;
                    run_quiet(
                        Command::new("openssl")
                            .env("OPENSSL_CONF", &openssl_conf)
                            .args([
                                "req", "-new", "-engine", "pkcs11", "-keyform", "engine", "-key",
                            ])
                            .arg(format!(
                                "pkcs11:token=bench;object={label};type=private;pin-value={pin}"
                            ))
                            .args(["-subj", "/CN=Example Corp/C=US", "-out", "/dev/null"]),
                    )
                })?;
                shell_samples.0.push(elapsed);
                for kind in ["privkey", "pubkey"] {
                    run_quiet(
                        Command::new("pkcs11-tool")
                            .args([
                                "--module",
                                SOFTHSM,
                                "--token-label",
                                "bench",
                                "--login",
                                "--pin",
                                pin,
                            ])
                            .args(["--delete-object", "--type", kind, "--id", &id]),
                    )?;
                }
            }
        }
        let references = if args.compare {
            vec![
                ("raw C_GenerateKeyPair", Some(raw_samples)),
                ("pkcs11-tool + openssl req", shell.then_some(shell_samples)),
            ]
        } else {
            Vec::new()
        };
        rows.push(Row {
            section: "token keygen+audit+CSR",
            algorithm: alg,
            ours,
            token_call: Some(token_call),
            references,
        });
    }
    Ok(())
}

fn engine_path() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|e| e.path().join("engines-3/pkcs11.so"))
        .find(|p| p.exists())
}

/// Raw cryptoki: C_GenerateKeyPair alone, for the overhead of our path.
mod raw {
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use codesign_kit::keys::KeyAlgorithm;
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    use cryptoki::session::{Session, UserType};

    pub struct Raw {
        session: Session,
    }

    impl Raw {
        pub fn open(module: &str, label: &str, pin: &str) -> Result<Raw> {
            let context = Pkcs11::new(module)?;
            match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                Ok(())
                | Err(cryptoki::error::Error::Pkcs11(
                    cryptoki::error::RvError::CryptokiAlreadyInitialized,
                    _,
                )) => {}
                Err(e) => return Err(e.into()),
            }
            let slot = context
                .get_slots_with_token()?
                .into_iter()
                .find(|s| {
                    context
                        .get_token_info(*s)
                        .is_ok_and(|t| t.label().trim_end() == label)
                })
                .ok_or_else(|| anyhow::anyhow!("no token {label}"))?;
            let session = context.open_rw_session(slot)?;
            match session.login(UserType::User, Some(&secrecy::SecretString::from(pin))) {
                Ok(())
                | Err(cryptoki::error::Error::Pkcs11(
                    cryptoki::error::RvError::UserAlreadyLoggedIn,
                    _,
                )) => {}
                Err(e) => return Err(e.into()),
            }
            // The context must outlive the session: keep it alive for the process.
            std::mem::forget(context);
            Ok(Raw { session })
        }

        /// Times one C_GenerateKeyPair with the same template as ours; destroys the pair untimed.
        pub fn generate_and_destroy(&self, alg: KeyAlgorithm) -> Result<Duration> {
            let mut public = vec![Attribute::Token(true), Attribute::Verify(true)];
            let private = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
            ];
            let mechanism = match alg.rsa_bits() {
                Some(bits) => {
                    public.push(Attribute::ModulusBits((bits as u64).into()));
                    public.push(Attribute::PublicExponent(vec![1, 0, 1]));
                    Mechanism::RsaPkcsKeyPairGen
                }
                None => {
                    let params = if alg == KeyAlgorithm::P256 {
                        vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
                    } else {
                        vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]
                    };
                    public.push(Attribute::EcParams(params));
                    Mechanism::EccKeyPairGen
                }
            };
            let start = Instant::now();
            let (pub_handle, priv_handle) = self
                .session
                .generate_key_pair(&mechanism, &public, &private)?;
            let elapsed = start.elapsed();
            self.session.destroy_object(priv_handle)?;
            self.session.destroy_object(pub_handle)?;
            Ok(elapsed)
        }
    }
}

fn fmt_stats(s: &Option<Samples>) -> String {
    match s.as_ref().and_then(Samples::stats) {
        Some((mean, median, p90)) => format!("{mean:>9.2} {median:>9.2} {p90:>9.2}"),
        None => format!("{:>29}", "tool missing"),
    }
}

struct Quiet;

impl codesign_kit::pipeline::Observer for Quiet {
    fn step(&self, _: &str, _: codesign_kit::pipeline::Step, _: &str) {}
    fn finished(&self, _: &codesign_kit::pipeline::JobOutcome) {}
}

/// Batch figures: throughput with 1 and 2 workers, and peak memory by plan size.
struct Batch {
    throughput: Vec<(usize, f64)>,
    /// What the disk under the batch allows: `fdatasync`s per second with 1 and 2 threads.
    disk_flushes: Vec<(usize, f64)>,
    memory: Vec<(usize, Option<u64>, f64)>,
}

/// `fdatasync`s per second on `dir`'s disk with `threads` threads, each appending 4 KiB and flushing
/// its own file `per_thread` times: every batch job waits for several flushes, so this bounds how
/// far more workers can help.
fn disk_flush_rate(dir: &Path, threads: usize, per_thread: usize) -> Result<f64> {
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

const BODY: &str = r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
  "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#;

/// 1, 2, 2, 1, 1, 2, ...: `rounds` runs per count, alternating so that the machine's drift (this
/// disk slows down as files come and go) hits both counts alike.
fn one_two_alternating(rounds: usize) -> impl Iterator<Item = usize> {
    (0..rounds.max(1) * 2).map(|round| if matches!(round % 4, 0 | 3) { 1 } else { 2 })
}

/// The median of each count's figures, in order of count.
fn medians(figures: &[(usize, f64)]) -> Vec<(usize, f64)> {
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
fn print_scaling(figures: &[(usize, f64)], line: impl Fn(usize, f64) -> String, unit: &str) {
    let one = figures.iter().find(|(c, _)| *c == 1).map(|(_, v)| *v);
    for (count, value) in figures {
        let ratio = one
            .map(|o| format!("  x{:.2} of 1 {unit}", value / o))
            .unwrap_or_default();
        println!("  {}{ratio}", line(*count, *value));
    }
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, 100 ticks per second).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn batch(args: &BenchArgs) -> Result<Batch> {
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
        let client = Client::new(ClientConfig::new(
            BaseUrl::parse(&emulator.api_base())?,
            ApiKey::new(SecretString::from(key))?,
        ))?;
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
            .args(["--workers", "2", "--json"])
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

pub fn run(args: BenchArgs) -> Result<()> {
    let mut rows = Vec::new();
    if args.runs(Section::Software) {
        software(&args, &mut rows)?;
    }
    if args.runs(Section::Token) {
        token(&args, &mut rows)?;
    }
    let batch = if args.runs(Section::Batch) {
        Some(batch(&args)?)
    } else {
        None
    };
    if args.json {
        let doc: Vec<_> = rows
            .iter()
            .map(|r| {
                let stats = |s: &Samples| s.stats().map(|(mean, median, p90)| json!({"mean_ms": mean, "median_ms": median, "p90_ms": p90, "n": s.0.len()}));
                let paired = r.token_call.as_ref().and_then(|calls| paired_overhead(&r.ours, calls));
                json!({
                    "section": r.section,
                    "algorithm": r.algorithm.cli_name(),
                    "ours": stats(&r.ours),
                    "token_call_inside_ours": r.token_call.as_ref().and_then(stats),
                    "paired": paired.map(|(overhead_ms, ratio)| json!({"overhead_ms": overhead_ms, "ratio": ratio})),
                    "references": r.references.iter().map(|(name, s)| json!({"name": name, "stats": s.as_ref().and_then(stats)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let batch_doc = batch.as_ref().map(|b| {
            json!({
                "throughput_keys_per_s": b.throughput.iter().map(|(w, k)| json!({"workers": w, "keys_per_s": k})).collect::<Vec<_>>(),
                "disk_flushes_per_s": b.disk_flushes.iter().map(|(t, r)| json!({"threads": t, "flushes_per_s": r})).collect::<Vec<_>>(),
                "peak_rss": b.memory.iter().map(|(j, rss, secs)| json!({"jobs": j, "max_rss_kib": rss, "seconds": secs})).collect::<Vec<_>>(),
            })
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"per_key": doc, "batch": batch_doc}))?
        );
        return Ok(());
    }
    println!("per-key times in ms (mean, median, p90); ratio = our mean / reference mean");
    for row in &rows {
        println!("\n{} {}", row.section, row.algorithm);
        println!(
            "  {:<28} {}",
            "codesign-kit",
            fmt_stats(&Some(row.ours.clone()))
        );
        if let Some(calls) = &row.token_call {
            let paired = paired_overhead(&row.ours, calls)
                .map(|(overhead_ms, ratio)| {
                    format!("  paired: +{overhead_ms:.2} ms per key, ratio {ratio:.3}")
                })
                .unwrap_or_default();
            println!(
                "  {:<28} {}{paired}",
                "  its C_GenerateKeyPair call",
                fmt_stats(&Some(calls.clone()))
            );
        }
        for (name, samples) in &row.references {
            let ratio = match (row.ours.stats(), samples.as_ref().and_then(Samples::stats)) {
                (Some((ours, _, _)), Some((theirs, _, _))) => {
                    format!("  ratio {:.2}", ours / theirs)
                }
                _ => String::new(),
            };
            println!("  {:<28} {}{ratio}", name, fmt_stats(samples));
        }
    }
    if let Some(batch) = batch {
        println!("\nbatch (P-256 software keys, emulator on loopback)");
        print_scaling(
            &batch.throughput,
            |workers, keys| format!("{workers} worker(s): {keys:.1} keys/s"),
            "worker",
        );
        print_scaling(
            &batch.disk_flushes,
            |threads, rate| format!("disk, {threads} thread(s): {rate:.0} fdatasync/s"),
            "thread",
        );
        for (jobs, rss, secs) in &batch.memory {
            match rss {
                Some(kib) => println!(
                    "  {jobs} jobs: peak RSS {:.1} MiB ({secs:.1} s)",
                    *kib as f64 / 1024.0
                ),
                None => println!(
                    "  {jobs} jobs: peak RSS not measured (/usr/bin/time missing) ({secs:.1} s)"
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_and_the_median_round_counts() {
        assert_eq!(
            one_two_alternating(3).collect::<Vec<_>>(),
            [1, 2, 2, 1, 1, 2]
        );
        let figures = [(2, 9.0), (1, 5.0), (1, 1.0), (2, 7.0), (1, 3.0), (2, 8.0)];
        assert_eq!(medians(&figures), [(1, 3.0), (2, 8.0)]);
    }

    #[test]
    fn the_paired_overhead_is_per_key_and_the_ratio_is_of_sums() {
        let ms =
            |values: &[u64]| Samples(values.iter().map(|&v| Duration::from_millis(v)).collect());
        let (overhead, ratio) = paired_overhead(&ms(&[110, 520]), &ms(&[100, 500])).unwrap();
        assert!((overhead - 15.0).abs() < 1e-9, "{overhead}");
        assert!((ratio - 630.0 / 600.0).abs() < 1e-9, "{ratio}");
        assert_eq!(paired_overhead(&ms(&[110]), &ms(&[100, 500])), None);
        assert_eq!(paired_overhead(&ms(&[]), &ms(&[])), None);
    }
}
