//! Apps obtaining tokens (issue 21, item 6): `scopegate-client` in front of an HTTP client,
//! against the real token service and the example protected API, each a process of its own on
//! loopback. Token requests are counted by the token service itself
//! (`scopegate_tokens_issued_total` on its metrics listener), the API's answers by the API's
//! (`scopegate_auth_requests_total`). The example gRPC API runs in this process, behind a
//! tonic channel with the layer.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser as _;
use common::node::{Node, free_port};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use reqwest::StatusCode;
use scopegate_client::{
    AssertionAlgorithm, AssertionKey, BearerClient, BearerLayer, ClientAuthMethod, Error,
    TokenSource,
};
use serde_json::Value;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tower::{ServiceBuilder, ServiceExt};

const API_ID: &str = "https://api.example.test";
const API_SECRET: &str = "api-secret-for-m2m";
/// A JWT client; its secret needs RFC 6749 §2.3.1's form-encoding to survive Basic.
const JWT_CLIENT: (&str, &str) = ("svc", "svc:secret %+1");
/// An opaque-token client: the API introspects its tokens.
const OPAQUE_CLIENT: (&str, &str) = ("svc-opaque", "svc-opaque-secret");
/// An opaque-token client whose tokens live six seconds (kept three: half their lifetime).
const SHORT_CLIENT: (&str, &str) = ("svc-short", "svc-short-secret");
/// A client registered with a public key: it authenticates with `private_key_jwt`.
const KEYED_CLIENT: &str = "svc-keyed";
/// A client allowed one token request an hour.
const METERED_CLIENT: (&str, &str) = ("svc-metered", "svc-metered-secret");
/// A client of the example gRPC API.
const ORDERS_CLIENT: (&str, &str) = ("clerk", "clerk-secret");
const ORDERS_ID: &str = "https://orders.example.test";
/// How long a condition on another process is waited for before the test fails.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

fn token_service_config(port: u16, metrics_port: u16, storage: &str) -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
storage = "{storage}"

[signing]
algorithm = "ES256"

[telemetry]
metrics_listen = "127.0.0.1:{metrics_port}"

[[clients]]
id = "{jwt}"
secret = "{jwt_secret}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read", "akamai:social_profile:write"]
token_format = "jwt"
audience = ["{API_ID}"]

[[clients]]
id = "{opaque}"
secret = "{opaque_secret}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "opaque"
audience = ["{API_ID}"]

[[clients]]
id = "{short}"
secret = "{short_secret}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "opaque"
access_token_ttl = "6s"
audience = ["{API_ID}"]

[[clients]]
id = "{KEYED_CLIENT}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
audience = ["{API_ID}"]
jwks = {{ keys = [{{ kty = "EC", crv = "P-256", kid = "k1", x = "{keyed_x}", y = "{keyed_y}" }}] }}

[[clients]]
id = "{metered}"
secret = "{metered_secret}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
rate_limit = "1/h"
audience = ["{API_ID}"]

[[clients]]
id = "{clerk}"
secret = "{clerk_secret}"
grants = ["client_credentials"]
scopes = ["shop:orders:read"]
token_format = "jwt"
audience = ["{ORDERS_ID}"]

[[apis]]
id = "{API_ID}"
secret = "{API_SECRET}"
scopes = ["akamai:social_profile"]

[[apis]]
id = "{ORDERS_ID}"
secret = "orders-secret"
scopes = ["shop:orders"]
"#,
        clerk = ORDERS_CLIENT.0,
        clerk_secret = ORDERS_CLIENT.1,
        keyed_x = keyed_key().1,
        keyed_y = keyed_key().2,
        metered = METERED_CLIENT.0,
        metered_secret = METERED_CLIENT.1,
        jwt = JWT_CLIENT.0,
        jwt_secret = JWT_CLIENT.1,
        opaque = OPAQUE_CLIENT.0,
        opaque_secret = OPAQUE_CLIENT.1,
        short = SHORT_CLIENT.0,
        short_secret = SHORT_CLIENT.1,
    )
}

/// A fresh P-256 key: its PKCS#8 PEM, and its public point's x and y (base64url).
fn p256() -> (String, String, String) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pair.to_pkcs8v1().unwrap().as_ref())
    );
    let point = pair.public_key().as_ref();
    (
        pem,
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..]),
    )
}

/// The key of [`KEYED_CLIENT`], made once per test process.
fn keyed_key() -> &'static (String, String, String) {
    static KEY: std::sync::OnceLock<(String, String, String)> = std::sync::OnceLock::new();
    KEY.get_or_init(p256)
}

/// The token service and the example API, each a process, with their metrics listeners.
struct Stack {
    issuer: String,
    api: String,
    service_metrics: String,
    api_metrics: String,
    service: Node,
    _api: Node,
    dir: tempfile::TempDir,
}

impl Stack {
    /// The API accepts tokens for `api_audience`: [`API_ID`] (registered, so it introspects
    /// and follows revocation events), or another, so that it refuses every token.
    async fn start(api_audience: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, service_metrics) = (free_port(), free_port());
        let issuer = format!("http://127.0.0.1:{port}");
        let config = dir.path().join("token-service.toml");
        let storage = format!("sqlite://{}/store.db", dir.path().display());
        std::fs::write(
            &config,
            token_service_config(port, service_metrics, &storage),
        )
        .unwrap();
        let service = Node::start(
            &["token-service", config.to_str().unwrap()],
            &[],
            dir.path().join("token-service.log"),
            issuer.clone(),
        )
        .await;
        let (api_port, api_metrics) = (free_port(), free_port());
        let api = format!("http://127.0.0.1:{api_port}");
        let listen = format!("127.0.0.1:{api_port}");
        let metrics_listen = format!("127.0.0.1:{api_metrics}");
        let mut environment = vec![
            ("ISSUER", issuer.as_str()),
            ("AUDIENCE", api_audience),
            ("LISTEN", listen.as_str()),
            ("METRICS_LISTEN", metrics_listen.as_str()),
        ];
        if api_audience == API_ID {
            environment.extend([
                ("INTROSPECTION_CLIENT_ID", API_ID),
                ("INTROSPECTION_CLIENT_SECRET", API_SECRET),
                ("REVOCATION_EVENTS_CLIENT_ID", API_ID),
                ("REVOCATION_EVENTS_CLIENT_SECRET", API_SECRET),
            ]);
        }
        let api_node = Node::start(
            &["protected-api"],
            &environment,
            dir.path().join("protected-api.log"),
            api.clone(),
        )
        .await;
        Self {
            issuer,
            api,
            service_metrics: format!("http://127.0.0.1:{service_metrics}"),
            api_metrics: format!("http://127.0.0.1:{api_metrics}"),
            service,
            _api: api_node,
            dir,
        }
    }

    fn tokens(&self, client: (&str, &str)) -> TokenSource {
        TokenSource::builder()
            .issuer(&self.issuer)
            .client_id(client.0)
            .client_secret(client.1)
            .build()
            .unwrap()
    }

    /// Access tokens the token service issued to `client`, by its own count.
    async fn tokens_issued(&self, client: &str) -> u64 {
        counter(
            &self.service_metrics,
            "scopegate_tokens_issued_total",
            ("client_id", client),
        )
        .await
    }

    /// The API's answers with this `outcome` (`accepted`, `invalid_token`, …), by its count.
    async fn api_outcomes(&self, outcome: &str) -> u64 {
        counter(
            &self.api_metrics,
            "scopegate_auth_requests_total",
            ("outcome", outcome),
        )
        .await
    }

    /// Calls `GET /me` with `token` directly, not through the client.
    async fn status_of(&self, token: &str) -> StatusCode {
        reqwest::Client::new()
            .get(format!("{}/me", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Waits (bounded) until the API refuses `token`.
    async fn until_refused(&self, token: &str) {
        let deadline = Instant::now() + GIVE_UP_AFTER;
        while self.status_of(token).await != StatusCode::UNAUTHORIZED {
            assert!(
                Instant::now() < deadline,
                "the API still accepts the token after {GIVE_UP_AFTER:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The sum of a Prometheus counter's series that carry `label`, scraped from `metrics`.
async fn counter(metrics: &str, name: &str, label: (&str, &str)) -> u64 {
    let text = reqwest::get(format!("{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let wanted = format!("{}=\"{}\"", label.0, label.1);
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            let labels = line.split_once('{').unwrap().1.rsplit_once('}').unwrap().0;
            labels.split(',').any(|pair| pair == wanted)
        })
        .map(|line| {
            let value = line.rsplit_once(' ').unwrap().1;
            value.parse::<f64>().unwrap() as u64
        })
        .sum()
}

/// `count` calls of `GET {api}/me` through `client`, started together; each call's status
/// and body.
async fn burst(client: &BearerClient, api: &str, count: usize) -> Vec<(StatusCode, Value)> {
    let start = Arc::new(Barrier::new(count));
    let mut calls = JoinSet::new();
    for _ in 0..count {
        let (client, url, start) = (client.clone(), format!("{api}/me"), Arc::clone(&start));
        calls.spawn(async move {
            start.wait().await;
            let response = client.send(client.get(url)).await.unwrap();
            let status = response.status();
            let body = response.json().await.unwrap_or(Value::Null);
            (status, body)
        });
    }
    calls.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_100_concurrent_calls_costs_one_token_request() {
    let stack = Stack::start(API_ID).await;
    let tokens = TokenSource::builder()
        .issuer(&stack.issuer)
        .client_id(JWT_CLIENT.0)
        .client_secret(JWT_CLIENT.1)
        .scope("akamai:social_profile:read")
        .resource(API_ID)
        .build()
        .unwrap();
    let client = BearerClient::new(reqwest::Client::new(), tokens.clone());

    let answers = burst(&client, &stack.api, 100).await;

    assert_eq!(answers.len(), 100);
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["client_id"], JWT_CLIENT.0);
        assert_eq!(
            body["scopes"],
            serde_json::json!(["akamai:social_profile:read"])
        );
    }
    assert_eq!(stack.tokens_issued(JWT_CLIENT.0).await, 1);
    assert_eq!(stack.api_outcomes("accepted").await, 100);
    assert_eq!(stack.api_outcomes("invalid_token").await, 0);
    assert_eq!(
        tokens.token().await.unwrap().scope(),
        Some("akamai:social_profile:read")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_through_the_tower_layer_costs_one_token_request_too() {
    let stack = Stack::start(API_ID).await;
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(stack.tokens(OPAQUE_CLIENT)))
        .service(HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let start = Arc::new(Barrier::new(100));
    let mut calls = JoinSet::new();
    for _ in 0..100 {
        let (client, start) = (client.clone(), Arc::clone(&start));
        let request = http::Request::get(format!("{}/me", stack.api))
            .body(Full::new(Bytes::new()))
            .unwrap();
        calls.spawn(async move {
            start.wait().await;
            let response = client.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        });
    }
    for (status, body) in calls.join_all().await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["client_id"], OPAQUE_CLIENT.0);
    }
    assert_eq!(stack.tokens_issued(OPAQUE_CLIENT.0).await, 1);
    assert_eq!(stack.api_outcomes("accepted").await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_replaced_before_it_is_sent() {
    let stack = Stack::start(API_ID).await;
    let tokens = stack.tokens(SHORT_CLIENT);
    let client = BearerClient::new(reqwest::Client::new(), tokens.clone());
    let response = client
        .send(client.get(format!("{}/me", stack.api)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Six seconds from now the source's own view of the token (counted from when it was
    // asked for, before the call ended) has expired too.
    let expired_here = tokio::time::Instant::now() + Duration::from_secs(6);
    // Still fresh (for three seconds): the same token, no request.
    let first = tokens.token().await.unwrap();
    assert_eq!(first.expires_in(), Some(Duration::from_secs(6)));
    assert_eq!(stack.tokens_issued(SHORT_CLIENT.0).await, 1);

    stack.until_refused(first.secret()).await;
    tokio::time::sleep_until(expired_here).await;
    let refused_before = stack.api_outcomes("invalid_token").await;
    let response = client
        .send(client.get(format!("{}/me", stack.api)))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(tokens.token().await.unwrap(), first);
    assert_eq!(stack.tokens_issued(SHORT_CLIENT.0).await, 2);
    assert_eq!(
        stack.api_outcomes("invalid_token").await,
        refused_before,
        "the expired token was never sent"
    );
}

/// Revokes `token` at the token service as `client` (RFC 7009).
async fn revoke(stack: &Stack, client: (&str, &str), token: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/revoke", stack.issuer))
        .basic_auth(client.0, Some(client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_once_on_the_401() {
    let stack = Stack::start(API_ID).await;
    let tokens = stack.tokens(OPAQUE_CLIENT);
    let client = BearerClient::new(reqwest::Client::new(), tokens.clone());
    let me = format!("{}/me", stack.api);
    assert_eq!(
        client.send(client.get(&me)).await.unwrap().status(),
        StatusCode::OK
    );
    let revoked = tokens.token().await.unwrap();
    revoke(&stack, OPAQUE_CLIENT, revoked.secret()).await;
    stack.until_refused(revoked.secret()).await;
    let (refused_before, accepted_before) = (
        stack.api_outcomes("invalid_token").await,
        stack.api_outcomes("accepted").await,
    );

    let response = client.send(client.get(&me)).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(tokens.token().await.unwrap(), revoked);
    assert_eq!(stack.tokens_issued(OPAQUE_CLIENT.0).await, 2);
    assert_eq!(
        stack.api_outcomes("invalid_token").await,
        refused_before + 1
    );
    assert_eq!(stack.api_outcomes("accepted").await, accepted_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_calls_refused_at_once_cost_one_new_token() {
    let stack = Stack::start(API_ID).await;
    // No cooldown: only the exact-token rule of `invalidate` keeps this to one new token.
    let tokens = TokenSource::builder()
        .issuer(&stack.issuer)
        .client_id(OPAQUE_CLIENT.0)
        .client_secret(OPAQUE_CLIENT.1)
        .invalidation_cooldown(Duration::ZERO)
        .build()
        .unwrap();
    let client = BearerClient::new(reqwest::Client::new(), tokens.clone());
    let revoked = tokens.token().await.unwrap();
    revoke(&stack, OPAQUE_CLIENT, revoked.secret()).await;
    stack.until_refused(revoked.secret()).await;
    let (refused_before, accepted_before) = (
        stack.api_outcomes("invalid_token").await,
        stack.api_outcomes("accepted").await,
    );

    let answers = burst(&client, &stack.api, 50).await;

    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    assert_eq!(stack.tokens_issued(OPAQUE_CLIENT.0).await, 2);
    assert_eq!(stack.api_outcomes("accepted").await, accepted_before + 50);
    // Each call sent the revoked token at most once (most did; one that started after the
    // new token came sent that only).
    let refused = stack.api_outcomes("invalid_token").await - refused_before;
    assert!((1..=50).contains(&refused), "{refused} refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_that_persists_reaches_the_caller_after_one_retry() {
    // The API is another audience's: it refuses every token as invalid.
    let stack = Stack::start("https://other-api.example.test").await;
    // A cooldown no slow machine outlasts between the two calls (the default is 10 s).
    let tokens = TokenSource::builder()
        .issuer(&stack.issuer)
        .client_id(JWT_CLIENT.0)
        .client_secret(JWT_CLIENT.1)
        .invalidation_cooldown(Duration::from_secs(3600))
        .build()
        .unwrap();
    let client = BearerClient::new(reqwest::Client::new(), tokens);
    let me = format!("{}/me", stack.api);

    let response = client.send(client.get(&me)).await.unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(stack.tokens_issued(JWT_CLIENT.0).await, 2);
    assert_eq!(stack.api_outcomes("invalid_token").await, 2);

    // Refused again at once: within the cooldown the token is kept, the 401 answered.
    let response = client.send(client.get(&me)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(stack.tokens_issued(JWT_CLIENT.0).await, 2);
    assert_eq!(stack.api_outcomes("invalid_token").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_for_want_of_scope_is_answered_without_a_new_token() {
    let stack = Stack::start(API_ID).await;
    let client = BearerClient::new(reqwest::Client::new(), stack.tokens(JWT_CLIENT));
    let response = client
        .send(client.request(http::Method::DELETE, format!("{}/profile", stack.api)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert_eq!(stack.tokens_issued(JWT_CLIENT.0).await, 1);
    assert_eq!(stack.api_outcomes("insufficient_scope").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_services_refusals_and_absence_are_typed_errors() {
    let mut stack = Stack::start(API_ID).await;
    let refusal = |client: (&'static str, &'static str), scope: &'static str| {
        TokenSource::builder()
            .issuer(&stack.issuer)
            .client_id(client.0)
            .client_secret(client.1)
            .scope(scope)
            .build()
            .unwrap()
    };
    let cases = [
        (
            (JWT_CLIENT.0, "wrong"),
            "akamai:social_profile:read",
            401,
            "invalid_client",
        ),
        (
            ("nobody", "x"),
            "akamai:social_profile:read",
            401,
            "invalid_client",
        ),
        (
            JWT_CLIENT,
            "akamai:social_profile:delete",
            400,
            "invalid_scope",
        ),
    ];
    for (client, scope, status, code) in cases {
        match refusal(client, scope).token().await.unwrap_err() {
            Error::OAuth {
                status: answered,
                code: error,
                description,
                ..
            } => {
                assert_eq!((answered, error.as_str()), (status, code));
                assert!(description.is_some());
            }
            other => panic!("{client:?} {scope}: {other:?}"),
        }
    }
    assert_eq!(stack.tokens_issued(JWT_CLIENT.0).await, 0);

    let endpoint = format!("{}/token", stack.issuer);
    stack.service.kill();
    let down = TokenSource::builder()
        .token_endpoint(&endpoint)
        .client_id(JWT_CLIENT.0)
        .client_secret(JWT_CLIENT.1)
        .build()
        .unwrap();
    let error = down.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Transport { url, .. } if *url == endpoint),
        "{error:?}"
    );
    let client = BearerClient::new(reqwest::Client::new(), down);
    let error = client
        .send(client.get(format!("{}/me", stack.api)))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_gets_a_token_the_api_accepts_and_a_wrong_secret_is_refused() {
    let stack = Stack::start(API_ID).await;
    let posting = |secret: &str| {
        TokenSource::builder()
            .issuer(&stack.issuer)
            .client_id(JWT_CLIENT.0)
            .client_secret(secret)
            .client_auth_method(ClientAuthMethod::SecretPost)
            .build()
            .unwrap()
    };
    let client = BearerClient::new(reqwest::Client::new(), posting(JWT_CLIENT.1));
    let response = client
        .send(client.get(format!("{}/me", stack.api)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(stack.tokens_issued(JWT_CLIENT.0).await, 1);
    let error = posting("wrong").token().await.unwrap_err();
    assert_eq!(error.oauth_code(), Some("invalid_client"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_gets_a_token_the_api_accepts_and_another_key_is_refused() {
    let stack = Stack::start(API_ID).await;
    let keyed = |pem: &str, issuer: bool| {
        let key = AssertionKey::from_pem(AssertionAlgorithm::ES256, pem.as_bytes())
            .unwrap()
            .with_kid("k1");
        let builder = TokenSource::builder()
            .client_id(KEYED_CLIENT)
            .private_key_jwt(key);
        // Found by discovery, the assertion is for the issuer; configured, for the endpoint.
        if issuer {
            builder.issuer(&stack.issuer)
        } else {
            builder.token_endpoint(format!("{}/token", stack.issuer))
        }
        .build()
        .unwrap()
    };
    for issuer in [true, false] {
        let client = BearerClient::new(reqwest::Client::new(), keyed(&keyed_key().0, issuer));
        let response = client
            .send(client.get(format!("{}/me", stack.api)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "issuer: {issuer}");
    }
    assert_eq!(stack.tokens_issued(KEYED_CLIENT).await, 2);

    let (other, _, _) = p256();
    let error = keyed(&other, true).token().await.unwrap_err();
    assert_eq!(error.oauth_code(), Some("invalid_client"), "{error:?}");
    assert_eq!(stack.tokens_issued(KEYED_CLIENT).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_held_off_as_long_as_retry_after_says() {
    let stack = Stack::start(API_ID).await;
    stack.tokens(METERED_CLIENT).token().await.unwrap();
    let slowed = || {
        counter(
            &stack.service_metrics,
            "scopegate_token_errors_total",
            ("error", "slow_down"),
        )
    };
    // Another process of the same client: over the rate, told to wait about an hour.
    let tokens = stack.tokens(METERED_CLIENT);
    let error = tokens.token().await.unwrap_err();
    assert_eq!(error.oauth_code(), Some("slow_down"), "{error:?}");
    let wait = error.retry_after().expect("a 429 with Retry-After");
    assert!(
        wait > Duration::from_secs(600) && wait <= Duration::from_secs(3600),
        "{wait:?}"
    );
    assert_eq!(slowed().await, 1);
    // Past the client's own one-second hold-off, it still waits as it was told (at most five
    // minutes): the calls get the refusal without asking again. (A slower machine only
    // lengthens the sleep, which stays far below the wait.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        let held = tokens.token().await.unwrap_err();
        assert_eq!(held.oauth_code(), Some("slow_down"));
    }
    assert_eq!(slowed().await, 1, "the token endpoint was asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_m2m_client_makes_its_calls_with_one_token() {
    let stack = Stack::start(API_ID).await;
    let secret_file = stack.dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{}\n", OPAQUE_CLIENT.1)).unwrap();
    let summary = run_example(&[
        "--issuer",
        &stack.issuer,
        "--client-id",
        OPAQUE_CLIENT.0,
        "--client-secret-file",
        secret_file.to_str().unwrap(),
        "--scope",
        "akamai:social_profile:read",
        "--api-url",
        &format!("{}/me", stack.api),
        "--calls",
        "20",
        "--concurrency",
        "5",
        "--interval",
        "0s",
    ])
    .await;
    assert_eq!(
        summary,
        example_m2m_client::Summary {
            succeeded: 20,
            refused: 0,
            failed: 0
        }
    );
    assert_eq!(stack.tokens_issued(OPAQUE_CLIENT.0).await, 1);
    assert_eq!(stack.api_outcomes("accepted").await, 20);

    // The same program with a private key instead of a secret.
    let key_file = stack.dir.path().join("svc-keyed.pem");
    std::fs::write(&key_file, &keyed_key().0).unwrap();
    let summary = run_example(&[
        "--issuer",
        &stack.issuer,
        "--client-id",
        KEYED_CLIENT,
        "--private-key-file",
        key_file.to_str().unwrap(),
        "--key-id",
        "k1",
        "--api-url",
        &format!("{}/me", stack.api),
        "--calls",
        "3",
        "--interval",
        "0s",
    ])
    .await;
    assert_eq!(summary.succeeded, 3, "{summary:?}");
    assert_eq!(stack.tokens_issued(KEYED_CLIENT).await, 1);
}

/// The example program's calls with these arguments, run to the end in this process (the
/// credentials it reads from files, never the environment).
async fn run_example(arguments: &[&str]) -> example_m2m_client::Summary {
    let config = example_m2m_client::Config::try_parse_from(
        std::iter::once("m2m-client").chain(arguments.iter().copied()),
    )
    .unwrap();
    let credentials = config.credentials(|_| None).unwrap();
    let tokens = config.token_source(credentials).unwrap();
    example_m2m_client::run(&config, tokens, std::future::pending())
        .await
        .unwrap()
}

/// The example gRPC API in this process, accepting tokens for `audience` from `issuer`.
async fn grpc_api(issuer: &str, audience: &str) -> tonic::transport::Channel {
    let validator = scopegate_validator::Validator::builder()
        .issuer(issuer)
        .audience(audience)
        .algorithms(scopegate_validator::Algorithm::ALL)
        .build()
        .unwrap();
    let app = example_grpc_api::app(&validator, true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    tonic::transport::Channel::from_shared(address)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `shop.Orders/Get` through the bearer layer (no retry: a tonic body cannot be replayed).
async fn get_order(
    channel: &tonic::transport::Channel,
    tokens: &TokenSource,
) -> Result<example_grpc_api::Order, tonic::Status> {
    let service = ServiceBuilder::new()
        .layer(BearerLayer::new(tokens.clone()).without_retry())
        .service(channel.clone());
    let mut client = tonic::client::Grpc::new(service);
    client.ready().await.unwrap();
    client
        .unary(
            tonic::Request::new(example_grpc_api::OrderRequest {
                id: "o-1".to_owned(),
            }),
            http::uri::PathAndQuery::from_static(example_grpc_api::GET),
            tonic_prost::ProstCodec::<example_grpc_api::OrderRequest, example_grpc_api::Order>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_channel_behind_the_layer_sends_the_token_and_drops_a_refused_one() {
    let stack = Stack::start(API_ID).await;
    let tokens = stack.tokens(ORDERS_CLIENT);
    let orders = grpc_api(&stack.issuer, ORDERS_ID).await;
    // Another API, which refuses these tokens: their audience is not its own.
    let elsewhere = grpc_api(&stack.issuer, "https://elsewhere.example.test").await;

    let order = get_order(&orders, &tokens).await.unwrap();
    assert_eq!(order.caller, ORDERS_CLIENT.0);
    let first = tokens.token().await.unwrap();

    let refused = get_order(&elsewhere, &tokens).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(stack.tokens_issued(ORDERS_CLIENT.0).await, 1, "not retried");

    // The refused token was dropped: the next call, to the first API, carries a new one.
    let order = get_order(&orders, &tokens).await.unwrap();
    assert_eq!(order.caller, ORDERS_CLIENT.0);
    assert_ne!(tokens.token().await.unwrap(), first);
    assert_eq!(stack.tokens_issued(ORDERS_CLIENT.0).await, 2);
}
