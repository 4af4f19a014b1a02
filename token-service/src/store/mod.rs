//! Persistence behind one trait: clients, API registrations, users, sessions, codes, refresh
//! tokens, opaque access tokens (as SHA-256 digests only), revoked JWTs, signing keys. SQLite is
//! the embedded default; Postgres serves several instances. Both run the same statements
//! (`sql.rs`) over twin migrations.

mod group_commit;
mod mapping;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use postgres::{PoolSettings, PostgresStore};
pub use sqlite::SqliteStore;

use crate::config::{Api, Client};
use crate::keys::StoredKey;

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

/// A stored client's columns (the trait speaks [`Client`]; see `mapping`).
#[derive(Debug, Clone)]
pub(in crate::store) struct ClientRecord {
    /// `client_id`.
    pub(in crate::store) id: String,
    /// Argon2id PHC string; `None` for a public client.
    pub(in crate::store) secret_hash: Option<String>,
    /// Grant type names.
    pub(in crate::store) grants: Vec<String>,
    /// Allowed scopes (space-separated).
    pub(in crate::store) scopes: String,
    /// `jwt` or `opaque`.
    pub(in crate::store) token_format: String,
    /// Access token lifetime in seconds, `None` for the default.
    pub(in crate::store) access_token_ttl: Option<u64>,
    /// Allowed audiences.
    pub(in crate::store) audience: Vec<String>,
    /// Redirect URIs.
    pub(in crate::store) redirect_uris: Vec<String>,
    /// Where `/logout` may send the browser afterwards.
    pub(in crate::store) post_logout_redirect_uris: Vec<String>,
    /// Claims a user must supply before the client gets a code.
    pub(in crate::store) required_claims: Vec<String>,
    /// Whether people may create an account on the client's sign-in page.
    pub(in crate::store) self_signup: bool,
    /// Seconds since the epoch.
    pub(in crate::store) created_at: u64,
}

/// A stored API's columns (the trait speaks [`Api`]; see `mapping`).
#[derive(Debug, Clone)]
pub(in crate::store) struct ApiRecord {
    /// Its identifier (the audience of tokens meant for it).
    pub(in crate::store) id: String,
    /// Argon2id PHC string of its introspection secret.
    pub(in crate::store) secret_hash: String,
    /// The scopes that belong to it (space-separated; `prefix:name` for every permission).
    pub(in crate::store) scopes: String,
    /// Seconds since the epoch.
    pub(in crate::store) created_at: u64,
}

/// A user kept in the store (added with `token-service user add`).
#[derive(Clone)]
pub struct UserRecord {
    /// Stable identifier, the `sub` of the user's tokens.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Standard and custom claims (a JSON object).
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// Seconds since the epoch.
    pub updated_at: u64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// An opaque access token, known by the SHA-256 digest of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the token.
    pub digest: [u8; 32],
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

/// Persistence for the token service.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Adds a client (its `registered_at` is when).
    async fn insert_client(&self, client: &Client) -> Result<(), StoreError>;
    /// A client by id.
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError>;
    /// Every stored client.
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// Deletes a stored client and revokes its refresh and opaque access tokens, in one
    /// transaction; `false` if there is none.
    async fn delete_client(&self, id: &str, now: u64) -> Result<bool, StoreError>;

    /// Registers an API (its `registered_at` is when).
    async fn insert_api(&self, api: &Api) -> Result<(), StoreError>;
    /// An API by id.
    async fn find_api(&self, id: &str) -> Result<Option<Api>, StoreError>;
    /// Every stored API.
    async fn list_apis(&self) -> Result<Vec<Api>, StoreError>;
    /// Deletes a stored API; `false` if there is none.
    async fn delete_api(&self, id: &str) -> Result<bool, StoreError>;

    /// Adds a user.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// A user by login name.
    async fn find_user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Whether a stored user has this name, ignoring ASCII case (a new name must not differ
    /// from an existing one by case alone).
    async fn username_taken(&self, username: &str) -> Result<bool, StoreError>;
    /// A user by `sub`.
    async fn find_user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every stored user, by login name.
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces a user's password hash; `false` if there is no such user.
    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Merges `changes` into a stored user's attributes (a null value removes one), without
    /// losing a change made concurrently; the attributes after, or `None` if there is no such
    /// user.
    async fn merge_user_attributes(
        &self,
        username: &str,
        changes: &serde_json::Map<String, serde_json::Value>,
        now: u64,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, StoreError>;
    /// Deletes a stored user, ends their sessions and revokes their refresh and opaque access
    /// tokens, in one transaction; `false` if there is no such user.
    async fn delete_user(&self, username: &str, now: u64) -> Result<bool, StoreError>;

    /// Starts a browser session.
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// A session by cookie digest (ended and expired ones included).
    async fn find_session(&self, digest: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    /// Ends a session.
    async fn end_session(&self, sid: &str, now: u64) -> Result<(), StoreError>;

    /// The digests of every code issued in a session.
    async fn session_codes(&self, sid: &str) -> Result<Vec<[u8; 32]>, StoreError>;
    /// The refresh token families started in a session.
    async fn session_families(&self, sid: &str) -> Result<Vec<String>, StoreError>;
    /// The ids of a user's sessions that have not ended (expired ones included).
    async fn user_sessions(&self, user_id: &str) -> Result<Vec<String>, StoreError>;
    /// A user's refresh token families with an unrevoked token, each with the session it
    /// started in: `(family, sid)`.
    async fn user_families(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Records an authorization code.
    async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError>;
    /// A code by digest (redeemed and expired ones included).
    async fn find_code(&self, digest: &[u8; 32]) -> Result<Option<CodeRecord>, StoreError>;
    /// Marks a code redeemed, atomically: of concurrent callers exactly one sees `Redeemed`.
    async fn redeem_code(&self, digest: &[u8; 32], now: u64) -> Result<Redemption, StoreError>;

    /// Records a refresh token.
    async fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError>;
    /// A refresh token by digest (rotated, revoked and expired ones included).
    async fn find_refresh(&self, digest: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError>;
    /// Marks a refresh token rotated, atomically: `false` if it was rotated or revoked already.
    async fn rotate_refresh(&self, digest: &[u8; 32], now: u64) -> Result<bool, StoreError>;

    /// Records that `grant_id` produced the access token `jti`; `true` if the grant has been
    /// revoked meanwhile (a concurrent replay), in which case the caller revokes again.
    async fn record_grant_token(
        &self,
        grant_id: &str,
        jti: &str,
        client_id: &str,
        expires_at: u64,
    ) -> Result<bool, StoreError>;
    /// Revokes every access and refresh token `grant_id` produced, and marks the grant revoked
    /// so that tokens recorded later learn of it; returns how many access tokens were revoked.
    async fn revoke_grant(&self, grant_id: &str, now: u64) -> Result<u64, StoreError>;

    /// A random 32-byte secret shared by every instance, created on first use.
    async fn server_secret(&self, name: &str, now: u64) -> Result<Vec<u8>, StoreError>;

    /// Records an opaque access token.
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// An opaque access token by digest (expired and revoked ones included).
    async fn find_token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes an opaque token on behalf of `client_id`.
    async fn revoke_token(
        &self,
        digest: &[u8; 32],
        client_id: &str,
        now: u64,
    ) -> Result<Revoked, StoreError>;

    /// Records that the JWT `jti` (issued to `client_id`, valid until `expires_at`) is revoked.
    async fn revoke_jwt(
        &self,
        jti: &str,
        client_id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError>;
    /// Whether the JWT `jti` was revoked.
    async fn is_jwt_revoked(&self, jti: &str) -> Result<bool, StoreError>;

    /// Adds a signing key.
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Every signing key.
    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Failed sign-ins counted under `key` (a digest of a username or address) in its open
    /// window; 0 when the window has closed.
    async fn login_failures(&self, key: &[u8; 32], now: u64) -> Result<u64, StoreError>;
    /// Counts one failed sign-in under `key`; a window of `window` seconds opens with the first.
    async fn record_login_failure(
        &self,
        key: &[u8; 32],
        now: u64,
        window: u64,
    ) -> Result<(), StoreError>;

    /// Deletes rows that expired before `cutoff`.
    async fn sweep(&self, cutoff: u64) -> Result<Swept, StoreError>;
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
        Ok(Arc::new(PostgresStore::open(storage, pool).await?))
    } else {
        Ok(Arc::new(SqliteStore::open(storage).await?))
    }
}

/// Whether `storage` names a Postgres database.
#[must_use]
pub fn is_postgres(storage: &str) -> bool {
    storage.starts_with("postgres://") || storage.starts_with("postgresql://")
}
