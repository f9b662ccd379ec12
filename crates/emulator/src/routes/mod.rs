//! The HTTP surface: the CertCentral endpoints under `/services/v2`, and the admin and inspection
//! endpoints under `/_emulator` (not part of CertCentral).

// Helpers return the error `Response` a handler sends as is; boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod admin;
mod downloads;
mod gate;
mod lifecycle;
mod orders;
mod organizations;
mod respond;

use admin::{
    add_fault, clear_faults, get_clock, get_settings, inspect_alternative_ids,
    inspect_last_request, list_faults, put_clock, put_settings, root_pem,
};
use downloads::{download_by_certificate, download_by_order};
pub use gate::API_KEY_HEADER;
use gate::{admin_gate, gate};
pub(crate) use lifecycle::revoked_serials;
use lifecycle::{intermediate_crl, list_reissues, reissue, revoke_certificate, revoke_order};
use orders::{
    create_order, expiring_report, list_orders, order_info, orders_by_alternative_id,
    status_changes, update_order_status, update_request_status,
};
use organizations::{
    create_organization, list_organizations, submit_validation, validation_status,
};
use respond::error;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post, put};

use crate::Shared;

/// The router of the whole emulator.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let api = axum::Router::new()
        // One pattern: POST takes a product identifier, GET an order ID.
        .route(
            "/order/certificate/{id}",
            post(create_order).get(order_info),
        )
        .route("/order/certificate", get(list_orders))
        .route("/order/certificate/status-changes", get(status_changes))
        .route("/report/order/expiring", get(expiring_report))
        .route("/order/alternate/{alt_id}", get(orders_by_alternative_id))
        .route(
            "/order/certificate/{order_id}/reissue",
            post(reissue).get(list_reissues),
        )
        .route("/order/certificate/{order_id}/revoke", put(revoke_order))
        .route(
            "/certificate/{certificate_id}/revoke",
            put(revoke_certificate),
        )
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
        .route("/clock", get(get_clock).put(put_clock))
        .route(
            "/inspect/orders-by-alternative-id",
            get(inspect_alternative_ids),
        )
        .route("/inspect/last-request/{route}", get(inspect_last_request))
        .route("/ca/root.pem", get(root_pem))
        .route("/ca/intermediate.crl", get(intermediate_crl))
        .route_layer(middleware::from_fn_with_state(shared.clone(), admin_gate));
    axum::Router::new()
        .nest("/services/v2", api)
        .nest("/_emulator", admin)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found|route", "no such endpoint") })
        .with_state(shared)
}
