//! The layer's outcome counter moves for each outcome, under the requirement that applied, and
//! no label holds a token, a user or a request path. A recorder is process-wide, so these tests
//! have a binary of their own; each uses a requirement no other test uses (its scope names the
//! test) and compares values before and after what it does. The fake IdP speaks real HTTP on
//! loopback.

#![allow(clippy::unwrap_used)]

#[path = "../../validator/tests/support/recorder.rs"]
mod recorder;
#[path = "../../validator/tests/support/mod.rs"]
mod support;

use std::convert::Infallible;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use recorder::{Metrics, metrics};
use scopegate_validator::{InvalidToken, MockClock, Requirement, Validator};
use serde_json::json;
use support::{FakeIdp, Mode, SigningKey};
use tower::{ServiceBuilder, ServiceExt};
use tower_scopegate::{DpopSettings, ScopeLayer};

const OUTCOMES: &str = "scopegate_auth_requests_total";

struct Setup {
    metrics: &'static Metrics,
    idp: FakeIdp,
    clock: MockClock,
    key: SigningKey,
    validator: Validator,
}

/// The recorder first: a layer or validator built before it would record nothing.
async fn setup() -> Setup {
    let metrics = metrics();
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    Setup {
        metrics,
        idp,
        clock,
        key,
        validator,
    }
}

impl Setup {
    fn token_with(&self, changes: serde_json::Value) -> String {
        let mut claims = self.idp.claims(&self.clock);
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        self.key.sign(&claims)
    }

    fn token(&self, scope: &str) -> String {
        self.token_with(json!({ "scope": scope }))
    }

    /// Requests counted under `requirement` with `outcome` (and `reason`, if given).
    fn counted(&self, requirement: &str, outcome: &str, reason: Option<&str>) -> u64 {
        let mut labels = vec![("requirement", requirement), ("outcome", outcome)];
        labels.extend(reason.map(|reason| ("reason", reason)));
        self.metrics.counter(OUTCOMES, &labels)
    }

    fn all_counted(&self, requirement: &str) -> u64 {
        self.metrics
            .counter(OUTCOMES, &[("requirement", requirement)])
    }
}

async fn echo(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("ok")))
}

async fn status(layer: &ScopeLayer, path: &str, authorization: &[&str]) -> StatusCode {
    let mut request = Request::get(path);
    for value in authorization {
        request = request.header(AUTHORIZATION, *value);
    }
    let request = request.body(Full::default()).unwrap();
    ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(echo)
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn each_outcome_is_counted_under_the_requirement_of_the_route() {
    let setup = setup().await;
    let scope = "metrics_outcomes:orders:read";
    let requirement = Requirement::all_of([scope]).unwrap();
    let label = requirement.to_string();
    assert_eq!(label, format!("all of [{scope}]"));
    let layer = ScopeLayer::new(&setup.validator, requirement);
    let expired = {
        let past = setup.idp.claims(&setup.clock)["iat"].as_u64().unwrap() - 3600;
        setup.token_with(json!({"scope": scope, "iat": past - 60, "nbf": past - 60, "exp": past}))
    };
    let good = setup.token(scope);
    let (signed, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", support::b64([9u8; 64]));
    let elsewhere = setup.token_with(json!({"scope": scope, "aud": "https://other.example.test"}));
    let unknown_key = SigningKey::es256("not-published").sign(&setup.idp.claims(&setup.clock));
    let cases: Vec<(Vec<String>, StatusCode, &str, Option<&str>)> = vec![
        (vec![bearer(&good)], StatusCode::OK, "accepted", None),
        // The same token again, from the cache: the fast path counts too.
        (vec![bearer(&good)], StatusCode::OK, "accepted", None),
        (vec![], StatusCode::UNAUTHORIZED, "no_token", None),
        (
            vec!["Basic dXNlcjpwYXNz".into()],
            StatusCode::UNAUTHORIZED,
            "no_token",
            None,
        ),
        (
            vec![bearer(&good), bearer(&good)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
        ),
        (
            vec!["Bearer a\"b".into()],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
        ),
        (
            vec![bearer(&expired)],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("expired"),
        ),
        (
            vec![bearer(&forged)],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("bad_signature"),
        ),
        (
            vec![bearer(&elsewhere)],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("wrong_audience"),
        ),
        (
            vec![bearer(&unknown_key)],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("unknown_key"),
        ),
        (
            vec![bearer("a.b.c")],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("malformed"),
        ),
        (
            vec![bearer("opaque-never-issued-1")],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("inactive"),
        ),
        (
            vec![bearer(&setup.token("openid"))],
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            None,
        ),
    ];
    for (authorization, expected, outcome, reason) in cases {
        let before = (
            setup.counted(&label, outcome, reason),
            setup.all_counted(&label),
        );
        let headers: Vec<&str> = authorization.iter().map(String::as_str).collect();
        assert_eq!(
            status(&layer, "/orders", &headers).await,
            expected,
            "{outcome} {reason:?}"
        );
        assert_eq!(
            (
                setup.counted(&label, outcome, reason),
                setup.all_counted(&label)
            ),
            (before.0 + 1, before.1 + 1),
            "{outcome} {reason:?}: counted once, under its outcome only"
        );
    }

    setup.idp.set_introspection_mode(Mode::Status(500));
    let before = setup.counted(&label, "unavailable", None);
    let answer = status(&layer, "/orders", &["Bearer opaque-during-outage-2"]).await;
    assert_eq!(answer, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(setup.counted(&label, "unavailable", None), before + 1);
}

#[tokio::test]
async fn a_per_path_layer_counts_under_the_requirement_that_applied() {
    let setup = setup().await;
    let read = Requirement::all_of(["metrics_per_path:orders:read"]).unwrap();
    let cancel =
        Requirement::any_of(["metrics_per_path:orders:write", "metrics_per_path:admin"]).unwrap();
    let (read_label, cancel_label) = (read.to_string(), cancel.to_string());
    let unlisted_label = Requirement::deny_all().to_string();
    let layer = ScopeLayer::per_path(
        &setup.validator,
        [("/shop.Orders/Get", read), ("/shop.Orders/Cancel", cancel)],
    );
    let reader = bearer(&setup.token("metrics_per_path:orders:read"));
    let before = (
        setup.counted(&read_label, "accepted", None),
        setup.counted(&cancel_label, "insufficient_scope", None),
        setup.counted(&unlisted_label, "insufficient_scope", None),
    );
    assert_eq!(
        status(&layer, "/shop.Orders/Get", &[&reader]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&layer, "/shop.Orders/Get", &[&reader]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&layer, "/shop.Orders/Cancel", &[&reader]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&layer, "/shop.Orders/Refund", &[&reader]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        (
            setup.counted(&read_label, "accepted", None),
            setup.counted(&cancel_label, "insufficient_scope", None),
            setup.counted(&unlisted_label, "insufficient_scope", None),
        ),
        (before.0 + 2, before.1 + 1, before.2 + 1)
    );
}

#[tokio::test]
async fn an_optional_layer_counts_anonymous_requests_apart() {
    let setup = setup().await;
    let requirement = Requirement::all_of(["metrics_optional:catalogue:read"]).unwrap();
    let label = requirement.to_string();
    let layer = ScopeLayer::new(&setup.validator, requirement).optional();
    let before = (
        setup.counted(&label, "anonymous", None),
        setup.counted(&label, "accepted", None),
        setup.counted(&label, "invalid_token", None),
    );
    assert_eq!(status(&layer, "/catalogue", &[]).await, StatusCode::OK);
    let reader = bearer(&setup.token("metrics_optional:catalogue:read"));
    assert_eq!(
        status(&layer, "/catalogue", &[&reader]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&layer, "/catalogue", &["Bearer a.b.c"]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        (
            setup.counted(&label, "anonymous", None),
            setup.counted(&label, "accepted", None),
            setup.counted(&label, "invalid_token", None),
        ),
        (before.0 + 1, before.1 + 1, before.2 + 1)
    );
}

#[tokio::test]
async fn dpop_refusals_are_counted_under_their_own_outcomes() {
    let setup = setup().await;
    let requirement = Requirement::all_of(["metrics_dpop:orders:read"]).unwrap();
    let label = requirement.to_string();
    let dpop = DpopSettings::new("https://api.example.test").unwrap();
    let layer = ScopeLayer::new(&setup.validator, requirement).dpop(dpop);
    // Bound to a key (its thumbprint in `cnf.jkt`), presented as a bearer token.
    let bound = setup.token_with(json!({
        "scope": "metrics_dpop:orders:read",
        "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
    }));
    let before = (
        setup.counted(&label, "invalid_token", Some("dpop_binding")),
        setup.counted(&label, "invalid_dpop_proof", None),
    );
    assert_eq!(
        status(&layer, "/orders", &[&bearer(&bound)]).await,
        StatusCode::UNAUTHORIZED
    );
    // The DPoP scheme without a proof header.
    assert_eq!(
        status(&layer, "/orders", &[&format!("DPoP {bound}")]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        (
            setup.counted(&label, "invalid_token", Some("dpop_binding")),
            setup.counted(&label, "invalid_dpop_proof", None),
        ),
        (before.0 + 1, before.1 + 1)
    );
}

#[tokio::test]
async fn labels_hold_requirements_and_fixed_words_never_a_token_a_user_or_a_path() {
    let setup = setup().await;
    let scope = "metrics_labels:orders:read";
    let app = Router::new().route(
        "/orders/{id}",
        get(|| async { "order" })
            .route_layer(ScopeLayer::all_of(&setup.validator, [scope]).unwrap()),
    );
    let good = setup.token(scope);
    let other = setup.token("openid");
    let opaque = "opaque-label-check-5Fq";
    let mut answer = setup.idp.active_answer(&setup.clock, 600);
    answer["scope"] = json!(scope);
    setup.idp.set_answer(opaque, answer);
    for authorization in [
        Some(good.as_str()),
        Some(good.as_str()),
        Some(other.as_str()),
        Some(opaque),
        Some("a.b.c"),
        None,
    ] {
        let mut request = Request::get("/orders/987654321");
        if let Some(token) = authorization {
            request = request.header(AUTHORIZATION, bearer(token));
        }
        let request = request.body(axum::body::Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    assert_eq!(
        setup.counted(&format!("all of [{scope}]"), "accepted", None),
        3
    );

    let outcomes = [
        "accepted",
        "anonymous",
        "no_token",
        "invalid_request",
        "invalid_token",
        "insufficient_scope",
        "unavailable",
        "invalid_dpop_proof",
        "use_dpop_nonce",
    ];
    let results = [
        "ok",
        "not_modified",
        "failed",
        "cooldown",
        "backoff",
        "hit",
        "miss",
        "active",
        "inactive",
    ];
    let series = setup.metrics.series();
    assert!(!series.is_empty());
    for (name, labels) in &series {
        assert!(name.starts_with("scopegate_"), "{name}");
        for (label, value) in labels {
            match label.as_str() {
                "issuer" => assert!(value.starts_with("http://127.0.0.1:"), "{name}: {value}"),
                "requirement" => assert!(
                    value.starts_with("all of [")
                        || value.starts_with("any of [")
                        || value.starts_with("empty policy"),
                    "{name}: {value}"
                ),
                "outcome" => assert!(outcomes.contains(&value.as_str()), "{name}: {value}"),
                "reason" => assert!(
                    InvalidToken::REASONS.contains(&value.as_str()) || value == "dpop_binding",
                    "{name}: {value}"
                ),
                "result" => assert!(results.contains(&value.as_str()), "{name}: {value}"),
                other => panic!("{name}: unexpected label {other}"),
            }
            for never in [
                good.as_str(),
                good.rsplit_once('.').unwrap().1,
                other.as_str(),
                opaque,
                "987654321",
                "/orders",
                "user-1",
                "client-1",
            ] {
                assert!(!value.contains(never), "{name}: {value} holds {never}");
            }
        }
    }
}
