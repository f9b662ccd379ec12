//! Certificate downloads in the documented formats, by certificate and by order.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::PoisonError;

use super::respond::{SharedState, error, order_not_found, parse_id};
use crate::state::IssuedCertificate;

pub(super) fn chain_response(
    state: &crate::state::State,
    cert: &IssuedCertificate,
    format: &str,
) -> Response {
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
            let ders: Result<Vec<Vec<u8>>, _> =
                [&cert.leaf_pem, &ca.intermediate_cert_pem, &ca.root_cert_pem]
                    .iter()
                    .map(|p| pem::parse(p.as_bytes()).map(pem::Pem::into_contents))
                    .collect();
            let Ok(ders) = ders else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the emulator's stored certificates cannot be read",
                );
            };
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

pub(super) async fn download_by_certificate(
    State(shared): SharedState,
    Path((certificate_id, format)): Path<(String, String)>,
) -> Response {
    let certificate_id = match parse_id(&certificate_id, "certificate") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    match state.certificates.get(&certificate_id) {
        Some(cert) => chain_response(&state, cert, &format),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found|certificate",
            format!("no issued certificate {certificate_id}"),
        ),
    }
}

pub(super) async fn download_by_order(
    State(shared): SharedState,
    Path((order_id, format)): Path<(String, String)>,
) -> Response {
    let order_id = match parse_id(&order_id, "order") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(order) = state.orders.get(&order_id) else {
        return order_not_found(order_id);
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
