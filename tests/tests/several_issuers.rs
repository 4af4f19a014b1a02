//! One route behind one layer accepting the tokens of three independent issuers — the bundled
//! token service and two fake IdPs — while a token signed by one that claims another's name,
//! and a stranger's, are refused (issue 17, item 1).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

mod common;

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use scopegate_validator::{Algorithm, MockClock, Validator};
use serde_json::json;
use support::{AUDIENCE, FakeIdp, SigningKey};
use tower_scopegate::{Authenticated, ScopeLayer};

async fn token_service() -> String {
    common::serve_token_service(|issuer| {
        format!(
            r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[[clients]]
id = "reader"
secret = "reader-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["{AUDIENCE}"]

[[apis]]
id = "{AUDIENCE}"
secret = "api-secret"
scopes = ["akamai:social_profile"]
"#
        )
    })
    .await
}

async fn call(api: &str, token: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .get(format!("{api}/profile"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn one_route_accepts_the_tokens_of_each_trusted_issuer_and_no_other() {
    let service = token_service().await;
    let partner_key = SigningKey::rs256("partner");
    let partner = FakeIdp::start(&[&partner_key]).await;
    let other_key = SigningKey::eddsa("other");
    let other = FakeIdp::start(&[&other_key]).await;
    let clock = MockClock::at_system_time();

    let ours = Validator::builder()
        .issuer(&service)
        .audience(AUDIENCE)
        .algorithms([Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA])
        .build()
        .unwrap();
    let validator =
        Validator::for_issuers([ours, partner.validator(&clock), other.validator(&clock)]).unwrap();
    let app = Router::new().route(
        "/profile",
        get(|who: Authenticated| async move {
            format!("{} from {}", who.subject().unwrap_or("?"), who.issuer())
        })
        .route_layer(ScopeLayer::all_of(&validator, ["akamai:social_profile:read"]).unwrap()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The token service's own token.
    let answer =
        common::client_credentials(&format!("{service}/token"), ("reader", "reader-secret"), "")
            .await;
    let ours = answer["access_token"].as_str().unwrap();
    assert_eq!(
        call(&api, ours).await,
        (StatusCode::OK, format!("reader from {service}"))
    );

    // The partner's.
    let theirs = partner_key.sign(&partner.claims(&clock));
    assert_eq!(
        call(&api, &theirs).await,
        (StatusCode::OK, format!("user-1 from {}", partner.issuer))
    );

    // The other's.
    let others = other_key.sign(&other.claims(&clock));
    assert_eq!(
        call(&api, &others).await,
        (StatusCode::OK, format!("user-1 from {}", other.issuer))
    );

    // The other's key, the partner's name: verified with the partner's keys, refused.
    let mut claims = other.claims(&clock);
    claims["iss"] = json!(partner.issuer);
    assert_eq!(
        call(&api, &other_key.sign(&claims)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The partner's key, our name: verified with our keys, refused.
    let mut claims = partner.claims(&clock);
    claims["iss"] = json!(service);
    let forged = partner_key.sign(&claims);
    assert_eq!(call(&api, &forged).await.0, StatusCode::UNAUTHORIZED);

    // A stranger: refused, and nobody was asked.
    let hits = partner.jwks_hits();
    let mut claims = partner.claims(&clock);
    claims["iss"] = json!("https://stranger.example.com");
    let stranger = partner_key.sign(&claims);
    assert_eq!(call(&api, &stranger).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(partner.jwks_hits(), hits);
}
