//! Persistence, by role: clients and APIs ([`ClientStore`]), users ([`UserStore`]), what a
//! sign-in grants — sessions, codes, refresh tokens ([`GrantStore`]) — access tokens and the JWT
//! revocation list ([`TokenStore`]), signing keys and shared secrets ([`KeyStore`]), and failed
//! sign-ins ([`ThrottleStore`]), identifiers used once ([`ReplayStore`]), the revocation events
//! APIs read ([`EventStore`]), claim scopes defined at run time ([`ScopeStore`]). Secrets and
//! tokens are kept as SHA-256 digests only (an opaque access token's after its issue time: see
//! [`TokenKey`]). SQLite is the embedded default; Postgres serves several instances; both run the same statements,
//! written once in the role modules, over twin migrations.

mod clients;
mod db;
mod direct;
mod events;
mod grants;
mod group_commit;
mod inline_reads;
mod keys;
mod mapping;
mod postgres;
mod replay;
mod scopes;
mod sql;
mod sqlite;
mod sqlite_writer;
mod throttle;
mod tokens;
mod users;

use std::sync::Arc;

use async_trait::async_trait;

pub use crate::opaque_token::TokenKey;
pub use clients::ClientStore;
pub use events::{EVENT_RETENTION_SECS, EventKind, EventRecord, EventStore};
pub use grants::GrantStore;
pub use keys::KeyStore;
pub use postgres::PoolSettings;
pub use replay::{ReplayStore, single_use_key};
pub use scopes::{ScopeStore, StoredScope};
pub use throttle::{AttemptCount, ThrottleStore};
pub use tokens::TokenStore;
pub use users::UserStore;

/// The store's traits, for callers of a `dyn Store` (a role's methods need its trait in
/// scope).
pub mod prelude {
    pub use super::{
        ClientStore, EventStore, GrantStore, KeyStore, ReplayStore, ScopeStore, Store,
        ThrottleStore, TokenStore, UserStore,
    };
}

/// A store that failed (I/O, a corrupt file, a lost connection).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Embedded migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A row holds a value this version cannot read.
    #[error("corrupt row in `{table}`: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A failure met by a concurrent read whose result this caller shared.
    #[error("store read failed: {0}")]
    Shared(String),
    /// A row with this key exists already.
    #[error("`{0}` exists already")]
    Duplicate(String),
}

/// An opaque access token, known by its key: its issue time and the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// What the store finds it by (see [`TokenKey`]).
    pub key: TokenKey,
    /// Token identifier (also in logs instead of the token).
    pub jti: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The subject (the client id for client credentials).
    pub subject: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Audiences.
    pub audience: Vec<String>,
    /// Seconds since the epoch.
    pub issued_at: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// Seconds since the epoch, once revoked.
    pub revoked_at: Option<u64>,
    /// The DPoP key thumbprint it is bound to (`cnf.jkt`), if any.
    pub jkt: Option<String>,
    /// The `act` claim (RFC 8693 §4.1) of a token issued by token exchange, as JSON.
    pub act: Option<String>,
}

#[cfg(test)]
impl TokenRecord {
    /// A token of client `svc` for the store's tests, known by `[byte; 32]` (`jti-{byte}`).
    pub(super) fn sample(byte: u8) -> Self {
        Self {
            key: TokenKey::from_digest([byte; 32]),
            jti: format!("jti-{byte}"),
            client_id: "svc".to_owned(),
            subject: "svc".to_owned(),
            scope: "a:b:read".to_owned(),
            audience: vec!["https://api.example.test".to_owned()],
            act: None,
            issued_at: 100,
            expires_at: 1000,
            revoked_at: None,
            jkt: None,
        }
    }
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the cookie value.
    pub digest: [u8; 32],
    /// Public session id (`sid` claim).
    pub sid: String,
    /// The user's `sub`.
    pub user_id: String,
    /// The user's login name.
    pub username: String,
    /// When the user signed in (seconds since the epoch).
    pub auth_time: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// Set once the session ended (logout).
    pub ended_at: Option<u64>,
}

/// An authorization code, known by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// SHA-256 of the code.
    pub digest: [u8; 32],
    /// The client it was issued to.
    pub client_id: String,
    /// The user's `sub`.
    pub user_id: String,
    /// The user's login name.
    pub username: String,
    /// The browser session it came from.
    pub sid: String,
    /// The redirect URI it was sent to.
    pub redirect_uri: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The `nonce` of the authorization request.
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// The DPoP key the authorization request bound the code to (RFC 9449 §10 `dpop_jkt`).
    pub dpop_jkt: Option<String>,
    /// When the user signed in.
    pub auth_time: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// Set by the one redemption.
    pub redeemed_at: Option<u64>,
}

/// A refresh token, known by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    /// The grant it descends from (the authorization code's grant id).
    pub family: String,
    /// The client it is bound to.
    pub client_id: String,
    /// The user's `sub`.
    pub user_id: String,
    /// The user's login name.
    pub username: String,
    /// The browser session it came from.
    pub sid: String,
    /// The scopes it may ask for, space-separated.
    pub scope: String,
    /// When the user signed in.
    pub auth_time: u64,
    /// Seconds since the epoch.
    pub issued_at: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// Set when it was exchanged for its successor.
    pub rotated_at: Option<u64>,
    /// Set when its family was revoked.
    pub revoked_at: Option<u64>,
    /// When its family started (the code's redemption): the family ends at the latest
    /// `refresh_token_absolute_ttl` after it, however often it is rotated.
    pub family_started_at: u64,
    /// The DPoP key thumbprint it is bound to (a public client's, RFC 9449 §5), if any.
    pub jkt: Option<String>,
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// This call redeemed it.
    Redeemed,
    /// It had been redeemed before (a replay, or a concurrent redemption that won).
    AlreadyRedeemed,
    /// No such code.
    Unknown,
}

/// What a revocation request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The token was the client's and is revoked now (or was already).
    Done,
    /// The token belongs to another client; nothing changed.
    OtherClient,
    /// No such token.
    Unknown,
}

/// Rows removed by a sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired opaque tokens.
    pub tokens: u64,
    /// Revocation records of expired JWTs.
    pub revoked_jwts: u64,
}

/// Persistence for the token service, by role; implemented once, in plain SQL, for SQLite and
/// Postgres alike ([`SqlStore`]).
#[async_trait]
pub trait Store:
    ClientStore
    + UserStore
    + GrantStore
    + TokenStore
    + KeyStore
    + ThrottleStore
    + ReplayStore
    + EventStore
    + ScopeStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Deletes rows that expired before `cutoff`.
    async fn sweep(&self, cutoff: u64) -> Result<Swept, StoreError>;
}

/// The store on SQLite or Postgres: statements go through one handle (`db.rs`); access-token
/// rows are group-committed.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: db::Db,
    /// Lookups by key on the caller's thread (a SQLite file).
    inline_reads: Option<Arc<inline_reads::InlineReads>>,
    tokens: group_commit::TokenWriter,
    spends: group_commit::SpendWriter,
    /// Woken after an event commits (see [`EventStore::event_commits`]).
    event_commits: Arc<tokio::sync::Notify>,
}

impl SqlStore {
    /// Says that events were committed, to whoever waits for them in this instance.
    fn events_committed(&self) {
        self.event_commits.notify_one();
    }

    /// Closes every connection (tests; a process that exits needs not).
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// The row a lookup by key finds, if any: on a SQLite file read on the caller's thread
    /// (see `inline_reads`), else through the pool.
    async fn lookup(&self, statement: db::Statement<'_>) -> Result<Option<db::Row>, sqlx::Error> {
        match &self.inline_reads {
            Some(reads) => reads.optional(statement).await,
            None => self.db.optional(statement).await,
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.execute(db::sql("SELECT 1")).await?;
        Ok(())
    }

    async fn sweep(&self, cutoff: u64) -> Result<Swept, StoreError> {
        let delete = |statement| self.db.execute(db::sql(statement).int(cutoff));
        let tokens = delete("DELETE FROM access_tokens WHERE expires_at < $1").await?;
        let revoked_jwts = delete("DELETE FROM revoked_jwts WHERE expires_at < $1").await?;
        for statement in [
            "DELETE FROM sessions WHERE expires_at < $1",
            "DELETE FROM login_failures WHERE window_ends < $1",
            "DELETE FROM grant_tokens WHERE expires_at < $1",
            "DELETE FROM spent_ids WHERE expires_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            // Redeemed codes are kept a day past expiry, so that a late replay is still
            // recognised as one.
            "DELETE FROM authorization_codes WHERE expires_at + 86400 < $1",
        ] {
            delete(statement).await?;
        }
        self.db
            .execute(
                db::sql("DELETE FROM security_events WHERE occurred_at < $1")
                    .int(cutoff.saturating_sub(EVENT_RETENTION_SECS)),
            )
            .await?;
        Ok(Swept {
            tokens,
            revoked_jwts,
        })
    }
}

/// Opens the store named by `storage` (`sqlite://path`, `sqlite::memory:`, or
/// `postgres://…`), creating and migrating it as needed.
///
/// # Errors
///
/// [`StoreError`] if it cannot be opened or migrated.
pub async fn open(storage: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(storage, PoolSettings::default()).await
}

/// [`open`] with pool settings for Postgres (SQLite ignores them).
///
/// # Errors
///
/// [`StoreError`] if it cannot be opened or migrated.
pub async fn open_with(storage: &str, pool: PoolSettings) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres(storage) {
        Ok(Arc::new(SqlStore::postgres(storage, pool).await?))
    } else {
        Ok(Arc::new(SqlStore::sqlite(storage).await?))
    }
}

/// Whether `storage` names a Postgres database.
#[must_use]
pub fn is_postgres(storage: &str) -> bool {
    storage.starts_with("postgres://") || storage.starts_with("postgresql://")
}
