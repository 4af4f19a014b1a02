//! JWTs made the way a client makes them, with a fresh ES256 key: DPoP proofs (RFC 9449 §4,
//! the public JWK in the header, one `jti` per proof) and client assertions (RFC 7523 §2.2).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The token endpoint of the in-process test service (its issuer is `http://127.0.0.1:8080`).
pub const TOKEN_URL: &str = "http://127.0.0.1:8080/token";

/// A client's ES256 key (DPoP, or private_key_jwt).
pub struct EcKey {
    pair: EcdsaKeyPair,
    /// Its public JWK.
    pub jwk: Value,
}

impl EcKey {
    pub fn generate() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        Self { pair, jwk }
    }

    /// Its RFC 7638 thumbprint.
    pub fn jkt(&self) -> String {
        scopegate_validator::dpop::thumbprint(self.jwk.as_object().unwrap()).unwrap()
    }

    /// The header of a proof by this key.
    pub fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk })
    }

    /// A fresh proof for `POST url` made at `iat`.
    pub fn proof(&self, url: &str, iat: u64) -> String {
        self.sign(&self.header(), &claims("POST", url, iat))
    }

    /// A proof of any header and claims, signed by this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// The claims of a proof for `method url` at `iat`, with a fresh `jti`.
pub fn claims(method: &str, url: &str, iat: u64) -> Value {
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).unwrap();
    json!({ "jti": URL_SAFE_NO_PAD.encode(jti), "htm": method, "htu": url, "iat": iat })
}

/// The claims of a client assertion by `client_id` for `audience`, made at `now`, with a fresh
/// `jti` and a one-minute lifetime.
pub fn assertion_claims(client_id: &str, audience: &str, now: u64) -> Value {
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).unwrap();
    json!({
        "iss": client_id, "sub": client_id, "aud": audience,
        "iat": now, "exp": now + 60, "jti": URL_SAFE_NO_PAD.encode(jti),
    })
}

impl EcKey {
    /// Its public JWK Set, with `kid`.
    pub fn jwks(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = kid.into();
        json!({ "keys": [jwk] })
    }

    /// A client assertion signed by this key, naming `kid`.
    pub fn assertion(&self, kid: &str, claims: &Value) -> String {
        self.sign(&json!({ "alg": "ES256", "typ": "JWT", "kid": kid }), claims)
    }
}

/// The TOML inline table of a JSON value (a JWK Set in a configuration).
pub fn toml_inline(value: &Value) -> String {
    match value {
        Value::Object(members) => {
            let inner: Vec<String> = members
                .iter()
                .map(|(key, value)| format!("{key} = {}", toml_inline(value)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(toml_inline).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}
