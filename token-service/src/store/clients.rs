//! Clients and APIs registered at run time.

use async_trait::async_trait;

use super::db::sql;
use super::events::{self, EventKind, NewEvent};
use super::sql::duplicate_or;
use super::{SqlStore, StoreError, mapping};
use crate::config::{Api, Client};

/// Clients and APIs registered at run time (`client add`, `api add`, the admin API).
#[async_trait]
pub trait ClientStore {
    /// Adds a client (its `registered_at` is when).
    async fn insert_client(&self, client: &Client) -> Result<(), StoreError>;
    /// A client by id.
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError>;
    /// Every stored client.
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// Deletes a stored client and revokes its refresh and opaque access tokens, in one
    /// transaction; `false` if there is none.
    async fn delete_client(&self, id: &str, now: u64) -> Result<bool, StoreError>;
    /// Registers an API (its `registered_at` is when).
    async fn insert_api(&self, api: &Api) -> Result<(), StoreError>;
    /// An API by id.
    async fn find_api(&self, id: &str) -> Result<Option<Api>, StoreError>;
    /// Every stored API.
    async fn list_apis(&self) -> Result<Vec<Api>, StoreError>;
    /// Deletes a stored API; `false` if there is none.
    async fn delete_api(&self, id: &str) -> Result<bool, StoreError>;
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn insert_client(&self, client: &Client) -> Result<(), StoreError> {
        self.insert("clients", &mapping::client_columns(client))
            .await
    }

    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM clients WHERE id = $1").text(id))
            .await?
            .as_ref()
            .map(mapping::client_from_row)
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.db
            .all(sql("SELECT * FROM clients ORDER BY id"))
            .await?
            .iter()
            .map(mapping::client_from_row)
            .collect()
    }

    async fn delete_client(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        let mut transaction = self.db.begin().await?;
        let deleted = transaction
            .execute(sql("DELETE FROM clients WHERE id = $1").text(id))
            .await?;
        if deleted == 0 {
            return Ok(false);
        }
        for statement in [
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
            "UPDATE access_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
        ] {
            transaction
                .execute(sql(statement).int(now).text(id))
                .await?;
        }
        let event = NewEvent::subject_wide(EventKind::ClientDeleted, id, now);
        events::record(&mut transaction, &[event]).await?;
        transaction.commit().await?;
        self.events_committed();
        Ok(true)
    }

    async fn insert_api(&self, api: &Api) -> Result<(), StoreError> {
        self.insert("apis", &mapping::api_columns(api)).await
    }

    async fn find_api(&self, id: &str) -> Result<Option<Api>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM apis WHERE id = $1").text(id))
            .await?
            .as_ref()
            .map(mapping::api_from_row)
            .transpose()
    }

    async fn list_apis(&self) -> Result<Vec<Api>, StoreError> {
        self.db
            .all(sql("SELECT * FROM apis ORDER BY id"))
            .await?
            .iter()
            .map(mapping::api_from_row)
            .collect()
    }

    async fn delete_api(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(sql("DELETE FROM apis WHERE id = $1").text(id))
            .await?
            > 0)
    }
}

impl SqlStore {
    /// Inserts one row of `columns`; a taken key (the first column) is `Duplicate`.
    async fn insert(&self, table: &str, columns: &mapping::Columns) -> Result<(), StoreError> {
        let text = mapping::insert_sql(table, columns);
        let statement = columns
            .iter()
            .fold(sql(&text), |statement, (_, value)| statement.value(value));
        let key = columns
            .first()
            .map_or(String::new(), |(_, value)| match value {
                super::db::Value::Text(text) => text.clone(),
                other => format!("{other:?}"),
            });
        self.db
            .execute(statement)
            .await
            .map_err(|error| duplicate_or(error, &key))?;
        Ok(())
    }
}
