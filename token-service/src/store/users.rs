//! Users added at run time, with their passwords and attributes.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::db::{Row, sql};
use super::events::{self, EventKind, NewEvent};
use super::sql::duplicate_or;
use super::{SqlStore, StoreError};
use crate::secret::SecretHash;
use crate::users::Account;

/// Users added at run time (configured ones live in the configuration).
#[async_trait]
pub trait UserStore {
    /// Adds a stored user; [`StoreError::Duplicate`] if the name is taken, ignoring ASCII case.
    async fn insert_user(&self, user: &Account) -> Result<(), StoreError>;
    /// A user by login name.
    async fn find_user_by_name(&self, username: &str) -> Result<Option<Account>, StoreError>;
    /// Whether a stored user has this name, ignoring ASCII case (a new name must not differ
    /// from an existing one by case alone).
    async fn username_taken(&self, username: &str) -> Result<bool, StoreError>;
    /// A user by `sub`.
    async fn find_user_by_id(&self, id: &str) -> Result<Option<Account>, StoreError>;
    /// Every stored user, by login name.
    async fn list_users(&self) -> Result<Vec<Account>, StoreError>;
    /// Replaces a user's password hash; `false` if there is no such user.
    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: u64,
    ) -> Result<bool, StoreError>;
    /// Merges `changes` into a stored user's attributes (a null value removes one), without
    /// losing a change made concurrently; the attributes after, or `None` if there is no such
    /// user.
    async fn merge_user_attributes(
        &self,
        username: &str,
        changes: &Map<String, Value>,
        now: u64,
    ) -> Result<Option<Map<String, Value>>, StoreError>;
    /// Deletes a stored user, ends their sessions and revokes their refresh and opaque access
    /// tokens, in one transaction; `false` if there is no such user.
    async fn delete_user(&self, username: &str, now: u64) -> Result<bool, StoreError>;
}

fn attributes_of(username: &str, text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        table: "users",
        reason: format!("user `{username}`: attributes are not a JSON object: {error}"),
    })
}

fn user_from_row(row: &Row) -> Result<Account, StoreError> {
    let username = row.text("username")?;
    let password =
        SecretHash::parse(&row.text("password_hash")?).map_err(|reason| StoreError::Corrupt {
            table: "users",
            reason: format!("user `{username}`: {reason}"),
        })?;
    Ok(Account {
        id: row.text("id")?,
        password,
        attributes: attributes_of(&username, &row.text("attributes")?)?,
        username,
        configured: false,
        created_at: Some(row.int("created_at")?),
        updated_at: Some(row.int("updated_at")?),
    })
}

#[async_trait]
impl UserStore for SqlStore {
    async fn insert_user(&self, user: &Account) -> Result<(), StoreError> {
        let attributes = Value::Object(user.attributes.clone()).to_string();
        let statement = sql(
            "INSERT INTO users (id, username, password_hash, attributes, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .text(&user.id)
        .text(&user.username)
        .text(user.password.as_str())
        .text(&attributes)
        .int(user.created_at.unwrap_or_default())
        .int(user.updated_at.unwrap_or_default());
        self.db
            .execute(statement)
            .await
            .map_err(|error| duplicate_or(error, &user.username))?;
        Ok(())
    }

    async fn find_user_by_name(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM users WHERE username = $1").text(username))
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn username_taken(&self, username: &str) -> Result<bool, StoreError> {
        // Usernames are ASCII: lower() folds them alike on SQLite and Postgres (and the
        // unique index on lower(username) answers it).
        let statement =
            sql("SELECT 1 AS taken FROM users WHERE lower(username) = lower($1) LIMIT 1")
                .text(username);
        Ok(self.db.optional(statement).await?.is_some())
    }

    async fn find_user_by_id(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM users WHERE id = $1").text(id))
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn list_users(&self) -> Result<Vec<Account>, StoreError> {
        self.db
            .all(sql("SELECT * FROM users ORDER BY username"))
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.db.begin().await?;
        let changed = transaction
            .optional(
                sql(
                    "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3 \
                     RETURNING id",
                )
                .text(password_hash)
                .int(now)
                .text(username),
            )
            .await?;
        let Some(row) = changed else {
            return Ok(false);
        };
        let id = row.text("id")?;
        let event = NewEvent::subject_wide(EventKind::PasswordChanged, &id, now);
        events::record(&mut transaction, &[event]).await?;
        transaction.commit().await?;
        self.events_committed();
        Ok(true)
    }

    async fn merge_user_attributes(
        &self,
        username: &str,
        changes: &Map<String, Value>,
        now: u64,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        let mut transaction = self.db.begin().await?;
        // Writing first takes the row's lock (Postgres) or the database's write lock (SQLite)
        // before the read: concurrent merges queue, so none is lost.
        let locked = transaction
            .execute(
                sql("UPDATE users SET updated_at = $1 WHERE username = $2")
                    .int(now)
                    .text(username),
            )
            .await?;
        if locked == 0 {
            return Ok(None);
        }
        let current = transaction
            .optional(sql("SELECT attributes FROM users WHERE username = $1").text(username))
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let mut attributes = attributes_of(username, &current.text("attributes")?)?;
        for (name, value) in changes {
            if value.is_null() {
                attributes.remove(name);
            } else {
                attributes.insert(name.clone(), value.clone());
            }
        }
        let merged = Value::Object(attributes.clone()).to_string();
        transaction
            .execute(
                sql("UPDATE users SET attributes = $1 WHERE username = $2")
                    .text(&merged)
                    .text(username),
            )
            .await?;
        transaction.commit().await?;
        Ok(Some(attributes))
    }

    async fn delete_user(&self, username: &str, now: u64) -> Result<bool, StoreError> {
        let mut transaction = self.db.begin().await?;
        let deleted = transaction
            .optional(sql("DELETE FROM users WHERE username = $1 RETURNING id").text(username))
            .await?;
        let Some(row) = deleted else {
            return Ok(false);
        };
        let id = row.text("id")?;
        for statement in [
            "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL",
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            // Opaque access tokens issued to the user (their `sub` is the user's random id).
            "UPDATE access_tokens SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL",
        ] {
            transaction
                .execute(sql(statement).int(now).text(&id))
                .await?;
        }
        let event = NewEvent::subject_wide(EventKind::UserDeleted, &id, now);
        events::record(&mut transaction, &[event]).await?;
        transaction.commit().await?;
        self.events_committed();
        Ok(true)
    }
}
