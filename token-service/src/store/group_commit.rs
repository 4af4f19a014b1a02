//! Group commit of the writes made per request: access-token rows (every opaque issuance) and
//! single-use ids (every DPoP proof and client assertion). Requests inserting a row each would
//! each pay a statement and a commit (and on SQLite, which has one writer at a time, queue on
//! its write lock and sleep in its busy handler). Instead writer tasks take every row waiting,
//! write them in one statement — one transaction — and answer each request only after that
//! commit: the same durability, one commit for many rows.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{Mutex, mpsc, oneshot};

use tracing::Instrument as _;

use super::sql::{Placeholders, duplicate_or, insert_spent_ids_sql, insert_tokens_sql};
use super::sqlite_writer::SqliteWriter;
use super::{StoreError, TokenRecord};
use crate::telemetry::metrics;

/// Most rows in one statement (11 parameters each, far below SQLite's limit of 32 766 and
/// Postgres' 65 535).
pub(super) const MAX_BATCH: usize = 64;

/// Rows waiting for the writer; requests beyond this wait to be queued.
const QUEUE: usize = 4096;

/// A generated statement for each batch size and each way of writing parameters, built once.
struct Statements([Vec<String>; 2]);

impl Statements {
    fn new(make: fn(usize, Placeholders) -> String) -> Self {
        let sizes = |placeholders| {
            (0..=MAX_BATCH)
                .map(|rows| make(rows, placeholders))
                .collect()
        };
        Self([
            sizes(Placeholders::Numbered),
            sizes(Placeholders::Anonymous),
        ])
    }

    fn get(&self, placeholders: Placeholders, rows: usize) -> &str {
        let sizes = match placeholders {
            Placeholders::Numbered => &self.0[0],
            Placeholders::Anonymous => &self.0[1],
        };
        &sizes[rows]
    }
}

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements::new(insert_tokens_sql));

/// The `INSERT` statement for `rows` access-token rows (1 ..= 64), built once.
pub(super) fn statement(placeholders: Placeholders, rows: usize) -> &'static str {
    STATEMENTS.get(placeholders, rows)
}

static SPEND_STATEMENTS: LazyLock<Statements> =
    LazyLock::new(|| Statements::new(insert_spent_ids_sql));

/// The statement spending `rows` single-use ids (1 ..= 64) and returning those it inserted.
pub(super) fn spend_statement(placeholders: Placeholders, rows: usize) -> &'static str {
    SPEND_STATEMENTS.get(placeholders, rows)
}

/// The span of a request waiting for its row's group commit: the batch's statement runs in the
/// writer's task, so the request's trace shows this wait instead.
fn waiting_span(writer: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "group_commit",
        otel.name = format_args!("group commit {writer}").to_string(),
        writer,
    )
}

/// Starts `writers` tasks that take every item waiting (up to [`MAX_BATCH`]) and hand the
/// batch to `write`; returns the queue. One writer takes what is waiting while the others
/// write theirs; they end when every sender is dropped.
fn spawn_writers<P, W, F>(name: &'static str, writers: usize, write: W) -> mpsc::Sender<P>
where
    P: Send + 'static,
    W: Fn(Vec<P>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (queue, waiting) = mpsc::channel::<P>(QUEUE);
    let waiting = Arc::new(Mutex::new(waiting));
    let write = Arc::new(write);
    for _ in 0..writers.max(1) {
        let (write, waiting) = (Arc::clone(&write), Arc::clone(&waiting));
        tokio::spawn(async move {
            loop {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                {
                    let mut waiting = waiting.lock().await;
                    if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
                        return;
                    }
                    gather(&mut waiting, &mut batch).await;
                }
                metrics::group_commit(name, batch.len());
                write(batch).await;
            }
        });
    }
    queue
}

/// Adds to `batch` the rows of the requests running now. Woken by the first row sent, a writer
/// runs next (tokio runs a task woken by the running one before the others), and would commit
/// that row alone: a commit per request, each writing its pages whole. Yielding lets the other
/// requests ready to run queue theirs first, for as long as each yield brings more.
async fn gather<P>(waiting: &mut mpsc::Receiver<P>, batch: &mut Vec<P>) {
    while batch.len() < MAX_BATCH {
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < MAX_BATCH
            && let Ok(row) = waiting.try_recv()
        {
            batch.push(row);
        }
        if batch.len() == before {
            return;
        }
    }
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
    /// WAL every [`CHECKPOINT_INTERVAL`] (the writer's connection must then have
    /// `wal_autocheckpoint` off).
    pub(super) fn start(
        sink: impl TokenSink,
        writers: usize,
        checkpoints: Option<Checkpoints>,
    ) -> Self {
        let sink = Arc::new(sink);
        let queue = spawn_writers("tokens", writers, move |batch| {
            let sink = Arc::clone(&sink);
            async move { write_batch(&*sink, batch).await }
        });
        if let Some(checkpoints) = checkpoints {
            tokio::spawn(checkpoint_while_open(checkpoints, queue.downgrade()));
        }
        Self { queue }
    }

    /// Records `token`; returns once the transaction holding it has committed.
    pub(super) async fn insert(&self, token: TokenRecord) -> Result<(), StoreError> {
        let (written, outcome) = oneshot::channel();
        let stopped = || StoreError::Shared("the token writer has stopped".to_owned());
        async {
            self.queue
                .send(Pending { token, written })
                .await
                .map_err(|_| stopped())?;
            outcome.await.map_err(|_| stopped())?
        }
        .instrument(waiting_span("tokens"))
        .await
    }
}

/// How often the WAL is copied into the database. SQLite's own automatic checkpoint would
/// run inside a commit, every 1000 pages.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Where a SQLite WAL is checkpointed, in two passes. The bulk runs on a pooled connection
/// while batches go on; but a batch appending meanwhile leaves frames uncopied, so under
/// steady writes that pass alone never catches up and the WAL never starts over: it grew
/// without bound (2.7 GB in 8 s of issuance, each frame on fresh file pages the kernel zeroes
/// first, and a wal-index every read searches). The tail pass then runs on the writer's own
/// connection, between two batches: it copies only what the bulk pass left, no batch appends
/// while it runs, and the next batch starts the WAL over.
#[derive(Debug, Clone)]
pub(super) struct Checkpoints {
    /// A pooled connection, beside the writer.
    pub(super) bulk: SqlitePool,
    /// The writer's own connection.
    pub(super) tail: SqliteWriter,
}

async fn checkpoint_while_open(checkpoints: Checkpoints, writer: mpsc::WeakSender<Pending>) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if writer.upgrade().is_none() {
            return;
        }
        let bulk = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&checkpoints.bulk)
            .await
            .map(|_| ());
        for checkpointed in [bulk, checkpoints.tail.checkpoint().await] {
            if let Err(error) = checkpointed {
                tracing::warn!(%error, "WAL checkpoint failed; the WAL file grows until one succeeds");
            }
        }
    }
}

/// Writes `batch` in one statement and answers every request in it.
async fn write_batch(sink: &impl TokenSink, mut batch: Vec<Pending>) {
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
        // Postgres may also find two writers' batches deadlocked on such a row, each waiting
        // for the other's: the one it aborts has written nothing either.
        Err(error) if batch.len() > 1 && (is_unique_violation(&error) || is_deadlock(&error)) => {
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

/// Postgres's `deadlock_detected` (SQLSTATE 40P01).
fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().as_deref() == Some("40P01"))
}

/// A database that can spend a batch of single-use ids in one statement.
pub(super) trait SpendSink: Send + Sync + 'static {
    /// Inserts the ids of `rows` (key, expiry) not spent already; returns those it inserted.
    fn spend(
        &self,
        rows: &[(&[u8; 32], u64)],
    ) -> impl Future<Output = Result<Vec<[u8; 32]>, sqlx::Error>> + Send;
}

struct Spend {
    key: [u8; 32],
    expires_at: u64,
    spent: oneshot::Sender<Result<bool, StoreError>>,
}

/// Hands single-use ids to the writer tasks.
#[derive(Debug, Clone)]
pub(super) struct SpendWriter {
    queue: mpsc::Sender<Spend>,
}

impl SpendWriter {
    /// Starts `writers` writer tasks on the current runtime, spending through `sink`.
    pub(super) fn start(sink: impl SpendSink, writers: usize) -> Self {
        let sink = Arc::new(sink);
        let queue = spawn_writers("spends", writers, move |batch| {
            let sink = Arc::clone(&sink);
            async move { spend_batch(&*sink, batch).await }
        });
        Self { queue }
    }

    /// Spends `key` until `expires_at`: `true` if this call spent it; returns once committed.
    pub(super) async fn spend_once(
        &self,
        key: &[u8; 32],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let (spent, outcome) = oneshot::channel();
        let stopped = || StoreError::Shared("the single-use writer has stopped".to_owned());
        async {
            self.queue
                .send(Spend {
                    key: *key,
                    expires_at,
                    spent,
                })
                .await
                .map_err(|_| stopped())?;
            outcome.await.map_err(|_| stopped())?
        }
        .instrument(waiting_span("spends"))
        .await
    }
}

/// Spends `batch` in one statement and answers each request: `true` for the first request of
/// a key the statement inserted; `false` for a key spent before, or asked twice in the batch
/// (the second asker is the replay).
async fn spend_batch(sink: &impl SpendSink, batch: Vec<Spend>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let firsts: Vec<bool> = batch.iter().map(|spend| seen.insert(spend.key)).collect();
    let mut rows: Vec<(&[u8; 32], u64)> = batch
        .iter()
        .zip(&firsts)
        .filter(|(_, first)| **first)
        .map(|(spend, _)| (&spend.key, spend.expires_at))
        .collect();
    // In key order: two writers' batches holding the same ids then take them in the same
    // order, and one waits for the other instead of both deadlocking (Postgres).
    rows.sort_unstable_by_key(|(key, _)| *key);
    match sink.spend(&rows).await {
        Ok(inserted) => {
            let inserted: HashSet<[u8; 32]> = inserted.into_iter().collect();
            for (spend, first) in batch.into_iter().zip(firsts) {
                let _ = spend.spent.send(Ok(first && inserted.contains(&spend.key)));
            }
        }
        // The database failed: nothing was spent, every request of the batch shares the failure.
        Err(error) => {
            let message = error.to_string();
            for spend in batch {
                let _ = spend.spent.send(Err(StoreError::Shared(message.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// Records the size of each batch it is given.
    #[derive(Clone, Default)]
    struct Batches(Arc<StdMutex<Vec<usize>>>);

    impl TokenSink for Batches {
        async fn insert(&self, tokens: &[&TokenRecord]) -> Result<(), sqlx::Error> {
            self.0.lock().unwrap().push(tokens.len());
            Ok(())
        }
    }

    // One worker thread, which runs a task woken by the running one next (its LIFO slot): the
    // writer, woken by the first row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_rows_of_requests_running_together_share_one_commit() {
        let batches = Batches::default();
        let writer = TokenWriter::start(batches.clone(), 1, None);
        // Spawned from a task on the worker, as a server's connections are.
        tokio::spawn(async move {
            let mut requests = tokio::task::JoinSet::new();
            for byte in 0..10 {
                let writer = writer.clone();
                requests.spawn(async move { writer.insert(TokenRecord::sample(byte)).await });
            }
            for written in requests.join_all().await {
                written.unwrap();
            }
        })
        .await
        .unwrap();
        assert_eq!(*batches.0.lock().unwrap(), [10]);
    }
}
