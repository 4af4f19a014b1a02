//! `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): instead of a secret, the client
//! sends a JWT it signed with its private key, a fresh one for each token request; the
//! authorization server checks it against the public key the client registered.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::error::BuildError;

/// The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion lives: it is made for one request, and servers refuse long-lived ones.
const LIFETIME: Duration = Duration::from_secs(60);

/// The algorithms a client can sign its assertions with: asymmetric ones only (a shared
/// secret would be `client_secret_jwt`, which this crate does not offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// Ed25519.
    EdDSA,
}

impl AssertionAlgorithm {
    fn jws(self) -> Algorithm {
        match self {
            Self::ES256 => Algorithm::ES256,
            Self::ES384 => Algorithm::ES384,
            Self::RS256 => Algorithm::RS256,
            Self::PS256 => Algorithm::PS256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// A client's private key for `private_key_jwt`
/// ([`TokenSourceBuilder::private_key_jwt`](crate::TokenSourceBuilder::private_key_jwt)).
///
/// # Security
/// Never printed: `Debug` output shows the algorithm and the key id only.
#[derive(Clone)]
pub struct AssertionKey {
    algorithm: AssertionAlgorithm,
    key: EncodingKey,
    kid: Option<String>,
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AssertionKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The claims RFC 7523 §3 asks of a client assertion.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

impl AssertionKey {
    /// A private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`) for ECDSA and Ed25519, PKCS#1 or
    /// PKCS#8 for RSA, to sign with `algorithm`.
    ///
    /// # Errors
    /// A [`BuildError`] for `private_key_jwt` when the PEM is not such a key, or the key cannot
    /// sign with `algorithm` (another curve, another kind of key): a test signature is made.
    pub fn from_pem(algorithm: AssertionAlgorithm, pem: &[u8]) -> Result<Self, BuildError> {
        let parsed = match algorithm {
            AssertionAlgorithm::ES256 | AssertionAlgorithm::ES384 => EncodingKey::from_ec_pem(pem),
            AssertionAlgorithm::RS256 | AssertionAlgorithm::PS256 => EncodingKey::from_rsa_pem(pem),
            AssertionAlgorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        };
        let key = Self {
            algorithm,
            key: parsed.map_err(|error| refused(algorithm, &error))?,
            kid: None,
        };
        key.sign("probe", "probe", SystemTime::now())
            .map_err(|error| refused(algorithm, &error))?;
        Ok(key)
    }

    /// The `kid` to put in each assertion's header: the id of the public key as registered,
    /// for a server holding several keys of the client.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// A fresh assertion of `client_id` for `audience`, made at `now`: `iss` and `sub` the
    /// client, a one-minute lifetime and a random 128-bit `jti` (servers take each once).
    pub(crate) fn sign(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| {
            jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::Provider(
                "no random bytes for the jti".to_owned(),
            ))
        })?;
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            iat,
            exp: iat + LIFETIME.as_secs(),
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let mut header = Header::new(self.algorithm.jws());
        header.typ = Some("JWT".to_owned());
        header.kid.clone_from(&self.kid);
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

fn refused(algorithm: AssertionAlgorithm, error: &jsonwebtoken::errors::Error) -> BuildError {
    BuildError::new(
        "private_key_jwt",
        format!("not a private key that signs {algorithm:?}: {error}"),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    /// A fresh P-256 key: its PKCS#8 PEM, and its public point's x and y (base64url).
    pub(crate) fn p256() -> (String, String, String) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        let point = pair.public_key().as_ref();
        (
            pem,
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        )
    }

    #[test]
    fn an_assertion_names_the_client_and_audience_for_one_minute_with_a_fresh_jti() {
        let (pem, x, y) = p256();
        let key = AssertionKey::from_pem(AssertionAlgorithm::ES256, pem.as_bytes())
            .unwrap()
            .with_kid("k1");
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = key.sign("svc", "https://idp.test", now).unwrap();
        let second = key.sign("svc", "https://idp.test", now).unwrap();

        let header = jsonwebtoken::decode_header(&first).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://idp.test"]);
        validation.set_issuer(&["svc"]);
        validation.validate_exp = false;
        let public = DecodingKey::from_ec_components(&x, &y).unwrap();
        let decode = |token: &str| {
            jsonwebtoken::decode::<serde_json::Value>(token, &public, &validation)
                .unwrap()
                .claims
        };
        let claims = decode(&first);
        assert_eq!(claims["sub"], "svc");
        assert_eq!(claims["iat"], 1_800_000_000);
        assert_eq!(claims["exp"], 1_800_000_060);
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(jti).unwrap().len(), 16);
        assert_ne!(
            decode(&second)["jti"],
            claims["jti"],
            "one jti per assertion"
        );
    }

    #[test]
    fn a_key_that_cannot_sign_with_its_algorithm_is_refused_when_built() {
        let (pem, _, _) = p256();
        for algorithm in [
            AssertionAlgorithm::ES384,
            AssertionAlgorithm::RS256,
            AssertionAlgorithm::PS256,
            AssertionAlgorithm::EdDSA,
        ] {
            let refused = AssertionKey::from_pem(algorithm, pem.as_bytes()).unwrap_err();
            assert_eq!(refused.field(), "private_key_jwt", "{algorithm:?}");
        }
        for junk in [
            &b""[..],
            b"not a pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let refused = AssertionKey::from_pem(AssertionAlgorithm::ES256, junk).unwrap_err();
            assert_eq!(refused.field(), "private_key_jwt");
        }
    }

    #[test]
    fn debug_shows_the_algorithm_and_kid_but_not_the_key() {
        let (pem, _, _) = p256();
        let key = AssertionKey::from_pem(AssertionAlgorithm::ES256, pem.as_bytes())
            .unwrap()
            .with_kid("k1");
        let printed = format!("{key:?}");
        assert!(
            printed.contains("ES256") && printed.contains("k1"),
            "{printed}"
        );
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        for chunk in body.as_bytes().chunks(16) {
            assert!(
                !printed.contains(std::str::from_utf8(chunk).unwrap()),
                "{printed}"
            );
        }
    }
}
