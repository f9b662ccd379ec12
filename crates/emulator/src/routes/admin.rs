//! `/_emulator`: faults, settings, inspection, the root certificate.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::PoisonError;

use super::respond::{SharedState, error};
use crate::Settings;
use crate::faults::{FaultRule, Route};

pub(super) async fn add_fault(State(shared): SharedState, Json(rule): Json<FaultRule>) -> Response {
    shared
        .faults
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(rule);
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn list_faults(State(shared): SharedState) -> Response {
    Json(
        shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    )
    .into_response()
}

pub(super) async fn clear_faults(State(shared): SharedState) -> Response {
    shared
        .faults
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn get_settings(State(shared): SharedState) -> Response {
    Json(shared.settings()).into_response()
}

pub(super) async fn put_settings(
    State(shared): SharedState,
    Json(settings): Json<Settings>,
) -> Response {
    *shared
        .settings
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = settings;
    StatusCode::NO_CONTENT.into_response()
}

/// The emulator's clock: `{"now": ISO 8601, "offset_seconds": N}`.
pub(super) async fn get_clock(State(shared): SharedState) -> Response {
    Json(serde_json::json!({
        "now": super::orders::iso8601(shared.now()),
        "offset_seconds": shared.clock_offset.load(std::sync::atomic::Ordering::SeqCst),
    }))
    .into_response()
}

/// Sets the clock: `{"offset_seconds": N}` from the real time (negative: the past), e.g. to issue
/// certificates that are near their end already.
pub(super) async fn put_clock(
    State(shared): SharedState,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let Some(offset) = body
        .get("offset_seconds")
        .and_then(serde_json::Value::as_i64)
    else {
        return super::respond::error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "offset_seconds must be a whole number of seconds",
        );
    };
    shared
        .clock_offset
        .store(offset, std::sync::atomic::Ordering::SeqCst);
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn inspect_alternative_ids(State(shared): SharedState) -> Response {
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for order in state.orders.values() {
        if let Some(alt) = &order.alternative_order_id {
            *counts.entry(alt.clone()).or_default() += 1;
        }
    }
    Json(counts).into_response()
}

pub(super) async fn inspect_last_request(
    State(shared): SharedState,
    Path(route): Path<String>,
) -> Response {
    let Ok(route) = serde_json::from_value::<Route>(Value::String(route.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found|route",
            format!("no route named {route}"),
        );
    };
    match shared
        .last_bodies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&route)
    {
        Some(body) => Json(body.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found|request",
            "no request with a body seen on that route",
        ),
    }
}

pub(super) async fn root_pem(State(shared): SharedState) -> Response {
    let root = shared
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .ca
        .root_cert_pem
        .clone();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        root,
    )
        .into_response()
}
