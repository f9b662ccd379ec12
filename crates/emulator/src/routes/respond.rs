//! What every handler shares: the account's state as axum state, CertCentral-style error
//! answers, request body and ID parsing, the clock.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::validate::ApiError;

pub(super) type SharedState = State<Arc<Shared>>;

pub(super) fn errors(status: StatusCode, errors: Vec<ApiError>) -> Response {
    (status, Json(json!({ "errors": errors }))).into_response()
}

pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    errors(status, vec![ApiError::new(code, message)])
}

/// `404 not_found|order`, as CertCentral answers an order it does not hold.
pub(super) fn order_not_found(order_id: u64) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found|order",
        format!("no order {order_id}"),
    )
}

pub(super) fn parse_json(bytes: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request_format",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

pub(super) fn parse_id(text: &str, what: &str) -> Result<u64, Response> {
    text.parse::<u64>().map_err(|_| {
        error(
            StatusCode::NOT_FOUND,
            &format!("not_found|{what}"),
            format!("no {what} {text}"),
        )
    })
}

/// The ID in the path and the JSON body of a call that changes something.
pub(super) fn id_and_body(id: &str, what: &str, body: &Bytes) -> Result<(u64, Value), Response> {
    Ok((parse_id(id, what)?, parse_json(body)?))
}
