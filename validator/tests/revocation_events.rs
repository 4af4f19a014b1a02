//! Revocation events over real HTTP on loopback (issue 19, the validator's half): a transmitter
//! speaking `docs/revocation-events.md` publishes signed SETs through an RFC 8936 poll held open,
//! and the validator refuses what each event names — warm cache included — and nothing else.
//! Outcomes are awaited with generous deadlines, never timed; the validator's time is a mock
//! clock.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use scopegate_validator::{Error, InvalidToken, MockClock, Principal, RevocationStreamStatus};
use serde_json::{Value, json};
use support::transmitter::{CREDENTIAL_CHANGE, PollMode, TOKEN_REVOKED, Transmitter};
use support::{API_ID, API_SECRET, SigningKey};

async fn transmitter() -> Transmitter {
    Transmitter::start(&MockClock::at_system_time()).await
}

fn refusal(result: Result<Arc<Principal>, Error>) -> InvalidToken {
    match result {
        Err(Error::InvalidToken(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn is_revoked(result: &Result<Arc<Principal>, Error>) -> bool {
    matches!(result, Err(Error::InvalidToken(InvalidToken::Revoked(_))))
}

fn status(validator: &scopegate_validator::Validator) -> RevocationStreamStatus {
    let mut statuses = validator.revocation_stream_status();
    assert_eq!(statuses.len(), 1);
    statuses.remove(0)
}

fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// A token-revoked event for `jti`, as the transmitter would sign it, unsigned.
fn revoke_claims(tx: &Transmitter, id: &str, jti: &str) -> Value {
    tx.set_claims(
        id,
        json!({"format": "opaque", "id": jti}),
        json!({TOKEN_REVOKED: {"identifier": "jti", "tokens_expire_by": tx.now() + 600}}),
    )
}

#[tokio::test]
async fn a_revoked_jti_refuses_that_token_and_no_other() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let revoked = tx.token(json!({"jti": "t-1"}));
    let other = tx.token(json!({"jti": "t-2"}));
    validator.validate(&revoked).await.unwrap();
    validator.validate(&other).await.unwrap();
    assert!(
        validator.cached(&revoked).is_some(),
        "warm before the event"
    );

    let id = tx.revoke_jti("t-1");
    tx.wait_for_ack(&id).await;
    assert_eq!(
        refusal(validator.validate(&revoked).await),
        InvalidToken::Revoked("its `jti` was revoked")
    );
    assert!(validator.cached(&revoked).is_none());
    assert!(validator.validate(&other).await.is_ok());
    assert!(validator.cached(&other).is_some());
    // Its cache entry is gone, and full verification refuses it as well without caching it.
    assert_eq!(validator.cache_stats().await.verified_tokens, 1);
    assert!(is_revoked(&validator.validate(&revoked).await));
    assert_eq!(validator.cache_stats().await.verified_tokens, 1);
    let status = status(&validator);
    assert!(status.connected);
    assert_eq!(status.events_applied, 1);
    assert_eq!(status.revoked_held, 1);
    assert_eq!(status.last_event_id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_revoked_opaque_token_is_refused_and_its_introspection_answer_evicted() {
    let tx = transmitter().await;
    let validator = tx
        .validator_builder()
        .introspection(API_ID, API_SECRET)
        .build()
        .unwrap();
    let (revoked, other) = ("opaque-revoked-3q2+7w_x.y~z", "opaque-kept-8f1e_Qk2-Lm");
    tx.set_answer(revoked, tx.active_answer());
    tx.set_answer(other, tx.active_answer());
    validator.validate(revoked).await.unwrap();
    validator.validate(other).await.unwrap();
    assert_eq!(tx.introspection_calls(), 2);
    assert_eq!(validator.cache_stats().await.introspection_answers, 2);

    let id = tx.revoke_opaque(revoked);
    tx.wait_for_ack(&id).await;
    assert!(is_revoked(&validator.validate(revoked).await));
    assert!(validator.cached(revoked).is_none());
    assert!(validator.validate(other).await.is_ok());
    assert!(validator.cached(other).is_some());
    assert_eq!(tx.introspection_calls(), 2, "refused without asking");
    assert_eq!(
        validator.cache_stats().await.introspection_answers,
        1,
        "its answer evicted"
    );
}

#[tokio::test]
async fn an_ended_session_refuses_its_tokens_issued_until_then() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let now = tx.now();
    let toe = now - 100;
    let before = tx.token(json!({"sid": "s-1", "iat": toe - 50}));
    let at = tx.token(json!({"sid": "s-1", "iat": toe}));
    let undated = tx.token(json!({"sid": "s-1", "iat": null}));
    let after = tx.token(json!({"sid": "s-1", "iat": toe + 1}));
    let other_session = tx.token(json!({"sid": "s-2", "iat": toe - 50}));
    let no_session = tx.token(json!({"iat": toe - 50}));
    for token in [&before, &at, &undated, &after, &other_session, &no_session] {
        validator.validate(token).await.unwrap();
    }

    let id = tx.end_session("s-1", toe);
    tx.wait_for_ack(&id).await;
    for token in [&before, &at, &undated] {
        assert_eq!(
            refusal(validator.validate(token).await),
            InvalidToken::Revoked("its session was ended")
        );
    }
    for token in [&after, &other_session, &no_session] {
        assert!(validator.validate(token).await.is_ok());
    }
}

#[tokio::test]
async fn a_deleted_user_refuses_their_earlier_tokens_of_this_issuer_only() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let toe = tx.now() - 100;
    let earlier = tx.token(json!({"sub": "user-9", "iat": toe - 1}));
    let later = tx.token(json!({"sub": "user-9", "iat": toe + 1}));
    let someone_else = tx.token(json!({"sub": "user-1", "iat": toe - 1}));
    for token in [&earlier, &later, &someone_else] {
        validator.validate(token).await.unwrap();
    }

    // A user of another issuer with the same `sub`: not ours.
    let foreign = tx.delete_user_of("https://other.example.test", "user-9", toe, toe + 86_400);
    tx.wait_for_ack(&foreign).await;
    assert!(validator.validate(&earlier).await.is_ok());
    assert_eq!(status(&validator).revoked_held, 0);

    let id = tx.delete_user("user-9", toe);
    tx.wait_for_ack(&id).await;
    assert_eq!(
        refusal(validator.validate(&earlier).await),
        InvalidToken::Revoked("its user was deleted")
    );
    assert!(validator.validate(&later).await.is_ok());
    assert!(validator.validate(&someone_else).await.is_ok());
}

#[tokio::test]
async fn a_deleted_client_refuses_its_earlier_tokens_only() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let toe = tx.now() - 100;
    let earlier = tx.token(json!({"client_id": "svc-9", "sub": "svc-9", "iat": toe}));
    let reregistered = tx.token(json!({"client_id": "svc-9", "sub": "svc-9", "iat": toe + 1}));
    let other_client = tx.token(json!({"client_id": "svc-8", "iat": toe}));
    for token in [&earlier, &reregistered, &other_client] {
        validator.validate(token).await.unwrap();
    }

    let id = tx.delete_client("svc-9", toe);
    tx.wait_for_ack(&id).await;
    assert_eq!(
        refusal(validator.validate(&earlier).await),
        InvalidToken::Revoked("its client was deleted")
    );
    assert!(validator.validate(&reregistered).await.is_ok());
    assert!(validator.validate(&other_client).await.is_ok());
}

#[tokio::test]
async fn credential_changes_and_unknown_events_refuse_nothing() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let token = tx.token(json!({"sub": "user-1", "iat": tx.now() - 100}));
    validator.validate(&token).await.unwrap();
    let user = json!({"format": "iss_sub", "iss": tx.issuer, "sub": "user-1"});
    tx.emit(
        user.clone(),
        json!({CREDENTIAL_CHANGE: {"credential_type": "password", "change_type": "update"}}),
    );
    let unknown = tx.emit(user, json!({"https://example.test/secevent/new-kind": {}}));
    tx.wait_for_ack(&unknown).await;
    assert!(validator.validate(&token).await.is_ok());
    let status = status(&validator);
    assert_eq!((status.events_applied, status.revoked_held), (2, 0));
}

#[tokio::test]
async fn a_warm_token_is_refused_soon_after_the_event_while_a_poll_is_held() {
    let tx = transmitter().await; // holds polls 25 s
    let validator = tx.validator();
    let token = tx.token(json!({}));
    validator.validate(&token).await.unwrap();
    tx.wait_until("a poll held open", || tx.held() == 1).await;
    let polls_before = tx.poll_count();

    tx.revoke_jti(&jti_of(&token));
    // Delivered by the poll already held: refused well inside its 25 s hold.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if is_revoked(&validator.validate(&token).await) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepted 10 s after the event"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let held = &tx.polls()[polls_before - 1];
    assert!(
        held.answered && held.ack().is_empty(),
        "the poll held when the event came delivered it"
    );
}

#[tokio::test]
async fn forged_sets_are_ignored_and_acknowledged_with_an_error() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let target = tx.token(json!({"jti": "target"}));
    let control = tx.token(json!({"jti": "control"}));
    validator.validate(&target).await.unwrap();
    validator.validate(&control).await.unwrap();

    let impostor = SigningKey::es256(&tx.key.kid); // the issuer's kid, another key
    let mut forged = Vec::new();
    let id = tx.next_id();
    let set = tx.sign_set_with(
        &impostor,
        "secevent+jwt",
        &revoke_claims(&tx, &id, "target"),
    );
    tx.publish(&id, set);
    forged.push((id, "authentication_failed"));
    let id = tx.next_id();
    let set = tx.sign_set_with(&tx.key, "at+jwt", &revoke_claims(&tx, &id, "target"));
    tx.publish(&id, set);
    forged.push((id, "invalid_request"));
    let id = tx.next_id();
    let mut claims = revoke_claims(&tx, &id, "target");
    claims["iss"] = json!("https://evil.example.test");
    tx.publish(&id, tx.sign_set(&claims));
    forged.push((id, "invalid_issuer"));
    let id = tx.next_id();
    let mut claims = revoke_claims(&tx, &id, "target");
    claims["aud"] = json!("https://other-api.example.test");
    tx.publish(&id, tx.sign_set(&claims));
    forged.push((id, "invalid_audience"));
    let id = tx.next_id();
    tx.publish(&id, "not-a-set".to_owned());
    forged.push((id, "invalid_request"));
    let id = tx.next_id();
    let claims = revoke_claims(&tx, "another-id", "target");
    tx.publish(&id, tx.sign_set(&claims));
    forged.push((id, "invalid_request"));
    let genuine = tx.revoke_jti("control");

    tx.wait_for_ack(&genuine).await;
    assert!(validator.validate(&target).await.is_ok());
    assert!(is_revoked(&validator.validate(&control).await));
    let status = status(&validator);
    assert_eq!((status.sets_rejected, status.events_applied), (6, 1));
    let acknowledging = tx
        .polls()
        .into_iter()
        .find(|poll| poll.acknowledged().contains(&genuine))
        .unwrap();
    let errors = acknowledging.errors();
    for (id, code) in &forged {
        assert_eq!(errors.get(id).map(String::as_str), Some(*code), "{id}");
    }
    assert_eq!(acknowledging.ack(), [genuine]);
}

#[tokio::test]
async fn a_replayed_set_has_no_effect() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let toe = tx.now() - 100;
    let early = tx.token(json!({"sid": "s-1", "iat": toe - 1}));
    let between = tx.token(json!({"sid": "s-1", "iat": toe + 50}));
    validator.validate(&between).await.unwrap();

    let original = tx.end_session("s-1", toe);
    tx.wait_for_ack(&original).await;
    let user = json!({"format": "iss_sub", "iss": tx.issuer, "sub": "user-1"});
    let change =
        json!({CREDENTIAL_CHANGE: {"credential_type": "password", "change_type": "update"}});
    let next = tx.emit(user.clone(), change.clone());
    tx.wait_for_ack(&next).await;
    assert_eq!(status(&validator).events_applied, 2);

    // The same SET delivered again…
    let since = tx.poll_count();
    tx.publish(&original, tx.published(&original));
    tx.wait_for_ack_since(&original, since).await;
    // …and a SET reusing its id with a later `toe`, which would refuse `between` too.
    let next = tx.emit(user, change);
    tx.wait_for_ack(&next).await;
    let mut later = tx.set_claims(
        &original,
        json!({"format": "complex", "session": {"format": "opaque", "id": "s-1"}}),
        json!({support::transmitter::SESSION_REVOKED: {"tokens_expire_by": tx.now() + 86_400}}),
    );
    later["toe"] = json!(tx.now());
    let since = tx.poll_count();
    tx.publish(&original, tx.sign_set(&later));
    tx.wait_for_ack_since(&original, since).await;

    let status = status(&validator);
    assert_eq!(
        status.events_applied, 3,
        "the two credential changes and the original"
    );
    assert_eq!(status.sets_rejected, 0);
    assert!(is_revoked(&validator.validate(&early).await));
    assert!(validator.validate(&between).await.is_ok());
}

#[tokio::test]
async fn an_interrupted_stream_resumes_after_its_last_batch_and_misses_nothing() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let tokens: Vec<String> = (0..3).map(|_| tx.token(json!({}))).collect();
    for token in &tokens {
        validator.validate(token).await.unwrap();
    }
    let first = tx.revoke_jti(&jti_of(&tokens[0]));
    tx.wait_for_ack(&first).await;
    let since = tx.poll_count();

    tx.set_mode(PollMode::Status(503)); // the held poll too
    tx.wait_until("the validator to see the outage", || {
        !status(&validator).connected
    })
    .await;
    tx.wait_until("retries", || tx.poll_count() >= since + 3)
        .await;
    let second = tx.revoke_jti(&jti_of(&tokens[1]));
    let third = tx.revoke_jti(&jti_of(&tokens[2]));
    // Blind, but within the bound: still verifying.
    assert!(validator.validate(&tokens[1]).await.is_ok());
    let failing = status(&validator);
    assert!(failing.blind_since.is_some() && !failing.unavailable);
    assert!(failing.last_failure.unwrap().contains("503"));

    tx.set_mode(PollMode::Normal);
    tx.wait_for_ack(&third).await;
    let polls = tx.assert_acknowledged_until(&first, &second);
    assert!(
        polls >= 4,
        "the held poll, the retries and the one that resumed: {polls}"
    );
    let resumed = &tx.polls()[tx.first_poll_acknowledging(&second) - 1];
    assert!(
        resumed.answered,
        "the last to acknowledge {first} delivered the rest"
    );
    assert_eq!(
        tx.polls()[tx.first_poll_acknowledging(&second)].ack(),
        [second, third]
    );
    for token in &tokens {
        assert!(is_revoked(&validator.validate(token).await));
    }
    assert!(status(&validator).connected);
}

#[tokio::test]
async fn a_refused_connection_resumes_after_its_last_batch_too() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let tokens: Vec<String> = (0..2).map(|_| tx.token(json!({}))).collect();
    for token in &tokens {
        validator.validate(token).await.unwrap();
    }
    let first = tx.revoke_jti(&jti_of(&tokens[0]));
    tx.wait_for_ack(&first).await;

    tx.stop().await;
    tx.wait_until("the validator to see the outage", || {
        !status(&validator).connected
    })
    .await;
    let second = tx.revoke_jti(&jti_of(&tokens[1]));
    assert!(validator.validate(&tokens[1]).await.is_ok());
    tx.restart().await;
    tx.wait_for_ack(&second).await;
    // The poll held at the stop, then (connections refused meanwhile) the one that resumed.
    assert!(tx.assert_acknowledged_until(&first, &second) >= 2);
    assert!(is_revoked(&validator.validate(&tokens[1]).await));
    assert!(status(&validator).connected);
}

#[tokio::test]
async fn blind_longer_than_max_blind_is_unavailable_until_the_stream_answers() {
    let tx = transmitter().await;
    let validator = tx
        .validator_builder()
        .revocation_events_max_blind(Duration::from_secs(60))
        .build()
        .unwrap();
    let token = tx.token(json!({}));
    validator.validate(&token).await.unwrap();
    tx.wait_until("the first catch-up", || status(&validator).connected)
        .await;

    tx.set_mode(PollMode::Status(503));
    tx.wait_until("the outage seen", || !status(&validator).connected)
        .await;
    tx.clock.advance(Duration::from_secs(60));
    assert!(validator.validate(&token).await.is_ok(), "within the bound");
    tx.clock.advance(Duration::from_secs(1));
    let error = validator.validate(&token).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(error.retry_after().is_some());
    assert!(validator.cached(&token).is_none());
    assert!(status(&validator).unavailable);

    tx.set_mode(PollMode::Normal);
    tx.wait_until("recovery", || status(&validator).connected)
        .await;
    assert!(validator.validate(&token).await.is_ok());
    assert!(validator.cached(&token).is_some());
    let recovered = status(&validator);
    assert!(!recovered.unavailable && recovered.blind_since.is_none());
}

#[tokio::test]
async fn blind_time_counts_from_the_start_before_the_first_answer() {
    let tx = transmitter().await;
    tx.set_mode(PollMode::Status(503));
    let validator = tx.validator(); // max_blind 5 min by default
    let token = tx.token(json!({}));
    validator.validate(&token).await.unwrap();
    let started = status(&validator).blind_since.unwrap();
    assert_eq!(
        started,
        std::time::UNIX_EPOCH + scopegate_validator::Clock::now(&tx.clock)
    );
    tx.wait_until("a failed poll", || tx.poll_count() >= 1)
        .await;
    tx.clock.advance(Duration::from_secs(301));
    assert!(
        validator
            .validate(&token)
            .await
            .unwrap_err()
            .is_unavailable()
    );
    tx.set_mode(PollMode::Normal);
    tx.wait_until("the first answer", || status(&validator).connected)
        .await;
    assert!(validator.validate(&token).await.is_ok());
}

#[tokio::test]
async fn revocations_are_purged_once_their_tokens_have_expired() {
    let tx = transmitter().await;
    tx.set_hold(Duration::from_millis(200));
    let validator = tx.validator(); // leeway 30 s
    let now = tx.now();
    // A token outliving the event's `tokens_expire_by`: only the purge can let it through.
    let token = tx.token(json!({"sub": "user-7", "iat": now - 20, "exp": now + 3600}));
    validator.validate(&token).await.unwrap();
    let id = tx.delete_user_of(&tx.issuer.clone(), "user-7", now - 10, now + 60);
    tx.wait_for_ack(&id).await;
    assert!(is_revoked(&validator.validate(&token).await));
    assert_eq!(status(&validator).revoked_held, 1);

    tx.clock.advance(Duration::from_secs(85));
    let before = tx.poll_count();
    tx.wait_until("a purge after the clock moved", || {
        tx.poll_count() >= before + 2
    })
    .await;
    assert_eq!(
        status(&validator).revoked_held,
        1,
        "held through the leeway"
    );
    tx.clock.advance(Duration::from_secs(10));
    tx.wait_until("the purge", || status(&validator).revoked_held == 0)
        .await;
    assert!(validator.validate(&token).await.is_ok());
}

#[tokio::test]
async fn bad_answers_change_nothing_and_never_panic() {
    let tx = transmitter().await;
    let validator = tx.validator();
    let revoked = tx.token(json!({}));
    let kept = tx.token(json!({}));
    validator.validate(&revoked).await.unwrap();
    validator.validate(&kept).await.unwrap();
    let first = tx.revoke_jti(&jti_of(&revoked));
    tx.wait_for_ack(&first).await;

    let huge = format!(r#"{{"sets": {{}}, "pad": "{}"}}"#, "x".repeat(9 << 20));
    for bad in [
        "<html>maintenance</html>",
        "",
        r#"{"sets": 5}"#,
        r#"{"sets": {"ep1-9": 7}}"#,
        r#"{"sets": {"ep1-9": "a", "ep1-9": "b"}}"#,
        r#"{"sets": {}, "moreAvailable": "yes"}"#,
        r#"{"sets": {}"#,
        huge.as_str(),
    ] {
        let before = tx.poll_count();
        tx.set_mode(PollMode::Body(bad.to_owned()));
        tx.wait_until("two bad answers", || tx.poll_count() >= before + 2)
            .await;
        let status = status(&validator);
        assert!(!status.connected, "{bad:.40}");
        assert!(status.last_failure.is_some());
        assert_eq!(
            (
                status.revoked_held,
                status.events_applied,
                status.sets_rejected
            ),
            (1, 1, 0)
        );
        assert!(is_revoked(&validator.validate(&revoked).await));
        assert!(validator.validate(&kept).await.is_ok());
    }

    tx.set_mode(PollMode::Normal);
    let second = tx.revoke_jti(&jti_of(&kept));
    tx.wait_for_ack(&second).await;
    assert!(tx.assert_acknowledged_until(&first, &second) >= 16);
    assert!(is_revoked(&validator.validate(&kept).await));
}

#[tokio::test]
async fn the_subscription_stops_when_the_validator_is_dropped() {
    let tx = transmitter().await;
    tx.set_hold(Duration::from_millis(100));
    let validator = tx.validator();
    let clone = validator.clone();
    tx.wait_until("a few polls", || tx.poll_count() >= 3).await;
    drop(validator);
    let polls = tx.poll_count();
    tx.wait_until("polls to go on while a clone lives", || {
        tx.poll_count() > polls
    })
    .await;

    drop(clone);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_drop = tx.poll_count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(tx.poll_count(), after_drop, "no poll after the drop");
}

#[tokio::test]
async fn a_new_subscriber_catches_up_in_batches() {
    let tx = transmitter().await;
    let ids: Vec<String> = (0..2500)
        .map(|number| tx.revoke_jti(&format!("old-{number}")))
        .collect();
    let validator = tx.validator();
    tx.wait_until("the catch-up", || {
        let status = status(&validator);
        status.connected && status.events_applied == 2500
    })
    .await;
    assert_eq!(status(&validator).last_event_id.as_ref(), ids.last());
    tx.wait_for_ack(ids.last().unwrap()).await;
    let polls = tx.polls();
    assert!(polls[0].ack().is_empty());
    assert_eq!(polls[1].ack(), ids[..1000]);
    assert_eq!(polls[2].ack(), ids[1000..2000]);
    assert_eq!(polls[3].ack(), ids[2000..]);
    assert_eq!(polls[0].request["maxEvents"], 1000);
    assert_eq!(polls[0].request["returnImmediately"], true, "catching up");
    tx.wait_until("a held poll", || tx.held() == 1).await;
    for token in [
        tx.token(json!({"jti": "old-0"})),
        tx.token(json!({"jti": "old-2499"})),
    ] {
        assert!(is_revoked(&validator.validate(&token).await));
    }
    assert!(validator.validate(&tx.token(json!({}))).await.is_ok());
}

#[tokio::test]
async fn a_set_signed_by_a_key_not_yet_fetched_waits_for_the_key_set() {
    let tx = transmitter().await;
    let validator = tx
        .validator_builder()
        .jwks_refetch_cooldown(Duration::from_secs(1))
        .build()
        .unwrap();
    let token = tx.token(json!({}));
    validator.validate(&token).await.unwrap(); // the key set is fetched now
    tx.wait_until("the first catch-up", || status(&validator).connected)
        .await;

    let rotated = SigningKey::es256("set-key-2");
    tx.set_keys(&[&tx.key, &rotated]);
    let id = tx.next_id();
    let set = tx.sign_set_with(
        &rotated,
        "secevent+jwt",
        &revoke_claims(&tx, &id, &jti_of(&token)),
    );
    tx.publish(&id, set);
    tx.wait_until("the SET held back", || !status(&validator).connected)
        .await;
    assert!(validator.validate(&token).await.is_ok());
    assert!(
        tx.polls()
            .iter()
            .all(|poll| !poll.acknowledged().contains(&id))
    );

    tx.clock.advance(Duration::from_secs(2));
    tx.wait_for_ack(&id).await;
    assert!(is_revoked(&validator.validate(&token).await));
}

#[tokio::test]
async fn a_set_signed_by_an_unknown_key_is_refused_once_the_keys_were_fetched_again() {
    let tx = transmitter().await;
    let validator = tx
        .validator_builder()
        .jwks_refetch_cooldown(Duration::from_secs(1))
        .build()
        .unwrap();
    let token = tx.token(json!({}));
    validator.validate(&token).await.unwrap();
    tx.wait_until("the first catch-up", || status(&validator).connected)
        .await;
    let stranger = SigningKey::es256("stranger");
    let id = tx.next_id();
    let set = tx.sign_set_with(
        &stranger,
        "secevent+jwt",
        &revoke_claims(&tx, &id, &jti_of(&token)),
    );
    tx.publish(&id, set);
    tx.wait_until("the SET held back", || !status(&validator).connected)
        .await;

    tx.clock.advance(Duration::from_secs(2));
    let genuine = tx.revoke_jti("something-else");
    tx.wait_for_ack(&genuine).await;
    let refused = tx
        .polls()
        .into_iter()
        .find(|poll| poll.acknowledged().contains(&id))
        .unwrap();
    assert_eq!(refused.errors()[&id], "invalid_key");
    assert!(validator.validate(&token).await.is_ok());
    assert_eq!(status(&validator).sets_rejected, 1);
}

#[tokio::test]
async fn several_issuers_each_follow_their_own_stream() {
    let clock = MockClock::at_system_time();
    let (a, b) = (
        Transmitter::start(&clock).await,
        Transmitter::start(&clock).await,
    );
    let validator =
        scopegate_validator::Validator::for_issuers([a.validator(), b.validator()]).unwrap();
    let from_a = a.token(json!({"jti": "same"}));
    let from_b = b.token(json!({"jti": "same"}));
    validator.validate(&from_a).await.unwrap();
    validator.validate(&from_b).await.unwrap();
    assert!(validator.cached(&from_a).is_some());

    let id = a.revoke_jti("same");
    a.wait_for_ack(&id).await;
    assert!(is_revoked(&validator.validate(&from_a).await));
    assert!(validator.cached(&from_a).is_none());
    assert!(validator.validate(&from_b).await.is_ok());
    let statuses = validator.revocation_stream_status();
    assert_eq!(
        statuses
            .iter()
            .map(|status| (status.issuer.as_str(), status.revoked_held))
            .collect::<Vec<_>>(),
        [(a.issuer.as_str(), 1), (b.issuer.as_str(), 0)]
    );
}

#[tokio::test]
async fn the_poll_endpoint_is_discovered_unless_configured() {
    let tx = transmitter().await;
    let discovered = tx.validator();
    tx.wait_until("discovery", || status(&discovered).connected)
        .await;
    assert_eq!(tx.ssf_configuration_hits(), 1);
    let configured = tx
        .validator_builder()
        .revocation_events_endpoint(format!("{}/ssf/poll", tx.issuer))
        .build()
        .unwrap();
    tx.wait_until("the configured endpoint", || status(&configured).connected)
        .await;
    assert_eq!(tx.ssf_configuration_hits(), 1);
}

#[tokio::test]
async fn refused_credentials_are_reported_and_tokens_still_verified() {
    let tx = transmitter().await;
    let validator = tx
        .validator_builder()
        .revocation_events(API_ID, "wrong")
        .build()
        .unwrap();
    let token = tx.token(json!({}));
    tx.wait_until("the refusal reported", || {
        status(&validator)
            .last_failure
            .is_some_and(|failure| failure.contains("401"))
    })
    .await;
    assert!(validator.validate(&token).await.is_ok());
    assert!(!status(&validator).connected);
}

#[test]
fn building_a_subscribed_validator_needs_a_runtime() {
    let error = scopegate_validator::Validator::builder()
        .issuer("https://idp.example.test")
        .audience("https://api.example.test")
        .algorithms([scopegate_validator::Algorithm::ES256])
        .revocation_events(API_ID, API_SECRET)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "revocation_events");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

#[tokio::test]
async fn a_set_older_than_the_retention_is_acknowledged_and_ignored() {
    let tx = transmitter().await;
    let validator = tx.validator(); // retention 24 h
    let token = tx.token(json!({}));
    validator.validate(&token).await.unwrap();
    let id = tx.next_id();
    let mut claims = revoke_claims(&tx, &id, &jti_of(&token));
    let day_ago = tx.now() - 86_400;
    claims["iat"] = json!(day_ago);
    claims["toe"] = json!(day_ago);
    tx.publish(&id, tx.sign_set(&claims));
    let fresh = tx.revoke_jti("another");
    tx.wait_for_ack(&fresh).await;
    assert!(validator.validate(&token).await.is_ok());
    let status = status(&validator);
    assert_eq!((status.events_applied, status.sets_rejected), (1, 0));
    assert!(tx.polls().iter().any(|poll| poll.ack().contains(&id)));
}
