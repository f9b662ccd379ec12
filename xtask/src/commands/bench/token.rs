//! Key generation, audit and CSR on a SoftHSM token, beside raw `C_GenerateKeyPair` and the
//! pkcs11-tool + `openssl req` pipeline.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use codesign_kit::keys::pkcs11::{KeyRequest, Module, Pin, Pkcs11Uri};
use codesign_kit::keys::{KeyAlgorithm, SubjectDn, csr};
use codesign_testkit::SoftHsm;
use secrecy::SecretString;

use super::args::BenchArgs;
use super::measure::{Row, Samples, have, run_quiet, time};

pub(super) fn token(args: &BenchArgs, rows: &mut Vec<Row>) -> Result<()> {
    let store = match SoftHsm::create() {
        Ok(store) => store,
        Err(why) => {
            eprintln!("token: no token figures: {why}");
            return Ok(());
        }
    };
    // SAFETY: set before this process loads the module; the bench runs on one thread here.
    unsafe { store.use_in_this_process() };
    let pin = "bench-user-pin";
    store
        .try_init_token("bench", "bench-so-pin", pin)
        .map_err(anyhow::Error::msg)?;
    let module = store.module().display().to_string();
    let module = module.as_str();
    let dir = store.dir();
    // pkcs11-tool logged in to the bench token.
    let pkcs11_tool = || {
        let mut command = Command::new("pkcs11-tool");
        command.args([
            "--module",
            module,
            "--token-label",
            "bench",
            "--login",
            "--pin",
            pin,
        ]);
        command
    };
    let uri: Pkcs11Uri = format!("pkcs11:token=bench?module-path={module}").parse()?;
    let token = Module::resolve(&uri, None)?.find_token(&uri)?;
    let session = token.login(&Pin::new(SecretString::from(pin)))?;
    let subject: SubjectDn = "CN=Example Corp,C=US".parse()?;
    let shell = args.compare && have("pkcs11-tool") && have("openssl") && engine_path().is_some();
    let openssl_conf = engine_conf(dir, module)?;
    let raw = raw::Raw::open(module, "bench", pin)?;
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
                let key_type = pkcs11_tool_key_type(alg);
                let id = format!("{counter:08x}");
                let (elapsed, ()) = time(|| {
                    run_quiet(pkcs11_tool().arg("--keypairgen").args([
                        "--key-type",
                        &key_type,
                        "--id",
                        &id,
                        "--label",
                        &label,
                        "--usage-sign",
                    ]))?;
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
                    run_quiet(pkcs11_tool().args([
                        "--delete-object",
                        "--type",
                        kind,
                        "--id",
                        &id,
                    ]))?;
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

/// `pkcs11-tool --key-type` of an algorithm.
pub(super) fn pkcs11_tool_key_type(alg: KeyAlgorithm) -> String {
    match (alg.rsa_bits(), alg) {
        (Some(bits), _) => format!("rsa:{bits}"),
        (None, KeyAlgorithm::P256) => "EC:prime256v1".to_string(),
        (None, _) => "EC:secp384r1".to_string(),
    }
}

/// An OpenSSL configuration in `dir` that loads the pkcs11 engine with `module` (when the engine
/// is installed); its path.
pub(super) fn engine_conf(dir: &std::path::Path, module: &str) -> Result<PathBuf> {
    let path = dir.join("openssl.cnf");
    if let Some(engine) = engine_path() {
        std::fs::write(
            &path,
            format!(
                "openssl_conf = init\n[init]\nengines = engines\n[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\ndynamic_path = {}\nMODULE_PATH = {module}\ninit = 0\n",
                engine.display()
            ),
        )?;
    }
    Ok(path)
}

pub(super) fn engine_path() -> Option<PathBuf> {
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
