//! Signing keys and the secrets every instance shares (created by whichever asks first). Both
//! are stored as [`Sealed`]: the store never sees them in clear unless the operator gave no
//! encryption key.

use async_trait::async_trait;

use super::db::{Row, sql};
use super::sql::duplicate_or;
use super::{SqlStore, StoreError};
use crate::keys::StoredKey;
use crate::sealing::Sealed;

/// Signing keys and shared secrets.
#[async_trait]
pub trait KeyStore {
    /// Adds a signing key; [`StoreError::Duplicate`] if another instance added the successor
    /// of the same key first.
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Every signing key, in activation order.
    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// The secret `name` shared by every instance: `offer` becomes it unless another instance
    /// stored one first; either way, the stored one is returned.
    async fn server_secret(
        &self,
        name: &str,
        offer: &Sealed,
        now: u64,
    ) -> Result<Sealed, StoreError>;
    /// Replaces key `kid`'s private key with `to` if it is still sealed by `from` (so that of
    /// instances re-encrypting at once, one writes). `false`: another instance did.
    async fn reseal_key(
        &self,
        kid: &str,
        from: Option<&str>,
        to: &Sealed,
    ) -> Result<bool, StoreError>;
    /// As [`KeyStore::reseal_key`], for the shared secret `name`.
    async fn reseal_server_secret(
        &self,
        name: &str,
        from: Option<&str>,
        to: &Sealed,
    ) -> Result<bool, StoreError>;
    /// Every shared secret, by name.
    async fn server_secrets(&self) -> Result<Vec<(String, Sealed)>, StoreError>;
}

fn sealed(row: &Row, column: &str) -> Result<Sealed, sqlx::Error> {
    Ok(Sealed {
        sealed_by: row.optional_text("sealed_by")?,
        bytes: row.bytes(column)?,
    })
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let statement = sql(
            "INSERT INTO signing_keys (kid, algorithm, private_key, sealed_by, created_at, \
             activates_at, succeeds) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .text(&key.kid)
        .text(&key.algorithm)
        .bytes(&key.private_key.bytes)
        .optional_text(key.private_key.sealed_by.as_deref())
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
                    private_key: sealed(row, "private_key")?,
                    created_at: row.int("created_at")?,
                    activates_at: row.int("activates_at")?,
                    succeeds: row.optional_text("succeeds")?,
                })
            })
            .collect()
    }

    async fn server_secret(
        &self,
        name: &str,
        offer: &Sealed,
        now: u64,
    ) -> Result<Sealed, StoreError> {
        // Whoever inserts first wins; everyone reads the winner.
        let statement = sql(
            "INSERT INTO server_secrets (name, value, sealed_by, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .text(name)
        .bytes(&offer.bytes)
        .optional_text(offer.sealed_by.as_deref())
        .int(now);
        self.db.execute(statement).await?;
        let winner = self
            .db
            .optional(sql("SELECT value, sealed_by FROM server_secrets WHERE name = $1").text(name))
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok(sealed(&winner, "value")?)
    }

    async fn reseal_key(
        &self,
        kid: &str,
        from: Option<&str>,
        to: &Sealed,
    ) -> Result<bool, StoreError> {
        let statement = "UPDATE signing_keys SET private_key = $1, sealed_by = $2 \
                         WHERE kid = $3 AND COALESCE(sealed_by, '') = $4";
        self.reseal(statement, kid, from, to).await
    }

    async fn reseal_server_secret(
        &self,
        name: &str,
        from: Option<&str>,
        to: &Sealed,
    ) -> Result<bool, StoreError> {
        let statement = "UPDATE server_secrets SET value = $1, sealed_by = $2 \
                         WHERE name = $3 AND COALESCE(sealed_by, '') = $4";
        self.reseal(statement, name, from, to).await
    }

    async fn server_secrets(&self) -> Result<Vec<(String, Sealed)>, StoreError> {
        self.db
            .all(sql(
                "SELECT name, value, sealed_by FROM server_secrets ORDER BY name",
            ))
            .await?
            .iter()
            .map(|row| Ok((row.text("name")?, sealed(row, "value")?)))
            .collect()
    }
}

impl SqlStore {
    /// Runs a compare-and-set `statement` of the shape `SET <secret> = $1, sealed_by = $2 WHERE
    /// <id> = $3 AND COALESCE(sealed_by, '') = $4`: `COALESCE` makes one comparison that holds
    /// NULL (in clear) alike on both backends.
    async fn reseal(
        &self,
        statement: &'static str,
        id: &str,
        from: Option<&str>,
        to: &Sealed,
    ) -> Result<bool, StoreError> {
        let statement = sql(statement)
            .bytes(&to.bytes)
            .optional_text(to.sealed_by.as_deref())
            .text(id)
            .text(from.unwrap_or_default());
        Ok(self.db.execute(statement).await? == 1)
    }
}
