//! The layer's own cost, without HTTP: one request through an axum router, with and without
//! the layer (warm JWT), and through a bare `service_fn`.
//!
//! Run with: `cargo bench -p tower-scopegate --bench layer`

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::handler::Handler as _;
use axum::http::{Request, Response};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use scopegate_validator::MockClock;
use support::{FakeIdp, SigningKey};
use tower::{ServiceBuilder, ServiceExt};
use tower_scopegate::ScopeLayer;

fn request(token: &str) -> Request<Body> {
    Request::get("/r")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::es256("bench");
    let clock = MockClock::at_system_time();
    let (idp, validator, token) = runtime.block_on(async {
        let idp = FakeIdp::start(&[&key]).await;
        let validator = idp.validator(&clock);
        let token = key.sign(&idp.claims(&clock));
        validator.validate(&token).await.unwrap();
        (idp, validator, token)
    });
    let scope = || ScopeLayer::all_of(&validator, ["akamai:social_profile:read"]).unwrap();
    let plain = Router::new().route("/r", get(|| async { "ok" }));
    let protected = Router::new().route("/r", get(|| async { "ok" }).route_layer(scope()));
    let noop = Router::new().route(
        "/r",
        get(|| async { "ok" }).route_layer(tower::util::MapRequestLayer::new(
            |request: Request<Body>| request,
        )),
    );
    let handler_layered = Router::new().route("/r", get((|| async { "ok" }).layer(scope())));
    let echo = |_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::from("ok"))) };
    let bare = ServiceBuilder::new().service_fn(echo);
    let layered = ServiceBuilder::new().layer(scope()).service_fn(echo);

    let mut group = c.benchmark_group("layer");
    group.bench_function("axum route", |b| {
        b.iter(|| {
            runtime
                .block_on(plain.clone().oneshot(request(&token)))
                .unwrap()
        })
    });
    group.bench_function("axum route + ScopeLayer (warm JWT)", |b| {
        b.iter(|| {
            runtime
                .block_on(protected.clone().oneshot(request(&token)))
                .unwrap()
        })
    });
    group.bench_function("axum route + no-op route_layer", |b| {
        b.iter(|| {
            runtime
                .block_on(noop.clone().oneshot(request(&token)))
                .unwrap()
        })
    });
    group.bench_function("axum route + Handler::layer(ScopeLayer) (warm JWT)", |b| {
        b.iter(|| {
            runtime
                .block_on(handler_layered.clone().oneshot(request(&token)))
                .unwrap()
        })
    });
    group.bench_function("service_fn", |b| {
        b.iter(|| runtime.block_on(bare.oneshot(request(&token))).unwrap())
    });
    group.bench_function("service_fn + ScopeLayer (warm JWT)", |b| {
        b.iter(|| {
            runtime
                .block_on(layered.clone().oneshot(request(&token)))
                .unwrap()
        })
    });
    group.bench_function("validate (warm JWT)", |b| {
        b.iter(|| runtime.block_on(validator.validate(&token)).unwrap())
    });
    group.finish();
    drop(idp);
}

criterion_group!(benches, layer);
criterion_main!(benches);
