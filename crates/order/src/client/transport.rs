//! The transport: one request sent and its answer read (capped), sorted into done, retry or fail,
//! and the one retry loop every call goes through.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Client;
use crate::error::{ApiErrorKind, CertCentralError};
use crate::response::ApiErrorBody;

/// The most bytes read of one answer. CertCentral's largest answers (a chain in PEM, a page of
/// orders) are tens of kilobytes.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// A wait before the next attempt, and what the server asked for (`Retry-After`), if anything.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    duration: Duration,
    asked: Option<Duration>,
    /// A 429: the wait is the request limits', and costs no attempt of the retry budget.
    rate_limited: bool,
}

impl Wait {
    pub(super) const NONE: Wait = Wait {
        duration: Duration::ZERO,
        asked: None,
        rate_limited: false,
    };

    /// Says that the client waits, and for how long: a warning when CertCentral asked for the
    /// wait or it is long enough for a person to wonder, a debug event otherwise. Then waits.
    async fn wait(self, operation: &str, failure: &CertCentralError, next: u32, max: u32) {
        if self.duration.is_zero() {
            return;
        }
        let seconds = self.duration.as_secs_f64();
        let asked = match self.asked {
            Some(asked) if asked > self.duration => format!(
                " (CertCentral's Retry-After asked for {} s; the client waits at most {seconds:.0} s)",
                asked.as_secs()
            ),
            Some(_) => " (as CertCentral's Retry-After asks)".to_string(),
            None => String::new(),
        };
        if self.rate_limited {
            tracing::warn!(
                "{operation}: {failure}; every request of this client waits {seconds:.0} s for the request limits' windows to make room{asked}"
            );
        } else if self.asked.is_some() || self.duration >= Duration::from_secs(5) {
            tracing::warn!(
                "{operation}: {failure}; waiting {seconds:.0} s before attempt {next} of {max}{asked}"
            );
        } else {
            tracing::debug!(
                "{operation}: {failure}; waiting {seconds:.1} s before attempt {next} of {max}{asked}"
            );
        }
        tokio::time::sleep(self.duration).await;
    }
}

/// What one attempt came to.
pub(super) enum Round<T> {
    /// Done: the answer, read.
    Done(T),
    /// Worth another try after the wait: 429, 5xx, no answer (and, for calls that look before
    /// re-sending, an answer that cannot be read).
    Retry(Wait, CertCentralError),
    /// A final refusal (other 4xx) or a failure that another try cannot mend.
    Fail(CertCentralError),
}

pub(super) enum Outcome {
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    NoAnswer(String),
}

impl Client {
    pub(super) async fn send(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Outcome {
        self.limiter.acquire(operation).await;
        let url = format!("{}{path}", self.config.base_url.as_str());
        let mut request = self.http.request(method, &url);
        // JSON answers are asked for as JSON; a certificate download is asked for as DigiCert's
        // examples ask (no Accept: the format is in the path), since an Accept of JSON there
        // asks for what the endpoint does not give.
        if !path.contains("/download/") {
            request = request.header(reqwest::header::ACCEPT, "application/json");
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(mut response) => {
                let status = response.status();
                let headers = response.headers().clone();
                // Read at most MAX_ANSWER_BYTES: a broken or hostile server cannot fill memory.
                let mut body = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                                return Outcome::NoAnswer(format!(
                                    "the answer is larger than {MAX_ANSWER_BYTES} bytes, more than CertCentral sends; it was cut off"
                                ));
                            }
                            body.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            return Outcome::NoAnswer(format!(
                                "the answer broke off: {}",
                                describe(&e)
                            ));
                        }
                    }
                }
                Outcome::Answer {
                    status,
                    headers,
                    body,
                }
            }
            Err(e) => Outcome::NoAnswer(describe(&e)),
        }
    }

    fn api_error(operation: &str, status: StatusCode, body: &[u8]) -> CertCentralError {
        let errors = serde_json::from_slice::<ApiErrorBody>(body)
            .map(|b| b.errors)
            .unwrap_or_default();
        CertCentralError::Api {
            operation: operation.to_string(),
            status: status.as_u16(),
            kind: ApiErrorKind::of(status.as_u16()),
            errors,
        }
    }

    fn retry_wait(&self, attempt: u32, headers: Option<&HeaderMap>) -> Wait {
        let retry_after = headers
            .and_then(|h| h.get(reqwest::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match retry_after {
            Some(asked) => Wait {
                duration: asked.min(self.config.retry.max_retry_after),
                asked: Some(asked),
                rate_limited: false,
            },
            None => Wait {
                duration: self.config.retry.backoff(attempt),
                asked: None,
                rate_limited: false,
            },
        }
    }

    /// The wait after a 429, for every request of the client: what CertCentral asks for when it
    /// sends a `Retry-After` (it documents none; capped by the retry policy), else the limiter's
    /// pause, doubling from the shortest window to the longest while 429s keep coming.
    fn rate_limit_wait(&self, headers: &HeaderMap) -> Wait {
        let now = tokio::time::Instant::now();
        let asked = self.retry_wait(1, Some(headers)).asked;
        let duration = match asked {
            Some(asked) => {
                let duration = asked.min(self.config.retry.max_retry_after);
                self.limiter.pause(now, duration);
                duration
            }
            None => self.limiter.refused(now),
        };
        Wait {
            duration,
            asked,
            rate_limited: true,
        }
    }

    /// Sorts the outcome of attempt `attempt` of `operation`.
    fn classify(
        &self,
        operation: &str,
        attempt: u32,
        outcome: Outcome,
    ) -> Round<(StatusCode, Vec<u8>)> {
        if let Outcome::Answer { status, .. } = &outcome
            && *status != StatusCode::TOO_MANY_REQUESTS
        {
            self.limiter.answered();
        }
        match outcome {
            Outcome::Answer { status, body, .. } if status.is_success() => {
                Round::Done((status, body))
            }
            Outcome::Answer {
                status,
                headers,
                body,
            } if status == StatusCode::TOO_MANY_REQUESTS => Round::Retry(
                self.rate_limit_wait(&headers),
                Self::api_error(operation, status, &body),
            ),
            Outcome::Answer {
                status,
                headers,
                body,
            } if status.is_server_error() => Round::Retry(
                self.retry_wait(attempt, Some(&headers)),
                Self::api_error(operation, status, &body),
            ),
            Outcome::Answer { status, body, .. } => {
                Round::Fail(Self::api_error(operation, status, &body))
            }
            Outcome::NoAnswer(reason) => Round::Retry(
                self.retry_wait(attempt, None),
                CertCentralError::Transport {
                    operation: operation.to_string(),
                    reason,
                },
            ),
        }
    }

    /// The one retry loop: runs `round` (1-based attempt number) until it is done or fails, or
    /// the policy's attempts are spent, waiting between rounds as each says (and saying so).
    /// Calls that are not safe to repeat look, inside their round, whether an earlier attempt
    /// took effect before they send again.
    ///
    /// `round` gives a future rather than being an async closure: the futures of async closures
    /// cannot yet be shown `Send`, and a caller must be able to spawn a call.
    pub(super) async fn retrying<T, F>(
        &self,
        operation: &str,
        mut round: impl FnMut(u32) -> F,
    ) -> Result<T, CertCentralError>
    where
        F: Future<Output = Round<T>>,
    {
        let max = self.config.retry.max_attempts.max(1);
        // 429s cost no attempt: the request limits pause the client instead, for at most twice
        // the longest window in all before the call gives up.
        let rate_wait_budget = self.limiter.limits().longest() * 2;
        let mut rate_waited = Duration::ZERO;
        let mut last = None;
        let mut attempt = 1;
        let mut rounds = 0u32;
        while attempt <= max {
            rounds += 1;
            match round(rounds).await {
                Round::Done(value) => return Ok(value),
                Round::Fail(error) => return Err(error),
                Round::Retry(wait, failure) if wait.rate_limited => {
                    if rate_waited >= rate_wait_budget {
                        last = Some(failure);
                        break;
                    }
                    rate_waited += wait.duration;
                    wait.wait(operation, &failure, attempt, max).await;
                    last = Some(failure);
                }
                Round::Retry(wait, failure) => {
                    if attempt < max {
                        wait.wait(operation, &failure, attempt + 1, max).await;
                    }
                    last = Some(failure);
                    attempt += 1;
                }
            }
        }
        Err(CertCentralError::GaveUp {
            operation: operation.to_string(),
            attempts: rounds,
            last: Box::new(last.unwrap_or_else(|| CertCentralError::Transport {
                operation: operation.to_string(),
                reason: "no attempt was made".to_string(),
            })),
        })
    }

    /// One attempt of a request, sorted: the answer, or when and why to try again.
    pub(super) async fn attempt(
        &self,
        operation: &str,
        attempt: u32,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Round<(StatusCode, Vec<u8>)> {
        let outcome = self.send(operation, method, path, body).await;
        self.classify(operation, attempt, outcome)
    }

    /// A call that is safe to repeat (GET, and PUTs that set a state): retried on no answer, 429
    /// and 5xx; other statuses are final.
    pub(super) async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), CertCentralError> {
        self.retrying(operation, |attempt| {
            self.attempt(operation, attempt, method.clone(), path, body)
        })
        .await
    }

    /// A GET whose answer is taken as it comes (a certificate download).
    pub(super) async fn get_bytes(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<Vec<u8>, CertCentralError> {
        let (_, body) = self.call(operation, Method::GET, path, None).await?;
        Ok(body)
    }

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<T, CertCentralError> {
        let (status, body) = self.call(operation, Method::GET, path, None).await?;
        decode(operation, status, &body)
    }
}

pub(super) fn decode<T: DeserializeOwned>(
    operation: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T, CertCentralError> {
    serde_json::from_slice(body).map_err(|e| CertCentralError::Decode {
        operation: operation.to_string(),
        status: status.as_u16(),
        reason: e.to_string(),
    })
}

/// A transport error in words, with its cause chain (reqwest's top-level text is terse).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
