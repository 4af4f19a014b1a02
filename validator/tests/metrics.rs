//! Each of the validator's metrics moves when its event happens, against a fake IdP (and a
//! revocation event transmitter) over real HTTP on loopback. A recorder is process-wide, so
//! these tests have a binary of their own; each reads only the series of its own issuer (its
//! own port) and compares values before and after what it does. Time moves on a mock clock.

#![allow(clippy::unwrap_used, clippy::float_cmp)]

#[path = "support/recorder.rs"]
mod recorder;
mod support;

use std::time::Duration;

use recorder::{Metrics, eventually, metrics};
use scopegate_validator::{Clock as _, Error, InvalidToken, MockClock, Validator};
use serde_json::json;
use support::transmitter::{PollMode, Transmitter};
use support::{FakeIdp, Mode, SigningKey};

const MINUTE: Duration = Duration::from_secs(60);
const OPAQUE: &str = "opaque-7Yq2+w_x.y~z/0=";

/// The metrics of one issuer.
struct Series {
    metrics: &'static Metrics,
    issuer: String,
}

impl Series {
    /// Installs the recorder first: a validator built before it would record nothing.
    fn of(issuer: &str) -> Self {
        Self {
            metrics: metrics(),
            issuer: issuer.to_owned(),
        }
    }

    fn count(&self, name: &str) -> u64 {
        self.metrics.counter(name, &[("issuer", &self.issuer)])
    }

    fn count_of(&self, name: &str, result: &str) -> u64 {
        self.metrics
            .counter(name, &[("issuer", &self.issuer), ("result", result)])
    }

    fn gauge(&self, name: &str) -> f64 {
        self.metrics
            .gauge(name, &[("issuer", &self.issuer)])
            .unwrap_or_else(|| panic!("{name} is registered"))
    }

    fn observations(&self, name: &str) -> Vec<f64> {
        self.metrics.histogram(name, &[("issuer", &self.issuer)])
    }
}

fn seconds(clock: &MockClock) -> f64 {
    clock.now().as_secs_f64()
}

fn distinct_token(idp: &FakeIdp, key: &SigningKey, clock: &MockClock, jti: &str) -> String {
    let mut claims = idp.claims(clock);
    claims["jti"] = json!(jti);
    key.sign(&claims)
}

#[tokio::test]
async fn key_set_fetches_are_counted_by_result_timed_and_their_time_recorded() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_etag(Some("\"v1\""));
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let (ok, not_modified) = (
        series.count_of("scopegate_jwks_fetches_total", "ok"),
        series.count_of("scopegate_jwks_fetches_total", "not_modified"),
    );
    let timed = series
        .observations("scopegate_jwks_fetch_duration_seconds")
        .len();
    let discovered = series.count_of("scopegate_discovery_fetches_total", "ok");

    validator.refresh_keys().await.unwrap();
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "ok"),
        ok + 1
    );
    assert_eq!(
        series.count_of("scopegate_discovery_fetches_total", "ok"),
        discovered + 1
    );
    assert_eq!(
        series.gauge("scopegate_jwks_last_refresh_timestamp_seconds"),
        seconds(&clock)
    );
    assert_eq!(series.gauge("scopegate_jwks_stale"), 0.0);

    clock.advance(6 * MINUTE);
    validator.refresh_keys().await.unwrap();
    assert_eq!(idp.not_modified(), 1);
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "not_modified"),
        not_modified + 1
    );
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "ok"),
        ok + 1
    );
    assert_eq!(
        series.gauge("scopegate_jwks_last_refresh_timestamp_seconds"),
        seconds(&clock),
        "a revalidation is a refresh"
    );
    let durations = series.observations("scopegate_jwks_fetch_duration_seconds");
    assert_eq!(durations.len(), timed + 2);
    assert!(durations.iter().all(|seconds| (0.0..5.0).contains(seconds)));
    assert_eq!(
        series.count_of("scopegate_discovery_fetches_total", "ok"),
        discovered + 1,
        "discovery is fetched once, not per key-set fetch"
    );
}

#[tokio::test]
async fn an_outage_marks_the_key_set_stale_until_a_refresh_succeeds() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .jwks_ttl(MINUTE, 5 * MINUTE, 60 * MINUTE)
        .jwks_max_stale(60 * MINUTE)
        .build()
        .unwrap();
    validator.refresh_keys().await.unwrap();
    let refreshed_at = seconds(&clock);
    let failed = series.count_of("scopegate_jwks_fetches_total", "failed");
    assert_eq!(series.gauge("scopegate_jwks_stale"), 0.0);

    idp.set_mode(Mode::Status(500));
    clock.advance(6 * MINUTE);
    // Past its lifetime, and the refresh fails: the last good set keeps serving, stale.
    validator.refresh_keys().await.unwrap();
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "failed"),
        failed + 1
    );
    assert_eq!(series.gauge("scopegate_jwks_stale"), 1.0);
    assert_eq!(
        series.gauge("scopegate_jwks_last_refresh_timestamp_seconds"),
        refreshed_at,
        "a failure is no refresh"
    );
    validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .expect("the stale set is in use");

    idp.set_mode(Mode::Normal);
    clock.advance(MINUTE);
    validator.refresh_keys().await.unwrap();
    assert_eq!(series.gauge("scopegate_jwks_stale"), 0.0);
    assert_eq!(
        series.gauge("scopegate_jwks_last_refresh_timestamp_seconds"),
        seconds(&clock)
    );
}

#[tokio::test]
async fn an_unreachable_issuer_counts_one_failed_fetch_then_refusals_within_the_backoff() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_mode(Mode::Status(503));
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .jwks_failure_backoff(Duration::from_secs(10))
        .build()
        .unwrap();
    let (failed, backoff) = (
        series.count_of("scopegate_jwks_fetches_total", "failed"),
        series.count_of("scopegate_jwks_fetches_total", "backoff"),
    );
    let timed = series
        .observations("scopegate_jwks_fetch_duration_seconds")
        .len();
    let token = key.sign(&idp.claims(&clock));
    for _ in 0..5 {
        assert!(
            validator
                .validate(&token)
                .await
                .unwrap_err()
                .is_unavailable()
        );
    }
    assert_eq!(idp.jwks_hits(), 1);
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "failed"),
        failed + 1
    );
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "backoff"),
        backoff + 4
    );
    assert_eq!(
        series
            .observations("scopegate_jwks_fetch_duration_seconds")
            .len(),
        timed + 1,
        "only a fetch that was made is timed"
    );
    assert_eq!(
        series.gauge("scopegate_jwks_stale"),
        0.0,
        "no key set to serve"
    );
}

#[tokio::test]
async fn a_failed_discovery_is_counted_and_not_retried_within_the_backoff() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_discovery_issuer("https://impostor.example.test");
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let (failed, backoff) = (
        series.count_of("scopegate_discovery_fetches_total", "failed"),
        series.count_of("scopegate_discovery_fetches_total", "backoff"),
    );
    let error = validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    // An opaque token needs the introspection endpoint from the same metadata.
    assert!(
        validator
            .validate(OPAQUE)
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert_eq!(idp.discovery_hits(), 1);
    assert_eq!(
        series.count_of("scopegate_discovery_fetches_total", "failed"),
        failed + 1
    );
    assert_eq!(
        series.count_of("scopegate_discovery_fetches_total", "backoff"),
        backoff + 1
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_per_cooldown_and_the_rest_are_refused() {
    let old = SigningKey::es256("old");
    let idp = FakeIdp::start(&[&old]).await;
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .jwks_refetch_cooldown(MINUTE)
        .build()
        .unwrap();
    validator
        .validate(&old.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    let refetches = series.count("scopegate_jwks_unknown_kid_refetches_total");
    let cooldown = series.count_of("scopegate_jwks_fetches_total", "cooldown");
    let ok = series.count_of("scopegate_jwks_fetches_total", "ok");

    let new = SigningKey::es256("new");
    idp.set_keys(&[&old, &new]);
    clock.advance(MINUTE);
    validator
        .validate(&new.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    assert_eq!(
        series.count("scopegate_jwks_unknown_kid_refetches_total"),
        refetches + 1
    );
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "ok"),
        ok + 1
    );

    for kid in ["stranger-1", "stranger-2", "stranger-3"] {
        let token = SigningKey::es256(kid).sign(&idp.claims(&clock));
        let error = validator.validate(&token).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidToken(InvalidToken::UnknownKey(_))),
            "{error:?}"
        );
    }
    assert_eq!(idp.jwks_hits(), 2);
    assert_eq!(
        series.count_of("scopegate_jwks_fetches_total", "cooldown"),
        cooldown + 3
    );
    assert_eq!(
        series.count("scopegate_jwks_unknown_kid_refetches_total"),
        refetches + 1
    );

    clock.advance(MINUTE);
    let token = SigningKey::es256("stranger-4").sign(&idp.claims(&clock));
    assert!(validator.validate(&token).await.is_err());
    assert_eq!(
        series.count("scopegate_jwks_unknown_kid_refetches_total"),
        refetches + 2
    );
}

#[tokio::test]
async fn the_verified_token_cache_counts_hits_misses_and_entries() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    let entries = series
        .metrics
        .gauge(
            "scopegate_verified_cache_entries",
            &[("issuer", &idp.issuer)],
        )
        .unwrap_or(0.0);
    let validator = idp.validator(&clock);
    let (hits, misses) = (
        series.count_of("scopegate_verified_cache_requests_total", "hit"),
        series.count_of("scopegate_verified_cache_requests_total", "miss"),
    );
    let tokens: Vec<String> = (1..=3)
        .map(|n| distinct_token(&idp, &key, &clock, &format!("t-{n}")))
        .collect();
    for token in &tokens {
        validator.validate(token).await.unwrap();
    }
    assert_eq!(
        series.count_of("scopegate_verified_cache_requests_total", "miss"),
        misses + 3
    );
    assert_eq!(
        series.gauge("scopegate_verified_cache_entries"),
        entries + 3.0
    );
    for token in &tokens {
        validator.validate(token).await.unwrap();
    }
    assert!(validator.cached(&tokens[0]).is_some());
    assert_eq!(
        series.count_of("scopegate_verified_cache_requests_total", "hit"),
        hits + 4
    );

    // A forgery is looked up, verified in full, refused, and never cached.
    let (signed, _) = tokens[0].rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", support::b64([7u8; 64]));
    let error = validator.validate(&forged).await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidToken(InvalidToken::BadSignature)),
        "{error:?}"
    );
    assert_eq!(
        series.count_of("scopegate_verified_cache_requests_total", "miss"),
        misses + 4
    );
    assert_eq!(
        series.gauge("scopegate_verified_cache_entries"),
        entries + 3.0
    );

    // A validator dropped (a configuration reloaded) takes its entries with it.
    drop(validator);
    assert_eq!(series.gauge("scopegate_verified_cache_entries"), entries);
}

#[tokio::test]
async fn introspection_calls_are_counted_by_answer_timed_and_their_answers_cached() {
    let idp = FakeIdp::start(&[&SigningKey::es256("k")]).await;
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    idp.set_answer(OPAQUE, idp.active_answer(&clock, 3600));
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let count = |result| series.count_of("scopegate_introspection_requests_total", result);
    let cache = |result| series.count_of("scopegate_introspection_cache_requests_total", result);
    let (active, inactive, failed) = (count("active"), count("inactive"), count("failed"));
    let (hits, misses) = (cache("hit"), cache("miss"));
    let timed = series
        .observations("scopegate_introspection_duration_seconds")
        .len();

    validator.validate(OPAQUE).await.unwrap();
    validator.validate(OPAQUE).await.unwrap();
    assert!(validator.cached(OPAQUE).is_some());
    assert_eq!(count("active"), active + 1);
    assert_eq!((cache("miss"), cache("hit")), (misses + 1, hits + 2));

    let unknown = "opaque-unknown-4Rt9";
    for _ in 0..2 {
        assert!(matches!(
            validator.validate(unknown).await,
            Err(Error::InvalidToken(InvalidToken::Inactive))
        ));
    }
    assert_eq!(count("inactive"), inactive + 1);
    assert_eq!(
        (cache("miss"), cache("hit")),
        (misses + 2, hits + 3),
        "an inactive answer is cached too"
    );

    idp.set_introspection_mode(Mode::Status(500));
    let error = validator
        .validate("opaque-during-outage")
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert_eq!(count("failed"), failed + 1);
    assert_eq!(idp.introspection_calls(), 3);
    let durations = series.observations("scopegate_introspection_duration_seconds");
    assert_eq!(durations.len(), timed + 3, "every call is timed");
    assert_eq!(series.gauge("scopegate_introspection_in_flight"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_opaque_token_share_one_call() {
    const WAITERS: u64 = 20;
    let idp = FakeIdp::start(&[&SigningKey::es256("k")]).await;
    let series = Series::of(&idp.issuer);
    let clock = MockClock::at_system_time();
    idp.set_answer(OPAQUE, idp.active_answer(&clock, 3600));
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let misses = series.count_of("scopegate_introspection_cache_requests_total", "miss");
    let coalesced = series.count("scopegate_introspection_coalesced_total");
    let active = series.count_of("scopegate_introspection_requests_total", "active");

    idp.set_introspection_mode(Mode::Held);
    let tasks: Vec<_> = (0..WAITERS)
        .map(|_| {
            let validator = validator.clone();
            tokio::spawn(async move { validator.validate(OPAQUE).await })
        })
        .collect();
    eventually("every request to miss and one call to be held", || {
        series.count_of("scopegate_introspection_cache_requests_total", "miss") == misses + WAITERS
            && idp.introspections_in_flight() == 1
    })
    .await;
    assert_eq!(series.gauge("scopegate_introspection_in_flight"), 1.0);

    idp.set_introspection_mode(Mode::Normal);
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(idp.introspection_calls(), 1);
    assert_eq!(
        series.count_of("scopegate_introspection_requests_total", "active"),
        active + 1
    );
    assert_eq!(
        series.count("scopegate_introspection_coalesced_total"),
        coalesced + WAITERS - 1
    );
    assert_eq!(series.gauge("scopegate_introspection_in_flight"), 0.0);
}

/// A token-revoked event for `jti` signed by a key that is not the issuer's.
fn forged_revocation(tx: &Transmitter, jti: &str) -> String {
    let id = tx.next_id();
    let claims = tx.set_claims(
        &id,
        json!({"format": "opaque", "id": jti}),
        json!({support::transmitter::TOKEN_REVOKED:
               {"identifier": "jti", "tokens_expire_by": tx.now() + 600}}),
    );
    let impostor = SigningKey::es256(&tx.key.kid);
    tx.publish(&id, tx.sign_set_with(&impostor, "secevent+jwt", &claims));
    id
}

#[tokio::test]
async fn the_revocation_stream_reports_its_state_what_it_applied_and_what_it_refused() {
    let tx = Transmitter::start(&MockClock::at_system_time()).await;
    let series = Series::of(&tx.issuer);
    let validator = tx
        .validator_builder()
        .revocation_events_max_blind(MINUTE)
        .build()
        .unwrap();
    let connected = || series.gauge("scopegate_revocation_stream_connected");
    let unavailable = || series.gauge("scopegate_revocation_stream_unavailable");
    let applied = series.count("scopegate_revocation_stream_events_applied_total");
    let refused = series.count("scopegate_revocation_stream_sets_refused_total");
    eventually("the first catch-up", || connected() == 1.0).await;
    assert_eq!(
        series.gauge("scopegate_revocation_stream_last_success_timestamp_seconds"),
        seconds(&tx.clock)
    );
    assert!(series.count_of("scopegate_revocation_stream_polls_total", "ok") >= 1);
    assert_eq!(
        series.gauge("scopegate_revocation_stream_deny_set_entries"),
        0.0
    );

    let revoked = tx.token(json!({"jti": "revoked-1"}));
    validator.validate(&revoked).await.unwrap();
    let cached = series.gauge("scopegate_verified_cache_entries");
    let forged = forged_revocation(&tx, "some-other-token");
    let genuine = tx.revoke_jti("revoked-1");
    tx.wait_for_ack(&forged).await;
    tx.wait_for_ack(&genuine).await;
    assert_eq!(
        series.count("scopegate_revocation_stream_events_applied_total"),
        applied + 1
    );
    assert_eq!(
        series.count("scopegate_revocation_stream_sets_refused_total"),
        refused + 1
    );
    assert_eq!(
        series.gauge("scopegate_revocation_stream_deny_set_entries"),
        1.0
    );
    assert!(matches!(
        validator.validate(&revoked).await,
        Err(Error::InvalidToken(InvalidToken::Revoked(_)))
    ));
    assert_eq!(
        series.gauge("scopegate_verified_cache_entries"),
        cached - 1.0,
        "a revoked token leaves the verified-token cache"
    );

    // Blind: within the bound, then beyond it, then caught up again.
    let failed = series.count_of("scopegate_revocation_stream_polls_total", "failed");
    tx.set_mode(PollMode::Status(503));
    eventually("the outage seen", || connected() == 0.0).await;
    assert!(series.count_of("scopegate_revocation_stream_polls_total", "failed") > failed);
    assert_eq!(unavailable(), 0.0);
    tx.clock.advance(MINUTE + Duration::from_secs(1));
    eventually("blind beyond the bound", || unavailable() == 1.0).await;
    tx.set_mode(PollMode::Normal);
    eventually("recovery", || connected() == 1.0 && unavailable() == 0.0).await;
    assert_eq!(
        series.gauge("scopegate_revocation_stream_last_success_timestamp_seconds"),
        seconds(&tx.clock)
    );
}

#[tokio::test]
async fn labels_hold_issuers_and_fixed_words_never_a_token_or_a_subject() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let metrics = metrics();
    let clock = MockClock::at_system_time();
    idp.set_answer(OPAQUE, idp.active_answer(&clock, 3600));
    let several =
        Validator::for_issuers([idp.introspecting_validator(&clock).build().unwrap()]).unwrap();
    let jwt = key.sign(&idp.claims(&clock));
    several.validate(&jwt).await.unwrap();
    several.validate(&jwt).await.unwrap();
    several.validate(OPAQUE).await.unwrap();
    assert!(several.validate("opaque-never-seen-9").await.is_err());

    let words = [
        "ok",
        "not_modified",
        "failed",
        "cooldown",
        "backoff",
        "hit",
        "miss",
        "active",
        "inactive",
    ];
    let ours: Vec<_> = metrics
        .series()
        .into_iter()
        .filter(|(_, labels)| labels.iter().any(|(_, value)| *value == idp.issuer))
        .collect();
    assert!(ours.len() >= 20, "{ours:?}");
    for (name, labels) in &ours {
        assert!(name.starts_with("scopegate_"), "{name}");
        for (label, value) in labels {
            match label.as_str() {
                "issuer" => assert_eq!(value, &idp.issuer),
                "result" => assert!(words.contains(&value.as_str()), "{name}: {value}"),
                other => panic!("{name}: unexpected label {other}"),
            }
        }
    }
    // And nowhere in the process: no token, no part of one, no subject.
    let signature = jwt.rsplit_once('.').unwrap().1;
    for (name, labels) in metrics.series() {
        for (_, value) in labels {
            for secret in [
                jwt.as_str(),
                signature,
                OPAQUE,
                "opaque-never-seen-9",
                "user-1",
            ] {
                assert!(!value.contains(secret), "{name}: {value}");
            }
        }
    }
}

#[tokio::test]
async fn an_in_process_introspection_source_is_counted_like_an_endpoint() {
    #[derive(Debug)]
    struct Source;
    impl scopegate_validator::IntrospectionSource for Source {
        fn introspect<'a>(
            &'a self,
            token: &'a str,
        ) -> scopegate_validator::BoxFuture<
            'a,
            Result<serde_json::Map<String, serde_json::Value>, scopegate_validator::FetchError>,
        > {
            Box::pin(async move {
                let answer = if token == "in-process-active" {
                    json!({"active": true, "iss": "in-process-issuer", "aud": support::AUDIENCE,
                           "exp": MockClock::at_system_time().now().as_secs() + 600})
                } else {
                    json!({"active": false})
                };
                Ok(answer.as_object().unwrap().clone())
            })
        }
    }
    let series = Series::of("in-process-issuer");
    let before = (
        series.count_of("scopegate_introspection_requests_total", "active"),
        series.count_of("scopegate_introspection_requests_total", "inactive"),
    );
    let validator = Validator::builder()
        .issuer("in-process-issuer")
        .audience(support::AUDIENCE)
        .algorithms([scopegate_validator::Algorithm::ES256])
        .jwks_url("https://idp.example.test/jwks")
        .introspection_source(Source)
        .build()
        .unwrap();
    validator.validate("in-process-active").await.unwrap();
    assert!(validator.validate("in-process-other").await.is_err());
    assert_eq!(
        (
            series.count_of("scopegate_introspection_requests_total", "active"),
            series.count_of("scopegate_introspection_requests_total", "inactive"),
        ),
        (before.0 + 1, before.1 + 1)
    );
    assert_eq!(series.gauge("scopegate_introspection_in_flight"), 0.0);
}
