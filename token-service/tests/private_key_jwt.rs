//! `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): clients and APIs registered with
//! public keys — inline or at a `jwks_uri` served on loopback — authenticate at `/token`,
//! `/revoke` and `/introspect` with signed assertions, and every forged, foreign, stale or
//! replayed assertion is refused.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;
use serde_json::{Value, json};
use support::jose::{EcKey, assertion_claims, toml_inline};
use support::*;

const ISSUER: &str = "http://127.0.0.1:8080";
const TOKEN_URL: &str = "http://127.0.0.1:8080/token";
const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

/// The test configuration plus a client `signer` and an API `https://keyed-api.test`, each
/// registered with `key`'s public JWK Set (kid `k1`), and `extra`.
fn config_with(key: &EcKey, extra: &str) -> String {
    let jwks = toml_inline(&key.jwks("k1"));
    format!(
        r#"{}
[[clients]]
id = "signer"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read", "keyed:thing:read"]
token_format = "opaque"
jwks = {jwks}

[[apis]]
id = "https://keyed-api.test"
scopes = ["keyed:thing"]
jwks = {jwks}
{extra}"#,
        config_text(ISSUER, "ES256")
    )
}

/// A form post of `grant_type=client_credentials` with `assertion` (no other credential).
async fn token_with(service: &TestService, assertion: &str) -> Answer {
    service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}"
            ),
        )
        .await
}

fn assert_invalid_client(answer: &Answer, why: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{why}: {}",
        answer.text
    );
    assert_eq!(answer.error(), "invalid_client", "{why}");
}

#[tokio::test]
async fn a_client_with_keys_gets_a_token_with_an_assertion_and_revokes_with_another() {
    let key = EcKey::generate();
    let service = TestService::start_with(&config_with(&key, "")).await;
    let now = service.state.now();
    // aud = the token endpoint (OpenID Connect Core §9) ...
    let answer = token_with(
        &service,
        &key.assertion("k1", &assertion_claims("signer", TOKEN_URL, now)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let token = answer.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        service.introspect(API_CREDENTIALS, &token).await.json["active"],
        true
    );
    // ... or the issuer (RFC 7523 §3), at the revocation endpoint.
    let revoked = service
        .post(
            "/revoke",
            None,
            &format!(
                "token={token}&client_assertion_type={ASSERTION_TYPE}&client_assertion={}",
                key.assertion("k1", &assertion_claims("signer", ISSUER, now))
            ),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(
        service.introspect(API_CREDENTIALS, &token).await.json["active"],
        false
    );
}

#[tokio::test]
async fn an_api_with_keys_introspects_with_an_assertion() {
    let key = EcKey::generate();
    let service = TestService::start_with(&config_with(&key, "")).await;
    let now = service.state.now();
    let issued = token_with(
        &service,
        &key.assertion("k1", &assertion_claims("signer", TOKEN_URL, now)),
    )
    .await;
    let token = issued.json["access_token"].as_str().unwrap().to_owned();
    let assertion = key.assertion(
        "k1",
        &assertion_claims(
            "https://keyed-api.test",
            "http://127.0.0.1:8080/introspect",
            service.state.now(),
        ),
    );
    // The id comes from the assertion's `iss` when `client_id` is not sent.
    let answer = service
        .post(
            "/introspect",
            None,
            &format!(
                "token={token}&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}"
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    // It sees its own scope only.
    assert_eq!(answer.json["scope"], "keyed:thing:read");
    // A secret is no credential for it.
    let with_secret = service
        .introspect(("https://keyed-api.test", "anything"), &token)
        .await;
    assert_invalid_client(&with_secret, "API with keys presenting a secret");
}

#[tokio::test]
async fn forged_foreign_stale_and_replayed_assertions_are_refused() {
    let key = EcKey::generate();
    let service = TestService::start_with(&config_with(&key, "")).await;
    let now = service.state.now();
    let good = assertion_claims("signer", TOKEN_URL, now);
    let with = |name: &str, value: Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let attacker = EcKey::generate();
    let cases = [
        (
            "signed by a key not the client's",
            attacker.assertion("k1", &good),
        ),
        (
            "for another audience",
            key.assertion("k1", &with("aud", json!("https://other-as.example/token"))),
        ),
        (
            "sub is not the client",
            key.assertion("k1", &with("sub", json!("someone-else"))),
        ),
        (
            "iss is another client",
            key.assertion("k1", &with("iss", json!("svc-jwt"))),
        ),
        (
            "expired",
            key.assertion("k1", &with("exp", json!(now - 120))),
        ),
        (
            "valid for an hour",
            key.assertion("k1", &with("exp", json!(now + 3600))),
        ),
        ("no jti", key.assertion("k1", &without("jti"))),
        ("no exp", key.assertion("k1", &without("exp"))),
        ("unknown kid", key.assertion("k9", &good)),
        (
            "alg HS256",
            key.sign(&json!({ "alg": "HS256", "kid": "k1" }), &good),
        ),
        (
            "alg none",
            format!(
                "{}.",
                key.assertion("k1", &good).rsplit_once('.').unwrap().0
            ),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (why, assertion) in cases {
        assert_invalid_client(&token_with(&service, &assertion).await, why);
    }
    // A client registered with a secret cannot use an assertion, however well signed.
    let foreign = key.assertion("k1", &assertion_claims("svc-jwt", TOKEN_URL, now));
    assert_invalid_client(&token_with(&service, &foreign).await, "client without keys");
    // And one with keys cannot use a secret.
    let secret = service
        .post(
            "/token",
            Some(("signer", "guess")),
            "grant_type=client_credentials",
        )
        .await;
    assert_invalid_client(&secret, "client with keys presenting a secret");

    // Each assertion is good once.
    let once = key.assertion("k1", &good);
    assert_eq!(token_with(&service, &once).await.status, StatusCode::OK);
    assert_invalid_client(&token_with(&service, &once).await, "replayed assertion");
}

#[tokio::test]
async fn two_instances_on_one_store_accept_an_assertion_once() {
    let key = EcKey::generate();
    let config = config_with(&key, "");
    let first = TestService::start_with(&config).await;
    let second = TestService {
        state: TestService::open(&config, &first.url, &first.clock).await,
        clock: first.clock.clone(),
        dir: tempfile::tempdir().unwrap(),
        url: first.url.clone(),
    };
    let assertion = key.assertion(
        "k1",
        &assertion_claims("signer", TOKEN_URL, first.state.now()),
    );
    assert_eq!(token_with(&first, &assertion).await.status, StatusCode::OK);
    assert_invalid_client(
        &token_with(&second, &assertion).await,
        "replay at the other instance",
    );
}

#[tokio::test]
async fn one_method_per_request() {
    let key = EcKey::generate();
    let service = TestService::start_with(&config_with(&key, "")).await;
    let assertion = key.assertion(
        "k1",
        &assertion_claims("signer", TOKEN_URL, service.state.now()),
    );
    let both = service
        .post(
            "/token",
            Some(("signer", "s")),
            &format!("grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}"),
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST, "{}", both.text);
    assert_eq!(both.error(), "invalid_request");
    let half = service
        .post(
            "/token",
            None,
            &format!("grant_type=client_credentials&client_assertion={assertion}"),
        )
        .await;
    assert_eq!(half.error(), "invalid_request", "{}", half.text);
    let wrong_type = service
        .post(
            "/token",
            None,
            &format!("grant_type=client_credentials&client_assertion_type=urn%3Aexample%3Asaml&client_assertion={assertion}"),
        )
        .await;
    assert_invalid_client(&wrong_type, "unknown assertion type");
}

/// A JWK Set served on loopback, counting its fetches.
async fn serve_jwks(jwks: Value) -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetches);
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, fetches)
}

#[tokio::test]
async fn keys_at_a_jwks_uri_are_fetched_once_and_cached() {
    let key = EcKey::generate();
    let (url, fetches) = serve_jwks(key.jwks("remote-1")).await;
    let extra = format!(
        r#"
[[clients]]
id = "remote"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
jwks_uri = "{url}"
"#
    );
    let service = TestService::start_with(&config_with(&EcKey::generate(), &extra)).await;
    for _ in 0..3 {
        let claims = assertion_claims("remote", TOKEN_URL, service.state.now());
        let answer = token_with(&service, &key.assertion("remote-1", &claims)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "three assertions, one fetch"
    );
    // A key the set does not hold: refused, after at most one more fetch (the refetch
    // cooldown bounds what a stream of unknown kids costs).
    let stranger = EcKey::generate();
    for _ in 0..3 {
        let claims = assertion_claims("remote", TOKEN_URL, service.state.now());
        assert_invalid_client(
            &token_with(&service, &stranger.assertion("other", &claims)).await,
            "unknown kid",
        );
    }
    assert!(
        fetches.load(Ordering::SeqCst) <= 2,
        "{}",
        fetches.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn registering_keys_is_checked_wherever_a_client_comes_from() {
    let key = EcKey::generate();
    let mut private = key.jwks("k1");
    private["keys"][0]["d"] = json!("c2VjcmV0");
    for (extra, field) in [
        (
            format!(
                "[[clients]]\nid = \"bad\"\njwks = {}\n",
                toml_inline(&private)
            ),
            "clients[",
        ),
        (
            "[[clients]]\nid = \"bad\"\nsecret = \"s\"\njwks_uri = \"https://keys.test/jwks\"\n"
                .to_owned(),
            "clients[",
        ),
        (
            "[[clients]]\nid = \"bad\"\njwks_uri = \"http://keys.example/jwks\"\n".to_owned(),
            "clients[",
        ),
    ] {
        let config = format!("{}\n{extra}", config_text(ISSUER, "ES256"));
        let error = scopegate_token_service::config::Config::from_toml(&config).unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[tokio::test]
async fn discovery_advertises_private_key_jwt_and_its_algorithms() {
    let service = TestService::start().await;
    let metadata = service.get("/.well-known/openid-configuration").await.json;
    for endpoint in ["token", "introspection", "revocation"] {
        let methods = metadata[format!("{endpoint}_endpoint_auth_methods_supported")]
            .as_array()
            .unwrap();
        assert!(methods.contains(&json!("private_key_jwt")), "{endpoint}");
    }
    let algorithms = metadata["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algorithms.contains(&json!("ES256")) && !algorithms.contains(&json!("HS256")));
}

#[tokio::test]
async fn a_client_registered_with_keys_through_the_admin_api_gets_no_secret_and_signs_in_with_them()
{
    let key = EcKey::generate();
    let config = format!("{}{ADMIN_CLIENTS}", config_with(&EcKey::generate(), ""));
    let service = TestService::start_with(&config).await;
    let admin = service.access_token(ADMIN).await;
    let body = json!({
        "id": "registered-signer",
        "scopes": ["akamai:social_profile:read"],
        "jwks": key.jwks("k1"),
    });
    let created = service
        .call(
            http::Request::post("/admin/clients")
                .header(http::header::AUTHORIZATION, format!("Bearer {admin}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.json.get("secret").is_none(), "{}", created.text);
    assert_eq!(created.json["public"], false);
    let claims = assertion_claims("registered-signer", TOKEN_URL, service.state.now());
    let answer = token_with(&service, &key.assertion("k1", &claims)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // A registration with a private key is refused, naming the member.
    let mut private = key.jwks("k1");
    private["keys"][0]["d"] = json!("c2VjcmV0");
    let refused = service
        .call(
            http::Request::post("/admin/clients")
                .header(http::header::AUTHORIZATION, format!("Bearer {admin}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(
                    json!({ "id": "leaky", "scopes": ["akamai:social_profile:read"], "jwks": private })
                        .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(refused.text.contains("jwks.keys[0]"), "{}", refused.text);
}
