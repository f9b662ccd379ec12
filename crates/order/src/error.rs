//! The one error type of this crate.

use std::fmt;

use crate::response::ApiErrorItem;

/// The class of an API error, by HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 400 and other 4xx: the request was refused; sending it again will not help.
    Refused,
    /// 401: the API key is missing or unknown.
    Unauthorized,
    /// 403: the API key lacks a permission.
    Forbidden,
    /// 404: no such order, product, certificate or route.
    NotFound,
    /// 429: rate limit.
    RateLimited,
    /// 5xx: CertCentral failed.
    Server,
}

impl ApiErrorKind {
    /// The class of a status code.
    pub fn of(status: u16) -> ApiErrorKind {
        match status {
            401 => ApiErrorKind::Unauthorized,
            403 => ApiErrorKind::Forbidden,
            404 => ApiErrorKind::NotFound,
            429 => ApiErrorKind::RateLimited,
            500..=599 => ApiErrorKind::Server,
            _ => ApiErrorKind::Refused,
        }
    }
}

impl fmt::Display for ApiErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiErrorKind::Refused => "request refused",
            ApiErrorKind::Unauthorized => "the API key was not accepted",
            ApiErrorKind::Forbidden => "the API key lacks a permission",
            ApiErrorKind::NotFound => "not found",
            ApiErrorKind::RateLimited => "rate limit exceeded",
            ApiErrorKind::Server => "CertCentral failed",
        })
    }
}

fn codes(errors: &[ApiErrorItem]) -> String {
    if errors.is_empty() {
        return "no error details".to_string();
    }
    errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything that can go wrong talking to CertCentral. No variant holds the API key.
#[derive(Debug, thiserror::Error)]
pub enum CertCentralError {
    /// The order breaks documented rules; nothing was sent.
    #[error("the order was not sent: {0}")]
    Validation(ValidationErrors),

    /// The base URL is unusable.
    #[error("base URL \"{url}\": {reason}")]
    BaseUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },

    /// The API key is unusable (missing, empty, not a valid header value).
    #[error("API key: {0}")]
    ApiKey(String),

    /// CertCentral answered with an error status; every code and message is kept.
    #[error("{operation}: HTTP {status}, {kind}: {}", codes(.errors))]
    Api {
        /// What was being done.
        operation: String,
        /// HTTP status.
        status: u16,
        /// The class of the status.
        kind: ApiErrorKind,
        /// Every error of the body.
        errors: Vec<ApiErrorItem>,
    },

    /// CertCentral could not be reached, or did not answer in time.
    #[error("{operation}: no answer from CertCentral: {reason}")]
    Transport {
        /// What was being done.
        operation: String,
        /// The transport's reason.
        reason: String,
    },

    /// CertCentral's answer could not be read.
    #[error("{operation}: CertCentral's answer (HTTP {status}) cannot be read: {reason}")]
    Decode {
        /// What was being done.
        operation: String,
        /// HTTP status.
        status: u16,
        /// Why.
        reason: String,
    },

    /// An order found by its alternative order ID is not the order asked for (another product,
    /// organization or CSR): the ID is taken, and nothing was ordered.
    #[error(
        "alternative order ID {alternative_order_id} is already used by order {order_id}, which is not this order ({}); nothing was ordered: choose another alternative order ID",
        .differences.join("; ")
    )]
    AlternativeIdTaken {
        /// The alternative order ID.
        alternative_order_id: String,
        /// The order that carries it.
        order_id: u64,
        /// What differs.
        differences: Vec<String>,
    },

    /// An answer larger than any CertCentral sends was cut off.
    #[error("{operation}: the answer is larger than {limit} bytes; refused")]
    AnswerTooLarge {
        /// What was being done.
        operation: String,
        /// The cap, in bytes.
        limit: usize,
    },

    /// A request body that is not a CertCentral order body (not JSON, or a value of the wrong
    /// type).
    #[error("not a CertCentral order body: {0}")]
    OrderBody(serde_json::Error),

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Randomness,

    /// Retries ran out; the last failure is kept.
    #[error("{operation}: gave up after {attempts} attempts; last failure: {last}")]
    GaveUp {
        /// What was being done.
        operation: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<CertCentralError>,
    },

    /// The order reached a final status other than issued.
    #[error("order {order_id} is {status}; it will not be issued")]
    OrderFailed {
        /// The order.
        order_id: u64,
        /// Its final status.
        status: String,
    },

    /// The deadline passed before the order was issued.
    #[error("order {order_id} is still {status} after waiting {waited_secs} s")]
    StillPending {
        /// The order.
        order_id: u64,
        /// Its status.
        status: String,
        /// Seconds waited.
        waited_secs: u64,
    },

    /// A downloaded chain is not usable.
    #[error("the certificate chain cannot be used: {0}")]
    Chain(String),
}

impl CertCentralError {
    /// Every API error code, for callers that match on codes (`not_found|order`, ...).
    pub fn api_codes(&self) -> Vec<&str> {
        match self {
            CertCentralError::Api { errors, .. } => {
                errors.iter().map(|e| e.code.as_str()).collect()
            }
            CertCentralError::GaveUp { last, .. } => last.api_codes(),
            _ => Vec::new(),
        }
    }
}

/// A rule broken at a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON path (`order_validity.years`, `custom_fields[0].metadata_id`).
    pub path: String,
    /// The rule and what was found.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The errors.
    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(FieldError::to_string).collect();
        write!(f, "{}", all.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}
