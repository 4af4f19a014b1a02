//! The one path by which this service verifies the JWTs it issued: `scopegate-validator`, fed
//! the key ring in-process (no HTTP call to itself). Access tokens and `id_token_hint`s each
//! have a validator of their own; whether a verified token is still *active* (not revoked, its
//! client and user still there) is [`tokens::lookup`]'s question.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use scopegate_validator::{
    Algorithm, BoxFuture, BuildError, Clock, FetchError, IntrospectionSource, KeySource, Validator,
    ValidatorBuilder,
};
use serde_json::{Map, Value};

use crate::State;
use crate::config::Config;
use crate::keys::KeyRing;
use crate::tokens;

/// Clock skew tolerated on `iat`/`nbf` between instances. `exp` is held strictly by the
/// callers (an expired token of this service is inactive at once).
const LEEWAY: Duration = Duration::from_secs(5);

/// The key ring as the validator's key source: the keys published now.
#[derive(Debug, Clone)]
pub struct RingKeys {
    ring: Arc<ArcSwap<KeyRing>>,
    clock: Arc<dyn Clock>,
}

impl RingKeys {
    /// The keys of `ring` as published at `clock`'s now.
    #[must_use]
    pub fn new(ring: Arc<ArcSwap<KeyRing>>, clock: Arc<dyn Clock>) -> Self {
        Self { ring, clock }
    }
}

impl KeySource for RingKeys {
    fn jwks(&self) -> Result<Vec<u8>, FetchError> {
        let now = self.clock.now().as_secs();
        Ok(self.ring.load().jwks(now).to_string().into_bytes())
    }
}

/// Validators of this service's own JWTs.
#[derive(Debug, Clone)]
pub struct OwnTokens {
    access: Validator,
    hints: Validator,
    issuer: String,
    keys: RingKeys,
}

/// Every validator of this service's JWTs starts from this: its issuer, its algorithms, its
/// clock, its key ring.
fn base(issuer: &str, keys: &RingKeys) -> ValidatorBuilder {
    Validator::builder()
        .issuer(issuer)
        .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
        .leeway(LEEWAY)
        .clock(Arc::clone(&keys.clock))
        .key_source(keys.clone())
        // The key set changes only when the ring does, and the ring's owner refreshes the
        // validators then; the lifetime bounds how long a key retired by the clock alone stays.
        .jwks_ttl(
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .jwks_refetch_cooldown(Duration::from_secs(1))
}

impl OwnTokens {
    /// Validators for `config`'s issuer over `keys`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] if the issuer is not one the validator accepts.
    pub fn new(config: &Config, keys: &RingKeys) -> Result<Self, BuildError> {
        Ok(Self {
            // Introspection answers for every API, each judging its own audience.
            access: base(&config.issuer, keys)
                .required_typ("at+jwt")
                .dangerous_accept_any_audience()
                .build()?,
            // RP-Initiated Logout 1.0 §2: a hint may have expired; its `aud` is a client.
            hints: base(&config.issuer, keys)
                .required_typ("JWT")
                .dangerous_accept_any_audience()
                .dangerous_accept_expired()
                .build()?,
            issuer: config.issuer.clone(),
            keys: keys.clone(),
        })
    }

    /// A validator for access tokens addressed to this service itself (its `/userinfo`, its
    /// admin API), JWT or opaque, for its own `tower-scopegate` layers. Every token is also
    /// asked of [`tokens::lookup`], in-process and uncached, so a revoked token, or one whose
    /// client or user is gone, opens nothing.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] if the issuer is not one the validator accepts.
    pub fn for_own_routes(&self, state: &State) -> Result<Validator, BuildError> {
        base(&self.issuer, &self.keys)
            .audience(&self.issuer)
            .required_typ("at+jwt")
            .introspection_source(ActiveTokens(state.clone()))
            .introspect_jwts(true)
            .build()
    }

    /// Access tokens (`typ` at+jwt) of this issuer, of any audience; `exp` is checked with
    /// a few seconds' leeway, so callers hold it strictly.
    #[must_use]
    pub fn access_tokens(&self) -> &Validator {
        &self.access
    }

    /// id_tokens (`typ` JWT) of this issuer, expired or not: for `id_token_hint`.
    #[must_use]
    pub fn id_token_hints(&self) -> &Validator {
        &self.hints
    }

    /// Re-reads the key ring (after it changed).
    pub async fn refresh(&self) {
        for validator in [&self.access, &self.hints] {
            if let Err(error) = validator.refresh_keys().await {
                tracing::error!(%error, "could not refresh the service's own validators");
            }
        }
    }
}

/// [`tokens::lookup`] as an RFC 7662 answer, with every scope of the token: the service's own
/// routes see what they were granted.
#[derive(Debug, Clone)]
struct ActiveTokens(State);

impl IntrospectionSource for ActiveTokens {
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Map<String, Value>, FetchError>> {
        Box::pin(async move {
            match tokens::lookup(&self.0, token).await {
                Ok(Some(active)) => {
                    let scope = active.scope.clone();
                    Ok(tokens::introspection_answer(&self.0, active, &scope).into_map())
                }
                Ok(None) => Ok(Map::from_iter([("active".to_owned(), Value::Bool(false))])),
                Err(error) => Err(FetchError::InProcess {
                    what: "token store",
                    message: error.to_string(),
                }),
            }
        })
    }
}
