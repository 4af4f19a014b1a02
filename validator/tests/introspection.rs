//! Opaque tokens through the fake IdP's RFC 7662 endpoint: caching bounded by `exp`,
//! coalescing, strict answers, and the failure policy. Time moves on a mock clock.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use scopegate_validator::{Error, FetchError, InvalidToken, MockClock};
use serde_json::json;
use support::{FakeIdp, Mode, SigningKey};

const TOKEN: &str = "opaque-3q2+7w_x.y~z/0=";

async fn idp() -> FakeIdp {
    FakeIdp::start(&[&SigningKey::es256("k")]).await
}

fn invalid(result: Result<Arc<scopegate_validator::Principal>, Error>) -> InvalidToken {
    match result {
        Err(Error::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn an_opaque_token_is_introspected_and_the_answer_cached() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let principal = validator.validate(TOKEN).await.unwrap();
    assert_eq!(principal.subject(), Some("user-1"));
    assert_eq!(principal.client_id(), Some("client-1"));
    assert_eq!(principal.scopes().to_string(), "akamai:social_profile:read");
    assert_eq!(principal.issuer(), idp.issuer);
    for _ in 0..10 {
        validator.validate(TOKEN).await.unwrap();
    }
    assert_eq!(idp.introspection_calls(), 1);
    assert_eq!(idp.discovery_hits(), 1, "the endpoint came from discovery");
}

#[tokio::test]
async fn a_configured_endpoint_is_used_without_discovery() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_endpoint(format!("{}/introspect", idp.issuer))
        .build()
        .unwrap();
    validator.validate(TOKEN).await.unwrap();
    assert_eq!(idp.discovery_hits(), 0);
}

#[tokio::test]
async fn refused_api_credentials_are_unavailable_not_invalid() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    for (id, secret) in [
        (support::API_ID, "wrong"),
        ("api%3Aone%2Btwo", support::API_SECRET),
    ] {
        let validator = idp
            .validator_builder(&clock)
            .introspection(id, secret)
            .build()
            .unwrap();
        let error = validator.validate(TOKEN).await.unwrap_err();
        assert!(error.is_unavailable(), "{id}: {error:?}");
    }
}

#[tokio::test]
async fn an_active_answer_lives_at_most_until_exp() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 20));
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_cache(1000, Duration::from_secs(60), Duration::from_secs(10))
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    validator.validate(TOKEN).await.unwrap();
    clock.advance(Duration::from_secs(19));
    validator.validate(TOKEN).await.unwrap();
    assert_eq!(idp.introspection_calls(), 1, "cached until exp");
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        invalid(validator.validate(TOKEN).await),
        InvalidToken::Expired
    );
    assert_eq!(
        idp.introspection_calls(),
        2,
        "asked again at exp, not at max TTL"
    );
}

#[tokio::test]
async fn an_active_answer_lives_at_most_the_max_ttl() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_cache(1000, Duration::from_secs(60), Duration::from_secs(10))
        .build()
        .unwrap();
    validator.validate(TOKEN).await.unwrap();
    clock.advance(Duration::from_secs(59));
    validator.validate(TOKEN).await.unwrap();
    assert_eq!(idp.introspection_calls(), 1);
    clock.advance(Duration::from_secs(1));
    validator.validate(TOKEN).await.unwrap();
    assert_eq!(idp.introspection_calls(), 2);
}

#[tokio::test]
async fn a_revoked_token_is_rejected_once_its_entry_expires() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_cache(1000, Duration::from_secs(30), Duration::from_secs(5))
        .build()
        .unwrap();
    validator.validate(TOKEN).await.unwrap();
    idp.revoke(TOKEN);
    clock.advance(Duration::from_secs(29));
    validator
        .validate(TOKEN)
        .await
        .expect("still within the cache lifetime");
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        invalid(validator.validate(TOKEN).await),
        InvalidToken::Inactive
    );
}

#[tokio::test]
async fn inactive_answers_are_cached_briefly() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_cache(1000, Duration::from_secs(60), Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            invalid(validator.validate(TOKEN).await),
            InvalidToken::Inactive
        );
    }
    assert_eq!(idp.introspection_calls(), 1);
    clock.advance(Duration::from_secs(5));
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    validator
        .validate(TOKEN)
        .await
        .expect("asked again after the inactive TTL");
    assert_eq!(idp.introspection_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_one_token_make_one_call() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    idp.set_introspection_mode(Mode::Slow(Duration::from_millis(300)));
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let validator = validator.clone();
            tokio::spawn(async move { validator.validate(TOKEN).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        idp.introspection_calls(),
        1,
        "1000 concurrent misses, one call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_tokens_is_bounded_in_memory_and_calls() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_cache(100, Duration::from_secs(60), Duration::from_secs(10))
        .introspection_max_concurrent_calls(4)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|index| {
            let validator = validator.clone();
            // Half are not even bearer-token syntax: refused without a call.
            let token = if index % 2 == 0 {
                format!("random-{index}-{}", index * 7919)
            } else {
                format!("junk {index} \"")
            };
            tokio::spawn(async move { validator.validate(&token).await })
        })
        .collect();
    for task in tasks {
        let reason = invalid(task.await.unwrap());
        assert!(
            matches!(
                reason,
                InvalidToken::Inactive | InvalidToken::NotBearerSyntax
            ),
            "{reason:?}"
        );
    }
    assert_eq!(
        idp.introspection_calls(),
        500,
        "one call per distinct well-formed token"
    );
    assert!(
        idp.max_in_flight() <= 4,
        "in flight at once: {}",
        idp.max_in_flight()
    );
    let cached = validator.cache_stats().await.introspection_answers;
    assert!(cached <= 100, "cache holds {cached} answers, capacity 100");
}

#[tokio::test]
async fn two_issuers_never_share_answers() {
    let one = idp().await;
    let two = idp().await;
    let clock = MockClock::at_system_time();
    one.set_answer(TOKEN, one.active_answer(&clock, 3600));
    let first = one.introspecting_validator(&clock).build().unwrap();
    let second = two.introspecting_validator(&clock).build().unwrap();
    first.validate(TOKEN).await.unwrap();
    assert_eq!(
        invalid(second.validate(TOKEN).await),
        InvalidToken::Inactive
    );
    assert_eq!(
        two.introspection_calls(),
        1,
        "the second issuer was asked itself"
    );
}

#[tokio::test]
async fn an_answer_without_a_boolean_active_is_refused() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let mut answer = idp.active_answer(&clock, 3600);
    for active in [json!("true"), json!(1), json!(null), json!({"value": true})] {
        answer["active"] = active.clone();
        idp.lie(Some(answer.clone()));
        let error = validator
            .validate(&format!("t{}", active.to_string().len()))
            .await
            .unwrap_err();
        assert!(error.is_unavailable(), "active={active}: {error:?}");
        let Error::Unavailable(unavailable) = error else {
            unreachable!()
        };
        assert!(matches!(
            unavailable.fetch_error(),
            FetchError::InvalidDocument { .. }
        ));
    }
    answer.as_object_mut().unwrap().remove("active");
    idp.lie(Some(answer));
    assert!(
        validator
            .validate("no-active")
            .await
            .unwrap_err()
            .is_unavailable()
    );
}

#[tokio::test]
async fn inactive_means_invalid_whatever_else_the_answer_says() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let mut answer = idp.active_answer(&clock, 3600);
    answer["active"] = json!(false);
    answer["scope"] = json!("akamai:social_profile:*");
    idp.lie(Some(answer));
    assert_eq!(
        invalid(validator.validate(TOKEN).await),
        InvalidToken::Inactive
    );
}

#[tokio::test]
async fn an_active_answer_is_checked_like_a_jwt() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let now = scopegate_validator::Clock::now(&clock).as_secs();
    let cases = [
        ("iss", json!("https://evil.test"), InvalidToken::WrongIssuer),
        (
            "aud",
            json!("https://other.test"),
            InvalidToken::WrongAudience,
        ),
        ("exp", json!(now - 3600), InvalidToken::Expired),
        (
            "exp",
            json!("soon"),
            InvalidToken::Claim {
                name: "exp",
                problem: "not a number",
            },
        ),
        ("nbf", json!(now + 3600), InvalidToken::NotYetValid),
        (
            "sub",
            json!(7),
            InvalidToken::Claim {
                name: "sub",
                problem: "not a string",
            },
        ),
    ];
    for (index, (name, value, expected)) in cases.into_iter().enumerate() {
        let mut answer = idp.active_answer(&clock, 3600);
        answer[name] = value;
        idp.lie(Some(answer));
        let token = format!("lie-{index}");
        assert_eq!(
            invalid(validator.validate(&token).await),
            expected,
            "{name}"
        );
    }
    let mut answer = idp.active_answer(&clock, 3600);
    answer["scope"] = json!(["openid", "akamai:social_profile:*"]);
    idp.lie(Some(answer));
    let principal = validator.validate("array-scope").await.unwrap();
    assert_eq!(principal.scopes().len(), 2);
}

#[tokio::test]
async fn endpoint_failures_are_unavailable_and_never_cached() {
    for failure in [
        Mode::Status(500),
        Mode::Status(503),
        Mode::Garbage,
        Mode::Huge,
    ] {
        let idp = idp().await;
        let clock = MockClock::at_system_time();
        idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
        let validator = idp.introspecting_validator(&clock).build().unwrap();
        idp.set_introspection_mode(failure.clone());
        for _ in 0..3 {
            let error = validator.validate(TOKEN).await.unwrap_err();
            assert!(error.is_unavailable(), "{failure:?}: {error:?}");
            assert!(error.retry_after().is_some());
        }
        assert_eq!(
            idp.introspection_calls(),
            3,
            "{failure:?}: errors are not cached"
        );
        idp.set_introspection_mode(Mode::Normal);
        validator.validate(TOKEN).await.expect("recovers at once");
    }
}

#[tokio::test]
async fn a_slow_endpoint_times_out_as_unavailable() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    idp.set_introspection_mode(Mode::Slow(Duration::from_secs(5)));
    let validator = idp
        .introspecting_validator(&clock)
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    assert!(
        validator
            .validate(TOKEN)
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_stale_answer_is_not_served_by_default() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    validator.validate(TOKEN).await.unwrap();
    idp.set_introspection_mode(Mode::Status(500));
    clock.advance(Duration::from_secs(61));
    assert!(
        validator
            .validate(TOKEN)
            .await
            .unwrap_err()
            .is_unavailable()
    );
}

#[tokio::test]
async fn serve_stale_keeps_an_active_answer_for_a_bounded_time() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_cache(1000, Duration::from_secs(60), Duration::from_secs(10))
        .introspection_serve_stale(Duration::from_secs(300))
        .build()
        .unwrap();
    validator.validate(TOKEN).await.unwrap();
    idp.set_introspection_mode(Mode::Status(503));

    clock.advance(Duration::from_secs(61));
    validator
        .validate(TOKEN)
        .await
        .expect("served stale while the endpoint is down");
    let calls = idp.introspection_calls();
    validator.validate(TOKEN).await.unwrap();
    assert_eq!(
        idp.introspection_calls(),
        calls,
        "the stand-in is not retried at once"
    );
    clock.advance(Duration::from_secs(5));
    validator.validate(TOKEN).await.unwrap();
    assert_eq!(
        idp.introspection_calls(),
        calls + 1,
        "retried after a few seconds"
    );

    clock.advance(Duration::from_secs(300));
    assert!(
        validator
            .validate(TOKEN)
            .await
            .unwrap_err()
            .is_unavailable(),
        "bound reached"
    );

    // An inactive answer is never served stale.
    idp.set_introspection_mode(Mode::Normal);
    idp.revoke(TOKEN);
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        invalid(validator.validate(TOKEN).await),
        InvalidToken::Inactive
    );
}

#[tokio::test]
async fn jwts_are_also_introspected_when_switched_on() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let token = key.sign(&idp.claims(&clock));
    idp.set_answer(&token, idp.active_answer(&clock, 600));
    let validator = idp
        .introspecting_validator(&clock)
        .introspect_jwts(true)
        .build()
        .unwrap();
    validator.validate(&token).await.unwrap();
    assert_eq!(idp.introspection_calls(), 1);

    idp.revoke(&token);
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        invalid(validator.validate(&token).await),
        InvalidToken::Inactive
    );

    // Without the switch, a JWT never reaches the endpoint.
    let local_only = idp.introspecting_validator(&clock).build().unwrap();
    local_only.validate(&token).await.unwrap();
    assert_eq!(idp.introspection_calls(), 2);
}

#[tokio::test]
async fn text_that_is_not_a_bearer_token_is_refused_without_a_call() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    for token in ["has space", "quote\"d", "é", "a=b", "=="] {
        assert!(matches!(
            invalid(validator.validate(token).await),
            InvalidToken::NotBearerSyntax
        ));
    }
    assert_eq!(idp.introspection_calls(), 0);
}

#[tokio::test]
async fn introspection_settings_are_checked_at_build() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let field =
        |builder: scopegate_validator::ValidatorBuilder| builder.build().unwrap_err().field();
    assert_eq!(
        field(idp.validator_builder(&clock).introspection("", "x")),
        "introspection"
    );
    assert_eq!(
        field(idp.validator_builder(&clock).introspect_jwts(true)),
        "introspection"
    );
    assert_eq!(
        field(
            idp.validator_builder(&clock)
                .introspection_endpoint("https://idp.test/introspect")
        ),
        "introspection"
    );
    assert_eq!(
        field(
            idp.introspecting_validator(&clock)
                .introspection_endpoint("http://idp.test/i")
        ),
        "introspection_endpoint"
    );
    assert_eq!(
        field(idp.introspecting_validator(&clock).introspection_cache(
            0,
            Duration::from_secs(1),
            Duration::ZERO
        )),
        "introspection_cache"
    );
    assert_eq!(
        field(
            idp.introspecting_validator(&clock)
                .introspection_serve_stale(Duration::ZERO)
        ),
        "introspection_serve_stale"
    );
    let debug = format!("{:?}", idp.introspecting_validator(&clock));
    assert!(
        !debug.contains(support::API_SECRET),
        "the secret leaked into Debug: {debug}"
    );
}

#[tokio::test]
async fn an_active_refresh_token_is_not_an_access_token() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let mut answer = idp.active_answer(&clock, 3600);
    answer["token_type"] = json!("refresh_token");
    idp.set_answer(TOKEN, answer);
    assert_eq!(
        invalid(validator.validate(TOKEN).await),
        InvalidToken::Inactive
    );
}

#[tokio::test]
async fn failed_discovery_is_not_retried_by_every_request() {
    let idp = idp().await;
    idp.set_discovery_issuer("https://evil.test");
    let clock = MockClock::at_system_time();
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    for _ in 0..10 {
        assert!(
            validator
                .validate(TOKEN)
                .await
                .unwrap_err()
                .is_unavailable()
        );
    }
    assert_eq!(
        idp.discovery_hits(),
        1,
        "one attempt, then the backoff answers"
    );
    clock.advance(Duration::from_secs(5));
    assert!(
        validator
            .validate(TOKEN)
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert_eq!(idp.discovery_hits(), 2);
}

#[tokio::test]
async fn cached_answers_only_what_was_validated_and_is_still_fresh() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .introspecting_validator(&clock)
        .introspection_cache(1000, Duration::from_secs(60), Duration::from_secs(10))
        .build()
        .unwrap();
    let jwt = key.sign(&idp.claims(&clock));
    idp.set_answer(TOKEN, idp.active_answer(&clock, 3600));

    assert!(validator.cached(&jwt).is_none(), "not validated yet");
    assert!(validator.cached(TOKEN).is_none(), "not introspected yet");
    let verified = validator.validate(&jwt).await.unwrap();
    let introspected = validator.validate(TOKEN).await.unwrap();
    assert!(Arc::ptr_eq(&validator.cached(&jwt).unwrap(), &verified));
    assert!(Arc::ptr_eq(
        &validator.cached(TOKEN).unwrap(),
        &introspected
    ));

    assert!(validator.validate("unknown-token").await.is_err());
    assert!(
        validator.cached("unknown-token").is_none(),
        "an inactive answer is not a principal"
    );
    assert!(validator.cached("").is_none());
    assert!(validator.cached(&"a".repeat(10_000)).is_none());

    clock.advance(Duration::from_secs(60));
    assert!(
        validator.cached(TOKEN).is_none(),
        "past the introspection cache lifetime"
    );
    assert!(
        validator.cached(&jwt).is_some(),
        "the JWT is good until its exp"
    );
    clock.advance(Duration::from_secs(600));
    assert!(validator.cached(&jwt).is_none(), "past exp");
}

#[tokio::test]
async fn an_introspection_answer_keeps_cnf_and_a_malformed_one_is_invalid() {
    let idp = idp().await;
    let clock = MockClock::at_system_time();
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let mut bound = idp.active_answer(&clock, 3600);
    bound["cnf"] = json!({ "jkt": jkt });
    idp.set_answer(TOKEN, bound);
    let validator = idp.introspecting_validator(&clock).build().unwrap();
    let principal = validator.validate(TOKEN).await.unwrap();
    assert_eq!(principal.bound_key_thumbprint(), Some(jkt));

    for (token, cnf) in [
        ("cnf-not-an-object", json!(jkt)),
        ("jkt-not-a-string", json!({ "jkt": [jkt] })),
    ] {
        let mut answer = idp.active_answer(&clock, 3600);
        answer["cnf"] = cnf;
        idp.set_answer(token, answer);
        assert!(
            matches!(
                invalid(validator.validate(token).await),
                InvalidToken::Claim { name: "cnf", .. }
            ),
            "{token}"
        );
    }
}
