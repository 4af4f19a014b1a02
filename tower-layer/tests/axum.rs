//! The layer in axum routers, and the extractors.

#![allow(clippy::unwrap_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

#[path = "support/dpop_client.rs"]
mod dpop_client;

use axum::Router;
use axum::body::Body;
use axum::handler::Handler as _;
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use scopegate_validator::{MockClock, Requirement};
use serde::Deserialize;
use serde_json::json;
use support::{FakeIdp, Mode, SigningKey};
use tower::ServiceExt;
use tower_scopegate::{
    AuthScheme, Authenticated, Claims, DpopMode, DpopSettings, ResourceMetadata, ScopeLayer,
};

#[derive(Deserialize)]
struct CompanyClaims {
    #[serde(rename = "companyName")]
    company_name: String,
}

async fn me(who: Authenticated) -> String {
    format!("{}/{}", who.subject().unwrap_or("-"), who.scopes())
}

async fn company(Claims(claims): Claims<CompanyClaims>) -> String {
    claims.company_name
}

async fn reports(who: Authenticated) -> Result<&'static str, tower_scopegate::Rejection> {
    // A rule the layer cannot express: decided in the handler.
    who.require(&Requirement::all_of(["reports:all:read"]).unwrap(), "GET")?;
    Ok("reports")
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let authorization = token.map(|token| format!("Bearer {token}"));
    send_raw(app, method, uri, authorization.as_deref()).await
}

/// `method uri` with this exact `Authorization` value, if any.
async fn send_raw(
    app: &Router,
    method: Method,
    uri: &str,
    authorization: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn route_layers_protect_single_routes_and_extractors_read_the_principal() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let app = Router::new()
        .route(
            "/me",
            get(me).route_layer(ScopeLayer::any_valid_token(&validator)),
        )
        .route(
            "/profile",
            get(me).put(me).route_layer(
                ScopeLayer::method_derived(&validator, "akamai:social_profile").unwrap(),
            ),
        )
        .route(
            "/company",
            get(company).route_layer(ScopeLayer::any_valid_token(&validator)),
        )
        .route(
            "/reports",
            get(reports).route_layer(ScopeLayer::any_valid_token(&validator)),
        )
        .route("/public", get(|| async { "open" }))
        .route("/forgotten", get(me));

    let mut claims = idp.claims(&clock);
    claims["companyName"] = json!("Bizcorp");
    let token = key.sign(&claims);

    assert_eq!(
        send(&app, Method::GET, "/public", None).await,
        (StatusCode::OK, "open".into())
    );
    assert_eq!(
        send(&app, Method::GET, "/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, Method::GET, "/me", Some(&token)).await,
        (
            StatusCode::OK,
            "user-1/akamai:social_profile:read openid".into()
        )
    );
    assert_eq!(
        send(&app, Method::GET, "/profile", Some(&token)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Method::PUT, "/profile", Some(&token)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, Method::GET, "/company", Some(&token)).await,
        (StatusCode::OK, "Bizcorp".into())
    );
    let (status, _) = send(&app, Method::GET, "/reports", Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the in-handler check refuses"
    );

    let (status, body) = send(&app, Method::GET, "/forgotten", Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a missing layer is a server error"
    );
    assert!(
        body.contains("not protected by tower_scopegate::ScopeLayer"),
        "{body}"
    );

    // Claims the token does not have: not a token this API can use.
    let plain = key.sign(&idp.claims(&clock));
    assert_eq!(
        send(&app, Method::GET, "/company", Some(&plain)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_layer_on_one_handler_checks_and_answers_as_a_route_layer_does() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let scope = |requirement| ScopeLayer::all_of(&validator, [requirement]).unwrap();
    // `Handler::layer`: one handler, without the extra boxing of `route_layer`.
    let app = Router::new().route(
        "/profile",
        get(me.layer(scope("akamai:social_profile:read")))
            .put(me.layer(scope("akamai:social_profile:write"))),
    );
    let token = key.sign(&idp.claims(&clock));
    assert_eq!(
        send(&app, Method::GET, "/profile", Some(&token)).await,
        (
            StatusCode::OK,
            "user-1/akamai:social_profile:read openid".into()
        )
    );
    let challenge = |method: Method, token: Option<&str>| {
        let mut request = Request::builder().method(method).uri("/profile");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let app = app.clone();
        async move {
            let response = app
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let challenge = response.headers()[header::WWW_AUTHENTICATE].clone();
            (response.status(), challenge.to_str().unwrap().to_owned())
        }
    };
    let (status, refused) = challenge(Method::PUT, Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        refused.contains("error=\"insufficient_scope\""),
        "{refused}"
    );
    assert_eq!(
        challenge(Method::GET, None).await,
        (StatusCode::UNAUTHORIZED, "Bearer realm=\"api\"".to_owned())
    );
}

#[tokio::test]
async fn one_layer_can_protect_a_whole_router() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let app = Router::new()
        .route("/a", get(me))
        .route("/b", get(me))
        .layer(ScopeLayer::all_of(&validator, ["openid"]).unwrap());
    let token = key.sign(&idp.claims(&clock));
    for path in ["/a", "/b"] {
        assert_eq!(
            send(&app, Method::GET, path, None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(&app, Method::GET, path, Some(&token)).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn refusals_made_in_handlers_follow_the_layers_settings() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let layer = ScopeLayer::any_valid_token(&validator).realm("reports");
    let app = Router::new().route("/reports", get(reports).route_layer(layer));
    let token = key.sign(&idp.claims(&clock));
    let request = Request::get("/reports")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="reports", error="insufficient_scope", scope="reports:all:read""#
    );
}

async fn greeting(who: Option<Authenticated>) -> String {
    match who {
        Some(who) => format!("hello {}", who.subject().unwrap_or("-")),
        None => "hello stranger".to_owned(),
    }
}

async fn send_with(app: &Router, uri: &str, authorization: Option<&str>) -> (StatusCode, String) {
    send_raw(app, Method::GET, uri, authorization).await
}

#[tokio::test]
async fn an_optional_layer_serves_anonymous_callers_and_still_checks_every_presented_token() {
    let key = SigningKey::es256("k");
    let other = SigningKey::es256("stranger");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let app = Router::new()
        .route(
            "/greeting",
            get(greeting).route_layer(ScopeLayer::any_valid_token(&validator).optional()),
        )
        .route(
            "/mine",
            get(me).route_layer(ScopeLayer::any_valid_token(&validator).optional()),
        )
        .route(
            "/orders",
            get(greeting).route_layer(
                ScopeLayer::all_of(&validator, ["orders:all:read"])
                    .unwrap()
                    .optional(),
            ),
        );
    let token = key.sign(&idp.claims(&clock));
    let bearer = format!("Bearer {token}");

    // Anonymous: served, and the handler sees no principal.
    assert_eq!(
        send_with(&app, "/greeting", None).await,
        (StatusCode::OK, "hello stranger".into())
    );
    // A good token: recognised.
    assert_eq!(
        send_with(&app, "/greeting", Some(&bearer)).await,
        (StatusCode::OK, "hello user-1".into())
    );
    // Anything presented and wrong is refused, never taken for anonymous.
    let forged = other.sign(&idp.claims(&clock));
    let mut expired_claims = idp.claims(&clock);
    expired_claims["exp"] = json!(1);
    let expired = key.sign(&expired_claims);
    for (presented, status) in [
        (format!("Bearer {forged}"), StatusCode::UNAUTHORIZED),
        (format!("Bearer {expired}"), StatusCode::UNAUTHORIZED),
        ("Bearer not a token".to_owned(), StatusCode::BAD_REQUEST),
        ("Bearer".to_owned(), StatusCode::BAD_REQUEST),
        ("Basic dXNlcjpwYXNz".to_owned(), StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(
            send_with(&app, "/greeting", Some(&presented)).await.0,
            status,
            "{presented}"
        );
    }
    assert_eq!(
        send_with(&app, "/greeting?access_token=x", None).await.0,
        StatusCode::BAD_REQUEST,
        "a token in the query is presented too"
    );
    // A presented token must still meet the requirement; anonymous callers need not.
    assert_eq!(
        send_with(&app, "/orders", Some(&bearer)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(send_with(&app, "/orders", None).await.0, StatusCode::OK);
    // A handler that insists on a principal answers an anonymous caller 401 with a challenge.
    let response = app
        .clone()
        .oneshot(Request::get("/mine").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api""#
    );
    assert_eq!(
        send_with(&app, "/mine", Some(&bearer)).await.0,
        StatusCode::OK
    );

    // The issuer unreachable (a validator that has no keys yet): a presented token is 503,
    // never anonymous; anonymous callers are still served.
    idp.set_mode(Mode::Status(503));
    let cold = idp.validator(&clock);
    let app = Router::new().route(
        "/greeting",
        get(greeting).route_layer(ScopeLayer::any_valid_token(&cold).optional()),
    );
    assert_eq!(
        send_with(&app, "/greeting", Some(&bearer)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(send_with(&app, "/greeting", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn resource_metadata_lists_the_scopes_of_mounted_routes_and_challenges_point_to_it() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let metadata = ResourceMetadata::new("http://127.0.0.1:3000", &validator)
        .unwrap()
        .resource_name("Profiles");
    let app = Router::new()
        .route(
            "/profile",
            get(me).delete(me).route_layer(
                ScopeLayer::method_derived(&validator, "akamai:social_profile")
                    .unwrap()
                    .described_by(&metadata),
            ),
        )
        .route(
            "/reports",
            get(me).route_layer(
                ScopeLayer::all_of(&validator, ["reports:all:read"])
                    .unwrap()
                    .described_by(&metadata),
            ),
        )
        .merge(metadata.router());

    let (status, body) = send(
        &app,
        Method::GET,
        "/.well-known/oauth-protected-resource",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        document,
        json!({
            "resource": "http://127.0.0.1:3000",
            "authorization_servers": [idp.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["akamai:social_profile:delete", "akamai:social_profile:read",
                                 "akamai:social_profile:write", "reports:all:read"],
            "resource_name": "Profiles",
        })
    );
    assert_eq!(
        send(
            &app,
            Method::POST,
            "/.well-known/oauth-protected-resource",
            None
        )
        .await
        .0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let pointer =
        r#"resource_metadata="http://127.0.0.1:3000/.well-known/oauth-protected-resource""#;
    let challenge = |response: &axum::response::Response| {
        response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned()
    };
    // No token: 401 naming the scope this method needs and the metadata.
    let response = app
        .clone()
        .oneshot(Request::delete("/profile").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&response),
        format!(r#"Bearer realm="api", scope="akamai:social_profile:delete", {pointer}"#)
    );
    // A token without the scope: 403, the same pointer.
    let token = key.sign(&idp.claims(&clock));
    let response = app
        .clone()
        .oneshot(
            Request::delete("/profile")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&response),
        format!(
            r#"Bearer realm="api", error="insufficient_scope", scope="akamai:social_profile:delete", {pointer}"#
        )
    );
    // A bad token: 401 invalid_token with the pointer.
    let response = app
        .clone()
        .oneshot(
            Request::get("/reports")
                .header(header::AUTHORIZATION, "Bearer abc.def.ghi")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        challenge(&response),
        format!(r#"Bearer realm="api", error="invalid_token", {pointer}"#)
    );
}

async fn scheme_and_reports(who: Authenticated) -> Result<String, tower_scopegate::Rejection> {
    let scheme = who.scheme().as_str();
    who.require(&Requirement::all_of(["reports:all:read"]).unwrap(), "GET")?;
    Ok(scheme.to_owned())
}

async fn scheme_of(who: Authenticated) -> &'static str {
    who.scheme().as_str()
}

#[tokio::test]
async fn under_nest_the_proof_names_the_path_the_client_sent() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let client = dpop_client::DpopClient::es256();
    let mut claims = idp.claims(&clock);
    claims["cnf"] = json!({ "jkt": client.jkt() });
    let token = key.sign(&claims);
    let dpop = DpopSettings::new("https://api.example.test")
        .unwrap()
        .mode(DpopMode::Required);
    let inner = Router::new()
        .route("/orders", get(scheme_of))
        .route("/reports", get(scheme_and_reports))
        .route_layer(ScopeLayer::any_valid_token(&validator).dpop(dpop));
    let app = Router::new().nest("/api/v1", inner);
    let send = |proof: String, uri: &'static str| {
        let app = app.clone();
        let token = token.clone();
        async move {
            let request = Request::get(uri)
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("dpop", proof)
                .body(Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|value| value.to_str().unwrap().to_owned());
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                String::from_utf8(bytes.to_vec()).unwrap(),
                challenge,
            )
        }
    };
    let full = "https://api.example.test/api/v1/orders";
    let (status, body, _) = send(client.proof(&clock, "GET", full, &token), "/api/v1/orders").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "DPoP"));
    // The path the nested router sees is not the one the client called.
    let stripped = "https://api.example.test/orders";
    let (status, _, _) = send(
        client.proof(&clock, "GET", stripped, &token),
        "/api/v1/orders",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A refusal made in the handler challenges with the scheme the token came with.
    let reports = "https://api.example.test/api/v1/reports";
    let (status, _, challenge) = send(
        client.proof(&clock, "GET", reports, &token),
        "/api/v1/reports",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = challenge.unwrap();
    assert!(
        challenge.starts_with(
            r#"DPoP realm="api", error="insufficient_scope", scope="reports:all:read""#
        ),
        "{challenge}"
    );
    assert!(challenge.contains("algs="), "{challenge}");
}

#[tokio::test]
async fn a_bearer_request_is_seen_as_bearer_by_handlers() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let dpop = DpopSettings::new("https://api.example.test").unwrap();
    let app = Router::new()
        .route("/me", get(scheme_of))
        .route("/reports", get(scheme_and_reports))
        .route_layer(ScopeLayer::any_valid_token(&validator).dpop(dpop));
    let token = key.sign(&idp.claims(&clock));
    assert_eq!(
        send(&app, Method::GET, "/me", Some(&token)).await,
        (StatusCode::OK, AuthScheme::Bearer.as_str().to_owned())
    );
    // A refusal made in the handler challenges the scheme the token came with.
    let response = app
        .clone()
        .oneshot(
            Request::get("/reports")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenges: Vec<_> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert_eq!(
        challenges,
        [r#"Bearer realm="api", error="insufficient_scope", scope="reports:all:read""#]
    );
}
