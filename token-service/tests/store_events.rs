//! The revocation event log (docs/revocation-events.md), on every backend: each revocation
//! writes its one event in its own transaction, a repeat writes none, events are read in
//! position order, and on Postgres positions follow commit order across instances, which hear
//! of each other's events.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scopegate_token_service::store::{
    self, EVENT_RETENTION_SECS, EventKind, EventRecord, SessionRecord, Store, TokenKey, TokenRecord,
};
use scopegate_token_service::users::Account;
use scopegate_token_service::{opaque_token, secret};
use support::backends;
use support::postgres::TestDatabase;

fn token(digest: u8, client: &str, subject: &str) -> TokenRecord {
    TokenRecord {
        key: TokenKey::from_digest([digest; 32]),
        jti: format!("jti-{digest}"),
        client_id: client.into(),
        subject: subject.into(),
        scope: "a:b:read".into(),
        audience: vec!["https://api.example.test".into()],
        act: None,
        issued_at: 100,
        expires_at: 1_000 + u64::from(digest),
        revoked_at: None,
        jkt: None,
    }
}

fn user(id: &str, username: &str) -> Account {
    Account {
        id: id.into(),
        username: username.into(),
        password: scopegate_token_service::secret::SecretHash::hash("a password"),
        attributes: serde_json::Map::new(),
        configured: false,
        created_at: Some(1),
        updated_at: Some(1),
    }
}

fn session(digest: u8, sid: &str, user_id: &str) -> SessionRecord {
    SessionRecord {
        digest: [digest; 32],
        sid: sid.into(),
        user_id: user_id.into(),
        username: "jane".into(),
        auth_time: 10,
        expires_at: 2_000,
        ended_at: None,
    }
}

/// The events after `after`, as (kind, subject, user, occurred, expire-by).
async fn events_after(
    store: &dyn Store,
    after: u64,
) -> Vec<(EventKind, String, Option<String>, u64, u64)> {
    store
        .events_after(Some(after), 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|event| {
            (
                event.kind,
                event.subject,
                event.user_id,
                event.occurred_at,
                event.tokens_expire_by,
            )
        })
        .collect()
}

/// A token of the current format is stored under its issue time and digest; revoking it, on
/// its own or with its grant, still names it by the SHA-256 of the whole token, which is what
/// an API holding the token computes.
#[tokio::test]
async fn tokens_stored_under_their_issue_time_are_named_by_their_digest() {
    for (name, store, _keep) in backends().await {
        let issued = |second: u64| {
            opaque_token::new(
                Duration::from_secs(second),
                &scopegate_token_service::secret::random_bytes(),
            )
        };
        let (alone, granted) = (issued(100), issued(101));
        for (value, jti) in [(&alone, "jti-alone"), (&granted, "jti-granted")] {
            let mut record = token(0, "web", "u1");
            record.key = TokenKey::of(value);
            record.jti = jti.into();
            store.insert_token(record.clone()).await.unwrap();
            assert_eq!(TokenKey::of(value).as_stored().len(), 40);
            let found = store.find_token(&TokenKey::of(value)).await.unwrap();
            assert_eq!(found, Some(record), "{name}");
        }
        store
            .record_grant_token("grant-9", "jti-granted", "web", 1_000)
            .await
            .unwrap();
        store
            .revoke_token(&TokenKey::of(&alone), "web", 50)
            .await
            .unwrap();
        store.revoke_grant("grant-9", 60).await.unwrap();
        let named: BTreeSet<String> = events_after(&*store, 0)
            .await
            .into_iter()
            .filter(|event| event.0 == EventKind::TokenDigest)
            .map(|event| event.1)
            .collect();
        let digest = |value: &str| URL_SAFE_NO_PAD.encode(secret::token_digest(value));
        assert_eq!(
            named,
            BTreeSet::from([digest(&alone), digest(&granted)]),
            "{name}"
        );
    }
}

#[tokio::test]
async fn every_revocation_writes_its_one_event_on_every_backend() {
    for (name, store, _keep) in backends().await {
        assert_eq!(store.last_event_position().await.unwrap(), 0, "{name}");
        let wide = |now: u64| now + EVENT_RETENTION_SECS;

        // An opaque token: named by the base64url of its digest, kept until it expires.
        store.insert_token(token(1, "web", "u1")).await.unwrap();
        store
            .revoke_token(&TokenKey::from_digest([1; 32]), "web", 50)
            .await
            .unwrap();
        store
            .revoke_token(&TokenKey::from_digest([1; 32]), "web", 51)
            .await
            .unwrap(); // again: nothing new
        store
            .revoke_token(&TokenKey::from_digest([1; 32]), "other", 52)
            .await
            .unwrap(); // not its client
        assert_eq!(
            events_after(&*store, 0).await,
            [(
                EventKind::TokenDigest,
                URL_SAFE_NO_PAD.encode([1; 32]),
                None,
                50,
                1_001
            )],
            "{name}"
        );
        let mut seen = store.last_event_position().await.unwrap();

        // A JWT, by jti, listed once.
        store.revoke_jwt("jwt-1", "web", 900, 60).await.unwrap();
        store.revoke_jwt("jwt-1", "web", 900, 61).await.unwrap();
        assert_eq!(
            events_after(&*store, seen).await,
            [(EventKind::TokenJti, "jwt-1".into(), None, 60, 900)],
            "{name}"
        );
        seen = store.last_event_position().await.unwrap();

        // A grant: its opaque token by digest, its JWT by jti; a second revocation adds nothing.
        store.insert_token(token(2, "web", "u1")).await.unwrap();
        store
            .record_grant_token("grant-1", "jti-2", "web", 1_002)
            .await
            .unwrap();
        store
            .record_grant_token("grant-1", "jwt-2", "web", 950)
            .await
            .unwrap();
        store.revoke_grant("grant-1", 70).await.unwrap();
        store.revoke_grant("grant-1", 71).await.unwrap();
        let mut grant_events = events_after(&*store, seen).await;
        grant_events.sort();
        assert_eq!(
            grant_events,
            [
                (EventKind::TokenJti, "jwt-2".into(), None, 70, 950),
                (
                    EventKind::TokenDigest,
                    URL_SAFE_NO_PAD.encode([2; 32]),
                    None,
                    70,
                    1_002
                ),
            ],
            "{name}"
        );
        seen = store.last_event_position().await.unwrap();

        // A session, with its user; ending it again adds nothing.
        store.insert_user(&user("u1", "jane")).await.unwrap();
        store
            .insert_session(&session(3, "sid-1", "u1"))
            .await
            .unwrap();
        store.end_session("sid-1", 80).await.unwrap();
        store.end_session("sid-1", 81).await.unwrap();
        store.end_session("no-such-sid", 82).await.unwrap();
        assert_eq!(
            events_after(&*store, seen).await,
            [(
                EventKind::Session,
                "sid-1".into(),
                Some("u1".into()),
                80,
                wide(80)
            )],
            "{name}"
        );
        seen = store.last_event_position().await.unwrap();

        // A password change, then the user deleted; unknown users change nothing.
        assert!(store.set_password("jane", "new hash", 90).await.unwrap());
        assert!(!store.set_password("nobody", "hash", 91).await.unwrap());
        assert!(store.delete_user("jane", 95).await.unwrap());
        assert!(!store.delete_user("jane", 96).await.unwrap());
        assert_eq!(
            events_after(&*store, seen).await,
            [
                (EventKind::PasswordChanged, "u1".into(), None, 90, wide(90)),
                (EventKind::UserDeleted, "u1".into(), None, 95, wide(95)),
            ],
            "{name}"
        );
        seen = store.last_event_position().await.unwrap();

        // A client deleted.
        let client = client_named("gone");
        store.insert_client(&client).await.unwrap();
        assert!(store.delete_client("gone", 99).await.unwrap());
        assert!(!store.delete_client("gone", 100).await.unwrap());
        assert_eq!(
            events_after(&*store, seen).await,
            [(EventKind::ClientDeleted, "gone".into(), None, 99, wide(99))],
            "{name}"
        );
    }
}

fn client_named(id: &str) -> scopegate_token_service::config::Client {
    use scopegate_token_service::config::{Client, ClientSettings, GrantType, TokenFormat};
    let settings = ClientSettings {
        id: id.into(),
        public: true,
        grants: vec![GrantType::AuthorizationCode],
        scopes: vec!["openid".parse().unwrap()],
        default_scopes: None,
        token_format: TokenFormat::Jwt,
        access_token_ttl: None,
        audience: vec!["https://api.test".into()],
        exchange_from: vec![],
        redirect_uris: vec!["https://app.test/cb".into()],
        post_logout_redirect_uris: Vec::new(),
        required_claims: Vec::new(),
        self_signup: false,
        dpop_bound_access_tokens: false,
        jwks: None,
        jwks_uri: None,
        rate_limit: None,
        secret: None,
        secret_hash: None,
    };
    Client::new(settings, None, Some(1)).unwrap()
}

#[tokio::test]
async fn events_are_read_in_position_order_from_any_position_and_swept_after_retention() {
    for (name, store, _keep) in backends().await {
        for index in 0..5_u64 {
            store
                .revoke_jwt(&format!("jwt-{index}"), "web", 5_000, 100 + index)
                .await
                .unwrap();
        }
        let all = store.events_after(None, 100).await.unwrap();
        let positions: Vec<u64> = all.iter().map(|event| event.position).collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{name}");
        assert_eq!(positions.len(), 5, "{name}");
        assert_eq!(
            store.last_event_position().await.unwrap(),
            positions[4],
            "{name}"
        );
        let page = store.events_after(Some(positions[1]), 2).await.unwrap();
        assert_eq!(
            page.iter().map(|event| event.position).collect::<Vec<_>>(),
            positions[2..4],
            "{name}"
        );
        assert!(
            store
                .events_after(Some(positions[4]), 10)
                .await
                .unwrap()
                .is_empty()
        );

        let epoch = store.event_epoch().await.unwrap();
        assert_eq!(epoch.len(), 12, "{name}: {epoch}");
        assert_eq!(store.event_epoch().await.unwrap(), epoch, "{name}");

        // Kept for the retention after they occurred (the sweep keeps a minute's margin of its
        // own); the newest position is never handed out again.
        store.sweep(102 + EVENT_RETENTION_SECS).await.unwrap();
        let kept: Vec<EventRecord> = store.events_after(None, 100).await.unwrap();
        assert_eq!(
            kept.iter().map(|event| event.position).collect::<Vec<_>>(),
            positions[2..],
            "{name}"
        );
        store.sweep(1_000 + EVENT_RETENTION_SECS).await.unwrap();
        assert!(store.events_after(None, 100).await.unwrap().is_empty());
        store
            .revoke_jwt("jwt-late", "web", 9_000, 2_000)
            .await
            .unwrap();
        let late = store.events_after(None, 100).await.unwrap();
        assert!(late[0].position > positions[4], "{name}: {late:?}");
    }
}

/// Two instances on one Postgres database revoke concurrently while a reader follows the stream
/// by position: the reader never skips an event (an event with a lower position committing
/// after a higher one was read would be skipped), and each instance hears of the other's
/// events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_follow_commit_order_across_postgres_instances() {
    let database = TestDatabase::create().await;
    let first = store::open(&database.url).await.unwrap();
    let second = store::open(&database.url).await.unwrap();
    let heard = second.event_commits();
    let listening = tokio::spawn(async move { heard.notified().await });
    // The listener connects in the background: revoke until the other instance hears.
    let mut attempt = 0;
    let heard_within = tokio::time::timeout(Duration::from_secs(30), async {
        while !listening.is_finished() {
            attempt += 1;
            first
                .revoke_jwt(&format!("probe-{attempt}"), "web", 9_999, 1)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        heard_within.is_ok(),
        "the second instance never heard of the first's events"
    );

    let start = first.last_event_position().await.unwrap();
    let writers: Vec<_> = [Arc::clone(&first), Arc::clone(&second)]
        .into_iter()
        .enumerate()
        .flat_map(|(instance, store)| {
            (0..4).map(move |worker| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for index in 0..25 {
                        let jti = format!("i{instance}-w{worker}-{index}");
                        store.revoke_jwt(&jti, "web", 9_999, 2).await.unwrap();
                    }
                })
            })
        })
        .collect();
    let reader = {
        let store = Arc::clone(&first);
        tokio::spawn(async move {
            let mut after = start;
            let mut read = Vec::new();
            while read.len() < 200 {
                let batch = store.events_after(Some(after), 7).await.unwrap();
                if let Some(last) = batch.last() {
                    after = last.position;
                }
                read.extend(batch.into_iter().map(|event| event.subject));
                tokio::task::yield_now().await;
            }
            read
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    let read = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reader missed events: it never read all 200")
        .unwrap();
    let distinct: BTreeSet<&String> = read.iter().collect();
    assert_eq!(distinct.len(), 200, "each event read once");
}
