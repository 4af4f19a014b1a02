//! What the role modules' SQL shares: number and list columns, digests, the duplicate-key
//! error, the revoked-grant mark, and the start-up check of usernames.

use super::StoreError;
use super::db::{Db, sql};

/// The `jti` of the row that marks a grant revoked (no real jti starts with `!`).
pub(super) const REVOKED_MARK: &str = "!revoked";

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `values` as a JSON array of strings, written straight from the slice (no copy of the list,
/// no JSON tree).
pub(super) fn json_list(values: &[String]) -> String {
    // Serializing strings cannot fail (only maps with non-string keys can).
    #[allow(clippy::expect_used)]
    serde_json::to_string(values).expect("a list of strings is JSON")
}

pub(super) fn parse_list(table: &'static str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        table,
        reason: format!("a list column is not a JSON array of strings: {error}"),
    })
}

pub(super) fn duplicate_or(error: sqlx::Error, key: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            StoreError::Duplicate(key.to_owned())
        }
        _ => StoreError::Database(error),
    }
}

pub(super) fn digest_of(table: &'static str, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
        table,
        reason: "a digest is not 32 bytes".to_owned(),
    })
}

/// Migration 0009 makes usernames unique without regard to case; a database holding names
/// that differ by case alone cannot take it, and must be told which. Run before migrating.
pub(super) async fn refuse_usernames_differing_by_case(db: &Db) -> Result<(), StoreError> {
    let users_table = match db {
        Db::Sqlite(_) => {
            "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'users'"
        }
        Db::Postgres(_) => "SELECT 1 AS found WHERE to_regclass('users') IS NOT NULL",
    };
    if db.optional(sql(users_table)).await?.is_none() {
        return Ok(());
    }
    let pairs = db
        .all(sql(
            "SELECT a.username AS one, b.username AS other FROM users a JOIN users b \
             ON lower(a.username) = lower(b.username) AND a.username < b.username \
             ORDER BY a.username",
        ))
        .await?;
    if pairs.is_empty() {
        return Ok(());
    }
    let listed = pairs
        .iter()
        .map(|pair| {
            Ok(format!(
                "`{}` and `{}`",
                pair.text("one")?,
                pair.text("other")?
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Err(StoreError::Corrupt {
        table: "users",
        reason: format!(
            "usernames must differ by more than case before this version can start: \
             rename or delete one of {} (the service was not changed)",
            listed.join(", ")
        ),
    })
}

/// How a generated multi-row statement writes its parameters. The statements written by hand
/// use `$N`, which both backends read; but SQLite finds a named parameter's number by scanning
/// the names before it (`sqlite3_bind_parameter_name`, which sqlx calls for each one), which is
/// quadratic in a batch of 704 parameters: 8 % of an issuance's CPU. Anonymous `?` parameters,
/// numbered in order, have no names to scan; Postgres reads only `$N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placeholders {
    /// `$1, $2, …` (Postgres).
    Numbered,
    /// `?, ?, …`, bound in order (SQLite).
    Anonymous,
}

impl Placeholders {
    /// `count` parameters in a row's parentheses, the first numbered `first` (from 1).
    fn row(self, first: usize, count: usize) -> String {
        let places: Vec<String> = (first..first + count)
            .map(|number| match self {
                Self::Numbered => format!("${number}"),
                Self::Anonymous => "?".to_owned(),
            })
            .collect();
        format!("({})", places.join(", "))
    }

    /// `rows` rows of `columns` parameters each, comma-separated.
    fn rows(self, rows: usize, columns: usize) -> String {
        let rows: Vec<String> = (0..rows)
            .map(|row| self.row(row * columns + 1, columns))
            .collect();
        rows.join(", ")
    }
}

/// `INSERT` of `rows` access-token rows in one statement (each row bound by `tokens::bind_token`).
pub(super) fn insert_tokens_sql(rows: usize, placeholders: Placeholders) -> String {
    const COLUMNS: usize = 11;
    format!(
        "INSERT INTO access_tokens (digest, jti, client_id, subject, scope, audience, \
         issued_at, expires_at, revoked_at, jkt, act) VALUES {}",
        placeholders.rows(rows, COLUMNS)
    )
}

/// `INSERT INTO spent_ids … ON CONFLICT (key) DO NOTHING RETURNING key` for `rows` rows: the
/// keys it returns are those this statement spent.
pub(super) fn insert_spent_ids_sql(rows: usize, placeholders: Placeholders) -> String {
    format!(
        "INSERT INTO spent_ids (key, expires_at) VALUES {} ON CONFLICT (key) DO NOTHING RETURNING key",
        placeholders.rows(rows, 2)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_written_as_compact_json_and_read_back_as_it_was() {
        let values = vec![
            "https://api.example".to_owned(),
            "quote \" backslash \\ tab \t é \u{1F600}".to_owned(),
            String::new(),
        ];
        let written = json_list(&values);
        assert_eq!(written, serde_json::Value::from(values.clone()).to_string());
        assert_eq!(parse_list("t", &written).unwrap(), values);
        assert_eq!(json_list(&[]), "[]");
    }

    #[test]
    fn generated_rows_number_their_parameters_for_postgres_and_leave_them_anonymous_for_sqlite() {
        let spend = |placeholders| insert_spent_ids_sql(2, placeholders);
        assert!(spend(Placeholders::Numbered).contains("VALUES ($1, $2), ($3, $4) ON CONFLICT"));
        assert!(spend(Placeholders::Anonymous).contains("VALUES (?, ?), (?, ?) ON CONFLICT"));
        let tokens = insert_tokens_sql(3, Placeholders::Numbered);
        assert!(tokens.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11), ($12,"));
        assert!(tokens.ends_with("$32, $33)"));
        let tokens = insert_tokens_sql(3, Placeholders::Anonymous);
        assert_eq!(tokens.matches('?').count(), 33);
        assert!(!tokens.contains('$'));
    }
}
