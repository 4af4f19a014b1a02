//! Every row of the RFC 6750 response table and every requirement kind, through `oneshot`.

#![allow(clippy::unwrap_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use scopegate_validator::{MockClock, Principal, Validator};
use serde_json::json;
use support::{FakeIdp, Mode, SigningKey};
use tower::{ServiceBuilder, ServiceExt};
use tower_scopegate::{JsonErrorBody, Rejection, RejectionKind, ScopeLayer};

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
    fn token(&self, scope: &str) -> String {
        let mut claims = self.idp.claims(&self.clock);
        claims["scope"] = json!(scope);
        self.key.sign(&claims)
    }
}

/// The protected service: echoes the principal's subject.
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

fn request(method: Method, authorization: &[&str]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri("/profile");
    for value in authorization {
        builder = builder.header(AUTHORIZATION, *value);
    }
    builder.body(Full::default()).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn challenge(response: &Response<Full<Bytes>>) -> Option<&str> {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap())
}

fn rejection(response: &Response<Full<Bytes>>) -> &Rejection {
    response
        .extensions()
        .get::<Rejection>()
        .expect("the rejection is in the extensions")
}

async fn body(response: Response<Full<Bytes>>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_valid_token_with_the_scope_reaches_the_service_with_its_principal() {
    let setup = setup().await;
    let layer = ScopeLayer::all_of(&setup.validator, ["akamai:social_profile:read"]).unwrap();
    let token = setup.token("akamai:social_profile:read");
    let response = call(&layer, request(Method::GET, &[&bearer(&token)])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<Rejection>().is_none());
    assert_eq!(body(response).await, "user-1");
}

#[tokio::test]
async fn no_credentials_get_a_bare_challenge() {
    let setup = setup().await;
    let layer = ScopeLayer::any_valid_token(&setup.validator);
    for authorization in [vec![], vec!["Basic dXNlcjpwYXNz"], vec!["Digest x"]] {
        let response = call(&layer, request(Method::GET, &authorization)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(challenge(&response), Some(r#"Bearer realm="api""#));
        assert_eq!(rejection(&response).kind(), RejectionKind::MissingToken);
        assert!(body(response).await.is_empty());
    }
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let setup = setup().await;
    let layer = ScopeLayer::any_valid_token(&setup.validator).max_header_bytes(1024);
    let token = setup.token("openid");
    let long = format!("Bearer {}", "a".repeat(2000));
    let cases: Vec<Request<Full<Bytes>>> = vec![
        request(Method::GET, &[&bearer(&token), &bearer(&token)]),
        request(Method::GET, &["Bearer"]),
        request(Method::GET, &["Bearer a b"]),
        request(Method::GET, &["Bearer a\"b"]),
        request(Method::GET, &["Bearer =="]),
        request(Method::GET, &["Bearer caf\u{e9}"]),
        request(Method::GET, &[&long]),
        Request::get(format!("/profile?access_token={token}"))
            .body(Full::default())
            .unwrap(),
    ];
    for case in cases {
        let response = call(&layer, case).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            challenge(&response),
            Some(r#"Bearer realm="api", error="invalid_request""#)
        );
        assert_eq!(rejection(&response).kind(), RejectionKind::InvalidRequest);
    }
    assert_eq!(setup.idp.jwks_hits(), 0, "nothing was validated");
}

#[tokio::test]
async fn bad_expired_and_unknown_tokens_are_invalid_token() {
    let setup = setup().await;
    let layer = ScopeLayer::any_valid_token(&setup.validator);
    let mut expired = setup.idp.claims(&setup.clock);
    expired["exp"] = json!(1_000_000);
    let forged = SigningKey::es256("k").sign(&setup.idp.claims(&setup.clock));
    for token in [
        setup.key.sign(&expired),
        forged,
        "not-a-known-opaque-token".to_owned(),
    ] {
        let response = call(&layer, request(Method::GET, &[&bearer(&token)])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge(&response),
            Some(r#"Bearer realm="api", error="invalid_token""#)
        );
        assert_eq!(rejection(&response).kind(), RejectionKind::InvalidToken);
    }
}

#[tokio::test]
async fn error_description_is_off_by_default_and_escaped_when_on() {
    let setup = setup().await;
    let layer = ScopeLayer::any_valid_token(&setup.validator).error_description(true);
    let token = setup.key.sign_raw(r#"{"alg":"HS256"}"#, "{}");
    let response = call(&layer, request(Method::GET, &[&bearer(&token)])).await;
    assert_eq!(
        challenge(&response),
        Some(
            r#"Bearer realm="api", error="invalid_token", error_description="invalid token: algorithm 'HS256' is not allowed""#
        )
    );
}

#[tokio::test]
async fn a_missing_scope_is_insufficient_scope_naming_it() {
    let setup = setup().await;
    let layer = ScopeLayer::all_of(&setup.validator, ["akamai:social_profile:write"]).unwrap();
    let token = setup.token("akamai:social_profile:read");
    let response = call(&layer, request(Method::GET, &[&bearer(&token)])).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&response),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", scope="akamai:social_profile:write""#
        )
    );
    assert_eq!(
        rejection(&response).required_scopes(),
        ["akamai:social_profile:write"]
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_503_with_retry_after_and_no_challenge() {
    let setup = setup().await;
    setup.idp.set_mode(Mode::Status(503));
    let layer = ScopeLayer::any_valid_token(&setup.validator);
    let response = call(
        &layer,
        request(Method::GET, &[&bearer(&setup.token("openid"))]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(challenge(&response), None);
    let retry_after: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(rejection(&response).kind(), RejectionKind::Unavailable);

    setup.idp.set_introspection_mode(Mode::Status(500));
    let response = call(&layer, request(Method::GET, &["Bearer opaque-token"])).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn every_requirement_kind_is_enforced() {
    let setup = setup().await;
    let validator = &setup.validator;
    let read = setup.token("akamai:social_profile:read");
    let all = setup.token("akamai:social_profile:*");
    let other = setup.token("ad:user_custom:read");
    let cases = [
        (
            ScopeLayer::all_of(validator, ["akamai:social_profile:read", "openid"]).unwrap(),
            &read,
            Method::GET,
            StatusCode::FORBIDDEN,
            Some("akamai:social_profile:read openid"),
        ),
        (
            ScopeLayer::all_of(validator, ["akamai:social_profile:read"]).unwrap(),
            &all,
            Method::GET,
            StatusCode::OK,
            None,
        ),
        (
            ScopeLayer::any_of(
                validator,
                ["ad:user_custom:read", "akamai:social_profile:read"],
            )
            .unwrap(),
            &other,
            Method::GET,
            StatusCode::OK,
            None,
        ),
        (
            ScopeLayer::any_of(validator, ["openid", "email"]).unwrap(),
            &other,
            Method::GET,
            StatusCode::FORBIDDEN,
            Some("openid email"),
        ),
        (
            ScopeLayer::policy(
                validator,
                [vec!["openid", "email"], vec!["ad:user_custom:read"]],
            )
            .unwrap(),
            &other,
            Method::GET,
            StatusCode::OK,
            None,
        ),
        (
            ScopeLayer::policy(
                validator,
                [
                    vec!["openid", "email", "phone"],
                    vec!["akamai:social_profile:write"],
                ],
            )
            .unwrap(),
            &read,
            Method::GET,
            StatusCode::FORBIDDEN,
            Some("akamai:social_profile:write"),
        ),
        (
            ScopeLayer::policy(validator, Vec::<Vec<&str>>::new()).unwrap(),
            &all,
            Method::GET,
            StatusCode::FORBIDDEN,
            Some(""),
        ),
        (
            ScopeLayer::method_derived(validator, "akamai:social_profile").unwrap(),
            &read,
            Method::GET,
            StatusCode::OK,
            None,
        ),
        (
            ScopeLayer::method_derived(validator, "akamai:social_profile").unwrap(),
            &read,
            Method::HEAD,
            StatusCode::OK,
            None,
        ),
        (
            ScopeLayer::method_derived(validator, "akamai:social_profile").unwrap(),
            &read,
            Method::PUT,
            StatusCode::FORBIDDEN,
            Some("akamai:social_profile:write"),
        ),
        (
            ScopeLayer::method_derived(validator, "akamai:social_profile").unwrap(),
            &read,
            Method::DELETE,
            StatusCode::FORBIDDEN,
            Some("akamai:social_profile:delete"),
        ),
        (
            ScopeLayer::method_derived(validator, "akamai:social_profile").unwrap(),
            &all,
            Method::DELETE,
            StatusCode::OK,
            None,
        ),
        (
            ScopeLayer::method_derived(validator, "akamai:social_profile").unwrap(),
            &all,
            Method::TRACE,
            StatusCode::FORBIDDEN,
            Some(""),
        ),
        (
            ScopeLayer::any_valid_token(validator),
            &other,
            Method::POST,
            StatusCode::OK,
            None,
        ),
    ];
    for (index, (layer, token, method, status, scope)) in cases.into_iter().enumerate() {
        let response = call(&layer, request(method.clone(), &[&bearer(token)])).await;
        assert_eq!(response.status(), status, "case {index} ({method})");
        if let Some(scope) = scope {
            // An empty policy denies everything and names no scope.
            let expected = if scope.is_empty() {
                r#"Bearer realm="api", error="insufficient_scope""#.to_owned()
            } else {
                format!(r#"Bearer realm="api", error="insufficient_scope", scope="{scope}""#)
            };
            assert_eq!(
                challenge(&response),
                Some(expected.as_str()),
                "case {index}"
            );
        }
    }
}

#[tokio::test]
async fn a_bad_scope_string_fails_when_the_layer_is_built() {
    let setup = setup().await;
    assert!(ScopeLayer::all_of(&setup.validator, ["has space"]).is_err());
    assert!(ScopeLayer::all_of(&setup.validator, Vec::<&str>::new()).is_err());
    assert!(ScopeLayer::method_derived(&setup.validator, "akamai:social_profile:read").is_err());
    assert!(ScopeLayer::method_derived(&setup.validator, "openid").is_err());
}

#[tokio::test]
async fn the_realm_is_escaped_or_left_out() {
    let setup = setup().await;
    let layer = ScopeLayer::any_valid_token(&setup.validator).realm(r#"my "api" \ v2"#);
    let response = call(&layer, request(Method::GET, &[])).await;
    assert_eq!(
        challenge(&response),
        Some(r#"Bearer realm="my \"api\" \\ v2""#)
    );
    let layer = ScopeLayer::any_valid_token(&setup.validator).without_realm();
    let response = call(&layer, request(Method::GET, &[])).await;
    assert_eq!(challenge(&response), Some("Bearer"));
}

#[tokio::test]
async fn an_application_shapes_the_body_and_keeps_status_and_challenge() {
    let setup = setup().await;
    let layer = ScopeLayer::all_of(&setup.validator, ["akamai:social_profile:write"])
        .unwrap()
        .rejection_body(JsonErrorBody {
            with_description: false,
        });
    let response = call(
        &layer,
        request(Method::GET, &[&bearer(&setup.token("openid"))]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert!(
        challenge(&response)
            .unwrap()
            .contains(r#"error="insufficient_scope""#)
    );
    assert_eq!(body(response).await, r#"{"error":"insufficient_scope"}"#);

    let custom =
        ScopeLayer::any_valid_token(&setup.validator).rejection_body(|rejection: &Rejection| {
            Some((
                http::HeaderValue::from_static("text/plain"),
                Bytes::from(format!("no: {}", rejection.status())),
            ))
        });
    let response = call(&custom, request(Method::GET, &[])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(response).await, "no: 401 Unauthorized");
}

#[tokio::test]
async fn an_opaque_token_is_accepted_through_introspection() {
    let setup = setup().await;
    setup
        .idp
        .set_answer("opaque-abc", setup.idp.active_answer(&setup.clock, 600));
    let layer = ScopeLayer::method_derived(&setup.validator, "akamai:social_profile").unwrap();
    let response = call(&layer, request(Method::GET, &["Bearer opaque-abc"])).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(&layer, request(Method::PUT, &["Bearer opaque-abc"])).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_non_ascii_realm_keeps_the_error_codes() {
    let setup = setup().await;
    let layer = ScopeLayer::all_of(&setup.validator, ["akamai:social_profile:write"])
        .unwrap()
        .realm("Bücher API");
    let response = call(
        &layer,
        request(Method::GET, &[&bearer(&setup.token("openid"))]),
    )
    .await;
    assert_eq!(
        challenge(&response),
        Some(
            r#"Bearer realm="Bcher API", error="insufficient_scope", scope="akamai:social_profile:write""#
        )
    );
}

#[tokio::test]
async fn a_request_being_validated_does_not_hold_the_inner_services_capacity() {
    // The inner service takes one request at a time. A request whose validation waits (an
    // introspection call of 300 ms) must not hold that one slot meanwhile.
    let setup = setup().await;
    setup
        .idp
        .set_introspection_mode(Mode::Slow(std::time::Duration::from_millis(300)));
    let token = setup.token("openid");
    setup.validator.validate(&token).await.unwrap();
    let service = ServiceBuilder::new()
        .layer(ScopeLayer::any_valid_token(&setup.validator))
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .service_fn(echo);
    let slow = tokio::spawn(
        service
            .clone()
            .oneshot(request(Method::GET, &["Bearer unknown-opaque"])),
    );
    tokio::task::yield_now().await;
    let fast = tokio::time::timeout(
        std::time::Duration::from_millis(150),
        service
            .clone()
            .oneshot(request(Method::GET, &[&bearer(&token)])),
    )
    .await
    .expect("the cached request is not stuck behind the one being validated")
    .unwrap();
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(
        slow.await.unwrap().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_json_body_never_describes_an_outage() {
    let setup = setup().await;
    setup.idp.set_mode(Mode::Status(503));
    let layer = ScopeLayer::any_valid_token(&setup.validator).rejection_body(JsonErrorBody {
        with_description: true,
    });
    let response = call(
        &layer,
        request(Method::GET, &[&bearer(&setup.token("openid"))]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body(response).await,
        r#"{"error":"temporarily_unavailable"}"#
    );
}

fn grpc_call(path: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path).header(CONTENT_TYPE, "application/grpc");
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Full::default()).unwrap()
}

fn header<'a>(response: &'a Response<Full<Bytes>>, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn grpc_methods_have_their_own_requirements_and_refusals_are_grpc_statuses() {
    let setup = setup().await;
    let layer = ScopeLayer::per_path(
        &setup.validator,
        [
            (
                "/shop.Orders/Get",
                tower_scopegate::Requirement::all_of(["shop:orders:read"]).unwrap(),
            ),
            (
                "/shop.Orders/Cancel",
                tower_scopegate::Requirement::all_of(["shop:orders:write"]).unwrap(),
            ),
        ],
    )
    .grpc();
    let reader = setup.token("shop:orders:read");

    // Allowed: the service answers (the layer adds nothing).
    let response = call(&layer, grpc_call("/shop.Orders/Get", Some(&reader))).await;
    assert_eq!(header(&response, "grpc-status"), None);
    assert_eq!(body(response).await, "user-1");

    // Each refusal: HTTP 200, application/grpc, no body, the status and the RFC 6750 challenge.
    let cases = [
        (
            grpc_call("/shop.Orders/Cancel", Some(&reader)),
            "7",
            r#"Bearer realm="api", error="insufficient_scope", scope="shop:orders:write""#,
        ),
        (
            // A method without a requirement fails closed.
            grpc_call("/shop.Orders/Delete", Some(&reader)),
            "7",
            r#"Bearer realm="api", error="insufficient_scope""#,
        ),
        (
            grpc_call("/shop.Orders/Get", None),
            "16",
            r#"Bearer realm="api""#,
        ),
        (
            grpc_call("/shop.Orders/Get", Some("not.a.token")),
            "16",
            r#"Bearer realm="api", error="invalid_token""#,
        ),
        (
            grpc_call("/shop.Orders/Get", Some("has space")),
            "16",
            r#"Bearer realm="api", error="invalid_request""#,
        ),
    ];
    for (request, status, challenge) in cases {
        let path = request.uri().path().to_owned();
        let response = call(&layer, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "content-type"), Some("application/grpc"));
        assert_eq!(header(&response, "grpc-status"), Some(status), "{path}");
        assert!(header(&response, "grpc-message").is_some());
        assert_eq!(
            header(&response, "www-authenticate"),
            Some(challenge),
            "{path}"
        );
        assert!(body(response).await.is_empty());
    }

    // The issuer unreachable: UNAVAILABLE.
    setup.idp.set_mode(Mode::Status(503));
    let cold = ScopeLayer::per_path(
        &setup.idp.validator(&setup.clock),
        [(
            "/shop.Orders/Get",
            tower_scopegate::Requirement::any_valid_token(),
        )],
    )
    .grpc();
    let response = call(&cold, grpc_call("/shop.Orders/Get", Some(&reader))).await;
    assert_eq!(header(&response, "grpc-status"), Some("14"));
    assert_eq!(header(&response, "www-authenticate"), None);
}
