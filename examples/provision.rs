//! Driving the provisioning pipeline from a Rust program, with a job source and a progress
//! observer of its own.
//!
//! Runs against the in-process CertCentral emulator with software keys, so it needs no account,
//! no token and no network:
//!
//! ```sh
//! cargo run --example provision
//! ```
//! A real pipeline would give `KeyLocation::Token { uri }` (a PKCS#11 token) and the CertCentral
//! base URL with a real API key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use certcentral_emulator::{Emulator, EmulatorConfig};
use codesign_kit::keys::KeyAlgorithm;
use codesign_kit::order::{ApiKey, BaseUrl, Client, ClientConfig, OrderRequest, Product};
use codesign_kit::pipeline::{
    JobOutcome, JobSpec, Journal, KeyLocation, Observer, OrderTemplate, Provisioner,
    ProvisionerConfig, Step,
};

/// Counts steps and prints each finished job.
#[derive(Default)]
struct Progress {
    steps: AtomicU64,
}

impl Observer for Progress {
    fn step(&self, _job_id: &str, _step: Step, _detail: &str) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }
    fn finished(&self, outcome: &JobOutcome) {
        println!(
            "{}: {:?}, order {:?}, certificate {:?}",
            outcome.job_id, outcome.state, outcome.order_id, outcome.certificate_id
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workdir = tempfile::tempdir()?;
    let api_key = "example-api-key";
    let emulator = Emulator::start(EmulatorConfig::new(api_key), "127.0.0.1:0".parse()?)?;
    let client = Client::new(ClientConfig::new(
        BaseUrl::parse(&emulator.api_base())?,
        ApiKey::new(api_key.to_string().into())?,
    ))?;

    // The order every job places (its CSR and alternative order ID are filled per job).
    let order = OrderTemplate {
        product: Product::CodeSigningEv,
        request: OrderRequest::from_json(
            r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
                "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#,
        )?,
    };
    // A job source of our own: any cloneable iterator of JobSpec (a database cursor, a queue...).
    let keys_dir = workdir.path().join("keys");
    let subject: codesign_kit::keys::SubjectDn = "CN=Example Corp,O=Example Corp,C=US".parse()?;
    let jobs = (1..=3).map(move |n| JobSpec {
        job_id: format!("build-signer-{n}"),
        algorithm: KeyAlgorithm::P256,
        subject: subject.clone(),
        location: KeyLocation::File {
            path: keys_dir.join(format!("build-signer-{n}.pem")),
        },
        label: format!("build-signer-{n}"),
        renewal_of: None,
        reissue_of: None,
    });

    let provisioner = Provisioner::new(
        Journal::open(&workdir.path().join("journal.sqlite"))?,
        client,
        ProvisionerConfig {
            workers: 2,
            wait: Duration::from_secs(30),
            ..ProvisionerConfig::new(workdir.path().join("records"))
        },
    )?;
    let progress = Progress::default();
    let summary = provisioner.run_jobs(jobs, &order, &progress)?;
    println!(
        "{} done, {} pending, {} failed, {} steps journaled",
        summary.done,
        summary.pending.len(),
        summary.failed.len(),
        progress.steps.load(Ordering::Relaxed)
    );
    emulator.stop();
    Ok(())
}
