//! The code signing order request, field for field as the API page documents it.
//!
//! Fields with documented values are enums; a value the docs do not list is kept as `Other` (never
//! dropped) so that [`crate::validate`] can report it with its JSON path, together with every other
//! problem, instead of failing on the first one while parsing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Defines an enum of documented string values with an `Other(String)` catch-all that round-trips.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A value the API page does not list (kept as sent).
            Other(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            /// The documented values.
            pub const DOCUMENTED: &'static [&'static str] = &[$($text),+];
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
                v.as_str().to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The code signing products (the path parameter of the order endpoint).
    Product {
        /// OV code signing.
        CodeSigning => "code_signing",
        /// EV code signing.
        CodeSigningEv => "code_signing_ev",
    }
);

string_enum!(
    /// `certificate.signature_hash`.
    SignatureHash {
        /// SHA-256, the only documented value.
        Sha256 => "sha256",
    }
);

string_enum!(
    /// `cs_provisioning_method`: how the certificate reaches its key.
    ProvisioningMethod {
        /// DigiCert ships a token.
        ShipToken => "ship_token",
        /// Install on an existing supported token.
        ClientApp => "client_app",
        /// Install on your own HSM: the certificate is e-mailed; a CSR is required.
        Email => "email",
    }
);

string_enum!(
    /// `ship_info.method`.
    ShipMethod {
        /// Standard shipping.
        Standard => "STANDARD",
        /// Expedited shipping (added cost).
        Expedited => "EXPEDITED",
    }
);

string_enum!(
    /// `payment_method`.
    PaymentMethod {
        /// Account balance (the default).
        Balance => "balance",
        /// Credit card.
        Card => "card",
        /// Payment profile.
        Profile => "profile",
    }
);

/// `certificate.server_platform`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPlatform {
    /// Server platform ID (-1 "Other", 55 Sun Java, ...).
    pub id: i64,
}

/// `certificate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateDetails {
    /// The CSR, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// The signing hash; `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_hash: Option<SignatureHash>,
    /// The server platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_platform: Option<ServerPlatform>,
    /// Departments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_units: Option<Vec<String>>,
    /// Fields not on the API page (reported by validation).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// `organization.organization_contact` of a new organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationContact {
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Telephone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone: Option<String>,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone_extension: Option<String>,
}

/// `organization`: an existing one by `id`, or a new one by its details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationRef {
    /// An existing organization's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// New organization: legal name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Assumed name (DBA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_name: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Second address line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Country (two letters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Telephone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone: Option<String>,
    /// Contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_contact: Option<OrganizationContact>,
    /// Force a new organization even when one matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_duplicate_org_check: Option<bool>,
    /// Fields not on the API page.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// `container`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    /// Container ID.
    pub id: i64,
}

/// `order_validity`: one of years, days, custom expiration date (that precedence, highest last).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderValidity {
    /// Years: 1 since DigiCert's 459-day cap (1 to 3 before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub years: Option<i64>,
    /// Days; overrides years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i64>,
    /// `dd MMM YYYY`; overrides days and years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_expiration_date: Option<String>,
}

/// `ship_info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipInfo {
    /// Recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr1: Option<String>,
    /// Second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr2: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// STANDARD or EXPEDITED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ShipMethod>,
}

/// `subject`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Subject e-mail (OV code signing only; ignored for EV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// One of `custom_fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    /// Custom field ID.
    pub metadata_id: i64,
    /// Its value.
    pub value: String,
}

/// The body of `POST /order/certificate/{code_signing|code_signing_ev}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// `certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateDetails>,
    /// `auto_renew`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_renew: Option<i64>,
    /// `additional_emails`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_emails: Option<Vec<String>>,
    /// `renewal_of_order_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_of_order_id: Option<i64>,
    /// `skip_approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_approval: Option<bool>,
    /// `organization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationRef>,
    /// `container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
    /// `order_validity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_validity: Option<OrderValidity>,
    /// Deprecated `validity_years`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_years: Option<i64>,
    /// Deprecated `validity_days`; overrides `validity_years`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_days: Option<i64>,
    /// Deprecated `custom_expiration_date` (`yyyy-MM-dd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_expiration_date: Option<String>,
    /// `cs_provisioning_method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cs_provisioning_method: Option<ProvisioningMethod>,
    /// `ship_info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_info: Option<ShipInfo>,
    /// `subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// `custom_fields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields: Option<Vec<CustomField>>,
    /// `payment_method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<PaymentMethod>,
    /// `alternative_order_id`: the idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative_order_id: Option<String>,
    /// `enable_guest_access`: 0 or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_guest_access: Option<i64>,
    /// `comments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    /// `custom_renewal_message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_renewal_message: Option<String>,
    /// Fields not on the API page (reported by validation, never sent silently).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

impl OrderRequest {
    /// Parses a request body (JSON).
    ///
    /// # Errors
    /// [`crate::CertCentralError::OrderBody`], saying where the JSON first breaks the model.
    pub fn from_json(text: &str) -> Result<OrderRequest, crate::CertCentralError> {
        serde_json::from_str(text).map_err(crate::CertCentralError::OrderBody)
    }

    /// The body as JSON.
    #[allow(
        clippy::expect_used,
        reason = "a struct of strings, numbers and string-keyed maps always serializes"
    )]
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an order request serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_are_kept() {
        let m: ProvisioningMethod = serde_json::from_str("\"key_locker\"").unwrap();
        assert_eq!(m, ProvisioningMethod::Other("key_locker".into()));
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"key_locker\"");
        let m: ShipMethod = serde_json::from_str("\"EXPEDITED\"").unwrap();
        assert_eq!(m, ShipMethod::Expedited);
        assert_eq!(ShipMethod::DOCUMENTED, ["STANDARD", "EXPEDITED"]);
    }
}
