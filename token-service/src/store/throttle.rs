//! Failed sign-ins, counted in the store so that every instance's failures add up to one limit.

use async_trait::async_trait;

use super::db::sql;
use super::{SqlStore, StoreError};

/// Failed sign-ins under digest keys (of a username or an address).
#[async_trait]
pub trait ThrottleStore {
    /// Failed sign-ins counted under `key` in its open window; 0 when the window has closed.
    async fn login_failures(&self, key: &[u8; 32], now: u64) -> Result<u64, StoreError>;
    /// Counts one failed sign-in under `key`; a window of `window` seconds opens with the first.
    async fn record_login_failure(
        &self,
        key: &[u8; 32],
        now: u64,
        window: u64,
    ) -> Result<(), StoreError>;
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn login_failures(&self, key: &[u8; 32], now: u64) -> Result<u64, StoreError> {
        let statement =
            sql("SELECT failures FROM login_failures WHERE key = $1 AND window_ends > $2")
                .bytes(key)
                .int(now);
        Ok(match self.db.optional(statement).await? {
            Some(row) => row.int("failures")?,
            None => 0,
        })
    }

    async fn record_login_failure(
        &self,
        key: &[u8; 32],
        now: u64,
        window: u64,
    ) -> Result<(), StoreError> {
        // One statement: failures counted at every instance add up.
        let statement = sql(
            "INSERT INTO login_failures (key, failures, window_ends) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN login_failures.window_ends <= $3 THEN 1 \
                        ELSE login_failures.failures + 1 END, \
             window_ends = CASE WHEN login_failures.window_ends <= $3 THEN $2 \
                           ELSE login_failures.window_ends END",
        )
        .bytes(key)
        .int(now.saturating_add(window))
        .int(now);
        self.db.execute(statement).await?;
        Ok(())
    }
}
