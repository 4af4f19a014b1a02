//! RFC 8693 token exchange, in-process: API A exchanges jane's token (addressed to A) for one
//! addressed to API B. What the new token says (`sub`, `act`, `aud`, narrowed scope, lifetime,
//! no refresh token), every rule of the other grants, the per-client policy, and revocation
//! reaching what was exchanged.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use scopegate_token_service::grant::authorization_code::s256;
use serde_json::{Value, json};
use support::*;

const API_A: &str = "https://api-a.example.test";
const API_B: &str = "https://api-b.example.test";
const API_C: &str = "https://api-c.example.test";
const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// API A's client: it may exchange tokens addressed to A for B's read scope (and the custom
/// claim scope), addressed to B.
const A: (&str, &str) = ("api-a", "api-a-secret");
const A_OPAQUE: (&str, &str) = ("api-a-opaque", "api-a-opaque-secret");
/// API B's client, for a second hop: tokens addressed to B, for C's scope.
const B: (&str, &str) = ("api-b", "api-b-secret");
/// May exchange, but only tokens addressed to C.
const STRANGER: (&str, &str) = ("stranger", "stranger-secret");
/// May not exchange at all.
const NOT_EXCHANGER: (&str, &str) = ("not-exchanger", "not-exchanger-secret");

fn config() -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:8080"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[signing]
algorithm = "ES256"

[defaults]
access_token_ttl = "60m"

[[scopes]]
name = "ad:user_custom:read"
claims = {{ company_name = "companyName" }}
access_token = true

[[clients]]
id = "web"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "ad:user_custom:read", "api-a:orders:read", "api-b:stock:read", "api-b:stock:write"]
audience = ["{API_A}"]
access_token_ttl = "15m"

[[clients]]
id = "web-opaque"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "api-a:orders:read", "api-b:stock:read"]
audience = ["{API_A}"]
token_format = "opaque"

[[clients]]
id = "{a}"
secret = "{a_secret}"
grants = ["token_exchange", "client_credentials"]
exchange_from = ["{API_A}"]
scopes = ["api-b:stock:read", "ad:user_custom:read"]
audience = ["{API_B}"]

[[clients]]
id = "{a_opaque}"
secret = "{a_opaque_secret}"
grants = ["token_exchange"]
exchange_from = ["{API_A}"]
scopes = ["api-b:stock:read"]
audience = ["{API_B}"]
token_format = "opaque"

[[clients]]
id = "{b}"
secret = "{b_secret}"
grants = ["token_exchange"]
exchange_from = ["{API_B}"]
scopes = ["api-c:report:read", "api-b:stock:read"]
audience = ["{API_C}"]

[[clients]]
id = "{stranger}"
secret = "{stranger_secret}"
grants = ["token_exchange"]
exchange_from = ["{API_C}"]
scopes = ["api-b:stock:read"]
audience = ["{API_B}"]

[[clients]]
id = "{not_exchanger}"
secret = "{not_exchanger_secret}"
grants = ["client_credentials"]
scopes = ["api-b:stock:read"]
audience = ["{API_B}"]

[[apis]]
id = "{API_A}"
secret = "api-a-introspection"
scopes = ["api-a:orders"]

[[apis]]
id = "{API_B}"
secret = "api-b-introspection"
scopes = ["api-b:stock"]

[[apis]]
id = "{API_C}"
secret = "api-c-introspection"
scopes = ["api-c:report"]

[[users]]
username = "jane"
password = "jane-password-1"
attributes = {{ given_name = "Jane", companyName = "Bizcorp" }}
"#,
        a = A.0,
        a_secret = A.1,
        a_opaque = A_OPAQUE.0,
        a_opaque_secret = A_OPAQUE.1,
        b = B.0,
        b_secret = B.1,
        stranger = STRANGER.0,
        stranger_secret = STRANGER.1,
        not_exchanger = NOT_EXCHANGER.0,
        not_exchanger_secret = NOT_EXCHANGER.1,
    )
}

const USER_SCOPE: &str =
    "openid ad:user_custom:read api-a:orders:read api-b:stock:read api-b:stock:write";

/// Jane's token answer from `client` (authorization code with PKCE) for `scope`.
async fn jane(service: &TestService, client: &str, scope: &str) -> Value {
    signed_in_jane(service, client, scope).await.0
}

/// [`jane`], and her session cookie.
async fn signed_in_jane(service: &TestService, client: &str, scope: &str) -> (Value, String) {
    let query = format!(
        "response_type=code&client_id={client}&redirect_uri={}&scope={}&state=st&code_challenge={}&code_challenge_method=S256",
        form_encode(REDIRECT),
        form_encode(scope),
        s256(VERIFIER)
    );
    let (code, session) = sign_in_jane(service, &query).await;
    let answer = service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id={client}&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                form_encode(REDIRECT)
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    (answer.json, session)
}

/// `client` exchanges `subject` (an access token) with `extra` parameters.
async fn exchange(
    service: &TestService,
    client: (&str, &str),
    subject: &str,
    extra: &str,
) -> Answer {
    service
        .post(
            "/token",
            Some(client),
            &format!(
                "grant_type={}&subject_token={}&subject_token_type={}{extra}",
                form_encode(GRANT),
                form_encode(subject),
                form_encode(ACCESS_TOKEN_TYPE)
            ),
        )
        .await
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn refused(answer: &Answer, status: StatusCode, error: &str) {
    assert_eq!(
        (answer.status, answer.error()),
        (status, error),
        "{}",
        answer.text
    );
}

async fn active_at(service: &TestService, api: (&str, &str), token: &str) -> bool {
    let answer = service.introspect(api, token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json["active"] == json!(true)
}

const B_INTROSPECTS: (&str, &str) = (API_B, "api-b-introspection");
const C_INTROSPECTS: (&str, &str) = (API_C, "api-c-introspection");

#[tokio::test]
async fn api_a_gets_a_token_for_api_b_that_names_jane_as_subject_and_a_as_actor() {
    let service = TestService::start_with(&config()).await;
    let user = jane(&service, "web", USER_SCOPE).await;
    let subject = user["access_token"].as_str().unwrap();
    let subject_claims = claims(subject);
    assert_eq!(
        subject_claims["aud"],
        json!([API_A, "http://127.0.0.1:8080"])
    );

    let answer = exchange(&service, A, subject, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(answer.json["token_type"], "Bearer");
    assert!(
        answer.json.get("refresh_token").is_none() && answer.json.get("id_token").is_none(),
        "{}",
        answer.text
    );
    // Narrowed to what both the subject token has and the client may get: not `write`, not
    // A's own scope, not `openid`.
    assert_eq!(answer.json["scope"], "ad:user_custom:read api-b:stock:read");
    assert_eq!(answer.header("cache-control"), "no-store");

    let exchanged = answer.json["access_token"].as_str().unwrap();
    let token = claims(exchanged);
    assert_eq!(
        token["sub"], subject_claims["sub"],
        "jane stays the subject"
    );
    assert_eq!(token["act"], json!({ "sub": A.0 }));
    assert_eq!(token["client_id"], A.0);
    assert_eq!(token["aud"], API_B, "the target audience only");
    assert_eq!(
        token["sid"], subject_claims["sid"],
        "the sign-in it belongs to"
    );
    assert_eq!(
        token["company_name"], "Bizcorp",
        "the scope's claims, as issued"
    );
    assert!(
        token["exp"].as_u64().unwrap() <= subject_claims["exp"].as_u64().unwrap(),
        "never outlives the subject token"
    );

    // B's introspection sees the user, the actor and its scope; A, not addressed, sees nothing.
    let seen = service.introspect(B_INTROSPECTS, exchanged).await;
    assert_eq!(seen.json["active"], true, "{}", seen.text);
    assert_eq!(seen.json["sub"], subject_claims["sub"]);
    assert_eq!(seen.json["act"], json!({ "sub": A.0 }));
    assert_eq!(seen.json["scope"], "api-b:stock:read");
    assert!(!active_at(&service, (API_A, "api-a-introspection"), exchanged).await);
}

#[tokio::test]
async fn opaque_tokens_are_exchanged_and_introspected_with_their_actor() {
    let service = TestService::start_with(&config()).await;
    let user = jane(
        &service,
        "web-opaque",
        "openid api-a:orders:read api-b:stock:read",
    )
    .await;
    let subject = user["access_token"].as_str().unwrap();
    assert_eq!(subject.matches('.').count(), 0, "an opaque subject token");

    let answer = exchange(&service, A_OPAQUE, subject, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let exchanged = answer.json["access_token"].as_str().unwrap();
    assert_eq!(
        exchanged.matches('.').count(),
        0,
        "the client's format: opaque"
    );
    let seen = service.introspect(B_INTROSPECTS, exchanged).await;
    assert_eq!(seen.json["active"], true, "{}", seen.text);
    assert_eq!(seen.json["act"], json!({ "sub": A_OPAQUE.0 }));
    assert_eq!(seen.json["aud"], json!([API_B]));
    assert_eq!(seen.json["client_id"], A_OPAQUE.0);
    // Its subject is jane's id, as the subject token's is.
    let subject_seen = service
        .introspect((API_A, "api-a-introspection"), subject)
        .await;
    assert_eq!(seen.json["sub"], subject_seen.json["sub"]);
}

#[tokio::test]
async fn the_scope_only_narrows_to_what_jane_was_granted_and_the_client_may_get() {
    let service = TestService::start_with(&config()).await;
    let narrow = jane(&service, "web", "openid api-a:orders:read").await;
    let subject = narrow["access_token"].as_str().unwrap();
    // Jane was not granted B's scope here: asking for it gets nothing.
    let answer = exchange(&service, A, subject, "&scope=api-b:stock:read").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_scope");
    // Asked for nothing, nothing of the subject token's scopes is the client's to get.
    let answer = exchange(&service, A, subject, "").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_scope");

    let wide = jane(&service, "web", USER_SCOPE).await;
    let subject = wide["access_token"].as_str().unwrap();
    // Jane has `write`; the client may not get it.
    let answer = exchange(&service, A, subject, "&scope=api-b:stock:write").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_scope");
    // A scope neither has.
    let answer = exchange(&service, A, subject, "&scope=api-c:report:read").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_scope");
    // `p:n` means the permissions of it that qualify.
    let answer = exchange(&service, A, subject, "&scope=api-b:stock").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["scope"], "api-b:stock:read");
}

#[tokio::test]
async fn the_audience_is_one_the_client_may_address() {
    let service = TestService::start_with(&config()).await;
    let user = jane(&service, "web", USER_SCOPE).await;
    let subject = user["access_token"].as_str().unwrap();
    for (extra, expected) in [
        (format!("&audience={}", form_encode(API_B)), StatusCode::OK),
        (format!("&resource={}", form_encode(API_B)), StatusCode::OK),
        (
            format!("&audience={}", form_encode(API_C)),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("&resource={}", form_encode(API_A)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "&audience=not-a-registered-api".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let answer = exchange(&service, A, subject, &extra).await;
        assert_eq!(answer.status, expected, "{extra}: {}", answer.text);
        if expected == StatusCode::OK {
            let exchanged = answer.json["access_token"].as_str().unwrap();
            assert_eq!(claims(exchanged)["aud"], API_B, "{extra}");
        } else {
            assert_eq!(answer.error(), "invalid_target", "{extra}");
        }
    }
}

#[tokio::test]
async fn only_clients_allowed_to_exchange_tokens_addressed_to_them_may_exchange() {
    let service = TestService::start_with(&config()).await;
    let user = jane(&service, "web", USER_SCOPE).await;
    let subject = user["access_token"].as_str().unwrap();

    let answer = exchange(&service, NOT_EXCHANGER, subject, "").await;
    refused(&answer, StatusCode::BAD_REQUEST, "unauthorized_client");
    // Allowed to exchange, but only tokens addressed to C: jane's is A's.
    let answer = exchange(&service, STRANGER, subject, "").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.text.contains("exchange from"), "{}", answer.text);
    // Unauthenticated, or with a wrong secret: no client.
    let answer = exchange(&service, (A.0, "wrong"), subject, "").await;
    refused(&answer, StatusCode::UNAUTHORIZED, "invalid_client");
    // A public client (the web app) cannot authenticate to exchange.
    let body = format!(
        "grant_type={}&client_id=web&subject_token={}&subject_token_type={}",
        form_encode(GRANT),
        form_encode(subject),
        form_encode(ACCESS_TOKEN_TYPE)
    );
    let answer = service.post("/token", None, &body).await;
    refused(&answer, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn only_an_active_users_access_token_of_this_service_is_exchanged() {
    let service = TestService::start_with(&config()).await;
    let user = jane(&service, "web", USER_SCOPE).await;
    let subject = user["access_token"].as_str().unwrap();
    let refresh = user["refresh_token"].as_str().unwrap();
    let id_token = user["id_token"].as_str().unwrap();

    // A client's own token speaks for no user.
    let own = service.access_token(A).await;
    let answer = exchange(&service, A, &own, "").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    // Not access tokens of this service.
    for bogus in [refresh, id_token, "garbage", "a.b.c"] {
        let answer = exchange(&service, A, bogus, "").await;
        refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    // Other token types, asked or offered.
    for extra in [
        "&requested_token_type=urn:ietf:params:oauth:token-type:refresh_token",
        "&actor_token=x",
        "&actor_token_type=urn:ietf:params:oauth:token-type:access_token",
    ] {
        let answer = exchange(&service, A, subject, extra).await;
        refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let body = format!(
        "grant_type={}&subject_token={}&subject_token_type=urn:ietf:params:oauth:token-type:id_token",
        form_encode(GRANT),
        form_encode(id_token),
    );
    let answer = service.post("/token", Some(A), &body).await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    let answer = service
        .post(
            "/token",
            Some(A),
            &format!("grant_type={}&subject_token_type=x", form_encode(GRANT)),
        )
        .await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.text.contains("subject_token"), "{}", answer.text);

    // Expired: 15 minutes is the web client's lifetime.
    service.advance(Duration::from_secs(15 * 60 + 1));
    let answer = exchange(&service, A, subject, "").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn the_exchanged_token_never_outlives_the_subject_token() {
    let service = TestService::start_with(&config()).await;
    let user = jane(&service, "web", USER_SCOPE).await;
    let subject = user["access_token"].as_str().unwrap();
    service.advance(Duration::from_secs(10 * 60));
    let answer = exchange(&service, A, subject, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // The client's tokens live 60 minutes; the subject token has 5 left.
    assert_eq!(answer.json["expires_in"], 5 * 60);
    let exchanged = answer.json["access_token"].as_str().unwrap();
    assert_eq!(claims(exchanged)["exp"], claims(subject)["exp"]);
}

#[tokio::test]
async fn an_actor_token_must_be_the_clients_own() {
    let service = TestService::start_with(&config()).await;
    let user = jane(&service, "web", USER_SCOPE).await;
    let subject = user["access_token"].as_str().unwrap();
    let with_actor = |actor: &str| {
        format!(
            "&actor_token={}&actor_token_type={}",
            form_encode(actor),
            form_encode(ACCESS_TOKEN_TYPE)
        )
    };
    let own = service.access_token(A).await;
    let answer = exchange(&service, A, subject, &with_actor(&own)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let exchanged = answer.json["access_token"].as_str().unwrap();
    assert_eq!(claims(exchanged)["act"], json!({ "sub": A.0 }));
    // Another client's token cannot name the actor; neither can a user's.
    let foreign = service.access_token(NOT_EXCHANGER).await;
    let answer = exchange(&service, A, subject, &with_actor(&foreign)).await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    let answer = exchange(&service, A, subject, &with_actor(subject)).await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    let answer = exchange(&service, A, subject, &with_actor("garbage")).await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn a_second_hop_nests_the_actors_and_revoking_the_first_token_ends_the_chain() {
    let service = TestService::start_with(&config()).await;
    let user = jane(&service, "web", USER_SCOPE).await;
    let first = user["access_token"].as_str().unwrap();
    let answer = exchange(&service, A, first, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let second = answer.json["access_token"].as_str().unwrap().to_owned();
    // B exchanges the token it was sent for one addressed to C. Jane's token never had C's
    // scope, so B may only pass on what it holds.
    let answer = exchange(&service, B, &second, "&scope=api-c:report:read").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_scope");
    let answer = exchange(&service, B, &second, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let third = answer.json["access_token"].as_str().unwrap().to_owned();
    let token = claims(&third);
    assert_eq!(token["act"], json!({ "sub": B.0, "act": { "sub": A.0 } }));
    assert_eq!(token["sub"], claims(first)["sub"]);
    assert_eq!(token["scope"], "api-b:stock:read");
    assert_eq!(token["aud"], API_C);
    assert!(active_at(&service, C_INTROSPECTS, &third).await);

    // The web app revokes jane's first token (RFC 7009): both exchanged tokens end.
    let answer = service
        .post(
            "/revoke",
            None,
            &format!("client_id=web&token={}", form_encode(first)),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(!active_at(&service, B_INTROSPECTS, &second).await);
    assert!(!active_at(&service, C_INTROSPECTS, &third).await);
    let answer = exchange(&service, B, &second, "").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn revoking_the_users_grant_revokes_what_was_exchanged_from_it() {
    let service = TestService::start_with(&config()).await;
    for client in ["web", "web-opaque"] {
        let scope = if client == "web" {
            USER_SCOPE
        } else {
            "openid api-a:orders:read api-b:stock:read"
        };
        let user = jane(&service, client, scope).await;
        let subject = user["access_token"].as_str().unwrap();
        let exchanger = if client == "web" { A } else { A_OPAQUE };
        let answer = exchange(&service, exchanger, subject, "").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let exchanged = answer.json["access_token"].as_str().unwrap();
        assert!(active_at(&service, B_INTROSPECTS, exchanged).await);
        // Revoking the refresh token revokes its grant (RFC 7009 §2.1).
        let refresh = user["refresh_token"].as_str().unwrap();
        let answer = service
            .post(
                "/revoke",
                None,
                &format!("client_id={client}&token={}", form_encode(refresh)),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            !active_at(&service, B_INTROSPECTS, exchanged).await,
            "{client}: the exchanged token was revoked with the grant"
        );
    }
}

#[tokio::test]
async fn signing_out_revokes_what_was_exchanged_in_the_session() {
    let service = TestService::start_with(&config()).await;
    let (user, session) = signed_in_jane(&service, "web", USER_SCOPE).await;
    let subject = user["access_token"].as_str().unwrap();
    let answer = exchange(&service, A, subject, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let exchanged = answer.json["access_token"].as_str().unwrap();
    assert!(active_at(&service, B_INTROSPECTS, exchanged).await);

    let id_token = user["id_token"].as_str().unwrap();
    let answer = get_with_cookies(
        &service,
        &format!("/logout?id_token_hint={id_token}"),
        &[session],
    )
    .await;
    assert!(
        answer.status.is_success(),
        "{}: {}",
        answer.status,
        answer.text
    );
    assert!(
        !active_at(&service, B_INTROSPECTS, exchanged).await,
        "the exchanged token ended with jane's session"
    );
}

/// `POST /token` with `body`, Basic credentials if given, and a `DPoP` proof.
async fn with_proof(
    service: &TestService,
    basic: Option<(&str, &str)>,
    body: &str,
    proof: &str,
) -> Answer {
    let mut request = http::Request::post("/token")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header("DPoP", proof);
    if let Some((id, secret)) = basic {
        request = request.header(http::header::AUTHORIZATION, basic_header(id, secret));
    }
    service
        .call(
            request
                .body(axum::body::Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
}

#[tokio::test]
async fn a_dpop_bound_subject_token_is_refused_and_a_proof_binds_the_exchanged_token() {
    let service = TestService::start_with(&config()).await;
    let now = || service.state.now();
    // Jane's token bound to the web app's key.
    let web_key = jose::EcKey::generate();
    let query = format!(
        "response_type=code&client_id=web&redirect_uri={}&scope={}&state=st&code_challenge={}&code_challenge_method=S256",
        form_encode(REDIRECT),
        form_encode(USER_SCOPE),
        s256(VERIFIER)
    );
    let (code, _) = sign_in_jane(&service, &query).await;
    let body = format!(
        "grant_type=authorization_code&client_id=web&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
        form_encode(REDIRECT)
    );
    let answer = with_proof(
        &service,
        None,
        &body,
        &web_key.proof(jose::TOKEN_URL, now()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["token_type"], "DPoP");
    let bound = answer.json["access_token"].as_str().unwrap();
    let answer = exchange(&service, A, bound, "").await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.text.contains("DPoP"), "{}", answer.text);

    // A bearer subject token, exchanged with A's own proof: the new token is bound to A's key.
    let subject = jane(&service, "web", USER_SCOPE).await;
    let subject = subject["access_token"].as_str().unwrap();
    let a_key = jose::EcKey::generate();
    let body = format!(
        "grant_type={}&subject_token={}&subject_token_type={}",
        form_encode(GRANT),
        form_encode(subject),
        form_encode(ACCESS_TOKEN_TYPE)
    );
    let answer = with_proof(
        &service,
        Some(A),
        &body,
        &a_key.proof(jose::TOKEN_URL, now()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["token_type"], "DPoP");
    let exchanged = answer.json["access_token"].as_str().unwrap();
    assert_eq!(claims(exchanged)["cnf"], json!({ "jkt": a_key.jkt() }));
}

#[tokio::test]
async fn discovery_announces_the_grant() {
    let service = TestService::start_with(&config()).await;
    let metadata = service.get("/.well-known/openid-configuration").await;
    let grants = metadata.json["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!(GRANT)), "{grants:?}");
}
