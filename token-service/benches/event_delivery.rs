//! Revocation events delivered by one instance to many subscribers (issue 19): the service runs
//! in this process on loopback (real HTTP, a file SQLite store), `SUBSCRIBERS` receivers each
//! hold an RFC 8936 poll open on a connection of their own, acknowledging each answer in the
//! next poll as the validator does, and `EVENTS` JWT revocations are committed as fast as the
//! store takes them. The subscribers are either replicas of one API (one signature per event
//! serves them all) or each a different API (one signature per event and subscriber). Reported
//! per signing algorithm and shape, side by side in one run:
//! - events/s: `EVENTS` over the time from the first commit until every subscriber had them all;
//! - SETs/s: the same times `SUBSCRIBERS` (each SET is signed for its receiver);
//! - latency of a lone revocation, from its commit to the last subscriber's receipt, over
//!   `SINGLES` revocations a quarter of a second apart: p50 and p99.
//!
//! Subscribers only parse the answers (they do not verify signatures) and share the machine's
//! cores with the service: the figures are the service's delivery rate under that load.
//!
//! Run with: `cargo bench -p scopegate-token-service --bench event_delivery`. Settings
//! (environment): `SUBSCRIBERS` (100), `EVENTS` (2000), `SINGLES` (40), `ALGORITHMS`
//! (`ES256,EdDSA,RS256`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scopegate_token_service::{Config, State};
use serde_json::{Value, json};

fn api(index: u64) -> (String, String) {
    (
        format!("https://api-{index}.example.test"),
        format!("api-secret-{index}"),
    )
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn config(port: u16, dir: &std::path::Path, algorithm: &str, apis: u64) -> String {
    let mut text = format!(
        r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
storage = "sqlite://{}/store.db?mode=rwc"

[signing]
algorithm = "{algorithm}"

[limits]
api_rate_limit = "1000000/s"
"#,
        dir.display()
    );
    for index in 0..apis {
        let (id, secret) = api(index);
        text.push_str(&format!(
            "\n[[apis]]\nid = \"{id}\"\nsecret = \"{secret}\"\nscopes = [\"scope{index}:thing\"]\n"
        ));
    }
    text
}

/// One subscriber: polls until stopped, counting the events received and noting when it last
/// received one.
async fn subscribe(
    url: String,
    (id, secret): (String, String),
    received: Arc<AtomicU64>,
    last_at: Arc<AtomicU64>,
    epoch: Instant,
    ready: Arc<AtomicU64>,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined (the id is a URL).
    let encode = |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", encode(&id), encode(&secret))
        )
    );
    let mut ack: Vec<String> = Vec::new();
    let mut first = true;
    loop {
        let answer = client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &basic)
            .json(&json!({ "ack": ack, "maxEvents": 1000, "returnImmediately": first }))
            .send()
            .await;
        let Ok(answer) = answer else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !answer.status().is_success() {
            let status = answer.status();
            eprintln!(
                "poll answered {status}: {}",
                answer.text().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let Ok(body) = answer.json::<Value>().await else {
            continue;
        };
        let Some(sets) = body["sets"].as_object() else {
            continue;
        };
        if first {
            first = false;
            ready.fetch_add(1, Ordering::Relaxed);
        }
        if !sets.is_empty() {
            received.fetch_add(sets.len() as u64, Ordering::Relaxed);
            last_at.store(
                u64::try_from(epoch.elapsed().as_micros()).unwrap(),
                Ordering::Relaxed,
            );
            ack = sets.keys().cloned().collect();
        }
    }
}

struct Figures {
    events_per_second: f64,
    sets_per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(algorithm: &str, subscribers: u64, apis: u64, events: u64, singles: u64) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state =
        State::start(Config::from_toml(&config(port, dir.path(), algorithm, apis)).unwrap())
            .await
            .unwrap();
    let server = tokio::spawn(scopegate_token_service::http::serve(
        state.clone(),
        listener,
        std::future::pending(),
    ));
    let url = format!("http://127.0.0.1:{port}/ssf/poll");
    let epoch = Instant::now();
    let counters: Vec<(Arc<AtomicU64>, Arc<AtomicU64>)> = (0..subscribers)
        .map(|_| (Arc::default(), Arc::default()))
        .collect();
    // Started one after the other, each once the one before was answered: a hundred first
    // authentications at once from one address would trip the service's limit on failed ones
    // from a network (attempts are counted until their hash is checked).
    let ready = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for ((received, last_at), index) in counters.iter().zip(0..) {
        tasks.push(tokio::spawn(subscribe(
            url.clone(),
            api(index % apis),
            Arc::clone(received),
            Arc::clone(last_at),
            epoch,
            Arc::clone(&ready),
        )));
        while ready.load(Ordering::Relaxed) <= index {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Let every subscriber's first poll be held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let everyone_has = |count: u64| {
        counters
            .iter()
            .all(|(received, _)| received.load(Ordering::Relaxed) >= count)
    };

    let store = state.store();
    let now = state.now();
    let started = Instant::now();
    for index in 0..events {
        store
            .revoke_jwt(&format!("bulk-{index}"), "svc", now + 3600, now)
            .await
            .unwrap();
    }
    while !everyone_has(events) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let bulk = started.elapsed().as_secs_f64();

    let mut latencies = Vec::new();
    for index in 0..singles {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let expected = events + index + 1;
        store
            .revoke_jwt(&format!("single-{index}"), "svc", now + 3600, now)
            .await
            .unwrap();
        let committed = u64::try_from(epoch.elapsed().as_micros()).unwrap();
        while !everyone_has(expected) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let last = counters
            .iter()
            .map(|(_, last_at)| last_at.load(Ordering::Relaxed))
            .max()
            .unwrap();
        latencies.push(Duration::from_micros(last.saturating_sub(committed)));
    }
    latencies.sort();
    for task in tasks {
        task.abort();
    }
    server.abort();
    let at =
        |fraction: f64| latencies[((latencies.len() as f64 - 1.0) * fraction).round() as usize];
    Figures {
        events_per_second: events as f64 / bulk,
        sets_per_second: (events * subscribers) as f64 / bulk,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn main() {
    let subscribers = setting("SUBSCRIBERS", 100);
    let events = setting("EVENTS", 2000);
    let singles = setting("SINGLES", 40).max(1);
    let algorithms = std::env::var("ALGORITHMS").unwrap_or_else(|_| "ES256,EdDSA,RS256".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{subscribers} subscribers, {events} events in bulk, {singles} lone events; one process, {} cores",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<8} {:<22} {:>10} {:>12} {:>12} {:>12}",
        "alg", "subscribers", "events/s", "SETs/s", "lone p50", "lone p99"
    );
    let mut first: Option<f64> = None;
    for algorithm in algorithms.split(',') {
        for (apis, shape) in [
            (1, format!("1 API x {subscribers} replicas")),
            (subscribers, format!("{subscribers} APIs")),
        ] {
            let figures = runtime.block_on(run(algorithm, subscribers, apis, events, singles));
            let ratio = first.map_or(1.0, |base| figures.events_per_second / base);
            first.get_or_insert(figures.events_per_second);
            println!(
                "{:<8} {:<22} {:>10.0} {:>12.0} {:>12.2?} {:>12.2?}   ({ratio:.2}x the first row)",
                algorithm,
                shape,
                figures.events_per_second,
                figures.sets_per_second,
                figures.p50,
                figures.p99
            );
        }
    }
}
