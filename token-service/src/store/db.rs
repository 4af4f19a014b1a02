//! The two backends behind one handle. The store's SQL is written once, as plain code in the
//! role modules, and runs through [`Db`], which hands each statement to SQLite or Postgres:
//! placeholders are `$N` (both read them; only the generated multi-row statements of group
//! commits write `?` on SQLite, see `sql::Placeholders`) and columns have types both map alike
//! (`i64`, text, bytes), so a statement and its rows mean the same on either.

use std::future::Future;
use std::time::Instant;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Encode, PgPool, Postgres, Row as _, Sqlite, SqlitePool, Type};
use tracing::Instrument as _;

use super::direct::{InlineRow, unexpected_null};
use super::sql::Placeholders;
use crate::telemetry::metrics;

/// A pool of either backend.
#[derive(Debug, Clone)]
pub(super) enum Db {
    /// The embedded default.
    Sqlite(SqlitePool),
    /// Several instances sharing one database.
    Postgres(PgPool),
}

/// One argument of a statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Int(i64),
    OptionalInt(Option<i64>),
    Text(&'a str),
    OptionalText(Option<&'a str>),
    Bytes(&'a [u8]),
}

/// A column's value as a row is written (see `mapping`); [`Statement::value`] binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Int(u64),
    OptionalInt(Option<u64>),
    Text(String),
    OptionalText(Option<String>),
}

/// A statement and its arguments, bound in order to `$1`, `$2`, … (or to anonymous `?`s)
#[derive(Debug, Clone)]
pub(super) struct Statement<'a> {
    sql: &'a str,
    args: Vec<Arg<'a>>,
}

/// Starts a statement.
pub(super) fn sql(sql: &str) -> Statement<'_> {
    Statement {
        sql,
        args: Vec::new(),
    }
}

impl<'a> Statement<'a> {
    /// Its SQL.
    pub(super) const fn sql(&self) -> &'a str {
        self.sql
    }

    /// Its arguments, for `$1`, `$2`, … in order.
    pub(super) fn arguments(&self) -> &[Arg<'a>] {
        &self.args
    }

    /// Binds a number (seconds since the epoch and counts are stored as `i64`).
    pub(super) fn int(mut self, value: u64) -> Self {
        self.args.push(Arg::Int(super::sql::to_i64(value)));
        self
    }

    /// Binds an optional number (`NULL` for `None`).
    pub(super) fn optional_int(mut self, value: Option<u64>) -> Self {
        self.args
            .push(Arg::OptionalInt(value.map(super::sql::to_i64)));
        self
    }

    /// Binds text.
    pub(super) fn text(mut self, value: &'a str) -> Self {
        self.args.push(Arg::Text(value));
        self
    }

    /// Binds optional text (`NULL` for `None`).
    pub(super) fn optional_text(mut self, value: Option<&'a str>) -> Self {
        self.args.push(Arg::OptionalText(value));
        self
    }

    /// Binds a column's value.
    pub(super) fn value(self, value: &'a Value) -> Self {
        match value {
            Value::Int(number) => self.int(*number),
            Value::OptionalInt(number) => self.optional_int(*number),
            Value::Text(text) => self.text(text),
            Value::OptionalText(text) => self.optional_text(text.as_deref()),
        }
    }

    /// Binds bytes (digests, keys, secrets).
    pub(super) fn bytes(mut self, value: &'a [u8]) -> Self {
        self.args.push(Arg::Bytes(value));
        self
    }
}

/// `statement` as a query of backend `DB`, its arguments bound.
fn query<'q, DB: Database>(
    statement: &'q Statement<'q>,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    let mut query = sqlx::query(statement.sql);
    for arg in &statement.args {
        query = match *arg {
            Arg::Int(value) => query.bind(value),
            Arg::OptionalInt(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::OptionalText(value) => query.bind(value),
            Arg::Bytes(value) => query.bind(value),
        };
    }
    query
}

/// A row of either backend, read by column name.
pub(super) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
    /// Read on the caller's thread (SQLite, through rusqlite: see `direct`).
    Inline(InlineRow),
}

/// Reads column `$column` as `$type` from either backend's row; `$inline` reads it from an
/// inline row.
macro_rules! column {
    ($row:expr, $column:expr, $type:ty, $inline:expr) => {
        match $row {
            Row::Sqlite(row) => row.try_get::<$type, _>($column),
            Row::Postgres(row) => row.try_get::<$type, _>($column),
            Row::Inline(row) => $inline(row),
        }
    };
}

/// The value of a column that must not be `NULL`.
fn present<T>(column: &str, value: Option<T>) -> Result<T, sqlx::Error> {
    value.ok_or_else(|| unexpected_null(column))
}

impl Row {
    /// A number column.
    pub(super) fn int(&self, column: &str) -> Result<u64, sqlx::Error> {
        column!(self, column, i64, |row: &InlineRow| present(
            column,
            row.int(column)?
        ))
        .map(super::sql::to_u64)
    }

    /// A nullable number column.
    pub(super) fn optional_int(&self, column: &str) -> Result<Option<u64>, sqlx::Error> {
        column!(self, column, Option<i64>, |row: &InlineRow| row.int(column))
            .map(|value| value.map(super::sql::to_u64))
    }

    /// A text column.
    pub(super) fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        column!(self, column, String, |row: &InlineRow| present(
            column,
            row.text(column)?
        ))
    }

    /// A nullable text column.
    pub(super) fn optional_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        column!(self, column, Option<String>, |row: &InlineRow| row
            .text(column))
    }

    /// A truth value computed by a query (`EXISTS …`): Postgres answers a boolean, SQLite a
    /// number.
    pub(super) fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        match self {
            Self::Sqlite(row) => row.try_get::<i64, _>(column).map(|value| value != 0),
            Self::Postgres(row) => row.try_get::<bool, _>(column),
            Self::Inline(row) => present(column, row.int(column)?).map(|value| value != 0),
        }
    }

    /// A bytes column.
    pub(super) fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        column!(self, column, Vec<u8>, |row: &InlineRow| present(
            column,
            row.bytes(column)?
        ))
    }
}

impl Db {
    /// How this backend's generated multi-row statements write their parameters.
    pub(super) const fn placeholders(&self) -> Placeholders {
        match self {
            Self::Sqlite(_) => Placeholders::Anonymous,
            Self::Postgres(_) => Placeholders::Numbered,
        }
    }

    /// OpenTelemetry's name of the backend.
    const fn system(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => SQLITE,
            Self::Postgres(_) => POSTGRES,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub(super) async fn execute(&self, statement: Statement<'_>) -> Result<u64, sqlx::Error> {
        observed(self.system(), statement.sql, async {
            Ok(match self {
                Self::Sqlite(pool) => query::<Sqlite>(&statement)
                    .execute(pool)
                    .await?
                    .rows_affected(),
                Self::Postgres(pool) => query::<Postgres>(&statement)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            })
        })
        .await
    }

    /// The first row of a query, if any.
    pub(super) async fn optional(
        &self,
        statement: Statement<'_>,
    ) -> Result<Option<Row>, sqlx::Error> {
        observed(self.system(), statement.sql, async {
            Ok(match self {
                Self::Sqlite(pool) => query::<Sqlite>(&statement)
                    .fetch_optional(pool)
                    .await?
                    .map(Row::Sqlite),
                Self::Postgres(pool) => query::<Postgres>(&statement)
                    .fetch_optional(pool)
                    .await?
                    .map(Row::Postgres),
            })
        })
        .await
    }

    /// Every row of a query.
    pub(super) async fn all(&self, statement: Statement<'_>) -> Result<Vec<Row>, sqlx::Error> {
        observed(self.system(), statement.sql, async {
            Ok(match self {
                Self::Sqlite(pool) => query::<Sqlite>(&statement)
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(Row::Sqlite)
                    .collect(),
                Self::Postgres(pool) => query::<Postgres>(&statement)
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(Row::Postgres)
                    .collect(),
            })
        })
        .await
    }

    /// Closes every connection (tests; a process that exits needs not).
    pub(super) async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }

    /// Starts a transaction.
    pub(super) async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        observed(self.system(), "BEGIN", async {
            Ok(match self {
                Self::Sqlite(pool) => Transaction::Sqlite(pool.begin().await?),
                Self::Postgres(pool) => Transaction::Postgres(pool.begin().await?),
            })
        })
        .await
    }
}

/// A transaction of either backend; dropped without [`commit`](Self::commit), it rolls back.
pub(super) enum Transaction {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Transaction {
    /// OpenTelemetry's name of the backend.
    const fn system(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => SQLITE,
            Self::Postgres(_) => POSTGRES,
        }
    }

    /// Runs a statement in the transaction; the number of rows it changed.
    pub(super) async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, sqlx::Error> {
        let system = self.system();
        observed(system, statement.sql, async {
            Ok(match self {
                Self::Sqlite(transaction) => query::<Sqlite>(&statement)
                    .execute(&mut **transaction)
                    .await?
                    .rows_affected(),
                Self::Postgres(transaction) => query::<Postgres>(&statement)
                    .execute(&mut **transaction)
                    .await?
                    .rows_affected(),
            })
        })
        .await
    }

    /// The first row of a query in the transaction, if any.
    pub(super) async fn optional(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<Option<Row>, sqlx::Error> {
        let system = self.system();
        observed(system, statement.sql, async {
            Ok(match self {
                Self::Sqlite(transaction) => query::<Sqlite>(&statement)
                    .fetch_optional(&mut **transaction)
                    .await?
                    .map(Row::Sqlite),
                Self::Postgres(transaction) => query::<Postgres>(&statement)
                    .fetch_optional(&mut **transaction)
                    .await?
                    .map(Row::Postgres),
            })
        })
        .await
    }

    /// Every row of a query in the transaction.
    pub(super) async fn all(&mut self, statement: Statement<'_>) -> Result<Vec<Row>, sqlx::Error> {
        let system = self.system();
        observed(system, statement.sql, async {
            Ok(match self {
                Self::Sqlite(transaction) => query::<Sqlite>(&statement)
                    .fetch_all(&mut **transaction)
                    .await?
                    .into_iter()
                    .map(Row::Sqlite)
                    .collect(),
                Self::Postgres(transaction) => query::<Postgres>(&statement)
                    .fetch_all(&mut **transaction)
                    .await?
                    .into_iter()
                    .map(Row::Postgres)
                    .collect(),
            })
        })
        .await
    }

    /// Whether it runs on Postgres (the few statements one backend needs and the other has
    /// no use for).
    pub(super) const fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Commits.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        observed(self.system(), "COMMIT", async {
            match self {
                Self::Sqlite(transaction) => transaction.commit().await,
                Self::Postgres(transaction) => transaction.commit().await,
            }
        })
        .await
    }
}

/// OpenTelemetry's `db.system.name` of each backend.
pub(super) const SQLITE: &str = "sqlite";
const POSTGRES: &str = "postgresql";

/// Runs a statement's future in a span of its own, under the request's, and records its
/// duration and failure by operation and table (docs/metrics.md).
pub(super) async fn observed<T>(
    system: &'static str,
    sql: &str,
    run: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let observation = Observation::start(system, sql);
    let result = run.instrument(observation.span.clone()).await;
    observation.finish(result.as_ref().err());
    result
}

/// One statement's span and start time, until [`finish`](Self::finish) records how it went.
pub(super) struct Observation {
    system: &'static str,
    operation: Operation,
    span: tracing::Span,
    started: Instant,
}

impl Observation {
    /// Starts observing a statement of `sql` on `system`.
    pub(super) fn start(system: &'static str, sql: &str) -> Self {
        let operation = Operation::of(sql);
        let span = tracing::debug_span!(
            "db",
            otel.name = %operation,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = system,
            db.operation.name = operation.name,
            db.collection.name = operation.collection,
            error.type = tracing::field::Empty,
        );
        Self {
            system,
            operation,
            span,
            started: Instant::now(),
        }
    }

    /// Runs `run` (synchronous) in the statement's span.
    pub(super) fn in_scope<T>(&self, run: impl FnOnce() -> T) -> T {
        self.span.in_scope(run)
    }

    /// Records the statement's duration and its failure, if it failed.
    pub(super) fn finish(self, error: Option<&sqlx::Error>) {
        let error = error.map(error_type);
        if let Some(error) = error {
            self.span.record("error.type", error);
            self.span.record("otel.status_code", "ERROR");
        }
        metrics::db_operation(
            self.system,
            self.operation.name,
            self.operation.collection,
            self.started.elapsed(),
            error,
        );
    }
}

/// What a statement does, as OpenTelemetry names it: the operation and the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Operation {
    name: &'static str,
    collection: Option<&'static str>,
}

/// The tables of the migrations: a label names one of these or `other`, whatever the SQL.
const TABLES: [&str; 16] = [
    "access_tokens",
    "apis",
    "apis_next",
    "authorization_codes",
    "clients",
    "event_stream",
    "grant_tokens",
    "login_failures",
    "refresh_tokens",
    "revoked_jwts",
    "security_events",
    "server_secrets",
    "sessions",
    "signing_keys",
    "spent_ids",
    "users",
];

impl Operation {
    /// Reads the first keyword, and the table after `FROM`, `INTO` or `UPDATE`.
    pub(super) fn of(sql: &str) -> Self {
        let first = sql.split_whitespace().next().unwrap_or_default();
        let name = [
            "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT",
        ]
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(first))
        .unwrap_or("other");
        let table_after = |keyword: &str| {
            let mut words = sql.split_whitespace();
            words.find(|word| word.eq_ignore_ascii_case(keyword))?;
            let table = words
                .next()?
                .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            Some(
                TABLES
                    .into_iter()
                    .find(|known| known.eq_ignore_ascii_case(table))
                    .unwrap_or("other"),
            )
        };
        let collection = match name {
            "INSERT" => table_after("INTO"),
            "UPDATE" => table_after("UPDATE"),
            "BEGIN" | "COMMIT" | "other" => None,
            _ => table_after("FROM"),
        };
        Self { name, collection }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.collection {
            Some(collection) => write!(formatter, "{} {collection}", self.name),
            None => formatter.write_str(self.name),
        }
    }
}

/// A failure's OpenTelemetry `error.type`: a fixed word per kind, never its message.
fn error_type(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Database(_) => "database",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Tls(_) => "tls",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::RowNotFound => "row_not_found",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        sqlx::Error::WorkerCrashed => "worker_crashed",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_named_by_its_operation_and_table() {
        let named = |sql| Operation::of(sql).to_string();
        assert_eq!(
            named("SELECT a FROM clients WHERE id = $1"),
            "SELECT clients"
        );
        assert_eq!(
            named("  insert into access_tokens (a) VALUES ($1)"),
            "INSERT access_tokens"
        );
        assert_eq!(
            named("UPDATE refresh_tokens SET a = 1"),
            "UPDATE refresh_tokens"
        );
        assert_eq!(
            named("DELETE FROM sessions WHERE expires_at < $1"),
            "DELETE sessions"
        );
        assert_eq!(named("SELECT 1"), "SELECT");
        assert_eq!(named("BEGIN"), "BEGIN");
        assert_eq!(named("SELECT * FROM someone_elses_table"), "SELECT other");
        assert_eq!(named("VACUUM"), "other");
    }
}
