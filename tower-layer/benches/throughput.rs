//! Throughput of a trivial route, unprotected and protected (by `route_layer`, and by
//! `Handler::layer` on the handler: `handler`), over real HTTP with `wrk`
//! (Debian's `wrk` package) on loopback, and the same route behind the `jwt-authorizer` crate
//! (its latest release, built from `benchmarks/jwt-authorizer-api` as a program of its own, on
//! the same core, with the same tokens and the same scope check). The variants alternate in
//! rounds so that a noisy neighbour slows all of them alike; each round's ratios are reported.
//!
//! Run with: `cargo bench -p tower-scopegate --bench throughput` (needs Debian's `wrk` and
//! util-linux's `taskset`; `ROUNDS` and `SECONDS` override 5 rounds of 3 s per variant, and
//! `ONLY=warm` runs one variant, for profiling; `CALIBRATE=1` runs the warm layer next to
//! layers that only burn a fixed CPU time, to show what a layer's nanoseconds cost the ratio).
//! `LAYOUT`: `one-core` (default: wrk on core 0, the API with one thread on core 1) or
//! `machine` (nothing pinned: the API with two worker threads and wrk share both cores, as on
//! a small server).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

mod pinning;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use axum::Router;
use axum::handler::Handler as _;
use axum::routing::get;
use scopegate_validator::MockClock;
use support::{FakeIdp, SigningKey};
use tower_scopegate::ScopeLayer;

/// The CPU-only layers of `CALIBRATE=1`, in nanoseconds per request.
const SPIN_NANOS: [u64; 5] = [100, 200, 300, 450, 600];

/// Busy for `duration`, touching no memory: a layer's CPU time without its cache footprint.
fn spin(duration: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

const OPAQUE: &str = "q9Xv3kz7Jd1oWm2Lr8Tn5Yb0Hc4Fa6Se_Ug-Pi7Ko1Zx";

/// Where wrk and the APIs run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// wrk on core 0, each API on core 1 with one thread.
    OneCore,
    /// Nothing pinned; our API with two worker threads.
    Machine,
}

impl Layout {
    fn from_env() -> Self {
        match std::env::var("LAYOUT").as_deref() {
            Ok("machine") => Self::Machine,
            Ok("one-core") | Err(_) => Self::OneCore,
            Ok(other) => panic!(
                "LAYOUT is `one-core` or `machine`, as for the issuance bench, not {other:?}"
            ),
        }
    }

    /// `command` to run on `core` when pinned, as is otherwise.
    fn on_core(self, core: &str, command: &str) -> Command {
        match self {
            Self::OneCore => {
                let mut pinned = Command::new("taskset");
                pinned.args(["-c", core, command]);
                pinned
            }
            Self::Machine => Command::new(command),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::OneCore => "wrk on core 0, API (one thread) on core 1",
            Self::Machine => {
                "nothing pinned: wrk and the API (two worker threads) share both cores"
            }
        }
    }
}

struct Variant {
    name: &'static str,
    /// Full URL (the jwt-authorizer program listens elsewhere).
    url: String,
    token: Option<String>,
    /// The unprotected variant sending the same bytes: the ratio's denominator.
    baseline: usize,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Requests per second that `wrk` measured.
fn wrk(layout: Layout, variant: &Variant, seconds: usize) -> f64 {
    // Pinned: wrk on core 0, the API on core 1 (see `main`): neither steals the other's time.
    let mut command = layout.on_core("0", "wrk");
    command.args(["-t1", "-c32", &format!("-d{seconds}s"), "--latency"]);
    if let Some(token) = &variant.token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command
        .arg(&variant.url)
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

/// Builds (release) and starts the jwt-authorizer program on core 1; returns it and its URL.
fn start_jwt_authorizer(layout: Layout, issuer: &str) -> (Child, String) {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(format!(
            "{workspace}/benchmarks/jwt-authorizer-api/Cargo.toml"
        ))
        .arg("--target-dir")
        .arg(format!("{workspace}/target/peers"))
        .status()
        .expect("cargo builds the jwt-authorizer program");
    assert!(built.success(), "the jwt-authorizer program did not build");
    let program = format!("{workspace}/target/peers/release/jwt-authorizer-api");
    let mut child = layout
        .on_core("1", &program)
        .env("JWKS_URL", format!("{issuer}/jwks"))
        .env("ISSUER", issuer)
        .env("AUDIENCE", support::AUDIENCE)
        .env("REQUIRED_SCOPE", "akamai:social_profile:read")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the jwt-authorizer program starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, format!("http://{}", line.trim()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let layout = Layout::from_env();
    if layout == Layout::OneCore {
        pinning::pin_to_core_1("the API");
    }
    let rounds = env_number("ROUNDS", 5);
    let seconds = env_number("SECONDS", 3);
    // The fake IdP on its own runtime; the API on a one-thread runtime, so that the API gets
    // one core and wrk the other.
    let idp_runtime = tokio::runtime::Runtime::new().unwrap();
    let key = SigningKey::es256("bench");
    let rsa_key = SigningKey::rs256("bench-rs");
    let clock = MockClock::at_system_time();
    let (idp, jwt, rsa_jwt) = idp_runtime.block_on(async {
        let idp = FakeIdp::start(&[&key, &rsa_key]).await;
        idp.set_answer(OPAQUE, idp.active_answer(&clock, 3600));
        // Valid for an hour of real time (jwt-authorizer reads the system clock).
        let mut claims = idp.claims(&clock);
        claims["exp"] = (claims["exp"].as_u64().unwrap() + 3000).into();
        (idp, key.sign(&claims), rsa_key.sign(&claims))
    });
    let (mut jwt_authorizer, jwt_authorizer_url) = start_jwt_authorizer(layout, &idp.issuer);
    let warm = idp.introspecting_validator(&clock).build().unwrap();
    let cold = idp
        .validator_builder(&clock)
        .without_verified_token_cache()
        .build()
        .unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match layout {
            Layout::OneCore => tokio::runtime::Builder::new_current_thread(),
            Layout::Machine => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(2);
                builder
            }
        }
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
                    "/warm-handler",
                    get((|| async { "ok" })
                        .layer(ScopeLayer::all_of(&warm, [requirement]).unwrap())),
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
            let app = SPIN_NANOS.iter().fold(app, |app, nanos| {
                app.route(
                    &format!("/spin/{nanos}"),
                    get(|| async { "ok" }).route_layer(tower::util::MapRequestLayer::new(
                        move |request: axum::http::Request<axum::body::Body>| {
                            spin(std::time::Duration::from_nanos(*nanos));
                            request
                        },
                    )),
                )
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let base = format!("http://{}", receiver.recv().unwrap());
    let at = |path: &str| format!("{base}{path}");
    let opaque = OPAQUE.to_owned();
    let peer = format!("{jwt_authorizer_url}/protected");
    let variant = |name, url, token: &String, baseline| Variant {
        name,
        url,
        token: Some(token.clone()),
        baseline,
    };
    // Each protected variant is compared with the unprotected route receiving the same
    // request bytes (an RS256 token is ~300 bytes longer than an ES256 one): only the layer
    // differs.
    let variants = [
        variant("unprotected (ES256 header)", at("/unprotected"), &jwt, 0),
        variant("no-op route_layer", at("/noop"), &jwt, 0),
        variant("scopegate warm ES256", at("/warm"), &jwt, 0),
        variant("scopegate cold ES256 (cache off)", at("/cold"), &jwt, 0),
        variant("jwt-authorizer ES256", peer.clone(), &jwt, 0),
        variant(
            "unprotected (RS256 header)",
            at("/unprotected"),
            &rsa_jwt,
            5,
        ),
        variant("scopegate warm RS256", at("/warm"), &rsa_jwt, 5),
        variant("scopegate cold RS256 (cache off)", at("/cold"), &rsa_jwt, 5),
        variant("jwt-authorizer RS256", peer, &rsa_jwt, 5),
        variant(
            "unprotected (opaque header)",
            at("/unprotected"),
            &opaque,
            9,
        ),
        variant("scopegate cached opaque", at("/opaque"), &opaque, 9),
        variant(
            "scopegate warm ES256 (handler)",
            at("/warm-handler"),
            &jwt,
            0,
        ),
    ];
    // Side-by-side pairs: (scopegate variant, jwt-authorizer variant).
    let pairs = [(2, 4), (3, 4), (6, 8), (7, 8)];
    // `CALIBRATE=1`: what a layer that only burns CPU costs the ratio — the first three variants
    // (unprotected, no-op layer, warm layer), then the spinning layers; nothing side by side.
    let (variants, pairs): (Vec<Variant>, &[(usize, usize)]) =
        if std::env::var_os("CALIBRATE").is_some() {
            let spinning = SPIN_NANOS.iter().map(|nanos| {
                let name: &'static str = format!("no-op layer spinning {nanos} ns").leak();
                variant(name, at(&format!("/spin/{nanos}")), &jwt, 0)
            });
            (variants.into_iter().take(3).chain(spinning).collect(), &[])
        } else {
            (variants.into(), &pairs)
        };
    // For profiling one variant: `ONLY=<part of its name>` runs just that one.
    if let Ok(only) = std::env::var("ONLY") {
        let variant = variants
            .iter()
            .find(|variant| variant.name.contains(&only))
            .expect("a variant");
        println!(
            "{}: {:.0} req/s",
            variant.name,
            wrk(layout, variant, seconds)
        );
        jwt_authorizer.kill().unwrap();
        return;
    }
    for variant in &variants {
        wrk(layout, variant, 1); // warm-up, and a check that every route answers 200
    }
    let mut rates = vec![Vec::new(); variants.len()];
    let mut ratios = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let mut this_round = vec![0.0; variants.len()];
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            this_round[index] = wrk(layout, &variants[index], seconds);
        }
        for (index, rate) in this_round.iter().enumerate() {
            rates[index].push(*rate);
            ratios[index].push(rate / this_round[variants[index].baseline]);
        }
    }
    // Per-round rates, in round order (the medians below sort `rates`).
    let round_rates = rates.clone();
    println!(
        "wrk -t1 -c32 -d{seconds}s, {}, {rounds} rounds, variants rotated",
        layout.describe()
    );
    println!(
        "{:34} {:>12} {:>10} {:>17}",
        "variant", "req/s", "÷ unprot.", "ratio min–max"
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
    if !pairs.is_empty() {
        println!("\nside by side (ratio of request rates in each round; median, min–max):");
    }
    for &(ours, theirs) in pairs {
        let mut per_round: Vec<f64> = round_rates[ours]
            .iter()
            .zip(&round_rates[theirs])
            .map(|(ours, theirs)| ours / theirs)
            .collect();
        let (low, high) = per_round
            .iter()
            .fold((f64::MAX, f64::MIN), |(low, high), ratio| {
                (low.min(*ratio), high.max(*ratio))
            });
        println!(
            "{:34} / {:22} {:>7.3}×  {:.3}–{:.3}",
            variants[ours].name,
            variants[theirs].name,
            median(&mut per_round),
            low,
            high
        );
    }
    jwt_authorizer.kill().unwrap();
    drop(idp);
}
