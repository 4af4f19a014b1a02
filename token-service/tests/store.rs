//! The store's contract, run against every backend: SQLite in memory, an SQLite file, and a
//! fresh Postgres database. The races here are the ones several instances would run: every
//! one-time rule must be decided by the database.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;

use scopegate_token_service::config::CustomScope;
use scopegate_token_service::config::keys::AssertionKeys;
use scopegate_token_service::keys::KeyAlgorithm;
use scopegate_token_service::rotation;
use scopegate_token_service::sealing::{self, Sealer};
use scopegate_token_service::secret::Secret;
use scopegate_token_service::store::{
    self, CodeRecord, Redemption, RefreshRecord, Revoked, SessionRecord, StoreError, StoredScope,
    TokenKey, TokenRecord,
};
use support::backends;
use support::postgres::with_database;

fn code(digest: u8) -> CodeRecord {
    CodeRecord {
        digest: [digest; 32],
        client_id: "web".into(),
        user_id: "u1".into(),
        username: "jane".into(),
        sid: "sid-1".into(),
        redirect_uri: "https://app.example.test/cb".into(),
        scope: "openid".into(),
        nonce: Some("n".into()),
        code_challenge: Some("c".into()),
        dpop_jkt: Some("code-jkt".into()),
        auth_time: 10,
        expires_at: 1_000,
        redeemed_at: None,
    }
}

fn session() -> SessionRecord {
    SessionRecord {
        digest: [4; 32],
        sid: "sid-1".into(),
        user_id: "u1".into(),
        username: "jane".into(),
        auth_time: 10,
        expires_at: 2_000,
        ended_at: None,
    }
}

fn refresh(digest: u8, family: &str) -> RefreshRecord {
    RefreshRecord {
        digest: [digest; 32],
        family: family.into(),
        client_id: "web".into(),
        user_id: "u1".into(),
        username: "jane".into(),
        sid: "sid-1".into(),
        scope: "openid".into(),
        auth_time: 10,
        issued_at: 20,
        expires_at: 10_000,
        rotated_at: None,
        revoked_at: None,
        family_started_at: 15,
        jkt: Some("refresh-jkt".into()),
    }
}

fn token(digest: u8, client: &str) -> TokenRecord {
    TokenRecord {
        key: TokenKey::from_digest([digest; 32]),
        jti: format!("jti-{digest}"),
        client_id: client.into(),
        subject: client.into(),
        scope: "a:b:read".into(),
        audience: vec!["https://api.example.test".into()],
        act: None,
        issued_at: 100,
        expires_at: 1_000,
        revoked_at: None,
        jkt: digest.is_multiple_of(2).then(|| format!("jkt-{digest}")),
    }
}

#[tokio::test]
async fn records_round_trip_on_every_backend() {
    for (name, store, _keep) in backends().await {
        store.ping().await.unwrap();
        store.insert_code(&code(1)).await.unwrap();
        assert_eq!(
            store.find_code(&[1; 32]).await.unwrap(),
            Some(code(1)),
            "{name}"
        );
        store.insert_refresh(&refresh(2, "g1")).await.unwrap();
        assert_eq!(
            store.find_refresh(&[2; 32]).await.unwrap(),
            Some(refresh(2, "g1")),
            "{name}"
        );
        // Unbound (odd digest) and DPoP-bound (even) tokens alike.
        for digest in [3, 8] {
            store.insert_token(token(digest, "svc-a")).await.unwrap();
            assert_eq!(
                store
                    .find_token(&TokenKey::from_digest([digest; 32]))
                    .await
                    .unwrap(),
                Some(token(digest, "svc-a")),
                "{name}"
            );
        }
        let session = session();
        store.insert_session(&session).await.unwrap();
        store.end_session("sid-1", 50).await.unwrap();
        store.end_session("sid-1", 60).await.unwrap();
        assert_eq!(
            store
                .find_session(&[4; 32])
                .await
                .unwrap()
                .unwrap()
                .ended_at,
            Some(50),
            "{name}: the first end is kept"
        );
        assert_eq!(
            store.session_codes("sid-1").await.unwrap(),
            [[1; 32]],
            "{name}"
        );
        assert_eq!(
            store.session_families("sid-1").await.unwrap(),
            ["g1"],
            "{name}"
        );
        assert_eq!(
            store
                .revoke_token(&TokenKey::from_digest([3; 32]), "svc-b", 70)
                .await
                .unwrap(),
            Revoked::OtherClient
        );
        assert_eq!(
            store
                .revoke_token(&TokenKey::from_digest([3; 32]), "svc-a", 70)
                .await
                .unwrap(),
            Revoked::Done
        );
        assert_eq!(
            store
                .revoke_token(&TokenKey::from_digest([9; 32]), "svc-a", 70)
                .await
                .unwrap(),
            Revoked::Unknown
        );
        store.revoke_jwt("j1", "svc-a", 500, 70).await.unwrap();
        assert!(store.is_jwt_revoked("j1").await.unwrap(), "{name}");
        assert!(!store.is_jwt_revoked("j2").await.unwrap(), "{name}");
        // A single-use id is spent once, at any instance, until it expires.
        assert!(store.spend_once(&[5; 32], 2_000).await.unwrap(), "{name}");
        assert!(!store.spend_once(&[5; 32], 2_000).await.unwrap(), "{name}");
        let swept = store.sweep(2_500).await.unwrap();
        // Both opaque tokens (3 and 8) expired at 1 000.
        assert_eq!(
            (swept.tokens, swept.revoked_jwts),
            (2, 1),
            "{name}: {swept:?}"
        );
        assert!(
            store.spend_once(&[5; 32], 3_000).await.unwrap(),
            "{name}: the sweep forgets expired ids"
        );
        assert!(
            store.find_session(&[4; 32]).await.unwrap().is_none(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn deleting_a_user_ends_their_sessions_and_revokes_their_tokens_on_every_backend() {
    for (name, store, _keep) in backends().await {
        let user = scopegate_token_service::users::Account {
            id: "u1".into(),
            username: "jane".into(),
            password: scopegate_token_service::secret::SecretHash::hash("a password"),
            attributes: serde_json::Map::new(),
            configured: false,
            created_at: Some(1),
            updated_at: Some(1),
        };
        store.insert_user(&user).await.unwrap();
        let mut attributes = serde_json::Map::new();
        attributes.insert("companyName".into(), "Initech".into());
        assert_eq!(
            store
                .merge_user_attributes("jane", &attributes, 5)
                .await
                .unwrap(),
            Some(attributes.clone())
        );
        assert!(
            store
                .merge_user_attributes("nobody", &attributes, 5)
                .await
                .unwrap()
                .is_none()
        );
        let found = store.find_user_by_name("jane").await.unwrap().unwrap();
        assert_eq!(
            (found.attributes, found.updated_at),
            (attributes, Some(5)),
            "{name}"
        );

        store.insert_session(&session()).await.unwrap();
        store.insert_refresh(&refresh(5, "family-1")).await.unwrap();
        let mut own = token(6, "web");
        own.subject = "u1".into();
        store.insert_token(own).await.unwrap();
        let others = token(7, "svc"); // another subject: untouched
        store.insert_token(others).await.unwrap();

        assert!(store.delete_user("jane", 100).await.unwrap(), "{name}");
        assert!(store.find_user_by_name("jane").await.unwrap().is_none());
        let session = store.find_session(&[4; 32]).await.unwrap().unwrap();
        assert_eq!(session.ended_at, Some(100), "{name}");
        let refresh = store.find_refresh(&[5; 32]).await.unwrap().unwrap();
        assert_eq!(refresh.revoked_at, Some(100), "{name}");
        let own = store
            .find_token(&TokenKey::from_digest([6; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(own.revoked_at, Some(100), "{name}");
        let others = store
            .find_token(&TokenKey::from_digest([7; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(others.revoked_at, None, "{name}");
        assert!(!store.delete_user("jane", 101).await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn clients_round_trip_and_deleting_one_revokes_its_tokens_on_every_backend() {
    for (name, store, _keep) in backends().await {
        use scopegate_token_service::config::{
            Api, Client, ClientSettings, GrantType, TokenFormat,
        };
        let scopes = |text: &str| -> Vec<scopegate_validator::Scope> {
            text.split(' ')
                .map(|scope| scope.parse().unwrap())
                .collect()
        };
        let settings = ClientSettings {
            id: "web".into(),
            public: true,
            grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: scopes("ad:user_custom:read openid"),
            default_scopes: Some(scopes("openid")),
            token_format: TokenFormat::Opaque,
            access_token_ttl: Some(std::time::Duration::from_secs(900)),
            audience: vec!["https://api.test".into()],
            exchange_from: vec![],
            redirect_uris: vec!["https://app.test/cb".into()],
            post_logout_redirect_uris: vec!["https://app.test/".into()],
            required_claims: vec!["company_name".into()],
            self_signup: true,
            dpop_bound_access_tokens: true,
            jwks: None,
            jwks_uri: None,
            rate_limit: Some("600/min".parse().unwrap()),
            secret: None,
            secret_hash: None,
        };
        let client = Client::new(settings, None, Some(1)).unwrap();
        store.insert_client(&client).await.unwrap();
        // Every field comes back as it went in, typed.
        let found = store.find_client("web").await.unwrap().unwrap();
        assert_eq!(format!("{found:?}"), format!("{client:?}"), "{name}");
        // A confidential client with keys instead of a secret (private_key_jwt) too.
        let mut signer = client.settings.clone();
        signer.id = "signer".into();
        signer.public = false;
        signer.jwks =
            Some(serde_json::json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": "x" }] }));
        let signer = Client::new(signer, None, Some(1)).unwrap();
        store.insert_client(&signer).await.unwrap();
        let found = store.find_client("signer").await.unwrap().unwrap();
        assert_eq!(format!("{found:?}"), format!("{signer:?}"), "{name}");
        assert!(!found.is_public() && found.keys.is_some(), "{name}");
        store.insert_refresh(&refresh(5, "family-1")).await.unwrap();
        store.insert_token(token(6, "web")).await.unwrap();
        store.insert_token(token(7, "svc")).await.unwrap(); // another client: untouched

        assert!(store.delete_client("web", 100).await.unwrap(), "{name}");
        assert!(store.find_client("web").await.unwrap().is_none(), "{name}");
        let refresh = store.find_refresh(&[5; 32]).await.unwrap().unwrap();
        assert_eq!(refresh.revoked_at, Some(100), "{name}");
        let own = store
            .find_token(&TokenKey::from_digest([6; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(own.revoked_at, Some(100), "{name}");
        let others = store
            .find_token(&TokenKey::from_digest([7; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(others.revoked_at, None, "{name}");
        assert!(!store.delete_client("web", 101).await.unwrap(), "{name}");

        let api = Api {
            id: "https://reports.test".into(),
            secret: Some(scopegate_token_service::secret::SecretHash::hash("s")),
            keys: None,
            scopes: vec![scopegate_validator::Scope::parse("other:thing").unwrap()],
            registered_at: Some(1),
            rate_limit: Some("20/s".parse().unwrap()),
        };
        store.insert_api(&api).await.unwrap();
        let found = store.find_api(&api.id).await.unwrap().unwrap();
        assert_eq!(format!("{found:?}"), format!("{api:?}"), "{name}");
        // An API that introspects with its keys (private_key_jwt) has no secret.
        for keys in [
            AssertionKeys::Jwks(r#"{"keys":[{"crv":"P-256","kty":"EC","x":"x","y":"y"}]}"#.into()),
            AssertionKeys::JwksUri("https://keys.test/jwks.json".into()),
        ] {
            let with_keys = Api {
                id: format!("https://keyed.test/{}", keys.fingerprint().len()),
                secret: None,
                keys: Some(keys),
                ..api.clone()
            };
            store.insert_api(&with_keys).await.unwrap();
            let found = store.find_api(&with_keys.id).await.unwrap().unwrap();
            assert_eq!(format!("{found:?}"), format!("{with_keys:?}"), "{name}");
            assert!(store.delete_api(&with_keys.id).await.unwrap(), "{name}");
        }
        assert!(store.delete_api(&api.id).await.unwrap(), "{name}");
        assert!(store.find_api(&api.id).await.unwrap().is_none(), "{name}");
        assert!(!store.delete_api(&api.id).await.unwrap(), "{name}");
    }
}

/// Attribute changes merge: concurrent changes to one user, each adding its own attribute
/// and one removing another, all land (none overwrites another's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attribute_changes_all_land_on_every_backend() {
    for (name, store, _keep) in backends().await {
        let mut start = serde_json::Map::new();
        start.insert("doomed".into(), true.into());
        let user = scopegate_token_service::users::Account {
            id: "u9".into(),
            username: "kim".into(),
            password: scopegate_token_service::secret::SecretHash::hash("a password"),
            attributes: start,
            configured: false,
            created_at: Some(1),
            updated_at: Some(1),
        };
        store.insert_user(&user).await.unwrap();
        let mut changes = tokio::task::JoinSet::new();
        for index in 0..12 {
            let store = Arc::clone(&store);
            changes.spawn(async move {
                let mut change = serde_json::Map::new();
                change.insert(format!("a{index}"), index.into());
                if index == 0 {
                    change.insert("doomed".into(), serde_json::Value::Null);
                }
                store.merge_user_attributes("kim", &change, 2).await
            });
        }
        for outcome in changes.join_all().await {
            outcome.unwrap_or_else(|error| panic!("{name}: {error}"));
        }
        let found = store.find_user_by_name("kim").await.unwrap().unwrap();
        let mut names: Vec<&String> = found.attributes.keys().collect();
        names.sort();
        let mut expected: Vec<String> = (0..12).map(|index| format!("a{index}")).collect();
        expected.sort();
        assert_eq!(
            names,
            expected.iter().collect::<Vec<_>>(),
            "{name}: a change was lost"
        );
    }
}

/// Access-token rows are group-committed: many concurrent inserts share statements, and a
/// duplicate among them must fail alone while every other row is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_token_inserts_all_land_and_a_duplicate_fails_alone_on_every_backend() {
    for (name, store, _keep) in backends().await {
        let mut inserts = tokio::task::JoinSet::new();
        for index in 0..240u16 {
            let store = Arc::clone(&store);
            // 0..200 distinct; 200..240 repeat the digests of 0..40, at the same moment.
            let distinct = index % 200;
            inserts.spawn(async move {
                let mut record = token(0, "svc");
                let mut digest = [0; 32];
                digest[..2].copy_from_slice(&distinct.to_le_bytes());
                record.key = TokenKey::from_digest(digest);
                record.jti = format!("jti-{index}");
                (distinct, store.insert_token(record).await)
            });
        }
        let mut written = std::collections::HashMap::<u16, usize>::new();
        let mut duplicates = 0;
        for (distinct, outcome) in inserts.join_all().await {
            match outcome {
                Ok(()) => *written.entry(distinct).or_default() += 1,
                Err(store::StoreError::Duplicate(_)) if distinct < 40 => duplicates += 1,
                Err(other) => panic!("{name}: row {distinct}: {other}"),
            }
        }
        assert_eq!((written.len(), duplicates), (200, 40), "{name}");
        assert!(written.values().all(|count| *count == 1), "{name}");
        for distinct in 0..200u16 {
            let mut digest = [0; 32];
            digest[..2].copy_from_slice(&distinct.to_le_bytes());
            let key = TokenKey::from_digest(digest);
            assert!(store.find_token(&key).await.unwrap().is_some(), "{name}");
        }
    }
}

#[tokio::test]
async fn of_twenty_concurrent_redemptions_exactly_one_wins_on_every_backend() {
    for (name, store, _keep) in backends().await {
        store.insert_code(&code(7)).await.unwrap();
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = Arc::clone(&store);
            attempts.spawn(async move { store.redeem_code(&[7; 32], 100).await.unwrap() });
        }
        let outcomes = attempts.join_all().await;
        let won = outcomes
            .iter()
            .filter(|o| **o == Redemption::Redeemed)
            .count();
        let lost = outcomes
            .iter()
            .filter(|o| **o == Redemption::AlreadyRedeemed)
            .count();
        assert_eq!((won, lost), (1, 19), "{name}");
        assert_eq!(
            store.redeem_code(&[8; 32], 100).await.unwrap(),
            Redemption::Unknown
        );
    }
}

#[tokio::test]
async fn of_twenty_concurrent_rotations_of_a_refresh_token_exactly_one_wins_on_every_backend() {
    for (name, store, _keep) in backends().await {
        store.insert_refresh(&refresh(5, "g5")).await.unwrap();
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = Arc::clone(&store);
            attempts.spawn(async move { store.rotate_refresh(&[5; 32], 100).await.unwrap() });
        }
        let won = attempts
            .join_all()
            .await
            .into_iter()
            .filter(|won| *won)
            .count();
        assert_eq!(won, 1, "{name}");
    }
}

/// A grant revoked while its tokens are being issued (a code replayed while the first
/// redemption is still recording tokens): every token ends up revoked, whatever the order.
#[tokio::test]
async fn tokens_recorded_while_their_grant_is_revoked_never_escape_on_every_backend() {
    for (name, store, _keep) in backends().await {
        for round in 0..10_u8 {
            let grant = format!("grant-{round}");
            let mut work = tokio::task::JoinSet::new();
            for index in 0..8_u8 {
                let (store, grant) = (Arc::clone(&store), grant.clone());
                work.spawn(async move {
                    let digest = round * 16 + index;
                    store.insert_token(token(digest, "web")).await.unwrap();
                    let jti = format!("jti-{digest}");
                    if store
                        .record_grant_token(&grant, &jti, "web", 1_000)
                        .await
                        .unwrap()
                    {
                        // What `tokens::issue` does when the grant was revoked meanwhile.
                        store.revoke_grant(&grant, 200).await.unwrap();
                    }
                    store
                        .insert_refresh(&refresh(digest, &grant))
                        .await
                        .unwrap();
                });
            }
            let (store2, grant2) = (Arc::clone(&store), grant.clone());
            work.spawn(async move {
                tokio::task::yield_now().await;
                store2.revoke_grant(&grant2, 200).await.unwrap();
            });
            work.join_all().await;
            for index in 0..8_u8 {
                let digest = round * 16 + index;
                let access = store
                    .find_token(&TokenKey::from_digest([digest; 32]))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(
                    access.revoked_at.is_some(),
                    "{name}: access token {digest} escaped"
                );
                let refreshed = store.find_refresh(&[digest; 32]).await.unwrap().unwrap();
                assert!(
                    refreshed.revoked_at.is_some(),
                    "{name}: refresh token {digest} escaped"
                );
                assert!(!store.rotate_refresh(&[digest; 32], 300).await.unwrap());
            }
        }
    }
}

#[tokio::test]
async fn concurrent_first_keys_and_rotations_add_one_key_and_shared_secrets_agree() {
    for (name, store, _keep) in backends().await {
        let mut firsts = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let store = Arc::clone(&store);
            firsts.spawn(async move {
                rotation::add_key(&*store, &Sealer::clear(), KeyAlgorithm::Es256, None, 1, 1)
                    .await
                    .unwrap()
            });
        }
        let added: Vec<_> = firsts.join_all().await.into_iter().flatten().collect();
        assert_eq!(added.len(), 1, "{name}: one first key");
        let mut rotations = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (store, first) = (Arc::clone(&store), added[0].kid.clone());
            rotations.spawn(async move {
                let sealer = Sealer::clear();
                rotation::add_key(&*store, &sealer, KeyAlgorithm::Es256, Some(&first), 2, 10)
                    .await
                    .unwrap()
            });
        }
        let rotated = rotations.join_all().await.into_iter().flatten().count();
        assert_eq!(rotated, 1, "{name}: one successor");
        let keys = store.list_keys().await.unwrap();
        assert_eq!(keys.len(), 2, "{name}");
        assert_eq!(keys[1].succeeds.as_deref(), Some(added[0].kid.as_str()));

        let sealer =
            Arc::new(Sealer::new(&[Secret::new("k".repeat(sealing::MIN_KEY_CHARS))]).unwrap());
        let mut secrets = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (store, sealer) = (Arc::clone(&store), Arc::clone(&sealer));
            secrets.spawn(async move {
                sealing::shared_secret(&*store, &sealer, "csrf", 1)
                    .await
                    .unwrap()
            });
        }
        let values = secrets.join_all().await;
        assert!(
            values.windows(2).all(|pair| pair[0] == pair[1]),
            "{name}: one secret"
        );
        assert_eq!(values[0].len(), 32);
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_store_error_not_a_hang() {
    // Nothing listens on port 1: the open fails fast with an error naming the database.
    let started = std::time::Instant::now();
    let error = store::open_with(
        "postgres://postgres@127.0.0.1:1/none",
        store::PoolSettings {
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(2),
        },
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("database"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn test_database_urls_replace_only_the_database() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

/// Attempts counted at once each get their own count (issue 16): the statement increments and
/// returns in one step on every backend, and taking one back lowers the count by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attempts_each_get_their_own_count_on_every_backend() {
    for (name, store, _keep) in backends().await {
        let mut counting = tokio::task::JoinSet::new();
        for _ in 0..60 {
            let store = Arc::clone(&store);
            counting.spawn(async move { store.count_attempt(&[3; 32], 1_000, 900).await });
        }
        let mut counts: Vec<u64> = counting
            .join_all()
            .await
            .into_iter()
            .map(|count| {
                let count = count.unwrap();
                assert_eq!(count.window_ends, 1_900, "{name}");
                count.attempts
            })
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=60).collect::<Vec<_>>(), "{name}");
        store.uncount_attempt(&[3; 32], 1_000).await.unwrap();
        let next = store.count_attempt(&[3; 32], 1_001, 900).await.unwrap();
        assert_eq!((next.attempts, next.window_ends), (60, 1_900), "{name}");
        // After the window, counting starts again.
        let later = store.count_attempt(&[3; 32], 1_900, 900).await.unwrap();
        assert_eq!((later.attempts, later.window_ends), (1, 2_800), "{name}");
    }
}

#[tokio::test]
async fn of_concurrent_spends_of_one_id_exactly_one_succeeds_on_every_backend() {
    for (name, store, _keep) in backends().await {
        // Twenty askers of one id and twenty of ids of their own, at once: the writer groups
        // them into batches, in which the first asker of an id wins and a repeat is a replay.
        let mut running = tokio::task::JoinSet::new();
        for asker in 0..40u8 {
            let store = Arc::clone(&store);
            let key = if asker < 20 { [200; 32] } else { [asker; 32] };
            running.spawn(async move { (asker, store.spend_once(&key, 5_000).await.unwrap()) });
        }
        let answers = running.join_all().await;
        let shared_wins = answers
            .iter()
            .filter(|(asker, won)| *asker < 20 && *won)
            .count();
        assert_eq!(shared_wins, 1, "{name}: {answers:?}");
        assert!(
            answers
                .iter()
                .filter(|(asker, _)| *asker >= 20)
                .all(|(_, won)| *won),
            "{name}: every distinct id is spent by its asker: {answers:?}"
        );
        assert!(
            !store.spend_once(&[200; 32], 5_000).await.unwrap(),
            "{name}"
        );
    }
}

fn claim_scope(name: &str, claims: &[(&str, &str)], access_token: bool) -> CustomScope {
    CustomScope {
        name: scopegate_validator::Scope::parse(name).unwrap(),
        claims: claims
            .iter()
            .map(|(claim, attribute)| ((*claim).to_owned(), (*attribute).to_owned()))
            .collect(),
        access_token,
        source: "attributes".to_owned(),
    }
}

#[tokio::test]
async fn claim_scopes_round_trip_and_a_deleted_one_is_kept_marked_until_defined_again_on_every_backend()
 {
    for (name, store, _keep) in backends().await {
        let first = claim_scope(
            "hr:department:read",
            &[("department", "dept"), ("cost_centre", "costCentre")],
            true,
        );
        store.insert_scope(&first, 10).await.unwrap();
        let stored = |scope: &CustomScope, created_at, updated_at, deleted_at| StoredScope {
            scope: scope.clone(),
            created_at,
            updated_at,
            deleted_at,
        };
        assert_eq!(
            store.find_scope("hr:department:read").await.unwrap(),
            Some(stored(&first, 10, 10, None)),
            "{name}"
        );
        // A defined name is taken; nothing changes.
        let other = claim_scope("hr:department:read", &[("unit", "unit")], false);
        assert!(
            matches!(
                store.insert_scope(&other, 11).await,
                Err(StoreError::Duplicate(taken)) if taken == "hr:department:read"
            ),
            "{name}"
        );
        // Replaced in full; the time it was defined stays.
        assert!(store.update_scope(&other, 20).await.unwrap(), "{name}");
        let unknown = claim_scope("hr:unknown:read", &[], false);
        assert!(!store.update_scope(&unknown, 20).await.unwrap(), "{name}");
        store
            .insert_scope(&claim_scope("ad:alpha:read", &[], false), 21)
            .await
            .unwrap();
        let listed: Vec<StoredScope> = store.list_scopes().await.unwrap();
        assert_eq!(
            listed,
            [
                stored(&claim_scope("ad:alpha:read", &[], false), 21, 21, None),
                stored(&other, 10, 20, None),
            ],
            "{name}"
        );
        // Deleted: the row stays, marked, and can no longer be changed or deleted.
        assert!(
            store.delete_scope("hr:department:read", 30).await.unwrap(),
            "{name}"
        );
        assert_eq!(
            store.find_scope("hr:department:read").await.unwrap(),
            Some(stored(&other, 10, 30, Some(30))),
            "{name}"
        );
        assert!(
            !store.delete_scope("hr:department:read", 31).await.unwrap(),
            "{name}"
        );
        assert!(!store.update_scope(&first, 31).await.unwrap(), "{name}");
        assert!(
            !store.delete_scope("hr:unknown:read", 31).await.unwrap(),
            "{name}"
        );
        // Defined again, it takes the row back as a new definition.
        store.insert_scope(&first, 40).await.unwrap();
        assert_eq!(
            store.find_scope("hr:department:read").await.unwrap(),
            Some(stored(&first, 40, 40, None)),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_definitions_of_one_name_exactly_one_is_made_on_every_backend() {
    for (name, store, _keep) in backends().await {
        // Ten at once on a new name, then ten at once on a deleted one.
        for round in 0..2 {
            let mut running = tokio::task::JoinSet::new();
            for attempt in 0..10u64 {
                let store = Arc::clone(&store);
                running.spawn(async move {
                    let scope = claim_scope("ad:race:read", &[("n", "n")], attempt % 2 == 0);
                    store.insert_scope(&scope, 100 + attempt).await
                });
            }
            let outcomes = running.join_all().await;
            let made = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
            let taken = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Err(StoreError::Duplicate(_))))
                .count();
            assert_eq!((made, taken), (1, 9), "{name}, round {round}: {outcomes:?}");
            assert!(
                store.delete_scope("ad:race:read", 200).await.unwrap(),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn a_scope_row_this_version_cannot_read_is_reported_naming_it_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!("sqlite://{}/store.db", dir.path().display());
    let database = support::postgres::TestDatabase::create().await;
    for url in [file.as_str(), database.url.as_str()] {
        let store = store::open(url).await.unwrap();
        for (bad, claims) in [("bad scope", "{}"), ("ad:bad:read", "[\"not an object\"]")] {
            let insert = "INSERT INTO scopes (name, claims, access_token, created_at, updated_at) \
                          VALUES ($1, $2, 0, 1, 1)";
            if url.starts_with("sqlite") {
                let pool = sqlx::SqlitePool::connect(url).await.unwrap();
                sqlx::query(insert)
                    .bind(bad)
                    .bind(claims)
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            } else {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(insert)
                    .bind(bad)
                    .bind(claims)
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            let error = store.find_scope(bad).await.unwrap_err().to_string();
            assert!(
                error.contains("corrupt row in `scopes`") && error.contains(bad),
                "{url}: {error}"
            );
            assert!(store.list_scopes().await.is_err(), "{url}");
            sqlx_delete(url, bad).await;
        }
    }
}

async fn sqlx_delete(url: &str, name: &str) {
    let delete = "DELETE FROM scopes WHERE name = $1";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(delete).bind(name).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(delete).bind(name).execute(&pool).await.unwrap();
        pool.close().await;
    }
}
