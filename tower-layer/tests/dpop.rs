//! DPoP (RFC 9449) through the layer with `oneshot`: good proofs with JWTs and introspected
//! tokens, each attack refused with its status and challenge, nonces, and both modes. Proofs
//! are real ES256, RS256 and EdDSA signatures; time moves on the validator's mock clock.

#![allow(clippy::unwrap_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

#[path = "support/dpop_client.rs"]
mod dpop_client;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dpop_client::{DpopClient, ath};
use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use scopegate_validator::dpop::{DpopNonces, DpopVerifier};
use scopegate_validator::{Algorithm, Clock as _, MockClock, Principal, Validator};
use serde_json::json;
use support::{FakeIdp, Mode, SigningKey};
use tower::{ServiceBuilder, ServiceExt};
use tower_scopegate::{DpopMode, DpopSettings, Rejection, RejectionKind, ScopeLayer};

const ORIGIN: &str = "https://api.example.test";
const URL: &str = "https://api.example.test/profile";
const ALGS: &str = r#"algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA""#;
const OPAQUE: &str = "opaque-bound-token";

struct Setup {
    idp: FakeIdp,
    clock: MockClock,
    key: SigningKey,
    validator: Validator,
}

async fn setup() -> Setup {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    Setup {
        idp,
        clock,
        key,
        validator,
    }
}

impl Setup {
    /// A JWT granting `akamai:social_profile:read`, bound to `client`'s key.
    fn bound_token(&self, client: &DpopClient) -> String {
        let mut claims = self.idp.claims(&self.clock);
        claims["cnf"] = json!({ "jkt": client.jkt() });
        self.key.sign(&claims)
    }

    fn unbound_token(&self) -> String {
        self.key.sign(&self.idp.claims(&self.clock))
    }

    /// An opaque token the IdP's introspection says is active and bound to `client`'s key.
    fn bound_opaque_token(&self, client: &DpopClient) -> &'static str {
        let mut answer = self.idp.active_answer(&self.clock, 600);
        answer["cnf"] = json!({ "jkt": client.jkt() });
        self.idp.set_answer(OPAQUE, answer);
        OPAQUE
    }

    /// `akamai:social_profile:read` on GET, DPoP at `ORIGIN` in `mode`.
    fn layer(&self, mode: DpopMode) -> ScopeLayer {
        self.layer_with(DpopSettings::new(ORIGIN).unwrap().mode(mode))
    }

    fn layer_with(&self, settings: DpopSettings) -> ScopeLayer {
        ScopeLayer::method_derived(&self.validator, "akamai:social_profile")
            .unwrap()
            .dpop(settings)
    }
}

async fn echo(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let subject = request
        .extensions()
        .get::<Arc<Principal>>()
        .and_then(|principal| principal.subject().map(str::to_owned))
        .unwrap_or_default();
    Ok(Response::new(Full::from(subject)))
}

async fn call(layer: &ScopeLayer, request: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(echo)
        .oneshot(request)
        .await
        .unwrap()
}

/// `method /profile` with `Authorization: DPoP <token>` and these `DPoP` headers.
fn dpop_request(method: Method, token: &str, proofs: &[&str]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri("/profile")
        .header(AUTHORIZATION, format!("DPoP {token}"));
    for proof in proofs {
        builder = builder.header("dpop", *proof);
    }
    builder.body(Full::default()).unwrap()
}

fn bearer_request(token: &str) -> Request<Full<Bytes>> {
    Request::get("/profile")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

/// Every `WWW-Authenticate` field, in order.
fn challenges(response: &Response<Full<Bytes>>) -> Vec<&str> {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect()
}

fn rejection(response: &Response<Full<Bytes>>) -> &Rejection {
    response
        .extensions()
        .get::<Rejection>()
        .expect("the rejection is in the extensions")
}

fn nonce_header(response: &Response<Full<Bytes>>) -> Option<&str> {
    response
        .headers()
        .get("dpop-nonce")
        .map(|value| value.to_str().unwrap())
}

async fn body(response: Response<Full<Bytes>>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The 401 of Allowed mode for a proof at fault: both challenges, the error on DPoP's.
fn assert_invalid_proof(response: &Response<Full<Bytes>>, case: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(
        challenges(response),
        [
            r#"Bearer realm="api""#.to_owned(),
            format!(r#"DPoP realm="api", error="invalid_dpop_proof", {ALGS}"#),
        ],
        "{case}"
    );
    assert_eq!(
        rejection(response).kind(),
        RejectionKind::InvalidDpopProof,
        "{case}"
    );
    assert_eq!(
        rejection(response).error_code(),
        Some("invalid_dpop_proof"),
        "{case}"
    );
}

#[tokio::test]
async fn a_good_proof_passes_with_a_bound_jwt_for_every_key_type() {
    let setup = setup().await;
    let layer = setup.layer(DpopMode::Allowed);
    for client in [
        DpopClient::es256(),
        DpopClient::rs256(),
        DpopClient::eddsa(),
    ] {
        let token = setup.bound_token(&client);
        // Twice: the second time the token is answered from the cache, the proof is new.
        for _ in 0..2 {
            let proof = client.proof(&setup.clock, "GET", URL, &token);
            let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", client.key.alg);
            assert!(response.extensions().get::<Rejection>().is_none());
            assert_eq!(body(response).await, "user-1");
        }
    }
}

#[tokio::test]
async fn a_good_proof_passes_with_a_bound_introspected_token() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_opaque_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let proof = client.proof(&setup.clock, "GET", URL, token);
    let response = call(&layer, dpop_request(Method::GET, token, &[&proof])).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Bound by its introspection answer: as a bearer token it is refused.
    let response = call(&layer, bearer_request(token)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejection(&response).kind(), RejectionKind::InvalidToken);
    // And the thief's own proof does not make it theirs.
    let thief = DpopClient::es256();
    let proof = thief.proof(&setup.clock, "GET", URL, token);
    let response = call(&layer, dpop_request(Method::GET, token, &[&proof])).await;
    assert_invalid_proof(&response, "thief with an introspected token");
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let proof = client.proof(&setup.clock, "GET", URL, &token);
    let first = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_eq!(first.status(), StatusCode::OK);
    // Still within the window, on another instance of the layer sharing the settings.
    setup.clock.advance(Duration::from_secs(30));
    let again = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_invalid_proof(&again, "replay");
    assert!(rejection(&again).description().contains("used before"));
}

#[tokio::test]
async fn a_proof_for_another_url_or_method_is_refused() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let cases = [
        ("GET", "https://api.example.test/other"),
        ("GET", "https://other.example.test/profile"),
        ("GET", "http://api.example.test/profile"),
        ("GET", "https://api.example.test:8443/profile"),
        ("POST", URL),
        ("get", URL),
    ];
    for (method, url) in cases {
        let proof = client.proof(&setup.clock, method, url, &token);
        let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
        assert_invalid_proof(&response, &format!("{method} {url}"));
    }
    // The URL is compared without its query (RFC 9449 §4.3): a query on the request is fine.
    let proof = client.proof(&setup.clock, "GET", URL, &token);
    let request = Request::get("/profile?page=2")
        .header(AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Full::default())
        .unwrap();
    assert_eq!(call(&layer, request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_stolen_token_with_the_thiefs_own_proof_is_refused() {
    let setup = setup().await;
    let owner = DpopClient::es256();
    let thief = DpopClient::eddsa();
    let token = setup.bound_token(&owner);
    let layer = setup.layer(DpopMode::Allowed);
    let proof = thief.proof(&setup.clock, "GET", URL, &token);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_invalid_proof(&response, "jkt mismatch");
    assert!(rejection(&response).description().contains("bound to"));
}

#[tokio::test]
async fn a_proof_for_another_token_is_refused() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let mut claims = client.claims(&setup.clock, "GET", URL, &token);
    claims["ath"] = json!(ath("another-token"));
    let proof = client.sign(&client.header(), &claims);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_invalid_proof(&response, "ath mismatch");
    claims.as_object_mut().unwrap().remove("ath");
    let proof = client.sign(&client.header(), &claims);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_invalid_proof(&response, "no ath");
}

#[tokio::test]
async fn a_proof_whose_jwk_holds_private_members_is_refused() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let mut header = client.header();
    header["jwk"]["d"] = json!("c2VjcmV0");
    let claims = client.claims(&setup.clock, "GET", URL, &token);
    let proof = client.sign(&header, &claims);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_invalid_proof(&response, "private jwk");
}

#[tokio::test]
async fn alg_none_and_hmac_proofs_are_refused() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let claims = client.claims(&setup.clock, "GET", URL, &token);
    let encode = |value: &serde_json::Value| support::b64(value.to_string());
    let mut none_header = client.header();
    none_header["alg"] = json!("none");
    let unsigned = format!("{}.{}.", encode(&none_header), encode(&claims));
    let mut hmac_header = client.header();
    hmac_header["alg"] = json!("HS256");
    // HMAC keyed with the public key's bytes: the classic confusion.
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        client.key.bare_jwk().to_string().as_bytes(),
    );
    let input = format!("{}.{}", encode(&hmac_header), encode(&claims));
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let hmac = format!("{input}.{}", support::b64(tag.as_ref()));
    for (case, proof) in [("none", unsigned), ("HS256", hmac)] {
        let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
        assert_invalid_proof(&response, case);
    }
}

#[tokio::test]
async fn proofs_from_far_past_or_far_future_are_refused() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let now = setup.clock.now().as_secs();
    for (iat, status) in [
        (now - 61, StatusCode::UNAUTHORIZED),
        (now + 61, StatusCode::UNAUTHORIZED),
        (now - 3600, StatusCode::UNAUTHORIZED),
        (now + 3600, StatusCode::UNAUTHORIZED),
        // Within the 60 s window either way: room for clock skew.
        (now - 59, StatusCode::OK),
        (now + 59, StatusCode::OK),
    ] {
        let mut claims = client.claims(&setup.clock, "GET", URL, &token);
        claims["iat"] = json!(iat);
        let proof = client.sign(&client.header(), &claims);
        let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
        assert_eq!(response.status(), status, "iat {}", iat as i64 - now as i64);
    }
    // A proof kept for later: good now, stale once the window has passed.
    let kept = client.proof(&setup.clock, "GET", URL, &token);
    setup.clock.advance(Duration::from_secs(61));
    let response = call(&layer, dpop_request(Method::GET, &token, &[&kept])).await;
    assert_invalid_proof(&response, "kept past the window");
}

#[tokio::test]
async fn a_missing_doubled_or_garbled_dpop_header_is_an_invalid_proof() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let one = client.proof(&setup.clock, "GET", URL, &token);
    let two = client.proof(&setup.clock, "GET", URL, &token);
    let joined = format!("{one}, {two}");
    for (case, proofs) in [
        ("none", vec![]),
        ("two", vec![one.as_str(), two.as_str()]),
        ("two in one field", vec![joined.as_str()]),
    ] {
        let response = call(&layer, dpop_request(Method::GET, &token, &proofs)).await;
        assert_invalid_proof(&response, case);
    }
    assert_eq!(
        setup.idp.jwks_hits(),
        0,
        "refused before the token was validated"
    );
    let response = call(&layer, dpop_request(Method::GET, &token, &["not-a-proof"])).await;
    assert_invalid_proof(&response, "not a JWS");
}

#[tokio::test]
async fn a_bound_token_sent_as_bearer_is_refused_even_on_routes_without_dpop() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    // Validated once already: the cached fast path must refuse it too.
    setup.validator.validate(&token).await.unwrap();
    let plain = ScopeLayer::method_derived(&setup.validator, "akamai:social_profile").unwrap();
    let response = call(&plain, bearer_request(&token)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&response),
        [r#"Bearer realm="api", error="invalid_token""#]
    );
    assert_eq!(rejection(&response).kind(), RejectionKind::InvalidToken);
    assert!(rejection(&response).description().contains("DPoP proof"));

    let allowed = setup.layer(DpopMode::Allowed);
    let response = call(&allowed, bearer_request(&token)).await;
    assert_eq!(
        challenges(&response),
        [
            r#"Bearer realm="api", error="invalid_token""#.to_owned(),
            format!(r#"DPoP realm="api", {ALGS}"#),
        ]
    );
    // An optional layer does not take it for anonymous either.
    let optional = ScopeLayer::any_valid_token(&setup.validator).optional();
    assert_eq!(
        call(&optional, bearer_request(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_host_header_does_not_change_htu() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let request = |proof: &str, uri: &str| {
        Request::get(uri)
            .header(HOST, "evil.example")
            .header(AUTHORIZATION, format!("DPoP {token}"))
            .header("dpop", proof)
            .body(Full::default())
            .unwrap()
    };
    // A proof made for the host the attacker names is refused, whatever Host says...
    let for_evil = client.proof(&setup.clock, "GET", "https://evil.example/profile", &token);
    let response = call(&layer, request(&for_evil, "/profile")).await;
    assert_invalid_proof(&response, "Host: evil.example");
    let for_evil = client.proof(&setup.clock, "GET", "https://evil.example/profile", &token);
    let response = call(&layer, request(&for_evil, "https://evil.example/profile")).await;
    assert_invalid_proof(&response, "absolute-form request target");
    // ...and one for the configured origin passes, whatever Host says.
    let proof = client.proof(&setup.clock, "GET", URL, &token);
    assert_eq!(
        call(&layer, request(&proof, "/profile")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_nonces_the_first_proof_is_told_the_nonce_and_the_retry_passes() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let nonces = DpopNonces::random()
        .unwrap()
        .rotating_every(Duration::from_secs(60))
        .unwrap();
    let verifier = DpopVerifier::builder()
        .algorithms([Algorithm::ES256])
        .nonces(nonces.clone())
        .build()
        .unwrap();
    let layer = setup.layer_with(DpopSettings::new(ORIGIN).unwrap().verifier(verifier));

    let proof = client.proof(&setup.clock, "GET", URL, &token);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&response),
        [
            r#"Bearer realm="api""#,
            r#"DPoP realm="api", error="use_dpop_nonce", algs="ES256""#,
        ]
    );
    assert_eq!(rejection(&response).kind(), RejectionKind::UseDpopNonce);
    let nonce = nonce_header(&response).unwrap().to_owned();
    assert_eq!(rejection(&response).dpop_nonce(), Some(nonce.as_str()));

    let retry = client.proof_with_nonce(&setup.clock, "GET", URL, &token, &nonce);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&retry])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(nonce_header(&response), None, "the nonce is still current");

    // A minute on, the nonce is the previous one: still good, and the answer brings the next.
    setup.clock.advance(Duration::from_secs(60));
    let later = client.proof_with_nonce(&setup.clock, "GET", URL, &token, &nonce);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&later])).await;
    assert_eq!(response.status(), StatusCode::OK);
    let next = nonce_header(&response).unwrap().to_owned();
    assert_ne!(next, nonce);
    assert!(nonces.is_current(&next, setup.clock.now()));

    // Another minute and it is too old.
    setup.clock.advance(Duration::from_secs(60));
    let stale = client.proof_with_nonce(&setup.clock, "GET", URL, &token, &nonce);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&stale])).await;
    assert_eq!(rejection(&response).kind(), RejectionKind::UseDpopNonce);
    // Any 401 of a route with nonces hands one out, a missing token's too.
    let response = call(
        &layer,
        Request::get("/profile").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(nonce_header(&response).is_some());
}

#[tokio::test]
async fn required_mode_refuses_bearer_and_challenges_with_dpop_only() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let layer = setup.layer(DpopMode::Required);
    let unbound = setup.unbound_token();
    // Cached or not, a bearer token is not accepted here.
    setup.validator.validate(&unbound).await.unwrap();
    let response = call(&layer, bearer_request(&unbound)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&response),
        [format!(r#"DPoP realm="api", {ALGS}"#)]
    );
    assert_eq!(rejection(&response).kind(), RejectionKind::MissingToken);

    let token = setup.bound_token(&client);
    let proof = client.proof(&setup.clock, "GET", URL, &token);
    let response = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_eq!(response.status(), StatusCode::OK);

    let replay = call(&layer, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_eq!(
        challenges(&replay),
        [format!(
            r#"DPoP realm="api", error="invalid_dpop_proof", {ALGS}"#
        )]
    );
}

#[tokio::test]
async fn allowed_mode_accepts_bearer_for_unbound_tokens_only() {
    let setup = setup().await;
    let layer = setup.layer(DpopMode::Allowed);
    let unbound = setup.unbound_token();
    let response = call(&layer, bearer_request(&unbound)).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Cached now: the fast path answers the same.
    let response = call(&layer, bearer_request(&unbound)).await;
    assert_eq!(response.status(), StatusCode::OK);

    // No credentials: both challenges, neither with an error.
    let response = call(
        &layer,
        Request::get("/profile").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(
        challenges(&response),
        [
            r#"Bearer realm="api""#.to_owned(),
            format!(r#"DPoP realm="api", {ALGS}"#)
        ]
    );
    assert_eq!(nonce_header(&response), None, "no nonces configured");

    // An unbound token with a proof: the token is at fault.
    let client = DpopClient::es256();
    let proof = client.proof(&setup.clock, "GET", URL, &unbound);
    let response = call(&layer, dpop_request(Method::GET, &unbound, &[&proof])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&response),
        [
            r#"Bearer realm="api""#.to_owned(),
            format!(r#"DPoP realm="api", error="invalid_token", {ALGS}"#),
        ]
    );
}

#[tokio::test]
async fn insufficient_scope_is_challenged_with_the_scheme_the_client_used() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed);
    let proof = client.proof(&setup.clock, "DELETE", URL, &token);
    let response = call(&layer, dpop_request(Method::DELETE, &token, &[&proof])).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&response),
        [format!(
            r#"DPoP realm="api", error="insufficient_scope", scope="akamai:social_profile:delete", {ALGS}"#
        )]
    );
    let unbound = setup.unbound_token();
    let request = Request::delete("/profile")
        .header(AUTHORIZATION, format!("Bearer {unbound}"))
        .body(Full::default())
        .unwrap();
    let response = call(&layer, request).await;
    assert_eq!(
        challenges(&response),
        [r#"Bearer realm="api", error="insufficient_scope", scope="akamai:social_profile:delete""#]
    );
}

#[tokio::test]
async fn a_route_without_dpop_takes_the_dpop_scheme_for_another_scheme() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let plain = ScopeLayer::any_valid_token(&setup.validator);
    let proof = client.proof(&setup.clock, "GET", URL, &token);
    let response = call(&plain, dpop_request(Method::GET, &token, &[&proof])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&response), [r#"Bearer realm="api""#]);
}

#[tokio::test]
async fn an_unreachable_issuer_is_still_503_without_a_challenge() {
    let setup = setup().await;
    setup.idp.set_mode(Mode::Status(503));
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let proof = client.proof(&setup.clock, "GET", URL, &token);
    let response = call(
        &setup.layer(DpopMode::Required),
        dpop_request(Method::GET, &token, &[&proof]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(challenges(&response).is_empty());
    assert_eq!(rejection(&response).kind(), RejectionKind::Unavailable);
}

#[tokio::test]
async fn grpc_answers_dpop_refusals_as_unauthenticated() {
    let setup = setup().await;
    let client = DpopClient::es256();
    let token = setup.bound_token(&client);
    let layer = setup.layer(DpopMode::Allowed).grpc();
    let response = call(&layer, dpop_request(Method::GET, &token, &[])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(challenges(&response).len(), 2);
}

/// Bytes a header value can hold, biased towards what a proof is made of.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[A-Za-z0-9_.=, -]{0,300}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever the `Authorization` and `DPoP` headers hold — a good bound token with a garbled
    /// proof, a half-valid proof, or noise — the answer is a refusal, never a panic.
    #[test]
    fn malformed_dpop_headers_never_panic(
        proofs in proptest::collection::vec(header_bytes(), 0..3),
        authorization in header_bytes(),
        mangle_a_good_proof in any::<(bool, usize, u8)>(),
    ) {
        SHARED.0.block_on(async {
            let setup = &SHARED.1;
            let client = &setup.1;
            let token = &setup.2;
            let (mangle, at, byte) = mangle_a_good_proof;
            let mut request = Request::get("/profile")
                .header(AUTHORIZATION, format!("DPoP {token}"));
            if mangle {
                let mut proof = client.proof(&setup.0.clock, "GET", URL, token).into_bytes();
                let at = at % proof.len();
                proof[at] = byte;
                if let Ok(value) = http::HeaderValue::from_bytes(&proof) {
                    request = request.header("dpop", value);
                }
            }
            for proof in &proofs {
                if let Ok(value) = http::HeaderValue::from_bytes(proof) {
                    request = request.header("dpop", value);
                }
            }
            let layer = setup.0.layer(DpopMode::Allowed);
            let response = call(&layer, request.body(Full::default()).unwrap()).await;
            prop_assert!(
                response.status() == StatusCode::UNAUTHORIZED || response.status() == StatusCode::OK,
                "{}", response.status()
            );
            if let Ok(value) = http::HeaderValue::from_bytes(&authorization) {
                let request = Request::get("/profile").header(AUTHORIZATION, value);
                let request = proofs.iter().fold(request, |request, proof| {
                    match http::HeaderValue::from_bytes(proof) {
                        Ok(value) => request.header("dpop", value),
                        Err(_) => request,
                    }
                });
                let response = call(&layer, request.body(Full::default()).unwrap()).await;
                prop_assert!(
                    [StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST].contains(&response.status()),
                    "{}", response.status()
                );
            }
            Ok(())
        })?;
    }
}

/// One runtime, IdP, client and bound token for all proptest cases: the validator's HTTP
/// connections belong to the runtime they were made on.
static SHARED: std::sync::LazyLock<(tokio::runtime::Runtime, (Setup, DpopClient, String))> =
    std::sync::LazyLock::new(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let shared = runtime.block_on(async {
            let setup = setup().await;
            let client = DpopClient::es256();
            let token = setup.bound_token(&client);
            (setup, client, token)
        });
        (runtime, shared)
    });
