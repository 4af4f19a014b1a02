//! Group commit of access-token rows, the one write every opaque issuance makes. Requests
//! inserting a row each would each pay a statement and a commit (and on SQLite, which has one
//! writer at a time, queue on its write lock and sleep in its busy handler). Instead writer
//! tasks take every row waiting, write them in one statement — one transaction — and answer
//! each request only after that commit: the same durability, one commit for many tokens.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::sql::{duplicate_or, insert_tokens_sql};
use super::{StoreError, TokenRecord};

/// Most rows in one statement (10 parameters each, far below SQLite's limit of 32 766 and
/// Postgres' 65 535).
const MAX_BATCH: usize = 64;

/// Rows waiting for the writer; requests beyond this wait to be queued.
const QUEUE: usize = 4096;

/// The statement for each batch size, built once.
static STATEMENTS: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..=MAX_BATCH).map(insert_tokens_sql).collect());

/// The `INSERT` statement for `rows` access-token rows (1 ..= 64), built once.
pub(super) fn statement(rows: usize) -> &'static str {
    &STATEMENTS[rows]
}

/// A database that can insert a batch of access-token rows in one statement.
pub(super) trait TokenSink: Send + Sync + 'static {
    /// Inserts every row of `tokens` or none (one statement, one transaction).
    fn insert(
        &self,
        tokens: &[&TokenRecord],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

struct Pending {
    token: TokenRecord,
    written: oneshot::Sender<Result<(), StoreError>>,
}

/// Hands access-token rows to the writer task.
#[derive(Debug, Clone)]
pub(super) struct TokenWriter {
    queue: mpsc::Sender<Pending>,
}

impl TokenWriter {
    /// Starts `writers` writer tasks on the current runtime, writing through `sink`; they end
    /// when every handle is dropped. With `checkpoints` (SQLite), a task also checkpoints the
    /// WAL through that pool every [`CHECKPOINT_INTERVAL`] (the writer's connection must then
    /// have `wal_autocheckpoint` off).
    pub(super) fn start(
        sink: impl TokenSink,
        writers: usize,
        checkpoints: Option<SqlitePool>,
    ) -> Self {
        let (queue, waiting) = mpsc::channel::<Pending>(QUEUE);
        if let Some(pool) = checkpoints {
            tokio::spawn(checkpoint_while_open(pool, queue.downgrade()));
        }
        let sink = Arc::new(sink);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..writers.max(1) {
            let (sink, waiting) = (Arc::clone(&sink), Arc::clone(&waiting));
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                // One writer takes what is waiting while the others write theirs.
                while waiting.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    write_batch(&*sink, &mut batch).await;
                }
            });
        }
        Self { queue }
    }

    /// Records `token`; returns once the transaction holding it has committed.
    pub(super) async fn insert(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let (written, outcome) = oneshot::channel();
        let stopped = || StoreError::Shared("the token writer has stopped".to_owned());
        self.queue
            .send(Pending {
                token: token.clone(),
                written,
            })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// How often the WAL is copied into the database. A passive checkpoint never blocks the
/// writer or readers; SQLite's own automatic one would run inside a writer's commit.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

async fn checkpoint_while_open(pool: SqlitePool, writer: mpsc::WeakSender<Pending>) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if writer.upgrade().is_none() {
            return;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "WAL checkpoint failed; the WAL file grows until one succeeds");
        }
    }
}

/// Writes `batch` in one statement and answers every request in it; empties `batch`.
async fn write_batch(sink: &impl TokenSink, batch: &mut Vec<Pending>) {
    let tokens: Vec<&TokenRecord> = batch.iter().map(|pending| &pending.token).collect();
    match sink.insert(&tokens).await {
        Ok(()) => {
            for pending in batch.drain(..) {
                // A request that gave up waiting has dropped its receiver: nothing to tell.
                let _ = pending.written.send(Ok(()));
            }
        }
        // One statement is one transaction: nothing of it was written. A duplicate row (a
        // 256-bit random collision, or a reused `jti`) must fail its own request only, so the
        // rows are written one by one to give each its own answer.
        Err(error) if batch.len() > 1 && is_unique_violation(&error) => {
            for pending in batch.drain(..) {
                let written = sink
                    .insert(&[&pending.token])
                    .await
                    .map_err(|error| duplicate_or(error, &pending.token.jti));
                let _ = pending.written.send(written);
            }
        }
        Err(error) if batch.len() == 1 => {
            let pending = batch.remove(0);
            let _ = pending
                .written
                .send(Err(duplicate_or(error, &pending.token.jti)));
        }
        // The database itself failed: every request of the batch shares the failure.
        Err(error) => {
            let message = error.to_string();
            for pending in batch.drain(..) {
                let _ = pending
                    .written
                    .send(Err(StoreError::Shared(message.clone())));
            }
        }
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}
