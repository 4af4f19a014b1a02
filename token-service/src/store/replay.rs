//! Identifiers that may be used once — DPoP proof `jti`s (RFC 9449 §11.1) and client assertion
//! `jti`s (RFC 7523 §3) — spent in the store, so that every instance on it refuses a second
//! use.

use async_trait::async_trait;

use super::db::sql;
use super::{SqlStore, StoreError};

/// Single-use identifiers, under digest keys.
#[async_trait]
pub trait ReplayStore {
    /// Spends `key` until `expires_at`: `true` if this call spent it, `false` if it was spent
    /// already (here or at another instance). One statement: of concurrent callers exactly one
    /// sees `true`.
    async fn spend_once(&self, key: &[u8; 32], expires_at: u64) -> Result<bool, StoreError>;
}

#[async_trait]
impl ReplayStore for SqlStore {
    async fn spend_once(&self, key: &[u8; 32], expires_at: u64) -> Result<bool, StoreError> {
        let statement = sql(
            "INSERT INTO spent_ids (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bytes(key)
        .int(expires_at);
        Ok(self.db.execute(statement).await? == 1)
    }
}
