//! Several trusted issuers behind one [`Validator`]: each configured on its own (audiences,
//! algorithms, `typ`, introspection credentials, leeway, scope claim), a JWT routed by its
//! unverified `iss` to the one validator trusted for that name, which then verifies everything
//! (a token signed by issuer A that claims B's `iss` meets B's keys and fails). A name not on
//! the list is refused without any network call: strangers are never discovered.
//!
//! Opaque tokens, which name no issuer, are introspected at the issuers that have introspection
//! configured, in the order they were listed: the first that says active wins; when none does,
//! the token is inactive — unless one could not be asked, which makes the answer unavailable,
//! never invalid. Each issuer keeps its own caches.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::sync::Cache;
use serde::Deserialize;

use crate::error::{BuildError, Error, InvalidToken};
use crate::jws::{self, TokenShape};
use crate::principal::Principal;
use crate::verified::{self, DigestHash, TokenHash};
use crate::{Validator, introspect};

/// Routing hints kept: enough for every token in flight at a busy API, 40 bytes each.
const ROUTES: u64 = 100_000;

/// The trusted issuers, by name and in configured order.
pub(crate) struct IssuerSet {
    /// Each issuer's place in `ordered`.
    by_name: HashMap<Box<str>, usize>,
    /// Configured order; opaque tokens are introspected in it.
    ordered: Vec<Validator>,
    /// Which issuer verified a JWT (by the hash its verified-token cache keys it by), so that
    /// the warm path need not read the token's `iss` again. Only a hint: the issuer's own
    /// cache still decides, so a stale or wrong one costs a miss, never a wrong answer.
    routes: Cache<TokenHash, usize, DigestHash>,
}

impl std::fmt::Debug for IssuerSet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IssuerSet")
            .field("ordered", &self.ordered)
            .finish_non_exhaustive()
    }
}

/// Only `iss`, read from an unverified payload to pick the validator that verifies it.
#[derive(Deserialize)]
struct Claimed<'a> {
    #[serde(borrow)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

impl IssuerSet {
    pub(crate) fn new(validators: Vec<Validator>) -> Result<Self, BuildError> {
        if validators.is_empty() {
            return Err(BuildError::new(
                "issuers",
                "at least one issuer is required",
            ));
        }
        let mut by_name = HashMap::with_capacity(validators.len());
        for (place, validator) in validators.iter().enumerate() {
            if !validator.is_single() {
                return Err(BuildError::new(
                    "issuers",
                    "each issuer is one validator, not a set",
                ));
            }
            let name: Box<str> = validator.issuer().into();
            if by_name.insert(name, place).is_some() {
                return Err(BuildError::new(
                    "issuers",
                    format!("issuer {:?} is listed twice", validator.issuer()),
                ));
            }
        }
        Ok(Self {
            by_name,
            ordered: validators,
            routes: Cache::builder()
                .max_capacity(ROUTES)
                .build_with_hasher(DigestHash::default()),
        })
    }

    pub(crate) fn ordered(&self) -> &[Validator] {
        &self.ordered
    }

    /// The validator trusted for the token's claimed `iss`, and its place in the list.
    /// Nothing is verified here.
    fn route(&self, token: &str) -> Result<(usize, &Validator), InvalidToken> {
        let payload = token
            .split('.')
            .nth(1)
            .ok_or(InvalidToken::Malformed("a JWS has exactly three segments"))?;
        let decoded = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| InvalidToken::Malformed("payload is not base64url"))?;
        let claimed: Claimed<'_> =
            serde_json::from_slice(&decoded).map_err(|_| InvalidToken::Json {
                part: "claims",
                problem: "not a JSON object with a string `iss`".to_owned(),
            })?;
        let issuer = claimed.iss.ok_or(InvalidToken::Claim {
            name: "iss",
            problem: "missing",
        })?;
        let place = *self
            .by_name
            .get(issuer.as_ref())
            .ok_or(InvalidToken::WrongIssuer)?;
        Ok((place, &self.ordered[place]))
    }

    pub(crate) async fn validate(&self, token: &str) -> Result<Arc<Principal>, Error> {
        if token.is_empty() {
            return Err(Error::NoToken);
        }
        if !introspect::is_b64token(token) {
            return Err(InvalidToken::NotBearerSyntax.into());
        }
        if jws::shape(token) == TokenShape::Jws {
            let hash = verified::token_hash(token);
            let (place, validator) = self.route(token)?;
            let principal = validator.validate(token).await?;
            self.routes.insert(hash, place);
            return Ok(principal);
        }
        self.introspect(token).await
    }

    /// An opaque token: asked of each issuer with introspection, in order.
    async fn introspect(&self, token: &str) -> Result<Arc<Principal>, Error> {
        let mut unavailable = None;
        let mut refusal = None;
        for validator in self.ordered.iter().filter(|v| v.introspects()) {
            match validator.validate(token).await {
                Ok(principal) => return Ok(principal),
                Err(Error::Unavailable(error)) => {
                    unavailable.get_or_insert(Error::Unavailable(error));
                }
                Err(other) => {
                    refusal.get_or_insert(other);
                }
            }
        }
        Err(unavailable
            .or(refusal)
            .unwrap_or(Error::InvalidToken(InvalidToken::NotAJwt)))
    }

    /// A JWT verified before, from the cache of the issuer that verified it; `None` for
    /// anything else (which [`validate`](Self::validate) then handles in full).
    pub(crate) fn warm(&self, token: &str) -> Option<Arc<Principal>> {
        if !token.contains('.') {
            return None;
        }
        self.hinted(&verified::token_hash(token), token)
    }

    /// The principal from the verified-token cache of the issuer that verified `token` before.
    fn hinted(&self, hash: &TokenHash, token: &str) -> Option<Arc<Principal>> {
        let place = self.routes.get(hash)?;
        self.ordered.get(place)?.cached_jwt_hashed(hash, token)
    }

    pub(crate) fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        if token.contains('.') {
            let hash = verified::token_hash(token);
            if let Some(principal) = self.hinted(&hash, token) {
                return Some(principal);
            }
            if jws::shape(token) == TokenShape::Jws {
                return self.route(token).ok()?.1.cached(token);
            }
        }
        self.ordered
            .iter()
            .filter(|validator| validator.introspects())
            .find_map(|validator| validator.cached(token))
    }
}
