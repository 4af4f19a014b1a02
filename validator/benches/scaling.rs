//! How the validator's cost grows: with the JWKS size (1 → 100 keys), the number of issuers
//! behind one validator (1 → 50), the token size, the
//! number of tokens in the verified-token cache (10³ → 10⁶, with the memory each one takes) and
//! the number of threads validating at once. Prints tables and writes one CSV per curve for
//! `benchmarks/plot.py`.
//!
//! Run with: `cargo bench -p scopegate-validator --bench scaling` (`OUT` = directory for the
//! CSV files, default `target/bench-results`; `MAX_CACHE` = largest cache size, default 10⁶).

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::alloc::System;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{ready, time};
use scopegate_validator::{MockClock, Validator};
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use support::{FakeIdp, SigningKey};

/// Counts heap allocations: the live bytes a cache fill leaves behind.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ROUNDS: usize = 15;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn out_dir() -> PathBuf {
    let dir = std::env::var_os("OUT").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/bench-results"
            ))
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_csv(name: &str, header: &str, rows: &[String]) {
    let path = out_dir().join(name);
    let mut text = format!("{header}\n");
    for row in rows {
        writeln!(text, "{row}").unwrap();
    }
    std::fs::write(&path, text).unwrap();
    println!("→ {}", path.display());
}

/// A fake IdP publishing `keys`, a validator with the verified-token cache off (cold) and one
/// with room for `capacity` verified tokens (warm), both holding the keys.
fn setup(
    runtime: &tokio::runtime::Runtime,
    keys: &[&SigningKey],
    capacity: u64,
    clock: &MockClock,
) -> (FakeIdp, Validator, Validator) {
    runtime.block_on(async {
        let idp = FakeIdp::start(keys).await;
        let builder = || {
            idp.validator_builder(clock)
                .max_token_bytes(64 * 1024)
                .max_document_bytes(1024 * 1024)
        };
        let cold = builder().without_verified_token_cache().build().unwrap();
        let warm = builder().verified_token_cache(capacity).build().unwrap();
        cold.refresh_keys().await.unwrap();
        warm.refresh_keys().await.unwrap();
        (idp, cold, warm)
    })
}

/// Cold (cache off) and warm validation of one token: medians over alternating rounds.
fn cold_and_warm(cold: &Validator, warm: &Validator, token: &str) -> (f64, f64) {
    ready(warm.validate(token)).unwrap();
    let (mut colds, mut warms) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        colds.push(time(100, || {
            ready(cold.validate(black_box(token))).unwrap();
        }));
        warms.push(time(20_000, || {
            ready(warm.validate(black_box(token))).unwrap();
        }));
    }
    (median(colds), median(warms))
}

/// Keys 1 → 100 (ES256), the token signed by the last key of the set.
fn jwks_size(runtime: &tokio::runtime::Runtime, clock: &MockClock) {
    println!("\nJWKS size (ES256; the token is signed by the last key of the set)");
    println!("{:>5} {:>10} {:>10}", "keys", "cold", "warm");
    let keys: Vec<SigningKey> = (0..100)
        .map(|i| SigningKey::es256(&format!("key-{i}")))
        .collect();
    let mut rows = Vec::new();
    for count in [1, 2, 5, 10, 20, 50, 100] {
        let published: Vec<&SigningKey> = keys[..count].iter().collect();
        let (idp, cold, warm) = setup(runtime, &published, 1000, clock);
        let token = keys[count - 1].sign(&idp.claims(clock));
        let (cold_ns, warm_ns) = cold_and_warm(&cold, &warm, &token);
        println!("{count:>5} {:>8.2}µs {warm_ns:>8.0}ns", cold_ns / 1000.0);
        rows.push(format!("{count},{cold_ns:.0},{warm_ns:.0}"));
    }
    write_csv("jwks_size.csv", "keys,cold_ns,warm_ns", &rows);
}

/// Issuers 1 → 50 behind one validator (`Validator::for_issuers`), each a fake IdP with its own
/// ES256 key; the token is from the last issuer listed. A plain single-issuer validator is
/// measured first, for comparison (the set's extra cost: reading the token's `iss`).
fn issuers(runtime: &tokio::runtime::Runtime, clock: &MockClock) {
    println!("\nIssuers behind one validator (ES256; the token is from the last one)");
    println!("{:>7} {:>10} {:>10}", "issuers", "cold", "warm");
    let keys: Vec<SigningKey> = (0..50)
        .map(|i| SigningKey::es256(&format!("issuer-{i}")))
        .collect();
    let idps: Vec<FakeIdp> = runtime.block_on(async {
        let mut idps = Vec::new();
        for key in &keys {
            idps.push(FakeIdp::start(&[key]).await);
        }
        idps
    });
    let validator = |idp: &FakeIdp, cache: bool| {
        let builder = idp.validator_builder(clock);
        if cache {
            builder.verified_token_cache(1000).build().unwrap()
        } else {
            builder.without_verified_token_cache().build().unwrap()
        }
    };
    let refreshed = |validators: (Validator, Validator)| {
        runtime.block_on(async {
            validators.0.refresh_keys().await.unwrap();
            validators.1.refresh_keys().await.unwrap();
        });
        validators
    };
    let (cold, warm) = refreshed((validator(&idps[0], false), validator(&idps[0], true)));
    let token = keys[0].sign(&idps[0].claims(clock));
    let (cold_ns, warm_ns) = cold_and_warm(&cold, &warm, &token);
    println!(
        "{:>7} {:>8.2}µs {warm_ns:>8.0}ns",
        "plain",
        cold_ns / 1000.0
    );
    let mut rows = vec![format!("0,{cold_ns:.0},{warm_ns:.0}")];
    for count in [1, 2, 5, 10, 20, 50] {
        let listed = &idps[..count];
        let set = |cache: bool| {
            Validator::for_issuers(listed.iter().map(|idp| validator(idp, cache))).unwrap()
        };
        let (cold, warm) = refreshed((set(false), set(true)));
        let token = keys[count - 1].sign(&idps[count - 1].claims(clock));
        let (cold_ns, warm_ns) = cold_and_warm(&cold, &warm, &token);
        println!("{count:>7} {:>8.2}µs {warm_ns:>8.0}ns", cold_ns / 1000.0);
        rows.push(format!("{count},{cold_ns:.0},{warm_ns:.0}"));
    }
    write_csv("issuers.csv", "issuers,cold_ns,warm_ns", &rows);
}

/// Tokens of ~0.4 → 32 KiB (ES256): a claim padded to the size, as large custom claims do.
fn token_size(runtime: &tokio::runtime::Runtime, clock: &MockClock) {
    println!("\nToken size (ES256)");
    println!("{:>7} {:>10} {:>10}", "bytes", "cold", "warm");
    let key = SigningKey::es256("key");
    let (idp, cold, warm) = setup(runtime, &[&key], 1000, clock);
    let mut rows = Vec::new();
    for padding in [0, 512, 1024, 2048, 4096, 8192, 16384, 24576] {
        let mut claims = idp.claims(clock);
        if padding > 0 {
            claims["profile"] = json!("p".repeat(padding));
        }
        let token = key.sign(&claims);
        let (cold_ns, warm_ns) = cold_and_warm(&cold, &warm, &token);
        println!(
            "{:>7} {:>8.2}µs {warm_ns:>8.0}ns",
            token.len(),
            cold_ns / 1000.0
        );
        rows.push(format!("{},{cold_ns:.0},{warm_ns:.0}", token.len()));
    }
    write_csv("token_size.csv", "token_bytes,cold_ns,warm_ns", &rows);
}

/// `count` distinct EdDSA tokens (the cheapest to sign and verify in bulk), made on every core.
fn distinct_tokens(
    idp: &FakeIdp,
    key: &SigningKey,
    clock: &MockClock,
    count: usize,
) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let claims = idp.claims(clock);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let claims = claims.clone();
                scope.spawn(move || {
                    (worker..count)
                        .step_by(threads)
                        .map(|index| {
                            let mut claims = claims.clone();
                            claims["jti"] = json!(format!("token-{index}"));
                            key.sign(&claims)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    })
}

/// Validates every token once, on every core.
fn fill(validator: &Validator, tokens: &[String]) {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    std::thread::scope(|scope| {
        for chunk in tokens.chunks(tokens.len().div_ceil(threads)) {
            scope.spawn(move || {
                for token in chunk {
                    ready(validator.validate(token)).unwrap();
                }
            });
        }
    });
}

/// Warm lookups with 10³ → 10⁶ tokens cached, visited in a scattered order; live heap bytes the
/// fill left behind, per token.
fn cache_size(runtime: &tokio::runtime::Runtime, clock: &MockClock, max: usize) {
    println!("\nVerified-token cache size (EdDSA tokens, each verified once)");
    println!(
        "{:>9} {:>10} {:>14} {:>9}",
        "tokens", "warm", "bytes/token", "hits"
    );
    let key = SigningKey::eddsa("key");
    let mut rows = Vec::new();
    let mut count = 1000;
    while count <= max {
        let (idp, _, warm) = setup(runtime, &[&key], 2 * count as u64, clock);
        let tokens = distinct_tokens(&idp, &key, clock, count);
        let region = Region::new(ALLOCATOR);
        fill(&warm, &tokens);
        runtime.block_on(warm.cache_stats());
        let change = region.change();
        // `stats_alloc` counts a reallocation's growth in `bytes_allocated` (its shrinking in
        // `bytes_deallocated`) and again in `bytes_reallocated`: adding that too counted the
        // cache's tables growing in place twice (~70 bytes per token at 10^6).
        let live = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
        let bytes_per_token = live / count as f64;
        let hits = tokens
            .iter()
            .filter(|token| warm.cached(token).is_some())
            .count();
        // A stride coprime with the count scatters the visits over the whole cache.
        let stride = 7919;
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            let mut index = round;
            rounds.push(time(50_000, || {
                index = (index + stride) % count;
                ready(warm.validate(black_box(&tokens[index]))).unwrap();
            }));
        }
        let warm_ns = median(rounds);
        let token_bytes = tokens[0].len();
        println!(
            "{count:>9} {warm_ns:>8.0}ns {bytes_per_token:>14.0} {:>8.1}% (tokens of {token_bytes} bytes)",
            100.0 * hits as f64 / count as f64
        );
        rows.push(format!(
            "{count},{warm_ns:.0},{bytes_per_token:.0},{token_bytes},{hits}"
        ));
        count *= 10;
    }
    write_csv(
        "cache_size.csv",
        "tokens,warm_ns,bytes_per_token,token_bytes,hits",
        &rows,
    );
}

/// Warm validations per second with 1 → 16 threads on this machine's cores, each thread on
/// its own cached tokens; the thread counts alternate in rounds.
fn concurrency(runtime: &tokio::runtime::Runtime, clock: &MockClock) {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!("\nConcurrency (warm ES256 validations, {cores} cores)");
    println!(
        "{:>8} {:>14} {:>18}",
        "threads", "validations/s", "per thread-second"
    );
    let key = SigningKey::es256("key");
    let (idp, _, warm) = setup(runtime, &[&key], 100_000, clock);
    let tokens: Vec<String> = (0..1024)
        .map(|index| {
            let mut claims = idp.claims(clock);
            claims["jti"] = json!(format!("token-{index}"));
            key.sign(&claims)
        })
        .collect();
    fill(&warm, &tokens);
    let region = Region::new(ALLOCATOR);
    for token in &tokens {
        ready(warm.validate(token)).unwrap();
    }
    let allocations = region.change().allocations as f64 / tokens.len() as f64;
    println!("heap allocations per warm validation: {allocations:.2}");
    let thread_counts = [1, 2, 4, 8, 16];
    let mut rates = vec![Vec::new(); thread_counts.len()];
    for round in 0..5 {
        for offset in 0..thread_counts.len() {
            let which = (round + offset) % thread_counts.len();
            rates[which].push(validations_per_second(&warm, &tokens, thread_counts[which]));
        }
    }
    let mut rows = Vec::new();
    for (threads, rates) in thread_counts.iter().zip(rates) {
        let rate = median(rates);
        let per_thread_second = rate / (*threads).min(cores) as f64;
        println!("{threads:>8} {rate:>14.0} {per_thread_second:>18.0}");
        rows.push(format!("{threads},{rate:.0}"));
    }
    write_csv("concurrency.csv", "threads,validations_per_s", &rows);
}

fn validations_per_second(validator: &Validator, tokens: &[String], threads: usize) -> f64 {
    let duration = Duration::from_millis(400);
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    let mine: Vec<&String> = tokens.iter().skip(worker).step_by(threads).collect();
                    let mut done = 0u64;
                    while started.elapsed() < duration {
                        for token in &mine {
                            ready(validator.validate(black_box(token))).unwrap();
                        }
                        done += mine.len() as u64;
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clock = MockClock::at_system_time();
    let max_cache = std::env::var("MAX_CACHE")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("ONLY").unwrap_or_default();
    if only.is_empty() || only == "jwks" {
        jwks_size(&runtime, &clock);
    }
    if only.is_empty() || only == "size" {
        token_size(&runtime, &clock);
    }
    if only.is_empty() || only == "concurrency" {
        concurrency(&runtime, &clock);
    }
    if only.is_empty() || only == "issuers" {
        issuers(&runtime, &clock);
    }
    if only.is_empty() || only == "cache" {
        cache_size(&runtime, &clock, max_cache);
    }
}
