//! Token service throughput over real HTTP with `wrk` (Debian's package) on loopback:
//! client_credentials issuance (opaque, JWT RS256, JWT ES256) and introspection (opaque, JWT),
//! on the embedded SQLite store (a file, WAL) and on Postgres. The variants alternate in rounds
//! so that a noisy neighbour slows all of them alike. Also reports the bare signing rate, so
//! that JWT issuance can be read against the signature's own cost, and CPU time per request.
//!
//! Run with: `cargo bench -p scopegate-token-service --bench issuance` (needs `wrk` and
//! util-linux's `taskset`). Settings (environment):
//! - `ROUNDS`, `SECONDS`: 3 rounds of 3 s per variant;
//! - `STORES`: `sqlite,postgres` (Postgres: a fresh database on the server named by
//!   `SCOPEGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`);
//! - `ONLY`: only the variants whose name holds this text (for profiling);
//! - `LAYOUT`: `machine` (default: the service with two worker threads and wrk share both
//!   cores, as on a small server) or `one-core` (the service on core 1 with one worker thread,
//!   wrk on core 0);
//! - `METRICS`: `off` (default: no recorder installed) or `compare`: each variant runs twice per
//!   round, with the Prometheus recorder recording and with it switched off, and the ratio of
//!   the two rates is reported per round — the cost of the metrics;
//! - `PEER`: `none` (default) or `node-oidc-provider`: also starts node-oidc-provider (the
//!   version pinned in `benchmarks/node-oidc-provider/`, installed there with `npm ci` when
//!   missing; needs `node` and `npm`), set up like this service's opaque client and API, and
//!   runs its opaque issuance and introspection in the same rounds; the ratio of this service's
//!   rate to its rate is taken per round and reported as median and min–max. Its CPU per
//!   request is its process's. In `one-core`, node runs on core 1 like the service.
//!
//! Every issuance sends `scope` (both scopes of the client), as node-oidc-provider needs for
//! a token to carry any.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/postgres.rs"]
#[allow(unreachable_pub, dead_code)]
mod postgres;

#[path = "issuance/node_oidc_provider.rs"]
mod node_oidc_provider;

#[path = "../../tower-layer/benches/pinning/mod.rs"]
mod pinning;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use base64::Engine;
use scopegate_token_service::config::Config;
use scopegate_token_service::http;
use scopegate_token_service::keys::{KeyAlgorithm, SigningKey};
use scopegate_token_service::{State, store};
use scopegate_validator::SystemClock;

use node_oidc_provider::NodeOidcProvider;

/// The allocator the shipped binary runs on (src/main.rs).
#[global_allocator]
static ALLOCATOR: scopegate_token_service::Allocator = scopegate_token_service::Allocator;

const API: &str = "https://api.example.test";

/// Every issuance asks for both of the client's scopes (node-oidc-provider grants none
/// otherwise).
const ISSUE_FORM: &str = "grant_type=client_credentials&scope=akamai%3Asocial_profile%3Aread+akamai%3Asocial_profile%3Awrite";

/// The names the peer's variants and ours share after the `store: ` or `peer: ` prefix.
const COMPARED: [&str; 2] = ["issue opaque", "introspect opaque"];

const NODE: &str = "node-oidc-provider";

fn config(issuer: &str, storage: &str, algorithm: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "{storage}"

[signing]
algorithm = "{algorithm}"

[limits]
client_rate_limit = "1000000/s"
api_rate_limit = "1000000/s"

[[clients]]
id = "jwt-client"
secret = "jwt-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read", "akamai:social_profile:write"]
token_format = "jwt"
audience = ["{API}"]

[[clients]]
id = "opaque-client"
secret = "opaque-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read", "akamai:social_profile:write"]
token_format = "opaque"
audience = ["{API}"]

[[apis]]
id = "{API}"
secret = "api-secret"
scopes = ["akamai:social_profile"]
"#
    )
}

struct Variant {
    name: String,
    url: String,
    script: std::path::PathBuf,
    /// Whether the metrics recorder records during its runs (`METRICS=compare`).
    metrics: bool,
    /// The process serving it, when not this one (a peer), for its CPU time.
    server: Option<u32>,
}

/// The Prometheus recorder behind a switch: while off, every metric is a no-op, as with no
/// recorder at all. The token service takes its metric handles per call, so a switch between
/// two runs applies to the whole of the second.
struct Switched {
    on: std::sync::atomic::AtomicBool,
    inner: metrics_exporter_prometheus::PrometheusRecorder,
}

static SWITCH: std::sync::OnceLock<&'static Switched> = std::sync::OnceLock::new();

fn record_metrics(on: bool) {
    if let Some(switch) = SWITCH.get() {
        switch.on.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl metrics::Recorder for &'static Switched {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        description: metrics::SharedString,
    ) {
        self.inner.describe_counter(key, unit, description);
    }
    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        description: metrics::SharedString,
    ) {
        self.inner.describe_gauge(key, unit, description);
    }
    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        description: metrics::SharedString,
    ) {
        self.inner.describe_histogram(key, unit, description);
    }
    fn register_counter(
        &self,
        key: &metrics::Key,
        metadata: &metrics::Metadata<'_>,
    ) -> metrics::Counter {
        if self.on.load(std::sync::atomic::Ordering::Relaxed) {
            self.inner.register_counter(key, metadata)
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(
        &self,
        key: &metrics::Key,
        metadata: &metrics::Metadata<'_>,
    ) -> metrics::Gauge {
        if self.on.load(std::sync::atomic::Ordering::Relaxed) {
            self.inner.register_gauge(key, metadata)
        } else {
            metrics::Gauge::noop()
        }
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        metadata: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        if self.on.load(std::sync::atomic::Ordering::Relaxed) {
            self.inner.register_histogram(key, metadata)
        } else {
            metrics::Histogram::noop()
        }
    }
}

/// Where the service and wrk run.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Service (two worker threads) and wrk share both cores.
    Machine,
    /// Service on core 1 (one worker thread), wrk on core 0.
    OneCore,
}

impl Layout {
    fn workers(self) -> usize {
        match self {
            Self::Machine => 2,
            Self::OneCore => 1,
        }
    }
}

/// `client_secret_basic`: id and secret form-encoded first (RFC 6749 §2.3.1).
fn basic(id: &str, secret: &str) -> String {
    let encode =
        |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            encode(id),
            encode(secret)
        ))
    )
}

fn script(dir: &Path, name: &str, authorization: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{body}\"\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\nwrk.headers[\"Authorization\"] = \"{authorization}\"\n"
        ),
    )
    .unwrap();
    path
}

/// CPU time (user + system) process `pid` (or this one) has used, in seconds.
fn process_cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = std::fs::read_to_string(path).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// CPU time the whole machine has been busy (every core; wrk and Postgres included), seconds.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|value| value.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: f64 = ticks.iter().take(8).sum::<f64>() - ticks[3] - ticks[4];
    busy / 100.0
}

struct Measured {
    rate: f64,
    p50: String,
    p99: String,
    service_cpu_us: f64,
    machine_cpu_us: f64,
}

fn wrk(variant: &Variant, seconds: usize, layout: Layout) -> Measured {
    let (process_before, machine_before) =
        (process_cpu_seconds(variant.server), machine_busy_seconds());
    let mut command = Command::new("taskset");
    // Machine layout: wrk may run on either core, like the service.
    command.args([
        "-c",
        if layout == Layout::OneCore {
            "0"
        } else {
            "0,1"
        },
    ]);
    let output = command
        .args([
            "wrk",
            "-t1",
            "-c32",
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&variant.script)
        .arg(&variant.url)
        .output()
        .expect("wrk is installed");
    let process = process_cpu_seconds(variant.server) - process_before;
    let machine = machine_busy_seconds() - machine_before;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "{} answered errors:\n{text}",
        variant.name
    );
    let rate: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| {
            // (taskset runs wrk: a missing wrk shows only on stderr; `benchmarks/run` installs it)
            panic!(
                "no Requests/sec in wrk output:\n{text}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let percentile = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map_or_else(|| "?".to_owned(), |value| value.trim().to_owned())
    };
    let requests = rate * seconds as f64;
    Measured {
        rate,
        p50: percentile("50%"),
        p99: percentile("99%"),
        service_cpu_us: process / requests * 1e6,
        machine_cpu_us: machine / requests * 1e6,
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Signatures per second on `threads` threads, without HTTP, JSON or a store.
fn bare_signing_rate(algorithm: KeyAlgorithm, threads: usize) -> f64 {
    let (key, _) = SigningKey::generate(algorithm).unwrap();
    let message = [b'x'; 400];
    let start = Instant::now();
    let count: u32 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut count = 0u32;
                    while start.elapsed().as_secs_f64() < 2.0 {
                        for _ in 0..20 {
                            std::hint::black_box(key.sign(&message).unwrap());
                        }
                        count += 20;
                    }
                    count
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    });
    f64::from(count) / start.elapsed().as_secs_f64()
}

async fn start_service(algorithm: &str, storage: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let config = Config::from_toml(&config(&issuer, storage, algorithm)).unwrap();
    let store = store::open(storage).await.unwrap();
    let state = State::with_store(config, store, std::sync::Arc::new(SystemClock))
        .await
        .unwrap();
    // Served as the binary serves (its background jobs, peer addresses, socket options).
    tokio::spawn(async move {
        http::serve(state, listener, std::future::pending())
            .await
            .unwrap();
    });
    issuer
}

async fn get_token(issuer: &str, client: (&str, &str)) -> String {
    let response = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .header("authorization", basic(client.0, client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(ISSUE_FORM)
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = response.json().await.unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

/// The five variants of one store: an RS256 and an ES256 service on it.
async fn variants_on(store_name: &str, storages: [&str; 2], dir: &Path) -> Vec<Variant> {
    let rs256 = start_service("RS256", storages[0]).await;
    let es256 = start_service("ES256", storages[1]).await;
    let opaque_token = get_token(&rs256, ("opaque-client", "opaque-secret")).await;
    let jwt_token = get_token(&es256, ("jwt-client", "jwt-secret")).await;
    let form = ISSUE_FORM;
    let variant = |name: &str, url: String, authorization: String, body: &str| Variant {
        name: format!("{store_name}: {name}"),
        url,
        script: script(
            dir,
            &format!("{store_name}-{}", name.replace(' ', "-")),
            &authorization,
            body,
        ),
        metrics: false,
        server: None,
    };
    vec![
        variant(
            "issue opaque",
            format!("{rs256}/token"),
            basic("opaque-client", "opaque-secret"),
            form,
        ),
        variant(
            "issue JWT RS256",
            format!("{rs256}/token"),
            basic("jwt-client", "jwt-secret"),
            form,
        ),
        variant(
            "issue JWT ES256",
            format!("{es256}/token"),
            basic("jwt-client", "jwt-secret"),
            form,
        ),
        variant(
            "introspect opaque",
            format!("{rs256}/introspect"),
            basic(API, "api-secret"),
            &format!("token={opaque_token}"),
        ),
        variant(
            "introspect JWT ES256",
            format!("{es256}/introspect"),
            basic(API, "api-secret"),
            &format!("token={jwt_token}"),
        ),
    ]
}

/// node-oidc-provider's opaque issuance and introspection, asked as ours are.
async fn peer_variants(node: &NodeOidcProvider, dir: &Path) -> Vec<Variant> {
    let token = get_token(&node.url, ("opaque-client", "opaque-secret")).await;
    let variant = |name: &str, path: &str, authorization: String, body: &str| Variant {
        name: format!("{NODE}: {name}"),
        url: format!("{}{path}", node.url),
        script: script(
            dir,
            &format!("{NODE}-{}", name.replace(' ', "-")),
            &authorization,
            body,
        ),
        metrics: false,
        server: Some(node.pid()),
    };
    vec![
        variant(
            COMPARED[0],
            "/token",
            basic("opaque-client", "opaque-secret"),
            ISSUE_FORM,
        ),
        variant(
            COMPARED[1],
            "/token/introspection",
            basic(API, "api-secret"),
            &format!("token={token}"),
        ),
    ]
}

/// Per round, the rate of each of our compared variants over the peer's (`store: name`).
fn peer_ratios(
    variants: &[Variant],
    results: &[Vec<Measured>],
    stores: &str,
) -> Vec<(String, Vec<f64>)> {
    let index = |name: String| variants.iter().position(|variant| variant.name == name);
    let mut ratios = Vec::new();
    for store_name in stores.split(',') {
        for name in COMPARED {
            let (Some(ours), Some(theirs)) = (
                index(format!("{store_name}: {name}")),
                index(format!("{NODE}: {name}")),
            ) else {
                continue;
            };
            let per_round = results[ours]
                .iter()
                .zip(&results[theirs])
                .map(|(ours, theirs)| ours.rate / theirs.rate)
                .collect();
            ratios.push((format!("{store_name}: {name}"), per_round));
        }
    }
    ratios
}

/// The median, lowest and highest of a variant's per-round ratios.
fn spread(mut ratios: Vec<f64>) -> (f64, f64, f64) {
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    )
}

fn main() {
    let layout = match std::env::var("LAYOUT").as_deref() {
        Ok("one-core") => Layout::OneCore,
        Ok("machine") | Err(_) => Layout::Machine,
        Ok(other) => panic!("LAYOUT is `machine` or `one-core`, not `{other}`"),
    };
    if layout == Layout::OneCore {
        // sqlx's SQLite workers included; wrk on core 0.
        pinning::pin_to_core_1("the service");
    }
    let compare_metrics = match std::env::var("METRICS").as_deref() {
        Ok("compare") => true,
        Ok("off") | Err(_) => false,
        Ok(other) => panic!("METRICS is `off` or `compare`, not `{other}`"),
    };
    let handle = compare_metrics.then(|| {
        let inner = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = inner.handle();
        let switch: &'static Switched = Box::leak(Box::new(Switched {
            on: std::sync::atomic::AtomicBool::new(false),
            inner,
        }));
        SWITCH.set(switch).ok().unwrap();
        metrics::set_global_recorder(switch).unwrap();
        handle
    });
    let peer = match std::env::var("PEER").as_deref() {
        Ok(NODE) => true,
        Ok("none") | Err(_) => false,
        Ok(other) => panic!("PEER is `none` or `{NODE}`, not `{other}`"),
    };
    // Started after the pinning above, so that it inherits it.
    let node = peer.then(NodeOidcProvider::start);
    let rounds = env_number("ROUNDS", 3);
    let seconds = env_number("SECONDS", 3);
    let stores = std::env::var("STORES").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(layout.workers())
        .enable_all()
        .build()
        .unwrap();
    let mut databases = Vec::new();
    let variants: Vec<Variant> = runtime.block_on(async {
        let mut variants = Vec::new();
        for store_name in stores.split(',') {
            let storages = match store_name {
                "sqlite" => ["RS256", "ES256"]
                    .map(|name| format!("sqlite://{}/{name}.db", dir.path().display())),
                "postgres" => {
                    let (rs256, es256) = (
                        postgres::TestDatabase::create().await,
                        postgres::TestDatabase::create().await,
                    );
                    let urls = [rs256.url.clone(), es256.url.clone()];
                    databases.extend([rs256, es256]);
                    urls
                }
                other => panic!("STORES lists `sqlite` and `postgres`, not `{other}`"),
            };
            let storages = [storages[0].as_str(), storages[1].as_str()];
            variants.extend(variants_on(store_name, storages, dir.path()).await);
        }
        if let Some(node) = &node {
            variants.extend(peer_variants(node, dir.path()).await);
        }
        variants
    });
    // For profiling: `ONLY=<part of a name>` keeps the matching variants.
    let only = std::env::var("ONLY").unwrap_or_default();
    let variants: Vec<Variant> = variants
        .into_iter()
        .filter(|variant| variant.name.contains(&only))
        .flat_map(|variant| {
            if !compare_metrics {
                return vec![variant];
            }
            let on = Variant {
                name: format!("{} [metrics on]", variant.name),
                url: variant.url.clone(),
                script: variant.script.clone(),
                metrics: true,
                server: variant.server,
            };
            let off = Variant {
                name: format!("{} [metrics off]", variant.name),
                ..variant
            };
            vec![off, on]
        })
        .collect();
    for variant in &variants {
        record_metrics(variant.metrics);
        wrk(variant, 1, layout); // warm-up (the first Argon2id check of each secret), 2xx check
    }
    let mut results: Vec<Vec<Measured>> = (0..variants.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            record_metrics(variants[index].metrics);
            results[index].push(wrk(&variants[index], seconds, layout));
        }
    }
    // Per round, each "metrics on" rate over its "metrics off" twin's (before sorting below).
    let metric_ratios: Vec<(String, Vec<f64>)> = variants
        .iter()
        .enumerate()
        .filter(|(_, variant)| variant.metrics)
        .map(|(on, variant)| {
            let ratios = results[on]
                .iter()
                .zip(&results[on - 1])
                .map(|(with, without)| with.rate / without.rate)
                .collect();
            (variant.name.replace(" [metrics on]", ""), ratios)
        })
        .collect();
    let peer_ratios = peer_ratios(&variants, &results, &stores);
    let workers = layout.workers();
    let bare_rs256 = bare_signing_rate(KeyAlgorithm::Rs256, workers);
    let bare_es256 = bare_signing_rate(KeyAlgorithm::Es256, workers);
    match layout {
        Layout::Machine => println!(
            "wrk -t1 -c32 -d{seconds}s and the token service (two worker threads) sharing both cores, {rounds} rounds, variants rotated"
        ),
        Layout::OneCore => println!(
            "wrk -t1 -c32 -d{seconds}s on core 0, token service (one worker thread) on core 1, {rounds} rounds, variants rotated"
        ),
    }
    println!(
        "{:38} {:>8} {:>13} {:>9} {:>9} {:>13} {:>13}",
        "variant", "req/s", "min–max", "p50", "p99", "service µs/req", "machine µs/req"
    );
    for (variant, measured) in variants.iter().zip(&mut results) {
        measured.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let median = &measured[measured.len() / 2];
        println!(
            "{:38} {:>8.0} {:>6.0}–{:<6.0} {:>9} {:>9} {:>13.1} {:>13.1}",
            variant.name,
            median.rate,
            measured[0].rate,
            measured[measured.len() - 1].rate,
            median.p50,
            median.p99,
            median.service_cpu_us,
            median.machine_cpu_us
        );
    }
    println!(
        "bare signing on {workers} thread(s): RS256 {bare_rs256:.0}/s, ES256 {bare_es256:.0}/s"
    );
    for store_name in stores.split(',') {
        let rate_of = |name: &str| {
            let index = variants
                .iter()
                .position(|variant| variant.name == format!("{store_name}: {name}"))?;
            Some(results[index][results[index].len() / 2].rate)
        };
        if let (Some(rs256), Some(es256)) = (rate_of("issue JWT RS256"), rate_of("issue JWT ES256"))
        {
            println!(
                "{store_name}: JWT issuance / bare signing: RS256 {:.2}, ES256 {:.2}",
                rs256 / bare_rs256,
                es256 / bare_es256
            );
        }
    }
    if let Some(node) = &node {
        println!(
            "{} (its CPU: its process'); this service / {NODE}, per round (median, min–max):",
            node.describe()
        );
        for (name, ratios) in peer_ratios {
            let (median, low, high) = spread(ratios);
            println!("{name:30} {median:.2}× ({low:.2}–{high:.2})");
        }
    }
    if let Some(handle) = handle {
        let exposition = handle.render();
        assert!(
            exposition.contains("scopegate_tokens_issued_total"),
            "the recorder recorded nothing"
        );
        println!("metrics on / metrics off, per round (median, min–max):");
        for (name, ratios) in metric_ratios {
            let (median, low, high) = spread(ratios);
            println!("{name:30} {median:.3} ({low:.3}–{high:.3})");
        }
    }
    drop(runtime);
    drop(databases);
    drop(node);
}
