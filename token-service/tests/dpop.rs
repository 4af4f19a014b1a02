//! DPoP at the token endpoint (RFC 9449 §4–§6, §10), in-process: proofs for every grant, bound
//! tokens (`token_type` DPoP, `cnf.jkt` in JWTs and introspection), public clients' refresh
//! tokens bound to the key, the per-client requirement, and every refused proof.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use scopegate_token_service::grant::authorization_code::s256;
use serde_json::{Value, json};
use support::jose::{EcKey, TOKEN_URL, claims};
use support::*;

const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// `POST /token` with `body`, optional Basic credentials and these `DPoP` headers.
async fn token_request(
    service: &TestService,
    basic: Option<(&str, &str)>,
    body: &str,
    proofs: &[&str],
) -> Answer {
    let mut request =
        Request::post("/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        request = request.header(header::AUTHORIZATION, basic_header(id, secret));
    }
    for proof in proofs {
        request = request.header("DPoP", *proof);
    }
    service
        .call(request.body(Body::from(body.to_owned())).unwrap())
        .await
}

async fn client_credentials(service: &TestService, client: (&str, &str), proof: &str) -> Answer {
    token_request(
        service,
        Some(client),
        "grant_type=client_credentials",
        &[proof],
    )
    .await
}

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn assert_refused(answer: &Answer, error: &str, why: &str) {
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "{why}: {}",
        answer.text
    );
    assert_eq!(answer.error(), error, "{why}: {}", answer.text);
    assert!(answer.json.get("access_token").is_none(), "{why}");
}

#[tokio::test]
async fn a_proof_binds_a_jwt_access_token_to_the_key() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let answer = client_credentials(
        &service,
        JWT_CLIENT,
        &key.proof(TOKEN_URL, service.state.now()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["token_type"], "DPoP");
    let token = answer.json["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(token)["cnf"], json!({ "jkt": key.jkt() }));
    // Introspection tells the API the key to check the proof against (RFC 9449 §6.2).
    let introspected = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(introspected.json["active"], true, "{}", introspected.text);
    assert_eq!(introspected.json["token_type"], "DPoP");
    assert_eq!(introspected.json["cnf"], json!({ "jkt": key.jkt() }));

    // Without a proof the same client gets a plain bearer token.
    let bearer = service.token(JWT_CLIENT, "").await;
    assert_eq!(bearer["token_type"], "Bearer");
    let token = bearer["access_token"].as_str().unwrap();
    assert!(jwt_claims(token).get("cnf").is_none());
    let introspected = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(introspected.json["token_type"], "Bearer");
    assert!(introspected.json.get("cnf").is_none());
}

#[tokio::test]
async fn an_opaque_token_is_bound_in_the_store_and_shows_its_key_at_introspection() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let answer = client_credentials(
        &service,
        OPAQUE_CLIENT,
        &key.proof(TOKEN_URL, service.state.now()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["token_type"], "DPoP");
    let token = answer.json["access_token"].as_str().unwrap();
    let introspected = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(introspected.json["active"], true, "{}", introspected.text);
    assert_eq!(introspected.json["token_type"], "DPoP");
    assert_eq!(introspected.json["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn a_proof_is_good_for_one_token_request_only() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let proof = key.proof(TOKEN_URL, service.state.now());
    let first = client_credentials(&service, JWT_CLIENT, &proof).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let replay = client_credentials(&service, JWT_CLIENT, &proof).await;
    assert_refused(&replay, "invalid_dpop_proof", "replayed proof");
    assert!(
        replay.json["error_description"]
            .as_str()
            .unwrap()
            .contains("used already")
    );
    // Even by another client: the proof is spent, whoever brings it.
    let other = client_credentials(&service, OPAQUE_CLIENT, &proof).await;
    assert_refused(&other, "invalid_dpop_proof", "replayed by another client");
}

#[tokio::test]
async fn two_instances_on_one_store_spend_a_proof_once() {
    let first = TestService::start().await;
    let second_state = TestService::open(
        &config_text("http://127.0.0.1:8080", "ES256"),
        &first.url,
        &first.clock,
    )
    .await;
    let second = TestService {
        state: second_state,
        clock: first.clock.clone(),
        dir: tempfile::tempdir().unwrap(),
        url: first.url.clone(),
    };
    let key = EcKey::generate();
    let proof = key.proof(TOKEN_URL, first.state.now());
    let answer = client_credentials(&first, JWT_CLIENT, &proof).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let replay = client_credentials(&second, JWT_CLIENT, &proof).await;
    assert_refused(
        &replay,
        "invalid_dpop_proof",
        "replay at the other instance",
    );
}

#[tokio::test]
async fn proofs_that_break_a_rule_of_rfc_9449_are_refused_and_issue_nothing() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let now = service.state.now();
    let good = claims("POST", TOKEN_URL, now);
    let with = |name: &str, value: Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    let mut private_jwk = key.jwk.clone();
    private_jwk["d"] = json!("c2VjcmV0LXNjYWxhcg");
    let mut hmac_header = key.header();
    hmac_header["alg"] = json!("HS256");
    let mut jwt_typ = key.header();
    jwt_typ["typ"] = json!("JWT");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD
            .encode(json!({ "typ": "dpop+jwt", "alg": "none", "jwk": key.jwk }).to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let other_key = EcKey::generate();
    // The header names one key, the signature is another's.
    let signed_by_another = other_key.sign(&key.header(), &good);
    let cases: Vec<(&str, String)> = vec![
        (
            "another URL",
            key.sign(
                &key.header(),
                &with("htu", json!("http://127.0.0.1:8080/introspect")),
            ),
        ),
        (
            "another method",
            key.sign(&key.header(), &with("htm", json!("GET"))),
        ),
        (
            "iat far past",
            key.sign(&key.header(), &with("iat", json!(now - 3600))),
        ),
        (
            "iat far future",
            key.sign(&key.header(), &with("iat", json!(now + 3600))),
        ),
        (
            "jwk with private members",
            key.sign(
                &json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": private_jwk }),
                &good,
            ),
        ),
        ("alg HS256", key.sign(&hmac_header, &good)),
        ("alg none", unsigned),
        ("typ JWT", key.sign(&jwt_typ, &good)),
        ("signature by another key", signed_by_another),
        ("no jti", {
            let mut claims = good.clone();
            claims.as_object_mut().unwrap().remove("jti");
            key.sign(&key.header(), &claims)
        }),
        ("not a JWS", "not.a-proof".to_owned()),
    ];
    for (why, proof) in cases {
        let answer = client_credentials(&service, JWT_CLIENT, &proof).await;
        assert_refused(&answer, "invalid_dpop_proof", why);
    }
    // Two DPoP headers.
    let two = token_request(
        &service,
        Some(JWT_CLIENT),
        "grant_type=client_credentials",
        &[&key.proof(TOKEN_URL, now), &key.proof(TOKEN_URL, now)],
    )
    .await;
    assert_refused(&two, "invalid_dpop_proof", "two DPoP headers");
    // A proof within the window either way is fine.
    let slightly_early = key.sign(&key.header(), &with("iat", json!(now + 30)));
    let answer = client_credentials(&service, JWT_CLIENT, &slightly_early).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn a_client_that_must_bind_its_tokens_gets_none_without_a_proof() {
    let config = config_text("http://127.0.0.1:8080", "ES256").replace(
        "id = \"svc-opaque\"",
        "id = \"svc-opaque\"\ndpop_bound_access_tokens = true",
    );
    let service = TestService::start_with(&config).await;
    let answer = service
        .post(
            "/token",
            Some(OPAQUE_CLIENT),
            "grant_type=client_credentials",
        )
        .await;
    assert_refused(&answer, "invalid_dpop_proof", "required and missing");
    let key = EcKey::generate();
    let answer = client_credentials(
        &service,
        OPAQUE_CLIENT,
        &key.proof(TOKEN_URL, service.state.now()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["token_type"], "DPoP");
}

#[tokio::test]
async fn discovery_advertises_the_proof_algorithms() {
    let service = TestService::start().await;
    let metadata = service.get("/.well-known/openid-configuration").await;
    let algorithms = metadata.json["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    for name in ["ES256", "RS256", "PS256", "EdDSA"] {
        assert!(algorithms.contains(&json!(name)), "{name}: {algorithms:?}");
    }
    assert!(!algorithms.contains(&json!("HS256")) && !algorithms.contains(&json!("none")));
}

// ---- authorization code and refresh ------------------------------------------------------

fn query(extra: &str) -> String {
    format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope=openid%20profile&state=s&nonce=n&code_challenge={}&code_challenge_method=S256{extra}",
        form_encode(REDIRECT),
        s256(VERIFIER)
    )
}

async fn exchange(service: &TestService, code: &str, proofs: &[&str]) -> Answer {
    let body = format!(
        "grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
        form_encode(REDIRECT)
    );
    token_request(service, None, &body, proofs).await
}

async fn refresh(service: &TestService, refresh_token: &str, proofs: &[&str]) -> Answer {
    let body = format!(
        "grant_type=refresh_token&client_id=web-app&refresh_token={}",
        form_encode(refresh_token)
    );
    token_request(service, None, &body, proofs).await
}

#[tokio::test]
async fn a_public_clients_refresh_tokens_are_bound_to_its_key() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let tokens = exchange(
        &service,
        &code,
        &[&key.proof(TOKEN_URL, service.state.now())],
    )
    .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
    assert_eq!(tokens.json["token_type"], "DPoP");
    let access = tokens.json["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["cnf"]["jkt"], key.jkt());
    let refresh_token = tokens.json["refresh_token"].as_str().unwrap();

    // Without a proof, or with another key's, the refresh token is refused — and stays
    // usable by its owner (a thief's attempt does not burn it).
    let without = refresh(&service, refresh_token, &[]).await;
    assert_refused(
        &without,
        "invalid_grant",
        "bound refresh token without a proof",
    );
    let thief = EcKey::generate();
    let stolen = refresh(
        &service,
        refresh_token,
        &[&thief.proof(TOKEN_URL, service.state.now())],
    )
    .await;
    assert_refused(
        &stolen,
        "invalid_grant",
        "bound refresh token with another key",
    );

    let renewed = refresh(
        &service,
        refresh_token,
        &[&key.proof(TOKEN_URL, service.state.now())],
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    assert_eq!(renewed.json["token_type"], "DPoP");
    assert_eq!(
        jwt_claims(renewed.json["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    // The successor is bound to the same key.
    let successor = renewed.json["refresh_token"].as_str().unwrap();
    let stolen = refresh(
        &service,
        successor,
        &[&thief.proof(TOKEN_URL, service.state.now())],
    )
    .await;
    assert_refused(&stolen, "invalid_grant", "successor with another key");
    let again = refresh(
        &service,
        successor,
        &[&key.proof(TOKEN_URL, service.state.now())],
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
}

#[tokio::test]
async fn a_public_client_without_dpop_keeps_bearer_tokens() {
    let service = TestService::start().await;
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let tokens = exchange(&service, &code, &[]).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
    assert_eq!(tokens.json["token_type"], "Bearer");
    let renewed = refresh(
        &service,
        tokens.json["refresh_token"].as_str().unwrap(),
        &[],
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    assert_eq!(renewed.json["token_type"], "Bearer");
}

#[tokio::test]
async fn a_code_bound_with_dpop_jkt_is_redeemed_only_with_that_key() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let (code, _) = sign_in_jane(&service, &query(&format!("&dpop_jkt={}", key.jkt()))).await;
    let now = service.state.now();
    let without = exchange(&service, &code, &[]).await;
    assert_refused(&without, "invalid_grant", "dpop_jkt code without a proof");
    let other = exchange(&service, &code, &[&EcKey::generate().proof(TOKEN_URL, now)]).await;
    assert_refused(&other, "invalid_grant", "dpop_jkt code with another key");
    let answer = exchange(&service, &code, &[&key.proof(TOKEN_URL, now)]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["token_type"], "DPoP");
}

#[tokio::test]
async fn a_malformed_dpop_jkt_is_refused_at_the_authorization_request() {
    let service = TestService::start().await;
    let answer = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("&dpop_jkt=short")),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let (_, params) = location_params(&answer);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
}

#[tokio::test]
async fn a_stale_proof_is_refused_after_the_clock_moves_on() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let proof = key.proof(TOKEN_URL, service.state.now());
    service.advance(Duration::from_secs(61));
    let answer = client_credentials(&service, JWT_CLIENT, &proof).await;
    assert_refused(&answer, "invalid_dpop_proof", "proof older than the window");
}

// ---- server nonces (RFC 9449 §8) -----------------------------------------------------------

fn with_nonces() -> String {
    format!(
        "{}\n[dpop]\nnonces = true\n",
        config_text("http://127.0.0.1:8080", "ES256")
    )
}

#[tokio::test]
async fn with_nonces_on_a_proof_without_the_current_nonce_is_told_it_and_the_retry_passes() {
    let service = TestService::start_with(&with_nonces()).await;
    let key = EcKey::generate();
    let answer = client_credentials(
        &service,
        JWT_CLIENT,
        &key.proof(TOKEN_URL, service.state.now()),
    )
    .await;
    assert_refused(&answer, "use_dpop_nonce", "no nonce");
    let nonce = answer.header("dpop-nonce").to_owned();
    assert_ne!(nonce, "<absent>");

    let mut with_nonce = claims("POST", TOKEN_URL, service.state.now());
    with_nonce["nonce"] = json!(nonce);
    let retried =
        client_credentials(&service, JWT_CLIENT, &key.sign(&key.header(), &with_nonce)).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(retried.json["token_type"], "DPoP");
    // The nonce to use next comes with every token response.
    assert_eq!(retried.header("dpop-nonce"), nonce);

    // A made-up nonce is no better than none.
    with_nonce["nonce"] = json!("made-up");
    with_nonce["jti"] = json!("another-jti");
    let forged =
        client_credentials(&service, JWT_CLIENT, &key.sign(&key.header(), &with_nonce)).await;
    assert_refused(&forged, "use_dpop_nonce", "made-up nonce");

    // A nonce lives one to two rotation periods (5 minutes each): after 11 minutes it is old.
    service.advance(Duration::from_secs(660));
    let mut late = claims("POST", TOKEN_URL, service.state.now());
    late["nonce"] = json!(nonce);
    let answer = client_credentials(&service, JWT_CLIENT, &key.sign(&key.header(), &late)).await;
    assert_refused(&answer, "use_dpop_nonce", "old nonce");
    assert_ne!(answer.header("dpop-nonce"), nonce);
}

#[tokio::test]
async fn instances_on_one_store_accept_each_others_nonces() {
    let first = TestService::start_with(&with_nonces()).await;
    let second = TestService {
        state: TestService::open(&with_nonces(), &first.url, &first.clock).await,
        clock: first.clock.clone(),
        dir: tempfile::tempdir().unwrap(),
        url: first.url.clone(),
    };
    let key = EcKey::generate();
    let refused =
        client_credentials(&first, JWT_CLIENT, &key.proof(TOKEN_URL, first.state.now())).await;
    let mut claims = claims("POST", TOKEN_URL, first.state.now());
    claims["nonce"] = json!(refused.header("dpop-nonce"));
    let answer = client_credentials(&second, JWT_CLIENT, &key.sign(&key.header(), &claims)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

// ---- /userinfo, a protected resource of the service (RFC 9449 §7) --------------------------

#[tokio::test]
async fn userinfo_takes_a_bound_token_with_its_proof_and_never_as_bearer() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let tokens = exchange(
        &service,
        &code,
        &[&key.proof(TOKEN_URL, service.state.now())],
    )
    .await;
    let token = tokens.json["access_token"].as_str().unwrap().to_owned();
    let userinfo = |scheme: &str, proof: Option<String>| {
        let mut request =
            Request::get("/userinfo").header(header::AUTHORIZATION, format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        service.call(request.body(Body::empty()).unwrap())
    };
    let mut proof_claims = claims("GET", "http://127.0.0.1:8080/userinfo", service.state.now());
    proof_claims["ath"] = json!(support::jose::ath(&token));
    let answer = userinfo("DPoP", Some(key.sign(&key.header(), &proof_claims))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["sub"], "jane");

    let as_bearer = userinfo("Bearer", None).await;
    assert_eq!(
        as_bearer.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        as_bearer.text
    );
    // A thief with the token and a key of its own gets nothing either.
    let thief = EcKey::generate();
    let mut stolen = claims("GET", "http://127.0.0.1:8080/userinfo", service.state.now());
    stolen["ath"] = json!(support::jose::ath(&token));
    let answer = userinfo("DPoP", Some(thief.sign(&thief.header(), &stolen))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    // Both schemes are challenged (Bearer and DPoP, each a header of its own); the DPoP one
    // says why.
    let challenges: Vec<&str> = answer
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|challenge| challenge.starts_with("DPoP")
                && challenge.contains("invalid_dpop_proof")),
        "{challenges:?}"
    );
}

#[tokio::test]
async fn a_refused_client_leaves_its_proof_unspent() {
    let service = TestService::start().await;
    let key = EcKey::generate();
    let proof = key.proof(TOKEN_URL, service.state.now());
    let wrong = client_credentials(&service, (JWT_CLIENT.0, "not-the-secret"), &proof).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
    // Bad input changes nothing: the proof is still good for its rightful request.
    let right = client_credentials(&service, JWT_CLIENT, &proof).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text);
    let replay = client_credentials(&service, JWT_CLIENT, &proof).await;
    assert_refused(&replay, "invalid_dpop_proof", "replayed after use");
}
