//! The Postgres store, for several instances sharing one database. The statements are the
//! SQLite store's (`sql.rs`); every one-time rule is a single conditional statement that the
//! database decides, so it holds across instances.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Row};

use super::group_commit::{self, TokenSink, TokenWriter};
use super::sql::{
    REVOKED_MARK, USERNAMES_DIFFERING_BY_CASE, bind_token, digest_of, duplicate_or, json_list,
    parse_list, sql_store, to_i64, to_u64, usernames_differing_by_case,
};
use super::{
    ApiRecord, ClientRecord, CodeRecord, Redemption, RefreshRecord, Revoked, SessionRecord, Store,
    StoreError, Swept, TokenRecord, UserRecord,
};
use crate::config::{Api, Client};
use crate::keys::StoredKey;

/// Postgres behind a connection pool; access-token rows are group-committed.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    tokens: TokenWriter,
}

/// A pooled connection idle this long is pinged before it is used.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Batches of access-token rows in flight at once: a commit waits for the WAL flush, and the
/// next batch need not wait for it.
const TOKEN_WRITERS: usize = 4;

/// Pool settings for a Postgres store.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most connections one instance holds.
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`) and applies the embedded
    /// migrations (serialised across instances by Postgres' advisory lock).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the database cannot be reached or migrations fail.
    pub async fn open(url: &str, settings: PoolSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("scopegate-token-service");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(1)
            // A request that cannot get a connection soon is answered 503 rather than left
            // waiting: a database restart shows as short unavailability, not a pile-up.
            .acquire_timeout(settings.acquire_timeout)
            // Connections broken by a database restart are found and replaced: one idle for a
            // while is pinged before use. A busy one is not (a ping per query would double
            // the round trips); if the database went away under it, its query fails (503) and
            // the connection is closed.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for < PING_WHEN_IDLE_FOR {
                        return Ok(true);
                    }
                    Ok(connection.ping().await.is_ok())
                })
            })
            .idle_timeout(Some(Duration::from_secs(600)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .connect_with(options)
            .await?;
        let has_users: bool = sqlx::query_scalar("SELECT to_regclass('users') IS NOT NULL")
            .fetch_one(&pool)
            .await?;
        if has_users {
            let pairs: Vec<(String, String)> = sqlx::query_as(USERNAMES_DIFFERING_BY_CASE)
                .fetch_all(&pool)
                .await?;
            usernames_differing_by_case(&pairs)?;
        }
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let tokens = TokenWriter::start(pool.clone(), TOKEN_WRITERS, None);
        Ok(Self { pool, tokens })
    }

    /// Closes every connection (tests; a process that exits needs not).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

sql_store!(PostgresStore, PgPool, sqlx::postgres::PgRow);
