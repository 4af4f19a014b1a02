//! `/admin/clients` and `/admin/apis`: list, register (the generated secret is in the answer
//! once; only its hash is stored), read, delete. The body has the members of a `[[clients]]` /
//! `[[apis]]` entry of the configuration file (but its secret) and passes the same checks. Clients and APIs of
//! the configuration file are listed but read-only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AdminError, no_store};
use crate::State;
use crate::config::{Api, ApiSettings, Client, ClientSettings, JsonSettings};

fn client_json(client: &Client, source: &str) -> Value {
    let mut value = json!(&client.settings);
    value["source"] = source.into();
    if let Some(created_at) = client.registered_at {
        value["created_at"] = created_at.into();
    }
    value
}

fn api_json(api: &Api, source: &str, created_at: Option<u64>) -> Value {
    let mut value = json!({
        "id": api.id,
        "scopes": api.scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>(),
        "source": source,
    });
    if let Some(created_at) = created_at {
        value["created_at"] = created_at.into();
    }
    value
}

/// `GET /admin/clients`: configured clients, then stored ones.
pub(crate) async fn list_clients(
    AxumState(state): AxumState<State>,
) -> Result<Response, AdminError> {
    let mut clients: Vec<Value> = state
        .config()
        .clients
        .iter()
        .map(|client| client_json(client, "configuration"))
        .collect();
    for client in state.store().list_clients().await? {
        clients.push(client_json(&client, "store"));
    }
    Ok(Json(json!({ "clients": clients })).into_response())
}

/// `GET /admin/clients/{id}`.
pub(crate) async fn get_client(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    if let Some(client) = state
        .config()
        .clients
        .iter()
        .find(|client| client.id() == id)
    {
        return Ok(Json(client_json(client, "configuration")).into_response());
    }
    let client = state
        .store()
        .find_client(&id)
        .await?
        .ok_or_else(|| AdminError::not_found("client", &id))?;
    Ok(Json(client_json(&client, "store")).into_response())
}

/// The registration a body asks for: the settings a `[[clients]]` entry has, read by the same
/// [`ClientSettings::from_json`].
fn new_client(body: &Bytes) -> Result<ClientSettings, AdminError> {
    let settings = ClientSettings::from_json(json_object(body)?)?;
    // Otherwise `scopegate:clients:write` could mint itself every other admin right.
    if let Some(position) = settings.scopes.iter().position(|scope| {
        let name = scope.as_str();
        name == "scopegate" || name.starts_with("scopegate:")
    }) {
        return Err(AdminError::invalid(
            format!("scopes[{position}]"),
            "the admin API's own scopes are granted only in the configuration file or with `client add`",
        ));
    }
    Ok(settings)
}

/// `POST /admin/clients` → 201 with the client and, for a confidential one, `secret` (shown
/// this once).
pub(crate) async fn create_client(
    AxumState(state): AxumState<State>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let new = new_client(&body)?;
    let (client, secret) = state.directory().register_client(new, state.now()).await?;
    let mut body = client_json(&client, "store");
    if let Some(secret) = secret {
        body["secret"] = secret.expose().into();
    }
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

/// `DELETE /admin/clients/{id}` → 204. Its refresh and opaque access tokens are revoked with
/// it, and its JWTs no longer introspect active; resource servers that verify JWTs locally
/// accept them until they expire.
pub(crate) async fn delete_client(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    state.directory().delete_client(&id, state.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /admin/apis`: configured APIs, then stored ones.
pub(crate) async fn list_apis(AxumState(state): AxumState<State>) -> Result<Response, AdminError> {
    let mut apis: Vec<Value> = state
        .config()
        .apis
        .iter()
        .map(|api| api_json(api, "configuration", None))
        .collect();
    for api in state.store().list_apis().await? {
        apis.push(api_json(&api, "store", api.registered_at));
    }
    Ok(Json(json!({ "apis": apis })).into_response())
}

/// `GET /admin/apis/{id}` (an id with `/` in it is percent-encoded in the path).
pub(crate) async fn get_api(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    if let Some(api) = state.config().apis.iter().find(|api| api.id == id) {
        return Ok(Json(api_json(api, "configuration", None)).into_response());
    }
    let api = state
        .store()
        .find_api(&id)
        .await?
        .ok_or_else(|| AdminError::not_found("API", &id))?;
    Ok(Json(api_json(&api, "store", api.registered_at)).into_response())
}

/// A body that is a JSON object.
pub(super) fn json_object(body: &Bytes) -> Result<Value, AdminError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| AdminError::invalid("body", format!("not JSON: {error}")))?;
    if !value.is_object() {
        return Err(AdminError::invalid("body", "must be a JSON object"));
    }
    Ok(value)
}

/// `POST /admin/apis` `{"id", "scopes"}` → 201 with the API and its introspection `secret`
/// (shown this once).
pub(crate) async fn create_api(
    AxumState(state): AxumState<State>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let settings = ApiSettings::from_json(json_object(&body)?)?;
    let (api, secret) = state
        .directory()
        .register_api(settings, state.now())
        .await?;
    let mut body = api_json(&api, "store", api.registered_at);
    if let Some(secret) = secret {
        body["secret"] = secret.expose().into();
    }
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

/// `DELETE /admin/apis/{id}` → 204: it can no longer introspect.
pub(crate) async fn delete_api(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    state.directory().delete_api(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
