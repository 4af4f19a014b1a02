//! Heap allocations on the warm path (issue 22, item 1), counted: the validator's own check of
//! a token it verified before allocates nothing, and the layer adds only what handing the
//! principal to the route through `http::Extensions` costs (three on a request without
//! extensions). Issue 22 asks for none at all; this test keeps the count from growing. One test in its own binary: the counting
//! allocator sees every thread, so nothing else may run beside it.

#![allow(clippy::unwrap_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

use std::alloc::System;
use std::convert::Infallible;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use scopegate_validator::MockClock;
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use support::{FakeIdp, SigningKey};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_scopegate::ScopeLayer;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ROUNDS: usize = 10_000;

/// The route: answers without allocating (an empty body, no headers).
async fn route(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::new())))
}

fn request(token: &str) -> Request<Full<Bytes>> {
    Request::get("/profile")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn the_warm_path_allocates_only_the_principals_place_in_the_request() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let mut claims = idp.claims(&clock);
    claims["scope"] = json!("akamai:social_profile:read");
    let token = key.sign(&claims);
    let layer = ScopeLayer::all_of(&validator, ["akamai:social_profile:read"]).unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service_fn(route);

    // Verified once: from here on the token is warm.
    let first = service
        .ready()
        .await
        .unwrap()
        .call(request(&token))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    validator.validate(&token).await.unwrap();

    // The validator alone.
    let region = Region::new(ALLOCATOR);
    for _ in 0..ROUNDS {
        let principal = validator.validate(&token).await.unwrap();
        assert!(principal.subject().is_some());
    }
    let validator_allocations = region.change().allocations;

    // Through the layer; the requests are built before counting.
    let mut requests: Vec<_> = (0..ROUNDS).map(|_| request(&token)).collect();
    let region = Region::new(ALLOCATOR);
    while let Some(request) = requests.pop() {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let layer_allocations = region.change().allocations;

    println!(
        "validator: {validator_allocations} allocations in {ROUNDS}; layer: {layer_allocations}"
    );
    // No allocation per validation at all: a cache hit clones an `Arc`, nothing more.
    assert_eq!(
        validator_allocations, 0,
        "the validator's warm path allocated {validator_allocations} times in {ROUNDS} validations"
    );
    // `http::Extensions` allocates three times on a request's first insert — its box, its
    // table, the boxed value: the principal's `Arc`, which axum's extractors read from there.
    // Nothing else per request.
    assert!(
        layer_allocations <= 3 * ROUNDS,
        "the layer allocated {layer_allocations} times in {ROUNDS} requests"
    );

    // In an axum app, compared with a `route_layer` that does nothing (which costs allocations
    // of axum's own: 14 or 15 a request, with the features this crate or the whole workspace
    // turns on), the layer adds at most what `http::Extensions` costs: two or three, as the
    // request's extensions were already in use or not.
    let app = axum::Router::new()
        .route(
            "/noop",
            axum::routing::get(|| async { "" }).route_layer(tower::util::MapRequestLayer::new(
                |request: Request<axum::body::Body>| request,
            )),
        )
        .route(
            "/profile",
            axum::routing::get(|| async { "" }).route_layer(
                ScopeLayer::all_of(&validator, ["akamai:social_profile:read"]).unwrap(),
            ),
        );
    let axum_request = |path: &str| {
        Request::get(path)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let mut per_route = Vec::new();
    for path in ["/noop", "/profile"] {
        let mut requests: Vec<_> = (0..ROUNDS).map(|_| axum_request(path)).collect();
        let mut app = app.clone();
        let region = Region::new(ALLOCATOR);
        while let Some(request) = requests.pop() {
            let response = ServiceExt::<Request<axum::body::Body>>::ready(&mut app)
                .await
                .unwrap()
                .call(request)
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        per_route.push(region.change().allocations);
    }
    let [noop, protected] = per_route[..] else {
        unreachable!()
    };
    println!(
        "axum: {noop} allocations in {ROUNDS} requests through a no-op route_layer, {protected} through ScopeLayer"
    );
    assert!(
        protected <= noop + 3 * ROUNDS,
        "the layer added {} allocations to {ROUNDS} axum requests",
        protected - noop.min(protected)
    );
}
