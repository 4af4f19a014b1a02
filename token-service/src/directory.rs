//! Who exists: the use cases that create and remove users, clients and APIs, and define, change
//! and delete claim scopes. Each is one function here, and every entry point — the CLI, the admin API, the sign-up page — is an
//! adapter that parses its input, calls it, and answers in its own way. So the rules hold on
//! every path alike:
//!
//! - a username follows [`users::check_new_username`], the password
//!   [`users::check_new_password`], and no two usernames differ by ASCII case alone (also
//!   enforced by a unique index on the lowered name);
//! - clients and users never share a subject: a client id is no user's username or `sub`, and a
//!   username is no client's id (a client-credentials token's `sub` is its client id);
//! - an API owns no scope that another API or the service itself owns (OpenID Connect's, the
//!   admin API's, the claim scopes), and a claim scope overlaps no API's
//!   ([`config::build_scope`], the one check of a definition);
//! - what the configuration defines is read-only here.

use std::sync::Arc;

use scopegate_validator::Scope;
use serde_json::{Map, Value};

use crate::clients::Registry;
use crate::config::{self, Config, ConfigError};
use crate::config::{Api, ApiSettings, Client, ClientSettings, CustomScope, ScopeSettings};
use crate::registration;
use crate::scope_catalogue::{Definitions, ScopeCatalogue};
use crate::secret::Secret;
use crate::service_scopes;
use crate::store::{Store, StoreError, StoredScope};
use crate::users::{self, Account, Users};

/// Why a use case refused; nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// A value breaks a rule; the error names the field.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The name is taken by one of its kind.
    #[error("{kind} `{id}` exists")]
    Taken {
        /// `user`, `client`, `API` or `scope`.
        kind: &'static str,
        /// The name asked for.
        id: String,
    },
    /// The name or a scope clashes with something of another kind.
    #[error("`{field}`: {reason}")]
    Clash {
        /// The field at fault (`id`, `username`, `scopes[1]`).
        field: String,
        /// Why.
        reason: String,
    },
    /// It is defined in the configuration file, read-only here.
    #[error("{kind} `{id}` is defined in the configuration file: change it there")]
    Configured {
        /// `user`, `client`, `API` or `scope`.
        kind: &'static str,
        /// Its name.
        id: String,
    },
    /// There is no such one.
    #[error("no {kind} `{id}`")]
    NotFound {
        /// `user`, `client`, `API` or `scope`.
        kind: &'static str,
        /// The name asked for.
        id: String,
    },
    /// A secret or password could not be hashed.
    #[error("hashing failed; nothing was changed")]
    Hashing,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, reason: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid(ConfigError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    })
}

/// The service's users, clients and APIs, configured and stored.
#[derive(Debug, Clone)]
pub struct Directory {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    registry: Registry,
    users: Users,
}

impl Directory {
    /// Over `config` and `store` (the CLI builds one; the running service has its own).
    #[must_use]
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Self {
        let scopes = ScopeCatalogue::new(
            &config,
            Arc::clone(&store),
            Arc::new(scopegate_validator::SystemClock),
        );
        let registry = Registry::new(&config, Arc::clone(&store), scopes);
        let users = Users::new(&config, Arc::clone(&store));
        Self::from_parts(config, store, registry, users)
    }

    /// From the parts a running service shares (so its caches learn of every change).
    #[must_use]
    pub fn from_parts(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        registry: Registry,
        users: Users,
    ) -> Self {
        Self {
            config,
            store,
            registry,
            users,
        }
    }

    /// Users, configured and stored.
    #[must_use]
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// Clients and APIs, configured and stored.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    // ---- users ----------------------------------------------------------------------------

    /// Creates a stored user with a random `sub`.
    ///
    /// # Errors
    ///
    /// `Invalid` (`username`, `password`), `Taken` (a user's name, ignoring ASCII case),
    /// `Clash` (a client's id), `Hashing`, `Store`.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        attributes: Map<String, Value>,
        now: u64,
    ) -> Result<Account, DirectoryError> {
        users::check_new_username(username).map_err(|reason| invalid("username", reason))?;
        users::check_new_password(username, password)
            .map_err(|reason| invalid("password", reason))?;
        let taken = || DirectoryError::Taken {
            kind: "user",
            id: username.to_owned(),
        };
        if self.users.name_taken(username).await? {
            return Err(taken());
        }
        if self.registry.client(username).await?.is_some() {
            return Err(DirectoryError::Clash {
                field: "username".to_owned(),
                reason: format!("`{username}` is a client's id"),
            });
        }
        let record = users::new_account(username, password, attributes, now)
            .await
            .ok_or(DirectoryError::Hashing)?;
        match self.store.insert_user(&record).await {
            // Another creation of the same name (or one differing by case) won the race.
            Err(StoreError::Duplicate(_)) => Err(taken()),
            Err(error) => Err(error.into()),
            Ok(()) => {
                tracing::info!(username = %record.username, sub = %record.id, "user created");
                Ok(record)
            }
        }
    }

    /// Deletes a stored user: their sessions end, their refresh and opaque access tokens are
    /// revoked, and their JWTs stop introspecting active.
    ///
    /// # Errors
    ///
    /// `Configured`, `NotFound`, `Store`.
    pub async fn delete_user(&self, username: &str, now: u64) -> Result<(), DirectoryError> {
        if self
            .config
            .users
            .iter()
            .any(|user| user.username == username)
        {
            return Err(DirectoryError::Configured {
                kind: "user",
                id: username.to_owned(),
            });
        }
        if !self.store.delete_user(username, now).await? {
            return Err(DirectoryError::NotFound {
                kind: "user",
                id: username.to_owned(),
            });
        }
        tracing::info!(%username, "user deleted");
        Ok(())
    }

    // ---- clients --------------------------------------------------------------------------

    /// Registers a client, checked as the configuration file's are; its secret (none for a
    /// public client) exists only in the answer.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field, `Taken`, `Clash` (a user's name or `sub`), `Hashing`,
    /// `Store`.
    pub async fn register_client(
        &self,
        settings: ClientSettings,
        now: u64,
    ) -> Result<(Client, Option<Secret>), DirectoryError> {
        let taken = |id: &str| DirectoryError::Taken {
            kind: "client",
            id: id.to_owned(),
        };
        if self.registry.is_configured(&settings.id) {
            return Err(taken(&settings.id));
        }
        if self.is_user(&settings.id).await? {
            return Err(DirectoryError::Clash {
                field: "id".to_owned(),
                reason: format!("`{}` is a user's name or subject", settings.id),
            });
        }
        // Its required claims may be those of any claim scope, the store's too.
        let definitions = self.registry.scopes().definitions().await?;
        // Argon2id hashing of the new secret takes tens of milliseconds: off the async workers.
        let (record, secret) = tokio::task::spawn_blocking(move || {
            registration::client(definitions.all(), settings, now)
        })
        .await
        .map_err(|_| DirectoryError::Hashing)??;
        match self.store.insert_client(&record).await {
            Err(StoreError::Duplicate(_)) => return Err(taken(record.id())),
            other => other?,
        }
        self.registry.forget_client(record.id()).await;
        tracing::info!(client_id = %record.id(), "client registered");
        Ok((record, secret))
    }

    /// Deletes a stored client and revokes its refresh and opaque access tokens; its JWTs
    /// stop introspecting active.
    ///
    /// # Errors
    ///
    /// `Configured`, `NotFound`, `Store`.
    pub async fn delete_client(&self, id: &str, now: u64) -> Result<(), DirectoryError> {
        if self.registry.is_configured(id) {
            return Err(DirectoryError::Configured {
                kind: "client",
                id: id.to_owned(),
            });
        }
        let deleted = self.store.delete_client(id, now).await?;
        self.registry.forget_client(id).await;
        if !deleted {
            return Err(DirectoryError::NotFound {
                kind: "client",
                id: id.to_owned(),
            });
        }
        tracing::info!(client_id = %id, "client deleted");
        Ok(())
    }

    /// Whether `name` is a user's username (ignoring ASCII case) or `sub`.
    async fn is_user(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.users.name_taken(name).await? || self.users.find_by_id(name).await?.is_some())
    }

    // ---- APIs -----------------------------------------------------------------------------

    /// Registers an API owning `scopes` (exact scopes, or `prefix:name` for every permission);
    /// its introspection secret (none for one with keys) exists only in the answer.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field, `Taken`, `Clash` (a scope another API or the service
    /// owns), `Hashing`, `Store`.
    pub async fn register_api(
        &self,
        settings: ApiSettings,
        now: u64,
    ) -> Result<(Api, Option<Secret>), DirectoryError> {
        let id = settings.id.clone();
        let taken = || DirectoryError::Taken {
            kind: "API",
            id: id.clone(),
        };
        if self.registry.configured_apis().any(|api| api.id == id) {
            return Err(taken());
        }
        let (record, secret) =
            tokio::task::spawn_blocking(move || registration::api(settings, now))
                .await
                .map_err(|_| DirectoryError::Hashing)??;
        for (position, scope) in record.scopes.iter().enumerate() {
            if let Some(owner) = self.owner_of(scope, &id).await? {
                return Err(DirectoryError::Clash {
                    field: format!("scopes[{position}]"),
                    reason: format!("`{scope}` belongs to {owner}"),
                });
            }
        }
        match self.store.insert_api(&record).await {
            Err(StoreError::Duplicate(_)) => return Err(taken()),
            other => other?,
        }
        self.registry.forget_apis().await;
        tracing::info!(api = %id, "API registered");
        Ok((record, secret))
    }

    /// Who, other than the API `except`, owns a scope overlapping `scope`: another API or
    /// the service itself.
    async fn owner_of(&self, scope: &Scope, except: &str) -> Result<Option<String>, StoreError> {
        if service_scopes::fixed()
            .iter()
            .any(|owned| config::scopes_overlap(owned, scope))
        {
            return Ok(Some("the token service itself".to_owned()));
        }
        if let Some(defined) = self
            .registry
            .scopes()
            .definitions()
            .await?
            .overlapping(scope)
        {
            return Ok(Some(format!(
                "the token service itself (its claim scope `{}`)",
                defined.name
            )));
        }
        Ok(self
            .registry
            .all_apis()
            .await?
            .iter()
            .filter(|api| api.id != except && api.id != self.config.issuer)
            .find(|api| {
                api.scopes
                    .iter()
                    .any(|owned| config::scopes_overlap(owned, scope))
            })
            .map(|api| format!("API `{}`", api.id)))
    }

    /// Deletes a stored API.
    ///
    /// # Errors
    ///
    /// `Configured`, `NotFound`, `Store`.
    pub async fn delete_api(&self, id: &str) -> Result<(), DirectoryError> {
        if self.registry.configured_apis().any(|api| api.id == id) {
            return Err(DirectoryError::Configured {
                kind: "API",
                id: id.to_owned(),
            });
        }
        let deleted = self.store.delete_api(id).await?;
        self.registry.forget_apis().await;
        if !deleted {
            return Err(DirectoryError::NotFound {
                kind: "API",
                id: id.to_owned(),
            });
        }
        tracing::info!(api = %id, "API deleted");
        Ok(())
    }

    // ---- claim scopes ---------------------------------------------------------------------

    /// Every claim scope, read from the store now: the configuration file's, then the store's.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store fails or holds a definition this version cannot read.
    pub async fn scopes(&self) -> Result<Definitions, StoreError> {
        Ok(Definitions::merge(
            &self.config.scopes,
            self.store.list_scopes().await?,
        ))
    }

    /// Defines a claim scope in the store, checked by the one check of a definition
    /// ([`config::build_scope`]). Clients that list it are granted it, with its claims, from
    /// their next token on (at once here, within `clients::STORED_TTL` elsewhere).
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field, `Configured` (the file defines it), `Taken`, `Clash` (`name`
    /// overlaps an API's scope), `Store`.
    pub async fn create_scope(
        &self,
        settings: ScopeSettings,
        now: u64,
    ) -> Result<StoredScope, DirectoryError> {
        let definitions = self.scopes().await?;
        let scope = self.check_scope(settings, &definitions, None).await?;
        match self.store.insert_scope(&scope, now).await {
            // Another definition of the name won the race.
            Err(StoreError::Duplicate(name)) => {
                return Err(DirectoryError::Taken {
                    kind: "scope",
                    id: name,
                });
            }
            other => other?,
        }
        self.registry.scopes().forget();
        tracing::info!(scope = %scope.name, "claim scope defined");
        Ok(StoredScope {
            scope,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        })
    }

    /// Replaces the definition of a stored claim scope (its claims and `access_token`; a scope
    /// is not renamed). Tokens issued from now on, `/userinfo` and introspection release what
    /// it says now; JWTs issued before keep what they carry.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field (`name` when it is not `name`), `Configured`, `NotFound`,
    /// `Store`.
    pub async fn update_scope(
        &self,
        name: &str,
        settings: ScopeSettings,
        now: u64,
    ) -> Result<StoredScope, DirectoryError> {
        if settings.name != name {
            return Err(invalid(
                "name",
                format!("must be `{name}`, the scope changed: a scope is not renamed"),
            ));
        }
        let definitions = self.scopes().await?;
        let scope = self.check_scope(settings, &definitions, Some(name)).await?;
        let created_at = definitions
            .find(name)
            .and_then(|entry| entry.created_at)
            .unwrap_or(now);
        if !self.store.update_scope(&scope, now).await? {
            return Err(DirectoryError::NotFound {
                kind: "scope",
                id: name.to_owned(),
            });
        }
        self.registry.scopes().forget();
        tracing::info!(scope = %name, "claim scope changed");
        Ok(StoredScope {
            scope,
            created_at,
            updated_at: now,
            deleted_at: None,
        })
    }

    /// Deletes a stored claim scope: it is withdrawn — no grant gives it any more, even to a
    /// client that still lists it — and it releases no claim any more, to `/userinfo` or at
    /// introspection; tokens already issued stay valid until they expire (JWTs keep the claims
    /// they carry).
    ///
    /// # Errors
    ///
    /// `Configured`, `NotFound`, `Store`.
    pub async fn delete_scope(&self, name: &str, now: u64) -> Result<(), DirectoryError> {
        if self.is_configured_scope(name) {
            return Err(DirectoryError::Configured {
                kind: "scope",
                id: name.to_owned(),
            });
        }
        let deleted = self.store.delete_scope(name, now).await?;
        self.registry.scopes().forget();
        if !deleted {
            return Err(DirectoryError::NotFound {
                kind: "scope",
                id: name.to_owned(),
            });
        }
        tracing::info!(scope = %name, "claim scope deleted");
        Ok(())
    }

    fn is_configured_scope(&self, name: &str) -> bool {
        self.config
            .scopes
            .iter()
            .any(|scope| scope.name.as_str() == name)
    }

    /// The one check of a definition against what exists now (`replacing`: the stored
    /// definition it takes the place of).
    async fn check_scope(
        &self,
        settings: ScopeSettings,
        definitions: &Definitions,
        replacing: Option<&str>,
    ) -> Result<CustomScope, DirectoryError> {
        if replacing.is_some_and(|name| self.is_configured_scope(name)) {
            return Err(DirectoryError::Configured {
                kind: "scope",
                id: settings.name,
            });
        }
        if let Some(name) = replacing
            && definitions.find(name).is_none()
        {
            return Err(DirectoryError::NotFound {
                kind: "scope",
                id: name.to_owned(),
            });
        }
        let others: Vec<CustomScope> = definitions
            .stored()
            .iter()
            .filter(|scope| Some(scope.name.as_str()) != replacing)
            .cloned()
            .collect();
        let apis: Vec<Arc<Api>> = self
            .registry
            .all_apis()
            .await?
            .into_iter()
            .filter(|api| api.id != self.config.issuer)
            .collect();
        let defined = config::Defined {
            configured: definitions.configured(),
            stored: &others,
            apis: &apis,
            sources: Some(&self.config.claim_sources),
        };
        config::build_scope("", settings, &defined).map_err(|refused| match refused {
            config::ScopeRefused::Invalid(error) => DirectoryError::Invalid(error),
            config::ScopeRefused::Defined { name, configured } => {
                if configured {
                    DirectoryError::Configured {
                        kind: "scope",
                        id: name,
                    }
                } else {
                    DirectoryError::Taken {
                        kind: "scope",
                        id: name,
                    }
                }
            }
            refused @ config::ScopeRefused::OwnedByApi { .. } => DirectoryError::Clash {
                field: "name".to_owned(),
                reason: refused.to_string(),
            },
        })
    }
}
