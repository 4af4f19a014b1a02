//! `/admin/scopes`: list, define, read, replace, delete claim scopes. The body has the members
//! of a `[[scopes]]` entry of the configuration file and passes the same check
//! ([`crate::config::build_scope`]); scopes of the configuration file are listed but read-only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AdminError;
use super::clients::json_object;
use crate::State;
use crate::config::{JsonSettings, ScopeSettings};
use crate::scope_catalogue::{Entry, ScopeSource};
use crate::store::StoredScope;

fn scope_json(entry: &Entry<'_>) -> Value {
    let mut value = json!(entry.scope.settings());
    value["source"] = entry.source.as_str().into();
    if let Some(created_at) = entry.created_at {
        value["created_at"] = created_at.into();
    }
    if let Some(updated_at) = entry.updated_at {
        value["updated_at"] = updated_at.into();
    }
    value
}

/// `GET /admin/scopes`: the configuration file's, then the store's.
pub(crate) async fn list_scopes(
    AxumState(state): AxumState<State>,
) -> Result<Response, AdminError> {
    let definitions = state.directory().scopes().await?;
    let scopes: Vec<Value> = definitions
        .entries()
        .map(|entry| scope_json(&entry))
        .collect();
    Ok(Json(json!({ "scopes": scopes })).into_response())
}

/// `GET /admin/scopes/{name}` (a name with `/`, `?` or `#` in it is percent-encoded).
pub(crate) async fn get_scope(
    AxumState(state): AxumState<State>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let definitions = state.directory().scopes().await?;
    let entry = definitions
        .find(&name)
        .ok_or_else(|| AdminError::not_found("scope", &name))?;
    Ok(Json(scope_json(&entry)).into_response())
}

/// A definition just written to the store, as the other answers show it.
fn stored_json(stored: &StoredScope) -> Value {
    scope_json(&Entry {
        scope: &stored.scope,
        source: ScopeSource::Store,
        created_at: Some(stored.created_at),
        updated_at: Some(stored.updated_at),
    })
}

/// `POST /admin/scopes` → 201 with the scope.
pub(crate) async fn create_scope(
    AxumState(state): AxumState<State>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let settings = ScopeSettings::from_json(json_object(&body)?)?;
    let stored = state
        .directory()
        .create_scope(settings, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(stored_json(&stored))).into_response())
}

/// `PUT /admin/scopes/{name}` → 200 with the scope: the body replaces its claims and
/// `access_token` (its `name`, if given, must be the path's: a scope is not renamed).
pub(crate) async fn replace_scope(
    AxumState(state): AxumState<State>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let mut settings = ScopeSettings::from_json(json_object(&body)?)?;
    if settings.name.is_empty() {
        settings.name.clone_from(&name);
    }
    let stored = state
        .directory()
        .update_scope(&name, settings, state.now())
        .await?;
    Ok(Json(stored_json(&stored)).into_response())
}

/// `DELETE /admin/scopes/{name}` → 204: no grant gives it any more, even to a client that still
/// lists it, and it releases no claim; tokens already issued stay valid until they expire.
pub(crate) async fn delete_scope(
    AxumState(state): AxumState<State>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    state.directory().delete_scope(&name, state.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
