//! One login per token per run: made before any job, whatever the number of jobs and workers, so
//! that a wrong PIN costs one try of the token's counter, not one per job.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::keys::pkcs11::{Pin, PinSource, Pkcs11Uri, TokenSession};
use crate::pipeline::error::PipelineError;
use crate::pipeline::plan::{JobSpec, KeyLocation};

use super::report::Observer;

/// One token's login for a run.
pub(super) enum TokenLogin {
    /// Logged in; workers open their own sessions beside this one
    /// ([`TokenSession::open_another`]).
    Ready(Mutex<TokenSession>),
    /// The login was refused (wrong, locked or expired PIN, ...): every job of the token stops
    /// with this error, untouched, for this run.
    Refused {
        /// The token, described.
        token: String,
        /// Why.
        reason: String,
    },
}

impl TokenLogin {
    /// The error of a job whose token refused the login.
    pub(super) fn refusal(&self) -> Option<PipelineError> {
        match self {
            TokenLogin::Ready(_) => None,
            TokenLogin::Refused { token, reason } => Some(PipelineError::NotLoggedIn {
                token: token.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// A new session beside the login, for one worker.
    pub(super) fn open_session(&self) -> Result<TokenSession, PipelineError> {
        match self {
            TokenLogin::Ready(login) => Ok(login
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open_another()?),
            TokenLogin::Refused { token, reason } => Err(PipelineError::NotLoggedIn {
                token: token.clone(),
                reason: reason.clone(),
            }),
        }
    }
}

/// The tokens of a run: each URI of the plan mapped to its token's one login.
#[derive(Default)]
pub(super) struct TokenLogins {
    by_uri: HashMap<String, usize>,
    logins: Vec<TokenLogin>,
    /// On a shared journal, the tokens not on this host, with why (see `preflight::Found`).
    absent: HashMap<String, String>,
}

impl TokenLogins {
    /// The login of the token a URI of the plan names.
    pub(super) fn of(&self, uri: &Pkcs11Uri) -> Option<&TokenLogin> {
        self.by_uri
            .get(&uri.to_uri_string(false))
            .map(|i| &self.logins[*i])
    }

    /// Why the token a URI names is not on this host, when it is not (a shared journal's run).
    pub(super) fn absent(&self, uri: &Pkcs11Uri) -> Option<&str> {
        self.absent
            .get(&uri.to_uri_string(false))
            .map(String::as_str)
    }
}

/// Logs in to every token of `jobs` once, asking each token's PIN once. A token that is
/// missing, or whose PIN cannot be had, stops the run before any job; a login that fails
/// (wrong, locked, expired PIN) stops that token's jobs for this run, said once to the
/// observer, and the other tokens' jobs go on.
pub(super) fn log_in<I>(
    jobs: I,
    found: &super::preflight::Found,
    pins: &dyn PinSource,
    observer: &dyn Observer,
) -> Result<TokenLogins, PipelineError>
where
    I: Iterator<Item = JobSpec>,
{
    let tokens = &found.tokens;
    let mut logins = TokenLogins {
        absent: found.absent.clone(),
        ..TokenLogins::default()
    };
    let mut by_token: HashMap<(PathBuf, String, String), usize> = HashMap::new();
    for spec in jobs {
        let KeyLocation::Token { uri } = &spec.location else {
            continue;
        };
        let key = uri.to_uri_string(false);
        if logins.by_uri.contains_key(&key) {
            continue;
        }
        let Some(token) = tokens.get(&key) else {
            continue;
        };
        let module = token.module();
        let identity = (
            module.path().to_path_buf(),
            token.summary().serial.clone(),
            token.summary().label.clone(),
        );
        let index = match by_token.get(&identity) {
            Some(index) => *index,
            None => {
                let pin = Pin::resolve(uri, &token.description(), pins)?;
                let login = match token.login(&pin) {
                    Ok(session) => TokenLogin::Ready(Mutex::new(session)),
                    Err(e) => {
                        observer.notice(&format!(
                            "{}: cannot log in, so none of its jobs runs now: {e}",
                            token.description()
                        ));
                        TokenLogin::Refused {
                            token: token.description(),
                            reason: e.to_string(),
                        }
                    }
                };
                logins.logins.push(login);
                by_token.insert(identity, logins.logins.len() - 1);
                logins.logins.len() - 1
            }
        };
        logins.by_uri.insert(key, index);
    }
    Ok(logins)
}
