//! The bundled token service and the example protected API, each on its own loopback port:
//! tokens from the service are accepted or refused by the API exactly by their scopes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use example_protected_api::{Config as ApiConfig, app as api_app};
use reqwest::{Method, StatusCode};
use scopegate_token_service::State;
use scopegate_token_service::config::Config;
use scopegate_token_service::keys::KeyAlgorithm;
use scopegate_token_service::rotation;
use scopegate_token_service::store::{SqlStore, Store};
use scopegate_validator::{Algorithm, Clock, MockClock, SystemClock, Validator};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.example.test";
const API_SECRET: &str = "api-secret";

fn token_service_config(issuer: &str, storage: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "{storage}"

[signing]
algorithm = "RS256"

[[clients]]
id = "reader"
secret = "reader-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["{AUDIENCE}"]

[[clients]]
id = "editor"
secret = "editor-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:*"]
token_format = "opaque"
audience = ["{AUDIENCE}"]

[[clients]]
id = "elsewhere"
secret = "elsewhere-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["https://other-api.example.test"]

[[apis]]
id = "{AUDIENCE}"
secret = "{API_SECRET}"
scopes = ["akamai:social_profile"]
"#
    )
}

struct Stack {
    issuer: String,
    api: String,
    state: State,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Stack {
    start_with(None).await
}

/// With a mock clock, shared by the token service and the API's validator (so that the test can
/// let time pass for both); without one, the API is configured exactly from its environment
/// variables and both run on the system clock.
async fn start_with(clock: Option<MockClock>) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}/tokens.db", dir.path().display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let config = Config::from_toml(&token_service_config(&issuer, &storage)).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqlStore::sqlite(&storage).await.unwrap());
    let service_clock: Arc<dyn Clock> = match &clock {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(SystemClock),
    };
    let state = State::with_store(config, store, service_clock)
        .await
        .unwrap();
    let serving = state.clone();
    tokio::spawn(scopegate_token_service::http::serve(
        serving,
        listener,
        std::future::pending(),
    ));

    // The example API, configured exactly as its environment variables would.
    let api_config = ApiConfig::from_lookup(|name| match name {
        "ISSUER" => Some(issuer.clone()),
        "AUDIENCE" => Some(AUDIENCE.to_owned()),
        "INTROSPECTION_CLIENT_ID" => Some(AUDIENCE.to_owned()),
        "INTROSPECTION_CLIENT_SECRET" => Some(API_SECRET.to_owned()),
        "LISTEN" => Some("127.0.0.1:0".to_owned()),
        _ => None,
    })
    .unwrap();
    let validator = match clock {
        None => api_config.validator().unwrap(),
        Some(clock) => Validator::builder()
            .issuer(&issuer)
            .audience(AUDIENCE)
            .algorithms(Algorithm::ALL)
            .introspection(AUDIENCE, API_SECRET)
            .clock(clock)
            .build()
            .unwrap(),
    };
    let router = api_app(&validator).unwrap();
    let api_listener = tokio::net::TcpListener::bind(&api_config.listen)
        .await
        .unwrap();
    let api = format!("http://{}", api_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(api_listener, router).await.unwrap() });
    Stack {
        issuer,
        api,
        state,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Stack {
    async fn token(&self, client: &str, secret: &str, scope: Option<&str>) -> String {
        let mut body = "grant_type=client_credentials".to_owned();
        if let Some(scope) = scope {
            body.push_str(&format!("&scope={scope}"));
        }
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let json: Value = response.json().await.unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    }

    /// Calls the API; returns status, `WWW-Authenticate` and the body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.api));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        // PUT /profile takes the new profile as JSON.
        let response = request
            .header("content-type", "application/json")
            .body(r#"{"nickname":"j"}"#)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, challenge, response.text().await.unwrap())
    }
}

#[tokio::test]
async fn a_read_only_jwt_reads_and_is_refused_writing() {
    let stack = start().await;
    let token = stack.token("reader", "reader-secret", None).await;
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let (status, _, _) = stack.call(Method::GET, "/profile", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, challenge, _) = stack.call(Method::PUT, "/profile", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"scope="akamai:social_profile:write""#),
        "{challenge}"
    );
    let (status, challenge, _) = stack.call(Method::DELETE, "/profile", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains(r#"scope="akamai:social_profile:delete""#),
        "{challenge}"
    );
    let (status, _, body) = stack.call(Method::GET, "/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let me: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["sub"], "reader");
    assert_eq!(me["client_id"], "reader");
    assert_eq!(me["scopes"], json!(["akamai:social_profile:read"]));
}

#[tokio::test]
async fn an_opaque_token_with_every_permission_does_everything_through_introspection() {
    let stack = start().await;
    let token = stack
        .token("editor", "editor-secret", Some("akamai:social_profile"))
        .await;
    assert_eq!(token.split('.').count(), 1, "opaque");
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let (status, challenge, _) = stack.call(method.clone(), "/profile", Some(&token)).await;
        assert!(status.is_success(), "{method}: {status} {challenge}");
    }
    // A narrower request narrows what the API allows.
    let read_only = stack
        .token(
            "editor",
            "editor-secret",
            Some("akamai:social_profile:read"),
        )
        .await;
    let (status, _, _) = stack.call(Method::PUT, "/profile", Some(&read_only)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn tokens_the_api_must_not_accept_are_401() {
    let stack = start().await;
    let (status, challenge, _) = stack.call(Method::GET, "/profile", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        !challenge.contains("error="),
        "a bare challenge: {challenge}"
    );
    // A token for another audience.
    let other = stack.token("elsewhere", "elsewhere-secret", None).await;
    let (status, challenge, _) = stack.call(Method::GET, "/profile", Some(&other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    // A revoked opaque token that the API has not seen before.
    let revoked = stack.token("editor", "editor-secret", None).await;
    let response = stack
        .http
        .post(format!("{}/revoke", stack.issuer))
        .basic_auth("editor", Some("editor-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={revoked}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, challenge, _) = stack.call(Method::GET, "/profile", Some(&revoked)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    // The public route needs nothing.
    let (status, _, _) = stack.call(Method::GET, "/public", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_signed_before_and_after_a_key_rotation_are_both_accepted() {
    let clock = MockClock::at_system_time();
    let stack = start_with(Some(clock.clone())).await;
    let before = stack.token("reader", "reader-secret", None).await;
    let (status, _, _) = stack.call(Method::GET, "/profile", Some(&before)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the API has now cached the one-key set"
    );

    // `token-service keys rotate`: the new key is published now and signs after the announce
    // period (10 min by default, longer than the JWKS max-age of 5 min).
    let now = stack.state.now();
    let announce = stack.state.config().signing.announce_period.as_secs();
    let key = rotation::add_key(
        &**stack.state.store(),
        &stack.state.config().encryption,
        KeyAlgorithm::Rs256,
        Some(&header_kid(&before)),
        now,
        now + announce,
    )
    .await
    .unwrap()
    .expect("the only rotation of this key");
    stack.state.reload_keys().await.unwrap();
    let during = stack.token("reader", "reader-secret", None).await;
    assert_eq!(
        header_kid(&during),
        header_kid(&before),
        "announced keys do not sign"
    );

    clock.advance(std::time::Duration::from_secs(announce));
    let after = stack.token("reader", "reader-secret", None).await;
    assert_eq!(header_kid(&after), key.kid);
    // The API's key set has expired (max-age 5 min) and is refetched: it holds both keys, so
    // tokens signed before and after the rotation are accepted.
    for token in [&after, &during, &before] {
        let (status, challenge, _) = stack.call(Method::GET, "/profile", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{challenge}");
    }
}

fn header_kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The value of `name="…"` in a `WWW-Authenticate` challenge.
fn challenge_parameter(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let length = challenge[start..].find('"')?;
    Some(challenge[start..start + length].to_owned())
}

#[tokio::test]
async fn a_client_that_knows_only_the_apis_url_finds_the_token_it_needs() {
    // The API listens first: its URL is its resource identifier and the tokens' audience.
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", api_listener.local_addr().unwrap());
    let issuer = common::serve_token_service(|issuer| {
        format!(
            r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[[clients]]
id = "newcomer"
secret = "newcomer-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read", "akamai:social_profile:write"]
default_scopes = []
token_format = "jwt"
audience = ["{api}"]

[[apis]]
id = "{api}"
secret = "api-secret"
scopes = ["akamai:social_profile"]
"#
        )
    })
    .await;
    let api_config = ApiConfig::from_lookup(|name| match name {
        "ISSUER" => Some(issuer.clone()),
        "AUDIENCE" | "RESOURCE" => Some(api.clone()),
        _ => None,
    })
    .unwrap();
    let validator = api_config.validator().unwrap();
    let metadata = api_config.metadata(&validator).unwrap().unwrap();
    let router = example_protected_api::app_described(&validator, &metadata).unwrap();
    tokio::spawn(async move { axum::serve(api_listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    // 1. The API's 401 names the scope this call needs and where its metadata is.
    let refused = http.get(format!("{api}/profile")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let scope = challenge_parameter(&challenge, "scope").expect(&challenge);
    assert_eq!(scope, "akamai:social_profile:read");
    let metadata_url = challenge_parameter(&challenge, "resource_metadata").expect(&challenge);

    // 2. The metadata names this very resource (RFC 9728 §3.3) and its authorization server.
    let document: Value = http
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["resource"], api.as_str());
    assert!(
        document["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(scope))
    );
    let authorization_server = document["authorization_servers"][0].as_str().unwrap();

    // 3. The authorization server's metadata (RFC 8414) gives the token endpoint.
    let server: Value = http
        .get(format!(
            "{authorization_server}/.well-known/oauth-authorization-server"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(server["issuer"], authorization_server);
    let token_endpoint = server["token_endpoint"].as_str().unwrap();

    // 4. A token for that scope and this resource (RFC 8707), then 5. the call succeeds.
    let answer: Value = http
        .post(token_endpoint)
        .basic_auth("newcomer", Some("newcomer-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope={}&resource={}",
            scope.replace(':', "%3A"),
            api.replace(':', "%3A").replace('/', "%2F")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["scope"], scope.as_str(), "{answer}");
    let token = answer["access_token"].as_str().unwrap();
    let served = http
        .get(format!("{api}/profile"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    // The same token is not enough to write: the 403 names what is missing and where to read.
    let write = http
        .put(format!("{api}/profile"))
        .bearer_auth(token)
        .json(&json!({ "nickname": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    let challenge = write.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge_parameter(challenge, "scope").as_deref(),
        Some("akamai:social_profile:write")
    );
    assert_eq!(
        challenge_parameter(challenge, "resource_metadata"),
        Some(metadata_url)
    );
}
