//! The gate in front of every CertCentral route: the API key, the rate limits, request capture
//! and injected faults; and the admin routes' key check.

use std::sync::PoisonError;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::respond::{SharedState, error};
use crate::Shared;
use crate::faults::Route;
use crate::faults::{self, Fault};
use crate::server::ConnectionKiller;

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "X-DC-DEVKEY";

/// The route a request is for, by method and matched path, as faults name it.
pub(super) fn route_name(method: &Method, path: &str) -> Route {
    match (method.as_str(), path) {
        ("POST", "/services/v2/order/certificate/{id}") => Route::CreateOrder,
        ("GET", "/services/v2/order/certificate/{id}") => Route::OrderInfo,
        ("GET", "/services/v2/order/certificate") => Route::ListOrders,
        ("GET", "/services/v2/order/certificate/status-changes") => Route::StatusChanges,
        ("GET", "/services/v2/order/alternate/{alt_id}") => Route::OrdersByAlternativeId,
        (_, "/services/v2/order/certificate/{order_id}/reissue") => Route::Reissue,
        (_, p) if p.ends_with("/revoke") => Route::Revoke,
        ("PUT", "/services/v2/request/{request_id}/status") => Route::UpdateRequestStatus,
        ("PUT", "/services/v2/order/certificate/{order_id}/status") => Route::UpdateOrderStatus,
        (_, p) if p.contains("/download/") => Route::Download,
        ("POST", "/services/v2/organization") => Route::CreateOrganization,
        (_, p) if p.starts_with("/services/v2/report/") => Route::Reports,
        _ => Route::Organizations,
    }
}

pub(super) fn authorized(shared: &Shared, request: &Request) -> bool {
    request
        .headers()
        .get(API_KEY_HEADER)
        .is_some_and(|v| v.as_bytes() == shared.api_key.as_bytes())
}

pub(super) fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "access_denied|invalid_api_key",
        "the X-DC-DEVKEY header is missing or holds an API key this account does not know",
    )
}

/// The answer's delay as over the internet: the fixed latency plus up to the jitter, at random.
async fn latency(settings: &crate::Settings) {
    if settings.latency.is_zero() && settings.latency_jitter.is_zero() {
        return;
    }
    let jitter_ms = u64::try_from(settings.latency_jitter.as_millis()).unwrap_or(u64::MAX);
    let extra = if jitter_ms == 0 {
        0
    } else {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes) % (jitter_ms + 1)
    };
    tokio::time::sleep(settings.latency + std::time::Duration::from_millis(extra)).await;
}

/// Authentication, rate limits, request capture and fault injection for the CertCentral routes.
pub(super) async fn gate(State(shared): SharedState, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let route = route_name(request.method(), &path);
    if !authorized(&shared, &request) {
        return unauthorized();
    }
    let settings = shared.settings();
    let rate_limited = settings.rate_limits
        && !shared
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now(), &settings.rate_windows);
    latency(&settings).await;
    if rate_limited {
        shared
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "request_limit_exceeded",
            "Service unavailable, please limit request volume",
        );
    }
    *shared
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(route)
        .or_default() += 1;
    let accept = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    shared
        .last_accept
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(route, accept);
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
            .unwrap_or_else(PoisonError::into_inner)
            .insert(route, captured);
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let fault = faults::take(
        &mut shared.faults.lock().unwrap_or_else(PoisonError::into_inner),
        route,
    );
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
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
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
        Some(Fault::HostileChain { variant }) => hostile_chain(&shared, response, variant).await,
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

/// The download's PEM bundle made hostile as `variant` says.
async fn hostile_chain(
    shared: &Shared,
    response: Response,
    variant: faults::HostileChain,
) -> Response {
    let status = response.status();
    let Ok(bytes) = axum::body::to_bytes(response.into_body(), 4 << 20).await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "no body",
        );
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut blocks: Vec<String> = text
        .split_inclusive("-----END CERTIFICATE-----\n")
        .map(str::to_string)
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .collect();
    match variant {
        faults::HostileChain::Reordered => blocks.reverse(),
        faults::HostileChain::IssuersSwapped => {
            if blocks.len() >= 3 {
                blocks.swap(1, 2);
            }
        }
        faults::HostileChain::NoLeaf => {
            if !blocks.is_empty() {
                blocks.remove(0);
            }
        }
        faults::HostileChain::OtherKey => {
            let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            let other = state
                .certificates
                .values()
                .map(|c| c.leaf_pem.clone())
                .find(|leaf| blocks.first().is_none_or(|first| first != leaf));
            if let (Some(other), Some(first)) = (other, blocks.first_mut()) {
                *first = other;
            }
        }
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        blocks.concat(),
    )
        .into_response()
}

pub(super) async fn admin_gate(
    State(shared): SharedState,
    request: Request,
    next: Next,
) -> Response {
    if !authorized(&shared, &request) {
        return unauthorized();
    }
    next.run(request).await
}
