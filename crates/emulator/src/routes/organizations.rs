//! Organizations: create, list, submit for validation, validation status.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::PoisonError;

use super::respond::{SharedState, error, errors, id_and_body, parse_id, parse_json};
use crate::state::Validation;
use crate::validate::ApiError;

pub(super) async fn create_organization(State(shared): SharedState, body: Bytes) -> Response {
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
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let id = state.next_id();
    state
        .organizations
        .insert(id, crate::state::Organization { id, ..org });
    shared.persist(&state);
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

pub(super) async fn list_organizations(State(shared): SharedState) -> Response {
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let orgs: Vec<Value> = state
        .organizations
        .values()
        .map(|o| json!({ "id": o.id, "name": o.name, "display_name": o.name, "status": "active" }))
        .collect();
    let total = orgs.len();
    Json(json!({ "organizations": orgs, "page": { "total": total, "limit": 1000, "offset": 0 } }))
        .into_response()
}

pub(super) async fn submit_validation(
    State(shared): SharedState,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let (org_id, body) = match id_and_body(&org_id, "organization", &body) {
        Ok(parsed) => parsed,
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
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
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

pub(super) async fn validation_status(
    State(shared): SharedState,
    Path(org_id): Path<String>,
) -> Response {
    let org_id = match parse_id(&org_id, "organization") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    match state.organizations.get(&org_id) {
        Some(org) => Json(json!({ "validations": org.validations })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found|organization",
            format!("no organization {org_id}"),
        ),
    }
}
