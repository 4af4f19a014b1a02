//! Clients and APIs registered at run time.

use async_trait::async_trait;

use super::db::{Row, sql};
use super::sql::{duplicate_or, json_list, parse_list};
use super::{ApiRecord, ClientRecord, SqlStore, StoreError, mapping};
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

fn client_from_row(row: &Row) -> Result<Client, StoreError> {
    let record = ClientRecord {
        id: row.text("id")?,
        secret_hash: row.optional_text("secret_hash")?,
        grants: parse_list("clients", &row.text("grants")?)?,
        scopes: row.text("scopes")?,
        token_format: row.text("token_format")?,
        access_token_ttl: row.optional_int("access_token_ttl")?,
        audience: parse_list("clients", &row.text("audience")?)?,
        redirect_uris: parse_list("clients", &row.text("redirect_uris")?)?,
        post_logout_redirect_uris: parse_list("clients", &row.text("post_logout_redirect_uris")?)?,
        required_claims: parse_list("clients", &row.text("required_claims")?)?,
        self_signup: row.int("self_signup")? != 0,
        created_at: row.int("created_at")?,
    };
    mapping::client_from_record(&record)
}

fn api_from_row(row: &Row) -> Result<Api, StoreError> {
    let record = ApiRecord {
        id: row.text("id")?,
        secret_hash: row.text("secret_hash")?,
        scopes: row.text("scopes")?,
        created_at: row.int("created_at")?,
    };
    mapping::api_from_record(&record)
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn insert_client(&self, client: &Client) -> Result<(), StoreError> {
        let row = mapping::client_to_record(client);
        let (grants, audience) = (json_list(&row.grants), json_list(&row.audience));
        let redirect_uris = json_list(&row.redirect_uris);
        let post_logout = json_list(&row.post_logout_redirect_uris);
        let required_claims = json_list(&row.required_claims);
        let statement = sql(
            "INSERT INTO clients (id, secret_hash, grants, scopes, token_format, access_token_ttl, \
             audience, redirect_uris, created_at, post_logout_redirect_uris, required_claims, \
             self_signup) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .text(&row.id)
        .optional_text(row.secret_hash.as_deref())
        .text(&grants)
        .text(&row.scopes)
        .text(&row.token_format)
        .optional_int(row.access_token_ttl)
        .text(&audience)
        .text(&redirect_uris)
        .int(row.created_at)
        .text(&post_logout)
        .text(&required_claims)
        .int(u64::from(row.self_signup));
        self.db
            .execute(statement)
            .await
            .map_err(|error| duplicate_or(error, &row.id))?;
        Ok(())
    }

    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM clients WHERE id = $1").text(id))
            .await?
            .as_ref()
            .map(client_from_row)
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.db
            .all(sql("SELECT * FROM clients ORDER BY id"))
            .await?
            .iter()
            .map(client_from_row)
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
        transaction.commit().await?;
        Ok(true)
    }

    async fn insert_api(&self, api: &Api) -> Result<(), StoreError> {
        let row = mapping::api_to_record(api);
        let statement =
            sql("INSERT INTO apis (id, secret_hash, scopes, created_at) VALUES ($1, $2, $3, $4)")
                .text(&row.id)
                .text(&row.secret_hash)
                .text(&row.scopes)
                .int(row.created_at);
        self.db
            .execute(statement)
            .await
            .map_err(|error| duplicate_or(error, &row.id))?;
        Ok(())
    }

    async fn find_api(&self, id: &str) -> Result<Option<Api>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM apis WHERE id = $1").text(id))
            .await?
            .as_ref()
            .map(api_from_row)
            .transpose()
    }

    async fn list_apis(&self) -> Result<Vec<Api>, StoreError> {
        self.db
            .all(sql("SELECT * FROM apis ORDER BY id"))
            .await?
            .iter()
            .map(api_from_row)
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
