//! Throughput of a trivial route, unprotected and protected, over real HTTP with `wrk`
//! (Debian's `wrk` package) on loopback. The variants alternate in rounds so that a noisy
//! neighbour slows all of them alike; each round's protected/unprotected ratio is reported.
//!
//! Run with: `cargo bench -p tower-scopegate --bench throughput` (needs Debian's `wrk` and
//! util-linux's `taskset`; `ROUNDS` and `SECONDS` override 5 rounds of 3 s per variant, and
//! `ONLY=warm` runs one variant, for profiling).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

use std::process::Command;

use axum::Router;
use axum::routing::get;
use scopegate_validator::MockClock;
use support::{FakeIdp, SigningKey};
use tower_scopegate::ScopeLayer;

const OPAQUE: &str = "q9Xv3kz7Jd1oWm2Lr8Tn5Yb0Hc4Fa6Se_Ug-Pi7Ko1Zx";

struct Variant {
    name: &'static str,
    path: &'static str,
    token: Option<String>,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Requests per second that `wrk` measured.
fn wrk(base: &str, variant: &Variant, seconds: usize) -> f64 {
    // wrk on core 0, the API on core 1 (see `main`): neither steals the other's time.
    let mut command = Command::new("taskset");
    command.args([
        "-c",
        "0",
        "wrk",
        "-t1",
        "-c32",
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(token) = &variant.token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command
        .arg(format!("{base}{}", variant.path))
        .output()
        .expect("wrk is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "{} answered errors:\n{text}",
        variant.name
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // This process (and every thread it starts from now on) on core 1.
    let pinned = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        pinned,
        "taskset (util-linux) could not pin the API to core 1"
    );
    let rounds = env_number("ROUNDS", 5);
    let seconds = env_number("SECONDS", 3);
    // The fake IdP on its own runtime; the API on a one-thread runtime, so that the API gets
    // one core and wrk the other.
    let idp_runtime = tokio::runtime::Runtime::new().unwrap();
    let key = SigningKey::es256("bench");
    let clock = MockClock::at_system_time();
    let (idp, jwt) = idp_runtime.block_on(async {
        let idp = FakeIdp::start(&[&key]).await;
        idp.set_answer(OPAQUE, idp.active_answer(&clock, 3600));
        let jwt = key.sign(&idp.claims(&clock));
        (idp, jwt)
    });
    let warm = idp.introspecting_validator(&clock).build().unwrap();
    let cold = idp
        .validator_builder(&clock)
        .without_verified_token_cache()
        .build()
        .unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            warm.refresh_keys().await.unwrap();
            cold.refresh_keys().await.unwrap();
            let requirement = "akamai:social_profile:read";
            let app = Router::new()
                .route("/unprotected", get(|| async { "ok" }))
                .route(
                    "/noop",
                    get(|| async { "ok" }).route_layer(tower::util::MapRequestLayer::new(
                        |request: axum::http::Request<axum::body::Body>| request,
                    )),
                )
                .route(
                    "/warm",
                    get(|| async { "ok" })
                        .route_layer(ScopeLayer::all_of(&warm, [requirement]).unwrap()),
                )
                .route(
                    "/cold",
                    get(|| async { "ok" })
                        .route_layer(ScopeLayer::all_of(&cold, [requirement]).unwrap()),
                )
                .route(
                    "/opaque",
                    get(|| async { "ok" })
                        .route_layer(ScopeLayer::all_of(&warm, [requirement]).unwrap()),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let base = format!("http://{}", receiver.recv().unwrap());
    let variants = [
        // The same request bytes as the protected variants: only the layer differs.
        Variant {
            name: "unprotected (same header)",
            path: "/unprotected",
            token: Some(jwt.clone()),
        },
        Variant {
            name: "no-op route_layer (same header)",
            path: "/noop",
            token: Some(jwt.clone()),
        },
        Variant {
            name: "protected, warm JWT (ES256)",
            path: "/warm",
            token: Some(jwt.clone()),
        },
        Variant {
            name: "protected, cold JWT (cache off)",
            path: "/cold",
            token: Some(jwt),
        },
        Variant {
            name: "protected, cached opaque",
            path: "/opaque",
            token: Some(OPAQUE.to_owned()),
        },
    ];
    // For profiling one variant: `ONLY=<path without slash>` runs just that one.
    if let Ok(only) = std::env::var("ONLY") {
        let variant = variants
            .iter()
            .find(|variant| variant.path[1..] == only)
            .expect("a variant");
        println!(
            "{}: {:.0} req/s",
            variant.name,
            wrk(&base, variant, seconds)
        );
        return;
    }
    for variant in &variants {
        wrk(&base, variant, 1); // warm-up, and a check that every route answers 200
    }
    let mut rates = vec![Vec::new(); variants.len()];
    let mut ratios = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let mut this_round = vec![0.0; variants.len()];
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            this_round[index] = wrk(&base, &variants[index], seconds);
        }
        for (index, rate) in this_round.iter().enumerate() {
            rates[index].push(*rate);
            ratios[index].push(rate / this_round[0]);
        }
    }
    println!(
        "wrk -t1 -c32 -d{seconds}s on core 0, API (one thread) on core 1, {rounds} rounds, variants rotated"
    );
    println!(
        "{:34} {:>12} {:>10} {:>17}",
        "variant", "req/s", "ratio", "ratio min–max"
    );
    for (index, variant) in variants.iter().enumerate() {
        let (low, high) = ratios[index]
            .iter()
            .fold((f64::MAX, f64::MIN), |(low, high), ratio| {
                (low.min(*ratio), high.max(*ratio))
            });
        println!(
            "{:34} {:>12.0} {:>9.3}× {:>8.3}–{:.3}",
            variant.name,
            median(&mut rates[index]),
            median(&mut ratios[index]),
            low,
            high
        );
    }
    drop(idp);
}
