//! What a run checks before it touches any token or sends anything: every token the plan names is
//! found and can make every algorithm the plan asks of it, and no software key is ordered from a
//! CertCentral off this machine unless the user said so.

use std::collections::{HashMap, HashSet};

use crate::keys::KeyAlgorithm;
use crate::keys::pkcs11::{Module, TokenRef};
use crate::keys::storage::{HARDWARE_KEY_RULE, KeyStorage};
use crate::order::BaseUrl;
use crate::pipeline::error::PipelineError;
use crate::pipeline::plan::{JobSpec, KeyLocation};

use super::report::Observer;

/// Where the run orders from, and whether software keys may go there.
pub(super) struct OrderTarget<'a> {
    pub(super) url: &'a BaseUrl,
    pub(super) allow_software_keys: bool,
}

/// The plan's tokens as this host sees them.
#[derive(Default)]
pub(super) struct Found {
    /// The tokens found, keyed by their URI text.
    pub(super) tokens: HashMap<String, TokenRef>,
    /// On a shared journal: the tokens not on this host (their module's file missing, or no such
    /// token in it), keyed by their URI text, with why. Their jobs are left to the hosts that
    /// have them.
    pub(super) absent: HashMap<String, String>,
}

/// Whether `error` says that a token is not on this machine at all (as opposed to a token that
/// is there and fails).
fn not_on_this_host(error: &crate::keys::KeysError) -> bool {
    use crate::keys::KeysError;
    match error {
        KeysError::TokenNotFound { .. } => true,
        KeysError::Pkcs11Module { path, .. } => !path.exists(),
        _ => false,
    }
}

/// The tokens of the plan, found; the run stops with the first problem. On a shared journal
/// (`shared`), a token that is not on this host stops nothing: it is said once and its jobs are
/// left to the hosts that have it.
pub(super) fn check<I>(
    jobs: I,
    module_arg: Option<&std::path::Path>,
    target: &OrderTarget<'_>,
    shared: bool,
    observer: &dyn Observer,
) -> Result<Found, PipelineError>
where
    I: Iterator<Item = JobSpec>,
{
    let mut tokens: HashMap<String, TokenRef> = HashMap::new();
    let mut absent: HashMap<String, String> = HashMap::new();
    let mut checked: HashSet<(String, KeyAlgorithm)> = HashSet::new();
    let mut software: Option<(String, KeyStorage)> = None;
    for spec in jobs {
        let storage = match &spec.location {
            KeyLocation::File { .. } => KeyStorage::File,
            KeyLocation::Token { uri } => {
                let key = uri.to_uri_string(false);
                if absent.contains_key(&key) {
                    continue;
                }
                if !tokens.contains_key(&key) {
                    let found =
                        Module::resolve(uri, module_arg).and_then(|module| module.find_token(uri));
                    match found {
                        Ok(token) => {
                            tokens.insert(key.clone(), token);
                        }
                        Err(e) if shared && not_on_this_host(&e) => {
                            observer.notice(&format!(
                                "token {}: not on this host ({e}); its jobs are left to the hosts that have it",
                                uri.token_description()
                            ));
                            absent.insert(key, e.to_string());
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let Some(token) = tokens.get(&key) else {
                    continue;
                };
                if checked.insert((key, spec.algorithm)) {
                    token.check_capability(spec.algorithm)?;
                }
                token.storage()
            }
        };
        if storage.is_software() && software.is_none() {
            software = Some((spec.job_id.clone(), storage));
        }
    }
    if let Some((job_id, storage)) = software {
        if target.url.is_loopback() {
            observer.notice(&format!(
                "software keys (job {job_id}: {storage}) are ordered from {}, a CertCentral on this machine: fine for tests, but a publicly trusted CA refuses them",
                target.url.as_str()
            ));
        } else if target.allow_software_keys {
            observer.notice(&format!(
                "software keys (job {job_id}: {storage}) are ordered from {} as --allow-software-key says: only a private CA may issue for them; {HARDWARE_KEY_RULE}",
                target.url.as_str()
            ));
        } else {
            return Err(PipelineError::SoftwareKey {
                job_id,
                storage: storage.to_string(),
                url: target.url.as_str().to_string(),
            });
        }
    }
    Ok(Found { tokens, absent })
}

/// `workers`, or fewer when a token allows fewer read-write sessions than the run would open on
/// it (one per worker, and the login's own), said once.
pub(super) fn workers_within_session_limits(
    workers: usize,
    tokens: &HashMap<String, TokenRef>,
    observer: &dyn Observer,
) -> Result<usize, PipelineError> {
    let mut allowed = workers;
    for token in tokens.values() {
        if let Some(limit) = token.max_rw_sessions()? {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let room = limit.saturating_sub(1).max(1);
            if room < allowed {
                observer.notice(&format!(
                    "{} allows {limit} read-write session(s) at once: running {room} worker(s) instead of {workers}",
                    token.description()
                ));
                allowed = room;
            }
        }
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::sync::Mutex;

    use super::*;
    use crate::pipeline::journal::Step;
    use crate::pipeline::provision::report::JobOutcome;

    #[derive(Default)]
    struct Notices(Mutex<Vec<String>>);

    impl Observer for Notices {
        fn step(&self, _: &str, _: Step, _: &str) {}
        fn finished(&self, _: &JobOutcome) {}
        fn notice(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_string());
        }
    }

    fn file_job(label: &str) -> JobSpec {
        JobSpec {
            job_id: label.to_string(),
            algorithm: KeyAlgorithm::P256,
            subject: "CN=Example Corp,C=US".parse().unwrap(),
            location: KeyLocation::File {
                path: format!("keys/{label}.pem").into(),
            },
            label: label.to_string(),
            renewal_of: None,
            reissue_of: None,
        }
    }

    fn run(url: &str, allow: bool) -> (Result<(), String>, Vec<String>) {
        let url = BaseUrl::parse(url).unwrap();
        let notices = Notices::default();
        let target = OrderTarget {
            url: &url,
            allow_software_keys: allow,
        };
        let jobs = vec![file_job("a"), file_job("b")];
        let result = check(jobs.into_iter(), None, &target, false, &notices)
            .map(|_| ())
            .map_err(|e| e.to_string());
        (result, notices.0.into_inner().unwrap())
    }

    #[test]
    fn software_keys_go_only_to_a_local_certcentral_or_with_leave() {
        let (result, notices) = run("https://192.0.2.10/services/v2", false);
        let err = result.unwrap_err();
        assert!(
            err.starts_with("job a: its key would be in a key file"),
            "{err}"
        );
        assert!(notices.is_empty());

        let (result, notices) = run("https://192.0.2.10/services/v2", true);
        assert!(result.is_ok());
        assert_eq!(notices.len(), 1, "said once, not per job");
        assert!(notices[0].contains("only a private CA"), "{notices:?}");

        let (result, notices) = run("http://127.0.0.1:9/services/v2", false);
        assert!(result.is_ok());
        assert_eq!(notices.len(), 1);
        assert!(
            notices[0].contains("a CertCentral on this machine"),
            "{notices:?}"
        );
    }
}
