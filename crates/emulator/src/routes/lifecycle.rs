//! After issuance: reissues (`POST|GET /order/certificate/{id}/reissue`), revocations
//! (`PUT /certificate/{id}/revoke`, `PUT /order/certificate/{id}/revoke`) and the CRL of the
//! emulator's intermediate CA (`GET /_emulator/ca/intermediate.crl`).
//!
//! Where DigiCert's pages stop (the reissue's success status, error codes), the choices are
//! ours and said where they are made.

use std::sync::PoisonError;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::orders::iso8601;
use super::respond::{SharedState, error, id_and_body, order_not_found, parse_id};
use crate::ApprovalMode;
use crate::state::{PendingReissue, Request as CertRequest, State as Account};
use crate::validate;

/// `POST /order/certificate/{order_id}/reissue`: a new certificate on an issued order, for the
/// key of `certificate.csr` (required for the HSM method, `email`: the token methods take none,
/// and the emulator issues only for a CSR). The order is `reissue_pending` until the reissue is
/// issued; with `skip_approval` in an auto-approving account it is approved at once. Answers 201
/// `{id, requests: [{id, status}]}` (DigiCert documents no response table; this is what client
/// code reads), with `certificate_id` once approved.
pub(super) async fn reissue(
    State(shared): SharedState,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let (order_id, body) = match id_and_body(&order_id, "order", &body) {
        Ok(parsed) => parsed,
        Err(r) => return r,
    };
    let Some(certificate) = body.get("certificate").and_then(Value::as_object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "required_field_missing",
            "certificate is required",
        );
    };
    if let Some(hash) = certificate.get("signature_hash")
        && hash != "sha256"
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("certificate.signature_hash must be sha256; got {hash}"),
        );
    }
    let Some(csr) = certificate.get("csr").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "required_field_missing",
            "certificate.csr is required for a reissue of a key the caller holds",
        );
    };
    if let Err(problem) = validate::check_csr(csr) {
        return error(StatusCode::BAD_REQUEST, &problem.code, problem.message);
    }
    let skip_approval = body.get("skip_approval").and_then(Value::as_bool) == Some(true);
    let settings = shared.settings();
    let now = shared.now_unix();
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(order) = state.orders.get(&order_id) else {
        return order_not_found(order_id);
    };
    // Our code: DigiCert names none for a reissue of an order that is not issued.
    if order.status != "issued" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_order_status",
            format!(
                "order {order_id} is {}; only an issued order can be reissued",
                order.status
            ),
        );
    }
    let request_id = state.next_id();
    let approved = skip_approval && settings.approval == ApprovalMode::AutoApprove;
    let certificate_id = approved.then(|| state.next_id());
    let status = if approved { "approved" } else { "pending" };
    state.requests.insert(
        request_id,
        CertRequest {
            id: request_id,
            order_id,
            status: status.to_string(),
            kind: "reissue".to_string(),
            certificate_id: None,
            comments: body
                .get("comments")
                .and_then(Value::as_str)
                .map(str::to_string),
            date_unix: now,
        },
    );
    if let Some(order) = state.orders.get_mut(&order_id) {
        order.reissue = Some(PendingReissue {
            request_id,
            csr: csr.to_string(),
            certificate_id,
            created_unix: now,
        });
        order.polls_since_approval = 0;
        if approved {
            order.approved_at_unix = Some(now);
        }
        order.set_status("reissue_pending", now);
    }
    shared.persist(&state);
    let mut answer =
        json!({ "id": order_id, "requests": [{ "id": request_id, "status": status }] });
    if let Some(id) = certificate_id {
        answer["certificate_id"] = json!(id);
    }
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// `GET /order/certificate/{order_id}/reissue`: the certificates reissues made (`issued`), and a
/// reissue in progress (`pending`), oldest first.
pub(super) async fn list_reissues(
    State(shared): SharedState,
    Path(order_id): Path<String>,
) -> Response {
    let order_id = match parse_id(&order_id, "order") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(order) = state.orders.get(&order_id) else {
        return order_not_found(order_id);
    };
    // The first certificate was the order's own; every later one came from a reissue.
    let mut issued: Vec<u64> = order
        .previous_certificates
        .iter()
        .skip(1)
        .copied()
        .collect();
    if !order.previous_certificates.is_empty()
        && let Some(current) = order.certificate_id
    {
        issued.push(current);
    }
    let mut certificates: Vec<Value> = issued
        .iter()
        .filter_map(|id| state.certificates.get(id))
        .map(|cert| {
            let mut listed =
                json!({ "id": cert.id, "status": "issued", "serial_number": cert.serial_hex });
            if let Some((from, till)) = super::orders::leaf_validity(&cert.leaf_pem) {
                listed["date_issued"] = json!(iso8601(from));
                listed["valid_till"] = json!(till.date().to_string());
            }
            listed
        })
        .collect();
    if let Some(pending) = &order.reissue {
        let mut listed = json!({
            "status": "pending",
            "csr": pending.csr,
            "date_created": time::OffsetDateTime::from_unix_timestamp(pending.created_unix).map(iso8601).unwrap_or_default(),
        });
        if let Some(id) = pending.certificate_id {
            listed["id"] = json!(id);
        }
        certificates.push(listed);
    }
    Json(json!({ "certificates": certificates })).into_response()
}

/// What a revoke asks for.
enum Target {
    Certificate(u64),
    Order(u64),
}

/// `PUT /certificate/{certificate_id}/revoke` (the ID or the serial number, hex).
pub(super) async fn revoke_certificate(
    State(shared): SharedState,
    Path(certificate): Path<String>,
    body: Bytes,
) -> Response {
    let body = match revoke_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id = {
        let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let by_id = certificate
            .parse::<u64>()
            .ok()
            .filter(|id| state.certificates.contains_key(id));
        by_id.or_else(|| {
            state
                .certificates
                .values()
                .find(|c| c.serial_hex.eq_ignore_ascii_case(&certificate))
                .map(|c| c.id)
        })
    };
    let Some(id) = id else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|certificate",
            format!("no certificate {certificate}"),
        );
    };
    revoke(&shared, Target::Certificate(id), &body)
}

/// `PUT /order/certificate/{order_id}/revoke`: every certificate of the order.
pub(super) async fn revoke_order(
    State(shared): SharedState,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let order_id = match parse_id(&order_id, "order") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match revoke_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    revoke(&shared, Target::Order(order_id), &body)
}

/// The revoke body: `comments` (the examples' name; the table says `comment`, taken too) and
/// `skip_approval`. An empty body is an empty object.
fn revoke_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    super::respond::parse_json(body)
}

fn revoke(shared: &crate::Shared, target: Target, body: &Value) -> Response {
    let settings = shared.settings();
    let now = shared.now_unix();
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let (order_id, certificate_id) = match target {
        Target::Certificate(id) => (state.certificates[&id].order_id, Some(id)),
        Target::Order(id) => (id, None),
    };
    let Some(order) = state.orders.get(&order_id) else {
        return order_not_found(order_id);
    };
    if order.status == "reissue_pending" {
        return error(
            StatusCode::BAD_REQUEST,
            "reissue_pending",
            format!("order {order_id} has a pending reissue: cancel it or wait until it is issued"),
        );
    }
    // Codes client code treats as "already revoked"; DigiCert documents none.
    let already = match certificate_id {
        Some(id) => state.certificates[&id].revoked_unix.is_some(),
        None => order.status == "revoked",
    };
    if already {
        return error(
            StatusCode::BAD_REQUEST,
            if certificate_id.is_some() {
                "certificate_already_revoked"
            } else {
                "order_already_revoked"
            },
            "already revoked",
        );
    }
    if certificate_id.is_none() && order.certificate_id.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_order_status",
            format!("order {order_id} has no certificate to revoke"),
        );
    }
    let comments = body
        .get("comments")
        .or_else(|| body.get("comment"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let request = CertRequest {
        id: state.next_id(),
        order_id,
        status: "pending".to_string(),
        kind: "revoke".to_string(),
        certificate_id,
        comments: comments.clone(),
        date_unix: now,
    };
    // An API key of an administrator may skip the approval: the emulator's key is one when the
    // account approves by itself.
    let skip = body.get("skip_approval").and_then(Value::as_bool) == Some(true)
        && settings.approval == ApprovalMode::AutoApprove;
    if skip {
        revoke_now(&mut state, &request, now);
        shared.persist(&state);
        return StatusCode::NO_CONTENT.into_response();
    }
    let answer = json!({
        "id": request.id,
        "date": time::OffsetDateTime::from_unix_timestamp(now).map(iso8601).unwrap_or_default(),
        "type": "revoke",
        "status": "pending",
        "requester": { "id": 1, "first_name": "API", "last_name": "Key", "email": "api@example.com" },
        "comments": comments,
    });
    state.requests.insert(request.id, request);
    shared.persist(&state);
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// Revokes what an approved revoke request names: one certificate, or every certificate of the
/// order (the order becomes `revoked`).
pub(super) fn revoke_now(state: &mut Account, request: &CertRequest, now: i64) {
    let ids: Vec<u64> = match request.certificate_id {
        Some(id) => vec![id],
        None => {
            let Some(order) = state.orders.get_mut(&request.order_id) else {
                return;
            };
            order.set_status("revoked", now);
            order
                .previous_certificates
                .iter()
                .copied()
                .chain(order.certificate_id)
                .collect()
        }
    };
    for id in ids {
        if let Some(cert) = state.certificates.get_mut(&id)
            && cert.revoked_unix.is_none()
        {
            cert.revoked_unix = Some(now);
        }
    }
    if let Some(r) = state.requests.get_mut(&request.id) {
        r.status = "approved".to_string();
    }
}

/// `GET /_emulator/ca/intermediate.crl`: the intermediate's CRL (PEM), listing every revoked
/// certificate, valid for 7 days from the emulator's now.
pub(super) async fn intermediate_crl(State(shared): SharedState) -> Response {
    let revoked = revoked_serials(&shared);
    match shared.intermediate_ca.crl(&revoked, shared.now()) {
        Ok(pem) => ([("content-type", "application/pkix-crl")], pem).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        ),
    }
}

/// Every revoked certificate: serial (hex) and revocation time (Unix seconds).
pub(crate) fn revoked_serials(shared: &crate::Shared) -> Vec<(String, i64)> {
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    state
        .certificates
        .values()
        .filter_map(|c| c.revoked_unix.map(|at| (c.serial_hex.clone(), at)))
        .collect()
}
