//! `private_key_jwt` (RFC 7523 §2.2 and §3, OpenID Connect Core §9): a client proves itself
//! with a short-lived JWT it signed, checked against the public keys it registered — inline, or
//! at its `jwks_uri`, fetched and cached by the same validator that checks access tokens
//! elsewhere (its TTLs, refetch cooldown and size limits). No password hash runs on this path.
//!
//! The rules: `iss` and `sub` are the client's id; `aud` names this service (its issuer, or
//! the token, introspection or revocation endpoint, as Spring Authorization Server accepts);
//! `exp` is at most [`MAX_LIFETIME`] away; an asymmetric `alg`; `jti` used once, at any
//! instance on the store, until the assertion expires.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use scopegate_validator::{Algorithm, BuildError, Clock, FetchError, KeySource, Validator};

use crate::State;
use crate::config::keys::AssertionKeys;
use crate::store::{StoreError, single_use_key};

/// The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The furthest `exp` may be from now: an assertion is made for one request.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY: Duration = Duration::from_secs(30);

/// Parties whose validators are kept (each holds its key set).
const CACHED_PARTIES: u64 = 10_000;

/// The algorithms an assertion may be signed with, for discovery's
/// `*_endpoint_auth_signing_alg_values_supported`: every asymmetric one (never `none` or
/// HMAC).
pub const ALGORITHMS: [Algorithm; 10] = Algorithm::ALL;

/// A party's registered JWK Set, as the validator's key source.
#[derive(Debug)]
struct RegisteredKeys(Arc<str>);

impl KeySource for RegisteredKeys {
    fn jwks(&self) -> Result<Vec<u8>, FetchError> {
        Ok(self.0.as_bytes().to_vec())
    }
}

/// One validator per party and key registration, built on first use.
#[derive(Debug, Clone)]
pub struct AssertionVerifiers {
    validators: moka::sync::Cache<String, Arc<Validator>>,
    clock: Arc<dyn Clock>,
}

/// Why an assertion was refused (logged at debug; the caller only hears `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not verified: signature, issuer, audience, lifetime, algorithm, format.
    Invalid(String),
    /// `sub` is not the party's id, or `jti` is missing.
    Claims(&'static str),
    /// `exp` is further away than [`MAX_LIFETIME`].
    TooLong,
    /// Its `jti` was used already.
    Replayed,
    /// The party's `jwks_uri` could not be read.
    KeysUnavailable(String),
}

impl AssertionVerifiers {
    /// Verifiers reading time from `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            validators: moka::sync::Cache::new(CACHED_PARTIES),
            clock,
        }
    }

    fn validator(
        &self,
        state: &State,
        party_id: &str,
        keys: &AssertionKeys,
    ) -> Result<Arc<Validator>, BuildError> {
        // The registration is part of the key: a party registered again with other keys is
        // never checked against the old ones.
        let cache_key = format!("{party_id}\0{}", keys.fingerprint());
        if let Some(found) = self.validators.get(&cache_key) {
            return Ok(found);
        }
        let base = state.config().base_url();
        let mut builder = Validator::builder()
            .issuer(party_id)
            .audiences([
                state.config().issuer.clone(),
                format!("{base}/token"),
                format!("{base}/introspect"),
                format!("{base}/revoke"),
            ])
            .algorithms(ALGORITHMS)
            .leeway(LEEWAY)
            .clock(Arc::clone(&self.clock))
            // Assertions are typed `JWT` or not at all and grant nothing: the access-token
            // rule would refuse them. The issuer (the client's id) and the audience (this
            // service) are what keep any other JWT out.
            .dangerous_accept_any_token_type()
            // Each assertion is checked once (its jti is single use): nothing to cache.
            .without_verified_token_cache();
        builder = match keys {
            AssertionKeys::Jwks(set) => builder.key_source(RegisteredKeys(Arc::clone(set))),
            AssertionKeys::JwksUri(uri) => {
                let loopback_http = uri.starts_with("http://");
                let builder = builder.jwks_url(uri);
                // `keys::check` allowed http on loopback only.
                if loopback_http {
                    builder.dangerous_allow_insecure_http()
                } else {
                    builder
                }
            }
        };
        let validator = Arc::new(builder.build()?);
        self.validators.insert(cache_key, Arc::clone(&validator));
        Ok(validator)
    }
}

/// Checks `assertion` as `party_id`'s, signed by one of `keys`, and spends its `jti`.
///
/// # Errors
///
/// [`StoreError`] if the store fails (the request is then refused as unavailable); a refused
/// assertion is `Ok(Err(_))`.
pub async fn verify(
    state: &State,
    party_id: &str,
    keys: &AssertionKeys,
    assertion: &str,
) -> Result<Result<(), Refusal>, StoreError> {
    let validator = match state.assertion_verifiers().validator(state, party_id, keys) {
        Ok(validator) => validator,
        Err(error) => return Ok(Err(Refusal::Invalid(error.to_string()))),
    };
    let principal = match validator.validate(assertion).await {
        Ok(principal) => principal,
        Err(scopegate_validator::Error::Unavailable(error)) => {
            return Ok(Err(Refusal::KeysUnavailable(error.to_string())));
        }
        Err(error) => return Ok(Err(Refusal::Invalid(error.to_string()))),
    };
    if principal.subject() != Some(party_id) {
        return Ok(Err(Refusal::Claims("`sub` must be the client's id")));
    }
    let Some(jti) = principal.token_id().filter(|jti| !jti.is_empty()) else {
        return Ok(Err(Refusal::Claims("`jti` is required")));
    };
    let now = state.now();
    let Some(expires_at) = principal
        .expires_at()
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map(|since| since.as_secs())
    else {
        return Ok(Err(Refusal::Claims("`exp` is required")));
    };
    if expires_at > now + MAX_LIFETIME.as_secs() {
        return Ok(Err(Refusal::TooLong));
    }
    let until = expires_at + LEEWAY.as_secs();
    if !state
        .store()
        .spend_once(&single_use_key("client-assertion", party_id, jti), until)
        .await?
    {
        return Ok(Err(Refusal::Replayed));
    }
    Ok(Ok(()))
}
