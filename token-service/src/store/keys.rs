//! Signing keys and the secrets every instance shares (created by whichever asks first).

use async_trait::async_trait;

use super::db::sql;
use super::sql::duplicate_or;
use super::{SqlStore, StoreError};
use crate::keys::StoredKey;

/// Signing keys and shared secrets.
#[async_trait]
pub trait KeyStore {
    /// Adds a signing key; [`StoreError::Duplicate`] if another instance added the successor
    /// of the same key first.
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Every signing key, in activation order.
    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// A random 32-byte secret shared by every instance, created on first use.
    async fn server_secret(&self, name: &str, now: u64) -> Result<Vec<u8>, StoreError>;
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let statement = sql(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at, activates_at, \
             succeeds) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .text(&key.kid)
        .text(&key.algorithm)
        .bytes(&key.private_pkcs8)
        .int(key.created_at)
        .int(key.activates_at)
        .optional_text(key.succeeds.as_deref());
        self.db
            .execute(statement)
            .await
            .map_err(|error| duplicate_or(error, &key.kid))?;
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.db
            .all(sql(
                "SELECT * FROM signing_keys ORDER BY activates_at, created_at, kid",
            ))
            .await?
            .iter()
            .map(|row| {
                Ok(StoredKey {
                    kid: row.text("kid")?,
                    algorithm: row.text("algorithm")?,
                    private_pkcs8: row.bytes("private_key")?,
                    created_at: row.int("created_at")?,
                    activates_at: row.int("activates_at")?,
                    succeeds: row.optional_text("succeeds")?,
                })
            })
            .collect()
    }

    async fn server_secret(&self, name: &str, now: u64) -> Result<Vec<u8>, StoreError> {
        let candidate = crate::secret::random_bytes();
        // Whoever inserts first wins; everyone reads the winner.
        let offer = sql(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .text(name)
        .bytes(&candidate)
        .int(now);
        self.db.execute(offer).await?;
        let winner = self
            .db
            .optional(sql("SELECT value FROM server_secrets WHERE name = $1").text(name))
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok(winner.bytes("value")?)
    }
}
