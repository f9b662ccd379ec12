//! The HTTP client: authentication, timeouts, retries with backoff, idempotent ordering, polling,
//! downloads.
//!
//! - this module: where CertCentral is ([`BaseUrl`]), the [`ApiKey`], the [`RetryPolicy`], the
//!   [`Client`] and what its calls give;
//! - `transport`: one request and its answer, and the one retry loop;
//! - `orders`: orders placed exactly once, followed, downloaded;
//! - `lifecycle`: reissue (exactly once), revoke;
//! - `watch`: waiting for issuance, with one status-changes request a round for many orders;
//! - `organizations`: organizations created once, validated, listed.

mod lifecycle;
mod limits;
mod orders;
mod organizations;
mod transport;
mod watch;

pub use lifecycle::{ReissuePlaced, Revocation, RevokeTarget};
pub use limits::{RateLimits, RateWindow};
pub use orders::OrderQuery;
pub use watch::INDIVIDUAL_CHECK_EVERY;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use getrandom::rand_core::TryRng;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::error::CertCentralError;
use crate::response::{CertificateId, OrderId, OrderStatus, RequestRef};

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
        parsed.host_str().ok_or_else(|| bad("it has no host"))?;
        match parsed.scheme() {
            "https" => {}
            "http" => {
                if !BaseUrl(url.to_string()).is_loopback() {
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

    /// Whether the URL's host is this machine (127.0.0.0/8, ::1, localhost): a local emulator or
    /// test CA, never a publicly trusted CertCentral.
    pub fn is_loopback(&self) -> bool {
        reqwest::Url::parse(&self.0)
            .ok()
            .and_then(|url| url.host_str().map(str::to_string))
            .is_some_and(|host| {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            })
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
    /// The request limits every request of the client and its clones keeps to (CertCentral's
    /// documented ones by default).
    pub rate_limits: RateLimits,
}

impl ClientConfig {
    /// The US instance with default timeout (30 s) and retries.
    pub fn new(base_url: BaseUrl, api_key: ApiKey) -> ClientConfig {
        ClientConfig {
            base_url,
            api_key,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::certcentral(),
        }
    }
}

/// This client's TLS: rustls with ring's cryptography, given to this client alone (no
/// process-wide provider is installed, so an application's own choice stands), and the platform's
/// certificate verifier (its root store), as reqwest would set it up.
fn tls_config() -> Result<rustls::ClientConfig, CertCentralError> {
    let failed = |reason: String| CertCentralError::Transport {
        operation: "setting up TLS".to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| failed(e.to_string()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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

/// A CertCentral client. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    /// Shared by every clone: one log of requests against the windows.
    limiter: Arc<limits::Limiter>,
    /// Shared by every clone: the orders waiting for issuance.
    watch: Arc<watch::Watch>,
}

impl Client {
    /// A client for `config`.
    ///
    /// # Errors
    /// [`CertCentralError::Transport`] when the HTTP stack cannot be set up.
    pub fn new(config: ClientConfig) -> Result<Client, CertCentralError> {
        let tls = tls_config()?;
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(config.api_key.0.expose_secret())
            .map_err(|_| CertCentralError::ApiKey("not a valid header value".to_string()))?;
        key.set_sensitive(true);
        headers.insert("X-DC-DEVKEY", key);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
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
        let limiter = Arc::new(limits::Limiter::new(config.rate_limits.clone()));
        Ok(Client {
            http,
            config,
            limiter,
            watch: Arc::new(watch::Watch::default()),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &BaseUrl {
        &self.config.base_url
    }
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
        for local in [
            "http://127.0.0.1:8443/services/v2",
            "https://127.3.0.1/services/v2",
            "http://[::1]:1/services/v2",
            "https://localhost/services/v2",
        ] {
            assert!(BaseUrl::parse(local).unwrap().is_loopback(), "{local}");
        }
        for remote in [
            US_BASE_URL,
            EU_BASE_URL,
            "https://10.0.0.5/services/v2",
            "https://127.0.0.1.example.com/services/v2",
            "https://[::2]/services/v2",
        ] {
            assert!(!BaseUrl::parse(remote).unwrap().is_loopback(), "{remote}");
        }
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

    /// A library does not install process-global state: the TLS provider is this client's own.
    #[test]
    fn a_client_installs_no_process_wide_tls_provider() {
        let key = ApiKey::new(SecretString::from("k")).unwrap();
        Client::new(ClientConfig::new(BaseUrl::us(), key)).unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
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
