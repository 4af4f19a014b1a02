//! Opening the store on Postgres, for several instances sharing one database. The statements
//! are SQLite's (the role modules); every one-time rule is a single conditional statement that
//! the database decides, so it holds across instances.

use std::str::FromStr;
use std::time::Duration;

use std::sync::{Arc, Weak};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

use super::db::Db;
use super::events::EVENT_CHANNEL;
use super::group_commit::{SpendWriter, TokenWriter};
use super::sql::refuse_usernames_differing_by_case;
use super::{SqlStore, StoreError};

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

impl SqlStore {
    /// Connects to `url` (`postgres://user@host:port/database`) and applies the embedded
    /// migrations (serialised across instances by Postgres' advisory lock).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the database cannot be reached or migrations fail.
    pub async fn postgres(url: &str, settings: PoolSettings) -> Result<Self, StoreError> {
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
        refuse_usernames_differing_by_case(&Db::Postgres(pool.clone())).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let tokens = TokenWriter::start(Db::Postgres(pool.clone()), TOKEN_WRITERS, None);
        let spends = SpendWriter::start(Db::Postgres(pool.clone()), TOKEN_WRITERS);
        let event_commits = Arc::new(Notify::new());
        listen_for_events(pool.clone(), Arc::downgrade(&event_commits));
        Ok(Self {
            db: Db::Postgres(pool),
            inline_reads: None,
            tokens,
            spends,
            event_commits,
        })
    }
}

/// How often the listener checks whether its store is gone (its connection is then closed).
const LISTENER_CHECK: Duration = Duration::from_secs(5);

/// Wakes `event_commits` whenever any instance commits an event (`NOTIFY`, sent by
/// `events::record`), and after the listening connection was lost and made again, since
/// announcements made meanwhile were missed. Ends once the store is dropped.
fn listen_for_events(pool: PgPool, event_commits: Weak<Notify>) {
    tokio::spawn(async move {
        let mut listener = None;
        loop {
            let Some(wake) = event_commits.upgrade() else {
                return;
            };
            let Some(connected) = listener.as_mut() else {
                match PgListener::connect_with(&pool).await {
                    Ok(mut fresh) => match fresh.listen(EVENT_CHANNEL).await {
                        Ok(()) => {
                            listener = Some(fresh);
                            wake.notify_one();
                        }
                        Err(error) => tracing::warn!(%error, "could not listen for events"),
                    },
                    Err(error) => tracing::warn!(%error, "could not connect to listen for events"),
                }
                if listener.is_none() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            };
            drop(wake);
            match tokio::time::timeout(LISTENER_CHECK, connected.try_recv()).await {
                Err(_elapsed) => {}
                // An announcement, or (`None`) the connection was lost: `try_recv` reconnects on
                // its next call, and whatever was announced meanwhile is looked for now.
                Ok(Ok(_)) => {
                    if let Some(wake) = event_commits.upgrade() {
                        wake.notify_one();
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "listening for events failed; reconnecting");
                    listener = None;
                }
            }
        }
    });
}
