//! The emulator's account: organizations, orders, requests, certificates, and the CA. Held in
//! memory, optionally persisted to a JSON file after every change.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EmulatorError;

/// A code signing product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Product {
    /// `code_signing`: OV code signing; the organization needs a `cs` validation.
    CodeSigning,
    /// `code_signing_ev`: EV code signing; the organization needs an `ev_cs` validation.
    CodeSigningEv,
}

impl Product {
    /// The product identifier of the API path.
    pub fn name_id(self) -> &'static str {
        match self {
            Product::CodeSigning => "code_signing",
            Product::CodeSigningEv => "code_signing_ev",
        }
    }

    /// The product from its identifier.
    pub fn from_name_id(name: &str) -> Option<Product> {
        match name {
            "code_signing" => Some(Product::CodeSigning),
            "code_signing_ev" => Some(Product::CodeSigningEv),
            _ => None,
        }
    }

    /// The organization validation type the product needs.
    pub fn validation_type(self) -> &'static str {
        match self {
            Product::CodeSigning => "cs",
            Product::CodeSigningEv => "ev_cs",
        }
    }

    /// The display name.
    pub fn display_name(self) -> &'static str {
        match self {
            Product::CodeSigning => "Code Signing",
            Product::CodeSigningEv => "EV Code Signing",
        }
    }
}

/// An organization validation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Validation {
    /// `ov`, `ev`, `cs`, `ev_cs`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `active` once validated.
    pub status: String,
}

/// An organization of the account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Organization {
    /// Organization ID.
    pub id: u64,
    /// Legal name.
    pub name: String,
    /// Street address.
    pub address: String,
    /// City.
    pub city: String,
    /// State or province.
    pub state: String,
    /// Postal code.
    pub zip: String,
    /// Two-letter country code.
    pub country: String,
    /// Telephone.
    pub telephone: String,
    /// Validations submitted.
    pub validations: Vec<Validation>,
}

impl Organization {
    /// Whether a validation of `kind` is active.
    pub fn validated_for(&self, kind: &str) -> bool {
        self.validations
            .iter()
            .any(|v| v.kind == kind && v.status == "active")
    }
}

/// A certificate request (the approval object of an order).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Request ID.
    pub id: u64,
    /// The order it belongs to.
    pub order_id: u64,
    /// `submitted`, `pending`, `approved` or `rejected`.
    pub status: String,
    /// What it asks for: `new_request`, `reissue` or `revoke`.
    #[serde(default = "new_request")]
    pub kind: String,
    /// For a revoke of one certificate: which (else the whole order).
    #[serde(default)]
    pub certificate_id: Option<u64>,
    /// The requester's comment.
    #[serde(default)]
    pub comments: Option<String>,
    /// When it was made (Unix seconds).
    #[serde(default)]
    pub date_unix: i64,
}

fn new_request() -> String {
    "new_request".to_string()
}

/// A reissue waiting for approval or issuance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingReissue {
    /// Its request.
    pub request_id: u64,
    /// The CSR (PEM) of the new key.
    pub csr: String,
    /// The new certificate's ID, once the request is approved.
    pub certificate_id: Option<u64>,
    /// When it was asked for (Unix seconds).
    pub created_unix: i64,
}

/// An order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// Order ID.
    pub id: u64,
    /// The product ordered.
    pub product: Product,
    /// Order status: `needs_approval`, `pending`, `issued`, `rejected`, `canceled`.
    pub status: String,
    /// The request's ID.
    pub request_id: u64,
    /// The organization.
    pub organization_id: u64,
    /// The caller's alternative order ID.
    pub alternative_order_id: Option<String>,
    /// The CSR (PEM), when one was sent.
    pub csr: Option<String>,
    /// The provisioning method sent.
    pub cs_provisioning_method: Option<String>,
    /// Validity end, as a Unix timestamp.
    pub not_after_unix: i64,
    /// Order info polls seen since approval.
    pub polls_since_approval: u32,
    /// When the request was approved (Unix seconds).
    pub approved_at_unix: Option<i64>,
    /// The issued certificate.
    pub certificate_id: Option<u64>,
    /// Creation time (Unix seconds).
    pub created_unix: i64,
    /// When the status last changed (Unix seconds), for `status-changes`.
    #[serde(default)]
    pub status_updated_unix: i64,
    /// Code for installing on a DigiCert-supported token (token methods only).
    pub hardware_init_code: Option<String>,
    /// The request body as received.
    pub body: serde_json::Value,
    /// A reissue in progress (the order is `reissue_pending`).
    #[serde(default)]
    pub reissue: Option<PendingReissue>,
    /// Certificates the order had before its reissues, oldest first.
    #[serde(default)]
    pub previous_certificates: Vec<u64>,
    /// The order this one renews.
    #[serde(default)]
    pub renewal_of_order_id: Option<u64>,
    /// The order that renewed this one.
    #[serde(default)]
    pub renewed_order_id: Option<u64>,
}

impl Order {
    /// Changes the status, and notes when.
    pub fn set_status(&mut self, status: &str, now_unix: i64) {
        if self.status != status {
            self.status = status.to_string();
            self.status_updated_unix = now_unix;
        }
    }
}

/// An issued certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// Certificate ID.
    pub id: u64,
    /// The order.
    pub order_id: u64,
    /// The end-entity certificate, PEM.
    pub leaf_pem: String,
    /// Serial number, hex.
    pub serial_hex: String,
    /// When it was revoked (Unix seconds).
    #[serde(default)]
    pub revoked_unix: Option<i64>,
}

/// The emulator CA's keys and certificates, PEM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaMaterial {
    /// Root certificate.
    pub root_cert_pem: String,
    /// Root key (PKCS#8).
    pub root_key_pem: String,
    /// Intermediate certificate.
    pub intermediate_cert_pem: String,
    /// Intermediate key (PKCS#8).
    pub intermediate_key_pem: String,
}

/// The whole account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The next ID to hand out (orders, requests, certificates, organizations share the counter).
    pub next_id: u64,
    /// Organizations by ID.
    pub organizations: BTreeMap<u64, Organization>,
    /// Container IDs.
    pub containers: Vec<u64>,
    /// Custom field metadata IDs.
    pub custom_field_ids: Vec<u64>,
    /// Orders by ID.
    pub orders: BTreeMap<u64, Order>,
    /// Requests by ID.
    pub requests: BTreeMap<u64, Request>,
    /// Certificates by ID.
    pub certificates: BTreeMap<u64, IssuedCertificate>,
    /// The CA.
    pub ca: CaMaterial,
}

/// The seed of DESIGN.md: the API page's example ids exist.
pub const SEED_ORGANIZATION_ID: u64 = 123_456;
/// The seeded container.
pub const SEED_CONTAINER_ID: u64 = 654_321;
/// The seeded custom field.
pub const SEED_CUSTOM_FIELD_ID: u64 = 12;

impl State {
    /// A new account seeded with organization 123456 (validated for `cs` and `ev_cs`), container
    /// 654321 and custom field 12.
    pub fn seeded(ca: CaMaterial) -> State {
        let mut organizations = BTreeMap::new();
        organizations.insert(
            SEED_ORGANIZATION_ID,
            Organization {
                id: SEED_ORGANIZATION_ID,
                name: "Example Corp".to_string(),
                address: "360 Taylor Street".to_string(),
                city: "Richmond".to_string(),
                state: "Virginia".to_string(),
                zip: "69662".to_string(),
                country: "US".to_string(),
                telephone: "+1 555 0100".to_string(),
                validations: ["cs", "ev_cs"]
                    .iter()
                    .map(|k| Validation {
                        kind: k.to_string(),
                        status: "active".to_string(),
                    })
                    .collect(),
            },
        );
        State {
            next_id: 100_001,
            organizations,
            containers: vec![SEED_CONTAINER_ID],
            custom_field_ids: vec![SEED_CUSTOM_FIELD_ID],
            orders: BTreeMap::new(),
            requests: BTreeMap::new(),
            certificates: BTreeMap::new(),
            ca,
        }
    }

    /// A fresh ID.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> Result<State, EmulatorError> {
        let text = std::fs::read(path).map_err(|e| EmulatorError::StateFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        serde_json::from_slice(&text).map_err(|e| EmulatorError::StateFile {
            path: path.to_path_buf(),
            reason: format!("not an emulator state file: {e}"),
        })
    }

    /// Writes the state file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), EmulatorError> {
        let failed = |e: std::io::Error| EmulatorError::StateFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let json = serde_json::to_vec_pretty(self).map_err(|e| failed(std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        // The state holds the test CA's private keys: readable by the owner alone, whatever the
        // umask, from the moment the file exists.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(failed)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| file.write_all(&json))
            .and_then(|()| file.sync_all())
            .map_err(failed)?;
        std::fs::rename(&tmp, path).map_err(failed)
    }
}
