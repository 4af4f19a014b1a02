//! Secrets at rest (issue 16, item 9): signing keys and shared secrets are stored encrypted
//! under keys the operator supplies, a copy of the database alone yields no usable key, and
//! the operator key rotates without losing anything.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use scopegate_token_service::State;
use scopegate_token_service::config::Config;
use scopegate_token_service::keys::SigningKey;
use scopegate_token_service::sealing::{self, Sealer, signing_key_label};
use scopegate_token_service::store::{SqlStore, Store};
use serde_json::Value;
use support::*;

const KEY_A: &str = "first operator key: 7Yq2v9Lk3Xb8Rz1Wm4Tn6Hc0Pd5Fs";
const KEY_B: &str = "second operator key: Qe3Vn8Kz2Lx7Bt1Rm9Hw4Jc6Pf0Gy";

async fn sqlite(path: &Path) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", path.display());
    Arc::new(SqlStore::sqlite(&url).await.unwrap())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every file of the SQLite database (the main file, and its WAL if one is left).
fn database_files(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("store.db")
        {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn copy_database(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if name.to_string_lossy().starts_with("store.db") {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// The private keys and the CSRF key as the service uses them, decrypted with `sealer`.
async fn plain_secrets(store: &dyn Store, sealer: &Sealer) -> Vec<Vec<u8>> {
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for key in store.list_keys().await.unwrap() {
        let label = signing_key_label(&key.kid);
        secrets.push(sealer.open(&label, &key.private_key).unwrap());
    }
    secrets.push(
        sealing::shared_secret(store, sealer, "csrf", 0)
            .await
            .unwrap(),
    );
    secrets
}

fn jwks(state: &State) -> Value {
    state.keys().jwks(state.now())
}

/// Starts a service on a SQLite file with `keys`, lets it create its signing key and CSRF key,
/// and returns their plain values and the database's bytes once it has stopped.
async fn stored_by_a_service(dir: &Path, keys: &[&str]) -> (Vec<Vec<u8>>, Vec<u8>, Value) {
    let store = sqlite(&dir.join("store.db")).await;
    let state = start_with_keys(keys, &store).await.unwrap();
    // Building the routes reads (and so creates) the CSRF key.
    let _routes = scopegate_token_service::http::app(state.clone())
        .await
        .unwrap();
    let secrets = plain_secrets(&*store, &sealer(keys)).await;
    let published = jwks(&state);
    drop(state);
    drop(store);
    (secrets, database_files(dir), published)
}

#[tokio::test]
async fn a_copy_of_the_database_alone_yields_no_usable_key() {
    // The check can fail: without an operator key the secrets are in the file as they are.
    let clear = tempfile::tempdir().unwrap();
    let (secrets, file, _) = stored_by_a_service(clear.path(), &[]).await;
    assert_eq!(secrets.len(), 2, "one signing key and the CSRF key");
    assert!(secrets.iter().all(|secret| contains(&file, secret)));

    let sealed = tempfile::tempdir().unwrap();
    let (secrets, file, published) = stored_by_a_service(sealed.path(), &[KEY_A]).await;
    assert_eq!(secrets.len(), 2);
    for secret in &secrets {
        assert!(secret.len() >= 32);
        assert!(!contains(&file, secret), "a secret is in the database file");
    }

    // The thief's copy: the stored keys are not keys, and the service will not start on it
    // without the operator key, nor with another one.
    let copy = tempfile::tempdir().unwrap();
    copy_database(sealed.path(), copy.path());
    let stolen = sqlite(&copy.path().join("store.db")).await;
    for key in stolen.list_keys().await.unwrap() {
        assert!(key.private_key.sealed_by.is_some());
        assert!(SigningKey::load(&key.kid, &key.algorithm, &key.private_key.bytes).is_err());
    }
    let without_key = start_with_keys(&[], &stolen).await.unwrap_err();
    assert!(
        without_key.contains("not among the configured encryption keys")
            && without_key.contains("SCOPEGATE_ENCRYPTION_KEYS"),
        "{without_key}"
    );
    let other_key = start_with_keys(&[KEY_B], &stolen).await.unwrap_err();
    assert!(
        other_key.contains("not among the configured encryption keys"),
        "{other_key}"
    );
    // With the operator key the copy is the service's own again.
    let restored = start_with_keys(&[KEY_A], &stolen).await.unwrap();
    assert_eq!(jwks(&restored), published);
}

#[tokio::test]
async fn the_operator_key_rotates_without_losing_a_secret_on_every_backend() {
    for (name, store, _keep) in backends().await {
        let first = start_with_keys(&[KEY_A], &store).await.unwrap();
        let csrf = first.shared_secret("csrf").await.unwrap();
        let published = jwks(&first);
        let a = sealer(&[KEY_A]);

        // Step 1: B is added after A everywhere (A still encrypts): nothing changes.
        let both = sealer(&[KEY_A, KEY_B]);
        assert_eq!(sealing::reseal_outdated(&*store, &both).await.unwrap(), 0);

        // Step 2: B moves first; instances starting at once re-encrypt each row exactly once.
        let rotated = sealer(&[KEY_B, KEY_A]);
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (store, rotated) = (Arc::clone(&store), Arc::clone(&rotated));
            starts.spawn(async move { sealing::reseal_outdated(&*store, &rotated).await.unwrap() });
        }
        let changed: usize = starts.join_all().await.into_iter().sum();
        assert_eq!(
            changed, 2,
            "{name}: the signing key and the CSRF key, once each"
        );
        let b_id = rotated.current_key_id().map(str::to_owned);
        assert_ne!(b_id.as_deref(), a.current_key_id());
        for key in store.list_keys().await.unwrap() {
            assert_eq!(key.private_key.sealed_by, b_id, "{name}");
        }
        for (secret, stored) in store.server_secrets().await.unwrap() {
            assert_eq!(stored.sealed_by, b_id, "{name}: {secret}");
        }
        let second = start_with_keys(&[KEY_B, KEY_A], &store).await.unwrap();
        assert_eq!(jwks(&second), published, "{name}: the same signing keys");
        assert_eq!(second.shared_secret("csrf").await.unwrap(), csrf, "{name}");

        // Step 3: A is retired; B alone reads everything, and new keys are sealed by B.
        let third = start_with_keys(&[KEY_B], &store).await.unwrap();
        assert_eq!(jwks(&third), published, "{name}");
        assert_eq!(third.shared_secret("csrf").await.unwrap(), csrf, "{name}");
        scopegate_token_service::rotation::add_key(
            &*store,
            &third.config().encryption,
            scopegate_token_service::keys::KeyAlgorithm::Es256,
            None,
            third.now(),
            third.now(),
        )
        .await
        .unwrap();
        let newest = store.list_keys().await.unwrap().pop().unwrap();
        assert_eq!(newest.private_key.sealed_by, b_id, "{name}");

        // An instance left with only the retired key refuses to start, saying why.
        let stale = start_with_keys(&[KEY_A], &store).await.unwrap_err();
        assert!(
            stale.contains("not among the configured encryption keys")
                && stale.contains("keep a retired key listed"),
            "{name}: {stale}"
        );
    }
}

#[tokio::test]
async fn the_keys_file_named_in_the_configuration_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("# current first\n{KEY_B}\n{KEY_A}\n")).unwrap();
    let text = format!(
        "encryption_keys_file = \"{}\"\n{}",
        file.display(),
        config_text("http://127.0.0.1:8080", "ES256")
    );
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(
        config.encryption.current_key_id(),
        sealer(&[KEY_B]).current_key_id()
    );
    assert!(!format!("{config:?}").contains(KEY_B));
}

#[tokio::test]
async fn a_secret_the_keys_cannot_read_stops_the_start_with_the_store_unchanged() {
    const KEY_C: &str = "third operator key: Zk4Wq8Lr2Mx6Tb0Nc5Hv9Jd3Pf7Gs1";
    let store: Arc<dyn Store> = scopegate_token_service::store::open("sqlite::memory:")
        .await
        .unwrap();
    // The signing key under A, the CSRF key under B: no single key list but [A, B] reads both.
    let a = sealer(&[KEY_A]);
    scopegate_token_service::rotation::add_key(
        &*store,
        &a,
        scopegate_token_service::keys::KeyAlgorithm::Es256,
        None,
        1,
        1,
    )
    .await
    .unwrap();
    sealing::shared_secret(&*store, &sealer(&[KEY_B]), "csrf", 1)
        .await
        .unwrap();
    let before = (
        store.list_keys().await.unwrap(),
        store.server_secrets().await.unwrap(),
    );

    // C would re-encrypt the signing key (readable through A) but cannot read the CSRF key.
    let error = start_with_keys(&[KEY_C, KEY_A], &store).await.unwrap_err();
    assert!(error.contains("shared secret csrf"), "{error}");
    let after = (
        store.list_keys().await.unwrap(),
        store.server_secrets().await.unwrap(),
    );
    assert_eq!(
        after
            .0
            .iter()
            .map(|key| &key.private_key)
            .collect::<Vec<_>>(),
        before
            .0
            .iter()
            .map(|key| &key.private_key)
            .collect::<Vec<_>>(),
        "the signing key was rewritten before the failure"
    );
    assert_eq!(after.1, before.1);
}
