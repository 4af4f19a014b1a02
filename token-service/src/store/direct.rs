//! Statements run through rusqlite on the calling thread, on the SQLite file sqlx also has
//! open: the lookups by key of [`InlineReads`](super::inline_reads::InlineReads) and the
//! group-commit writes of [`SqliteWriter`](super::sqlite_writer::SqliteWriter). They take the
//! same [`Statement`]s as [`Db`](super::db::Db), and their rows and errors read like sqlx's, so
//! the role modules handle both alike.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql, ffi};
use sqlx::error::{DatabaseError, ErrorKind};

use super::db::{Arg, Row};

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let null = || ToSqlOutput::Owned(Value::Null);
        Ok(match *self {
            Self::Int(value) => ToSqlOutput::Owned(Value::Integer(value)),
            Self::OptionalInt(value) => value.map_or_else(null, |value| value.into()),
            Self::Text(value) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            Self::OptionalText(value) => value.map_or_else(null, |value| {
                ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes()))
            }),
            Self::Bytes(value) => ToSqlOutput::Borrowed(ValueRef::Blob(value)),
        })
    }
}

/// `arguments` as values of their own, for a statement handed to another thread.
pub(super) fn owned(arguments: &[Arg<'_>]) -> Vec<Value> {
    arguments
        .iter()
        .map(|argument| match *argument {
            Arg::Int(value) => Value::Integer(value),
            Arg::OptionalInt(value) => value.map_or(Value::Null, Value::Integer),
            Arg::Text(value) => Value::Text(value.to_owned()),
            Arg::OptionalText(value) => {
                value.map_or(Value::Null, |value| Value::Text(value.into()))
            }
            Arg::Bytes(value) => Value::Blob(value.to_vec()),
        })
        .collect()
}

/// `sql` prepared (from the connection's cache) with `parameters` bound in order.
fn prepare<'c>(
    connection: &'c Connection,
    sql: &str,
    parameters: &[impl ToSql],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut prepared = connection.prepare_cached(sql)?;
    for (index, parameter) in parameters.iter().enumerate() {
        prepared.raw_bind_parameter(index + 1, parameter)?;
    }
    Ok(prepared)
}

/// Runs `sql`; the number of rows it changed.
pub(super) fn execute(
    connection: &Connection,
    sql: &str,
    parameters: &[impl ToSql],
) -> rusqlite::Result<usize> {
    prepare(connection, sql, parameters)?.raw_execute()
}

/// Every row of `sql`.
pub(super) fn query(
    connection: &Connection,
    sql: &str,
    parameters: &[impl ToSql],
) -> rusqlite::Result<Vec<Row>> {
    let mut prepared = prepare(connection, sql, parameters)?;
    let names = column_names(&prepared)?;
    let mut rows = prepared.raw_query();
    let mut read = Vec::new();
    while let Some(row) = rows.next()? {
        read.push(inline_row(row, Arc::clone(&names))?);
    }
    Ok(read)
}

/// The column names of the statements [`first`] ran on one database, kept once: a lookup's
/// SQL is one of the store's own, a few in all, and the database's tables do not change
/// under a running service (its migrations ran first).
#[derive(Default)]
pub(super) struct Columns(RwLock<HashMap<String, ColumnNames>>);

impl Columns {
    fn of(&self, prepared: &rusqlite::Statement<'_>, sql: &str) -> rusqlite::Result<ColumnNames> {
        let kept = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sql)
            .map(Arc::clone);
        if let Some(names) = kept {
            return Ok(names);
        }
        let names = column_names(prepared)?;
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sql.to_owned(), Arc::clone(&names));
        Ok(names)
    }
}

/// The first row of `sql`, a lookup by key on the database `columns` are kept for: SQLite is
/// not asked for another.
pub(super) fn first(
    connection: &Connection,
    sql: &str,
    parameters: &[impl ToSql],
    columns: &Columns,
) -> rusqlite::Result<Option<Row>> {
    let mut prepared = prepare(connection, sql, parameters)?;
    let names = columns.of(&prepared, sql)?;
    let mut rows = prepared.raw_query();
    rows.next()?.map(|row| inline_row(row, names)).transpose()
}

/// A statement's column names, shared by the rows it reads.
type ColumnNames = Arc<[Box<str>]>;

fn column_names(prepared: &rusqlite::Statement<'_>) -> rusqlite::Result<ColumnNames> {
    (0..prepared.column_count())
        .map(|index| prepared.column_name(index).map(Box::from))
        .collect()
}

fn inline_row(row: &rusqlite::Row<'_>, names: ColumnNames) -> rusqlite::Result<Row> {
    let values = (0..names.len())
        .map(|index| row.get::<_, Value>(index))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Row::Inline(InlineRow { names, values }))
}

/// SQLite could not take its lock at once (another connection holds it): nothing was done.
pub(super) fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// `error` as sqlx reports a database's error, so that callers classify both alike (a unique
/// violation is one whichever driver met it).
pub(super) fn to_sqlx(error: rusqlite::Error) -> sqlx::Error {
    let extended_code = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    };
    sqlx::Error::Database(Box::new(DirectError {
        message: error.to_string(),
        extended_code,
        source: error,
    }))
}

#[derive(Debug)]
struct DirectError {
    message: String,
    extended_code: Option<i32>,
    source: rusqlite::Error,
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for DirectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    /// The extended result code, as sqlx's SQLite driver gives it.
    fn code(&self) -> Option<Cow<'_, str>> {
        self.extended_code.map(|code| code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.extended_code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// A row read here: its columns by name, as SQLite gave them.
pub(super) struct InlineRow {
    names: ColumnNames,
    values: Vec<Value>,
}

impl InlineRow {
    fn value(&self, column: &str) -> Result<&Value, sqlx::Error> {
        self.names
            .iter()
            .position(|name| &**name == column)
            .and_then(|index| self.values.get(index))
            .ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_owned()))
    }

    /// A number column (`None` for `NULL`).
    pub(super) fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Integer(value) => Ok(Some(*value)),
            _ => Err(mismatched(column, "an integer")),
        }
    }

    /// A text column (`None` for `NULL`).
    pub(super) fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Text(value) => Ok(Some(value.clone())),
            _ => Err(mismatched(column, "text")),
        }
    }

    /// A bytes column (`None` for `NULL`).
    pub(super) fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Blob(value) => Ok(Some(value.clone())),
            _ => Err(mismatched(column, "bytes")),
        }
    }
}

fn mismatched(column: &str, expected: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: format!("{column:?}"),
        source: format!("expected {expected}").into(),
    }
}

/// A column that must not be `NULL` was.
pub(super) fn unexpected_null(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: format!("{column:?}"),
        source: "unexpected NULL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE t (k INTEGER PRIMARY KEY, u TEXT UNIQUE NOT NULL, b BLOB, n INTEGER)",
            )
            .unwrap();
        connection
    }

    const INSERT: &str = "INSERT INTO t (k, u, b, n) VALUES (?, ?, ?, ?) RETURNING k, u, b, n";

    #[test]
    fn arguments_bind_alike_borrowed_and_owned() {
        let connection = table();
        let arguments = [
            Arg::Int(1),
            Arg::Text("a"),
            Arg::Bytes(&[1, 2]),
            Arg::OptionalInt(None),
        ];
        let borrowed = query(&connection, INSERT, &arguments).unwrap();
        let owned_arguments = owned(&[
            Arg::Int(2),
            Arg::OptionalText(Some("b")),
            Arg::Bytes(&[1, 2]),
            Arg::OptionalInt(Some(7)),
        ]);
        let owned_rows = query(&connection, INSERT, &owned_arguments).unwrap();
        for (rows, key, text, number) in [(&borrowed, 1, "a", None), (&owned_rows, 2, "b", Some(7))]
        {
            let [Row::Inline(row)] = rows.as_slice() else {
                panic!("one row returned")
            };
            assert_eq!(row.int("k").unwrap(), Some(key));
            assert_eq!(row.text("u").unwrap().as_deref(), Some(text));
            assert_eq!(row.bytes("b").unwrap(), Some(vec![1, 2]));
            assert_eq!(row.int("n").unwrap(), number);
        }
        let changed = execute(
            &connection,
            "DELETE FROM t WHERE b = ?",
            &[Arg::Bytes(&[1, 2])],
        )
        .unwrap();
        assert_eq!(changed, 2);
    }

    #[test]
    fn a_lookup_names_the_columns_of_its_own_database() {
        let ordered = |columns: &str| {
            let connection = Connection::open_in_memory().unwrap();
            connection
                .execute_batch(&format!(
                    "CREATE TABLE lookup ({columns}); INSERT INTO lookup (n, t) VALUES (1, 'text')"
                ))
                .unwrap();
            (connection, Columns::default())
        };
        // One statement, two databases whose table has its columns in another order.
        let databases = [ordered("n INTEGER, t TEXT"), ordered("t TEXT, n INTEGER")];
        let sql = "SELECT * FROM lookup WHERE rowid = ?";
        for (connection, columns) in databases.iter().chain(&databases) {
            let Some(Row::Inline(row)) = first(connection, sql, &[Arg::Int(1)], columns).unwrap()
            else {
                panic!("the row is found");
            };
            assert_eq!(row.int("n").unwrap(), Some(1));
            assert_eq!(row.text("t").unwrap().as_deref(), Some("text"));
        }
        let (connection, columns) = &databases[0];
        assert!(
            first(connection, sql, &[Arg::Int(2)], columns)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sqlite_errors_read_as_sqlx_reports_them() {
        let connection = table();
        let insert = |key, text| {
            let arguments = [
                Arg::Int(key),
                Arg::OptionalText(text),
                Arg::OptionalText(None),
                Arg::OptionalInt(None),
            ];
            let Err(error) = query(&connection, INSERT, &arguments) else {
                panic!("inserted {key}");
            };
            match to_sqlx(error) {
                sqlx::Error::Database(error) => error,
                other => panic!("not a database error: {other}"),
            }
        };
        query(
            &connection,
            INSERT,
            &[
                Arg::Int(1),
                Arg::Text("a"),
                Arg::OptionalText(None),
                Arg::OptionalInt(None),
            ],
        )
        .unwrap();
        let unique = insert(2, Some("a"));
        assert!(unique.is_unique_violation());
        assert_eq!(unique.code().as_deref(), Some("2067"));
        assert!(unique.message().contains("UNIQUE constraint failed: t.u"));
        let primary_key = insert(1, Some("b"));
        assert!(primary_key.is_unique_violation());
        assert_eq!(primary_key.code().as_deref(), Some("1555"));
        assert_eq!(insert(3, None).kind(), ErrorKind::NotNullViolation);
        let syntax =
            match to_sqlx(execute(&connection, "INSERT INTO", &[] as &[Arg<'_>]).unwrap_err()) {
                sqlx::Error::Database(error) => error,
                other => panic!("not a database error: {other}"),
            };
        assert_eq!(syntax.kind(), ErrorKind::Other);
        assert!(!is_busy(&rusqlite::Error::InvalidQuery));
    }
}
