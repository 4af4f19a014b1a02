//! Shared by the token service's integration tests: a service on a temporary SQLite file with a
//! mock clock, and helpers to speak to it in-process (`oneshot`) or over loopback.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod cluster;
pub mod jose;
pub mod logs;
pub mod pages;
pub mod pg_server;
pub mod postgres;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use scopegate_token_service::State;
use scopegate_token_service::config::Config;
use scopegate_token_service::http::app;
use scopegate_token_service::store::{SqlStore, Store};
use scopegate_validator::MockClock;
use serde_json::Value;
use tower::ServiceExt;

#[allow(unused_imports)]
pub use pages::*;

/// Whether an answer is of an attempt the limits let through: judged wrong (401), or counted
/// but turned away for want of a hashing slot in time (503, on a slow or busy machine).
pub fn passed_the_count(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE
}

/// `request` as if it came from `address` (the peer address the server sees).
pub fn from_address(mut request: Request<Body>, address: &str) -> Request<Body> {
    let peer = std::net::SocketAddr::new(address.parse().unwrap(), 40000);
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    request
}

pub const API: &str = "https://api.example.test";
pub const API_SECRET: &str = "api secret: s%cr+t";
pub const OTHER_API: &str = "https://other.example.test";

/// A configuration for `issuer` with `algorithm`, and a few clients and APIs.
pub fn config_text(issuer: &str, algorithm: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[signing]
algorithm = "{algorithm}"
announce_period = "10m"

[defaults]
access_token_ttl = "60m"

[[clients]]
id = "svc-jwt"
secret = "jwt-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read", "akamai:social_profile:write", "other:thing:read"]
default_scopes = ["akamai:social_profile:read"]
token_format = "jwt"
access_token_ttl = "15m"
audience = ["{API}", "{OTHER_API}"]

[[clients]]
id = "svc-opaque"
secret = "opaque-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:*", "other:thing:read"]
token_format = "opaque"

[[clients]]
id = "web-app"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["http://127.0.0.1:3000/callback"]
post_logout_redirect_uris = ["http://127.0.0.1:3000/signed-out"]
scopes = ["openid", "profile", "email", "ad:user_custom:read"]

[[clients]]
id = "conf-web"
secret = "conf-web-secret"
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["https://app.example.test/cb?tenant=7"]
scopes = ["openid", "email"]
token_format = "opaque"

[[scopes]]
name = "ad:user_custom:read"
claims = {{ company_name = "companyName" }}

[[users]]
username = "jane"
password = "jane-password-1"
attributes = {{ given_name = "Jane", family_name = "Doe", email = "jane@example.test", email_verified = true, companyName = "Bizcorp" }}

[[clients]]
id = "no-cc"
secret = "no-cc-secret"
grants = ["refresh_token"]
scopes = ["akamai:social_profile:read"]

[[apis]]
id = "{API}"
secret = "{API_SECRET}"
scopes = ["akamai:social_profile"]

[[apis]]
id = "{OTHER_API}"
secret = "other-secret"
scopes = ["other:thing"]
"#
    )
}

pub struct TestService {
    pub state: State,
    pub clock: Arc<MockClock>,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl TestService {
    pub async fn start() -> Self {
        Self::start_with(&config_text("http://127.0.0.1:8080", "ES256")).await
    }

    pub async fn start_with(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/store.db", dir.path().display());
        let clock = Arc::new(MockClock::at_system_time());
        let state = Self::open(config, &url, &clock).await;
        Self {
            state,
            clock,
            dir,
            url,
        }
    }

    pub async fn open(config: &str, url: &str, clock: &Arc<MockClock>) -> State {
        let config = Config::from_toml(config).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqlStore::sqlite(url).await.unwrap());
        State::with_store(config, store, clock.clone())
            .await
            .unwrap()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn call(&self, request: Request<Body>) -> Answer {
        let response = app(self.state.clone())
            .await
            .unwrap()
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Sends every request at once to one instance of the routes; the answers' statuses, in
    /// the order of `requests`.
    pub async fn burst(&self, requests: Vec<Request<Body>>) -> Vec<StatusCode> {
        let router = app(self.state.clone()).await.unwrap();
        let mut running = tokio::task::JoinSet::new();
        for (position, request) in requests.into_iter().enumerate() {
            let router = router.clone();
            running
                .spawn(async move { (position, router.oneshot(request).await.unwrap().status()) });
        }
        let mut statuses = running.join_all().await;
        statuses.sort_by_key(|(position, _)| *position);
        statuses.into_iter().map(|(_, status)| status).collect()
    }

    /// POSTs a form with optional Basic credentials.
    pub async fn post(&self, path: &str, basic: Option<(&str, &str)>, body: &str) -> Answer {
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            request = request.header(header::AUTHORIZATION, basic_header(id, secret));
        }
        self.call(request.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// Just the `access_token` of [`token`](Self::token).
    pub async fn access_token(&self, client: (&str, &str)) -> String {
        let answer = self.token(client, "").await;
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token for {}: {answer}", client.0))
            .to_owned()
    }

    /// A token for `client` (Basic) with `extra` form parameters; panics unless 200.
    pub async fn token(&self, client: (&str, &str), extra: &str) -> Value {
        let answer = self
            .post(
                "/token",
                Some(client),
                &format!("grant_type=client_credentials{extra}"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json
    }

    pub async fn introspect(&self, api: (&str, &str), token: &str) -> Answer {
        self.post(
            "/introspect",
            Some(api),
            &format!("token={}", form_encode(token)),
        )
        .await
    }
}

pub const JWT_CLIENT: (&str, &str) = ("svc-jwt", "jwt-secret");
pub const ADMIN: (&str, &str) = ("admin", "admin-secret");
pub const ADMIN_OPAQUE: (&str, &str) = ("admin-opaque", "admin-opaque-secret");

/// Clients of the admin API (every admin scope), to append to [`config_text`].
pub const ADMIN_CLIENTS: &str = r#"
[[clients]]
id = "admin"
secret = "admin-secret"
grants = ["client_credentials"]
scopes = ["scopegate:users:*", "scopegate:clients:*", "scopegate:scopes:*"]
token_format = "jwt"

[[clients]]
id = "admin-opaque"
secret = "admin-opaque-secret"
grants = ["client_credentials"]
scopes = ["scopegate:users:*", "scopegate:clients:*", "scopegate:scopes:*"]
token_format = "opaque"
"#;

/// A store on every backend: SQLite in memory, SQLite in a file, and a fresh Postgres database;
/// the third member keeps the file's folder or the database alive.
pub async fn backends() -> Vec<(&'static str, Arc<dyn Store>, Box<dyn std::any::Any>)> {
    let dir = tempfile::tempdir().unwrap();
    let file = format!("sqlite://{}/store.db", dir.path().display());
    let database = postgres::TestDatabase::create().await;
    vec![
        (
            "sqlite memory",
            scopegate_token_service::store::open("sqlite::memory:")
                .await
                .unwrap(),
            Box::new(()),
        ),
        (
            "sqlite file",
            scopegate_token_service::store::open(&file).await.unwrap(),
            Box::new(dir),
        ),
        (
            "postgres",
            scopegate_token_service::store::open(&database.url)
                .await
                .unwrap(),
            Box::new(database),
        ),
    ]
}
pub const OPAQUE_CLIENT: (&str, &str) = ("svc-opaque", "opaque-secret");
pub const API_CREDENTIALS: (&str, &str) = (API, API_SECRET);
pub const OTHER_API_CREDENTIALS: (&str, &str) = (OTHER_API, "other-secret");

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Answer {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<none>")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("<absent>", |value| value.to_str().unwrap())
    }
}

/// `client_secret_basic`: id and secret form-encoded, then base64 (RFC 6749 §2.3.1).
pub fn basic_header(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", form_encode(id), form_encode(secret)))
    )
}

pub fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The decoded header and claims of a JWT (no verification).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut segments = token.split('.');
    let decode = |segment: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    };
    let header = decode(segments.next().unwrap());
    let claims = decode(segments.next().unwrap());
    (header, claims)
}

/// A sealer over operator `keys`, the first of which encrypts.
pub fn sealer(keys: &[&str]) -> Arc<scopegate_token_service::sealing::Sealer> {
    let keys: Vec<scopegate_token_service::secret::Secret> = keys
        .iter()
        .map(|key| scopegate_token_service::secret::Secret::new((*key).to_owned()))
        .collect();
    Arc::new(scopegate_token_service::sealing::Sealer::new(&keys).unwrap())
}

/// Starts the service on `store` with the encryption `keys`; the start error as text.
pub async fn start_with_keys(keys: &[&str], store: &Arc<dyn Store>) -> Result<State, String> {
    let mut config = Config::from_toml(&config_text("http://127.0.0.1:8080", "ES256")).unwrap();
    config.encryption = sealer(keys);
    let clock = Arc::new(MockClock::at_system_time());
    State::with_store(config, Arc::clone(store), clock)
        .await
        .map_err(|error| error.to_string())
}
