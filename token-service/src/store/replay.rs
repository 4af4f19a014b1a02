//! Identifiers that may be used once — DPoP proof `jti`s (RFC 9449 §11.1) and client assertion
//! `jti`s (RFC 7523 §3) — spent in the store, so that every instance on it refuses a second
//! use.

use async_trait::async_trait;
use aws_lc_rs::digest;

use super::db::{Db, Row, Statement, sql};
use super::group_commit::{self, SpendSink};
use super::sql::{Placeholders, digest_of};
use super::sqlite_writer::SqliteWriter;
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
        // Spent in groups (see `group_commit`): one commit for every id waiting.
        self.spends.spend_once(key, expires_at).await
    }
}

/// The statement spending the ids of `rows` (key, expiry) not spent already.
fn spend<'a>(placeholders: Placeholders, rows: &[(&'a [u8; 32], u64)]) -> Statement<'a> {
    let mut statement = sql(group_commit::spend_statement(placeholders, rows.len()));
    for (key, expires_at) in rows {
        statement = statement.bytes(*key).int(*expires_at);
    }
    statement
}

/// The keys the statement of [`spend`] returned: those it inserted.
fn spent(rows: &[Row]) -> Result<Vec<[u8; 32]>, sqlx::Error> {
    rows.iter()
        .map(|row| {
            digest_of("spent_ids", &row.bytes("key")?)
                .map_err(|error| sqlx::Error::Protocol(error.to_string()))
        })
        .collect()
}

impl SpendSink for Db {
    async fn spend(&self, rows: &[(&[u8; 32], u64)]) -> Result<Vec<[u8; 32]>, sqlx::Error> {
        spent(&self.all(spend(self.placeholders(), rows)).await?)
    }
}

impl SpendSink for SqliteWriter {
    async fn spend(&self, rows: &[(&[u8; 32], u64)]) -> Result<Vec<[u8; 32]>, sqlx::Error> {
        spent(&self.all(spend(Placeholders::Anonymous, rows)).await?)
    }
}

/// The key under which `id`, used once by `owner` for `kind`, is spent: SHA-256 over the
/// three, each ended by a NUL (so that no two triples share a key), and per owner, so that one
/// party cannot spend another's ids.
#[must_use]
pub fn single_use_key(kind: &str, owner: &str, id: &str) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in [kind, owner, id] {
        context.update(part.as_bytes());
        context.update(&[0]);
    }
    let mut key = [0; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::single_use_key;

    #[test]
    fn keys_separate_kinds_owners_and_ids() {
        assert_ne!(
            single_use_key("k", "a", "bc"),
            single_use_key("k", "ab", "c")
        );
        assert_ne!(
            single_use_key("k", "o1", "j"),
            single_use_key("k", "o2", "j")
        );
        assert_ne!(
            single_use_key("k1", "o", "j"),
            single_use_key("k2", "o", "j")
        );
        assert_eq!(single_use_key("k", "o", "j"), single_use_key("k", "o", "j"));
    }
}
