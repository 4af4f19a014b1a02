//! Secrets kept in clear are announced loudly at start, and encrypted once a key is given. In
//! a test binary of its own: log capture is per thread, and tracing's callsite cache can miss
//! an event when other tests log from other threads at the same moment.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use scopegate_token_service::store::Store;
use support::*;

const KEY_A: &str = "first operator key: 7Yq2v9Lk3Xb8Rz1Wm4Tn6Hc0Pd5Fs";

#[tokio::test(flavor = "current_thread")]
async fn secrets_kept_in_clear_are_announced_and_encrypted_once_a_key_is_given() {
    let store: Arc<dyn Store> = scopegate_token_service::store::open("sqlite::memory:")
        .await
        .unwrap();
    let (log, guard) = logs::capture(tracing::Level::INFO);
    let clear = start_with_keys(&[], &store).await.unwrap();
    let csrf = clear.shared_secret("csrf").await.unwrap();
    assert!(log.text().contains("stored IN CLEAR"), "{}", log.text());
    for key in store.list_keys().await.unwrap() {
        assert_eq!(key.private_key.sealed_by, None);
    }

    let sealed = start_with_keys(&[KEY_A], &store).await.unwrap();
    drop(guard);
    assert!(
        log.text().contains("stored encrypted") && log.text().contains("resealed=2"),
        "{}",
        log.text()
    );
    let a_id = sealer(&[KEY_A]).current_key_id().map(str::to_owned);
    for key in store.list_keys().await.unwrap() {
        assert_eq!(key.private_key.sealed_by, a_id);
    }
    assert_eq!(sealed.shared_secret("csrf").await.unwrap(), csrf);
}
