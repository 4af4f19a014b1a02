//! The one rule for a DPoP-bound token at a protected resource (RFC 9449 §7): every entry
//! point — the tower layer, another framework's middleware — calls [`DpopVerifier::verify`] or
//! [`check_bearer_use`], and none re-states the checks.

use std::sync::Arc;
use std::time::Duration;

use super::{DpopError, DpopNonces, DpopProof, DpopRequest, ReplayCache, verify_proof};
use crate::algorithm::Algorithm;
use crate::error::BuildError;
use crate::principal::Principal;

/// The widest `iat` window accepted: proofs are meant to be made just before they are sent
/// (RFC 9449 §11.1).
const MAX_WINDOW: Duration = Duration::from_secs(300);

/// Checks a request that presents a DPoP-bound access token with a proof (RFC 9449 §7.1).
///
/// Cheap to clone (one `Arc`); clones share the replay cache, so build one per resource and
/// hand it to every route.
///
/// ```
/// use std::time::Duration;
/// use scopegate_validator::Algorithm;
/// use scopegate_validator::dpop::{DpopNonces, DpopVerifier};
///
/// let verifier = DpopVerifier::builder()
///     .algorithms([Algorithm::ES256, Algorithm::EdDSA])
///     .window(Duration::from_secs(30))
///     .replay_capacity(50_000)
///     .nonces(DpopNonces::random()?)
///     .build()?;
/// assert_eq!(verifier.algorithms(), [Algorithm::ES256, Algorithm::EdDSA]);
/// # Ok::<(), scopegate_validator::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    algorithms: Vec<Algorithm>,
    window: Duration,
    replay: ReplayCache,
    nonces: Option<DpopNonces>,
}

impl DpopVerifier {
    /// Starts a configuration; see [`DpopVerifierBuilder`] for the defaults.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder::default()
    }

    /// Checks `proof` (the `DPoP` header's value) for a request `method url` that presents
    /// `access_token`, already validated into `principal`, at `now` (seconds since the epoch;
    /// the validator's clock). Returns the proof, whose `jti` is now used up.
    ///
    /// In order: the token must be bound (`cnf.jkt`); the proof must pass every check of
    /// §4.3 ([`verify_proof`], `ath` against `access_token`, `htu` against `url` — build it
    /// from an [`ExternalOrigin`](super::ExternalOrigin), never from the `Host` header); its key
    /// must be the token's; with nonces on, it must carry a nonce of the moment (§9); and its
    /// `jti` must not have been seen within the window (§11.1). Only a proof that passes every
    /// other check uses up its `jti`.
    ///
    /// # Errors
    /// [`DpopError::UnboundToken`] for a token bound to no key; [`DpopError::KeyMismatch`] for a
    /// proof made with another key than the token's; [`DpopError::UseNonce`] for a missing or
    /// expired nonce; [`DpopError::Replayed`] for a `jti` seen before; any other
    /// [`DpopError`] for a proof that fails §4.3. [`DpopError::rfc9449_code`] says how to
    /// answer each.
    ///
    /// # Security
    /// RFC 9449 §7.1: this is what makes a stolen bound token useless without its private key.
    pub fn verify(
        &self,
        principal: &Principal,
        access_token: &str,
        proof: &str,
        method: &str,
        url: &str,
        now: Duration,
    ) -> Result<DpopProof, DpopError> {
        let bound_to = principal
            .bound_key_thumbprint()
            .ok_or(DpopError::UnboundToken)?;
        let inner = &*self.inner;
        let proof = verify_proof(
            proof,
            &DpopRequest {
                method,
                url,
                access_token: Some(access_token),
                // Checked below: any nonce of the current or the previous bucket will do.
                nonce: None,
                now,
                window: inner.window,
                algorithms: &inner.algorithms,
            },
        )?;
        // Thumbprints are public: no need for a constant-time comparison.
        if proof.jkt != bound_to {
            return Err(DpopError::KeyMismatch);
        }
        if let Some(nonces) = &inner.nonces {
            nonces.check(&proof, now)?;
        }
        inner.replay.first_use(&proof, now)?;
        Ok(proof)
    }

    /// The algorithms a proof may be signed with (for the `algs` of a `DPoP` challenge).
    #[must_use]
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.inner.algorithms
    }

    /// The server nonces, when on.
    #[must_use]
    pub fn nonces(&self) -> Option<&DpopNonces> {
        self.inner.nonces.as_ref()
    }

    /// How far a proof's `iat` may be from now, either way.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// The `jti`s remembered.
    #[must_use]
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.inner.replay
    }
}

/// Refuses a sender-constrained token presented as a bearer token (RFC 9449 §7.2): one that
/// carries a `cnf` claim — a DPoP key (`jkt`) or any other confirmation method, none of which a
/// bearer presentation can satisfy.
///
/// ```
/// # use scopegate_validator::dpop::check_bearer_use;
/// # fn route(principal: &scopegate_validator::Principal) -> Result<(), scopegate_validator::dpop::DpopError> {
/// check_bearer_use(principal)?; // before anything else is done with a bearer token
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`DpopError::BoundToken`] (answered `invalid_token`).
///
/// # Security
/// Without this, a stolen DPoP-bound token would work as a bearer token, which is what binding
/// is meant to prevent. Applies on every route, DPoP-aware or not.
pub fn check_bearer_use(principal: &Principal) -> Result<(), DpopError> {
    if principal.confirmed {
        Err(DpopError::BoundToken)
    } else {
        Ok(())
    }
}

/// Settings of a [`DpopVerifier`]. Defaults: every asymmetric algorithm
/// ([`Algorithm::ALL`]), a 60 s window either way (room for clock skew), 100 000 remembered
/// `jti`s, no server nonces.
#[derive(Debug, Clone)]
#[must_use]
pub struct DpopVerifierBuilder {
    algorithms: Vec<Algorithm>,
    window: Duration,
    replay_capacity: u64,
    nonces: Option<DpopNonces>,
}

impl Default for DpopVerifierBuilder {
    fn default() -> Self {
        Self {
            algorithms: Algorithm::ALL.to_vec(),
            window: Duration::from_secs(60),
            replay_capacity: 100_000,
            nonces: None,
        }
    }
}

impl DpopVerifierBuilder {
    /// The algorithms a proof may be signed with (asymmetric only: `none` and HMAC cannot be
    /// named).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How far a proof's `iat` may be from now, either way (default 60 s, at most 5 minutes).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many `jti`s are remembered at most (default 100 000); see [`ReplayCache`].
    pub fn replay_capacity(mut self, capacity: u64) -> Self {
        self.replay_capacity = capacity;
        self
    }

    /// Require a server nonce in every proof (RFC 9449 §9).
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Checks the settings and builds the verifier.
    ///
    /// # Errors
    /// A [`BuildError`] naming the field: `dpop_algorithms` (none), `dpop_window` (under 1 s,
    /// over 5 minutes, or not whole seconds), `dpop_replay_capacity` (0).
    pub fn build(mut self) -> Result<DpopVerifier, BuildError> {
        self.algorithms.dedup();
        if self.algorithms.is_empty() {
            return Err(BuildError::new(
                "dpop_algorithms",
                "at least one algorithm is required",
            ));
        }
        if self.window.subsec_nanos() != 0
            || !(Duration::from_secs(1)..=MAX_WINDOW).contains(&self.window)
        {
            return Err(BuildError::new(
                "dpop_window",
                "must be whole seconds, from 1 s to 5 minutes",
            ));
        }
        let replay = ReplayCache::new(self.replay_capacity, self.window)?;
        Ok(DpopVerifier {
            inner: Arc::new(Inner {
                algorithms: self.algorithms,
                window: self.window,
                replay,
                nonces: self.nonces,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::tests::{NOW, TOKEN, URL, claims, header, key, sign};
    use super::*;
    use crate::claims::{ClaimRules, check_answer};

    fn now() -> Duration {
        Duration::from_secs(NOW)
    }

    /// A principal from an introspection answer with these extra members.
    fn principal(extra: Value) -> Principal {
        let rules = ClaimRules {
            issuer: Arc::new("https://idp.example.com".to_owned()),
            audiences: vec!["api".to_owned()],
            leeway: Duration::ZERO,
            any_audience: false,
            accept_expired: false,
            scope_claim: None,
            interned: Arc::default(),
        };
        let mut answer = json!({ "sub": "user-1", "exp": NOW + 600 });
        for (name, value) in extra.as_object().unwrap() {
            answer[name] = value.clone();
        }
        let Value::Object(answer) = answer else {
            unreachable!()
        };
        check_answer(&answer, &rules, now()).unwrap()
    }

    fn bound_to(jkt: &str) -> Principal {
        principal(json!({ "cnf": { "jkt": jkt } }))
    }

    fn verifier() -> DpopVerifier {
        DpopVerifier::builder().build().unwrap()
    }

    #[test]
    fn a_proof_with_the_tokens_key_passes_once() {
        let key = key();
        let proof = sign(&key, &header(&key), &claims());
        let jkt = super::super::thumbprint(key.jwk.as_object().unwrap()).unwrap();
        let token = bound_to(&jkt);
        let verifier = verifier();
        let accepted = verifier
            .verify(&token, TOKEN, &proof, "GET", URL, now())
            .unwrap();
        assert_eq!(accepted.jkt, jkt);
        assert_eq!(
            verifier.verify(&token, TOKEN, &proof, "GET", URL, now()),
            Err(DpopError::Replayed)
        );
        // A clone shares what was seen.
        assert_eq!(
            verifier
                .clone()
                .verify(&token, TOKEN, &proof, "GET", URL, now()),
            Err(DpopError::Replayed)
        );
    }

    #[test]
    fn an_unbound_token_or_another_keys_proof_is_refused() {
        let key = key();
        let proof = sign(&key, &header(&key), &claims());
        assert_eq!(
            verifier().verify(&principal(json!({})), TOKEN, &proof, "GET", URL, now()),
            Err(DpopError::UnboundToken)
        );
        let thief = super::super::tests::key();
        let thiefs_proof = sign(&thief, &header(&thief), &claims());
        let jkt = super::super::thumbprint(key.jwk.as_object().unwrap()).unwrap();
        assert_eq!(
            verifier().verify(&bound_to(&jkt), TOKEN, &thiefs_proof, "GET", URL, now()),
            Err(DpopError::KeyMismatch)
        );
    }

    #[test]
    fn a_refused_proof_does_not_use_up_its_jti() {
        let key = key();
        let jkt = super::super::thumbprint(key.jwk.as_object().unwrap()).unwrap();
        let token = bound_to(&jkt);
        let verifier = verifier();
        let proof = sign(&key, &header(&key), &claims());
        assert_eq!(
            verifier.verify(&token, TOKEN, &proof, "POST", URL, now()),
            Err(DpopError::WrongMethod)
        );
        verifier
            .verify(&token, TOKEN, &proof, "GET", URL, now())
            .unwrap();
    }

    #[test]
    fn with_nonces_a_proof_needs_one_of_the_moment() {
        let key = key();
        let jkt = super::super::thumbprint(key.jwk.as_object().unwrap()).unwrap();
        let token = bound_to(&jkt);
        let nonces = DpopNonces::random()
            .unwrap()
            .rotating_every(Duration::from_secs(60))
            .unwrap();
        let verifier = DpopVerifier::builder()
            .nonces(nonces.clone())
            .build()
            .unwrap();
        let with_nonce = |jti: &str, nonce: Option<String>| {
            let mut claims = claims();
            claims["jti"] = json!(jti);
            if let Some(nonce) = nonce {
                claims["nonce"] = json!(nonce);
            }
            sign(&key, &header(&key), &claims)
        };
        let minute = Duration::from_secs(60);
        let cases = [
            (with_nonce("1", None), Err(DpopError::UseNonce)),
            (
                with_nonce("2", Some("made-up".into())),
                Err(DpopError::UseNonce),
            ),
            (
                with_nonce("3", Some(nonces.current(now() - minute * 2))),
                Err(DpopError::UseNonce),
            ),
            (
                with_nonce("4", Some(nonces.current(now() - minute))),
                Ok(()),
            ),
            (with_nonce("5", Some(nonces.current(now()))), Ok(())),
        ];
        for (index, (proof, expected)) in cases.into_iter().enumerate() {
            let outcome = verifier
                .verify(&token, TOKEN, &proof, "GET", URL, now())
                .map(|_| ());
            assert_eq!(outcome, expected, "case {index}");
        }
        assert_eq!(DpopError::UseNonce.rfc9449_code(), "use_dpop_nonce");
    }

    #[test]
    fn a_sender_constrained_token_is_never_a_bearer_token() {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        assert_eq!(check_bearer_use(&bound_to(jkt)), Err(DpopError::BoundToken));
        // Bound by another method (RFC 8705 mTLS): no bearer presentation satisfies it either.
        let mtls = principal(
            json!({ "cnf": { "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" } }),
        );
        assert_eq!(check_bearer_use(&mtls), Err(DpopError::BoundToken));
        assert_eq!(check_bearer_use(&principal(json!({}))), Ok(()));
        assert_eq!(DpopError::BoundToken.rfc9449_code(), "invalid_token");
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |builder: DpopVerifierBuilder| builder.build().unwrap_err().field();
        assert_eq!(
            field(DpopVerifier::builder().algorithms([])),
            "dpop_algorithms"
        );
        for window in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(301),
        ] {
            assert_eq!(field(DpopVerifier::builder().window(window)), "dpop_window");
        }
        assert_eq!(
            field(DpopVerifier::builder().replay_capacity(0)),
            "dpop_replay_capacity"
        );
    }
}
