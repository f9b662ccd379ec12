//! The HTTP surface: the CertCentral endpoints under `/services/v2`, and the admin and inspection
//! endpoints under `/_emulator` (not part of CertCentral).

// Helpers return the error `Response` a handler sends as is; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::faults::{self, Fault, FaultRule, Route};
use crate::server::ConnectionKiller;
use crate::state::{IssuedCertificate, Order, Product, Request as CertRequest, Validation};
use crate::validate::{self, ApiError, OrgChoice};
use crate::{ApprovalMode, Settings, Shared};

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "X-DC-DEVKEY";

type SharedState = State<Arc<Shared>>;

fn errors(status: StatusCode, errors: Vec<ApiError>) -> Response {
    (status, Json(json!({ "errors": errors }))).into_response()
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    errors(status, vec![ApiError::new(code, message)])
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The router of the whole emulator.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let api = axum::Router::new()
        // One pattern: POST takes a product identifier, GET an order ID.
        .route(
            "/order/certificate/{id}",
            post(create_order).get(order_info),
        )
        .route("/order/certificate", get(list_orders))
        .route("/order/alternate/{alt_id}", get(orders_by_alternative_id))
        .route("/request/{request_id}/status", put(update_request_status))
        .route(
            "/order/certificate/{order_id}/status",
            put(update_order_status),
        )
        .route(
            "/certificate/{certificate_id}/download/format/{format}",
            get(download_by_certificate),
        )
        .route(
            "/certificate/download/order/{order_id}/format/{format}",
            get(download_by_order),
        )
        .route(
            "/organization",
            post(create_organization).get(list_organizations),
        )
        .route(
            "/organization/{org_id}/validation",
            post(submit_validation).get(validation_status),
        )
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found|route", "no such endpoint") });
    let admin = axum::Router::new()
        .route(
            "/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/settings", get(get_settings).put(put_settings))
        .route(
            "/inspect/orders-by-alternative-id",
            get(inspect_alternative_ids),
        )
        .route("/inspect/last-request/{route}", get(inspect_last_request))
        .route("/ca/root.pem", get(root_pem))
        .route_layer(middleware::from_fn_with_state(shared.clone(), admin_gate));
    axum::Router::new()
        .nest("/services/v2", api)
        .nest("/_emulator", admin)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found|route", "no such endpoint") })
        .with_state(shared)
}

fn route_name(method: &Method, path: &str) -> Route {
    match (method.as_str(), path) {
        ("POST", "/services/v2/order/certificate/{id}") => Route::CreateOrder,
        ("GET", "/services/v2/order/certificate/{id}") => Route::OrderInfo,
        ("GET", "/services/v2/order/certificate") => Route::ListOrders,
        ("GET", "/services/v2/order/alternate/{alt_id}") => Route::OrdersByAlternativeId,
        ("PUT", "/services/v2/request/{request_id}/status") => Route::UpdateRequestStatus,
        ("PUT", "/services/v2/order/certificate/{order_id}/status") => Route::UpdateOrderStatus,
        (_, p) if p.contains("/download/") => Route::Download,
        ("POST", "/services/v2/organization") => Route::CreateOrganization,
        _ => Route::Organizations,
    }
}

fn authorized(shared: &Shared, request: &Request) -> bool {
    request
        .headers()
        .get(API_KEY_HEADER)
        .is_some_and(|v| v.as_bytes() == shared.api_key.as_bytes())
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "access_denied|invalid_api_key",
        "the X-DC-DEVKEY header is missing or holds an API key this account does not know",
    )
}

/// Authentication, rate limits, request capture and fault injection for the CertCentral routes.
async fn gate(State(shared): SharedState, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let route = route_name(request.method(), &path);
    if !authorized(&shared, &request) {
        return unauthorized();
    }
    let rate_limited = shared.settings().rate_limits
        && !shared
            .limiter
            .lock()
            .expect("limiter")
            .admit(Instant::now());
    if rate_limited {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "request_limit_exceeded",
            "Service unavailable, please limit request volume",
        );
    }
    *shared.seen.lock().expect("seen").entry(route).or_default() += 1;
    let killer = request.extensions().get::<ConnectionKiller>().cloned();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 << 20).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request_format",
            "the body is too large",
        );
    };
    if !bytes.is_empty() {
        let captured = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        shared
            .last_bodies
            .lock()
            .expect("bodies")
            .insert(route, captured);
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let fault = faults::take(&mut shared.faults.lock().expect("faults"), route);
    match &fault {
        Some(Fault::Status { status }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(
                status,
                "internal_error",
                "injected failure: the emulator was told to fail this call",
            );
        }
        Some(Fault::RateLimited { retry_after }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "request_limit_exceeded",
                "Service unavailable, please limit request volume",
            );
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&seconds.to_string()).expect("digits"),
                );
            }
            return response;
        }
        Some(Fault::Delay { millis }) => {
            tokio::time::sleep(std::time::Duration::from_millis(*millis)).await;
        }
        _ => {}
    }
    let response = next.run(request).await;
    match fault {
        Some(Fault::DropAfterCommit) => {
            if let Some(killer) = killer {
                killer.kill();
            }
            std::future::pending::<Response>().await
        }
        Some(Fault::DelayAfterCommit { millis }) => {
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            response
        }
        Some(Fault::MalformedJson) => {
            let status = response.status();
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"id\": 1, \"requests\": [{\"id\"",
            )
                .into_response()
        }
        _ => response,
    }
}

async fn admin_gate(State(shared): SharedState, request: Request, next: Next) -> Response {
    if !authorized(&shared, &request) {
        return unauthorized();
    }
    next.run(request).await
}

fn parse_json(bytes: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request_format",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

fn parse_id(text: &str, what: &str) -> Result<u64, Response> {
    text.parse::<u64>().map_err(|_| {
        error(
            StatusCode::NOT_FOUND,
            &format!("not_found|{what}"),
            format!("no {what} {text}"),
        )
    })
}

async fn create_order(
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
    let mut state = shared.state.lock().expect("state");
    let accepted = match validate::validate(product, &body, &state, OffsetDateTime::now_utc()) {
        Ok(a) => a,
        Err(e) => return errors(StatusCode::BAD_REQUEST, e),
    };
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
        approved_at_unix: approved.then(now_unix),
        certificate_id,
        created_unix: now_unix(),
        hardware_init_code: token_method.then(|| format!("HIC{order_id:010}")),
        body,
    };
    state.orders.insert(order_id, order);
    state.requests.insert(
        request_id,
        CertRequest {
            id: request_id,
            order_id,
            status: request_status.to_string(),
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
struct DueIssuance {
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
            .issue(&spki, &self.organization, not_after, serial.clone())
            .ok()?;
        Some(IssuedCertificate {
            id: self.certificate_id,
            order_id: self.order_id,
            leaf_pem,
            serial_hex: serial.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// Moves an approved order towards issuance: counts the poll, and says when a certificate is due.
fn advance(
    settings: &Settings,
    state: &mut crate::state::State,
    order_id: u64,
) -> Option<DueIssuance> {
    let order = state.orders.get_mut(&order_id)?;
    if order.status != "pending" {
        return None;
    }
    order.polls_since_approval += 1;
    let waited = now_unix() - order.approved_at_unix.unwrap_or(0);
    if order.polls_since_approval < settings.polls_until_issued
        || waited < settings.issue_delay.as_secs() as i64
    {
        return None;
    }
    // Orders without a CSR wait for the token step, as in reality.
    let csr = order.csr.clone()?;
    let order = order.clone();
    let organization = state.organizations.get(&order.organization_id).cloned()?;
    // An organization created with the order must be validated before anything is issued.
    if !organization.validated_for(order.product.validation_type()) {
        return None;
    }
    Some(DueIssuance {
        order_id,
        certificate_id: order
            .certificate_id
            .expect("approved orders have a certificate id"),
        csr,
        organization,
        not_after_unix: order.not_after_unix,
    })
}

/// Records an issued certificate, unless a concurrent poll of the same order got there first.
fn record_issuance(state: &mut crate::state::State, certificate: IssuedCertificate) {
    let Some(order) = state.orders.get_mut(&certificate.order_id) else {
        return;
    };
    if order.status != "pending" || state.certificates.contains_key(&certificate.id) {
        return;
    }
    order.status = "issued".to_string();
    state.certificates.insert(certificate.id, certificate);
}

fn order_json(state: &crate::state::State, order: &Order) -> Value {
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
    }
    let valid_till = OffsetDateTime::from_unix_timestamp(order.not_after_unix)
        .map(|t| t.date().to_string())
        .unwrap_or_default();
    let mut doc = json!({
        "id": order.id,
        "status": order.status,
        "date_created": OffsetDateTime::from_unix_timestamp(order.created_unix).map(|t| t.to_string()).unwrap_or_default(),
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
    doc
}

async fn order_info(State(shared): SharedState, Path(order_id): Path<String>) -> Response {
    let order_id = match parse_id(&order_id, "order") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let settings = shared.settings();
    let due = {
        let mut state = shared.state.lock().expect("state");
        if !state.orders.contains_key(&order_id) {
            return error(
                StatusCode::NOT_FOUND,
                "not_found|order",
                format!("no order {order_id}"),
            );
        }
        advance(&settings, &mut state, order_id)
    };
    let issued = due.and_then(|due| due.issue(&shared));
    let mut state = shared.state.lock().expect("state");
    if let Some(certificate) = issued {
        record_issuance(&mut state, certificate);
    }
    shared.persist(&state);
    let order = &state.orders[&order_id];
    Json(order_json(&state, order)).into_response()
}

fn page(query: &HashMap<String, String>) -> Result<(usize, usize), Response> {
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

async fn list_orders(
    State(shared): SharedState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (offset, limit) = match page(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state = shared.state.lock().expect("state");
    let matching: Vec<&Order> = state
        .orders
        .values()
        .filter(|o| query.get("filters[status]").is_none_or(|s| *s == o.status))
        .filter(|o| {
            query
                .get("filters[product_name_id]")
                .is_none_or(|p| p == o.product.name_id())
        })
        .collect();
    let orders: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| {
            json!({
                "id": o.id,
                "status": o.status,
                "product": { "name_id": o.product.name_id() },
                "organization": { "id": o.organization_id },
                "certificate": { "id": o.certificate_id },
            })
        })
        .collect();
    Json(json!({ "orders": orders, "page": { "total": matching.len(), "limit": limit, "offset": offset } }))
        .into_response()
}

async fn orders_by_alternative_id(
    State(shared): SharedState,
    Path(alt_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (offset, limit) = match page(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state = shared.state.lock().expect("state");
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

async fn update_request_status(
    State(shared): SharedState,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    let request_id = match parse_id(&request_id, "request") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match parse_json(&body) {
        Ok(v) => v,
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
    let mut state = shared.state.lock().expect("state");
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
    let certificate_id = (new_status == "approved").then(|| state.next_id());
    if let Some(order) = state.orders.get_mut(&request.order_id) {
        match new_status {
            "approved" => {
                order.status = "pending".to_string();
                order.approved_at_unix = Some(now_unix());
                order.certificate_id = certificate_id;
            }
            "rejected" => order.status = "rejected".to_string(),
            _ => {}
        }
    }
    shared.persist(&state);
    StatusCode::NO_CONTENT.into_response()
}

async fn update_order_status(
    State(shared): SharedState,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let order_id = match parse_id(&order_id, "order") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !body
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("canceled"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "status must be canceled",
        );
    }
    let mut state = shared.state.lock().expect("state");
    let Some(order) = state.orders.get_mut(&order_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|order",
            format!("no order {order_id}"),
        );
    };
    if !["needs_approval", "pending", "waiting_pickup"].contains(&order.status.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_status_change",
            format!(
                "order {order_id} is {}; only pending orders can be canceled",
                order.status
            ),
        );
    }
    order.status = "canceled".to_string();
    let request_id = order.request_id;
    if let Some(r) = state.requests.get_mut(&request_id)
        && r.status != "approved"
    {
        r.status = "rejected".to_string();
    }
    shared.persist(&state);
    StatusCode::NO_CONTENT.into_response()
}

fn chain_response(state: &crate::state::State, cert: &IssuedCertificate, format: &str) -> Response {
    let ca = &state.ca;
    let pem_response = |body: String| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            body,
        )
            .into_response()
    };
    match format {
        "pem_all" => pem_response(format!(
            "{}{}{}",
            cert.leaf_pem, ca.intermediate_cert_pem, ca.root_cert_pem
        )),
        "pem_noroot" => pem_response(format!("{}{}", cert.leaf_pem, ca.intermediate_cert_pem)),
        "pem_nointermediate" => pem_response(cert.leaf_pem.clone()),
        "p7b" => {
            let ders: Vec<Vec<u8>> = [&cert.leaf_pem, &ca.intermediate_cert_pem, &ca.root_cert_pem]
                .iter()
                .map(|p| {
                    pem::parse(p.as_bytes())
                        .expect("stored PEM")
                        .into_contents()
                })
                .collect();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-pkcs7-certificates")],
                crate::pkcs7::certs_only_pem(&ders),
            )
                .into_response()
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!(
                "format {other} is not offered here; use pem_all, pem_noroot, pem_nointermediate or p7b"
            ),
        ),
    }
}

async fn download_by_certificate(
    State(shared): SharedState,
    Path((certificate_id, format)): Path<(String, String)>,
) -> Response {
    let certificate_id = match parse_id(&certificate_id, "certificate") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = shared.state.lock().expect("state");
    match state.certificates.get(&certificate_id) {
        Some(cert) => chain_response(&state, cert, &format),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found|certificate",
            format!("no issued certificate {certificate_id}"),
        ),
    }
}

async fn download_by_order(
    State(shared): SharedState,
    Path((order_id, format)): Path<(String, String)>,
) -> Response {
    let order_id = match parse_id(&order_id, "order") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = shared.state.lock().expect("state");
    let Some(order) = state.orders.get(&order_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|order",
            format!("no order {order_id}"),
        );
    };
    match order
        .certificate_id
        .and_then(|id| state.certificates.get(&id))
    {
        Some(cert) => chain_response(&state, cert, &format),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found|certificate",
            format!(
                "order {order_id} has no issued certificate (status {})",
                order.status
            ),
        ),
    }
}

async fn create_organization(State(shared): SharedState, body: Bytes) -> Response {
    let body = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(obj) = body.as_object() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request_format",
            "the body must be a JSON object",
        );
    };
    let mut errs = Vec::new();
    let mut text = |field: &str| match obj.get(field).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => s.to_string(),
        _ => {
            errs.push(ApiError::new(
                "required_field_missing",
                format!("{field} is required"),
            ));
            String::new()
        }
    };
    let org = crate::state::Organization {
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
    if !obj
        .get("organization_contact")
        .is_some_and(Value::is_object)
    {
        errs.push(ApiError::new(
            "required_field_missing",
            "organization_contact is required",
        ));
    }
    if !errs.is_empty() {
        return errors(StatusCode::BAD_REQUEST, errs);
    }
    let mut state = shared.state.lock().expect("state");
    let id = state.next_id();
    state
        .organizations
        .insert(id, crate::state::Organization { id, ..org });
    shared.persist(&state);
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

async fn list_organizations(State(shared): SharedState) -> Response {
    let state = shared.state.lock().expect("state");
    let orgs: Vec<Value> = state
        .organizations
        .values()
        .map(|o| json!({ "id": o.id, "name": o.name, "display_name": o.name, "status": "active" }))
        .collect();
    let total = orgs.len();
    Json(json!({ "organizations": orgs, "page": { "total": total, "limit": 1000, "offset": 0 } }))
        .into_response()
}

async fn submit_validation(
    State(shared): SharedState,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let org_id = match parse_id(&org_id, "organization") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(validations) = body.get("validations").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "required_field_missing",
            "validations is required",
        );
    };
    let mut errs = Vec::new();
    let mut kinds = Vec::new();
    for (i, v) in validations.iter().enumerate() {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if !["ov", "ev", "cs", "ev_cs", "ds", "smime"].contains(&kind) {
            errs.push(ApiError::new(
                "invalid_value",
                format!("validations[{i}].type must be one of ov, ev, cs, ev_cs, ds, smime"),
            ));
            continue;
        }
        if ["ev", "cs", "ev_cs"].contains(&kind)
            && v.get("verified_users")
                .and_then(Value::as_array)
                .is_none_or(|u| u.is_empty())
        {
            errs.push(ApiError::new(
                "required_field_missing",
                format!("validations[{i}].verified_users is required for {kind}"),
            ));
            continue;
        }
        kinds.push(kind.to_string());
    }
    if !errs.is_empty() {
        return errors(StatusCode::BAD_REQUEST, errs);
    }
    let mut state = shared.state.lock().expect("state");
    let Some(org) = state.organizations.get_mut(&org_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|organization",
            format!("no organization {org_id}"),
        );
    };
    for kind in kinds {
        org.validations.retain(|v| v.kind != kind);
        // The emulator validates at once; CertCentral takes days.
        org.validations.push(Validation {
            kind,
            status: "active".to_string(),
        });
    }
    shared.persist(&state);
    StatusCode::NO_CONTENT.into_response()
}

async fn validation_status(State(shared): SharedState, Path(org_id): Path<String>) -> Response {
    let org_id = match parse_id(&org_id, "organization") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = shared.state.lock().expect("state");
    match state.organizations.get(&org_id) {
        Some(org) => Json(json!({ "validations": org.validations })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found|organization",
            format!("no organization {org_id}"),
        ),
    }
}

async fn add_fault(State(shared): SharedState, Json(rule): Json<FaultRule>) -> Response {
    shared.faults.lock().expect("faults").push(rule);
    StatusCode::NO_CONTENT.into_response()
}

async fn list_faults(State(shared): SharedState) -> Response {
    Json(shared.faults.lock().expect("faults").clone()).into_response()
}

async fn clear_faults(State(shared): SharedState) -> Response {
    shared.faults.lock().expect("faults").clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_settings(State(shared): SharedState) -> Response {
    Json(shared.settings()).into_response()
}

async fn put_settings(State(shared): SharedState, Json(settings): Json<Settings>) -> Response {
    *shared.settings.lock().expect("settings") = settings;
    StatusCode::NO_CONTENT.into_response()
}

async fn inspect_alternative_ids(State(shared): SharedState) -> Response {
    let state = shared.state.lock().expect("state");
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for order in state.orders.values() {
        if let Some(alt) = &order.alternative_order_id {
            *counts.entry(alt.clone()).or_default() += 1;
        }
    }
    Json(counts).into_response()
}

async fn inspect_last_request(State(shared): SharedState, Path(route): Path<String>) -> Response {
    let Ok(route) = serde_json::from_value::<Route>(Value::String(route.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|route",
            format!("no route named {route}"),
        );
    };
    match shared.last_bodies.lock().expect("bodies").get(&route) {
        Some(body) => Json(body.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found|request",
            "no request with a body seen on that route",
        ),
    }
}

async fn root_pem(State(shared): SharedState) -> Response {
    let root = shared.state.lock().expect("state").ca.root_cert_pem.clone();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        root,
    )
        .into_response()
}
