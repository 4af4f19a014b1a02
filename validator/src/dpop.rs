//! DPoP (RFC 9449), everything that knows no HTTP and is shared by the token service (proofs at
//! `/token`) and any resource server (proofs beside a DPoP-bound token):
//!
//! - [`verify_proof`]: the checks of §4.3 that need no storage;
//! - [`ReplayCache`]: that a proof's `jti` is used once within the window (§11.1);
//! - [`DpopNonces`]: server-provided nonces (§8, §9) that need no storage either;
//! - [`DpopVerifier`]: the one rule for a request to a protected resource (§7.1) — the proof,
//!   its key against the token's `cnf.jkt`, the nonce, the replay — and [`check_bearer_use`],
//!   the rule for a token presented as a bearer token (§7.2);
//! - [`ExternalOrigin`]: where clients reach the server, from which `htu` is rebuilt.

mod nonce;
mod origin;
mod replay;
mod verifier;

use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use url::Url;

use crate::algorithm::Algorithm;
use crate::json;
use crate::jwk::KeySet;

pub use nonce::DpopNonces;
pub use origin::ExternalOrigin;
pub use replay::ReplayCache;
pub use verifier::{DpopVerifier, DpopVerifierBuilder, check_bearer_use};

/// Proofs longer than this are refused before decoding (a proof with an RSA 4096 key is
/// under 2 KiB).
const MAX_PROOF_BYTES: usize = 8 * 1024;

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The request's method (`htm`).
    pub method: &'a str,
    /// The request's URL as the server is reached from outside (`htu`); query and fragment
    /// are ignored. Never built from an unchecked `Host` header.
    pub url: &'a str,
    /// The access token presented with the proof, whose hash the proof must carry (`ath`);
    /// `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// The nonce the server expects (RFC 9449 §8/§9), if it uses nonces.
    pub nonce: Option<&'a str>,
    /// Now, as seconds since the epoch.
    pub now: Duration,
    /// How far `iat` may be from now, either way.
    pub window: Duration,
    /// The algorithms a proof may be signed with.
    pub algorithms: &'a [Algorithm],
}

/// A proof that passed every check of RFC 9449 §4.3 but the single use of its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopProof {
    /// The RFC 7638 thumbprint (SHA-256, base64url) of the proof's key: what a bound token's
    /// `cnf.jkt` names.
    pub jkt: String,
    /// The proof's id, to be used once within the window.
    pub jti: String,
    /// When the proof was made (seconds since the epoch).
    pub issued_at: u64,
    /// The server nonce the proof carries (`nonce`), if any.
    pub nonce: Option<String>,
}

/// Why a proof is refused (RFC 9449 §7.1 `invalid_dpop_proof`, or `use_dpop_nonce`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a compact JWS, not JSON, a member of the wrong type, or too long.
    #[error("malformed DPoP proof: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    #[error("the proof's typ is not dpop+jwt")]
    WrongType,
    /// `alg` is not an allowed asymmetric algorithm (`none` and HMAC never are).
    #[error("the proof's alg {0:?} is not allowed")]
    Algorithm(String),
    /// The `jwk` header is missing, not a usable public key, or holds private members.
    #[error("the proof's jwk: {0}")]
    Key(String),
    /// The signature does not verify with the proof's own key.
    #[error("the proof's signature does not verify")]
    BadSignature,
    /// A required claim is missing or not of its type.
    #[error("the proof's `{0}` claim is missing or malformed")]
    Claim(&'static str),
    /// `htm` is not the request's method.
    #[error("the proof is for another method")]
    WrongMethod,
    /// `htu` is not the request's URL.
    #[error("the proof is for another URL")]
    WrongUrl,
    /// `iat` is outside the window.
    #[error("the proof's iat is outside the accepted window")]
    Stale,
    /// `ath` is not the hash of the presented access token.
    #[error("the proof is not for this access token")]
    WrongToken,
    /// The server's nonce is missing or another one (`use_dpop_nonce`).
    #[error("the proof lacks the server's current nonce")]
    UseNonce,
    /// The proof's `jti` was seen within the window (§11.1): a replayed proof.
    #[error("the proof was used before")]
    Replayed,
    /// The proof's key is not the one the access token is bound to (§7.1): someone else's
    /// token with one's own proof.
    #[error("the proof's key is not the one the token is bound to")]
    KeyMismatch,
    /// A token bound to no key presented with the DPoP scheme.
    #[error("the token is not bound to a key; it is a bearer token")]
    UnboundToken,
    /// A token bound to a key presented as a bearer token (§7.2).
    #[error("the token is bound to a key and needs a DPoP proof")]
    BoundToken,
}

impl DpopError {
    /// The error code that answers it (RFC 9449 §7.1, §9): `use_dpop_nonce` for a missing
    /// or old nonce, `invalid_token` when the token, not the proof, is at fault (a bound token
    /// presented as a bearer token, an unbound one with a proof), `invalid_dpop_proof`
    /// otherwise.
    #[must_use]
    pub fn rfc9449_code(&self) -> &'static str {
        match self {
            Self::UseNonce => "use_dpop_nonce",
            Self::UnboundToken | Self::BoundToken => "invalid_token",
            _ => "invalid_dpop_proof",
        }
    }
}

/// Checks `proof` against `request` (RFC 9449 §4.3, all but `jti` replay).
///
/// # Errors
///
/// The first [`DpopError`] found.
pub fn verify_proof(proof: &str, request: &DpopRequest<'_>) -> Result<DpopProof, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Malformed("too long"));
    }
    let Some([header, payload, signature]) = crate::jws::three_segments(proof) else {
        return Err(DpopError::Malformed("a proof is a JWS of three segments"));
    };
    let decode = |segment: &str| {
        URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| DpopError::Malformed("a segment is not base64url"))
    };
    let header = json::parse_object(&decode(header)?)
        .map_err(|_| DpopError::Malformed("the header is not a JSON object"))?;
    let claims = json::parse_object(&decode(payload)?)
        .map_err(|_| DpopError::Malformed("the claims are not a JSON object"))?;
    // What the signature covers: everything before the last dot.
    let signing_input = &proof[..proof.len() - signature.len() - 1];
    let signature = decode(signature)?;

    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::WrongType);
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let alg = Algorithm::from_name(alg_name)
        .filter(|alg| request.algorithms.contains(alg))
        .ok_or_else(|| DpopError::Algorithm(alg_name.to_owned()))?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(DpopError::Key("missing".to_owned()));
    };
    let jkt = thumbprint(jwk)?;
    let document = serde_json::json!({ "keys": [jwk] }).to_string();
    let (keys, skipped) =
        KeySet::from_jwks(document.as_bytes(), &[alg], 1).map_err(DpopError::Key)?;
    if let Some(skipped) = skipped.first() {
        return Err(DpopError::Key(skipped.reason.clone()));
    }
    let (_, verifier) = keys
        .select(None, alg)
        .map_err(|_| DpopError::Key("does not fit the alg".to_owned()))?;
    verifier
        .verify_sig(signing_input.as_bytes(), &signature)
        .map_err(|_| DpopError::BadSignature)?;

    let text = |name: &'static str| -> Result<&str, DpopError> {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .ok_or(DpopError::Claim(name))
    };
    let jti = text("jti")?;
    if text("htm")? != request.method {
        return Err(DpopError::WrongMethod);
    }
    if !same_target(text("htu")?, request.url) {
        return Err(DpopError::WrongUrl);
    }
    let issued_at = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(DpopError::Claim("iat"))?;
    let now = request.now.as_secs();
    if issued_at.abs_diff(now) > request.window.as_secs() {
        return Err(DpopError::Stale);
    }
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(nonce)) => Some(nonce.as_str()),
        Some(_) => return Err(DpopError::Claim("nonce")),
    };
    if let Some(expected) = request.nonce
        && nonce != Some(expected)
    {
        return Err(DpopError::UseNonce);
    }
    if let Some(token) = request.access_token {
        let hash = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()));
        if text("ath")? != hash {
            return Err(DpopError::WrongToken);
        }
    }
    Ok(DpopProof {
        jkt,
        jti: jti.to_owned(),
        issued_at,
        nonce: nonce.map(str::to_owned),
    })
}

/// `htu` against the request URL, without query and fragment (RFC 9449 §4.3 step 9), compared
/// after URL normalisation (scheme and host case, default port).
fn same_target(htu: &str, url: &str) -> bool {
    let strip = |text: &str| {
        Url::parse(text).ok().map(|mut url| {
            url.set_query(None);
            url.set_fragment(None);
            url
        })
    };
    matches!((strip(htu), strip(url)), (Some(left), Some(right)) if left == right)
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 over its required members in
/// lexicographic order, base64url.
///
/// # Errors
///
/// [`DpopError::Key`] for a key type without a thumbprint rule here, or a member missing.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, DpopError> {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return Err(DpopError::Key(format!("unsupported kty {kty:?}"))),
    };
    let mut canonical = Map::new();
    for member in members {
        let value = jwk
            .get(*member)
            .filter(|value| value.is_string())
            .ok_or_else(|| DpopError::Key(format!("no `{member}`")))?;
        canonical.insert((*member).to_owned(), value.clone());
    }
    // serde_json's map keeps keys sorted: the canonical, whitespace-free form RFC 7638 asks.
    let text = Value::Object(canonical).to_string();
    Ok(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use serde_json::json;

    use super::*;

    pub(super) const NOW: u64 = 1_800_000_000;
    pub(super) const URL: &str = "https://api.example.com/orders";
    pub(super) const TOKEN: &str = "an-access-token";

    pub(super) struct Key {
        pair: EcdsaKeyPair,
        pub(super) jwk: Value,
    }

    pub(super) fn key() -> Key {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        Key { pair, jwk }
    }

    pub(super) fn ath(token: &str) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
    }

    pub(super) fn claims() -> Value {
        json!({ "jti": "p-1", "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(TOKEN) })
    }

    pub(super) fn sign(key: &Key, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    pub(super) fn header(key: &Key) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk })
    }

    pub(super) fn request() -> DpopRequest<'static> {
        DpopRequest {
            method: "GET",
            url: URL,
            access_token: Some(TOKEN),
            nonce: None,
            now: Duration::from_secs(NOW),
            window: Duration::from_secs(60),
            algorithms: &Algorithm::ALL,
        }
    }

    #[test]
    fn a_good_proof_gives_its_key_thumbprint_and_jti() {
        let key = key();
        let proof = verify_proof(&sign(&key, &header(&key), &claims()), &request()).unwrap();
        assert_eq!(proof.jti, "p-1");
        assert_eq!(proof.issued_at, NOW);
        // RFC 7638 §3: the required members in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            key.jwk["x"].as_str().unwrap(),
            key.jwk["y"].as_str().unwrap()
        );
        let expected =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
        assert_eq!(proof.jkt, expected);
        // A query string on the request does not matter; scheme and host case do not either.
        let mut with_query = request();
        with_query.url = "https://API.example.com:443/orders?page=2";
        assert!(verify_proof(&sign(&key, &header(&key), &claims()), &with_query).is_ok());
    }

    #[test]
    fn every_rule_of_rfc_9449_section_4_3_is_enforced() {
        let key = key();
        let other = self::key();
        let good = claims();
        let with = |name: &str, value: Value| {
            let mut claims = good.clone();
            claims[name] = value;
            claims
        };
        let without = |name: &str| {
            let mut claims = good.clone();
            claims.as_object_mut().unwrap().remove(name);
            claims
        };
        let mut private = key.jwk.clone();
        private["d"] = json!("AAAA");
        let cases: Vec<(String, DpopError)> = vec![
            (
                sign(
                    &key,
                    &json!({ "typ": "JWT", "alg": "ES256", "jwk": key.jwk }),
                    &good,
                ),
                DpopError::WrongType,
            ),
            (
                sign(
                    &key,
                    &json!({ "typ": "dpop+jwt", "alg": "none", "jwk": key.jwk }),
                    &good,
                ),
                DpopError::Algorithm("none".into()),
            ),
            (
                sign(
                    &key,
                    &json!({ "typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk }),
                    &good,
                ),
                DpopError::Algorithm("HS256".into()),
            ),
            (
                sign(&key, &json!({ "typ": "dpop+jwt", "alg": "ES256" }), &good),
                DpopError::Key("missing".into()),
            ),
            (
                sign(
                    &key,
                    &json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": private }),
                    &good,
                ),
                DpopError::Key(String::new()),
            ),
            // Signed by another key than the one it names.
            (sign(&other, &header(&key), &good), DpopError::BadSignature),
            (
                sign(&key, &header(&key), &without("jti")),
                DpopError::Claim("jti"),
            ),
            (
                sign(&key, &header(&key), &with("htm", json!("POST"))),
                DpopError::WrongMethod,
            ),
            (
                sign(
                    &key,
                    &header(&key),
                    &with("htu", json!("https://api.example.com/other")),
                ),
                DpopError::WrongUrl,
            ),
            (
                sign(&key, &header(&key), &with("iat", json!(NOW - 600))),
                DpopError::Stale,
            ),
            (
                sign(&key, &header(&key), &with("iat", json!(NOW + 600))),
                DpopError::Stale,
            ),
            (
                sign(
                    &key,
                    &header(&key),
                    &with("ath", json!(ath("another token"))),
                ),
                DpopError::WrongToken,
            ),
            (
                sign(&key, &header(&key), &without("ath")),
                DpopError::Claim("ath"),
            ),
            ("a.b".to_owned(), DpopError::Malformed("")),
        ];
        for (proof, expected) in cases {
            let error = verify_proof(&proof, &request()).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&error),
                std::mem::discriminant(&expected),
                "{error:?}, expected {expected:?}"
            );
            if let (DpopError::Algorithm(found), DpopError::Algorithm(wanted)) = (&error, &expected)
            {
                assert_eq!(found, wanted);
            }
        }
    }

    #[test]
    fn a_server_nonce_must_be_echoed() {
        let key = key();
        let mut expecting = request();
        expecting.nonce = Some("n-1");
        let without = sign(&key, &header(&key), &claims());
        assert_eq!(verify_proof(&without, &expecting), Err(DpopError::UseNonce));
        let mut claims = claims();
        claims["nonce"] = json!("n-1");
        assert!(verify_proof(&sign(&key, &header(&key), &claims), &expecting).is_ok());
    }

    #[test]
    fn the_proofs_nonce_is_returned_and_must_be_a_string() {
        let key = key();
        let mut with_nonce = claims();
        with_nonce["nonce"] = json!("n-2");
        let proof = verify_proof(&sign(&key, &header(&key), &with_nonce), &request()).unwrap();
        assert_eq!(proof.nonce.as_deref(), Some("n-2"));
        with_nonce["nonce"] = json!(7);
        assert_eq!(
            verify_proof(&sign(&key, &header(&key), &with_nonce), &request()),
            Err(DpopError::Claim("nonce"))
        );
    }
}
