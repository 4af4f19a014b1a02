//! Who may ask for tokens and who may introspect them: clients (configured, or added to the
//! store with `token-service client add`) and APIs (configured or added), and their
//! authentication; which APIs own a scope (the service itself among them, for the claim
//! scopes of its [`ScopeCatalogue`]), and which scopes no grant gives now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use scopegate_validator::ScopeSet;

use crate::config::{self, Api, Client, Config};
use crate::scope_catalogue::{ScopeCatalogue, Withdrawn};
use crate::store::{Store, StoreError};

/// How long a client, an API or a claim scope read from the store is used before it is read
/// again: also how long one added, changed or deleted at another instance may take to be seen
/// here.
pub const STORED_TTL: Duration = Duration::from_secs(10);

/// Clients and APIs, and the claim scopes they may be granted.
#[derive(Clone)]
pub struct Registry {
    configured: Arc<HashMap<String, Arc<Client>>>,
    apis: Arc<HashMap<String, Arc<Api>>>,
    longest_configured_ttl: Duration,
    store: Arc<dyn Store>,
    stored: moka::future::Cache<String, Option<Arc<Client>>>,
    /// Every API of the store, re-read at most every `STORED_TTL`.
    stored_apis: moka::future::Cache<(), Arc<Vec<Arc<Api>>>>,
    /// The claim scopes, which the service owns as the API
    /// [`with_internal_api`](Self::with_internal_api) adds.
    scopes: ScopeCatalogue,
    /// The id of the service's own API identity, once added.
    service_id: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Registry")
            .field("configured_clients", &self.configured.len())
            .field("apis", &self.apis.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The configured clients and APIs, the store for those added at run time, and the claim
    /// scopes.
    #[must_use]
    pub fn new(config: &Config, store: Arc<dyn Store>, scopes: ScopeCatalogue) -> Self {
        let _ = crate::secret::decoy_hash();
        Self {
            configured: Arc::new(
                config
                    .clients
                    .iter()
                    .map(|client| (client.id().to_owned(), Arc::new(client.clone())))
                    .collect(),
            ),
            apis: Arc::new(
                config
                    .apis
                    .iter()
                    .map(|api| (api.id.clone(), Arc::new(api.clone())))
                    .collect(),
            ),
            longest_configured_ttl: config.longest_access_token_ttl(),
            store,
            stored: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(STORED_TTL)
                .build(),
            stored_apis: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(STORED_TTL)
                .build(),
            scopes,
            service_id: None,
        }
    }

    /// The claim scopes.
    #[must_use]
    pub fn scopes(&self) -> &ScopeCatalogue {
        &self.scopes
    }

    /// A client by id: configured ones first, then the store.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store fails or holds a client this version cannot read.
    pub async fn client(&self, id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        if let Some(client) = self.configured.get(id) {
            return Ok(Some(Arc::clone(client)));
        }
        // No client has a longer id (`config::check_identifier`): such an id is unknown
        // without a lookup, and is never remembered, so that each entry of the unknown-id
        // cache costs a caller at most this many bytes.
        if id.len() > config::MAX_IDENTIFIER_BYTES {
            return Ok(None);
        }
        let store = Arc::clone(&self.store);
        self.stored
            .try_get_with(id.to_owned(), async move {
                Ok(store.find_client(id).await?.map(Arc::new))
            })
            .await
            .map_err(unshare)
    }

    /// Whether a token issued at `issued_at` to client `id` still has its client: the client
    /// exists and is not a later registration of the same id (a deleted client's JWTs stay
    /// refused even if the id is registered again).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store fails.
    pub async fn issued_to_live_client(
        &self,
        id: &str,
        issued_at: u64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .client(id)
            .await?
            .is_some_and(|client| client.registered_at.is_none_or(|at| issued_at >= at)))
    }

    /// Forgets what this instance remembers of stored client `id`, after it was added or
    /// deleted here (other instances notice within `STORED_TTL`).
    pub async fn forget_client(&self, id: &str) {
        self.stored.invalidate(id).await;
    }

    /// Forgets the stored APIs, after one was added or deleted here.
    pub async fn forget_apis(&self) {
        self.stored_apis.invalidate(&()).await;
    }

    /// The configured APIs (the service's own identity included).
    pub fn configured_apis(&self) -> impl Iterator<Item = &Arc<Api>> {
        self.apis.values()
    }

    /// Adds the service's own API identity, unless an API of that id is configured: it owns
    /// `api.scopes` (OpenID Connect's and the admin API's) and the catalogue's claim scopes.
    #[must_use]
    pub fn with_internal_api(mut self, api: Api) -> Self {
        self.service_id = Some(api.id.clone());
        let apis = Arc::make_mut(&mut self.apis);
        apis.entry(api.id.clone()).or_insert_with(|| Arc::new(api));
        self
    }

    /// Whether a client with this id exists in the configuration.
    #[must_use]
    pub fn is_configured(&self, id: &str) -> bool {
        self.configured.contains_key(id)
    }

    /// The configured clients.
    pub fn configured_clients(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.configured.values()
    }

    /// The APIs of the store (cached briefly).
    async fn stored_apis(&self) -> Result<Arc<Vec<Arc<Api>>>, StoreError> {
        let store = Arc::clone(&self.store);
        self.stored_apis
            .try_get_with((), async move {
                Ok::<_, StoreError>(Arc::new(
                    store.list_apis().await?.into_iter().map(Arc::new).collect(),
                ))
            })
            .await
            .map_err(unshare)
    }

    /// An API by id: configured ones first, then the store.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store fails or holds an API this version cannot read.
    pub async fn api(&self, id: &str) -> Result<Option<Arc<Api>>, StoreError> {
        if let Some(api) = self.apis.get(id) {
            return Ok(Some(Arc::clone(api)));
        }
        Ok(self
            .stored_apis()
            .await?
            .iter()
            .find(|api| api.id == id)
            .cloned())
    }

    /// Every API, configured (the service's own identity included) and stored.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the stored APIs cannot be read.
    pub async fn all_apis(&self) -> Result<Vec<Arc<Api>>, StoreError> {
        let stored = self.stored_apis().await?;
        Ok(self.apis.values().chain(stored.iter()).cloned().collect())
    }

    /// The ids of every API (configured or stored) that owns one of `scope`, the service's own
    /// among them for a claim scope.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the stored APIs or the claim scopes cannot be read.
    pub async fn apis_owning(&self, scope: &ScopeSet) -> Result<Vec<String>, StoreError> {
        let stored = self.stored_apis().await?;
        let mut owners: Vec<String> = self
            .apis
            .values()
            .chain(stored.iter())
            .filter(|api| scope.iter().any(|granted| api.owns(granted)))
            .map(|api| api.id.clone())
            .collect();
        if let Some(service) = &self.service_id {
            let definitions = self.scopes.definitions().await?;
            if scope.iter().any(|granted| definitions.owns(granted)) {
                owners.push(service.clone());
            }
        }
        owners.sort();
        owners.dedup();
        Ok(owners)
    }

    /// The scopes no grant gives now — those of deleted claim scopes that nothing defines again
    /// ([`crate::scope_catalogue`]) — judged for the scopes of `concerned` (every scope the
    /// caller will ask about: an API is looked for only when one of them needs it).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the claim scopes cannot be read.
    pub async fn withdrawn_scopes(&self, concerned: &[&ScopeSet]) -> Result<Withdrawn, StoreError> {
        let definitions = self.scopes.definitions().await?;
        let may_be_withdrawn = concerned
            .iter()
            .flat_map(|scopes| scopes.iter())
            .any(|scope| definitions.withdrawn_unless_owned(scope));
        if !may_be_withdrawn {
            return Ok(Withdrawn::new(definitions, Vec::new()));
        }
        let apis = match self.all_apis().await {
            Ok(apis) => apis,
            // Grants go on while the store is down: a deleted scope that a stored API has
            // taken over is withheld until the store answers again.
            Err(error) => {
                tracing::warn!(%error, "stored APIs unreadable: judging deleted scopes by the configured APIs");
                self.apis.values().cloned().collect()
            }
        };
        Ok(Withdrawn::new(definitions, apis))
    }

    /// How long a superseded signing key stays published: the longest access token lifetime
    /// any client can get, plus a minute for clock skew.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the stored clients cannot be read.
    pub async fn retention(&self) -> Result<Duration, StoreError> {
        let stored_longest = self
            .store
            .list_clients()
            .await?
            .iter()
            .filter_map(|client| client.settings.access_token_ttl)
            .max()
            .unwrap_or(Duration::ZERO);
        Ok(self.longest_configured_ttl.max(stored_longest) + Duration::from_secs(60))
    }
}

/// An error shared by every caller that waited for one store read.
fn unshare(error: Arc<StoreError>) -> StoreError {
    Arc::try_unwrap(error).unwrap_or_else(|shared| StoreError::Shared(shared.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqlStore;

    #[tokio::test]
    async fn an_id_longer_than_any_client_has_is_unknown_without_a_lookup_or_a_cache_entry() {
        let config = Config::from_toml(
            "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:8080\"\nstorage = \"sqlite::memory:\"\n",
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(SqlStore::sqlite("sqlite::memory:").await.unwrap());
        let scopes = ScopeCatalogue::new(
            &config,
            Arc::clone(&store),
            Arc::new(scopegate_validator::SystemClock),
        );
        let registry = Registry::new(&config, store, scopes);
        let long = "x".repeat(60 * 1024);
        assert!(registry.client(&long).await.unwrap().is_none());
        assert!(registry.client("unknown").await.unwrap().is_none());
        registry.stored.run_pending_tasks().await;
        // Only the short unknown id is remembered.
        assert_eq!(registry.stored.entry_count(), 1);
        assert!(registry.stored.contains_key("unknown"));
    }
}
