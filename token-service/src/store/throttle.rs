//! Attempts (sign-ins, password changes, sign-ups), counted in the store so that every
//! instance's attempts add up to one limit.

use async_trait::async_trait;

use super::db::sql;
use super::{SqlStore, StoreError};

/// An attempt counter under a digest key (of a username, an address, or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptCount {
    /// Attempts counted in the open window, this one included.
    pub attempts: u64,
    /// When the window closes (seconds since the epoch); counting then starts again.
    pub window_ends: u64,
}

/// Attempts under digest keys.
#[async_trait]
pub trait ThrottleStore {
    /// Counts one attempt under `key` and returns the count with it, in one statement (so
    /// that concurrent attempts, at one instance or many, each see a different count); a
    /// window of `window` seconds opens with the first attempt.
    async fn count_attempt(
        &self,
        key: &[u8; 32],
        now: u64,
        window: u64,
    ) -> Result<AttemptCount, StoreError>;
    /// Takes back one attempt counted under `key` in its open window (it succeeded).
    async fn uncount_attempt(&self, key: &[u8; 32], now: u64) -> Result<(), StoreError>;
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn count_attempt(
        &self,
        key: &[u8; 32],
        now: u64,
        window: u64,
    ) -> Result<AttemptCount, StoreError> {
        let statement = sql(
            "INSERT INTO login_failures (key, failures, window_ends) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN login_failures.window_ends <= $3 THEN 1 \
                        ELSE login_failures.failures + 1 END, \
             window_ends = CASE WHEN login_failures.window_ends <= $3 THEN $2 \
                           ELSE login_failures.window_ends END \
             RETURNING failures, window_ends",
        )
        .bytes(key)
        .int(now.saturating_add(window))
        .int(now);
        let row = self
            .db
            .optional(statement)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table: "login_failures",
                reason: "counting an attempt returned no row".to_owned(),
            })?;
        Ok(AttemptCount {
            attempts: row.int("failures")?,
            window_ends: row.int("window_ends")?,
        })
    }

    async fn uncount_attempt(&self, key: &[u8; 32], now: u64) -> Result<(), StoreError> {
        let statement = sql("UPDATE login_failures SET failures = failures - 1 \
             WHERE key = $1 AND window_ends > $2 AND failures > 0")
        .bytes(key)
        .int(now);
        self.db.execute(statement).await?;
        Ok(())
    }
}
