//! The warm path (a JWT verified before) with revocation events: no subscription, subscribed
//! with nothing revoked, and subscribed with 100 000 revoked identifiers held (25 000 each of
//! token ids, sessions, users and clients), side by side in one run. The token checked is not
//! revoked but carries all four identifiers, so every kind is looked up.
//!
//! A principal remembers the deny-set snapshot that last passed it, so in steady state a cached
//! token is not looked up again. The second group measures the lookups themselves: each of
//! 20 000 cached tokens checked once right after a new snapshot, against the same tokens
//! without a subscription.
//!
//! Then alternating rounds (as in `overhead.rs`) give the ratios with their spread.
//!
//! Run with:
//! `cargo bench -p scopegate-validator --bench revocation -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{ready, time};
use criterion::Criterion;
use scopegate_validator::{MockClock, Validator};
use serde_json::json;
use support::transmitter::{CLIENT_DELETED, SESSION_REVOKED, TOKEN_REVOKED, Transmitter};

const HELD: usize = 100_000;
const POOL: usize = 20_000;
const ROUNDS: usize = 41;

struct Setup {
    runtime: tokio::runtime::Runtime,
    /// Publishes nothing; `empty` listens to it.
    quiet: Transmitter,
    /// Holds the 100 000 revocations; `held` listens to it.
    busy: Transmitter,
    none: Validator,
    empty: Validator,
    held: Validator,
    /// A token of each issuer, not revoked, cached in its validators.
    quiet_token: String,
    busy_token: String,
    /// Distinct cached tokens of the busy issuer, and the same number of the quiet one.
    busy_pool: Vec<String>,
    quiet_pool: Vec<String>,
}

fn applied(validator: &Validator) -> u64 {
    validator.revocation_stream_status()[0].events_applied
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clock = MockClock::at_system_time();
    let (quiet, busy) = runtime.block_on(async {
        (
            Transmitter::start(&clock).await,
            Transmitter::start(&clock).await,
        )
    });
    let started = Instant::now();
    let until = busy.now() + 86_400;
    for number in 0..HELD {
        let (sub_id, event) = match number % 4 {
            0 => (
                json!({"format": "opaque", "id": format!("revoked-token-{number}")}),
                json!({TOKEN_REVOKED: {"identifier": "jti", "tokens_expire_by": until}}),
            ),
            1 => (
                json!({"format": "complex", "session": {"format": "opaque", "id": format!("ended-session-{number}")}}),
                json!({SESSION_REVOKED: {"tokens_expire_by": until}}),
            ),
            2 => (
                json!({"format": "iss_sub", "iss": busy.issuer, "sub": format!("deleted-user-{number}")}),
                json!({support::transmitter::ACCOUNT_PURGED: {"tokens_expire_by": until}}),
            ),
            _ => (
                json!({"format": "complex", "application": {"format": "opaque", "id": format!("deleted-client-{number}")}}),
                json!({CLIENT_DELETED: {"tokens_expire_by": until}}),
            ),
        };
        busy.emit(sub_id, event);
    }
    eprintln!("{HELD} SETs signed in {:?}", started.elapsed());
    let started = Instant::now();
    let (none, empty, held) = runtime.block_on(async {
        // The quiet issuer without a subscription: today's warm path.
        let none = Validator::builder()
            .issuer(&quiet.issuer)
            .audience(support::AUDIENCE)
            .algorithms(scopegate_validator::Algorithm::ALL)
            .clock(clock.clone())
            .build()
            .unwrap();
        let empty = quiet.validator();
        let held = busy.validator();
        busy.wait_until("the 100 000 revocations applied", || {
            let status = &held.revocation_stream_status()[0];
            status.connected && status.revoked_held == HELD
        })
        .await;
        quiet
            .wait_until("the quiet stream caught up", || {
                empty.revocation_stream_status()[0].connected
            })
            .await;
        (none, empty, held)
    });
    eprintln!(
        "applied by the validator in {:?}; stream status: {:?}",
        started.elapsed(),
        held.revocation_stream_status()[0]
    );
    // Not revoked, but carrying every identifier an event can name.
    let claims = |tx: &Transmitter, number: usize| {
        tx.token(json!({"jti": format!("live-token-{number}"),
                        "sid": format!("live-session-{number}"),
                        "sub": format!("live-user-{number}"),
                        "client_id": format!("live-client-{number}")}))
    };
    let quiet_token = claims(&quiet, POOL);
    let busy_token = claims(&busy, POOL);
    let quiet_pool: Vec<String> = (0..POOL).map(|number| claims(&quiet, number)).collect();
    let busy_pool: Vec<String> = (0..POOL).map(|number| claims(&busy, number)).collect();
    runtime.block_on(async {
        for token in quiet_pool.iter().chain([&quiet_token]) {
            none.validate(token).await.unwrap();
            empty.validate(token).await.unwrap();
        }
        for token in busy_pool.iter().chain([&busy_token]) {
            held.validate(token).await.unwrap();
        }
    });
    Setup {
        runtime,
        quiet,
        busy,
        none,
        empty,
        held,
        quiet_token,
        busy_token,
        busy_pool,
        quiet_pool,
    }
}

impl Setup {
    /// A new snapshot for `held`: one more revocation, applied. Returns how long it took from
    /// publication (signing included) to the new snapshot.
    fn new_snapshot(&self) -> Duration {
        let before = applied(&self.held);
        let started = Instant::now();
        self.busy.revoke_jti("yet-another");
        let done =
            self.runtime
                .block_on(self.busy.wait_until_polling(Duration::from_micros(50), || {
                    applied(&self.held) > before
                }));
        assert!(done, "the new event was not applied");
        started.elapsed()
    }

    /// Validates `count` tokens of `pool` (cycling), each pass over the pool after `between`
    /// (not timed).
    fn pool_pass(
        &self,
        validator: &Validator,
        pool: &[String],
        count: u64,
        between: impl Fn(),
    ) -> Duration {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < count {
            between();
            let take = (count - done).min(pool.len() as u64) as usize;
            let started = Instant::now();
            for token in &pool[..take] {
                ready(validator.validate(black_box(token))).unwrap();
            }
            total += started.elapsed();
            done += take as u64;
        }
        total
    }
}

fn criterion_groups(criterion: &mut Criterion, setup: &Setup) {
    let mut group = criterion.benchmark_group("warm JWT (ES256)");
    group.bench_function("no subscription", |b| {
        b.iter(|| ready(setup.none.validate(black_box(&setup.quiet_token))).unwrap())
    });
    group.bench_function("subscribed, nothing revoked", |b| {
        b.iter(|| ready(setup.empty.validate(black_box(&setup.quiet_token))).unwrap())
    });
    group.bench_function("subscribed, 100000 revoked held", |b| {
        b.iter(|| ready(setup.held.validate(black_box(&setup.busy_token))).unwrap())
    });
    group.finish();

    let mut group = criterion.benchmark_group("first check after a new snapshot (20000 tokens)");
    group.bench_function("no subscription", |b| {
        b.iter_custom(|iters| setup.pool_pass(&setup.none, &setup.quiet_pool, iters, || {}))
    });
    group.bench_function("subscribed, 100000 revoked held", |b| {
        b.iter_custom(|iters| {
            setup.pool_pass(&setup.held, &setup.busy_pool, iters, || {
                setup.new_snapshot();
            })
        })
    });
    group.finish();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 4], values[values.len() * 3 / 4])
}

/// Alternating rounds: the three warm paths one after another in each round, the ratio per
/// round.
fn alternating(setup: &Setup) {
    let (mut none, mut empty, mut held) = (vec![], vec![], vec![]);
    let (mut empty_ratio, mut held_ratio) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        let none_ns = time(20_000, || {
            ready(setup.none.validate(black_box(&setup.quiet_token))).unwrap();
        });
        let empty_ns = time(20_000, || {
            ready(setup.empty.validate(black_box(&setup.quiet_token))).unwrap();
        });
        let held_ns = time(20_000, || {
            ready(setup.held.validate(black_box(&setup.busy_token))).unwrap();
        });
        empty_ratio.push(empty_ns / none_ns);
        held_ratio.push(held_ns / none_ns);
        none.push(none_ns);
        empty.push(empty_ns);
        held.push(held_ns);
    }
    let applying = std::cell::RefCell::new(Vec::new());
    let (mut first_none, mut first_held, mut first_ratio) = (vec![], vec![], vec![]);
    for _ in 0..9 {
        let count = POOL as u64;
        let none_ns = setup
            .pool_pass(&setup.none, &setup.quiet_pool, count, || {})
            .as_nanos() as f64
            / count as f64;
        let held_ns = setup
            .pool_pass(&setup.held, &setup.busy_pool, count, || {
                let took = setup.new_snapshot();
                applying.borrow_mut().push(took.as_secs_f64() * 1000.0);
            })
            .as_nanos() as f64
            / count as f64;
        first_ratio.push(held_ns / none_ns);
        first_none.push(none_ns);
        first_held.push(held_ns);
    }
    println!(
        "\n{ROUNDS} alternating rounds of 20 000 calls; medians, and the interquartile range of the per-round ratio"
    );
    println!(
        "{:44} {:>9} {:>9} {:>15}",
        "warm JWT (ES256)", "median", "× none", "IQR"
    );
    println!("{:44} {:>7.0}ns", "no subscription", median(&mut none));
    for (name, values, ratios) in [
        ("subscribed, nothing revoked", &mut empty, &mut empty_ratio),
        (
            "subscribed, 100 000 revoked held",
            &mut held,
            &mut held_ratio,
        ),
    ] {
        let (low, high) = quartiles(&mut ratios.clone());
        println!(
            "{name:44} {:>7.0}ns {:>8.3}× {:>7.3}–{:.3}",
            median(values),
            median(ratios),
            low,
            high
        );
    }
    let (low, high) = quartiles(&mut first_ratio.clone());
    println!(
        "\n9 alternating passes over 20 000 distinct cached tokens; the held validator gets a new snapshot before each pass"
    );
    println!(
        "{:44} {:>7.0}ns",
        "no subscription",
        median(&mut first_none)
    );
    println!(
        "{:44} {:>7.0}ns {:>8.3}× {:>7.3}–{:.3}",
        "100 000 held, first check after a snapshot",
        median(&mut first_held),
        median(&mut first_ratio),
        low,
        high
    );
    println!(
        "one event with 100 000 held, from publication (signing included) to the new snapshot: \
         median {:.2} ms",
        median(&mut applying.borrow_mut())
    );
}

fn main() {
    let setup = setup();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion, &setup);
    criterion.final_summary();
    alternating(&setup);
    drop(setup.quiet);
}
