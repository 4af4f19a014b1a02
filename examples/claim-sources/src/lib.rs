//! Two demo claim sources for the token service's `[[claim_sources]]`, modelled on the systems
//! custom claims usually live in:
//!
//! - a **profile store** (as a customer-identity platform's profile API): `GET
//!   /profiles/{username}` with a bearer token answers the user's profile, such as
//!   `{"companyName": "Bizcorp", "tier": "gold"}`;
//! - a **directory** (as a corporate directory's group lookup): `POST /directory/groups` with
//!   HTTP Basic credentials and the user's identifiers as JSON (`{"sub", "username", "email"}`)
//!   answers `{"groups": ["staff", …]}`.
//!
//! A user neither knows is answered 404, which the token service reads as "no claims". The
//! data is the demo users'; `DATA` names a JSON file of the same shape to serve others:
//! `{"profiles": {"jane": {…}}, "groups": {"jane": […]}}`.
//!
//! Run with: `cargo run -p example-claim-sources` (the demo configuration of the token service
//! names it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

/// The profile store's bearer token in the demo configuration.
pub const DEMO_PROFILE_TOKEN: &str = "demo-profile-store-token";
/// The directory's Basic credentials in the demo configuration.
pub const DEMO_DIRECTORY_CREDENTIALS: (&str, &str) = ("scopegate", "demo-directory-password");

/// What the sources know, by username.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// Profile-store records.
    pub profiles: HashMap<String, Value>,
    /// Directory group memberships.
    pub groups: HashMap<String, Vec<String>>,
}

impl Data {
    /// The demo users' records.
    #[must_use]
    pub fn demo() -> Self {
        Self {
            profiles: HashMap::from([(
                "jane".to_owned(),
                json!({ "companyName": "Bizcorp", "tier": "gold" }),
            )]),
            groups: HashMap::from([(
                "jane".to_owned(),
                vec!["staff".to_owned(), "beta-testers".to_owned()],
            )]),
        }
    }

    /// Reads `{"profiles": {…}, "groups": {…}}`.
    ///
    /// # Errors
    /// A message saying what is wrong with the text.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
        let profiles = match value.get("profiles") {
            None => HashMap::new(),
            Some(Value::Object(profiles)) => profiles.clone().into_iter().collect(),
            Some(_) => return Err("`profiles` must be an object".to_owned()),
        };
        let groups = match value.get("groups") {
            None => HashMap::new(),
            Some(groups) => serde_json::from_value(groups.clone())
                .map_err(|error| format!("`groups`: {error}"))?,
        };
        Ok(Self { profiles, groups })
    }
}

/// The credentials the sources accept.
#[derive(Clone)]
pub struct Credentials {
    /// The profile store's bearer token.
    pub profile_token: String,
    /// The directory's Basic user name and password.
    pub directory: (String, String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Credentials([redacted])")
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            profile_token: DEMO_PROFILE_TOKEN.to_owned(),
            directory: (
                DEMO_DIRECTORY_CREDENTIALS.0.to_owned(),
                DEMO_DIRECTORY_CREDENTIALS.1.to_owned(),
            ),
        }
    }
}

struct Shared {
    data: Data,
    credentials: Credentials,
}

/// The two sources' routes.
pub fn app(data: Data, credentials: Credentials) -> Router {
    Router::new()
        .route("/profiles/{username}", get(profile))
        .route("/directory/groups", post(groups))
        .with_state(Arc::new(Shared { data, credentials }))
}

fn same(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn authorization(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

fn unauthorized(scheme: &str) -> (StatusCode, HeaderMap, Json<Value>) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = scheme.parse() {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    (
        StatusCode::UNAUTHORIZED,
        headers,
        Json(json!({ "error": "unauthorized" })),
    )
}

async fn profile(
    State(shared): State<Arc<Shared>>,
    Path(username): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, HeaderMap, Json<Value>) {
    let presented = authorization(&headers)
        .strip_prefix("Bearer ")
        .unwrap_or_default();
    if !same(presented, &shared.credentials.profile_token) {
        return unauthorized("Bearer");
    }
    match shared.data.profiles.get(&username) {
        Some(record) => (StatusCode::OK, HeaderMap::new(), Json(record.clone())),
        None => (
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            Json(json!({ "error": "no such profile" })),
        ),
    }
}

async fn groups(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, Json<Value>) {
    use base64::Engine;
    let (user, password) = &shared.credentials.directory;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let presented = authorization(&headers)
        .strip_prefix("Basic ")
        .unwrap_or_default();
    if !same(presented, &expected) {
        return unauthorized("Basic realm=\"directory\"");
    }
    let Ok(who) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            Json(json!({ "error": "send the user's identifiers as a JSON object" })),
        );
    };
    let username = who["username"].as_str().unwrap_or_default();
    match shared.data.groups.get(username) {
        Some(groups) => (
            StatusCode::OK,
            HeaderMap::new(),
            Json(json!({ "groups": groups })),
        ),
        None => (
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            Json(json!({ "error": "no such user" })),
        ),
    }
}

/// Serves the sources as the binary does: `LISTEN` (default `127.0.0.1:3003`), `DATA` (a JSON
/// file; default the demo users), `PROFILE_STORE_TOKEN`, `DIRECTORY_USERNAME` and
/// `DIRECTORY_PASSWORD` (default the demo configuration's).
///
/// # Errors
/// A message naming the setting that is wrong, or the address that cannot be listened on.
pub async fn serve_from_env() -> Result<(), String> {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3003".to_owned());
    let data = match std::env::var("DATA") {
        Ok(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|error| format!("DATA {path}: {error}"))?;
            Data::from_json(&text).map_err(|error| format!("DATA {path}: {error}"))?
        }
        Err(_) => Data::demo(),
    };
    let defaults = Credentials::default();
    let credentials = Credentials {
        profile_token: std::env::var("PROFILE_STORE_TOKEN").unwrap_or(defaults.profile_token),
        directory: (
            std::env::var("DIRECTORY_USERNAME").unwrap_or(defaults.directory.0),
            std::env::var("DIRECTORY_PASSWORD").unwrap_or(defaults.directory.1),
        ),
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    tracing::info!(%listen, "demo claim sources ready");
    axum::serve(listener, app(data, credentials))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|error| error.to_string())
}
