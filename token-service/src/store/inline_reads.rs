//! Lookups by key on a SQLite file, run on the calling thread through connections of their
//! own. An index seek takes a few microseconds; the same statement through sqlx's pool is
//! handed to the connection's worker thread and its row handed back (two thread wake-ups),
//! which cost most of an introspection's CPU time (BENCHMARKS.md, issue 22 item 3). A read
//! that cannot run at once — every connection in use, SQLite busy, any error — goes through
//! the pool instead, which waits and reports errors like every other statement; so a reader
//! never sleeps here. The connections are `query_only`: they never write.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::db::{Db, Observation, Row, SQLITE, Statement};
use super::direct;

/// Most connections opened: one per thread reading at the same moment (the runtime's workers)
/// is all that is ever used.
const MAX_CONNECTIONS: usize = 8;

/// Connections for reads on the caller's thread, with the pool to fall back on.
pub(super) struct InlineReads {
    file: PathBuf,
    idle: Mutex<Vec<Connection>>,
    opened: AtomicUsize,
    /// The column names of each statement read here (this database's).
    columns: direct::Columns,
    fallback: Db,
}

impl std::fmt::Debug for InlineReads {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("InlineReads")
            .field("file", &self.file)
            .field("opened", &self.opened.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl InlineReads {
    /// Reads of the database `file`, falling back on `fallback` (a pool on the same file).
    pub(super) fn new(file: PathBuf, fallback: Db) -> Self {
        Self {
            file,
            idle: Mutex::new(Vec::new()),
            opened: AtomicUsize::new(0),
            columns: direct::Columns::default(),
            fallback,
        }
    }

    /// The first row of `statement`, which must be a lookup by key (one index seek, never a
    /// scan: it runs on the caller's thread).
    pub(super) async fn optional(
        &self,
        statement: Statement<'_>,
    ) -> Result<Option<Row>, sqlx::Error> {
        let observation = Observation::start(SQLITE, statement.sql());
        if let Some(row) = observation.in_scope(|| self.read(&statement)) {
            observation.finish(None);
            return Ok(row);
        }
        self.fallback.optional(statement).await
    }

    /// `None` when it could not be read here.
    fn read(&self, statement: &Statement<'_>) -> Option<Option<Row>> {
        let connection = self.take()?;
        let row = direct::first(
            &connection,
            statement.sql(),
            statement.arguments(),
            &self.columns,
        )
        .ok();
        // A connection that failed is closed: the next read opens a fresh one.
        if row.is_some()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(connection);
            return row;
        }
        self.opened.fetch_sub(1, Ordering::Relaxed);
        row
    }

    fn take(&self) -> Option<Connection> {
        if let Some(connection) = self.idle.lock().ok()?.pop() {
            return Some(connection);
        }
        if self.opened.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            self.opened.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let opened = self.open();
        if opened.is_err() {
            self.opened.fetch_sub(1, Ordering::Relaxed);
        }
        opened.ok()
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Busy: read through the pool, which may wait; this thread never sleeps.
        connection.busy_timeout(Duration::ZERO)?;
        connection.pragma_update(None, "query_only", true)?;
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::super::prelude::*;
    use super::super::{Revoked, SqlStore, TokenKey, TokenRecord};
    use super::*;

    fn token(digest: u8) -> TokenRecord {
        TokenRecord {
            jkt: Some("thumbprint".to_owned()),
            ..TokenRecord::sample(digest)
        }
    }

    async fn file_store(dir: &tempfile::TempDir) -> SqlStore {
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        SqlStore::sqlite(&url).await.unwrap()
    }

    #[tokio::test]
    async fn tokens_are_looked_up_on_the_callers_thread_and_a_revocation_shows_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let record = token(1);
        store.insert_token(record.clone()).await.unwrap();
        assert_eq!(
            store
                .find_token(&TokenKey::from_digest([1; 32]))
                .await
                .unwrap(),
            Some(record)
        );
        assert_eq!(
            store
                .find_token(&TokenKey::from_digest([2; 32]))
                .await
                .unwrap(),
            None
        );
        let reads = store.inline_reads.as_ref().unwrap();
        assert_eq!(
            reads.opened.load(Ordering::Relaxed),
            1,
            "read through the pool"
        );
        // Revoked through the pool: the next read here sees it, on the connection it kept.
        assert_eq!(
            store
                .revoke_token(&TokenKey::from_digest([1; 32]), "svc", 200)
                .await
                .unwrap(),
            Revoked::Done
        );
        let found = store
            .find_token(&TokenKey::from_digest([1; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.revoked_at, Some(200));
        assert_eq!(reads.opened.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_read_that_cannot_run_here_goes_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        store.insert_token(token(3)).await.unwrap();
        // No file there: every connection fails to open.
        let unreadable = InlineReads::new(dir.path().join("missing/db.sqlite"), store.db.clone());
        let statement =
            super::super::db::sql("SELECT * FROM access_tokens WHERE digest = $1").bytes(&[3; 32]);
        let row = unreadable.optional(statement).await.unwrap().unwrap();
        assert!(matches!(row, Row::Sqlite(_)));
        assert_eq!(row.text("jti").unwrap(), "jti-3");
        assert_eq!(unreadable.opened.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn inline_rows_read_like_pooled_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        store.insert_token(token(4)).await.unwrap();
        let statement = || {
            super::super::db::sql("SELECT * FROM access_tokens WHERE digest = $1").bytes(&[4; 32])
        };
        let inline = store
            .inline_reads
            .as_ref()
            .unwrap()
            .optional(statement())
            .await
            .unwrap()
            .unwrap();
        let pooled = store.db.optional(statement()).await.unwrap().unwrap();
        assert!(matches!(inline, Row::Inline(_)));
        for row in [&inline, &pooled] {
            assert_eq!(row.bytes("digest").unwrap(), vec![4; 32]);
            assert_eq!(row.text("client_id").unwrap(), "svc");
            assert_eq!(row.int("expires_at").unwrap(), 1000);
            assert_eq!(row.optional_int("revoked_at").unwrap(), None);
            assert_eq!(
                row.optional_text("jkt").unwrap().as_deref(),
                Some("thumbprint")
            );
            assert_eq!(row.optional_text("act").unwrap(), None);
            assert!(row.text("no_such_column").is_err());
        }
        // Stricter than sqlx, which reads NULL as 0 and converts a number to text: a row
        // that breaks the schema is refused.
        assert!(inline.int("revoked_at").is_err(), "NULL is not a number");
        assert!(inline.text("issued_at").is_err(), "a number is not text");
    }
}
