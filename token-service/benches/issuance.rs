//! Token service throughput over real HTTP with `wrk` (Debian's package) on loopback:
//! client_credentials issuance (opaque, JWT RS256, JWT ES256) and introspection (opaque, JWT),
//! on the embedded SQLite store (a file, WAL). The variants alternate in rounds so that a noisy
//! neighbour slows all of them alike. Also reports the bare signing rate on one core, so that
//! JWT issuance can be read against the signature's own cost, and CPU time per request.
//!
//! Run with: `cargo bench -p scopegate-token-service --bench issuance` (needs `wrk` and
//! util-linux's `taskset`; `ROUNDS` and `SECONDS` override 3 rounds of 3 s per variant).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use scopegate_token_service::config::Config;
use scopegate_token_service::keys::{KeyAlgorithm, SigningKey};
use scopegate_token_service::store::{SqliteStore, Store};
use scopegate_token_service::{State, app};
use scopegate_validator::SystemClock;

const API: &str = "https://api.example.test";

fn config(issuer: &str, storage: &str, algorithm: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "{storage}"

[signing]
algorithm = "{algorithm}"

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

/// CPU time (user + system) this process has used, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

struct Measured {
    rate: f64,
    p50: String,
    p99: String,
    cpu_per_request_us: f64,
}

fn wrk(variant: &Variant, seconds: usize) -> Measured {
    let cpu_before = cpu_seconds();
    let output = Command::new("taskset")
        .args([
            "-c",
            "0",
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
    let cpu = cpu_seconds() - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "{} answered errors:\n{text}",
        variant.name
    );
    let rate: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let percentile = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map_or_else(|| "?".to_owned(), |value| value.trim().to_owned())
    };
    Measured {
        rate,
        p50: percentile("50%"),
        p99: percentile("99%"),
        cpu_per_request_us: cpu / (rate * seconds as f64) * 1e6,
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Signatures per second on this core, without HTTP, JSON or a store.
fn bare_signing_rate(algorithm: KeyAlgorithm) -> f64 {
    let (key, _) = SigningKey::generate(algorithm).unwrap();
    let message = [b'x'; 400];
    let start = Instant::now();
    let mut count = 0u32;
    while start.elapsed().as_secs_f64() < 2.0 {
        for _ in 0..100 {
            std::hint::black_box(key.sign(&message).unwrap());
        }
        count += 100;
    }
    f64::from(count) / start.elapsed().as_secs_f64()
}

async fn start_service(algorithm: &str, dir: &Path) -> String {
    let storage = format!("sqlite://{}/{algorithm}.db", dir.display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let config = Config::from_toml(&config(&issuer, &storage, algorithm)).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&storage).await.unwrap());
    let state = State::with_store(config, store, Arc::new(SystemClock))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    issuer
}

async fn get_token(issuer: &str, client: (&str, &str)) -> String {
    let response = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .header("authorization", basic(client.0, client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = response.json().await.unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

fn main() {
    // The service (and every thread it starts, sqlx's SQLite workers included) on core 1,
    // wrk on core 0.
    let pinned = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        pinned,
        "taskset (util-linux) could not pin the service to core 1"
    );
    let rounds = env_number("ROUNDS", 3);
    let seconds = env_number("SECONDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (rs256, es256, opaque_token, jwt_token) = runtime.block_on(async {
        let rs256 = start_service("RS256", dir.path()).await;
        let es256 = start_service("ES256", dir.path()).await;
        let opaque = get_token(&rs256, ("opaque-client", "opaque-secret")).await;
        let jwt = get_token(&es256, ("jwt-client", "jwt-secret")).await;
        (rs256, es256, opaque, jwt)
    });
    let form = "grant_type=client_credentials";
    let variants = [
        Variant {
            name: "issue opaque".into(),
            url: format!("{rs256}/token"),
            script: script(
                dir.path(),
                "opaque",
                &basic("opaque-client", "opaque-secret"),
                form,
            ),
        },
        Variant {
            name: "issue JWT RS256".into(),
            url: format!("{rs256}/token"),
            script: script(
                dir.path(),
                "rs256",
                &basic("jwt-client", "jwt-secret"),
                form,
            ),
        },
        Variant {
            name: "issue JWT ES256".into(),
            url: format!("{es256}/token"),
            script: script(
                dir.path(),
                "es256",
                &basic("jwt-client", "jwt-secret"),
                form,
            ),
        },
        Variant {
            name: "introspect opaque".into(),
            url: format!("{rs256}/introspect"),
            script: script(
                dir.path(),
                "introspect-opaque",
                &basic(API, "api-secret"),
                &format!("token={opaque_token}"),
            ),
        },
        Variant {
            name: "introspect JWT ES256".into(),
            url: format!("{es256}/introspect"),
            script: script(
                dir.path(),
                "introspect-jwt",
                &basic(API, "api-secret"),
                &format!("token={jwt_token}"),
            ),
        },
    ];
    for variant in &variants {
        wrk(variant, 1); // warm-up (the first Argon2id check of each secret), and a 2xx check
    }
    let mut results: Vec<Vec<Measured>> = (0..variants.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            results[index].push(wrk(&variants[index], seconds));
        }
    }
    let bare_rs256 = bare_signing_rate(KeyAlgorithm::Rs256);
    let bare_es256 = bare_signing_rate(KeyAlgorithm::Es256);
    println!(
        "wrk -t1 -c32 -d{seconds}s on core 0, token service (one worker thread) on core 1, SQLite file (WAL), {rounds} rounds, variants rotated"
    );
    println!(
        "{:24} {:>10} {:>13} {:>9} {:>9} {:>12}",
        "variant", "req/s", "min–max", "p50", "p99", "CPU µs/req"
    );
    for (variant, measured) in variants.iter().zip(&mut results) {
        measured.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let median = &measured[measured.len() / 2];
        println!(
            "{:24} {:>10.0} {:>6.0}–{:<6.0} {:>9} {:>9} {:>12.1}",
            variant.name,
            median.rate,
            measured[0].rate,
            measured[measured.len() - 1].rate,
            median.p50,
            median.p99,
            median.cpu_per_request_us
        );
    }
    let rate_of = |name: &str| {
        let index = variants
            .iter()
            .position(|variant| variant.name == name)
            .unwrap();
        results[index][results[index].len() / 2].rate
    };
    println!("bare signing on one core: RS256 {bare_rs256:.0}/s, ES256 {bare_es256:.0}/s");
    println!(
        "JWT issuance / bare signing: RS256 {:.2}, ES256 {:.2}",
        rate_of("issue JWT RS256") / bare_rs256,
        rate_of("issue JWT ES256") / bare_es256
    );
}
