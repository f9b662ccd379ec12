//! A local DigiCert CertCentral: the code signing order endpoints and their neighbours, validating
//! like the documented API, issuing real X.509 code signing certificates from its own test CA, and
//! injecting the faults a robust client must survive.
//!
//! Written from DigiCert's documentation, independently of the client crate, so that each can
//! catch the other's mistakes: the API page "Order code signing certificate"
//! (<https://dev.digicert.com/certcentral-apis/services-api/orders/order-code-signing-certificate.html>),
//! the error and rate-limit pages
//! (<https://dev.digicert.com/certcentral-apis/services-api/errors.html>,
//! <https://dev.digicert.com/en/certcentral-apis/services-api/rate-limits.html>) and the glossary of
//! provisioning methods and product IDs (<https://dev.digicert.com/glossary/>). It listens on
//! loopback only.
//!
//! ```
//! use certcentral_emulator::{Emulator, EmulatorConfig};
//!
//! let emulator = Emulator::start(EmulatorConfig::new("test-api-key"), "127.0.0.1:0".parse()?)?;
//! assert!(emulator.api_base().starts_with("http://127.0.0.1:"));
//! assert!(emulator.api_base().ends_with("/services/v2"));
//! emulator.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Endpoints (under `/services/v2`, authenticated by `X-DC-DEVKEY`): `POST /order/certificate/
//! {code_signing|code_signing_ev}`, `GET /order/certificate/{id}`, `GET /order/certificate`,
//! `GET /order/alternate/{alt_id}`, `PUT /request/{id}/status`, `PUT /order/certificate/{id}/status`,
//! `GET /certificate/{id}/download/format/{format}`,
//! `GET /certificate/download/order/{id}/format/{format}`, `POST|GET /organization`,
//! `POST|GET /organization/{id}/validation`.
//!
//! Admin (under `/_emulator`, same key): `POST|GET|DELETE /faults`, `GET|PUT /settings`,
//! `GET /inspect/orders-by-alternative-id`, `GET /inspect/last-request/{route}`, `GET /ca/root.pem`.

mod ca;
pub mod faults;
mod oid;
mod pkcs7;
mod routes;
mod server;
pub mod state;
pub mod validate;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

pub use faults::{Fault, FaultRule, HostileChain, RateWindow, Route, documented_windows};
pub use routes::API_KEY_HEADER;
use serde::{Deserialize, Serialize};

/// What can go wrong starting or running the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listen address is not a loopback address.
    #[error("{0}: the emulator listens on loopback addresses only (127.0.0.0/8 or ::1)")]
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS's reason.
        reason: String,
    },
    /// The state file cannot be read or written.
    #[error("{}: emulator state file: {reason}", .path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The test CA failed.
    #[error("the emulator's CA failed: {0}")]
    Ca(String),
    /// No API key was configured.
    #[error("the emulator needs an API key: set DIGICERT_API_KEY (the variable the client reads)")]
    NoApiKey,
}

/// How the account approves certificate requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Orders with `skip_approval: true` are approved at once (`approved`, with `certificate_id`);
    /// others wait as `pending`.
    AutoApprove,
    /// One approval step: requests start `pending`.
    OneStep,
    /// Two approval steps: requests start `submitted`, become `pending` on the first approval and
    /// `approved` on the second.
    TwoStep,
}

/// Settings that can change while the emulator runs (`PUT /_emulator/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The approval workflow.
    pub approval: ApprovalMode,
    /// Order info polls after approval before an order with a CSR is `issued` (clients must poll).
    pub polls_until_issued: u32,
    /// Minimum time after approval before issuance.
    #[serde(with = "seconds")]
    pub issue_delay: Duration,
    /// Enforce the rate limits of `rate_windows`.
    pub rate_limits: bool,
    /// The rolling windows of the rate limits: CertCentral's documented 100 per 5 s and 1000 per
    /// 3 min unless changed (a test may shrink them to meet them quickly).
    #[serde(default = "faults::documented_windows")]
    pub rate_windows: Vec<faults::RateWindow>,
    /// A delay before each CertCentral answer, as a request over the internet would take.
    #[serde(default, with = "millis")]
    pub latency: Duration,
    /// Up to this much more delay, at random, per request.
    #[serde(default, with = "millis")]
    pub latency_jitter: Duration,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            approval: ApprovalMode::AutoApprove,
            polls_until_issued: 2,
            issue_delay: Duration::ZERO,
            rate_limits: true,
            rate_windows: faults::documented_windows(),
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
        }
    }
}

/// How to start the emulator.
#[derive(Clone)]
pub struct EmulatorConfig {
    api_key: String,
    /// Runtime settings at start.
    pub settings: Settings,
    /// Faults armed at start.
    pub faults: Vec<FaultRule>,
    /// Keep the account in this JSON file (loaded at start when it exists, written on every
    /// change), so a restarted emulator knows its orders.
    pub state_file: Option<PathBuf>,
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("api_key", &"<redacted>")
            .field("settings", &self.settings)
            .field("faults", &self.faults)
            .field("state_file", &self.state_file)
            .finish()
    }
}

impl EmulatorConfig {
    /// A configuration accepting `api_key`, with default settings.
    pub fn new(api_key: impl Into<String>) -> EmulatorConfig {
        EmulatorConfig {
            api_key: api_key.into(),
            settings: Settings::default(),
            faults: Vec::new(),
            state_file: None,
        }
    }
}

/// What the handlers share.
pub(crate) struct Shared {
    api_key: String,
    state: Mutex<state::State>,
    settings: Mutex<Settings>,
    faults: Mutex<Vec<FaultRule>>,
    last_bodies: Mutex<HashMap<Route, serde_json::Value>>,
    /// The `Accept` header of the last request on each route (`None`: none sent).
    last_accept: Mutex<HashMap<Route, Option<String>>>,
    seen: Mutex<HashMap<Route, u64>>,
    limiter: Mutex<faults::RateLimiter>,
    /// Requests refused by the rate limits.
    rate_limited: std::sync::atomic::AtomicU64,
    state_file: Option<PathBuf>,
    serials: Mutex<u64>,
    /// The state's intermediate CA, parsed once at start.
    intermediate_ca: ca::IntermediateCa,
    /// Seconds added to the real time: the emulator's clock (`/_emulator/clock`).
    clock_offset: std::sync::atomic::AtomicI64,
}

impl Shared {
    /// The emulator's time: the real time plus the clock's offset.
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
            + time::Duration::seconds(self.clock_offset.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// [`Shared::now`] as Unix seconds.
    fn now_unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Writes the state file, if any. A failure is reported as a warning event (`tracing`); the
    /// emulator goes on.
    fn persist(&self, state: &state::State) {
        if let Some(path) = &self.state_file
            && let Err(e) = state.save(path)
        {
            tracing::warn!("certcentral-emulator: {e}");
        }
    }

    /// A unique positive 16-byte serial number.
    fn random_serial(&self) -> Vec<u8> {
        let mut counter = self.serials.lock().unwrap_or_else(PoisonError::into_inner);
        *counter += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut serial = Vec::with_capacity(16);
        serial.extend_from_slice(&(nanos as u64).to_be_bytes());
        serial.extend_from_slice(&counter.to_be_bytes());
        serial[0] = (serial[0] & 0x7f) | 0x40;
        serial
    }
}

/// A running emulator. Stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: std::sync::Arc<Shared>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Emulator {
    /// Starts the emulator on `listen` (a loopback address; port 0 picks a free port) in a
    /// background thread with its own runtime.
    ///
    /// # Errors
    /// [`EmulatorError::NotLoopback`], [`EmulatorError::Bind`], [`EmulatorError::StateFile`],
    /// [`EmulatorError::Ca`].
    pub fn start(config: EmulatorConfig, listen: SocketAddr) -> Result<Emulator, EmulatorError> {
        if !listen.ip().is_loopback() {
            return Err(EmulatorError::NotLoopback(listen));
        }
        if config.api_key.is_empty() {
            return Err(EmulatorError::NoApiKey);
        }
        let state = match &config.state_file {
            Some(path) if path.exists() => state::State::load(path)?,
            _ => state::State::seeded(ca::generate()?),
        };
        let intermediate_ca = ca::IntermediateCa::load(&state.ca)?;
        let listener = std::net::TcpListener::bind(listen).map_err(|e| EmulatorError::Bind {
            addr: listen,
            reason: e.to_string(),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| EmulatorError::Bind {
                addr: listen,
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| EmulatorError::Bind {
            addr: listen,
            reason: e.to_string(),
        })?;
        let shared = std::sync::Arc::new(Shared {
            api_key: config.api_key,
            state: Mutex::new(state),
            settings: Mutex::new(config.settings),
            faults: Mutex::new(config.faults),
            last_bodies: Mutex::new(HashMap::new()),
            last_accept: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            limiter: Mutex::new(faults::RateLimiter::default()),
            rate_limited: std::sync::atomic::AtomicU64::new(0),
            state_file: config.state_file,
            serials: Mutex::new(0),
            intermediate_ca,
            clock_offset: std::sync::atomic::AtomicI64::new(0),
        });
        shared.persist(&shared.state.lock().unwrap_or_else(PoisonError::into_inner));
        let router = routes::router(shared.clone());
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        // Everything that can fail is done here, before `start` returns Ok: the server thread
        // only serves.
        let bind_failed = |reason: String| EmulatorError::Bind { addr, reason };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| bind_failed(format!("cannot start its async runtime: {e}")))?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|e| bind_failed(e.to_string()))?
        };
        let thread = std::thread::Builder::new()
            .name("certcentral-emulator".to_string())
            .spawn(move || {
                runtime.block_on(server::serve(listener, router, shutdown_rx));
                runtime.shutdown_background();
            })
            .map_err(|e| EmulatorError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        Ok(Emulator {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
            shared,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API base URL, `http://127.0.0.1:PORT/services/v2`: what a client uses as its base URL.
    pub fn api_base(&self) -> String {
        format!("{}/services/v2", self.url())
    }

    /// How many orders carry `alternative_order_id`.
    pub fn orders_with_alternative_id(&self, alternative_order_id: &str) -> usize {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .orders
            .values()
            .filter(|o| o.alternative_order_id.as_deref() == Some(alternative_order_id))
            .count()
    }

    /// How many orders exist.
    pub fn order_count(&self) -> usize {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .orders
            .len()
    }

    /// The `Accept` header of the last request on `route`: `Some(None)` when it sent none.
    pub fn last_accept(&self, route: Route) -> Option<Option<String>> {
        self.shared
            .last_accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&route)
            .cloned()
    }

    /// The last request body received on `route`.
    pub fn last_request_body(&self, route: Route) -> Option<serde_json::Value> {
        self.shared
            .last_bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&route)
            .cloned()
    }

    /// How many requests were answered 429 `request_limit_exceeded` by the rate limits.
    pub fn rate_limited_count(&self) -> u64 {
        self.shared
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many authenticated requests reached any route (refused ones, 429s, not counted).
    pub fn requests_seen_total(&self) -> u64 {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }

    /// How many authenticated requests reached `route`.
    pub fn requests_seen(&self, route: Route) -> u64 {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&route)
            .copied()
            .unwrap_or(0)
    }

    /// Arms a fault.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(rule);
    }

    /// Sets the emulator's clock to the real time plus `offset` (negative: the past). Orders
    /// issued while it is set back are issued then: their certificates are as old, and expire
    /// as soon, as if issued that long ago. Also `PUT /_emulator/clock`.
    pub fn set_clock_offset(&self, offset: time::Duration) {
        self.shared
            .clock_offset
            .store(offset.whole_seconds(), std::sync::atomic::Ordering::SeqCst);
    }

    /// The intermediate CA's CRL (PEM) as `GET /_emulator/ca/intermediate.crl` serves it.
    ///
    /// # Errors
    /// [`EmulatorError::Ca`] when it cannot be signed.
    pub fn crl_pem(&self) -> Result<String, EmulatorError> {
        let revoked = routes::revoked_serials(&self.shared);
        self.shared.intermediate_ca.crl(&revoked, self.shared.now())
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Replaces the runtime settings.
    pub fn set_settings(&self, settings: Settings) {
        *self
            .shared
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// The CA's root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ca
            .root_cert_pem
            .clone()
    }

    /// The CA's intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> String {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ca
            .intermediate_cert_pem
            .clone()
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_does_not_show_the_api_key() {
        let config = EmulatorConfig::new("emulator-secret-key");
        assert!(!format!("{config:?}").contains("emulator-secret-key"));
    }
}
