//! The admin API under `/admin`: JSON over HTTP, guarded by this service's own
//! `tower-scopegate` layer (`scopegate:users:read|write`, `scopegate:clients:read|write`,
//! `scopegate:scopes:read|write`; tokens
//! addressed to this service, obtained by an admin client through client credentials). Every
//! body is validated before anything is changed; a bad one gets 400 with the field it is
//! about. Its OpenAPI document is served at `/admin/openapi.json`.

mod clients;
mod scopes;
mod users;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use serde_json::{Map, Value, json};

use crate::State;
use crate::config::{ApiSettings, ClientSettings, ConfigError, JsonSettings, ScopeSettings};
use crate::store::StoreError;

use crate::service_scopes::{
    CLIENTS_READ, CLIENTS_WRITE, SCOPES_READ, SCOPES_WRITE, USERS_READ, USERS_WRITE,
};

/// The OpenAPI 3.1 document of this API.
const OPENAPI: &str = include_str!("openapi.json");

/// The layers that guard the admin routes.
#[derive(Clone, Debug)]
pub(crate) struct AdminLayers {
    read_users: tower_scopegate::ScopeLayer,
    change_users: tower_scopegate::ScopeLayer,
    read_clients: tower_scopegate::ScopeLayer,
    change_clients: tower_scopegate::ScopeLayer,
    read_scopes: tower_scopegate::ScopeLayer,
    change_scopes: tower_scopegate::ScopeLayer,
}

impl AdminLayers {
    /// Layers checking tokens with `validator` (the one `/userinfo` uses: this service's
    /// own JWTs and opaque tokens, each asked whether it is still active).
    pub(crate) fn new(
        validator: &scopegate_validator::Validator,
    ) -> Result<Self, scopegate_validator::scope::ScopeError> {
        let layer = |scope: &str| {
            tower_scopegate::ScopeLayer::all_of(validator, [scope])
                .map(|layer| layer.realm("token-service"))
        };
        Ok(Self {
            read_users: layer(USERS_READ)?,
            change_users: layer(USERS_WRITE)?,
            read_clients: layer(CLIENTS_READ)?,
            change_clients: layer(CLIENTS_WRITE)?,
            read_scopes: layer(SCOPES_READ)?,
            change_scopes: layer(SCOPES_WRITE)?,
        })
    }
}

/// The `/admin` routes, each behind the layer for its scope.
pub(crate) fn routes(layers: &AdminLayers) -> Router<State> {
    let guard = |route: MethodRouter<State>, layer: &tower_scopegate::ScopeLayer| {
        route.route_layer(layer.clone())
    };
    let AdminLayers {
        read_users,
        change_users,
        read_clients,
        change_clients,
        read_scopes,
        change_scopes,
    } = layers;
    Router::new()
        .route("/admin/openapi.json", get(openapi))
        .route(
            "/admin/users",
            guard(get(users::list_users), read_users)
                .merge(guard(post(users::create_user), change_users)),
        )
        .route(
            "/admin/users/{username}",
            guard(get(users::get_user), read_users).merge(guard(
                axum::routing::patch(users::update_user).delete(users::delete_user),
                change_users,
            )),
        )
        .route(
            "/admin/users/{username}/password",
            guard(put(users::set_password), change_users),
        )
        .route(
            "/admin/clients",
            guard(get(clients::list_clients), read_clients)
                .merge(guard(post(clients::create_client), change_clients)),
        )
        .route(
            "/admin/clients/{id}",
            guard(get(clients::get_client), read_clients).merge(guard(
                axum::routing::delete(clients::delete_client),
                change_clients,
            )),
        )
        .route(
            "/admin/apis",
            guard(get(clients::list_apis), read_clients)
                .merge(guard(post(clients::create_api), change_clients)),
        )
        .route(
            "/admin/apis/{id}",
            guard(get(clients::get_api), read_clients).merge(guard(
                axum::routing::delete(clients::delete_api),
                change_clients,
            )),
        )
        .route(
            "/admin/scopes",
            guard(get(scopes::list_scopes), read_scopes)
                .merge(guard(post(scopes::create_scope), change_scopes)),
        )
        .route(
            "/admin/scopes/{name}",
            guard(get(scopes::get_scope), read_scopes).merge(guard(
                put(scopes::replace_scope).delete(scopes::delete_scope),
                change_scopes,
            )),
        )
}

/// The document's placeholder for this service's base URL.
const OPENAPI_BASE: &str = "https://token-service.example";

/// `GET /admin/openapi.json`: public, like the discovery document; its server and token URL
/// are this service's.
/// Its `ClientSettings`, `ApiSettings` and `ScopeSettings` schemas are the models' own
/// ([`ClientSettings::json_schema`], [`ApiSettings::json_schema`],
/// [`ScopeSettings::json_schema`]).
async fn openapi(axum::extract::State(state): axum::extract::State<State>) -> Response {
    let mut document: Value =
        match serde_json::from_str(&OPENAPI.replace(OPENAPI_BASE, state.config().base_url())) {
            Ok(document) => document,
            Err(error) => {
                tracing::error!(%error, "admin API: the built-in OpenAPI document is not JSON");
                return AdminError::unavailable("the OpenAPI document is unavailable")
                    .into_response();
            }
        };
    let schemas = &mut document["components"]["schemas"];
    schemas["ClientSettings"] = ClientSettings::json_schema();
    schemas["ApiSettings"] = ApiSettings::json_schema();
    schemas["ScopeSettings"] = ScopeSettings::json_schema();
    let mut response = axum::Json(document).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// An admin API error: a status and `{"error", "error_description", "field"}`.
#[derive(Debug)]
pub(crate) struct AdminError {
    status: StatusCode,
    error: &'static str,
    description: String,
    field: Option<String>,
}

impl AdminError {
    fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
            field: Some(field.into()),
        }
    }

    fn not_found(what: &str, id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            error: "not_found",
            description: format!("no {what} `{id}`"),
            field: None,
        }
    }

    fn conflict(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            error: "conflict",
            description: description.into(),
            field: None,
        }
    }

    fn unavailable(description: &str) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: description.to_owned(),
            field: None,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "admin API: store failed");
        Self::unavailable("the store is unavailable; nothing was changed")
    }
}

/// A use case's refusal: 400 naming the field for a broken rule, 409 for a name or scope that
/// is taken or read-only, 404 for an unknown one.
impl From<crate::directory::DirectoryError> for AdminError {
    fn from(error: crate::directory::DirectoryError) -> Self {
        use crate::directory::DirectoryError;
        match error {
            DirectoryError::Invalid(error) => error.into(),
            DirectoryError::Clash { field, reason } => Self {
                status: StatusCode::CONFLICT,
                error: "conflict",
                description: reason,
                field: Some(field),
            },
            DirectoryError::NotFound { kind, id } => Self::not_found(kind, &id),
            DirectoryError::Store(error) => error.into(),
            DirectoryError::Hashing => {
                Self::unavailable("a secret could not be hashed; nothing was changed")
            }
            other @ (DirectoryError::Taken { .. } | DirectoryError::Configured { .. }) => {
                Self::conflict(other.to_string())
            }
        }
    }
}

/// A registration rule broken: 400 naming the field.
impl From<ConfigError> for AdminError {
    fn from(error: ConfigError) -> Self {
        match error {
            ConfigError::Invalid { field, reason } => Self::invalid(field, reason),
            ConfigError::Parse(error) => Self::invalid("body", error.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error, "error_description": self.description });
        if let Some(field) = self.field {
            body["field"] = Value::String(field);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// The body as a JSON object whose members are all in `allowed`.
fn object_body(body: &Bytes, allowed: &[&str]) -> Result<Map<String, Value>, AdminError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| AdminError::invalid("body", format!("not JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(AdminError::invalid("body", "must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(AdminError::invalid(
            unknown.clone(),
            format!("unknown member; expected {}", allowed.join(", ")),
        ));
    }
    Ok(object)
}

/// A required string member.
fn string_member<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a str, AdminError> {
    match object.get(name) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(AdminError::invalid(name, "must be a string")),
        None => Err(AdminError::invalid(name, "is required")),
    }
}

/// A response that must not be cached (it shows a secret).
fn no_store(mut response: Response) -> Response {
    super::error::no_store(&mut response);
    response
}
