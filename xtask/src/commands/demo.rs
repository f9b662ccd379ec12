//! `demo`: the whole pipeline on embedded defaults: a throwaway SoftHSM token (a software key when
//! SoftHSM is not installed), the emulator in-process, one EV code signing job.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use codesign_kit::order::{ApiKey, BaseUrl, Client, ClientConfig};
use codesign_kit::pipeline::{Journal, Plan, PrintObserver, Provisioner, ProvisionerConfig};
use secrecy::SecretString;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files (plan, journal, records, keys) in this directory.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

pub fn demo(args: DemoArgs) -> Result<()> {
    let temp = tempfile::tempdir().context("cannot make a temporary directory")?;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    // A throwaway SoftHSM token when SoftHSM is installed; else a software key.
    let store = match codesign_testkit::SoftHsm::create_in(&dir) {
        Ok(store) => Some(store),
        Err(why) => {
            println!("key store: {why}; so a software key instead");
            None
        }
    };
    let token_uri = match &store {
        Some(store) => {
            // SAFETY: set before any thread of this process reads the environment or loads a
            // module.
            unsafe { store.use_in_this_process() };
            let pin = codesign_kit::order::generate_alternative_order_id()?;
            let pin_file = dir.join("user.pin");
            codesign_kit::keys::files::write_atomically(
                &pin_file,
                pin.as_bytes(),
                codesign_kit::keys::files::PRIVATE_FILE_MODE,
                codesign_kit::keys::files::Overwrite::Replace,
            )?;
            let so_pin = codesign_kit::order::generate_alternative_order_id()?;
            store
                .try_init_token("codesign-demo", &so_pin, &pin)
                .map_err(anyhow::Error::msg)?;
            println!(
                "key store: a throwaway SoftHSM token \"codesign-demo\" in {}",
                store.dir().join("tokens").display()
            );
            Some(format!(
                "pkcs11:token=codesign-demo?module-path={}&pin-source=file:{}",
                store.module().display(),
                pin_file.display()
            ))
        }
        None => None,
    };
    let key_section = match &token_uri {
        Some(uri) => format!("token = \"{uri}\""),
        None => "directory = \"keys\"".to_string(),
    };
    let api_key = codesign_kit::order::generate_alternative_order_id()?;
    let emulator = certcentral_emulator::Emulator::start(
        certcentral_emulator::EmulatorConfig::new(api_key.clone()),
        "127.0.0.1:0".parse().expect("a loopback address"),
    )?;
    println!("CertCentral: the local emulator at {}", emulator.api_base());
    std::fs::write(
        dir.join("order-body.json"),
        r#"{
  "certificate": { "signature_hash": "sha256" },
  "cs_provisioning_method": "email",
  "order_validity": { "years": 1 },
  "skip_approval": true,
  "organization": { "id": 123456 },
  "comments": "codesign-kit demo"
}
"#,
    )?;
    let plan_path = dir.join("plan.toml");
    std::fs::write(
        &plan_path,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"order-body.json\"\n\n[[keys]]\nalgorithm = \"rsa3072\"\n{key_section}\nlabel = \"demo-ev-signer\"\nsubject = \"CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US\"\n"
        ),
    )?;
    let plan = Plan::load(&plan_path)?;
    let journal = Journal::open(&dir.join("plan.journal.sqlite"))?;
    let client = Client::new(ClientConfig::new(
        BaseUrl::parse(&emulator.api_base())?,
        ApiKey::new(SecretString::from(api_key))?,
    ))?;
    let provisioner = Provisioner::new(
        journal,
        client,
        ProvisionerConfig {
            wait: Duration::from_secs(60),
            ..ProvisionerConfig::new(dir.join("records"))
        },
    )?;
    let summary = provisioner.run(&plan, &PrintObserver)?;
    if summary.done != 1 {
        let reasons: Vec<String> = summary
            .pending
            .iter()
            .chain(&summary.failed)
            .map(|o| {
                format!(
                    "{:?} after {}: {}",
                    o.state,
                    o.step.as_str(),
                    o.note.as_deref().unwrap_or("")
                )
            })
            .collect();
        bail!("the demo job did not finish: {}", reasons.join("; "));
    }
    let job = provisioner
        .journal()
        .load("demo-ev-signer")?
        .context("the demo job is in the journal")?;
    let record_path = dir.join("records").join("demo-ev-signer.json");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&record_path)?)?;
    // Check, independently of the pipeline's own check, that the key and certificate match.
    if let Some(uri) = &token_uri {
        use codesign_kit::keys::KeySigner;
        let uri: codesign_kit::keys::pkcs11::Pkcs11Uri = uri.parse()?;
        let token = codesign_kit::keys::pkcs11::Module::resolve(&uri, None)?.find_token(&uri)?;
        let session = token.login(&codesign_kit::keys::pkcs11::Pin::resolve(
            &uri,
            &token.description(),
            &codesign_kit::keys::pkcs11::NoPinSource,
        )?)?;
        let key = session.find_key(None, Some("demo-ev-signer"))?;
        let cert = session
            .certificate_for(&key)?
            .context("no certificate beside the key on the token")?;
        let facts = codesign_kit::keys::spki::certificate_facts(&cert)?;
        if facts.subject_public_key_info != key.subject_public_key_info() {
            bail!("the certificate on the token does not match its key");
        }
        println!(
            "verified: the certificate on the token carries the public key of {}",
            record["key"]["uri"].as_str().unwrap_or("")
        );
    }
    println!("order ID: {}", job.order_id.unwrap_or_default());
    println!(
        "certificate subject: {}",
        record["certificate"]["subject"].as_str().unwrap_or("")
    );
    println!(
        "certificate serial: {}",
        record["certificate"]["serial"].as_str().unwrap_or("")
    );
    println!("provisioning record: {}", record_path.display());
    if args.keep.is_none() {
        println!("(the demo's files are removed; pass --keep DIR to keep them)");
    }
    emulator.stop();
    Ok(())
}
