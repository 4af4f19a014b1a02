//! What each of the token service's metric calls costs with the Prometheus recorder installed,
//! on one thread (no contention): the registry lookup of a labelled series and the record.
//!
//! Run with: `cargo bench -p scopegate-token-service --bench metric_calls`

#![allow(missing_docs, clippy::unwrap_used)]
use scopegate_token_service::config::{GrantType, TokenFormat};
use scopegate_token_service::telemetry::{self, metrics};
use std::time::{Duration, Instant};
fn time(name: &str, n: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name:24} {:>6.0} ns per call",
        start.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
fn main() {
    let n = 1_000_000;
    let _h = telemetry::prometheus().unwrap();
    time("http_request", n, || {
        metrics::http_request("POST", "/token", 200, Duration::from_micros(50))
    });
    time("token_issued", n, || {
        metrics::token_issued(GrantType::ClientCredentials, TokenFormat::Jwt, "svc-jwt")
    });
    time("credential_checked", n, || {
        metrics::credential_checked("client_secret", "accepted")
    });
    time("db_operation", n, || {
        metrics::db_operation(
            "sqlite",
            "SELECT",
            Some("clients"),
            Duration::from_micros(20),
            None,
        )
    });
    time("introspected", n, || {
        metrics::introspected(metrics::Introspected::Active("https://api.example.test"))
    });
}
