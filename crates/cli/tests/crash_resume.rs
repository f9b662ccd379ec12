//! `provision` crashing at the two moments a SIGKILL from outside cannot aim at: right after the
//! token made a key pair and before the journal heard of it, and right after a certificate was
//! written to the token and before the journal heard of it. The shim module (`crates/p11shim`)
//! aborts the process there, on several jobs and two workers; `--resume` must then find the key
//! ("key found on the token after an interrupted run") and the certificate ("already on the
//! token") instead of making them again. pkcs11-tool, on the real module, counts what is on the
//! token; the emulator counts the orders.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use certcentral_emulator::{Emulator, EmulatorConfig, Settings};
use codesign_kit::pipeline::Journal;
use codesign_testkit::{SoftHsm, USER_PIN, authority_certificates, count_with_id, p11shim};

const KEY: &str = "crash-resume-key-51e0";
const JOBS: usize = 6;

struct Bench {
    hsm: SoftHsm,
    emu: Emulator,
    dir: tempfile::TempDir,
    plan: std::path::PathBuf,
}

impl Bench {
    fn new(token: &str) -> Bench {
        let hsm = SoftHsm::new();
        hsm.init_token(token);
        let mut config = EmulatorConfig::new(KEY);
        config.settings = Settings {
            polls_until_issued: 0,
            rate_limits: false,
            ..Settings::default()
        };
        let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("body.json"),
            r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
                "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#,
        )
        .unwrap();
        let plan = dir.path().join("plan.toml");
        std::fs::write(
            &plan,
            format!(
                "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = {JOBS}\nalgorithm = \"p256\"\n\
                 token = \"pkcs11:token={token}?module-path={}\"\nlabel = \"job-{{n}}\"\n\
                 subject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
                p11shim().display(),
            ),
        )
        .unwrap();
        Bench {
            hsm,
            emu,
            dir,
            plan,
        }
    }

    /// `provision` through the shim, two workers; `abort_after` arms the shim's crash.
    fn provision(&self, resume: bool, abort_after: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
        command
            .args(["provision", "--plan", self.plan.to_str().unwrap()])
            .args(["--workers", "2", "--wait", "20s", "--lock-dir"])
            .arg(self.dir.path().join("locks"))
            .env("DIGICERT_API_KEY", KEY)
            .env("CERTCENTRAL_BASE_URL", self.emu.api_base())
            .env("PKCS11_PIN", USER_PIN)
            .env("P11SHIM_MODULE", self.hsm.module());
        if resume {
            command.arg("--resume");
        }
        for (k, v) in self.hsm.env() {
            command.env(k, v);
        }
        if let Some(call) = abort_after {
            command.env("P11SHIM_ABORT_AFTER", call);
        }
        command.output().unwrap()
    }

    /// Every job done, each with one order, one key pair and one certificate on the token under
    /// the CKA_ID its journal row holds, and nothing else on the token.
    fn assert_each_job_once(&self, token: &str) {
        let journal = Journal::open(&self.plan.with_extension("journal.sqlite")).unwrap();
        assert_eq!(journal.counts().unwrap(), (JOBS as u64, 0, 0, 0));
        assert_eq!(self.emu.order_count(), JOBS);
        let listing = self.hsm.list_objects(token);
        for kind in [
            "Private Key Object",
            "Public Key Object",
            "Certificate Object",
        ] {
            assert_eq!(count_with_id(&listing, kind), JOBS, "{kind}: {listing}");
        }
        // The chain's intermediate, once, whatever the number of keys it signed.
        assert_eq!(
            authority_certificates(&listing),
            ["CertCentral Emulator Code Signing CA"],
            "{listing}"
        );
        for n in 1..=JOBS {
            let row = journal.load(&format!("job-{n}")).unwrap().unwrap();
            assert_eq!(
                self.emu
                    .orders_with_alternative_id(&row.alternative_order_id),
                1,
                "job-{n}"
            );
            let id: String = row.key_id.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                listing.matches(&format!("ID:         {id}")).count(),
                3,
                "job-{n}: key, public key and certificate under {id}: {listing}"
            );
        }
    }
}

fn aborted(out: &Output) -> bool {
    out.status.signal() == Some(libc_sigabrt())
}

/// SIGABRT, as `std::process::abort` raises it.
fn libc_sigabrt() -> i32 {
    6
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Crashed right after the third `C_GenerateKeyPair` returned: that key exists on the token and
/// the journal holds only its announced CKA_ID. The resumed run finds it by that ID, makes no
/// second key for the job, and finishes every job once.
#[test]
fn a_crash_between_key_generation_and_the_journal_resumes_with_the_key_found() {
    let bench = Bench::new("crash-keygen");
    let out = bench.provision(false, Some("C_GenerateKeyPair:3"));
    assert!(aborted(&out), "{}", text(&out));
    let listing = bench.hsm.list_objects("crash-keygen");
    assert_eq!(
        count_with_id(&listing, "Private Key Object"),
        3,
        "three keys made before the crash: {listing}"
    );

    let out = bench.provision(true, None);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("after an interrupted run"),
        "the resume path that finds a key was not taken: {}",
        text(&out)
    );
    bench.assert_each_job_once("crash-keygen");
}

/// Crashed right after the second key's certificate was written to the token (the third
/// `C_CreateObject`: the first job's leaf, the chain's intermediate, the second job's leaf): the
/// journal does not know it is there. The resumed run sees the same certificate on the token,
/// adds none, and finishes every job once.
#[test]
fn a_crash_between_certificate_install_and_the_journal_resumes_with_the_certificate_found() {
    let bench = Bench::new("crash-install");
    let out = bench.provision(false, Some("C_CreateObject:3"));
    assert!(aborted(&out), "{}", text(&out));
    let listing = bench.hsm.list_objects("crash-install");
    assert_eq!(
        count_with_id(&listing, "Certificate Object"),
        2,
        "two certificates written before the crash: {listing}"
    );

    let out = bench.provision(true, None);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already on the token"),
        "the resume path that finds a certificate was not taken: {}",
        text(&out)
    );
    bench.assert_each_job_once("crash-install");
    assert!(Path::new(&bench.dir.path().join("records/job-1.json")).exists());
}
