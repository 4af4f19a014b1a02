//! Reading a JWK Set (RFC 7517) into keys ready to verify with. Keys are parsed once, when the
//! set is fetched, never per token.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::algorithm::{Algorithm, KeyKind};
use crate::error::InvalidToken;
use crate::json;

/// Members that carry private or symmetric key material; a key published with any of them is
/// never used (the issuer is leaking secrets, and an `oct` key would allow HMAC forgery).
const SECRET_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// RSA keys below this size are refused (RFC 8725 §3.5, NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// JWK members are written by the issuer, not by the token's bearer: accept them padded or not.
const LENIENT_BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One published key, parsed for each algorithm it may verify.
pub(crate) struct VerifyingKey {
    kid: Option<Box<str>>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
    /// Identifies the key material (and kid) across refreshes of the set.
    fingerprint: u64,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithms: Vec<_> = self.verifiers.iter().map(|(alg, _)| alg.as_str()).collect();
        formatter
            .debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &algorithms)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(candidate, _)| *candidate == alg)
            .map(|(_, key)| key)
    }
}

/// A key that was published but will not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkippedKey {
    pub(crate) kid: Option<String>,
    pub(crate) reason: String,
}

/// The usable keys of one JWK Set.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<VerifyingKey>,
    /// The keys' fingerprints, sorted: every cache hit asks whether its key is still published,
    /// and a binary search over these stays flat however many keys there are (a scan of `keys`
    /// touches each key's memory).
    fingerprints: Vec<u64>,
}

impl KeySet {
    /// Parses a JWK Set document. Keys that cannot be used are skipped and reported; a
    /// document that is not a JWK Set, or has no usable key at all, is an error.
    pub(crate) fn from_jwks(
        document: &[u8],
        allowed: &[Algorithm],
        max_keys: usize,
    ) -> Result<(Self, Vec<SkippedKey>), String> {
        let object = json::parse_object(document)?;
        let Some(Value::Array(entries)) = object.get("keys") else {
            return Err("no \"keys\" array".to_owned());
        };
        if entries.len() > max_keys {
            return Err(format!(
                "{} keys, more than the {max_keys} allowed",
                entries.len()
            ));
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for entry in entries {
            let Value::Object(jwk) = entry else {
                skipped.push(SkippedKey {
                    kid: None,
                    reason: "not a JSON object".to_owned(),
                });
                continue;
            };
            match parse_jwk(jwk, allowed) {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(SkippedKey {
                    kid: jwk.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason,
                }),
            }
        }
        if keys.is_empty() {
            let reasons: Vec<_> = skipped.iter().map(|key| key.reason.as_str()).collect();
            return Err(format!("no usable signing key ({})", reasons.join("; ")));
        }
        let mut fingerprints: Vec<u64> = keys.iter().map(|key| key.fingerprint).collect();
        fingerprints.sort_unstable();
        Ok((Self { keys, fingerprints }, skipped))
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn contains_fingerprint(&self, fingerprint: u64) -> bool {
        self.fingerprints.binary_search(&fingerprint).is_ok()
    }

    /// Picks the one key that may verify a token with this `kid` and `alg`.
    ///
    /// A `kid` shared by several published keys is ambiguous and matches nothing; a token
    /// without `kid` is accepted only when exactly one key can verify its algorithm.
    pub(crate) fn select(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(&VerifyingKey, &ParsedPublicKey), InvalidToken> {
        let mut found: Option<&VerifyingKey> = None;
        for key in &self.keys {
            let matches = match kid {
                Some(kid) => key.kid.as_deref() == Some(kid),
                None => key.verifier(alg).is_some(),
            };
            if matches {
                if found.is_some() {
                    return Err(InvalidToken::AmbiguousKey(match kid {
                        Some(_) => "several published keys share this kid",
                        None => "token has no kid and several keys could verify it",
                    }));
                }
                found = Some(key);
            }
        }
        let Some(key) = found else {
            return Err(InvalidToken::UnknownKey(shorten(kid.unwrap_or_default())));
        };
        match key.verifier(alg) {
            Some(verifier) => Ok((key, verifier)),
            None => Err(InvalidToken::KeyAlgorithmMismatch {
                kid: shorten(kid.unwrap_or_default()),
                alg: alg.as_str(),
            }),
        }
    }
}

/// `kid` values come from the token: keep them short in errors and logs.
fn shorten(kid: &str) -> String {
    kid.chars().take(64).collect()
}

fn parse_jwk(jwk: &Map<String, Value>, allowed: &[Algorithm]) -> Result<VerifyingKey, String> {
    if let Some(member) = SECRET_MEMBERS
        .iter()
        .find(|member| jwk.contains_key(**member))
    {
        return Err(format!(
            "contains private or secret key material (`{member}`)"
        ));
    }
    let kid = optional_string(jwk, "kid")?;
    if let Some(usage) = optional_string(jwk, "use")?
        && usage != "sig"
    {
        return Err(format!("`use` is {usage:?}, not \"sig\""));
    }
    if let Some(operations) = jwk.get("key_ops") {
        let operations = operations.as_array().ok_or("`key_ops` is not an array")?;
        if !operations
            .iter()
            .any(|operation| operation.as_str() == Some("verify"))
        {
            return Err("`key_ops` does not include \"verify\"".to_owned());
        }
    }
    let declared = match optional_string(jwk, "alg")? {
        Some(name) => Some(
            declared_algorithm(&name, jwk).ok_or_else(|| format!("unsupported `alg` {name:?}"))?,
        ),
        None => None,
    };
    let kty = optional_string(jwk, "kty")?.ok_or("no `kty`")?;
    let (kind, material) = match kty.as_str() {
        "RSA" => (KeyKind::Rsa, rsa_material(jwk)?),
        "EC" => ec_material(jwk)?,
        "OKP" => okp_material(jwk)?,
        other => return Err(format!("unsupported `kty` {other:?}")),
    };
    if let Some(declared) = declared
        && declared.key_kind() != kind
    {
        return Err(format!("`alg` {declared} does not fit this {kty} key"));
    }
    let mut verifiers = Vec::new();
    for &alg in allowed {
        if alg.key_kind() != kind || declared.is_some_and(|declared| declared != alg) {
            continue;
        }
        let parsed = match &material {
            KeyMaterial::Rsa { n, e } => {
                let parameters = alg.rsa_parameters().ok_or("not an RSA algorithm")?;
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(parameters)
            }
            KeyMaterial::Raw(bytes) => ParsedPublicKey::new(alg.verification(), bytes),
        };
        verifiers.push((
            alg,
            parsed.map_err(|error| format!("key rejected: {error}"))?,
        ));
    }
    if verifiers.is_empty() {
        return Err("no allowed algorithm fits this key".to_owned());
    }
    Ok(VerifyingKey {
        fingerprint: fingerprint(kid.as_deref(), &material),
        kid: kid.map(String::into_boxed_str),
        verifiers,
    })
}

/// A key's `alg`. Besides the registered names, `ES521` on a P-521 key is read as ES512: a
/// misspelling found in published keys (Wycheproof's copy of RFC 7520's P-521 key carries it),
/// and harmless, since a P-521 key verifies nothing but ES512 anyway. Never in a token header.
fn declared_algorithm(name: &str, jwk: &Map<String, Value>) -> Option<Algorithm> {
    Algorithm::from_name(name).or_else(|| {
        (name == "ES521" && jwk.get("crv").and_then(Value::as_str) == Some("P-521"))
            .then_some(Algorithm::ES512)
    })
}

enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed EC point or an Ed25519 public key, as aws-lc-rs takes them.
    Raw(Vec<u8>),
}

fn rsa_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, String> {
    let n = required_bytes(jwk, "n")?;
    let e = required_bytes(jwk, "e")?;
    if n.is_empty() || e.is_empty() {
        return Err("RSA `n` or `e` is empty".to_owned());
    }
    if n.first() == Some(&0) || e.first() == Some(&0) {
        return Err("RSA `n` or `e` has leading zero bytes".to_owned());
    }
    let bits = n.len() * 8 - n.first().map_or(8, |byte| byte.leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA modulus of {bits} bits, fewer than {MIN_RSA_BITS}"
        ));
    }
    // e must be odd and at least 3; more than 64 bits is not a real exponent.
    let exponent_is_valid = e.len() <= 8
        && e.last().is_some_and(|byte| byte & 1 == 1)
        && e.iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
            >= 3;
    if !exponent_is_valid {
        return Err("RSA public exponent is not an odd number of at least 3".to_owned());
    }
    if has_roca_fingerprint(&n) {
        return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361): factorable".to_owned());
    }
    Ok(KeyMaterial::Rsa { n, e })
}

/// The first odd primes: every ROCA prime has the form `k·M + (65537^a mod M)` where `M` is a
/// primorial of at least the first 39 primes (up to 167), so for each of these primes `n mod p`
/// lies in the subgroup generated by 65537. A random modulus passes all of them with negligible
/// probability.
const ROCA_PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// Detects moduli generated by the Infineon RSALib flaw (Nemec et al., CCS 2017).
fn has_roca_fingerprint(modulus: &[u8]) -> bool {
    ROCA_PRIMES.iter().all(|&prime| {
        let residue = modulus
            .iter()
            .fold(0u32, |acc, byte| (acc * 256 + u32::from(*byte)) % prime);
        let generator = 65537 % prime;
        let mut element = 1;
        loop {
            if element == residue {
                return true;
            }
            element = element * generator % prime;
            if element == 1 {
                return false;
            }
        }
    })
}

fn ec_material(jwk: &Map<String, Value>) -> Result<(KeyKind, KeyMaterial), String> {
    let curve = optional_string(jwk, "crv")?.ok_or("EC key without `crv`")?;
    let (kind, size) = match curve.as_str() {
        "P-256" => (KeyKind::P256, 32),
        "P-384" => (KeyKind::P384, 48),
        "P-521" => (KeyKind::P521, 66),
        other => return Err(format!("unsupported curve {other:?}")),
    };
    let x = required_bytes(jwk, "x")?;
    let y = required_bytes(jwk, "y")?;
    if x.len() != size || y.len() != size {
        return Err(format!("{curve} coordinates must be {size} bytes each"));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok((kind, KeyMaterial::Raw(point)))
}

fn okp_material(jwk: &Map<String, Value>) -> Result<(KeyKind, KeyMaterial), String> {
    let curve = optional_string(jwk, "crv")?.ok_or("OKP key without `crv`")?;
    if curve != "Ed25519" {
        return Err(format!("unsupported curve {curve:?}"));
    }
    let x = required_bytes(jwk, "x")?;
    if x.len() != 32 {
        return Err("Ed25519 `x` must be 32 bytes".to_owned());
    }
    Ok((KeyKind::Ed25519, KeyMaterial::Raw(x)))
}

fn optional_string(jwk: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

fn required_bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let encoded = optional_string(jwk, name)?.ok_or_else(|| format!("missing `{name}`"))?;
    LENIENT_BASE64URL
        .decode(encoded)
        .map_err(|_| format!("`{name}` is not base64url"))
}

fn fingerprint(kid: Option<&str>, material: &KeyMaterial) -> u64 {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(kid.unwrap_or_default().as_bytes());
    context.update(&[0]);
    match material {
        KeyMaterial::Rsa { n, e } => {
            context.update(n);
            context.update(&[0]);
            context.update(e);
        }
        KeyMaterial::Raw(bytes) => context.update(bytes),
    }
    let digest = context.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair,
        EcdsaSigningAlgorithm, KeyPair as _,
    };
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    fn ec_jwk(signing: &'static EcdsaSigningAlgorithm, curve: &str, alg: &str) -> Vec<u8> {
        let pair = EcdsaKeyPair::generate(signing).unwrap();
        let point = pair.public_key().as_ref();
        let size = (point.len() - 1) / 2;
        let jwk = json!({
            "kty": "EC", "crv": curve, "alg": alg,
            "x": URL_SAFE_NO_PAD.encode(&point[1..=size]),
            "y": URL_SAFE_NO_PAD.encode(&point[size + 1..]),
        });
        serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap()
    }

    #[test]
    fn es521_is_read_as_es512_on_a_p521_key_only() {
        let p521 = ec_jwk(&ECDSA_P521_SHA512_FIXED_SIGNING, "P-521", "ES521");
        let (keys, skipped) = KeySet::from_jwks(&p521, &Algorithm::ALL, 4).unwrap();
        assert_eq!((keys.len(), skipped.len()), (1, 0));
        assert!(keys.select(None, Algorithm::ES512).is_ok());

        let p256 = ec_jwk(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "ES521");
        let refused = KeySet::from_jwks(&p256, &Algorithm::ALL, 4)
            .map(|_| ())
            .unwrap_err();
        assert!(refused.contains("unsupported `alg` \"ES521\""), "{refused}");
    }
}
