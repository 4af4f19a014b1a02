//! The connection a SQLite file's group commits (`group_commit`) are written through, on the
//! runtime's own thread. Through sqlx, each batch's statement was handed to the connection's
//! worker thread and its result handed back (after a pool checkout, itself a round trip for
//! its ping): thread switches that were most of an opaque issuance's store time
//! (BENCHMARKS.md, issue 22 item 3). Here a batch is one statement that appends to the WAL
//! without syncing it (`synchronous = NORMAL`), a few microseconds a row. What could make a
//! thread wait never runs on the runtime: a batch finding SQLite's write lock taken by another
//! connection, or the connection taken by a checkpoint (which syncs the file), waits for it on
//! a blocking thread instead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ToSql};

use super::db::{Observation, Row, SQLITE, Statement, sql};
use super::direct;
use super::group_commit::MAX_BATCH;

/// How long a batch waits (off the runtime) for another connection's write to end, as the
/// pooled connections do.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The group commits' statements stay prepared: one per batch size for each of the two
/// writers, and the checkpoint's.
const PREPARED_STATEMENTS: usize = 2 * (MAX_BATCH + 1) + 8;

/// The writer's connection (a handle: clones share it).
#[derive(Clone)]
pub(super) struct SqliteWriter {
    file: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SqliteWriter")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// What a statement is run for.
type Work<T> = fn(&Connection, &str, &[&dyn ToSql]) -> rusqlite::Result<T>;

impl SqliteWriter {
    /// Opens the database `file` (created and migrated already, in WAL mode) for writing.
    /// SQLite's automatic checkpoints are off: they would run inside a commit, on the
    /// runtime's thread; `group_commit` checkpoints in the background instead.
    pub(super) fn open(file: &Path) -> Result<Self, sqlx::Error> {
        let open = || -> rusqlite::Result<Connection> {
            let connection = Connection::open_with_flags(
                file,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            connection.busy_timeout(Duration::ZERO)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            connection.pragma_update(None, "foreign_keys", true)?;
            connection.pragma_update(None, "wal_autocheckpoint", 0)?;
            connection.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
            Ok(connection)
        };
        Ok(Self {
            file: file.to_path_buf(),
            connection: Arc::new(Mutex::new(open().map_err(direct::to_sqlx)?)),
        })
    }

    /// Runs a statement; the number of rows it changed.
    pub(super) async fn execute(&self, statement: Statement<'_>) -> Result<u64, sqlx::Error> {
        self.run(statement, |connection, sql, parameters| {
            direct::execute(connection, sql, parameters).map(|changed| changed as u64)
        })
        .await
    }

    /// Every row of a statement (one that writes and returns rows, `RETURNING`).
    pub(super) async fn all(&self, statement: Statement<'_>) -> Result<Vec<Row>, sqlx::Error> {
        self.run(statement, |connection, sql, parameters| {
            direct::query(connection, sql, parameters)
        })
        .await
    }

    /// Copies the WAL's frames into the database between two batches (PASSIVE: it waits for
    /// no reader), on a blocking thread: it syncs the file.
    pub(super) async fn checkpoint(&self) -> Result<(), sqlx::Error> {
        let statement = sql("PRAGMA wal_checkpoint(PASSIVE)");
        let observation = Observation::start(SQLITE, statement.sql());
        let checkpointed = self
            .elsewhere(&statement, |connection, sql, _| {
                connection.query_row(sql, [], |_| Ok(()))
            })
            .await;
        observation.finish(checkpointed.as_ref().err());
        checkpointed
    }

    async fn run<T: Send + 'static>(
        &self,
        statement: Statement<'_>,
        work: Work<T>,
    ) -> Result<T, sqlx::Error> {
        let observation = Observation::start(SQLITE, statement.sql());
        let done = match observation.in_scope(|| self.here(&statement, work)) {
            Some(done) => done.map_err(direct::to_sqlx),
            None => self.elsewhere(&statement, work).await,
        };
        observation.finish(done.as_ref().err());
        done
    }

    /// `None`: the connection is in use, or SQLite's write lock is held elsewhere (nothing
    /// was done).
    fn here<T>(&self, statement: &Statement<'_>, work: Work<T>) -> Option<rusqlite::Result<T>> {
        let connection = match self.connection.try_lock() {
            Ok(connection) => connection,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let parameters: Vec<&dyn ToSql> = statement
            .arguments()
            .iter()
            .map(|argument| argument as &dyn ToSql)
            .collect();
        match work(&connection, statement.sql(), &parameters) {
            Err(error) if direct::is_busy(&error) => None,
            done => Some(done),
        }
    }

    /// Runs `work` on a blocking thread, where waiting for the connection and for SQLite's
    /// write lock stops no other task.
    async fn elsewhere<T: Send + 'static>(
        &self,
        statement: &Statement<'_>,
        work: Work<T>,
    ) -> Result<T, sqlx::Error> {
        let connection = Arc::clone(&self.connection);
        let sql = statement.sql().to_owned();
        let values = direct::owned(statement.arguments());
        tokio::task::spawn_blocking(move || {
            let connection = lock(&connection);
            let parameters: Vec<&dyn ToSql> =
                values.iter().map(|value| value as &dyn ToSql).collect();
            connection.busy_timeout(BUSY_TIMEOUT)?;
            let done = work(&connection, &sql, &parameters);
            connection.busy_timeout(Duration::ZERO)?;
            done
        })
        .await
        .map_err(|_| sqlx::Error::WorkerCrashed)?
        .map_err(direct::to_sqlx)
    }
}

/// A panic while the lock was held left the connection as SQLite keeps it: every statement
/// either completed or was undone.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::super::prelude::*;
    use super::super::{SqlStore, TokenKey, TokenRecord};
    use super::*;

    // One runtime thread: a batch waiting for the lock on it would stop every other task.
    #[tokio::test]
    async fn a_batch_meeting_another_connections_write_waits_off_the_runtime_then_commits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        let store = SqlStore::sqlite(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        store.insert_token(TokenRecord::sample(1)).await.unwrap();
        let holder = Connection::open(&file).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let insert = tokio::spawn({
            let store = store.clone();
            async move { store.insert_token(TokenRecord::sample(2)).await }
        });
        let spend = tokio::spawn({
            let store = store.clone();
            async move { store.spend_once(&[9; 32], 1000).await }
        });
        // The runtime's thread goes on while the batches wait.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!insert.is_finished(), "done while another connection wrote");
        assert!(!spend.is_finished(), "done while another connection wrote");
        holder.execute_batch("COMMIT").unwrap();
        insert.await.unwrap().unwrap();
        assert!(spend.await.unwrap().unwrap());
        assert!(
            store
                .find_token(&TokenKey::from_digest([2; 32]))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn after_waiting_elsewhere_the_connection_never_waits_on_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        SqlStore::sqlite(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        let writer = SqliteWriter::open(&file).unwrap();
        let busy_timeout = |writer: &SqliteWriter| -> i64 {
            lock(&writer.connection)
                .query_row("PRAGMA busy_timeout", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(busy_timeout(&writer), 0);
        writer.checkpoint().await.unwrap();
        let deleted = writer
            .execute(sql("DELETE FROM access_tokens WHERE expires_at < $1").int(5))
            .await
            .unwrap();
        assert_eq!(deleted, 0);
        assert_eq!(busy_timeout(&writer), 0);
    }
}
