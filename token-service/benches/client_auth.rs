//! What client authentication costs at `/token`, over real HTTP on loopback, side by side in
//! one run: `client_secret_basic` with a secret the service remembers (its Argon2id hash ran
//! once), `private_key_jwt` with inline keys and with keys at a `jwks_uri` (cached), and the
//! remembered secret plus a DPoP proof. Every variant issues an ES256 JWT access token, so the
//! difference is the authentication: a signature verified and a `jti` spent in the store per
//! assertion or proof, which cannot be cached (each is good once).
//!
//! Assertions and proofs are signed before the clock starts (each with its own `jti`); the
//! variants alternate in rounds so a noisy neighbour slows them alike.
//!
//! Run with: `cargo bench -p scopegate-token-service --bench client_auth`. Settings
//! (environment): `ROUNDS` (3), `REQUESTS` per variant and round (2000), `CONCURRENCY` (16).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/jose.rs"]
#[allow(unreachable_pub, dead_code)]
mod jose;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jose::{EcKey, assertion_claims, toml_inline};
use scopegate_token_service::config::Config;
use scopegate_token_service::http::app;
use scopegate_token_service::{State, store};
use scopegate_validator::SystemClock;

const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn config(issuer: &str, storage: &str, jwks: &str, jwks_uri: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "{storage}"

[signing]
algorithm = "ES256"

[limits]
client_rate_limit = "1000000/s"

[[clients]]
id = "secret-client"
secret = "a-secret-of-the-usual-length-0123456789ab"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]

[[clients]]
id = "inline-keys"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
jwks = {jwks}

[[clients]]
id = "remote-keys"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
jwks_uri = "{jwks_uri}"
"#
    )
}

/// One request: its headers and body.
#[derive(Clone)]
struct Prepared {
    authorization: Option<String>,
    dpop: Option<String>,
    body: String,
}

struct Variant {
    name: &'static str,
    /// Each round's requests (assertions and proofs are single use: fresh ones per round).
    rounds: Vec<Vec<Prepared>>,
}

/// Sends `requests` with `concurrency` connections; requests per second.
async fn run(
    http: &reqwest::Client,
    url: &str,
    requests: Vec<Prepared>,
    concurrency: usize,
) -> f64 {
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, http, url) = (Arc::clone(&queue), http.clone(), url.to_owned());
        workers.spawn(async move {
            let mut done = 0usize;
            loop {
                let Some(request) = queue.lock().unwrap().pop() else {
                    return done;
                };
                let mut builder = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(request.body);
                if let Some(authorization) = request.authorization {
                    builder = builder.header("authorization", authorization);
                }
                if let Some(proof) = request.dpop {
                    builder = builder.header("dpop", proof);
                }
                let response = builder.send().await.unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                response.bytes().await.unwrap();
                done += 1;
            }
        });
    }
    let done: usize = workers.join_all().await.into_iter().sum();
    done as f64 / start.elapsed().as_secs_f64()
}

async fn serve_jwks(jwks: serde_json::Value) -> String {
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn main() {
    let rounds = env_number("ROUNDS", 3);
    let requests = env_number("REQUESTS", 2000);
    let concurrency = env_number("CONCURRENCY", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let storage = format!("sqlite://{}/bench.db", dir.path().display());
        let key = EcKey::generate();
        let jwks_uri = serve_jwks(key.jwks("k1")).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let text = config(&issuer, &storage, &toml_inline(&key.jwks("k1")), &jwks_uri);
        let state = State::with_store(
            Config::from_toml(&text).unwrap(),
            store::open(&storage).await.unwrap(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let router = app(state).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let url = format!("{issuer}/token");

        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode("secret-client:a-secret-of-the-usual-length-0123456789ab")
        );
        let form = "grant_type=client_credentials".to_owned();
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let assertion = |client: &str| Prepared {
            authorization: None,
            dpop: None,
            body: format!(
                "{form}&client_assertion_type={ASSERTION_TYPE}&client_assertion={}",
                key.assertion("k1", &assertion_claims(client, &url, now()))
            ),
        };
        let secret = Prepared {
            authorization: Some(basic.clone()),
            dpop: None,
            body: form.clone(),
        };
        let with_proof = || Prepared {
            dpop: Some(key.proof(&url, now())),
            ..secret.clone()
        };
        let round_of = |make: &dyn Fn() -> Prepared| -> Vec<Vec<Prepared>> {
            (0..rounds)
                .map(|_| (0..requests).map(|_| make()).collect())
                .collect()
        };
        let signing = Instant::now();
        let variants = [
            Variant {
                name: "client_secret_basic, remembered secret",
                rounds: round_of(&|| secret.clone()),
            },
            Variant {
                name: "private_key_jwt, inline jwks",
                rounds: round_of(&|| assertion("inline-keys")),
            },
            Variant {
                name: "private_key_jwt, jwks_uri (cached)",
                rounds: round_of(&|| assertion("remote-keys")),
            },
            Variant {
                name: "remembered secret + DPoP proof",
                rounds: round_of(&with_proof),
            },
        ];
        eprintln!(
            "signed {} assertions and proofs in {:.1} s",
            3 * rounds * requests,
            signing.elapsed().as_secs_f64()
        );
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        // Warm-up: the secret's one Argon2id verification, the jwks_uri fetch, connections.
        for variant in &variants {
            let warm: Vec<Prepared> = match variant.name {
                name if name.starts_with("client_secret") => vec![secret.clone(); 50],
                name if name.contains("inline") => (0..50).map(|_| assertion("inline-keys")).collect(),
                name if name.contains("jwks_uri") => (0..50).map(|_| assertion("remote-keys")).collect(),
                _ => (0..50).map(|_| with_proof()).collect(),
            };
            run(&http, &url, warm, concurrency).await;
        }
        let mut rates = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            for (index, variant) in variants.iter().enumerate() {
                let rate = run(&http, &url, variant.rounds[round].clone(), concurrency).await;
                rates[index].push(rate);
            }
        }
        let median = |values: &[f64]| {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            sorted[sorted.len() / 2]
        };
        let base = median(&rates[0]);
        println!(
            "\n/token, client_credentials, ES256 JWT, SQLite file; {rounds} rounds × {requests} requests, {concurrency} connections"
        );
        println!("{:<42} {:>10} {:>10}   rounds", "variant", "req/s", "vs secret");
        for (variant, rates) in variants.iter().zip(&rates) {
            let rounds: Vec<String> = rates.iter().map(|rate| format!("{rate:.0}")).collect();
            println!(
                "{:<42} {:>10.0} {:>10.2}   {}",
                variant.name,
                median(rates),
                median(rates) / base,
                rounds.join(" ")
            );
        }
    });
}
