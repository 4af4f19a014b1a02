//! A custom scope marked `access_token = true` (issue 21, item 3): an API reads its claim from
//! the user's access token — verified locally from a JWT, or through introspection of an opaque
//! token — as the example API's validator would, over real HTTP on loopback.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::signing_in::{self, encode};
use scopegate_validator::{Algorithm, Validator};
use serde_json::Value;

const API_ID: &str = "https://api.example.test";
const API_SECRET: &str = "api-secret-for-claims";
const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn config(issuer: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[signing]
algorithm = "ES256"

[[scopes]]
name = "ad:user_custom:read"
claims = {{ company_name = "companyName" }}
access_token = true

[[clients]]
id = "web-jwt"
public = true
grants = ["authorization_code"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "ad:user_custom:read", "akamai:social_profile:read"]
token_format = "jwt"

[[clients]]
id = "web-opaque"
public = true
grants = ["authorization_code"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "ad:user_custom:read", "akamai:social_profile:read"]
token_format = "opaque"

[[apis]]
id = "{API_ID}"
secret = "{API_SECRET}"
scopes = ["akamai:social_profile"]

[[users]]
username = "jane"
password = "jane-password-1"
attributes = {{ given_name = "Jane", companyName = "Bizcorp" }}
"#
    )
}

/// Jane's access token from `client` (authorization code with PKCE, over HTTP).
async fn access_token(issuer: &str, client: &str) -> String {
    let challenge = signing_in::s256(VERIFIER);
    let query = format!(
        "response_type=code&client_id={client}&redirect_uri={}&scope=openid%20ad%3Auser_custom%3Aread%20akamai%3Asocial_profile%3Aread&state=st&code_challenge={challenge}&code_challenge_method=S256",
        encode(REDIRECT)
    );
    let (_, code) = signing_in::sign_in(issuer, &query, "jane", "jane-password-1").await;
    let answer: Value = signing_in::http()
        .post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id={client}&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            encode(&code),
            encode(REDIRECT)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {answer}"))
        .to_owned()
}

#[tokio::test]
async fn an_api_reads_the_custom_claim_from_a_jwt_and_from_introspection() {
    let issuer = common::serve_token_service(config).await;
    let validator = Validator::builder()
        .issuer(&issuer)
        .audience(API_ID)
        .algorithms(Algorithm::ALL)
        .introspection(API_ID, API_SECRET)
        .build()
        .unwrap();

    let jwt = access_token(&issuer, "web-jwt").await;
    assert_eq!(jwt.split('.').count(), 3);
    let principal = validator.validate(&jwt).await.unwrap();
    assert_eq!(principal.subject(), Some("jane"));
    assert_eq!(
        principal.claim("company_name"),
        Some(Value::from("Bizcorp"))
    );

    let opaque = access_token(&issuer, "web-opaque").await;
    assert_eq!(opaque.split('.').count(), 1);
    let principal = validator.validate(&opaque).await.unwrap();
    assert_eq!(principal.subject(), Some("jane"));
    assert_eq!(
        principal.claim("company_name"),
        Some(Value::from("Bizcorp"))
    );
}
