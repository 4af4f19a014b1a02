//! The shipped demo configuration's claim sources (issue 21, item 2) against the demo sources
//! of `examples/claim-sources` — a profile store asked with a bearer token, a directory asked by
//! POST with Basic credentials — over loopback: jane's id_token carries her company and tier
//! from the one and her groups from the other, and her JWT access token the profile claims its
//! scope marks for access tokens.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::signing_in::{self, encode};
use serde_json::{Value, json};

const DEMO: &str = include_str!("../../token-service/demo.toml");
const REDIRECT: &str = "http://127.0.0.1:3001/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// The demo sources on a free port; their base URL.
async fn demo_sources() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = example_claim_sources::app(
        example_claim_sources::Data::demo(),
        example_claim_sources::Credentials::default(),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The demo configuration, served at `issuer` from memory, its sources at `sources`.
fn demo_config(issuer: &str, sources: &str) -> String {
    let config = DEMO
        .replace(
            "issuer = \"http://127.0.0.1:8080\"",
            &format!("issuer = \"{issuer}\""),
        )
        .replace(
            "storage = \"sqlite://data/token-service.db\"",
            "storage = \"sqlite::memory:\"",
        )
        .replace("http://127.0.0.1:3003", sources);
    for changed in [issuer, "sqlite::memory:", sources] {
        assert!(config.contains(changed), "the demo configuration changed");
    }
    config
}

fn payload(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// Jane's tokens from the demo's web app for `scope`.
async fn janes_tokens(issuer: &str, scope: &str) -> Value {
    let query = format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope={}&state=st&nonce=n&code_challenge={}&code_challenge_method=S256",
        encode(REDIRECT),
        encode(scope),
        signing_in::s256(VERIFIER)
    );
    let (_, code) = signing_in::sign_in(issuer, &query, "jane", "jane-password").await;
    signing_in::http()
        .post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id=web-app&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            encode(&code),
            encode(REDIRECT)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn janes_claims_come_from_the_profile_store_and_the_directory() {
    let sources = demo_sources().await;
    let issuer = common::serve_token_service(|issuer| demo_config(issuer, &sources)).await;
    let tokens = janes_tokens(&issuer, "openid crm:profile:read directory:groups:read").await;
    let id_token = payload(
        tokens["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{tokens}")),
    );
    assert_eq!(id_token["company"], "Bizcorp", "{id_token}");
    assert_eq!(id_token["tier"], "gold");
    assert_eq!(id_token["groups"], json!(["staff", "beta-testers"]));
    let access = payload(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["company"], "Bizcorp", "marked for access tokens");
    assert!(access.get("groups").is_none(), "not marked: {access}");
}

#[tokio::test]
async fn a_source_that_refuses_the_services_credentials_releases_nothing() {
    let sources = demo_sources().await;
    let issuer = common::serve_token_service(|issuer| {
        demo_config(issuer, &sources).replace(
            "bearer_token = \"demo-profile-store-token\"",
            "bearer_token = \"not-the-token\"",
        )
    })
    .await;
    let tokens = janes_tokens(&issuer, "openid crm:profile:read directory:groups:read").await;
    let id_token = payload(
        tokens["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{tokens}")),
    );
    // The demo's sources are `omit`: the profile store's claims are left out, the
    // directory's still come.
    assert!(id_token.get("company").is_none(), "{id_token}");
    assert_eq!(id_token["groups"], json!(["staff", "beta-testers"]));
}
