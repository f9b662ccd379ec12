//! The HTTP client: authentication, timeouts, retries with backoff, idempotent ordering, polling,
//! downloads.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use getrandom::rand_core::TryRng;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::chain::{Chain, DownloadFormat};
use crate::error::{ApiErrorKind, CertCentralError};
use crate::response::{
    AlternateOrder, AlternateOrders, ApiErrorBody, CertificateId, OrderCreated, OrderId, OrderInfo,
    OrderStatus, OrganizationId, OrganizationValidations, Organizations, RequestId, RequestRef,
};
use crate::validate::ValidatedOrder;

/// The US instance.
pub const US_BASE_URL: &str = "https://www.digicert.com/services/v2";
/// The Europe instance.
pub const EU_BASE_URL: &str = "https://certcentral.digicert.eu/services/v2";

/// The API base URL: HTTPS, or plain HTTP to a loopback address only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// The US instance.
    pub fn us() -> BaseUrl {
        BaseUrl(US_BASE_URL.to_string())
    }

    /// The Europe instance.
    pub fn eu() -> BaseUrl {
        BaseUrl(EU_BASE_URL.to_string())
    }

    /// Any URL: `https://...`, or `http://` to 127.0.0.0/8, ::1 or localhost.
    ///
    /// # Errors
    /// [`CertCentralError::BaseUrl`] saying which rule it breaks.
    pub fn parse(url: &str) -> Result<BaseUrl, CertCentralError> {
        let bad = |reason: &str| CertCentralError::BaseUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let host = parsed.host_str().ok_or_else(|| bad("it has no host"))?;
        match parsed.scheme() {
            "https" => {}
            "http" => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let loopback =
                    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(bad(
                        "plain http is allowed only to loopback addresses (127.0.0.1, ::1, localhost); use https",
                    ));
                }
            }
            other => return Err(bad(&format!("the scheme must be https, not {other}"))),
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("it must not have a query or fragment"));
        }
        Ok(BaseUrl(url.trim_end_matches('/').to_string()))
    }

    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The CertCentral API key: sent as `X-DC-DEVKEY`, never printed.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key.
    ///
    /// # Errors
    /// [`CertCentralError::ApiKey`] when it is empty or not a valid header value.
    pub fn new(key: SecretString) -> Result<ApiKey, CertCentralError> {
        let text = key.expose_secret();
        if text.trim().is_empty() {
            return Err(CertCentralError::ApiKey("it is empty".to_string()));
        }
        if HeaderValue::from_str(text).is_err() {
            return Err(CertCentralError::ApiKey(
                "it holds characters that cannot be sent in an HTTP header".to_string(),
            ));
        }
        Ok(ApiKey(key))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// When and how often to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (first try included).
    pub max_attempts: u32,
    /// The first backoff; doubled each time.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Capped exponential backoff with jitter (50-100% of the step) for attempt `n` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let mut byte = [0u8; 1];
        let _ = getrandom::SysRng.try_fill_bytes(&mut byte);
        step.mul_f64(0.5 + f64::from(byte[0]) / 510.0)
    }
}

/// How to reach CertCentral.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The base URL.
    pub base_url: BaseUrl,
    /// The API key.
    pub api_key: ApiKey,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// The US instance with default timeout (30 s) and retries.
    pub fn new(base_url: BaseUrl, api_key: ApiKey) -> ClientConfig {
        ClientConfig {
            base_url,
            api_key,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// What placing an order gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    /// The order.
    pub order_id: OrderId,
    /// The certificate, when approved at once.
    pub certificate_id: Option<CertificateId>,
    /// The requests (empty when the order was found again by its alternative ID).
    pub requests: Vec<RequestRef>,
    /// The alternative order ID it carries.
    pub alternative_order_id: String,
    /// True when the order was found through `GET /order/alternate/{id}` instead of being placed
    /// by this call (it had been committed by an earlier attempt or run).
    pub recovered: bool,
}

/// Approve or reject a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestDecision {
    /// Approve.
    Approve,
    /// Reject.
    Reject,
}

/// Where an order stands, from one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderProgress {
    /// Issued: the certificate can be downloaded.
    Issued(CertificateId),
    /// Not yet (approval, validation, token step); ask again later.
    Pending(OrderStatus),
    /// Final without a certificate (rejected, canceled, revoked, expired).
    Failed(OrderStatus),
}

/// The most bytes read of one answer. CertCentral's largest answers (a chain in PEM, a page of
/// orders) are tens of kilobytes.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// A wait before the next attempt, and what the server asked for (`Retry-After`), if anything.
#[derive(Debug, Clone, Copy)]
struct Wait {
    duration: Duration,
    asked: Option<Duration>,
}

impl Wait {
    const NONE: Wait = Wait {
        duration: Duration::ZERO,
        asked: None,
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
        if self.asked.is_some() || self.duration >= Duration::from_secs(5) {
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

/// What to do after one attempt.
enum Step {
    /// A 2xx answer.
    Done(StatusCode, Vec<u8>),
    /// Worth another try after the wait: 429, 5xx, no answer.
    Retry(Wait, CertCentralError),
    /// A final refusal (other 4xx).
    Fail(CertCentralError),
}

enum Outcome {
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    NoAnswer(String),
}

/// A CertCentral client. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
}

impl Client {
    /// A client for `config`.
    ///
    /// # Errors
    /// [`CertCentralError::Transport`] when the HTTP stack cannot be set up.
    pub fn new(config: ClientConfig) -> Result<Client, CertCentralError> {
        // reqwest is built without a default TLS crypto provider; use ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(config.api_key.0.expose_secret())
            .map_err(|_| CertCentralError::ApiKey("not a valid header value".to_string()))?;
        key.set_sensitive(true);
        headers.insert("X-DC-DEVKEY", key);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!(
                "codesign-kit-certcentral/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| CertCentralError::Transport {
                operation: "setting up the HTTP client".to_string(),
                reason: e.to_string(),
            })?;
        Ok(Client { http, config })
    }

    /// The base URL.
    pub fn base_url(&self) -> &BaseUrl {
        &self.config.base_url
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Outcome {
        let url = format!("{}{path}", self.config.base_url.as_str());
        let mut request = self.http.request(method, &url);
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
            },
            None => Wait {
                duration: self.config.retry.backoff(attempt),
                asked: None,
            },
        }
    }

    /// Sorts the outcome of attempt `attempt` of `operation`.
    fn classify(&self, operation: &str, attempt: u32, outcome: Outcome) -> Step {
        match outcome {
            Outcome::Answer { status, body, .. } if status.is_success() => Step::Done(status, body),
            Outcome::Answer {
                status,
                headers,
                body,
            } if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                Step::Retry(
                    self.retry_wait(attempt, Some(&headers)),
                    Self::api_error(operation, status, &body),
                )
            }
            Outcome::Answer { status, body, .. } => {
                Step::Fail(Self::api_error(operation, status, &body))
            }
            Outcome::NoAnswer(reason) => Step::Retry(
                self.retry_wait(attempt, None),
                CertCentralError::Transport {
                    operation: operation.to_string(),
                    reason,
                },
            ),
        }
    }

    /// A call that is safe to repeat (GET, and PUTs that set a state): retried on no answer, 429
    /// and 5xx; other statuses are final.
    async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), CertCentralError> {
        let max = self.config.retry.max_attempts.max(1);
        let mut last = None;
        for attempt in 1..=max {
            let (wait, failure) = match self.classify(
                operation,
                attempt,
                self.send(method.clone(), path, body).await,
            ) {
                Step::Done(status, body) => return Ok((status, body)),
                Step::Fail(error) => return Err(error),
                Step::Retry(wait, failure) => (wait, failure),
            };
            if attempt < max {
                wait.wait(operation, &failure, attempt + 1, max).await;
            }
            last = Some(failure);
        }
        Err(CertCentralError::GaveUp {
            operation: operation.to_string(),
            attempts: max,
            last: Box::new(last.expect("at least one attempt")),
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<T, CertCentralError> {
        let (status, body) = self.call(operation, Method::GET, path, None).await?;
        decode(operation, status, &body)
    }

    /// Places the order, exactly once.
    ///
    /// The order carries its alternative order ID. Before the first send, and before any re-send
    /// after an uncertain outcome (no answer, a timeout, a dropped connection, 5xx, an unreadable
    /// answer), `GET /order/alternate/{id}` is asked whether the order exists; if it does, that
    /// order is returned (`recovered`) instead of ordering again. Ordering twice buys a second
    /// certificate. 429 waits for `Retry-After` (or backs off) and tries again; other 4xx are final.
    ///
    /// # Errors
    /// [`CertCentralError::Api`] for a refusal (every code kept), [`CertCentralError::GaveUp`].
    pub async fn place_order(
        &self,
        order: &ValidatedOrder,
    ) -> Result<PlacedOrder, CertCentralError> {
        self.place(order, true).await
    }

    /// Places an order that has certainly never been sent, exactly once: as
    /// [`Client::place_order`], but the first send goes without asking whether the order exists.
    /// Every re-send after an uncertain outcome is still preceded by the lookup.
    ///
    /// Only the caller can know that no earlier run sent the order: the pipeline knows it when its
    /// journal holds no begin of this order's submission (that begin is on disk before any send).
    /// It saves one round trip per order.
    ///
    /// # Errors
    /// As [`Client::place_order`].
    pub async fn place_new_order(
        &self,
        order: &ValidatedOrder,
    ) -> Result<PlacedOrder, CertCentralError> {
        self.place(order, false).await
    }

    async fn place(
        &self,
        order: &ValidatedOrder,
        may_exist: bool,
    ) -> Result<PlacedOrder, CertCentralError> {
        let alternative_order_id = order.alternative_order_id().to_string();
        let operation = format!("placing order {alternative_order_id}");
        let path = format!("/order/certificate/{}", order.product().as_str());
        let body = order.request().to_json();
        let max = self.config.retry.max_attempts.max(1);
        let mut last = None;
        for attempt in 1..=max {
            if (may_exist || attempt > 1)
                && let Some(existing) = self.recover(order).await?
            {
                return Ok(existing);
            }
            let outcome = self.send(Method::POST, &path, Some(&body)).await;
            let (wait, failure) = match self.classify(&operation, attempt, outcome) {
                Step::Done(status, body) => match serde_json::from_slice::<OrderCreated>(&body) {
                    Ok(created) => {
                        return Ok(PlacedOrder {
                            order_id: created.id,
                            certificate_id: created.certificate_id,
                            requests: created.requests,
                            alternative_order_id,
                            recovered: false,
                        });
                    }
                    // Committed, but unreadable: the lookup of the next round finds it.
                    Err(e) => (
                        Wait::NONE,
                        CertCentralError::Decode {
                            operation: operation.clone(),
                            status: status.as_u16(),
                            reason: e.to_string(),
                        },
                    ),
                },
                Step::Fail(error) => return Err(error),
                Step::Retry(wait, failure) => (wait, failure),
            };
            if attempt < max {
                wait.wait(&operation, &failure, attempt + 1, max).await;
            }
            last = Some(failure);
        }
        // One last look: the final attempt may have committed.
        if let Some(existing) = self.recover(order).await? {
            return Ok(existing);
        }
        Err(CertCentralError::GaveUp {
            operation,
            attempts: max,
            last: Box::new(last.expect("at least one attempt")),
        })
    }

    /// The order already placed under the order's alternative ID, as a recovered
    /// [`PlacedOrder`], once its details show it is this order: the same product, organization
    /// and CSR. An order that differs means the ID is taken by another order, which is refused
    /// ([`CertCentralError::AlternativeIdTaken`]) rather than taken for this one.
    async fn recover(
        &self,
        order: &ValidatedOrder,
    ) -> Result<Option<PlacedOrder>, CertCentralError> {
        let alternative_order_id = order.alternative_order_id();
        let Some(existing) = self
            .find_order_by_alternative_id(alternative_order_id)
            .await?
        else {
            return Ok(None);
        };
        let info = self.order_info(existing.order_id).await?;
        let differences = differences(order, &info);
        if !differences.is_empty() {
            return Err(CertCentralError::AlternativeIdTaken {
                alternative_order_id: alternative_order_id.to_string(),
                order_id: existing.order_id.0,
                differences,
            });
        }
        Ok(Some(PlacedOrder {
            order_id: existing.order_id,
            certificate_id: existing.certificate_id,
            requests: Vec::new(),
            alternative_order_id: alternative_order_id.to_string(),
            recovered: true,
        }))
    }

    /// The order carrying `alternative_order_id`, if any (the oldest, should there be several).
    ///
    /// # Errors
    /// As any call.
    pub async fn find_order_by_alternative_id(
        &self,
        alternative_order_id: &str,
    ) -> Result<Option<AlternateOrder>, CertCentralError> {
        let found: AlternateOrders = self
            .get_json(
                &format!("looking up order {alternative_order_id}"),
                &format!("/order/alternate/{alternative_order_id}"),
            )
            .await?;
        Ok(found.orders.into_iter().min_by_key(|o| o.order_id))
    }

    /// `GET /order/certificate/{order_id}`.
    ///
    /// # Errors
    /// As any call; [`CertCentralError::Api`] with `not_found|order` for an unknown order.
    pub async fn order_info(&self, order_id: OrderId) -> Result<OrderInfo, CertCentralError> {
        self.get_json(
            &format!("reading order {order_id}"),
            &format!("/order/certificate/{order_id}"),
        )
        .await
    }

    /// Where the order stands, from one call: the resumable polling step.
    ///
    /// # Errors
    /// As [`Client::order_info`].
    pub async fn check_order(&self, order_id: OrderId) -> Result<OrderProgress, CertCentralError> {
        let info = self.order_info(order_id).await?;
        Ok(match (&info.status, info.certificate_id()) {
            (OrderStatus::Issued, Some(cert)) => OrderProgress::Issued(cert),
            (status, _) if status.is_final() => OrderProgress::Failed(status.clone()),
            (status, _) => OrderProgress::Pending(status.clone()),
        })
    }

    /// Polls with backoff until the order is issued or `deadline` has passed.
    ///
    /// # Errors
    /// [`CertCentralError::OrderFailed`], [`CertCentralError::StillPending`], or a call's error.
    pub async fn wait_for_issuance(
        &self,
        order_id: OrderId,
        deadline: Duration,
    ) -> Result<CertificateId, CertCentralError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match self.check_order(order_id).await? {
                OrderProgress::Issued(cert) => return Ok(cert),
                OrderProgress::Failed(status) => {
                    return Err(CertCentralError::OrderFailed {
                        order_id: order_id.0,
                        status: status.to_string(),
                    });
                }
                OrderProgress::Pending(status) => {
                    let waited = started.elapsed();
                    if waited >= deadline {
                        return Err(CertCentralError::StillPending {
                            order_id: order_id.0,
                            status: status.to_string(),
                            waited_secs: waited.as_secs(),
                        });
                    }
                    attempt += 1;
                    let wait = self.config.retry.backoff(attempt).min(deadline - waited);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Approves or rejects a request (`PUT /request/{id}/status`).
    ///
    /// # Errors
    /// As any call.
    pub async fn update_request_status(
        &self,
        request_id: RequestId,
        decision: RequestDecision,
        comment: &str,
    ) -> Result<(), CertCentralError> {
        let status = match decision {
            RequestDecision::Approve => "approved",
            RequestDecision::Reject => "rejected",
        };
        self.call(
            &format!("setting request {request_id} to {status}"),
            Method::PUT,
            &format!("/request/{request_id}/status"),
            Some(&json!({ "status": status, "processor_comment": comment })),
        )
        .await
        .map(|_| ())
    }

    /// Cancels a pending order (`PUT /order/certificate/{id}/status`).
    ///
    /// # Errors
    /// As any call.
    pub async fn cancel_order(
        &self,
        order_id: OrderId,
        note: &str,
    ) -> Result<(), CertCentralError> {
        self.call(
            &format!("canceling order {order_id}"),
            Method::PUT,
            &format!("/order/certificate/{order_id}/status"),
            Some(&json!({ "status": "canceled", "note": note })),
        )
        .await
        .map(|_| ())
    }

    /// Downloads the certificate in `format`, as CertCentral sends it.
    ///
    /// # Errors
    /// As any call.
    pub async fn download(
        &self,
        certificate_id: CertificateId,
        format: DownloadFormat,
    ) -> Result<Vec<u8>, CertCentralError> {
        let (_, body) = self
            .call(
                &format!("downloading certificate {certificate_id}"),
                Method::GET,
                &format!(
                    "/certificate/{certificate_id}/download/format/{}",
                    format.as_str()
                ),
                None,
            )
            .await?;
        Ok(body)
    }

    /// Downloads the active certificate of an order in `format`.
    ///
    /// # Errors
    /// As any call.
    pub async fn download_by_order(
        &self,
        order_id: OrderId,
        format: DownloadFormat,
    ) -> Result<Vec<u8>, CertCentralError> {
        let (_, body) = self
            .call(
                &format!("downloading the certificate of order {order_id}"),
                Method::GET,
                &format!(
                    "/certificate/download/order/{order_id}/format/{}",
                    format.as_str()
                ),
                None,
            )
            .await?;
        Ok(body)
    }

    /// Downloads `pem_all` and splits it: the leaf found by basicConstraints, not by position.
    ///
    /// # Errors
    /// As any call; [`CertCentralError::Chain`] when the bundle has no single leaf.
    pub async fn download_chain(
        &self,
        certificate_id: CertificateId,
    ) -> Result<Chain, CertCentralError> {
        let pem = self
            .download(certificate_id, DownloadFormat::PemAll)
            .await?;
        Chain::from_pem(&pem)
    }

    /// Creates an organization (`POST /organization`); `details` is the documented body.
    ///
    /// A POST that creates is not safe to repeat: when an attempt ends without a readable answer
    /// (no answer, a timeout, 5xx, 429), the account's organizations are listed before any re-send,
    /// and an organization of this name that was not there before the first attempt is taken as
    /// the one created (the listing shows no other detail to compare).
    ///
    /// # Errors
    /// As any call.
    pub async fn create_organization(
        &self,
        details: &Value,
    ) -> Result<OrganizationId, CertCentralError> {
        #[derive(serde::Deserialize)]
        struct Created {
            id: OrganizationId,
        }
        let operation = "creating an organization";
        let name = details
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let same_name = |list: Organizations| -> Vec<OrganizationId> {
            list.organizations
                .into_iter()
                .filter(|o| o.name == name)
                .map(|o| o.id)
                .collect()
        };
        let before = same_name(self.list_organizations().await?);
        let max = self.config.retry.max_attempts.max(1);
        let mut last = None;
        for attempt in 1..=max {
            if attempt > 1
                && let Some(created) = same_name(self.list_organizations().await?)
                    .into_iter()
                    .find(|id| !before.contains(id))
            {
                return Ok(created);
            }
            let outcome = self
                .send(Method::POST, "/organization", Some(details))
                .await;
            let (wait, failure) = match self.classify(operation, attempt, outcome) {
                Step::Done(status, body) => match decode::<Created>(operation, status, &body) {
                    Ok(created) => return Ok(created.id),
                    // Created, but unreadable: the listing of the next round finds it.
                    Err(e) => (Wait::NONE, e),
                },
                Step::Fail(error) => return Err(error),
                Step::Retry(wait, failure) => (wait, failure),
            };
            if attempt < max {
                wait.wait(operation, &failure, attempt + 1, max).await;
            }
            last = Some(failure);
        }
        if let Some(created) = same_name(self.list_organizations().await?)
            .into_iter()
            .find(|id| !before.contains(id))
        {
            return Ok(created);
        }
        Err(CertCentralError::GaveUp {
            operation: operation.to_string(),
            attempts: max,
            last: Box::new(last.expect("at least one attempt")),
        })
    }

    /// Submits an organization for validation (`cs`, `ev_cs`, ...) with its verified users.
    ///
    /// # Errors
    /// As any call.
    pub async fn submit_validation(
        &self,
        organization_id: OrganizationId,
        validation_types: &[&str],
        verified_users: &Value,
    ) -> Result<(), CertCentralError> {
        let validations: Vec<Value> = validation_types
            .iter()
            .map(|t| json!({ "type": t, "verified_users": verified_users }))
            .collect();
        self.call(
            &format!("submitting organization {organization_id} for validation"),
            Method::POST,
            &format!("/organization/{organization_id}/validation"),
            Some(&json!({ "validations": validations })),
        )
        .await
        .map(|_| ())
    }

    /// An organization's validations.
    ///
    /// # Errors
    /// As any call.
    pub async fn organization_validations(
        &self,
        organization_id: OrganizationId,
    ) -> Result<OrganizationValidations, CertCentralError> {
        self.get_json(
            &format!("reading the validations of organization {organization_id}"),
            &format!("/organization/{organization_id}/validation"),
        )
        .await
    }

    /// The account's organizations.
    ///
    /// # Errors
    /// As any call.
    pub async fn list_organizations(&self) -> Result<Organizations, CertCentralError> {
        self.get_json("listing organizations", "/organization")
            .await
    }
}

/// How the order found by an alternative ID differs from `order` (empty: it is this order). A
/// field CertCentral does not return is not compared.
fn differences(order: &ValidatedOrder, info: &OrderInfo) -> Vec<String> {
    let mut found = Vec::new();
    let asked = order.request();
    if let Some(product) = info.product.as_ref().filter(|p| !p.name_id.is_empty())
        && product.name_id != order.product().as_str()
    {
        found.push(format!(
            "it is a {} order, not {}",
            product.name_id,
            order.product().as_str()
        ));
    }
    if let (Some(theirs), Some(ours)) = (
        info.organization.as_ref().map(|o| o.id),
        asked.organization.as_ref().and_then(|o| o.id),
    ) && i64::try_from(theirs.0).ok() != Some(ours)
    {
        found.push(format!("its organization is {theirs}, not {ours}"));
    }
    let compact = |pem: &str| -> String { pem.chars().filter(|c| !c.is_whitespace()).collect() };
    if let (Some(theirs), Some(ours)) = (
        info.certificate.as_ref().and_then(|c| c.csr.as_deref()),
        asked.certificate.as_ref().and_then(|c| c.csr.as_deref()),
    ) && compact(theirs) != compact(ours)
    {
        found.push("it was ordered with another CSR".to_string());
    }
    found
}

fn decode<T: DeserializeOwned>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(BaseUrl::parse("https://www.digicert.com/services/v2").is_ok());
        assert!(BaseUrl::parse("http://127.0.0.1:8443/services/v2").is_ok());
        assert!(BaseUrl::parse("http://[::1]:8443/services/v2").is_ok());
        assert!(BaseUrl::parse("http://localhost/services/v2/").is_ok());
        let err = BaseUrl::parse("http://10.0.0.5/services/v2").unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(BaseUrl::parse("ftp://example.com").is_err());
        assert!(BaseUrl::parse("not a url").is_err());
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:1/services/v2/")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1/services/v2"
        );
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let late = policy.backoff(30);
        assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
    }

    #[test]
    fn the_api_key_is_redacted() {
        let key = ApiKey::new(SecretString::from("super-secret-key")).unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        let config = ClientConfig::new(BaseUrl::us(), key);
        assert!(!format!("{config:?}").contains("super-secret-key"));
        assert!(ApiKey::new(SecretString::from("  ")).is_err());
        assert!(ApiKey::new(SecretString::from("a\nb")).is_err());
    }
}
