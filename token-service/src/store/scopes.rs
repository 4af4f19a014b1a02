//! Claim scopes defined at run time. A deleted scope keeps its row, marked deleted: the
//! catalogue must know the name was deleted to withhold it from clients that still list it
//! (`scope_catalogue`), and defining it again takes the row back.

use async_trait::async_trait;

use super::db::sql;
use super::{SqlStore, StoreError, mapping};
use crate::config::CustomScope;

/// A claim scope as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScope {
    /// The definition.
    pub scope: CustomScope,
    /// When it was defined (seconds since the epoch; the last definition, if it was deleted and
    /// defined again).
    pub created_at: u64,
    /// When it was last changed.
    pub updated_at: u64,
    /// When it was deleted; `None` while it is defined.
    pub deleted_at: Option<u64>,
}

/// Claim scopes defined at run time (`scope add`, the admin API).
#[async_trait]
pub trait ScopeStore {
    /// Every stored scope by name, deleted ones included (marked).
    async fn list_scopes(&self) -> Result<Vec<StoredScope>, StoreError>;
    /// A stored scope by name, deleted or not.
    async fn find_scope(&self, name: &str) -> Result<Option<StoredScope>, StoreError>;
    /// Defines a scope at `now`, taking the place of a deleted one of that name;
    /// [`StoreError::Duplicate`] if one of that name is defined.
    async fn insert_scope(&self, scope: &CustomScope, now: u64) -> Result<(), StoreError>;
    /// Replaces the definition of a defined scope; `false` if there is none (or it was deleted).
    async fn update_scope(&self, scope: &CustomScope, now: u64) -> Result<bool, StoreError>;
    /// Marks a defined scope deleted at `now`; `false` if there is none (or it was deleted).
    async fn delete_scope(&self, name: &str, now: u64) -> Result<bool, StoreError>;
}

#[async_trait]
impl ScopeStore for SqlStore {
    async fn list_scopes(&self) -> Result<Vec<StoredScope>, StoreError> {
        self.db
            .all(sql("SELECT * FROM scopes ORDER BY name"))
            .await?
            .iter()
            .map(mapping::scope_from_row)
            .collect()
    }

    async fn find_scope(&self, name: &str) -> Result<Option<StoredScope>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM scopes WHERE name = $1").text(name))
            .await?
            .as_ref()
            .map(mapping::scope_from_row)
            .transpose()
    }

    async fn insert_scope(&self, scope: &CustomScope, now: u64) -> Result<(), StoreError> {
        let (claims, access_token, source) = mapping::scope_definition(scope);
        // One statement decides: a new row, or the deleted row of that name taken back; a
        // defined one changes nothing.
        let inserted = self
            .db
            .execute(
                sql("INSERT INTO scopes (name, claims, access_token, created_at, updated_at, deleted_at, source) \
                     VALUES ($1, $2, $3, $4, $4, NULL, $5) \
                     ON CONFLICT (name) DO UPDATE SET claims = excluded.claims, \
                     access_token = excluded.access_token, source = excluded.source, \
                     created_at = excluded.created_at, \
                     updated_at = excluded.updated_at, deleted_at = NULL \
                     WHERE scopes.deleted_at IS NOT NULL")
                .text(scope.name.as_str())
                .text(&claims)
                .int(access_token)
                .int(now)
                .text(source),
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Duplicate(scope.name.as_str().to_owned()));
        }
        Ok(())
    }

    async fn update_scope(&self, scope: &CustomScope, now: u64) -> Result<bool, StoreError> {
        let (claims, access_token, source) = mapping::scope_definition(scope);
        Ok(self
            .db
            .execute(
                sql(
                    "UPDATE scopes SET claims = $1, access_token = $2, updated_at = $3, \
                     source = $5 WHERE name = $4 AND deleted_at IS NULL",
                )
                .text(&claims)
                .int(access_token)
                .int(now)
                .text(scope.name.as_str())
                .text(source),
            )
            .await?
            > 0)
    }

    async fn delete_scope(&self, name: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(
                sql("UPDATE scopes SET deleted_at = $1, updated_at = $1 \
                     WHERE name = $2 AND deleted_at IS NULL")
                .int(now)
                .text(name),
            )
            .await?
            > 0)
    }
}
