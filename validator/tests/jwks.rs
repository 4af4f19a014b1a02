//! The key-set cache against a fake IdP: lifetimes, revalidation, refetch limits, failures.
//! Time moves on a mock clock; nothing sleeps.

mod support;

use std::sync::Arc;
use std::time::Duration;

use scopegate_validator::{Error, FetchError, InvalidToken, MockClock};
use serde_json::json;
use support::{FakeIdp, Mode, SigningKey};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn keys_are_discovered_once_and_cached() {
    let key = SigningKey::rs256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .without_verified_token_cache()
        .build()
        .unwrap();
    for _ in 0..10 {
        validator
            .validate(&key.sign(&idp.claims(&clock)))
            .await
            .unwrap();
    }
    assert_eq!(idp.discovery_hits(), 1);
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn max_age_sets_the_lifetime_and_a_stale_set_is_refreshed_in_the_background() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_cache_control(Some("public, max-age=120"));
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    validator.refresh_keys().await.unwrap();
    assert_eq!(idp.jwks_hits(), 1);

    clock.advance(Duration::from_secs(119));
    validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    assert_eq!(idp.jwks_hits(), 1, "fresh for max-age seconds");

    clock.advance(Duration::from_secs(2));
    // Past max-age: this request is served from the stale set while a refresh runs.
    validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    idp.wait_for_jwks_hits(2).await;
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn max_age_is_clamped_to_the_configured_bounds() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .jwks_ttl(MINUTE, 5 * MINUTE, 60 * MINUTE)
        .build()
        .unwrap();

    idp.set_cache_control(Some("max-age=1"));
    validator.refresh_keys().await.unwrap();
    clock.advance(Duration::from_secs(59));
    validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    assert_eq!(
        idp.jwks_hits(),
        1,
        "max-age=1 is raised to the 60 s minimum"
    );

    idp.set_cache_control(Some("max-age=999999999"));
    validator.refresh_keys().await.unwrap();
    assert_eq!(idp.jwks_hits(), 2);
    clock.advance(60 * MINUTE + Duration::from_secs(1));
    validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    idp.wait_for_jwks_hits(3).await;
    assert_eq!(
        idp.jwks_hits(),
        3,
        "a huge max-age is cut to the 60 min maximum"
    );

    idp.set_cache_control(None);
    validator.refresh_keys().await.unwrap();
    clock.advance(5 * MINUTE - Duration::from_secs(1));
    validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    assert_eq!(idp.jwks_hits(), 4, "no Cache-Control: the default lifetime");
}

#[tokio::test]
async fn an_expired_set_is_revalidated_with_its_etag() {
    let key = SigningKey::eddsa("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_etag(Some("\"v1\""));
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    validator.refresh_keys().await.unwrap();
    clock.advance(6 * MINUTE);
    validator.refresh_keys().await.unwrap();
    assert_eq!(
        idp.not_modified(),
        1,
        "the second fetch sent If-None-Match and got a 304"
    );
    validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_per_cooldown() {
    let old = SigningKey::es256("old");
    let idp = FakeIdp::start(&[&old]).await;
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
    assert_eq!(idp.jwks_hits(), 1);

    // The issuer rotates: a token with the new kid triggers one refetch and verifies.
    let new = SigningKey::es256("new");
    idp.set_keys(&[&old, &new]);
    clock.advance(MINUTE);
    validator
        .validate(&new.sign(&idp.claims(&clock)))
        .await
        .unwrap();
    assert_eq!(idp.jwks_hits(), 2);

    // Right after, another unknown kid is refused without asking the issuer.
    let stranger = SigningKey::es256("stranger");
    let error = validator
        .validate(&stranger.sign(&idp.claims(&clock)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidToken(InvalidToken::UnknownKey(_))),
        "{error:?}"
    );
    assert_eq!(idp.jwks_hits(), 2);

    // Once the cooldown has passed, it may ask again (and still finds nothing).
    clock.advance(MINUTE);
    let error = validator
        .validate(&stranger.sign(&idp.claims(&clock)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidToken(InvalidToken::UnknownKey(_))),
        "{error:?}"
    );
    assert_eq!(idp.jwks_hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waiters_for_a_new_key_share_one_fetch() {
    let old = SigningKey::es256("old");
    let idp = FakeIdp::start(&[&old]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    validator.refresh_keys().await.unwrap();
    clock.advance(MINUTE);

    let new = SigningKey::es256("new");
    idp.set_keys(&[&old, &new]);
    // A slow issuer keeps the fetch in flight while every request arrives.
    idp.set_mode(Mode::Slow(Duration::from_millis(300)));
    let token = Arc::new(new.sign(&idp.claims(&clock)));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let validator = validator.clone();
            let token = Arc::clone(&token);
            tokio::spawn(async move { validator.validate(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(idp.jwks_hits(), 2, "200 waiters, one refetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_kid_flood_fetches_at_most_once_per_cooldown() {
    let key = SigningKey::es256("real");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .jwks_refetch_cooldown(MINUTE)
        .build()
        .unwrap();
    validator.refresh_keys().await.unwrap();
    clock.advance(MINUTE);

    for round in 1..=2 {
        let tasks: Vec<_> = (0..1000)
            .map(|index| {
                let validator = validator.clone();
                let token = key.sign_raw(
                    &json!({"alg": "ES256", "kid": format!("random-{round}-{index}")}).to_string(),
                    &idp.claims(&clock).to_string(),
                );
                tokio::spawn(async move { validator.validate(&token).await })
            })
            .collect();
        for task in tasks {
            let error = task.await.unwrap().unwrap_err();
            assert!(
                matches!(error, Error::InvalidToken(InvalidToken::UnknownKey(_))),
                "{error:?}"
            );
        }
        assert_eq!(
            idp.jwks_hits(),
            1 + round,
            "round {round}: one fetch for 1000 unknown kids"
        );
        // Valid tokens kept working throughout.
        validator
            .validate(&key.sign(&idp.claims(&clock)))
            .await
            .unwrap();
        clock.advance(MINUTE);
    }
}

#[tokio::test]
async fn a_failing_endpoint_keeps_the_last_good_set_until_max_stale() {
    for failure in [Mode::Status(500), Mode::Status(404), Mode::Garbage] {
        let key = SigningKey::es256("k1");
        let idp = FakeIdp::start(&[&key]).await;
        let clock = MockClock::at_system_time();
        let validator = idp
            .validator_builder(&clock)
            .jwks_ttl(MINUTE, 5 * MINUTE, 60 * MINUTE)
            .jwks_max_stale(60 * MINUTE)
            .build()
            .unwrap();
        validator.refresh_keys().await.unwrap();
        idp.set_mode(failure.clone());

        clock.advance(30 * MINUTE);
        let token = key.sign(&idp.claims(&clock));
        validator.validate(&token).await.unwrap();
        idp.wait_for_jwks_hits(2).await;

        clock.advance(30 * MINUTE);
        let token = key.sign(&idp.claims(&clock));
        validator
            .validate(&token)
            .await
            .expect("still within max-stale");

        clock.advance(10 * MINUTE);
        let token = key.sign(&idp.claims(&clock));
        let error = validator.validate(&token).await.unwrap_err();
        assert!(
            error.is_unavailable(),
            "{failure:?}: past max-stale must be unavailable: {error:?}"
        );
        assert_eq!(error.rfc6750_code(), None);
        assert!(error.retry_after().is_some());

        // The issuer recovers: the next attempt after the backoff succeeds.
        idp.set_mode(Mode::Normal);
        clock.advance(MINUTE);
        validator.validate(&token).await.unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable_never_invalid() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_mode(Mode::Status(503));
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let error = validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");

    // Nothing listening at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let validator = scopegate_validator::Validator::builder()
        .issuer(&closed)
        .audience(support::AUDIENCE)
        .algorithms([scopegate_validator::Algorithm::ES256])
        .clock(clock.clone())
        .build()
        .unwrap();
    let error = validator
        .validate(&key.sign(&idp.claims(&clock)))
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
}

#[tokio::test]
async fn after_a_failure_the_issuer_is_not_asked_again_until_the_backoff_passes() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_mode(Mode::Status(500));
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .jwks_failure_backoff(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = key.sign(&idp.claims(&clock));
    for _ in 0..20 {
        assert!(
            validator
                .validate(&token)
                .await
                .unwrap_err()
                .is_unavailable()
        );
    }
    assert_eq!(idp.jwks_hits(), 1);
    clock.advance(Duration::from_secs(10));
    assert!(
        validator
            .validate(&token)
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn an_oversized_jwks_is_refused() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_mode(Mode::Huge);
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .max_document_bytes(64 * 1024)
        .build()
        .unwrap();
    let Error::Unavailable(unavailable) = validator.refresh_keys().await.unwrap_err() else {
        panic!("expected unavailable");
    };
    assert!(
        matches!(unavailable.fetch_error(), FetchError::TooLarge { .. }),
        "{unavailable}"
    );
}

#[tokio::test]
async fn a_slow_jwks_endpoint_times_out() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_mode(Mode::Slow(Duration::from_secs(5)));
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let error = validator.refresh_keys().await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn discovery_for_another_issuer_is_refused() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_discovery_issuer("https://evil.test");
    let clock = MockClock::at_system_time();
    let error = idp.validator(&clock).refresh_keys().await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(error.to_string().contains("issuer metadata"), "{error}");
    assert_eq!(
        idp.jwks_hits(),
        0,
        "no key set is fetched from unverified metadata"
    );
}

#[tokio::test]
async fn encryption_keys_private_keys_and_duplicate_kids_never_verify() {
    let signer = SigningKey::es256("k");
    let idp = FakeIdp::start(&[]).await;
    let clock = MockClock::at_system_time();
    let claims = idp.claims(&clock);
    let with = |kid: &str, extra: serde_json::Value| {
        let mut jwk = signer.bare_jwk();
        jwk["kid"] = json!(kid);
        for (name, value) in extra.as_object().unwrap() {
            jwk[name] = value.clone();
        }
        jwk
    };
    let good = SigningKey::eddsa("good");
    idp.set_jwks(json!({"keys": [
        with("enc", json!({"use": "enc"})),
        with("ops", json!({"key_ops": ["encrypt"]})),
        with("private", json!({"d": "AAAA"})),
        with("twin", json!({})),
        with("twin", json!({})),
        good.jwk(),
    ]}));
    let validator = idp.validator(&clock);
    for kid in ["enc", "ops", "private"] {
        let token = signer.sign_raw(
            &json!({"alg": "ES256", "kid": kid}).to_string(),
            &claims.to_string(),
        );
        let error = validator.validate(&token).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidToken(InvalidToken::UnknownKey(_))),
            "{kid}: {error:?}"
        );
    }
    let token = signer.sign_raw(
        &json!({"alg": "ES256", "kid": "twin"}).to_string(),
        &claims.to_string(),
    );
    let error = validator.validate(&token).await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidToken(InvalidToken::AmbiguousKey(_))),
        "{error:?}"
    );
    validator
        .validate(&good.sign(&claims))
        .await
        .expect("the usable key still works");
}

#[tokio::test]
async fn a_warm_token_is_served_from_the_cache_until_its_key_is_withdrawn() {
    let old = SigningKey::es256("old");
    let idp = FakeIdp::start(&[&old]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let token = old.sign(&idp.claims(&clock));
    let first = validator.validate(&token).await.unwrap();
    let second = validator.validate(&token).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "the second check is a cache hit"
    );

    let new = SigningKey::es256("new");
    idp.set_keys(&[&new]);
    validator.refresh_keys().await.unwrap();
    let error = validator.validate(&token).await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidToken(InvalidToken::UnknownKey(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_cached_token_never_outlives_its_exp() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let token = key.sign(&idp.claims(&clock));
    validator.validate(&token).await.unwrap();
    clock.advance(Duration::from_secs(599));
    validator.validate(&token).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let error = validator.validate(&token).await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidToken(InvalidToken::Expired)),
        "{error:?}"
    );
}

#[tokio::test]
async fn with_the_cache_off_every_check_verifies_again() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .without_verified_token_cache()
        .build()
        .unwrap();
    let token = key.sign(&idp.claims(&clock));
    let first = validator.validate(&token).await.unwrap();
    let second = validator.validate(&token).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(first, second);
}

#[tokio::test]
async fn an_unknown_kid_while_the_issuer_fails_is_unavailable_not_invalid() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    validator.refresh_keys().await.unwrap();
    idp.set_mode(Mode::Status(503));
    clock.advance(MINUTE);
    let rotated = SigningKey::es256("k2");
    for _ in 0..3 {
        // The first asks and fails; the next are within the cooldown, but the last attempt
        // failed, so the key may exist: still unavailable.
        let error = validator
            .validate(&rotated.sign(&idp.claims(&clock)))
            .await
            .unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
    }
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_still_records_its_fetch() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    validator.refresh_keys().await.unwrap();
    clock.advance(MINUTE);
    idp.set_mode(Mode::Slow(Duration::from_millis(300)));
    let stranger = SigningKey::es256("stranger");
    let token = stranger.sign(&idp.claims(&clock));
    // The client goes away while the refetch for its unknown kid is in flight.
    let dropped = tokio::time::timeout(Duration::from_millis(50), validator.validate(&token)).await;
    assert!(
        dropped.is_err(),
        "the request should still have been waiting"
    );
    idp.wait_for_jwks_hits(2).await;
    for index in 0..20 {
        let other = SigningKey::es256(&format!("other-{index}"));
        let error = validator
            .validate(&other.sign(&idp.claims(&clock)))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidToken(InvalidToken::UnknownKey(_))),
            "{error:?}"
        );
    }
    assert_eq!(
        idp.jwks_hits(),
        2,
        "the abandoned fetch counted for the cooldown"
    );
}

#[tokio::test]
async fn a_malformed_token_is_invalid_even_when_the_issuer_is_down() {
    let key = SigningKey::es256("k1");
    let idp = FakeIdp::start(&[&key]).await;
    idp.set_mode(Mode::Status(503));
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let token = key.sign(&idp.claims(&clock));
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    for broken in [
        format!("{signing_input}.!!!"),
        format!("{signing_input}x.c2ln"),
    ] {
        let error = validator.validate(&broken).await.unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidToken(InvalidToken::Malformed(_) | InvalidToken::NotBearerSyntax)
            ),
            "{error:?}"
        );
    }
    assert_eq!(idp.jwks_hits(), 0, "refused before any key was looked up");
}

#[tokio::test]
async fn a_key_with_an_empty_modulus_is_skipped() {
    let good = SigningKey::es256("good");
    let idp = FakeIdp::start(&[]).await;
    idp.set_jwks(json!({"keys": [
        {"kty": "RSA", "kid": "empty", "n": "", "e": "AQAB"},
        {"kty": "RSA", "kid": "empty-e", "n": "AQAB", "e": ""},
        good.jwk(),
    ]}));
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    assert_eq!(validator.refresh_keys().await.unwrap(), 1);
    validator
        .validate(&good.sign(&idp.claims(&clock)))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_issuer_that_moves_its_jwks_is_followed_once_discovery_is_refreshed() {
    let (old, new) = (SigningKey::es256("old"), SigningKey::es256("new"));
    let idp = FakeIdp::start(&[&old]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .discovery_refresh(Duration::from_secs(600))
        .build()
        .unwrap();
    assert!(
        validator
            .validate(&old.sign(&idp.claims(&clock)))
            .await
            .is_ok()
    );
    assert_eq!(idp.discovery_hits(), 1);

    // The issuer moves: its new key is only at the new address.
    idp.move_jwks(&[&new]);
    clock.advance(Duration::from_secs(60));
    let token = new.sign(&idp.claims(&clock));
    assert!(
        validator.validate(&token).await.is_err(),
        "the metadata is not yet due for a refresh: the old address is asked"
    );
    assert_eq!(idp.discovery_hits(), 1);

    clock.advance(Duration::from_secs(600));
    let token = new.sign(&idp.claims(&clock));
    assert_eq!(
        validator.validate(&token).await.unwrap().subject(),
        Some("user-1")
    );
    assert_eq!(idp.discovery_hits(), 2, "discovery asked again, once");
}

#[tokio::test]
async fn a_failed_discovery_refresh_keeps_the_last_metadata() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .discovery_refresh(Duration::from_secs(600))
        .build()
        .unwrap();
    assert!(
        validator
            .validate(&key.sign(&idp.claims(&clock)))
            .await
            .is_ok()
    );
    // The metadata now names another issuer: refused as a refresh, the last one stays.
    idp.set_discovery_issuer("https://impostor.example.com");
    clock.advance(Duration::from_secs(700));
    assert!(
        validator
            .validate(&key.sign(&idp.claims(&clock)))
            .await
            .is_ok()
    );
    // The stale key set is refreshed in the background, through the (failing) discovery.
    idp.wait_for_jwks_hits(2).await;
    assert_eq!(idp.discovery_hits(), 2);
    assert!(
        validator
            .validate(&key.sign(&idp.claims(&clock)))
            .await
            .is_ok()
    );
}
