//! DPoP at the token endpoint (RFC 9449 §4–§5): the one check of a token request's proof, for
//! every grant. A proof that passes names the key (its `jkt`) the issued tokens are bound to.
//!
//! The storage-free checks of §4.3 are the validator's (`scopegate_validator::dpop`), shared
//! with the resource-server layer; this module adds what needs the service: the endpoint's own
//! URL, the configured window, the client's requirement, and the single use of each proof's
//! `jti` across every instance on the store.

use std::time::Duration;

use scopegate_validator::Algorithm;
use scopegate_validator::dpop::{self, DpopError, DpopRequest};

use crate::State;
use crate::config::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::store::single_use_key;

/// The algorithms a proof may be signed with: every asymmetric one the validator knows (never
/// `none` or HMAC, which it cannot represent); discovery's `dpop_signing_alg_values_supported`.
pub const PROOF_ALGORITHMS: [Algorithm; 10] = Algorithm::ALL;

/// A key the client proved it holds: the RFC 7638 thumbprint that a bound token's `cnf.jkt`
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofKey {
    /// The thumbprint (SHA-256, base64url).
    pub jkt: String,
}

/// The token endpoint's URL, as proofs must name it (`htu`).
#[must_use]
pub fn token_endpoint(state: &State) -> String {
    format!("{}/token", state.config().base_url())
}

/// A proof that passed every check but the single use of its `jti`, which [`accept`] spends
/// once the client is known to be entitled to a token.
#[derive(Debug)]
pub struct CheckedProof {
    jkt: String,
    single_use_key: [u8; 32],
    remembered_until: u64,
}

/// Checks the `DPoP` proof of a token request (at most one; the caller refuses two) before
/// the client is known, so a bad proof costs no client authentication; nothing is stored yet.
///
/// # Errors
///
/// `invalid_dpop_proof` for a proof that fails a check of RFC 9449 §4.3; `use_dpop_nonce`
/// (with the nonce to use) when nonces are on and it lacks an accepted one.
pub fn verify(state: &State, proof: Option<&str>) -> Result<Option<CheckedProof>, OAuthError> {
    let Some(proof) = proof else {
        return Ok(None);
    };
    let now = state.now();
    let window = state.config().dpop.proof_window;
    let url = token_endpoint(state);
    let request = DpopRequest {
        method: "POST",
        url: &url,
        access_token: None,
        nonce: None,
        now: Duration::from_secs(now),
        window,
        algorithms: &PROOF_ALGORITHMS,
    };
    let checked = dpop::verify_proof(proof, &request).map_err(refusal)?;
    if let Some(nonces) = state.dpop_nonces() {
        let now = Duration::from_secs(now);
        if nonces.check(&checked, now).is_err() {
            // RFC 9449 §8: the client retries with this one. The proof's jti is not spent.
            let mut error = OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the DPoP proof must carry the server's current nonce (DPoP-Nonce)",
            );
            error.dpop_nonce = Some(nonces.current(now));
            return Err(error);
        }
    }
    Ok(Some(CheckedProof {
        single_use_key: single_use_key("dpop-proof", &checked.jkt, &checked.jti),
        // Remembered until the proof falls out of the window it was accepted in.
        remembered_until: checked.issued_at.max(now) + window.as_secs(),
        jkt: checked.jkt,
    }))
}

/// The proof of an authenticated client's request, accepted: the client's rule first
/// (RFC 9449 §5.2 `dpop_bound_access_tokens`: a client that must bind its tokens gets none
/// without a proof), then the proof's `jti` spent, once across every instance on the store.
/// A request refused before this (a wrong secret, say) leaves its proof unspent.
///
/// # Errors
///
/// `invalid_dpop_proof` when `client` requires DPoP and there is no proof, or when the proof
/// was used already; `temporarily_unavailable` if the store fails.
pub async fn accept(
    state: &State,
    client: &Client,
    proof: Option<CheckedProof>,
) -> Result<Option<ProofKey>, OAuthError> {
    let Some(proof) = proof else {
        if client.settings.dpop_bound_access_tokens {
            return Err(OAuthError::invalid_dpop_proof(
                "this client's tokens are DPoP-bound: send a DPoP proof",
            ));
        }
        return Ok(None);
    };
    if !state
        .store()
        .spend_once(&proof.single_use_key, proof.remembered_until)
        .await?
    {
        return Err(OAuthError::invalid_dpop_proof(
            "the DPoP proof was used already",
        ));
    }
    Ok(Some(ProofKey { jkt: proof.jkt }))
}

/// The OAuth error for a refused proof (RFC 9449 §5.2: `invalid_dpop_proof`).
fn refusal(error: DpopError) -> OAuthError {
    OAuthError::invalid_dpop_proof(error.to_string())
}
