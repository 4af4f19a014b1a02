//! Verification cost next to the bare signature check of the same backend (aws-lc-rs), for
//! RS256, ES256 and EdDSA: cold (verified-token cache off: every token fully verified) and warm
//! (cache hit).
//!
//! Run with: `cargo bench -p scopegate-validator --bench verify`, then
//! `python3 validator/benches/ratios.py` for the ratios.

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[allow(dead_code)] // `time` is for the alternating benches
mod common;

use std::hint::black_box;

use common::{Fixture, ready};
use criterion::{Criterion, criterion_group, criterion_main};
use scopegate_validator::MockClock;
use support::{FakeIdp, SigningKey};

fn verification(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
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
        bare.verify_sig(signing_input.as_bytes(), signature)
            .unwrap();
        ready(warm.validate(token)).unwrap();

        let mut group = c.benchmark_group(key.alg);
        group.bench_function("bare signature check", |b| {
            b.iter(|| bare.verify_sig(black_box(signing_input.as_bytes()), black_box(signature)))
        });
        group.bench_function("cold (cache off)", |b| {
            b.iter(|| ready(cold.validate(black_box(token))).unwrap())
        });
        group.bench_function("warm (cache hit)", |b| {
            b.iter(|| ready(warm.validate(black_box(token))).unwrap())
        });
        group.finish();
    }
}

/// A cached opaque token (introspection cache hit) next to a warm JWT, same process, same run.
fn cached_opaque(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = SigningKey::es256("es");
    let clock = MockClock::at_system_time();
    let opaque = "q9Xv3kz7Jd1oWm2Lr8Tn5Yb0Hc4Fa6Se_Ug-Pi7Ko1Zx";
    let (idp, validator, jwt) = runtime.block_on(async {
        let idp = FakeIdp::start(&[&key]).await;
        idp.set_answer(opaque, idp.active_answer(&clock, 3600));
        let validator = idp.introspecting_validator(&clock).build().unwrap();
        let jwt = key.sign(&idp.claims(&clock));
        validator.validate(opaque).await.unwrap();
        validator.validate(&jwt).await.unwrap();
        (idp, validator, jwt)
    });
    let mut group = c.benchmark_group("cached");
    group.bench_function("opaque (introspection cache hit)", |b| {
        b.iter(|| ready(validator.validate(black_box(opaque))).unwrap())
    });
    group.bench_function("jwt (verified-token cache hit)", |b| {
        b.iter(|| ready(validator.validate(black_box(&jwt))).unwrap())
    });
    group.finish();
    drop(idp);
}

criterion_group!(benches, verification, cached_opaque);
criterion_main!(benches);
