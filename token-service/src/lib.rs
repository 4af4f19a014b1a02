//! `scopegate-token-service`: a compact OAuth2 / OpenID Connect authorization server.
//!
//! The client credentials grant (JWT per RFC 9068 or opaque tokens, per client), the browser
//! sign-in with authorization code + PKCE, refresh tokens and OpenID Connect id_tokens,
//! introspection (RFC 7662) for registered APIs, revocation (RFC 7009), the JWKS with automatic
//! key rotation, and discovery (RFC 8414 / OpenID Connect). One instance on SQLite, or several
//! sharing Postgres.
//!
//! The domain — every module but [`http`] — knows no HTTP. [`http`] wraps it with routes,
//! layers, pages and the HTTP answers of its errors; start there to serve the service (its
//! `serve`) or to embed its routes (its `app`).

pub mod claim_sources;
pub mod client_assertion;
pub mod clients;
pub mod config;
pub mod credentials;
pub mod directory;
pub mod dpop;
pub mod error;
pub mod events;
pub mod grant;
pub mod http;
pub mod id_token;
pub mod keys;
pub mod opaque_token;
pub mod own_tokens;
pub mod rate_limits;
pub mod registration;
pub mod required_claims;
pub mod revocation;
pub mod rotation;
pub mod scope_catalogue;
pub mod sealing;
pub mod secret;
pub mod service_scopes;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use arc_swap::ArcSwap;
use scopegate_validator::{Clock, SystemClock};

pub use config::Config;

/// The global allocator the `token-service` binary (and its benchmarks) run on: the service
/// allocates and frees across threads on every request (runtime workers, the store's writer),
/// where glibc's allocator spent about a fifth of the service's CPU (BENCHMARKS.md).
pub use mimalloc::MiMalloc as Allocator;

use crate::clients::Registry;
use crate::keys::{KeyError, KeyRing};
use crate::secret::SecretVerifier;
use crate::store::{Store, StoreError};
use crate::users::Users;

/// The service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A signing key could not be generated or loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A signing key could not be added.
    #[error(transparent)]
    Rotation(#[from] rotation::RotationError),
    /// A stored secret could not be decrypted or re-encrypted.
    #[error(transparent)]
    Sealing(#[from] sealing::SealingError),
    /// The validators of the service's own tokens could not be built from the configuration.
    #[error("cannot verify the service's own tokens: {0}")]
    OwnTokens(#[from] scopegate_validator::BuildError),
    /// The shared DPoP nonce secret could not be used.
    #[error("cannot make DPoP nonces: {0}")]
    DpopNonces(scopegate_validator::BuildError),
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct State {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    keys: Arc<ArcSwap<KeyRing>>,
    /// The one path verifying this service's own JWTs, fed from `keys`.
    own_tokens: own_tokens::OwnTokens,
    /// Users, clients and APIs, and the use cases that change them.
    directory: directory::Directory,
    /// Client and API secrets.
    secrets: SecretVerifier,
    /// Users' passwords: slots of their own, so that neither kind can hold up the other.
    passwords: SecretVerifier,
    throttle: throttle::Throttle,
    rate_limits: rate_limits::RateLimits,
    /// The DPoP nonces of `/token` (`dpop.nonces`), under a secret every instance shares.
    dpop_nonces: Option<scopegate_validator::dpop::DpopNonces>,
    /// Verifiers of `private_key_jwt` assertions, one per party.
    assertion_verifiers: client_assertion::AssertionVerifiers,
    /// Where claim scopes read claims the user record does not hold.
    claim_sources: claim_sources::ClaimSources,
    clock: Arc<dyn Clock>,
    /// The revocation event stream's follower, started by the first poll.
    event_feed: tokio::sync::OnceCell<events::EventFeed>,
    /// Set when the service shuts down: held polls answer at once.
    closing: tokio::sync::watch::Sender<bool>,
}

impl State {
    /// Opens the configured store, creates the first signing key if there is none, and loads
    /// the keys.
    ///
    /// # Errors
    ///
    /// [`StartError`] if the store cannot be opened or a stored key cannot be loaded.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let pool = store::PoolSettings {
            max_connections: config.limits.database_connections,
            acquire_timeout: config.limits.database_wait,
        };
        let store = store::open_with(&config.storage, pool).await?;
        Self::with_store(config, store, Arc::new(SystemClock)).await
    }

    /// Like [`State::start`] with a given store and clock (tests).
    ///
    /// # Errors
    ///
    /// As [`State::start`].
    pub async fn with_store(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let now = clock.now().as_secs();
        let sealer = Arc::clone(&config.encryption);
        announce_encryption(&sealer, sealing::reseal_outdated(&*store, &sealer).await?);
        if store.list_keys().await?.is_empty() {
            // Instances starting at once on an empty store: one first key wins, all load it.
            if let Some(added) =
                rotation::add_key(&*store, &sealer, config.signing.algorithm, None, now, now)
                    .await?
            {
                tracing::info!(
                    kid = added.kid,
                    algorithm = config.signing.algorithm.as_str(),
                    "generated the first signing key"
                );
            }
        }
        let scopes =
            scope_catalogue::ScopeCatalogue::new(&config, Arc::clone(&store), Arc::clone(&clock));
        // Read once now: a store holding a definition this version cannot read stops the start.
        scopes.definitions().await?;
        let registry = Registry::new(&config, Arc::clone(&store), scopes)
            .with_internal_api(service_api(&config));
        let users = Users::new(&config, Arc::clone(&store));
        let ring = KeyRing::load(
            &store.list_keys().await?,
            &sealer,
            registry.retention().await?,
        )?;
        let keys = Arc::new(ArcSwap::from_pointee(ring));
        let own_tokens = own_tokens::OwnTokens::new(
            &config,
            &own_tokens::RingKeys::new(Arc::clone(&keys), Arc::clone(&clock)),
        )?;
        let throttle = throttle::Throttle::new(Arc::clone(&store));
        let dpop_nonces = if config.dpop.nonces {
            let secret = sealing::shared_secret(&*store, &sealer, "dpop_nonce", now).await?;
            Some(
                scopegate_validator::dpop::DpopNonces::from_secret(&secret)
                    .map_err(StartError::DpopNonces)?,
            )
        } else {
            None
        };
        let config = Arc::new(config);
        let directory = directory::Directory::from_parts(
            Arc::clone(&config),
            Arc::clone(&store),
            registry,
            users,
        );
        let claim_sources = claim_sources::ClaimSources::new(&config.claim_sources);
        let state = Self {
            inner: Arc::new(Shared {
                secrets: SecretVerifier::new(
                    secret::Checks::Secrets,
                    config.limits.max_concurrent_hashing,
                    config.limits.hashing_wait,
                ),
                passwords: SecretVerifier::new(
                    secret::Checks::Passwords,
                    config.limits.max_concurrent_hashing,
                    config.limits.hashing_wait,
                ),
                config,
                store,
                keys,
                own_tokens,
                directory,
                throttle,
                rate_limits: rate_limits::RateLimits::default(),
                dpop_nonces,
                assertion_verifiers: client_assertion::AssertionVerifiers::new(Arc::clone(&clock)),
                claim_sources,
                clock,
                event_feed: tokio::sync::OnceCell::new(),
                closing: tokio::sync::watch::Sender::new(false),
            }),
        };
        state.announce_signing_key();
        Ok(state)
    }

    /// Verifies this service's own JWTs (access tokens, id_token hints).
    #[must_use]
    pub fn own_tokens(&self) -> &own_tokens::OwnTokens {
        &self.inner.own_tokens
    }

    /// The checked configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The revocation event stream's follower, started on first use.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store cannot be read to start it.
    pub async fn event_feed(&self) -> Result<&events::EventFeed, StoreError> {
        self.inner
            .event_feed
            .get_or_try_init(|| events::EventFeed::start(Arc::clone(&self.inner.store)))
            .await
    }

    /// Becomes `true` when the service begins to shut down.
    #[must_use]
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Begins shutting down: held event polls are answered now, so that they do not hold up
    /// the end of the requests in flight.
    pub fn begin_closing(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Users, clients and APIs, and the use cases that create and remove them.
    #[must_use]
    pub fn directory(&self) -> &directory::Directory {
        &self.inner.directory
    }

    /// Clients and APIs, from the configuration and the store.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        self.inner.directory.registry()
    }

    /// The claim scopes, from the configuration and the store.
    #[must_use]
    pub fn scopes(&self) -> &scope_catalogue::ScopeCatalogue {
        self.inner.directory.registry().scopes()
    }

    /// The claim sources (`[[claim_sources]]`).
    #[must_use]
    pub fn claim_sources(&self) -> &claim_sources::ClaimSources {
        &self.inner.claim_sources
    }

    /// Users who may sign in.
    #[must_use]
    pub fn users(&self) -> &Users {
        self.inner.directory.users()
    }

    /// Login throttling.
    #[must_use]
    pub fn throttle(&self) -> &throttle::Throttle {
        &self.inner.throttle
    }

    /// The verifier of client and API secrets.
    #[must_use]
    pub fn secrets(&self) -> &SecretVerifier {
        &self.inner.secrets
    }

    /// The request rates of clients and APIs (this instance's).
    #[must_use]
    pub fn rate_limits(&self) -> &rate_limits::RateLimits {
        &self.inner.rate_limits
    }

    /// The DPoP nonces proofs at `/token` must carry, when `dpop.nonces` is on.
    #[must_use]
    pub fn dpop_nonces(&self) -> Option<&scopegate_validator::dpop::DpopNonces> {
        self.inner.dpop_nonces.as_ref()
    }

    /// The verifiers of `private_key_jwt` assertions.
    #[must_use]
    pub fn assertion_verifiers(&self) -> &client_assertion::AssertionVerifiers {
        &self.inner.assertion_verifiers
    }

    /// The verifier of users' passwords.
    #[must_use]
    pub fn passwords(&self) -> &SecretVerifier {
        &self.inner.passwords
    }

    /// The current key ring.
    #[must_use]
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.inner.keys.load()
    }

    /// Seconds since the epoch, from the injected clock.
    #[must_use]
    pub fn now(&self) -> u64 {
        self.inner.clock.now().as_secs()
    }

    /// The time since the epoch, from the injected clock, to its full precision.
    #[must_use]
    pub fn since_epoch(&self) -> std::time::Duration {
        self.inner.clock.now()
    }

    /// The secret `name` every instance shares (the CSRF key), decrypted.
    ///
    /// # Errors
    ///
    /// [`sealing::SealingError`] if the store fails or the secret cannot be decrypted.
    pub async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, sealing::SealingError> {
        sealing::shared_secret(
            &*self.inner.store,
            &self.inner.config.encryption,
            name,
            self.now(),
        )
        .await
    }

    /// Re-reads the keys from the store (picks up `token-service keys rotate` run elsewhere).
    ///
    /// # Errors
    ///
    /// [`StartError`] if the store fails or a key cannot be loaded; the current ring stays.
    pub async fn reload_keys(&self) -> Result<(), StartError> {
        let stored = self.inner.store.list_keys().await?;
        let ring = KeyRing::load(
            &stored,
            &self.inner.config.encryption,
            self.registry().retention().await?,
        )?;
        self.inner.keys.store(Arc::new(ring));
        self.inner.own_tokens.refresh().await;
        self.announce_signing_key();
        Ok(())
    }

    /// Tells the metrics since when the key signing now has signed.
    fn announce_signing_key(&self) {
        if let Some(active) = self.keys().active(self.now()) {
            telemetry::metrics::signing_key_in_use(active.activates_at);
        }
    }

    /// Adds the next signing key if the rotation schedule says it is time (see
    /// [`rotation`]); `Ok(None)` if it is not, or another instance did it first.
    ///
    /// # Errors
    ///
    /// [`StartError`] if the store fails or no key can be generated.
    pub async fn rotate_if_due(&self) -> Result<Option<rotation::AddedKey>, StartError> {
        let signing = &self.inner.config.signing;
        let Some(period) = signing.rotation_period else {
            return Ok(None);
        };
        let now = self.now();
        let ring = self.keys();
        let Some(activates_at) = rotation::due_activation(
            &ring,
            now,
            period.as_secs(),
            signing.announce_period.as_secs(),
        ) else {
            return Ok(None);
        };
        let newest = ring.all().last().map(|key| key.key.kid().to_owned());
        let added = rotation::add_key(
            &*self.inner.store,
            &self.inner.config.encryption,
            signing.algorithm,
            newest.as_deref(),
            now,
            activates_at,
        )
        .await?;
        if let Some(added) = &added {
            telemetry::metrics::key_rotated();
            tracing::info!(
                kid = added.kid,
                activates_at,
                "rotation: announced the next signing key"
            );
        }
        self.reload_keys().await?;
        Ok(added)
    }

    /// Runs the periodic jobs until the returned handle is dropped or aborted: every
    /// `signing.key_reload_interval`, re-read the keys and rotate when due; sweep expired rows.
    #[must_use]
    pub fn spawn_background(&self) -> BackgroundJobs {
        let state = self.clone();
        let handle = tokio::spawn(async move {
            let mut reload = tokio::time::interval(state.config().signing.key_reload_interval);
            let mut sweep = tokio::time::interval(state.config().sweep_interval);
            loop {
                tokio::select! {
                    _ = reload.tick() => {
                        if let Err(error) = state.reload_keys().await {
                            tracing::error!(%error, "could not reload signing keys; keeping the current ones");
                        } else if let Err(error) = state.rotate_if_due().await {
                            tracing::error!(%error, "could not rotate the signing key; retrying at the next reload");
                        }
                    }
                    _ = sweep.tick() => state.sweep().await,
                }
            }
        });
        BackgroundJobs(handle)
    }

    /// Deletes expired tokens and revocation records (a minute after expiry, for clock skew).
    pub async fn sweep(&self) {
        let cutoff = self.now().saturating_sub(60);
        match self.inner.store.sweep(cutoff).await {
            Ok(swept) => tracing::debug!(
                tokens = swept.tokens,
                revoked_jwts = swept.revoked_jwts,
                "swept expired rows"
            ),
            Err(error) => tracing::error!(%error, "sweeping expired rows failed"),
        }
    }
}

/// Says at start how secrets are kept: loudly when in clear, for then a copy of the database is
/// enough to sign tokens.
fn announce_encryption(sealer: &sealing::Sealer, resealed: usize) {
    match sealer.current_key_id() {
        None => tracing::warn!(
            "signing keys and the CSRF key are stored IN CLEAR: anyone with a copy of the \
             database can sign tokens. Set {} or `encryption_keys_file`",
            config::encryption::KEYS_VARIABLE
        ),
        Some(key_id) => tracing::info!(
            key_id,
            resealed,
            "signing keys and shared secrets are stored encrypted"
        ),
    }
}

/// The service itself as an API, owning [`service_scopes::fixed`] (and, through the registry,
/// the claim scopes of its catalogue): tokens carrying them are addressed to it. Nobody
/// introspects as it (its secret is random and thrown away): it reads its own tokens
/// in-process.
fn service_api(config: &Config) -> config::Api {
    config::Api {
        id: config.issuer.clone(),
        secret: Some(secret::SecretHash::hash(&secret::random_token())),
        keys: None,
        scopes: service_scopes::fixed(),
        registered_at: None,
        rate_limit: None,
    }
}

/// The periodic jobs; stopped when dropped.
#[derive(Debug)]
pub struct BackgroundJobs(tokio::task::JoinHandle<()>);

impl Drop for BackgroundJobs {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod assertions {
    fn send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn public_types_are_send_sync_clone() {
        send_sync_clone::<super::State>();
        send_sync_clone::<super::Config>();
        send_sync_clone::<super::error::OAuthError>();
    }
}
