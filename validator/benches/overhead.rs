//! The cold-path overhead ratio measured the noise-resistant way: bare signature check, cold
//! validation and warm validation alternate in short rounds on the same token, and the ratio is
//! taken per round, so a noisy neighbour slows both sides of each ratio alike.
//!
//! Run with: `cargo bench -p scopegate-validator --bench overhead`

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::hint::black_box;

use common::{Fixture, ready, time};

/// Rounds per algorithm; `ROUNDS=401` narrows the interval when comparing two builds.
fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(41)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 4], values[values.len() * 3 / 4])
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{} alternating rounds per algorithm; medians, and the interquartile range of the per-round ratio",
        rounds()
    );
    println!(
        "{:6} {:>10} {:>10} {:>9} {:>11} {:>15}",
        "alg", "bare", "cold", "warm", "cold/bare", "IQR"
    );
    for key in Fixture::keys() {
        let fixture = Fixture::new(&runtime, key);
        let Fixture {
            key,
            cold,
            warm,
            token,
            signature,
            bare,
            ..
        } = &fixture;
        let signing_input = fixture.signing_input();
        ready(warm.validate(token)).unwrap();
        let slow_iterations = if key.alg == "RS256" { 400 } else { 150 };

        let (mut bares, mut colds, mut warms, mut ratios) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds() {
            let bare_ns = time(slow_iterations, || {
                bare.verify_sig(black_box(signing_input.as_bytes()), black_box(signature))
                    .unwrap()
            });
            let cold_ns = time(slow_iterations, || {
                ready(cold.validate(black_box(token))).unwrap();
            });
            let warm_ns = time(20_000, || {
                ready(warm.validate(black_box(token))).unwrap();
            });
            ratios.push(cold_ns / bare_ns);
            bares.push(bare_ns);
            colds.push(cold_ns);
            warms.push(warm_ns);
        }
        let (low, high) = quartiles(&mut ratios.clone());
        println!(
            "{:6} {:>8.2}µs {:>8.2}µs {:>7.0}ns {:>10.3}× {:>7.3}–{:.3}",
            key.alg,
            median(&mut bares) / 1000.0,
            median(&mut colds) / 1000.0,
            median(&mut warms),
            median(&mut ratios),
            low,
            high
        );
    }
}
