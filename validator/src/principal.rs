//! The verified identity behind a token.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::scope::{Requirement, ScopeSet};

/// Who a verified token speaks for, and what it grants.
///
/// Built only by the validator, from a token whose signature, issuer, audience and lifetime
/// have been checked. Every claim of the token stays available through [`claims`](Self::claims)
/// and [`deserialize_claims`](Self::deserialize_claims).
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    // `sub`, `client_id`/`azp`, `iss` and `jti` are read from `claims`, whose types the
    // validator checked: no second copy per token.
    pub(crate) scopes: ScopeSet,
    pub(crate) audiences: Vec<String>,
    pub(crate) expires_at: Option<Duration>,
    pub(crate) issued_at: Option<Duration>,
    pub(crate) claims: Map<String, Value>,
    /// Which deny set last found this principal not revoked: a cached principal is looked up
    /// again only once the set has changed.
    pub(crate) revocation_check: RevocationCheck,
}

/// What the revocation check remembers about a principal: the version of the last deny set
/// that found it not revoked (0 for none), and its identifiers as the deny set looks them up,
/// computed once. A memo, not part of what the principal says: clones copy it, comparisons
/// ignore it.
#[derive(Default)]
pub(crate) struct RevocationCheck {
    passed: AtomicU64,
    identifiers: OnceLock<[Option<u64>; 4]>,
}

impl RevocationCheck {
    pub(crate) fn passed(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    pub(crate) fn record_pass(&self, version: u64) {
        self.passed.store(version, Ordering::Relaxed);
    }

    /// The identifiers, computed by `compute` the first time.
    pub(crate) fn identifiers(
        &self,
        compute: impl FnOnce() -> [Option<u64>; 4],
    ) -> [Option<u64>; 4] {
        *self.identifiers.get_or_init(compute)
    }
}

impl Clone for RevocationCheck {
    fn clone(&self) -> Self {
        Self {
            passed: AtomicU64::new(self.passed()),
            identifiers: self.identifiers.clone(),
        }
    }
}

impl PartialEq for RevocationCheck {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for RevocationCheck {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "RevocationCheck({})", self.passed())
    }
}

impl Principal {
    /// `sub`: the user for tokens issued to a person, the client for client credentials.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.string_claim("sub")
    }

    /// `client_id` (RFC 9068 §2.2), or `azp` when the issuer writes that instead.
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.string_claim("client_id")
            .or_else(|| self.string_claim("azp"))
    }

    /// The granted scopes, from `scope` (or `scp`), as a string or an array.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// `iss`, equal to the configured issuer.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.string_claim("iss").unwrap_or_default()
    }

    /// `aud`, as one or more values; at least one is a configured audience.
    #[must_use]
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// `exp`: always present for a JWT; an introspection answer may leave it out.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
    }

    /// `iat`, when present.
    #[must_use]
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
    }

    /// `jti`, when present.
    #[must_use]
    pub fn token_id(&self) -> Option<&str> {
        self.string_claim("jti")
    }

    /// `cnf.jkt` (RFC 9449 §6.1): the SHA-256 thumbprint of the key this token is bound to, for
    /// a DPoP-bound token — from a JWT's claims or an introspection answer alike. The validator
    /// refuses a token whose `cnf` is not an object or whose `jkt` is not a thumbprint, so
    /// `None` means the token names no DPoP key.
    ///
    /// # Security
    /// A bound token is only good with a proof made with that key (RFC 9449 §7.1), never as
    /// a bearer token (§7.2): see [`dpop::DpopVerifier`](crate::dpop::DpopVerifier) and
    /// [`dpop::check_bearer_use`](crate::dpop::check_bearer_use).
    #[must_use]
    pub fn bound_key_thumbprint(&self) -> Option<&str> {
        self.claims.get("cnf")?.get("jkt")?.as_str()
    }

    /// The parties acting for the subject (RFC 8693 §4.1 `act`), the current actor first, then
    /// the ones before it: `["api-b", "api-a"]` for a token API A exchanged and API B exchanged
    /// again. Empty for a token used by its subject's own client. An actor without a string
    /// `sub` ends the list.
    ///
    /// # Security
    /// Only the current (first) actor is the party presenting the token; the ones after it are
    /// history, for audit, never for access decisions (RFC 8693 §4.1).
    #[must_use]
    pub fn actors(&self) -> Vec<&str> {
        let mut actors = Vec::new();
        let mut act = self.claims.get("act");
        while let Some(subject) = act.and_then(|act| act.get("sub")).and_then(Value::as_str) {
            actors.push(subject);
            act = act.and_then(|act| act.get("act"));
        }
        actors
    }

    fn string_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Every claim of the token, as JSON.
    #[must_use]
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// One claim, as JSON.
    #[must_use]
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// The claims as the application's own type.
    ///
    /// # Errors
    /// When the claims do not fit `T` (a missing field, a wrong type).
    pub fn deserialize_claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(Value::Object(self.claims.clone()))
    }

    /// Checks the granted scopes against a route's requirement for a request `method`.
    ///
    /// # Errors
    /// [`Error::InsufficientScope`] naming the scopes the route needs.
    pub fn check(&self, requirement: &Requirement, method: &str) -> Result<(), Error> {
        requirement
            .check(&self.scopes, method)
            .map_err(Error::InsufficientScope)
    }
}
