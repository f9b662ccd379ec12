//! Client-side validation: every rule of the API page, checked before any network call, every
//! problem reported at once with its JSON path.
//!
//! ```
//! use certcentral::{OrderRequest, Product, ValidatedOrder};
//!
//! let body = OrderRequest::from_json(r#"{"certificate": {"signature_hash": "sha1"}}"#).unwrap();
//! let errors = ValidatedOrder::new(Product::CodeSigningEv, body, None).unwrap_err();
//! let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
//! assert!(paths.contains(&"certificate.signature_hash"));
//! assert!(paths.contains(&"organization"));
//! assert!(paths.contains(&"cs_provisioning_method"));
//! ```

use getrandom::rand_core::TryRng;
use time::{Date, Month, OffsetDateTime};

use crate::error::{CertCentralError, FieldError, ValidationErrors};
use crate::model::{
    OrderRequest, PaymentMethod, Product, ProvisioningMethod, ShipMethod, SignatureHash,
};

/// Checks a CSR (parse, self-signature, key policy). The order crate knows nothing of keys: the
/// caller supplies this (the root crate wires in `codesign-keys`).
pub trait CsrCheck: Send + Sync {
    /// `Ok` for an acceptable CSR, else every reason.
    ///
    /// # Errors
    /// The reasons the CSR is refused.
    fn check(&self, csr_pem: &str) -> Result<(), Vec<String>>;
}

/// A request that passed every rule, with its product and an `alternative_order_id` (the caller's
/// or a generated one). Only these can be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedOrder {
    product: Product,
    request: OrderRequest,
    alternative_order_id: String,
    warnings: Vec<String>,
}

/// The longest code signing certificate DigiCert issues, in days, since [`VALIDITY_CAP_SINCE`]:
/// CA/Browser Forum ballot CSC-31 caps publicly trusted code signing certificates at 460 days from
/// 2026-03-01, and DigiCert takes one day less so that no time zone can push one over
/// (<https://docs.digicert.com/en/certcentral/manage-certificates/end-of-2-and-3-year-public-code-signing-certificates.html>).
pub const MAX_VALIDITY_DAYS: i64 = 459;

/// The day DigiCert's 459-day cap took effect (2026-02-24); before it, orders of up to 3 years
/// were taken.
pub const VALIDITY_CAP_SINCE: Date = time::macros::date!(2026 - 02 - 24);

/// The validity rule in force on a day: the longest validity in days, and the most years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidityCap {
    /// The longest validity, in days.
    pub max_days: i64,
    /// The most `years` an order may ask.
    pub max_years: i64,
}

impl ValidityCap {
    /// The rule in force at `now`.
    pub fn at(now: OffsetDateTime) -> ValidityCap {
        if now.date() >= VALIDITY_CAP_SINCE {
            ValidityCap {
                max_days: MAX_VALIDITY_DAYS,
                max_years: 1,
            }
        } else {
            ValidityCap {
                max_days: 3 * 365,
                max_years: 3,
            }
        }
    }

    fn rule(&self) -> String {
        if self.max_days == MAX_VALIDITY_DAYS {
            format!(
                "DigiCert issues no code signing certificate valid for more than {MAX_VALIDITY_DAYS} days since {VALIDITY_CAP_SINCE} (CA/Browser Forum ballot CSC-31: 460 days from 2026-03-01)"
            )
        } else {
            "code signing orders ran at most 3 years before DigiCert's 459-day cap".to_string()
        }
    }
}

impl ValidatedOrder {
    /// Validates `request` for `product`; `csr_check` judges the CSR when one is present.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every broken rule.
    pub fn new(
        product: Product,
        request: OrderRequest,
        csr_check: Option<&dyn CsrCheck>,
    ) -> Result<ValidatedOrder, ValidationErrors> {
        ValidatedOrder::new_at(product, request, csr_check, OffsetDateTime::now_utc())
    }

    /// [`ValidatedOrder::new`] as of `now`: the dates of the order (a custom expiration date must
    /// be ahead, and within the validity cap) and the cap itself ([`ValidityCap::at`]) are
    /// judged against it.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every broken rule.
    pub fn new_at(
        product: Product,
        mut request: OrderRequest,
        csr_check: Option<&dyn CsrCheck>,
        now: OffsetDateTime,
    ) -> Result<ValidatedOrder, ValidationErrors> {
        let mut v = Validator {
            errors: Vec::new(),
            warnings: Vec::new(),
            now,
        };
        v.check(&product, &request, csr_check);
        if !v.errors.is_empty() {
            return Err(ValidationErrors(v.errors));
        }
        let alternative_order_id = match &request.alternative_order_id {
            Some(given) => given.clone(),
            None => generate_alternative_order_id().map_err(|e| {
                ValidationErrors(vec![FieldError {
                    path: "alternative_order_id".to_string(),
                    message: format!("cannot be generated: {e}"),
                }])
            })?,
        };
        request.alternative_order_id = Some(alternative_order_id.clone());
        Ok(ValidatedOrder {
            product,
            request,
            alternative_order_id,
            warnings: v.warnings,
        })
    }

    /// The product.
    pub fn product(&self) -> &Product {
        &self.product
    }

    /// The request, exactly as it will be sent.
    pub fn request(&self) -> &OrderRequest {
        &self.request
    }

    /// The alternative order ID the order carries.
    pub fn alternative_order_id(&self) -> &str {
        &self.alternative_order_id
    }

    /// Things that are allowed but probably not meant (ignored fields, overridden validity).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// The most characters a string of the order body may hold, by its JSON path.
///
/// The API page gives a length for `alternative_order_id` alone (64, checked with its own rule).
/// For the rest these are our bounds, chosen so that no real order comes near them and no runaway
/// input is sent: a CSR (an RSA-4096 CSR in PEM is about 1.8 KB) up to 16,384 characters, the
/// free-text `comments` up to 1,024, and every other string (names, addresses, e-mail addresses,
/// custom field values) up to 255, the longest such field in X.509 names and in common address
/// schemas.
pub fn max_text_length(path: &str) -> usize {
    match path {
        "certificate.csr" => 16_384,
        "comments" => 1_024,
        _ => 255,
    }
}

/// An alternative order ID derived from what is ordered: the product and the CSR when the body has
/// one, else the product and the whole body. The same order run twice (after a timeout, say) then
/// carries the same ID, and the client's lookup finds the first one instead of buying a second
/// certificate. 40 lower-case hex digits (160 bits of SHA-256).
///
/// ```
/// use certcentral::{derive_alternative_order_id, OrderRequest, Product};
///
/// let body = OrderRequest::from_json(r#"{"comments": "build signer"}"#).unwrap();
/// let a = derive_alternative_order_id(&Product::CodeSigning, &body);
/// assert_eq!(a, derive_alternative_order_id(&Product::CodeSigning, &body));
/// assert_ne!(a, derive_alternative_order_id(&Product::CodeSigningEv, &body));
/// assert_eq!(a.len(), 40);
/// ```
pub fn derive_alternative_order_id(product: &Product, request: &OrderRequest) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"codesign-kit alternative order ID v1\0");
    hash.update(product.as_str().as_bytes());
    hash.update(b"\0");
    match request.certificate.as_ref().and_then(|c| c.csr.as_deref()) {
        Some(csr) => {
            hash.update(b"csr\0");
            let compact: String = csr.chars().filter(|c| !c.is_whitespace()).collect();
            hash.update(compact.as_bytes());
        }
        None => {
            let mut body = request.clone();
            body.alternative_order_id = None;
            hash.update(b"body\0");
            // A typed body serializes its fields in one order, so equal bodies give equal text.
            hash.update(body.to_json().to_string().as_bytes());
        }
    }
    base16ct::lower::encode_string(&hash.finalize()[..20])
}

/// 32 random letters and digits.
///
/// # Errors
/// [`CertCentralError::Randomness`] when the operating system's random number generator fails.
pub fn generate_alternative_order_id() -> Result<String, CertCentralError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    getrandom::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| CertCentralError::Randomness)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect())
}

struct Validator {
    errors: Vec<FieldError>,
    warnings: Vec<String>,
    now: OffsetDateTime,
}

fn documented(values: &[&str]) -> String {
    values.join(", ")
}

impl Validator {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn text_required(&mut self, path: &str, value: &Option<String>) {
        if value.as_deref().is_none_or(|s| s.trim().is_empty()) {
            self.error(path, "is required");
        }
    }

    fn check(&mut self, product: &Product, r: &OrderRequest, csr_check: Option<&dyn CsrCheck>) {
        if let Product::Other(p) = product {
            self.error(
                "product",
                format!(
                    "\"{p}\" is not a code signing product; use code_signing or code_signing_ev"
                ),
            );
        }
        let ev = *product == Product::CodeSigningEv;
        for key in r.unknown.keys() {
            self.error(key, "is not a field of the code signing order (typo?)");
        }

        // cs_provisioning_method
        match &r.cs_provisioning_method {
            None if ev => self.error("cs_provisioning_method", "is required for code_signing_ev"),
            Some(ProvisioningMethod::Other(m)) => self.error(
                "cs_provisioning_method",
                format!(
                    "must be one of {}; got \"{m}\"",
                    documented(ProvisioningMethod::DOCUMENTED)
                ),
            ),
            _ => {}
        }

        // certificate
        match &r.certificate {
            None => self.error("certificate", "is required"),
            Some(cert) => {
                for key in cert.unknown.keys() {
                    self.error(
                        &format!("certificate.{key}"),
                        "is not a field of certificate (typo?)",
                    );
                }
                match &cert.signature_hash {
                    None => self.error("certificate.signature_hash", "is required"),
                    Some(SignatureHash::Other(h)) => self.error(
                        "certificate.signature_hash",
                        format!("must be sha256; got \"{h}\""),
                    ),
                    Some(SignatureHash::Sha256) => {}
                }
                let platform_needed = matches!(
                    r.cs_provisioning_method,
                    None | Some(ProvisioningMethod::ClientApp)
                );
                if platform_needed && cert.server_platform.is_none() {
                    self.error(
                        "certificate.server_platform",
                        "is required when cs_provisioning_method is client_app or not given",
                    );
                }
                let platform = cert.server_platform.as_ref().map(|p| p.id);
                let csr_needed_by_email =
                    r.cs_provisioning_method == Some(ProvisioningMethod::Email);
                let csr_needed_by_java = *product == Product::CodeSigning && platform == Some(55);
                match &cert.csr {
                    None if csr_needed_by_email => self.error(
                        "certificate.csr",
                        "is required when cs_provisioning_method is email (install on HSM)",
                    ),
                    None if csr_needed_by_java => self.error(
                        "certificate.csr",
                        "is required for code_signing with server_platform.id 55 (Sun Java)",
                    ),
                    None => {}
                    Some(csr) => {
                        if !csr.contains("-----BEGIN") {
                            self.error(
                                "certificate.csr",
                                "must be the CSR in PEM, with its BEGIN and END lines",
                            );
                        } else if let Some(check) = csr_check
                            && let Err(reasons) = check.check(csr)
                        {
                            for reason in reasons {
                                self.error("certificate.csr", reason);
                            }
                        }
                    }
                }
                if let Some(units) = &cert.organization_units
                    && units.iter().any(|u| u.trim().is_empty())
                {
                    self.error(
                        "certificate.organization_units",
                        "must not hold empty names",
                    );
                }
            }
        }

        // organization
        match &r.organization {
            None => self.error(
                "organization",
                "is required: give organization.id of a validated organization",
            ),
            Some(org) => {
                for key in org.unknown.keys() {
                    self.error(
                        &format!("organization.{key}"),
                        "is not a field of organization (typo?)",
                    );
                }
                match org.id {
                    Some(id) if id <= 0 => self.error(
                        "organization.id",
                        format!("must be a positive organization ID; got {id}"),
                    ),
                    Some(_) => {
                        if org.name.is_some() || org.address.is_some() {
                            self.warnings.push(
                                "organization: details are ignored when organization.id is given"
                                    .to_string(),
                            );
                        }
                    }
                    None => {
                        for (field, value) in [
                            ("name", &org.name),
                            ("address", &org.address),
                            ("city", &org.city),
                            ("state", &org.state),
                            ("zip", &org.zip),
                            ("country", &org.country),
                            ("telephone", &org.telephone),
                        ] {
                            self.text_required(&format!("organization.{field}"), value);
                        }
                        match &org.organization_contact {
                            None => self.error(
                                "organization.organization_contact",
                                "is required for a new organization",
                            ),
                            Some(c) => {
                                for (field, value) in [
                                    ("first_name", &c.first_name),
                                    ("last_name", &c.last_name),
                                    ("email", &c.email),
                                    ("telephone", &c.telephone),
                                ] {
                                    self.text_required(
                                        &format!("organization.organization_contact.{field}"),
                                        value,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }

        self.validity(r);

        // ship_info
        if let Some(ship) = &r.ship_info {
            for (field, value) in [
                ("name", &ship.name),
                ("addr1", &ship.addr1),
                ("city", &ship.city),
                ("state", &ship.state),
                ("zip", &ship.zip),
                ("country", &ship.country),
            ] {
                self.text_required(&format!("ship_info.{field}"), value);
            }
            match &ship.method {
                None => self.error("ship_info.method", "is required"),
                Some(ShipMethod::Other(m)) => self.error(
                    "ship_info.method",
                    format!(
                        "must be {}; got \"{m}\"",
                        documented(ShipMethod::DOCUMENTED)
                    ),
                ),
                Some(_) => {}
            }
            if r.cs_provisioning_method != Some(ProvisioningMethod::ShipToken) {
                self.warnings.push(
                    "ship_info: only used when cs_provisioning_method is ship_token".to_string(),
                );
            }
        }

        // subject.email
        if let Some(email) = r.subject.as_ref().and_then(|s| s.email.as_ref()) {
            if ev {
                self.warnings
                    .push("subject.email: ignored for code_signing_ev orders".to_string());
            } else if !looks_like_email(email) {
                self.error(
                    "subject.email",
                    format!("must be an e-mail address; got \"{email}\""),
                );
            }
        }

        if let Some(fields) = &r.custom_fields {
            for (i, f) in fields.iter().enumerate() {
                if f.metadata_id <= 0 {
                    self.error(
                        &format!("custom_fields[{i}].metadata_id"),
                        "must be a positive custom field ID",
                    );
                }
            }
        }
        if let Some(container) = &r.container
            && container.id <= 0
        {
            self.error("container.id", "must be a positive container ID");
        }
        if let Some(PaymentMethod::Other(p)) = &r.payment_method {
            self.error(
                "payment_method",
                format!(
                    "must be one of {}; got \"{p}\"",
                    documented(PaymentMethod::DOCUMENTED)
                ),
            );
        }
        if let Some(alt) = &r.alternative_order_id
            && (alt.is_empty() || alt.len() > 64 || !alt.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            self.error(
                "alternative_order_id",
                format!("must be 1 to 64 letters and digits; got \"{alt}\""),
            );
        }
        if let Some(g) = r.enable_guest_access
            && !(g == 0 || g == 1)
        {
            self.error("enable_guest_access", format!("must be 0 or 1; got {g}"));
        }
        if let Some(n) = r.auto_renew
            && n < 0
        {
            self.error("auto_renew", format!("must not be negative; got {n}"));
        }
        if let Some(id) = r.renewal_of_order_id
            && id <= 0
        {
            self.error(
                "renewal_of_order_id",
                format!("must be a positive order ID; got {id}"),
            );
        }
        self.lengths(&r.to_json(), "");
        if let Some(emails) = &r.additional_emails {
            for (i, e) in emails.iter().enumerate() {
                if !looks_like_email(e) {
                    self.error(
                        &format!("additional_emails[{i}]"),
                        format!("must be an e-mail address; got \"{e}\""),
                    );
                }
            }
        }
    }

    /// Every string of the body within its length (see [`max_text_length`]).
    fn lengths(&mut self, value: &serde_json::Value, path: &str) {
        match value {
            serde_json::Value::String(text) => {
                let limit = max_text_length(path);
                let length = text.chars().count();
                if length > limit {
                    self.error(
                        path,
                        format!("must be at most {limit} characters; got {length}"),
                    );
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.lengths(item, &format!("{path}[{i}]"));
                }
            }
            serde_json::Value::Object(fields) => {
                for (key, item) in fields {
                    let at = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    self.lengths(item, &at);
                }
            }
            _ => {}
        }
    }

    fn validity(&mut self, r: &OrderRequest) {
        let cap = ValidityCap::at(self.now);
        let deprecated_given = r.validity_years.is_some()
            || r.validity_days.is_some()
            || r.custom_expiration_date.is_some();
        // The field that decides is checked, by the API page's precedence; an overridden one
        // only earns a warning.
        if let Some(ov) = &r.order_validity {
            if deprecated_given {
                self.warnings.push(
                    "validity_years / validity_days / custom_expiration_date are deprecated and overridden by order_validity".to_string(),
                );
            }
            let given = [
                ov.years.is_some(),
                ov.days.is_some(),
                ov.custom_expiration_date.is_some(),
            ];
            if given.iter().filter(|g| **g).count() > 1 {
                self.warnings.push(
                    "order_validity: more than one of years, days, custom_expiration_date; custom_expiration_date overrides days, which overrides years".to_string(),
                );
            }
            if let Some(date) = &ov.custom_expiration_date {
                match parse_dd_mmm_yyyy(date) {
                    Some(d) => {
                        self.expiration_date("order_validity.custom_expiration_date", d, &cap)
                    }
                    None => self.error(
                        "order_validity.custom_expiration_date",
                        format!(
                            "must be written dd MMM YYYY, e.g. \"09 JUN 2025\"; got \"{date}\""
                        ),
                    ),
                }
            } else if let Some(days) = ov.days {
                self.days("order_validity.days", days, &cap);
            } else if let Some(years) = ov.years {
                self.years("order_validity.years", years, &cap);
            } else {
                self.error(
                    "order_validity.years",
                    "is required (or order_validity.days or order_validity.custom_expiration_date)",
                );
            }
            return;
        }
        if let Some(date) = &r.custom_expiration_date {
            if r.validity_years.is_some() || r.validity_days.is_some() {
                self.warnings.push(
                    "custom_expiration_date overrides validity_days and validity_years".to_string(),
                );
            }
            match parse_iso_date(date) {
                Some(d) => self.expiration_date("custom_expiration_date", d, &cap),
                None => self.error(
                    "custom_expiration_date",
                    format!("must be written yyyy-MM-dd; got \"{date}\""),
                ),
            }
        } else if let Some(days) = r.validity_days {
            if r.validity_years.is_some() {
                self.warnings
                    .push("validity_days overrides validity_years".to_string());
            }
            self.days("validity_days", days, &cap);
        } else if let Some(years) = r.validity_years {
            self.years("validity_years", years, &cap);
        } else {
            self.error("order_validity", "is required");
        }
    }

    fn years(&mut self, path: &str, years: i64, cap: &ValidityCap) {
        if !(1..=cap.max_years).contains(&years) {
            let allowed = if cap.max_years == 1 {
                "must be 1".to_string()
            } else {
                format!("must be 1 to {}", cap.max_years)
            };
            self.error(path, format!("{allowed}: {}; got {years}", cap.rule()));
        }
    }

    fn days(&mut self, path: &str, days: i64, cap: &ValidityCap) {
        if !(1..=cap.max_days).contains(&days) {
            self.error(
                path,
                format!("must be 1 to {}: {}; got {days}", cap.max_days, cap.rule()),
            );
        }
    }

    fn expiration_date(&mut self, path: &str, date: Date, cap: &ValidityCap) {
        let ahead = (date - self.now.date()).whole_days();
        if ahead < 1 {
            self.error(
                path,
                format!("must be after today ({}); got {date}", self.now.date()),
            );
        } else if ahead > cap.max_days {
            self.error(
                path,
                format!(
                    "must be at most {} days after today ({}), i.e. on or before {}: {}; got {date}, {ahead} days",
                    cap.max_days,
                    self.now.date(),
                    self.now.date() + time::Duration::days(cap.max_days),
                    cap.rule()
                ),
            );
        }
    }
}

fn looks_like_email(s: &str) -> bool {
    let mut parts = s.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && b.contains('.') && !s.contains(' '))
}

fn parse_dd_mmm_yyyy(s: &str) -> Option<Date> {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let mut parts = s.split(' ');
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || day.len() != 2
        || year.len() != 4
        || !day.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u8 + 1;
    Date::from_calendar_date(
        year.parse().ok()?,
        Month::try_from(month).ok()?,
        day.parse().ok()?,
    )
    .ok()
}

fn parse_iso_date(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    Date::from_calendar_date(
        year.parse().ok()?,
        Month::try_from(month.parse::<u8>().ok()?).ok()?,
        day.parse().ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A code signing body with the given validity fields, judged on `today` at noon UTC.
    fn judged(validity: serde_json::Value, today: Date) -> Result<(), String> {
        let mut body = serde_json::json!({
            "certificate": {"server_platform": {"id": 52}, "signature_hash": "sha256"},
            "organization": {"id": 123456}
        });
        if let (Some(body), Some(fields)) = (body.as_object_mut(), validity.as_object()) {
            body.extend(fields.clone());
        }
        let request = OrderRequest::from_json(&body.to_string()).map_err(|e| e.to_string())?;
        let now = today
            .with_hms(12, 0, 0)
            .map_err(|e| e.to_string())?
            .assume_utc();
        ValidatedOrder::new_at(Product::CodeSigning, request, None, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn dd_mmm_yyyy(date: Date) -> String {
        let month = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ][usize::from(u8::from(date.month())) - 1];
        format!("{:02} {month} {}", date.day(), date.year())
    }

    #[test]
    fn validity_is_capped_at_459_days_in_every_form() {
        let today = time::macros::date!(2026 - 11 - 29);
        let in_days = |n: i64| today + time::Duration::days(n);
        let accepted = [
            serde_json::json!({"order_validity": {"years": 1}}),
            serde_json::json!({"order_validity": {"days": 459}}),
            serde_json::json!({"order_validity": {"custom_expiration_date": dd_mmm_yyyy(in_days(459))}}),
            serde_json::json!({"order_validity": {"custom_expiration_date": dd_mmm_yyyy(in_days(1))}}),
            serde_json::json!({"validity_years": 1}),
            serde_json::json!({"validity_days": 459}),
            serde_json::json!({"custom_expiration_date": in_days(459).to_string()}),
            // An overridden field is not what is asked: days decides here.
            serde_json::json!({"order_validity": {"years": 2, "days": 200}}),
        ];
        for validity in accepted {
            assert_eq!(judged(validity.clone(), today), Ok(()), "{validity}");
        }
        let refused = [
            (
                serde_json::json!({"order_validity": {"years": 2}}),
                "order_validity.years: must be 1",
            ),
            (
                serde_json::json!({"order_validity": {"years": 3}}),
                "order_validity.years: must be 1",
            ),
            (
                serde_json::json!({"order_validity": {"days": 460}}),
                "order_validity.days: must be 1 to 459",
            ),
            (
                serde_json::json!({"order_validity": {"custom_expiration_date": dd_mmm_yyyy(in_days(460))}}),
                "must be at most 459 days after today (2026-11-29), i.e. on or before 2028-03-02",
            ),
            (
                serde_json::json!({"order_validity": {"custom_expiration_date": dd_mmm_yyyy(today)}}),
                "must be after today",
            ),
            (
                serde_json::json!({"validity_years": 2}),
                "validity_years: must be 1",
            ),
            (
                serde_json::json!({"validity_days": 460}),
                "validity_days: must be 1 to 459",
            ),
            (
                serde_json::json!({"custom_expiration_date": in_days(460).to_string()}),
                "custom_expiration_date: must be at most 459 days",
            ),
        ];
        for (validity, says) in refused {
            let err = judged(validity.clone(), today).unwrap_err();
            assert!(err.contains(says), "{validity}: {err}");
            if !says.contains("after today") {
                assert!(err.contains("CSC-31") && err.contains("459 days"), "{err}");
            }
        }
    }

    #[test]
    fn the_cap_is_the_rule_of_the_day() {
        let before = time::macros::date!(2026 - 02 - 23);
        assert_eq!(
            judged(serde_json::json!({"order_validity": {"years": 3}}), before),
            Ok(())
        );
        assert_eq!(
            judged(
                serde_json::json!({"order_validity": {"days": 1095}}),
                before
            ),
            Ok(())
        );
        assert!(
            judged(
                serde_json::json!({"order_validity": {"days": 1096}}),
                before
            )
            .is_err()
        );
        let since = VALIDITY_CAP_SINCE;
        assert!(judged(serde_json::json!({"order_validity": {"years": 2}}), since).is_err());
        assert_eq!(
            judged(serde_json::json!({"order_validity": {"days": 459}}), since),
            Ok(())
        );
    }

    #[test]
    fn dates_parse_strictly() {
        assert!(parse_dd_mmm_yyyy("09 JUN 2025").is_some());
        assert!(parse_dd_mmm_yyyy("09 jun 2025").is_some());
        for bad in [
            "9 JUN 2025",
            "09 JUNE 2025",
            "31 FEB 2025",
            "2025-06-09",
            "09 JUN 2025 x",
            "+9 JUN 2025",
        ] {
            assert!(parse_dd_mmm_yyyy(bad).is_none(), "{bad}");
        }
        assert!(parse_iso_date("2025-06-09").is_some());
        for bad in ["2025-6-09", "09 JUN 2025", "2025-13-01", "2025-06-09-01"] {
            assert!(parse_iso_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn generated_alternative_ids_follow_the_rule() {
        let a = generate_alternative_order_id().unwrap();
        let b = generate_alternative_order_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
