//! A DigiCert CertCentral client for code signing orders.
//!
//! It knows nothing of keys: it takes a CSR as PEM (and a [`CsrCheck`] from the caller to judge it).
//!
//! - [`model`]: the order body of `POST /order/certificate/{code_signing|code_signing_ev}`, every
//!   documented field, unknown enum values kept.
//! - [`ValidatedOrder`]: every rule of the API page, checked before any network call, every problem
//!   reported with its JSON path. Only validated orders can be placed.
//! - [`Client`]: `X-DC-DEVKEY` authentication, timeouts, retries (connection errors, timeouts, 429
//!   with `Retry-After`, 5xx) with capped exponential backoff and jitter, idempotent ordering by
//!   `alternative_order_id`, order info, polling, approvals, downloads, organizations.
//!
//! ```no_run
//! use certcentral::{ApiKey, BaseUrl, Client, ClientConfig, OrderRequest, Product, ValidatedOrder};
//! use secrecy::SecretString;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let body = OrderRequest::from_json(&std::fs::read_to_string("order.json")?)?;
//! let order = ValidatedOrder::new(Product::CodeSigningEv, body, None)?;
//! let key = ApiKey::new(SecretString::from(std::env::var("DIGICERT_API_KEY")?))?;
//! let client = Client::new(ClientConfig::new(BaseUrl::us(), key))?;
//! let placed = client.place_order(&order).await?;
//! println!("order {} ({})", placed.order_id, placed.alternative_order_id);
//! # Ok(()) }
//! ```

mod chain;
mod client;
mod error;
pub mod model;
pub mod response;
mod validate;

pub use chain::{Chain, DownloadFormat};
pub use client::{
    ApiKey, BaseUrl, Client, ClientConfig, EU_BASE_URL, INDIVIDUAL_CHECK_EVERY, OrderProgress,
    OrderQuery, PlacedOrder, RateLimits, RateWindow, ReissuePlaced, RequestDecision, RetryPolicy,
    Revocation, RevokeTarget, US_BASE_URL,
};
pub use error::{ApiErrorKind, CertCentralError, FieldError, ValidationErrors};
pub use model::{OrderRequest, Product};
pub use response::{CertificateId, OrderId, OrderInfo, OrderStatus, OrganizationId, RequestId};
pub use validate::{
    CsrCheck, MAX_VALIDITY_DAYS, VALIDITY_CAP_SINCE, ValidatedOrder, ValidityCap,
    derive_alternative_order_id, generate_alternative_order_id, max_text_length,
};
