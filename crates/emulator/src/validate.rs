//! Server-side validation of a code signing order, written from the API page. Every problem is
//! collected (not only the first), each message starting with the field's JSON path.

use crate::oid;
use serde_json::Value;
use time::{Date, Month, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::state::{Organization, Product, State};

/// One entry of DigiCert's `{"errors":[{"code","message"}]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message; for field errors it starts with the JSON path.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// Which organization an order is for.
#[derive(Debug, Clone)]
pub enum OrgChoice {
    /// An existing organization.
    Existing(u64),
    /// A new organization to create with the order (its `id` is assigned on creation).
    New(Organization),
}

/// A valid order, ready to be placed.
#[derive(Debug, Clone)]
pub struct AcceptedOrder {
    /// The CSR, PEM.
    pub csr_pem: Option<String>,
    /// The CSR's public key, DER.
    pub spki_der: Option<Vec<u8>>,
    /// The organization.
    pub organization: OrgChoice,
    /// `cs_provisioning_method`.
    pub provisioning: Option<String>,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// `skip_approval`.
    pub skip_approval: bool,
    /// `alternative_order_id`.
    pub alternative_order_id: Option<String>,
}

/// The longest code signing certificate DigiCert issues since 2026-02-24, in days (CA/Browser
/// Forum ballot CSC-31: 460 days from 2026-03-01; DigiCert one day less).
pub const MAX_CERT_DAYS: i64 = 459;

/// The longest validity an order may ask, in days, and the most years, on `today`: 459 days and
/// 1 year since 2026-02-24, 3 years before.
fn validity_cap(today: Date) -> (i64, i64) {
    if today >= time::macros::date!(2026 - 02 - 24) {
        (MAX_CERT_DAYS, 1)
    } else {
        (3 * 365, 3)
    }
}

struct Check {
    errors: Vec<ApiError>,
}

impl Check {
    fn missing(&mut self, path: &str) {
        self.errors.push(ApiError::new(
            "required_field_missing",
            format!("{path} is required"),
        ));
    }
    fn invalid(&mut self, path: &str, rule: impl std::fmt::Display) {
        self.errors
            .push(ApiError::new("invalid_value", format!("{path} {rule}")));
    }
    fn other(&mut self, code: &str, message: String) {
        self.errors.push(ApiError::new(code, message));
    }
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// Validates `body` for `product` against the account `state` at time `now`.
pub fn validate(
    product: Product,
    body: &Value,
    state: &State,
    now: OffsetDateTime,
) -> Result<AcceptedOrder, Vec<ApiError>> {
    let mut c = Check { errors: Vec::new() };
    let Some(obj) = body.as_object() else {
        return Err(vec![ApiError::new(
            "bad_request_format",
            "the request body must be a JSON object",
        )]);
    };

    // cs_provisioning_method; a value that is none of the documented ones is reported as such,
    // and the rules that depend on the method are not guessed at.
    let mut provisioning_unknown = false;
    let provisioning = match obj.get("cs_provisioning_method") {
        None | Some(Value::Null) => {
            if product == Product::CodeSigningEv {
                c.missing("cs_provisioning_method");
            }
            None
        }
        Some(Value::String(m)) if ["ship_token", "client_app", "email"].contains(&m.as_str()) => {
            Some(m.clone())
        }
        Some(other) => {
            c.invalid(
                "cs_provisioning_method",
                format!("must be one of ship_token, client_app, email; got {other}"),
            );
            provisioning_unknown = true;
            None
        }
    };

    // certificate
    let mut csr_pem = None;
    let mut spki_der = None;
    match obj.get("certificate") {
        Some(Value::Object(cert)) => {
            match cert.get("signature_hash") {
                None => c.missing("certificate.signature_hash"),
                Some(Value::String(h)) if h == "sha256" => {}
                Some(other) => c.invalid(
                    "certificate.signature_hash",
                    format!("must be sha256; got {other}"),
                ),
            }
            let platform = match cert.get("server_platform") {
                None | Some(Value::Null) => None,
                Some(Value::Object(p)) => match p.get("id").and_then(as_int) {
                    Some(id) => Some(id),
                    None => {
                        c.invalid("certificate.server_platform.id", "must be an integer");
                        None
                    }
                },
                Some(_) => {
                    c.invalid(
                        "certificate.server_platform",
                        "must be an object {\"id\": <int>}",
                    );
                    None
                }
            };
            let platform_needed = !provisioning_unknown
                && matches!(provisioning.as_deref(), None | Some("client_app"));
            if platform_needed && platform.is_none() && cert.get("server_platform").is_none() {
                c.missing("certificate.server_platform");
            }
            let csr_needed = provisioning.as_deref() == Some("email")
                || (product == Product::CodeSigning && platform == Some(55));
            match cert.get("csr") {
                None | Some(Value::Null) => {
                    if csr_needed {
                        let why = if provisioning.as_deref() == Some("email") {
                            "when cs_provisioning_method is email"
                        } else {
                            "for code_signing with server_platform.id 55"
                        };
                        c.other(
                            "required_field_missing",
                            format!("certificate.csr is required {why}"),
                        );
                    }
                }
                Some(Value::String(pem)) => match check_csr(pem) {
                    Ok(spki) => {
                        csr_pem = Some(pem.clone());
                        spki_der = Some(spki);
                    }
                    Err(e) => c.errors.push(e),
                },
                Some(_) => c.invalid("certificate.csr", "must be a PEM string"),
            }
            if let Some(units) = cert.get("organization_units")
                && !units
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string))
            {
                c.invalid(
                    "certificate.organization_units",
                    "must be an array of strings",
                );
            }
        }
        Some(_) => c.invalid("certificate", "must be an object"),
        None => c.missing("certificate"),
    }

    // organization
    let organization = match obj.get("organization") {
        Some(Value::Object(org)) => match org.get("id") {
            Some(id) => match as_int(id).filter(|i| *i > 0) {
                Some(id) => {
                    let id = id as u64;
                    match state.organizations.get(&id) {
                        None => {
                            c.other(
                                "not_found|organization",
                                format!("organization.id: no organization {id} in this account"),
                            );
                            None
                        }
                        // An organization without the validation the product needs is
                        // taken: the order waits, and is issued once the validation completes.
                        Some(_) => Some(OrgChoice::Existing(id)),
                    }
                }
                None => {
                    c.invalid("organization.id", "must be a positive integer");
                    None
                }
            },
            None => new_organization(org, &mut c).map(OrgChoice::New),
        },
        Some(_) => {
            c.invalid("organization", "must be an object");
            None
        }
        None => {
            c.missing("organization");
            None
        }
    };

    // validity
    let not_after = validity(obj, now, &mut c);

    // ship_info
    if let Some(ship) = obj.get("ship_info") {
        match ship.as_object() {
            Some(ship) => {
                for field in ["name", "addr1", "city", "state", "zip", "country"] {
                    match ship.get(field) {
                        Some(Value::String(s)) if !s.trim().is_empty() => {}
                        Some(Value::String(_)) | None => c.missing(&format!("ship_info.{field}")),
                        Some(_) => c.invalid(&format!("ship_info.{field}"), "must be a string"),
                    }
                }
                match ship.get("method") {
                    None => c.missing("ship_info.method"),
                    Some(Value::String(m)) if m == "STANDARD" || m == "EXPEDITED" => {}
                    Some(other) => c.invalid(
                        "ship_info.method",
                        format!("must be STANDARD or EXPEDITED; got {other}"),
                    ),
                }
            }
            None => c.invalid("ship_info", "must be an object"),
        }
    }

    // subject.email (ignored for EV)
    if product == Product::CodeSigning
        && let Some(email) = obj.get("subject").and_then(|s| s.get("email"))
        && !email
            .as_str()
            .is_some_and(|e| e.contains('@') && !e.starts_with('@') && !e.ends_with('@'))
    {
        c.invalid("subject.email", "must be an email address");
    }

    // custom_fields
    if let Some(fields) = obj.get("custom_fields") {
        match fields.as_array() {
            Some(fields) => {
                for (i, f) in fields.iter().enumerate() {
                    match f.get("metadata_id").and_then(as_int) {
                        Some(id) if state.custom_field_ids.contains(&(id as u64)) => {}
                        Some(id) => c.other("not_found|custom_field", format!("custom_fields[{i}].metadata_id: no custom field {id} in this account")),
                        None => c.missing(&format!("custom_fields[{i}].metadata_id")),
                    }
                    if !f.get("value").is_some_and(Value::is_string) {
                        c.missing(&format!("custom_fields[{i}].value"));
                    }
                }
            }
            None => c.invalid("custom_fields", "must be an array of {metadata_id, value}"),
        }
    }

    // container
    if let Some(container) = obj.get("container") {
        match container.get("id").and_then(as_int) {
            Some(id) if state.containers.contains(&(id as u64)) => {}
            Some(id) => c.other(
                "not_found|container",
                format!("container.id: no container {id} in this account"),
            ),
            None => c.missing("container.id"),
        }
    }

    // payment_method
    if let Some(pm) = obj.get("payment_method")
        && !pm
            .as_str()
            .is_some_and(|p| ["balance", "card", "profile"].contains(&p))
    {
        c.invalid(
            "payment_method",
            format!("must be balance, card or profile; got {pm}"),
        );
    }

    // alternative_order_id
    let alternative_order_id = match obj.get("alternative_order_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(a))
            if !a.is_empty() && a.len() <= 64 && a.chars().all(|ch| ch.is_ascii_alphanumeric()) =>
        {
            Some(a.clone())
        }
        Some(other) => {
            c.invalid(
                "alternative_order_id",
                format!("must be 1 to 64 letters and digits; got {other}"),
            );
            None
        }
    };

    // enable_guest_access
    if let Some(g) = obj.get("enable_guest_access")
        && !matches!(as_int(g), Some(0 | 1))
    {
        c.invalid("enable_guest_access", format!("must be 0 or 1; got {g}"));
    }

    // Plain types.
    let skip_approval = match obj.get("skip_approval") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            c.invalid(
                "skip_approval",
                format!("must be true or false; got {other}"),
            );
            false
        }
    };
    if let Some(v) = obj.get("auto_renew")
        && v.as_i64().is_none_or(|n| n < 0)
    {
        c.invalid(
            "auto_renew",
            format!("must be a non-negative integer; got {v}"),
        );
    }
    if let Some(v) = obj.get("renewal_of_order_id")
        && v.as_i64().is_none_or(|n| n <= 0)
    {
        c.invalid(
            "renewal_of_order_id",
            format!("must be a positive order ID; got {v}"),
        );
    }
    for field in ["comments", "custom_renewal_message"] {
        if let Some(v) = obj.get(field)
            && !v.is_string()
        {
            c.invalid(field, "must be a string");
        }
    }
    if let Some(v) = obj.get("additional_emails")
        && !v.as_array().is_some_and(|a| {
            a.iter()
                .all(|e| e.as_str().is_some_and(|s| s.contains('@')))
        })
    {
        c.invalid("additional_emails", "must be an array of email addresses");
    }

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    let (Some(organization), Some(not_after)) = (organization, not_after) else {
        // Not reached: each is None only with an error recorded.
        return Err(c.errors);
    };
    Ok(AcceptedOrder {
        csr_pem,
        spki_der,
        organization,
        provisioning,
        not_after,
        skip_approval,
        alternative_order_id,
    })
}

fn new_organization(org: &serde_json::Map<String, Value>, c: &mut Check) -> Option<Organization> {
    let before = c.errors.len();
    let mut text = |field: &str| -> String {
        match org.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => {
                c.missing(&format!("organization.{field}"));
                String::new()
            }
        }
    };
    let o = Organization {
        id: 0,
        name: text("name"),
        address: text("address"),
        city: text("city"),
        state: text("state"),
        zip: text("zip"),
        country: text("country"),
        telephone: text("telephone"),
        validations: Vec::new(),
    };
    match org.get("organization_contact") {
        Some(Value::Object(contact)) => {
            for field in ["first_name", "last_name", "email", "telephone"] {
                if contact
                    .get(field)
                    .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
                {
                    c.missing(&format!("organization.organization_contact.{field}"));
                }
            }
        }
        _ => c.missing("organization.organization_contact"),
    }
    (c.errors.len() == before).then_some(o)
}

fn parse_month(name: &str) -> Option<Month> {
    let months = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let index = months.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    Month::try_from(index as u8 + 1).ok()
}

/// `dd MMM YYYY`, e.g. `09 JUN 2025`.
fn parse_dd_mmm_yyyy(s: &str) -> Option<Date> {
    let parts: Vec<&str> = s.split(' ').collect();
    let [day, month, year] = parts.as_slice() else {
        return None;
    };
    if day.len() != 2 || year.len() != 4 {
        return None;
    }
    Date::from_calendar_date(year.parse().ok()?, parse_month(month)?, day.parse().ok()?).ok()
}

/// `yyyy-MM-dd`.
fn parse_iso_date(s: &str) -> Option<Date> {
    let parts: Vec<&str> = s.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return None;
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let month = Month::try_from(month.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()
}

fn end_of_day(date: Date) -> OffsetDateTime {
    date.midnight().assume_utc() + time::Duration::seconds(86_399)
}

fn validity(
    obj: &serde_json::Map<String, Value>,
    now: OffsetDateTime,
    c: &mut Check,
) -> Option<OffsetDateTime> {
    let (max_days, max_years) = validity_cap(now.date());
    let cap_rule = if max_years == 1 {
        format!(
            "DigiCert issues no code signing certificate valid for more than {MAX_CERT_DAYS} days since 2026-02-24"
        )
    } else {
        "code signing orders run at most 3 years".to_string()
    };
    let check_date = |c: &mut Check, path: &str, date: OffsetDateTime| {
        let ahead = (date.date() - now.date()).whole_days();
        if date <= now || ahead < 1 {
            c.invalid(path, "must be a date in the future");
            None
        } else if ahead > max_days {
            c.invalid(
                path,
                format!("must be at most {max_days} days from today: {cap_rule}"),
            );
            None
        } else {
            Some(date)
        }
    };
    // A date field: parsed with the field's own format, then within the allowed range.
    let date =
        |c: &mut Check, path: &str, v: &Value, parse: fn(&str) -> Option<Date>, written| match v
            .as_str()
            .and_then(parse)
        {
            Some(d) => check_date(c, path, end_of_day(d)),
            None => {
                c.invalid(path, format!("must be a date written {written}; got {v}"));
                None
            }
        };
    let years = |c: &mut Check, path: &str, v: &Value| match as_int(v) {
        Some(y) if (1..=max_years).contains(&y) => Some(now + time::Duration::days(365 * y)),
        _ if max_years == 1 => {
            c.invalid(path, format!("must be 1: {cap_rule}; got {v}"));
            None
        }
        _ => {
            c.invalid(path, format!("must be 1, 2 or 3; got {v}"));
            None
        }
    };
    let days = |c: &mut Check, path: &str, v: &Value| match as_int(v) {
        Some(d) if (1..=max_days).contains(&d) => Some(now + time::Duration::days(d)),
        _ => {
            c.invalid(
                path,
                format!("must be 1 to {max_days}: {cap_rule}; got {v}"),
            );
            None
        }
    };
    match obj.get("order_validity") {
        Some(Value::Object(ov)) => {
            // Precedence of the API page: custom_expiration_date, then days, then years.
            if let Some(v) = ov.get("custom_expiration_date") {
                date(
                    c,
                    "order_validity.custom_expiration_date",
                    v,
                    parse_dd_mmm_yyyy,
                    "dd MMM YYYY, e.g. \"09 JUN 2025\"",
                )
            } else if let Some(v) = ov.get("days") {
                days(c, "order_validity.days", v)
            } else if let Some(v) = ov.get("years") {
                years(c, "order_validity.years", v)
            } else {
                c.missing("order_validity.years");
                None
            }
        }
        Some(_) => {
            c.invalid("order_validity", "must be an object");
            None
        }
        None => {
            // The deprecated fields: custom_expiration_date overrides validity_days, which
            // overrides validity_years.
            if let Some(v) = obj.get("custom_expiration_date") {
                date(c, "custom_expiration_date", v, parse_iso_date, "yyyy-MM-dd")
            } else if let Some(v) = obj.get("validity_days") {
                days(c, "validity_days", v)
            } else if let Some(v) = obj.get("validity_years") {
                years(c, "validity_years", v)
            } else {
                c.missing("order_validity");
                None
            }
        }
    }
}

/// Parses a CSR, verifies its self-signature and applies the code signing key rules. Returns the
/// DER SubjectPublicKeyInfo.
pub fn check_csr(pem_text: &str) -> Result<Vec<u8>, ApiError> {
    let cannot_parse = |why: String| {
        ApiError::new(
            "csr_invalid_cannot_parse",
            format!("certificate.csr: cannot be parsed: {why}"),
        )
    };
    let block = pem::parse(pem_text).map_err(|e| cannot_parse(e.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" && block.tag() != "NEW CERTIFICATE REQUEST" {
        return Err(cannot_parse(format!(
            "a PEM block labelled {} is not a CSR",
            block.tag()
        )));
    }
    let der = block.contents();
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| cannot_parse(e.to_string()))?;
    let spki = &csr.certification_request_info.subject_pki;
    let refused = |found: String| {
        ApiError::new(
            "csr_invalid_key",
            format!(
                "certificate.csr: code signing CSRs must carry an RSA key of 3072 bits or more (exponent 65537) or an ECC P-256/P-384 key; this one is {found}"
            ),
        )
    };
    match spki.algorithm.algorithm.to_id_string().as_str() {
        oid::RSA_ENCRYPTION => {
            let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(cannot_parse("malformed RSA key".to_string()));
            };
            let modulus: &[u8] = match rsa.modulus.iter().position(|b| *b != 0) {
                Some(i) => &rsa.modulus[i..],
                None => &[],
            };
            let bits =
                modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
            let exponent = rsa.try_exponent().ok();
            if bits < 3072 || exponent != Some(65537) {
                return Err(refused(format!(
                    "RSA-{bits} with exponent {}",
                    exponent.map_or("too large".to_string(), |e| e.to_string())
                )));
            }
        }
        oid::EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                oid::P256 | oid::P384 => {}
                oid::P521 => return Err(refused("ECC P-521".to_string())),
                other => return Err(refused(format!("ECC on curve {other}"))),
            }
        }
        other => return Err(refused(format!("a key of algorithm {other}"))),
    }
    // The key first: a P-521 CSR is refused for its key, whatever its signature.
    if csr.verify_signature().is_err() {
        return Err(ApiError::new(
            "csr_invalid_signature",
            "certificate.csr: the CSR's self-signature does not verify",
        ));
    }
    Ok(spki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_in_both_documented_formats() {
        let d = parse_dd_mmm_yyyy("09 JUN 2025").unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2025, Month::June, 9));
        assert!(parse_dd_mmm_yyyy("9 JUN 2025").is_none());
        assert!(parse_dd_mmm_yyyy("09 JUNE 2025").is_none());
        assert!(parse_dd_mmm_yyyy("31 FEB 2025").is_none());
        assert!(parse_dd_mmm_yyyy("2025-06-09").is_none());
        let d = parse_iso_date("2025-06-09").unwrap();
        assert_eq!(d.month(), Month::June);
        assert!(parse_iso_date("2025-6-9").is_none());
        assert!(parse_iso_date("09 JUN 2025").is_none());
    }
}
