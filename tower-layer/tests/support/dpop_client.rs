//! A DPoP client for the tests: a key of the fake IdP's kinds (ES256, RS256, EdDSA) and proofs
//! made with it — good ones, and any header or claims a test wants to break.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;
use scopegate_validator::{Clock as _, MockClock};
use serde_json::{Value, json};

use crate::support::{SigningKey, b64};

pub struct DpopClient {
    pub key: SigningKey,
}

/// Proof ids unique across every test in the process.
fn next_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `ath`: base64url SHA-256 of the access token.
pub fn ath(token: &str) -> String {
    b64(digest::digest(&digest::SHA256, token.as_bytes()))
}

impl DpopClient {
    pub fn es256() -> Self {
        Self {
            key: SigningKey::es256("dpop"),
        }
    }

    /// A distinct RSA key, so that its thumbprint is not the IdP's.
    pub fn rs256() -> Self {
        Self {
            key: SigningKey::fresh_rs256("dpop"),
        }
    }

    pub fn eddsa() -> Self {
        Self {
            key: SigningKey::eddsa("dpop"),
        }
    }

    /// RFC 7638 thumbprint of the public key: the `cnf.jkt` of a token bound to it.
    pub fn jkt(&self) -> String {
        scopegate_validator::dpop::thumbprint(self.key.bare_jwk().as_object().unwrap()).unwrap()
    }

    /// `typ`, `alg` and the public `jwk`.
    pub fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": self.key.alg, "jwk": self.key.bare_jwk() })
    }

    /// Good claims for `method url` presenting `token`, made at the clock's now, a fresh `jti`.
    pub fn claims(&self, clock: &MockClock, method: &str, url: &str, token: &str) -> Value {
        json!({
            "jti": next_jti(),
            "htm": method,
            "htu": url,
            "iat": clock.now().as_secs(),
            "ath": ath(token),
        })
    }

    /// A good proof.
    pub fn proof(&self, clock: &MockClock, method: &str, url: &str, token: &str) -> String {
        self.sign(&self.header(), &self.claims(clock, method, url, token))
    }

    /// A good proof carrying the server's `nonce`.
    pub fn proof_with_nonce(
        &self,
        clock: &MockClock,
        method: &str,
        url: &str,
        token: &str,
        nonce: &str,
    ) -> String {
        let mut claims = self.claims(clock, method, url, token);
        claims["nonce"] = json!(nonce);
        self.sign(&self.header(), &claims)
    }

    /// Exactly this header and these claims, signed with this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.key.sign_raw(&header.to_string(), &claims.to_string())
    }
}
