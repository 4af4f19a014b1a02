//! The Postgres store, for several instances sharing one database. The statements are the
//! SQLite store's (`sql.rs`); every one-time rule is a single conditional statement that the
//! database decides, so it holds across instances.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use super::sql::{
    REVOKED_MARK, bind_token, digest_of, duplicate_or, insert_tokens_sql, json_list, parse_list,
    sql_store, to_i64, to_u64,
};
use super::{
    ApiRecord, ClientRecord, CodeRecord, Redemption, RefreshRecord, Revoked, SessionRecord, Store,
    StoreError, Swept, TokenRecord, UserRecord,
};
use crate::keys::StoredKey;

/// Postgres behind a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

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
            // Connections broken by a database restart are found and replaced on next use.
            .test_before_acquire(true)
            .idle_timeout(Some(Duration::from_secs(600)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Records one access token: each in its own statement (Postgres commits concurrent
    /// transactions together itself).
    async fn write_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        static INSERT_ONE: LazyLock<String> = LazyLock::new(|| insert_tokens_sql(1));
        bind_token!(sqlx::query(&INSERT_ONE), token)
            .execute(&self.pool)
            .await
            .map_err(|error| duplicate_or(error, &token.jti))?;
        Ok(())
    }

    /// Closes every connection (tests; a process that exits needs not).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

sql_store!(PostgresStore, sqlx::postgres::PgRow);
