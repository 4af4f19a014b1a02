//! Heap allocations per cold validation, and a cold-only loop to run under `perf record`.
//!
//! Run with: `cargo bench -p scopegate-validator --bench cold_profile` (allocation counts), or
//! `PROFILE_ALG=RS256 PROFILE_SECONDS=10 cargo bench …` to loop that algorithm's cold path.

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

// Shared with the timing benches; this one needs only the fixture.
#[allow(dead_code)]
mod common;

use std::alloc::System;
use std::hint::black_box;

use common::{Fixture, ready};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let profile = std::env::var("PROFILE_ALG").ok();
    let seconds: u64 = std::env::var("PROFILE_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10);
    for key in Fixture::keys() {
        let fixture = Fixture::new(&runtime, key);
        let Fixture {
            key, cold, token, ..
        } = &fixture;
        if let Some(alg) = &profile {
            if alg != key.alg {
                continue;
            }
            let started = std::time::Instant::now();
            let mut calls = 0u64;
            while started.elapsed().as_secs() < seconds {
                for _ in 0..1000 {
                    ready(cold.validate(black_box(token))).unwrap();
                }
                calls += 1000;
            }
            println!("{}: {calls} cold validations", key.alg);
            continue;
        }
        ready(cold.validate(token)).unwrap();
        let region = Region::new(ALLOCATOR);
        for _ in 0..100 {
            ready(cold.validate(black_box(token))).unwrap();
        }
        let change = region.change();
        println!(
            "{}: {:.1} allocations, {:.0} bytes allocated per cold validation (token {} bytes)",
            key.alg,
            change.allocations as f64 / 100.0,
            change.bytes_allocated as f64 / 100.0,
            token.len()
        );
    }
}
