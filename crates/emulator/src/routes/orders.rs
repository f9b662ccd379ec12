//! Orders: placing (validated like the API page), order info with issuance when due, listing, by
//! alternative ID, request approvals, order status (cancel).

use std::collections::HashMap;
use std::sync::PoisonError;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::respond::{
    SharedState, error, errors, id_and_body, order_not_found, parse_id, parse_json,
};
use crate::state::{IssuedCertificate, Order, Product, Request as CertRequest};
use crate::validate::{self, OrgChoice};
use crate::{ApprovalMode, Settings, Shared};

pub(super) async fn create_order(
    State(shared): SharedState,
    Path(product): Path<String>,
    body: Bytes,
) -> Response {
    let Some(product) = Product::from_name_id(&product) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|product",
            format!(
                "no product {product}; code signing products are code_signing and code_signing_ev"
            ),
        );
    };
    let body = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let settings = shared.settings();
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let accepted = match validate::validate(product, &body, &state, shared.now()) {
        Ok(a) => a,
        // A body that names what the account does not have (organization, container, custom
        // field) is answered 404, as CertCentral answers every `not_found|*`.
        Err(e) if e.iter().all(|e| e.code.starts_with("not_found|")) => {
            return errors(StatusCode::NOT_FOUND, e);
        }
        Err(e) => return errors(StatusCode::BAD_REQUEST, e),
    };
    let renewal_of_order_id = body.get("renewal_of_order_id").and_then(Value::as_u64);
    if let Some(renewed) = renewal_of_order_id
        && let Err(refusal) = renewal_allowed(&state, renewed, &product)
    {
        return refusal;
    }
    let mut new_org_id = None;
    let organization_id = match accepted.organization {
        OrgChoice::Existing(id) => id,
        OrgChoice::New(mut org) => {
            let id = state.next_id();
            org.id = id;
            state.organizations.insert(id, org);
            new_org_id = Some(id);
            id
        }
    };
    let order_id = state.next_id();
    let request_id = state.next_id();
    let approved = accepted.skip_approval && settings.approval == ApprovalMode::AutoApprove;
    let request_status = if approved {
        "approved"
    } else if settings.approval == ApprovalMode::TwoStep {
        "submitted"
    } else {
        "pending"
    };
    let certificate_id = approved.then(|| state.next_id());
    let token_method = matches!(
        accepted.provisioning.as_deref(),
        Some("ship_token" | "client_app")
    );
    let order = Order {
        id: order_id,
        product,
        status: if approved {
            "pending"
        } else {
            "needs_approval"
        }
        .to_string(),
        request_id,
        organization_id,
        alternative_order_id: accepted.alternative_order_id,
        csr: accepted.csr_pem,
        cs_provisioning_method: accepted.provisioning,
        not_after_unix: accepted.not_after.unix_timestamp(),
        polls_since_approval: 0,
        approved_at_unix: approved.then(|| shared.now_unix()),
        certificate_id,
        created_unix: shared.now_unix(),
        status_updated_unix: shared.now_unix(),
        hardware_init_code: token_method.then(|| format!("HIC{order_id:010}")),
        body,
        reissue: None,
        previous_certificates: Vec::new(),
        renewal_of_order_id,
        renewed_order_id: None,
    };
    state.orders.insert(order_id, order);
    if let Some(renewed) = renewal_of_order_id
        && let Some(old) = state.orders.get_mut(&renewed)
    {
        old.renewed_order_id = Some(order_id);
    }
    state.requests.insert(
        request_id,
        CertRequest {
            id: request_id,
            order_id,
            status: request_status.to_string(),
            kind: "new_request".to_string(),
            certificate_id: None,
            comments: None,
            date_unix: shared.now_unix(),
        },
    );
    shared.persist(&state);
    let mut response = json!({
        "id": order_id,
        "requests": [{ "id": request_id, "status": request_status }],
    });
    if let Some(cert) = certificate_id {
        response["certificate_id"] = json!(cert);
    }
    if let Some(org) = new_org_id {
        response["organization"] = json!({ "id": org });
    }
    (StatusCode::CREATED, Json(response)).into_response()
}

/// What issuing one certificate needs, taken from the state so that the CA's work (CSR check,
/// signing) runs without holding the state lock: a real CA issues for many clients at once.
pub(super) struct DueIssuance {
    order_id: u64,
    certificate_id: u64,
    csr: String,
    organization: crate::state::Organization,
    not_after_unix: i64,
}

impl DueIssuance {
    /// Checks the CSR and signs the certificate: the leaf PEM and its serial in hex, or `None` when
    /// the CSR does not check out (the order then stays pending).
    fn issue(self, shared: &Shared) -> Option<IssuedCertificate> {
        let spki = validate::check_csr(&self.csr).ok()?;
        let serial = shared.random_serial();
        let not_after = OffsetDateTime::from_unix_timestamp(self.not_after_unix).ok()?;
        let leaf_pem = shared
            .intermediate_ca
            .issue(
                &spki,
                &self.organization,
                shared.now(),
                not_after,
                serial.clone(),
            )
            .ok()?;
        Some(IssuedCertificate {
            id: self.certificate_id,
            order_id: self.order_id,
            leaf_pem,
            serial_hex: base16ct::lower::encode_string(&serial),
            revoked_unix: None,
        })
    }
}

/// Moves an approved order towards issuance: counts the poll, and says when a certificate is due.
pub(super) fn advance(
    settings: &Settings,
    state: &mut crate::state::State,
    order_id: u64,
    now_unix: i64,
) -> Option<DueIssuance> {
    let order = state.orders.get_mut(&order_id)?;
    // A reissue, once approved, is issued as an order is: after the polls and the delay.
    let reissue = match order.status.as_str() {
        "pending" => None,
        "reissue_pending" => {
            let reissue = order.reissue.as_ref()?;
            Some((reissue.certificate_id?, reissue.csr.clone()))
        }
        _ => return None,
    };
    order.polls_since_approval += 1;
    let waited = now_unix - order.approved_at_unix.unwrap_or(0);
    if order.polls_since_approval < settings.polls_until_issued
        || waited < settings.issue_delay.as_secs() as i64
    {
        return None;
    }
    // Orders without a CSR wait for the token step, as in reality.
    let (certificate_id, csr) = match reissue {
        Some((certificate_id, csr)) => (Some(certificate_id), csr),
        None => (order.certificate_id, order.csr.clone()?),
    };
    let order = order.clone();
    let organization = state.organizations.get(&order.organization_id).cloned()?;
    // An organization created with the order must be validated before anything is issued.
    if !organization.validated_for(order.product.validation_type()) {
        return None;
    }
    Some(DueIssuance {
        order_id,
        certificate_id: certificate_id?,
        csr,
        organization,
        not_after_unix: order.not_after_unix,
    })
}

/// Records an issued certificate, unless a concurrent poll of the same order got there first.
pub(super) fn record_issuance(
    state: &mut crate::state::State,
    certificate: IssuedCertificate,
    now_unix: i64,
) {
    let Some(order) = state.orders.get_mut(&certificate.order_id) else {
        return;
    };
    if state.certificates.contains_key(&certificate.id) {
        return;
    }
    match order.status.as_str() {
        "pending" => {}
        "reissue_pending"
            if order.reissue.as_ref().and_then(|r| r.certificate_id) == Some(certificate.id) =>
        {
            // The reissued certificate takes the order's place; the one it replaces is kept.
            let reissue = order.reissue.take();
            if let Some(previous) = order.certificate_id {
                order.previous_certificates.push(previous);
            }
            order.certificate_id = Some(certificate.id);
            order.csr = reissue.map(|r| r.csr);
        }
        _ => return,
    }
    order.set_status("issued", now_unix);
    state.certificates.insert(certificate.id, certificate);
}

/// Whether an order may be renewed by a new one: it exists, is of the same product, and was not
/// renewed already. DigiCert documents no error codes for this; these are the ones client code
/// treats as "renewal link refused" (`order_not_eligible_for_renewal`, `order_renewed_already`).
fn renewal_allowed(
    state: &crate::state::State,
    renewed: u64,
    product: &crate::state::Product,
) -> Result<(), Response> {
    let refuse = |code: &str, why: String| {
        Err(error(
            StatusCode::BAD_REQUEST,
            code,
            format!("renewal_of_order_id: {why}"),
        ))
    };
    let Some(old) = state.orders.get(&renewed) else {
        return refuse(
            "order_not_eligible_for_renewal",
            format!("no order {renewed} in this account"),
        );
    };
    if old.product != *product {
        return refuse(
            "order_not_eligible_for_renewal",
            format!(
                "order {renewed} is {}, not {}",
                old.product.name_id(),
                product.name_id()
            ),
        );
    }
    if let Some(by) = old.renewed_order_id {
        return refuse(
            "order_renewed_already",
            format!("order {renewed} was renewed by order {by}"),
        );
    }
    if !["issued", "expired", "revoked"].contains(&old.status.as_str()) {
        return refuse(
            "order_not_eligible_for_renewal",
            format!("order {renewed} is {}", old.status),
        );
    }
    Ok(())
}

/// A time as CertCentral writes it: ISO 8601 in UTC, `2026-11-29T17:27:23+00:00`.
pub(super) fn iso8601(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{}T{:02}:{:02}:{:02}+00:00",
        utc.date(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

/// The notBefore and notAfter of a leaf (PEM).
pub(super) fn leaf_validity(pem_text: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let validity = cert.validity();
    Some((
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    ))
}

pub(super) fn order_json(state: &crate::state::State, order: &Order, now: OffsetDateTime) -> Value {
    let request_status = state
        .requests
        .get(&order.request_id)
        .map_or("pending", |r| r.status.as_str());
    let org = state.organizations.get(&order.organization_id);
    let mut certificate = json!({ "signature_hash": "sha256" });
    if let Some(id) = order.certificate_id {
        certificate["id"] = json!(id);
    }
    if let Some(csr) = &order.csr {
        certificate["csr"] = json!(csr);
    }
    if let Some(platform) = order.body.pointer("/certificate/server_platform") {
        certificate["server_platform"] = platform.clone();
    }
    if let Some(cert) = order
        .certificate_id
        .and_then(|id| state.certificates.get(&id))
    {
        certificate["serial_number"] = json!(cert.serial_hex);
        if let Some((from, till)) = leaf_validity(&cert.leaf_pem) {
            certificate["date_issued"] = json!(iso8601(from));
            certificate["valid_from"] = json!(from.date().to_string());
            certificate["valid_till"] = json!(till.date().to_string());
            certificate["days_remaining"] = json!((till - now).whole_days().max(0));
        }
    }
    let valid_till = OffsetDateTime::from_unix_timestamp(order.not_after_unix)
        .map(|t| t.date().to_string())
        .unwrap_or_default();
    let mut doc = json!({
        "id": order.id,
        "status": order.status,
        "date_created": OffsetDateTime::from_unix_timestamp(order.created_unix).map(iso8601).unwrap_or_default(),
        "product": { "name_id": order.product.name_id(), "name": order.product.display_name() },
        "organization": { "id": order.organization_id, "name": org.map(|o| o.name.clone()) },
        "certificate": certificate,
        "requests": [{ "id": order.request_id, "status": request_status }],
        "order_valid_till": valid_till,
    });
    if let Some(m) = &order.cs_provisioning_method {
        doc["cs_provisioning_method"] = json!(m);
    }
    if let Some(a) = &order.alternative_order_id {
        doc["alternative_order_id"] = json!(a);
    }
    if let Some(code) = &order.hardware_init_code {
        doc["hardware_init_code"] = json!(code);
    }
    // As an older Order info sample shows them.
    doc["is_renewed"] = json!(order.renewed_order_id.is_some());
    if let Some(renewed) = order.renewed_order_id {
        doc["renewed_order_id"] = json!(renewed);
    }
    if let Some(renews) = order.renewal_of_order_id {
        doc["renewal_of_order_id"] = json!(renews);
    }
    doc
}

pub(super) async fn order_info(
    State(shared): SharedState,
    Path(order_id): Path<String>,
) -> Response {
    let order_id = match parse_id(&order_id, "order") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let settings = shared.settings();
    let due = {
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.orders.contains_key(&order_id) {
            return order_not_found(order_id);
        }
        advance(&settings, &mut state, order_id, shared.now_unix())
    };
    let issued = due.and_then(|due| due.issue(&shared));
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(certificate) = issued {
        record_issuance(&mut state, certificate, shared.now_unix());
    }
    shared.persist(&state);
    let order = &state.orders[&order_id];
    Json(order_json(&state, order, shared.now())).into_response()
}

pub(super) fn page(query: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: usize| match query.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!("{name} must be a non-negative integer"),
            )
        }),
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", 1000)?.clamp(1, 1000);
    Ok((offset, limit))
}

/// An order's certificate as listings show it: `id`, `common_name`, `valid_till`,
/// `days_remaining`, `signature_hash`; the dates only once issued.
fn listed_certificate(
    state: &crate::state::State,
    order: &Order,
    now: OffsetDateTime,
) -> (Value, Option<OffsetDateTime>) {
    let mut certificate = json!({ "id": order.certificate_id, "signature_hash": "sha256" });
    if let Some(org) = state.organizations.get(&order.organization_id) {
        certificate["common_name"] = json!(org.name);
    }
    let till = order
        .certificate_id
        .and_then(|id| state.certificates.get(&id))
        .and_then(|cert| leaf_validity(&cert.leaf_pem))
        .map(|(_, till)| till);
    if let Some(till) = till {
        certificate["valid_till"] = json!(till.date().to_string());
        certificate["days_remaining"] = json!((till - now).whole_days().max(0));
    }
    (certificate, till)
}

/// `GET /order/certificate`: the account's orders, filtered (`filters[id]`, `filters[status]`,
/// `filters[organization_id]`, `filters[product_name_id]`, `filters[certificate_id]`), sorted
/// (`sort=id`, `date_created`, `valid_till`, `status`; `-` for descending, commas for several) and
/// paged (`offset`, `limit` at most 1000).
/// The longest window `status-changes` takes by `minutes`/`seconds`: 7 days.
const STATUS_CHANGES_MAX_SECONDS: i64 = 604_800;

/// `GET /order/certificate/status-changes`: the orders whose status changed in the last
/// `minutes` and/or `seconds` (added together; at most 7 days), or on the days of
/// `filters[status_last_updated]=YYYY-MM-DD...YYYY-MM-DD` (Mountain Daylight Time, as documented).
/// At least one is required. The error code for a missing window is not documented; this one is
/// ours. Each call counts as a poll of every pending order (see `advance`), so that clients
/// which watch changes instead of polling each order see issuance as those that poll.
pub(super) async fn status_changes(
    State(shared): SharedState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let number = |name: &str| -> Result<Option<i64>, Response> {
        query
            .get(name)
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "invalid_value",
                        format!("{name}: {v:?} is not a whole number of {name}"),
                    )
                })
            })
            .transpose()
    };
    let (minutes, seconds) = match (number("minutes"), number("seconds")) {
        (Ok(m), Ok(s)) => (m, s),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let now = shared.now_unix();
    let (from, till) = if minutes.is_some() || seconds.is_some() {
        let window = minutes.unwrap_or(0).saturating_mul(60) + seconds.unwrap_or(0);
        if window > STATUS_CHANGES_MAX_SECONDS {
            return error(
                StatusCode::BAD_REQUEST,
                "time_frame_too_long",
                "the time frame can be at most 7 days (10080 minutes or 604800 seconds); use filters[status_last_updated] for older changes",
            );
        }
        (now - window, now)
    } else if let Some(range) = query.get("filters[status_last_updated]") {
        match mdt_day_range(range) {
            Some(range) => range,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_filter",
                    format!(
                        "filters[status_last_updated]: {range:?} is not YYYY-MM-DD...YYYY-MM-DD"
                    ),
                );
            }
        }
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_filter",
            "give minutes, seconds or filters[status_last_updated]",
        );
    };
    let settings = shared.settings();
    let due: Vec<DueIssuance> = {
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let pending: Vec<u64> = state
            .orders
            .values()
            .filter(|o| o.status == "pending")
            .map(|o| o.id)
            .collect();
        pending
            .into_iter()
            .filter_map(|id| advance(&settings, &mut state, id, now))
            .collect()
    };
    let issued: Vec<IssuedCertificate> = due.into_iter().filter_map(|d| d.issue(&shared)).collect();
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    for certificate in issued {
        record_issuance(&mut state, certificate, now);
    }
    shared.persist(&state);
    let orders: Vec<Value> = state
        .orders
        .values()
        .filter(|o| (from..=till).contains(&o.status_updated_unix))
        .map(|o| {
            let mut changed = json!({ "order_id": o.id, "status": o.status });
            if let Some(cert) = o.certificate_id {
                changed["certificate_id"] = json!(cert);
            }
            changed
        })
        .collect();
    Json(json!({ "orders": orders })).into_response()
}

/// `YYYY-MM-DD...YYYY-MM-DD` as Unix seconds from the first day's start to the last day's end,
/// in Mountain Daylight Time (UTC-6).
fn mdt_day_range(range: &str) -> Option<(i64, i64)> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let (first, last) = range.split_once("...")?;
    let first = time::Date::parse(first, &format).ok()?;
    let last = time::Date::parse(last, &format).ok()?;
    let mdt = time::UtcOffset::from_hms(-6, 0, 0).ok()?;
    let start = first.midnight().assume_offset(mdt).unix_timestamp();
    let end = last
        .next_day()?
        .midnight()
        .assume_offset(mdt)
        .unix_timestamp()
        - 1;
    (start <= end).then_some((start, end))
}

pub(super) async fn list_orders(
    State(shared): SharedState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (offset, limit) = match page(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let sort: Vec<(String, bool)> = query
        .get("sort")
        .map(|s| {
            s.split(',')
                .filter(|f| !f.is_empty())
                .map(|f| match f.strip_prefix('-') {
                    Some(field) => (field.to_string(), true),
                    None => (f.to_string(), false),
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some((field, _)) = sort
        .iter()
        .find(|(f, _)| !["id", "date_created", "valid_till", "status"].contains(&f.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("sort: {field} is not a field orders can be sorted by"),
        );
    }
    let filter = |name: &str| query.get(&format!("filters[{name}]"));
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut matching: Vec<(&Order, Value, Option<OffsetDateTime>)> = state
        .orders
        .values()
        .filter(|o| filter("id").is_none_or(|v| *v == o.id.to_string()))
        .filter(|o| filter("status").is_none_or(|v| *v == o.status))
        .filter(|o| filter("organization_id").is_none_or(|v| *v == o.organization_id.to_string()))
        .filter(|o| filter("product_name_id").is_none_or(|v| v == o.product.name_id()))
        .filter(|o| {
            filter("certificate_id")
                .is_none_or(|v| o.certificate_id.is_some_and(|c| *v == c.to_string()))
        })
        .map(|o| {
            let (certificate, till) = listed_certificate(&state, o, shared.now());
            (o, certificate, till)
        })
        .collect();
    matching.sort_by(|a, b| {
        for (field, descending) in &sort {
            let order = match field.as_str() {
                "date_created" => a.0.created_unix.cmp(&b.0.created_unix),
                "valid_till" => a.2.cmp(&b.2),
                "status" => a.0.status.cmp(&b.0.status),
                _ => a.0.id.cmp(&b.0.id),
            };
            let order = if *descending { order.reverse() } else { order };
            if order != std::cmp::Ordering::Equal {
                return order;
            }
        }
        a.0.id.cmp(&b.0.id)
    });
    let orders: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(o, certificate, _)| {
            json!({
                "id": o.id,
                "status": o.status,
                "is_renewed": false,
                "date_created": OffsetDateTime::from_unix_timestamp(o.created_unix).map(iso8601).unwrap_or_default(),
                "product": { "name_id": o.product.name_id(), "name": o.product.display_name() },
                "organization": { "id": o.organization_id },
                "certificate": certificate,
            })
        })
        .collect();
    Json(json!({ "orders": orders, "page": { "total": matching.len(), "limit": limit, "offset": offset } }))
        .into_response()
}

/// `GET /report/order/expiring`: how many issued orders expire in 60-90 days (`90`), 30-60
/// (`60`) and 0-30 (`30`), and how many expired in the last 7 days (`-7`). With
/// `include_expiring_certs=true` the counts are named `count` (every certificate of an order
/// counts; here each order has one).
pub(super) async fn expiring_report(
    State(shared): SharedState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let with_certs = query.get("include_expiring_certs").map(String::as_str) == Some("true");
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let now = shared.now();
    let mut buckets = [(90i64, 0u64), (60, 0), (30, 0), (-7, 0)];
    for order in state.orders.values().filter(|o| o.status == "issued") {
        let (_, till) = listed_certificate(&state, order, now);
        let Some(till) = till else { continue };
        let left = (till - now).whole_seconds() as f64 / 86_400.0;
        let bucket = if left < -7.0 {
            None
        } else if left < 0.0 {
            Some(3)
        } else if left <= 30.0 {
            Some(2)
        } else if left <= 60.0 {
            Some(1)
        } else if left <= 90.0 {
            Some(0)
        } else {
            None
        };
        if let Some(i) = bucket {
            buckets[i].1 += 1;
        }
    }
    let count_name = if with_certs { "count" } else { "order_count" };
    let expiring: Vec<Value> = buckets
        .iter()
        .map(|(days, count)| json!({ "days_expiring": days, count_name: count }))
        .collect();
    Json(json!({ "expiring_orders": expiring })).into_response()
}

pub(super) async fn orders_by_alternative_id(
    State(shared): SharedState,
    Path(alt_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (offset, limit) = match page(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let matching: Vec<&Order> = state
        .orders
        .values()
        .filter(|o| o.alternative_order_id.as_deref() == Some(alt_id.as_str()))
        .collect();
    let orders: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(
            |o| json!({ "order_id": o.id, "certificate_id": o.certificate_id, "status": o.status }),
        )
        .collect();
    Json(json!({ "orders": orders, "page": { "total": matching.len(), "limit": limit, "offset": offset } }))
        .into_response()
}

pub(super) async fn update_request_status(
    State(shared): SharedState,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    let (request_id, body) = match id_and_body(&request_id, "request", &body) {
        Ok(parsed) => parsed,
        Err(r) => return r,
    };
    let wanted = body.get("status").and_then(Value::as_str).unwrap_or("");
    if !["submitted", "pending", "approved", "rejected"].contains(&wanted) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "status must be one of submitted, pending, approved, rejected",
        );
    }
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(request) = state.requests.get(&request_id).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|request",
            format!("no request {request_id}"),
        );
    };
    if request.status == "approved" || request.status == "rejected" {
        return error(
            StatusCode::BAD_REQUEST,
            "request_already_processed",
            format!("request {request_id} is already {}", request.status),
        );
    }
    // Two-step approval: a submitted request becomes pending on its first approval.
    let new_status = match (request.status.as_str(), wanted) {
        ("submitted", "approved") => "pending",
        (_, s) => s,
    };
    if let Some(r) = state.requests.get_mut(&request_id) {
        r.status = new_status.to_string();
    }
    let now = shared.now_unix();
    match request.kind.as_str() {
        "revoke" => {
            if new_status == "approved" {
                super::lifecycle::revoke_now(&mut state, &request, now);
            }
        }
        "reissue" => {
            let certificate_id = (new_status == "approved").then(|| state.next_id());
            if let Some(order) = state.orders.get_mut(&request.order_id) {
                match new_status {
                    "approved" => {
                        if let Some(reissue) = order.reissue.as_mut() {
                            reissue.certificate_id = certificate_id;
                        }
                        order.approved_at_unix = Some(now);
                        order.polls_since_approval = 0;
                    }
                    // A rejected reissue leaves the order as it was.
                    "rejected" => {
                        order.reissue = None;
                        order.set_status("issued", now);
                    }
                    _ => {}
                }
            }
        }
        _ => {
            let certificate_id = (new_status == "approved").then(|| state.next_id());
            if let Some(order) = state.orders.get_mut(&request.order_id) {
                match new_status {
                    "approved" => {
                        order.set_status("pending", now);
                        order.approved_at_unix = Some(now);
                        order.certificate_id = certificate_id;
                    }
                    "rejected" => order.set_status("rejected", now),
                    _ => {}
                }
            }
        }
    }
    shared.persist(&state);
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn update_order_status(
    State(shared): SharedState,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let (order_id, body) = match id_and_body(&order_id, "order", &body) {
        Ok(parsed) => parsed,
        Err(r) => return r,
    };
    if body.get("status").and_then(Value::as_str) != Some("canceled") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "status must be canceled (lowercase; the value is case-sensitive)",
        );
    }
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(order) = state.orders.get_mut(&order_id) else {
        return order_not_found(order_id);
    };
    // The documented states a cancel leaves: `pending` and `waiting_pickup`.
    if !["pending", "waiting_pickup"].contains(&order.status.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_status_change",
            format!(
                "order {order_id} is {}; only pending or waiting_pickup orders can be canceled",
                order.status
            ),
        );
    }
    let now = shared.now_unix();
    order.set_status("canceled", now);
    let request_id = order.request_id;
    if let Some(r) = state.requests.get_mut(&request_id)
        && r.status != "approved"
    {
        r.status = "rejected".to_string();
    }
    shared.persist(&state);
    StatusCode::NO_CONTENT.into_response()
}
