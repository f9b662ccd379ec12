//! What CertCentral answers: tolerant of unknown fields, of unknown status values (kept), and of
//! `[]` where an object is expected (a documented quirk of the list endpoints).

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// Defines a newtype ID.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

id_type!(
    /// A CertCentral order ID.
    OrderId
);
id_type!(
    /// A certificate ID.
    CertificateId
);
id_type!(
    /// A request (approval) ID.
    RequestId
);
id_type!(
    /// An organization ID.
    OrganizationId
);

/// Defines a status enum that keeps unknown values.
macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A status the docs do not list (kept, not fatal).
            Other(String),
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($text => $name::$variant,)+
                    _ => $name::Other(s),
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                })
            }
        }
    };
}

status_enum!(
    /// A request's approval status.
    RequestStatus {
        /// Waiting for approval.
        Pending => "pending",
        /// Waiting for the first of two approvals.
        Submitted => "submitted",
        /// Approved.
        Approved => "approved",
        /// Rejected.
        Rejected => "rejected",
    }
);

status_enum!(
    /// An order's status.
    OrderStatus {
        /// Waiting for approval in the account.
        NeedsApproval => "needs_approval",
        /// Approved, waiting for validation or issuance.
        Pending => "pending",
        /// Being processed.
        Processing => "processing",
        /// Waiting for pickup.
        WaitingPickup => "waiting_pickup",
        /// A reissue is pending.
        ReissuePending => "reissue_pending",
        /// Issued.
        Issued => "issued",
        /// Rejected.
        Rejected => "rejected",
        /// Canceled.
        Canceled => "canceled",
        /// Revoked.
        Revoked => "revoked",
        /// Expired.
        Expired => "expired",
    }
);

impl OrderStatus {
    /// Whether the order can still become `issued` (unknown statuses count as not final).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OrderStatus::Issued
                | OrderStatus::Rejected
                | OrderStatus::Canceled
                | OrderStatus::Revoked
                | OrderStatus::Expired
        )
    }
}

/// Deserializes an object, reading `[]` (CertCentral's empty object on some endpoints) as `None`.
fn object_or_empty_array<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Array(a) if a.is_empty() => Ok(None),
        other => serde_json::from_value(other)
            .map(Some)
            .map_err(de::Error::custom),
    }
}

/// One request of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRef {
    /// Request ID.
    pub id: RequestId,
    /// Status.
    pub status: RequestStatus,
}

/// An ID-only object (`{"id": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRef<T> {
    /// The ID.
    pub id: T,
}

/// The answer to placing an order (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// Order ID.
    pub id: OrderId,
    /// The request(s).
    #[serde(default)]
    pub requests: Vec<RequestRef>,
    /// Certificate ID, when the request was approved at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<CertificateId>,
    /// A new organization made with the order.
    #[serde(
        default,
        deserialize_with = "object_or_empty_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub organization: Option<IdRef<OrganizationId>>,
}

/// `certificate` in order info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCertificate {
    /// Certificate ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<CertificateId>,
    /// Serial number (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// The CSR the order was placed with (PEM), when CertCentral returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// When the certificate was issued (ISO 8601, UTC); absent before issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_issued: Option<String>,
    /// First day of validity (`yyyy-MM-dd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// Last day of validity (`yyyy-MM-dd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_till: Option<String>,
    /// Days until the certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_remaining: Option<i64>,
}

/// `product` in order info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRef {
    /// Product identifier.
    #[serde(default)]
    pub name_id: String,
}

/// `GET /order/certificate/{order_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    /// Order ID.
    pub id: OrderId,
    /// Status.
    pub status: OrderStatus,
    /// The certificate.
    #[serde(default, deserialize_with = "object_or_empty_array")]
    pub certificate: Option<OrderCertificate>,
    /// The product.
    #[serde(default, deserialize_with = "object_or_empty_array")]
    pub product: Option<ProductRef>,
    /// The organization.
    #[serde(default, deserialize_with = "object_or_empty_array")]
    pub organization: Option<IdRef<OrganizationId>>,
    /// The requests.
    #[serde(default)]
    pub requests: Vec<RequestRef>,
    /// The alternative order ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative_order_id: Option<String>,
    /// How the key is provisioned (`ship_token`, `client_app`, `email`, ...), as CertCentral
    /// says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cs_provisioning_method: Option<String>,
    /// The code for DigiCert Hardware Certificate Installer, for `ship_token` and `client_app`
    /// orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_init_code: Option<String>,
    /// When the order was placed (ISO 8601, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<String>,
    /// Last day of the order's validity (`yyyy-MM-dd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_valid_till: Option<String>,
    /// Whether a later order renewed this one (as an older Order info sample shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_renewed: Option<bool>,
    /// The order that renewed this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_order_id: Option<OrderId>,
    /// The order this one renews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_of_order_id: Option<OrderId>,
}

impl OrderInfo {
    /// The certificate ID, when there is one.
    pub fn certificate_id(&self) -> Option<CertificateId> {
        self.certificate.as_ref().and_then(|c| c.id)
    }
}

/// One order as the alternative-ID lookup and the status-changes listing give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlternateOrder {
    /// Order ID.
    pub order_id: OrderId,
    /// Certificate ID.
    #[serde(default)]
    pub certificate_id: Option<CertificateId>,
    /// Status.
    pub status: OrderStatus,
}

/// `GET /order/alternate/{alternative_order_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlternateOrders {
    /// The orders carrying the alternative ID.
    #[serde(default)]
    pub orders: Vec<AlternateOrder>,
}

/// `GET /order/certificate/status-changes`: the orders whose status changed in the window asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanges {
    /// The orders.
    #[serde(default)]
    pub orders: Vec<AlternateOrder>,
}

/// One certificate of `GET /order/certificate/{id}/reissue`: a reissue `issued`, `pending` or
/// `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReissuedCertificate {
    /// Certificate ID (absent while a reissue waits for approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<CertificateId>,
    /// `issued`, `pending` or `rejected`.
    pub status: String,
    /// The CSR the reissue was asked with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// When it was issued (ISO 8601), once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_issued: Option<String>,
    /// Its last day (`yyyy-MM-dd`), once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_till: Option<String>,
}

/// `GET /order/certificate/{order_id}/reissue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReissueList {
    /// The order's reissues, oldest first.
    #[serde(default)]
    pub certificates: Vec<ReissuedCertificate>,
}

/// A revocation request (`201` from a revoke): it waits for an administrator's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// Request ID: approve it with `PUT /request/{id}/status`.
    pub id: RequestId,
    /// `pending` as made.
    #[serde(default)]
    pub status: String,
    /// When it was made (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// An organization in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationSummary {
    /// ID.
    pub id: OrganizationId,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Status.
    #[serde(default)]
    pub status: String,
}

/// `GET /organization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organizations {
    /// The organizations.
    #[serde(default)]
    pub organizations: Vec<OrganizationSummary>,
}

/// One validation of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationValidation {
    /// `cs`, `ev_cs`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `active` when done.
    #[serde(default)]
    pub status: String,
}

/// `GET /organization/{id}/validation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationValidations {
    /// The validations.
    #[serde(default)]
    pub validations: Vec<OrganizationValidation>,
}

/// One error of DigiCert's `{"errors":[...]}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorItem {
    /// Code, e.g. `request_limit_exceeded`, `not_found|order`.
    pub code: String,
    /// Message.
    #[serde(default)]
    pub message: String,
}

/// DigiCert's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// Every error.
    pub errors: Vec<ApiErrorItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_documented_201_responses_parse() {
        let one_step = r#"{"id": 112233, "requests": [{"id": 113, "status": "pending"}]}"#;
        let two_step = r#"{"id": 112233, "requests": [{"id": 113, "status": "submitted"}]}"#;
        let auto = r#"{"id": 112233, "requests": [{"id": 113, "status": "approved"}], "certificate_id": 113}"#;
        let r: OrderCreated = serde_json::from_str(one_step).unwrap();
        assert_eq!(r.id, OrderId(112233));
        assert_eq!(r.requests[0].status, RequestStatus::Pending);
        let r: OrderCreated = serde_json::from_str(two_step).unwrap();
        assert_eq!(r.requests[0].status, RequestStatus::Submitted);
        let r: OrderCreated = serde_json::from_str(auto).unwrap();
        assert_eq!(r.certificate_id, Some(CertificateId(113)));
        assert_eq!(r.requests[0].id, RequestId(113));
    }

    #[test]
    fn tolerates_unknown_fields_statuses_and_empty_arrays() {
        let info: OrderInfo = serde_json::from_str(
            r#"{"id": 5, "status": "being_audited", "organization": [], "certificate": {"id": 9, "x": 1}, "new_field": true}"#,
        )
        .unwrap();
        assert_eq!(info.status, OrderStatus::Other("being_audited".into()));
        assert!(!info.status.is_final());
        assert_eq!(info.organization, None);
        assert_eq!(info.certificate_id(), Some(CertificateId(9)));
        let created: OrderCreated =
            serde_json::from_str(r#"{"id": 1, "requests": [], "organization": []}"#).unwrap();
        assert_eq!(created.organization, None);
    }
}

/// The certificate of a listed order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedCertificate {
    /// Certificate ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<CertificateId>,
    /// Common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Last day of validity (`yyyy-MM-dd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_till: Option<String>,
    /// Days until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_remaining: Option<i64>,
    /// Signature hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_hash: Option<String>,
}

/// One order of `GET /order/certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedOrder {
    /// Order ID.
    pub id: OrderId,
    /// Status.
    pub status: OrderStatus,
    /// When it was placed (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<String>,
    /// The product.
    #[serde(
        default,
        deserialize_with = "object_or_empty_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub product: Option<ProductRef>,
    /// The organization.
    #[serde(
        default,
        deserialize_with = "object_or_empty_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub organization: Option<IdRef<OrganizationId>>,
    /// The certificate.
    #[serde(
        default,
        deserialize_with = "object_or_empty_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<ListedCertificate>,
    /// Whether it was renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_renewed: Option<bool>,
}

/// A page of a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Items in all pages.
    #[serde(default)]
    pub total: u64,
    /// Items per page.
    #[serde(default)]
    pub limit: u64,
    /// The first item of this page.
    #[serde(default)]
    pub offset: u64,
}

/// `GET /order/certificate`: one page of orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderList {
    /// The orders of the page.
    #[serde(default)]
    pub orders: Vec<ListedOrder>,
    /// Where the page is.
    #[serde(default)]
    pub page: Page,
}

/// One bucket of `GET /report/order/expiring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringBucket {
    /// `90` (60 to 90 days left), `60` (30 to 60), `30` (0 to 30), `-7` (expired in the last 7
    /// days).
    pub days_expiring: i64,
    /// Orders in the bucket (`count` when certificates are counted too).
    #[serde(alias = "count")]
    pub order_count: u64,
}

/// `GET /report/order/expiring`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringReport {
    /// The buckets.
    #[serde(default)]
    pub expiring_orders: Vec<ExpiringBucket>,
}
