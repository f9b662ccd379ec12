//! What `cargo xtask bench` takes.

use anyhow::Result;
use clap::Args;
use codesign_kit::keys::KeyAlgorithm;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Add the reference columns: `openssl genpkey`; the pkcs11-tool + openssl shell pipeline; raw
    /// C_GenerateKeyPair.
    #[arg(long)]
    pub(super) compare: bool,
    /// Print one JSON document.
    #[arg(long)]
    pub(super) json: bool,
    /// Keys per algorithm and path (default: 30 for RSA, 200 for EC in software; 20 / 50 on the token).
    #[arg(long, value_name = "N")]
    pub(super) iterations: Option<usize>,
    /// Jobs per batch round (P-256 software keys against the emulator).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub(super) batch_jobs: usize,
    /// Batch rounds per worker count (1 and 2 workers alternate; the median round counts).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(super) batch_rounds: usize,
    /// Plan sizes whose peak memory is measured (a `provision` process each).
    #[arg(
        long,
        value_name = "N",
        value_delimiter = ',',
        default_value = "100,10000"
    )]
    pub(super) memory_jobs: Vec<usize>,
    /// Jobs of the limits section's API-bound row (P-256 software keys; 1000 take about 7
    /// minutes; 0 skips the row).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(super) limit_jobs: usize,
    /// RSA-3072 jobs of the limits section's token-bound row (SoftHSM, 2 workers; 0 skips it).
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub(super) token_bound_jobs: usize,
    /// Jobs a round of the journal section's per-job cost (SQLite and PostgreSQL alternate).
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub(super) journal_jobs: usize,
    /// RSA-3072 jobs of the journal section's one-host and two-host runs (0 skips them).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub(super) hosts_jobs: usize,
    /// The cli section's token lives here (default: the system's temporary directory); e.g.
    /// /dev/shm to see the processes without the disk under SoftHSM's object files.
    #[arg(long, value_name = "DIR")]
    pub(super) token_dir: Option<std::path::PathBuf>,
    /// Only these algorithms in the software and token sections (default: all four; the cli
    /// section: p256 and p384).
    #[arg(long, value_delimiter = ',', value_name = "ALG")]
    pub(super) algorithms: Vec<String>,
    /// Run only these sections (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SECTION")]
    pub(super) only: Vec<Section>,
}

/// The parts of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Section {
    /// Software keygen per algorithm.
    Software,
    /// Keygen + audit + CSR on a SoftHSM token.
    Token,
    /// Batch throughput and peak memory of `provision`.
    Batch,
    /// `keygen --csr-out` on a SoftHSM token as whole processes of the release binary, beside
    /// `pkcs11-tool --keypairgen` + `openssl req -engine pkcs11` and `keygen` + `csr`.
    Cli,
    /// The journal: per-job cost in PostgreSQL against SQLite, and two host processes against
    /// one on a token-bound plan through one PostgreSQL database (needs PostgreSQL).
    Journal,
    /// A batch against CertCentral's request limits (emulator limits on, ~150 ms answers); not
    /// in the default set: it takes minutes by design.
    Limits,
}

impl BenchArgs {
    pub(super) fn runs(&self, section: Section) -> bool {
        if self.only.is_empty() {
            return !matches!(section, Section::Limits | Section::Journal);
        }
        self.only.contains(&section)
    }

    pub(super) fn algorithms(&self) -> Result<Vec<KeyAlgorithm>> {
        if self.algorithms.is_empty() {
            return Ok(KeyAlgorithm::ALL.to_vec());
        }
        self.algorithms
            .iter()
            .map(|name| codesign_kit_cli::commands::keys::parse_algorithm(name))
            .collect()
    }
}
