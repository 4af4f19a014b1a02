//! What metrics cost on the warm protected route: the same route with metrics off and on, side
//! by side in one process, alternating rounds, the on/off ratio taken per round so that a noisy
//! neighbour slows both sides alike.
//!
//! A global recorder cannot be uninstalled, but the libraries take their handles when a
//! validator or a layer is built, and a handle taken while no recorder is installed stays a
//! no-op. So the "off" validator and layer are built first, then a Prometheus recorder
//! (`metrics-exporter-prometheus`, as an application would install it) goes in, then the "on"
//! validator and layer are built: both serve from one process, on one listener, at the same
//! time. The two requirements differ only in a scope's name (the token holds both), so that
//! the exposition at the end shows that "off" recorded nothing and "on" counted every request.
//!
//! 1. Over real HTTP: `wrk -t1 -c32` on core 0 against the API (one thread) on core 1, as
//!    `--bench throughput` does; `/off` and `/on` alternate in `ROUNDS` rounds of `SECONDS`.
//! 2. In-process, to see the nanoseconds: `service_fn` + `ScopeLayer`, futures polled once
//!    (a cached token never waits), timed in chunks of ~0.5 ms with the median chunk kept,
//!    off and on alternating in 41 rounds.
//!
//! Run with: `cargo bench -p tower-scopegate --bench metrics` (needs Debian's `wrk` and
//! util-linux's `taskset`; `ROUNDS` and `SECONDS` override 40 rounds of 1 s per variant: short
//! rounds keep each off/on pair close in time on a machine shared with other work).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

mod pinning;

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use scopegate_validator::{MockClock, Validator};
use serde_json::json;
use support::{FakeIdp, SigningKey};
use tower::{ServiceBuilder, ServiceExt};
use tower_scopegate::ScopeLayer;

const OFF_SCOPE: &str = "bench:metrics_off:read";
const ON_SCOPE: &str = "bench:metrics_on:read";
const IN_PROCESS_ROUNDS: usize = 41;
const REQUESTS_PER_ROUND: usize = 20_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 4], values[values.len() * 3 / 4])
}

/// Requests per second and requests completed, as `wrk` measured them.
fn wrk(url: &str, token: &str, seconds: usize) -> (f64, u64) {
    // wrk on core 0, the API on core 1 (see `main`).
    let output = Command::new("taskset")
        .args(["-c", "0", "wrk", "-t1", "-c32", &format!("-d{seconds}s")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(url)
        .output()
        .expect("wrk is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("Non-2xx"), "{url} answered errors:\n{text}");
    let rate = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let completed = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    (rate, completed)
}

/// Runs a future that must not wait (the token is cached): no executor in the measurement.
fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the measured path awaited"),
    }
}

/// Nanoseconds per request: timed in chunks of about 0.5 ms and the median chunk taken, so that
/// a chunk during which a neighbour held the core (this machine is shared) does not count.
fn time_each(requests: Vec<Request<Body>>, mut serve: impl FnMut(Request<Body>)) -> f64 {
    let mut requests = requests.into_iter().peekable();
    let mut per_request = Vec::new();
    let mut chunk = 1;
    while requests.peek().is_some() {
        let started = Instant::now();
        let mut done = 0u32;
        for request in requests.by_ref().take(chunk) {
            serve(request);
            done += 1;
        }
        per_request.push(started.elapsed().as_nanos() as f64 / f64::from(done));
        if per_request.len() == 1 {
            chunk = ((500_000.0 / per_request[0].max(1.0)) as usize).clamp(1, 1000);
        }
    }
    median(&mut per_request)
}

fn requests(token: &str) -> Vec<Request<Body>> {
    (0..REQUESTS_PER_ROUND)
        .map(|_| {
            Request::get("/r")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap()
        })
        .collect()
}

/// A validator of the IdP with the token verified once (so every request is a cache hit).
fn warm_validator(
    runtime: &tokio::runtime::Runtime,
    idp: &FakeIdp,
    clock: &MockClock,
    token: &str,
) -> Validator {
    let validator = idp.validator(clock);
    runtime.block_on(validator.validate(token)).unwrap();
    validator
}

fn main() {
    pinning::pin_to_core_1("the API");
    let rounds = env_number("ROUNDS", 40);
    let seconds = env_number("SECONDS", 1);

    let idp_runtime = tokio::runtime::Runtime::new().unwrap();
    let key = SigningKey::es256("bench");
    let clock = MockClock::at_system_time();
    let (idp, token) = idp_runtime.block_on(async {
        let idp = FakeIdp::start(&[&key]).await;
        let mut claims = idp.claims(&clock);
        claims["scope"] = json!(format!("{OFF_SCOPE} {ON_SCOPE}"));
        claims["exp"] = json!(claims["exp"].as_u64().unwrap() + 3000);
        (idp, key.sign(&claims))
    });

    // Off: built while no recorder is installed, so every handle they take is a no-op.
    let off_validator = warm_validator(&idp_runtime, &idp, &clock, &token);
    let off_layer = ScopeLayer::all_of(&off_validator, [OFF_SCOPE]).unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    let exposition = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the first recorder");
    // On: built with the Prometheus recorder installed.
    let on_validator = warm_validator(&idp_runtime, &idp, &clock, &token);
    let on_layer = ScopeLayer::all_of(&on_validator, [ON_SCOPE]).unwrap();

    // 1. Over HTTP: the API on a one-thread runtime, so that it gets one core and wrk the other.
    let (sender, receiver) = std::sync::mpsc::channel();
    let (off_route, on_route) = (off_layer.clone(), on_layer.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Router::new()
                .route("/off", get(|| async { "ok" }).route_layer(off_route))
                .route("/on", get(|| async { "ok" }).route_layer(on_route));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let base = format!("http://{}", receiver.recv().unwrap());
    let (off_url, on_url) = (format!("{base}/off"), format!("{base}/on"));
    // Warm-up, and a check that both routes answer 200.
    let mut on_completed = wrk(&on_url, &token, 1).1;
    wrk(&off_url, &token, 1);
    let (mut off_rates, mut on_rates, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let (off, on) = if round % 2 == 0 {
            let off = wrk(&off_url, &token, seconds).0;
            let on = wrk(&on_url, &token, seconds);
            (off, on)
        } else {
            let on = wrk(&on_url, &token, seconds);
            (wrk(&off_url, &token, seconds).0, on)
        };
        on_completed += on.1;
        off_rates.push(off);
        on_rates.push(on.0);
        ratios.push(on.0 / off);
    }
    let (low, high) = quartiles(&mut ratios.clone());
    println!(
        "over HTTP: wrk -t1 -c32 -d{seconds}s on core 0, API (one thread) on core 1, {rounds} rounds, off and on alternating"
    );
    println!(
        "  metrics off {:>9.0} req/s   metrics on {:>9.0} req/s   on/off {:.3}× (IQR {:.3}–{:.3}, min–max {:.3}–{:.3})",
        median(&mut off_rates),
        median(&mut on_rates),
        median(&mut ratios.clone()),
        low,
        high,
        ratios.iter().copied().fold(f64::MAX, f64::min),
        ratios.iter().copied().fold(f64::MIN, f64::max),
    );

    // 2. In-process: the layer over a bare service, on this thread.
    let echo = |_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::from("ok"))) };
    let off_service = ServiceBuilder::new().layer(off_layer).service_fn(echo);
    let on_service = ServiceBuilder::new().layer(on_layer).service_fn(echo);
    let serve = |service: &_, request| {
        let response: Response<Body> = ready(ServiceExt::<Request<Body>>::oneshot(
            Clone::clone(service),
            request,
        ))
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    };
    let (mut offs, mut ons, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..IN_PROCESS_ROUNDS {
        let mut off_ns = 0.0;
        let mut on_ns = 0.0;
        for side in [round % 2, 1 - round % 2] {
            let batch = requests(&token);
            if side == 0 {
                off_ns = time_each(batch, |request| serve(&off_service, request));
            } else {
                on_ns = time_each(batch, |request| serve(&on_service, request));
            }
        }
        offs.push(off_ns);
        ons.push(on_ns);
        ratios.push(on_ns / off_ns);
    }
    let (low, high) = quartiles(&mut ratios.clone());
    println!(
        "in-process: service_fn + ScopeLayer (warm ES256), {IN_PROCESS_ROUNDS} rounds of {REQUESTS_PER_ROUND} requests, off and on alternating"
    );
    println!(
        "  metrics off {:>7.0} ns   metrics on {:>7.0} ns   on/off {:.3}× (IQR {:.3}–{:.3})",
        median(&mut offs),
        median(&mut ons),
        median(&mut ratios),
        low,
        high
    );

    // The exposition: "on" counted every request it served, "off" nothing at all.
    let text = exposition.render();
    let value = |name: &str, labels: &[&str]| {
        text.lines()
            .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
            .find_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
    };
    let accepted = |scope: &str| {
        let requirement = format!("requirement=\"all of [{scope}]\"");
        value(
            "scopegate_auth_requests_total",
            &[&requirement, "outcome=\"accepted\""],
        )
    };
    let counted = accepted(ON_SCOPE).expect("the on layer's counter");
    let hits = value(
        "scopegate_verified_cache_requests_total",
        &["result=\"hit\""],
    )
    .expect("the on validator's cache hits");
    assert!(hits >= counted, "{hits} hits for {counted} requests");
    let in_process = (IN_PROCESS_ROUNDS * REQUESTS_PER_ROUND) as u64;
    assert!(
        counted >= on_completed + in_process,
        "counted {counted}, served at least {on_completed} + {in_process}"
    );
    assert_eq!(accepted(OFF_SCOPE), None, "the off layer recorded nothing");
    println!(
        "exposition: the on layer counted {counted} accepted requests (wrk completed {on_completed}, in-process {in_process}), its validator {hits} cache hits; the off layer no series"
    );
    drop(idp);
}
