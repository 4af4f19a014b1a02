//! Interoperability with `jsonwebtoken`, the Rust ecosystem's common JWT crate, both ways:
//! tokens it signs, for every algorithm it and the validator share, are accepted by
//! scopegate-validator; the token service's access tokens, for every algorithm it signs with,
//! verify under `jsonwebtoken` with the service's published JWKS. (`jsonwebtoken` has no ES512:
//! its issue #250.)

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use scopegate_validator::{Algorithm, FetchError, KeySource, Validator};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.example.test";
const AUDIENCE: &str = "https://api.example.test";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A key pair: `jsonwebtoken`'s signing key and the public JWK the validator is given.
struct TestKey {
    algorithm: jsonwebtoken::Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn rsa(algorithm: jsonwebtoken::Algorithm, kid: &str) -> TestKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = pair.as_der().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    let public = pair.public_key();
    TestKey {
        algorithm,
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({
            "kty": "RSA", "kid": kid, "use": "sig",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        }),
    }
}

fn ec(
    algorithm: jsonwebtoken::Algorithm,
    signing: &'static EcdsaSigningAlgorithm,
    curve: &str,
    kid: &str,
) -> TestKey {
    let pair = EcdsaKeyPair::generate(signing).unwrap();
    let point = pair.public_key().as_ref();
    let size = (point.len() - 1) / 2;
    TestKey {
        algorithm,
        encoding: EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref()),
        jwk: json!({
            "kty": "EC", "crv": curve, "kid": kid, "use": "sig",
            "x": b64(&point[1..=size]), "y": b64(&point[size + 1..]),
        }),
    }
}

fn ed25519(kid: &str) -> TestKey {
    let pair = Ed25519KeyPair::generate().unwrap();
    TestKey {
        algorithm: jsonwebtoken::Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pair.to_pkcs8v1().unwrap().as_ref()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
            "x": b64(pair.public_key().as_ref()),
        }),
    }
}

#[derive(Debug)]
struct StaticKeys(Vec<u8>);

impl KeySource for StaticKeys {
    fn jwks(&self) -> Result<Vec<u8>, FetchError> {
        Ok(self.0.clone())
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn tokens_jsonwebtoken_signs_are_accepted_for_every_shared_algorithm() {
    use jsonwebtoken::Algorithm as Jwt;
    let keys = [
        rsa(Jwt::RS256, "rs256"),
        rsa(Jwt::RS384, "rs384"),
        rsa(Jwt::RS512, "rs512"),
        rsa(Jwt::PS256, "ps256"),
        rsa(Jwt::PS384, "ps384"),
        rsa(Jwt::PS512, "ps512"),
        ec(
            Jwt::ES256,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            "P-256",
            "es256",
        ),
        ec(
            Jwt::ES384,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            "P-384",
            "es384",
        ),
        ed25519("eddsa"),
    ];
    let jwks: Vec<&Value> = keys.iter().map(|key| &key.jwk).collect();
    let document = serde_json::to_vec(&json!({ "keys": jwks })).unwrap();
    let validator = Validator::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .algorithms(Algorithm::ALL)
        .key_source(StaticKeys(document))
        .build()
        .unwrap();

    let at = now();
    for key in &keys {
        let name = format!("{:?}", key.algorithm);
        // Every algorithm name jsonwebtoken writes is one the validator reads.
        assert!(Algorithm::from_name(&name).is_some(), "{name}");
        let mut header = Header::new(key.algorithm);
        header.kid = key.jwk["kid"].as_str().map(str::to_owned);
        header.typ = Some("at+jwt".to_owned());
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{name}"), "client_id": "c",
            "iat": at, "exp": at + 300, "jti": format!("t-{name}"),
            "scope": "akamai:social_profile:read openid",
        });
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        let principal = validator
            .validate(&token)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error:?}"));
        assert_eq!(principal.subject(), Some(format!("user-{name}").as_str()));
        assert_eq!(
            principal.scopes().to_string(),
            "akamai:social_profile:read openid"
        );

        // The control: the same token with one byte of its signature changed is refused.
        let mut tampered = token.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(validator.validate(&tampered).await.is_err(), "{name}");
    }
}

fn service_config(issuer: &str, algorithm: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[signing]
algorithm = "{algorithm}"

[[clients]]
id = "reader"
secret = "reader-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["{AUDIENCE}"]

[[apis]]
id = "{AUDIENCE}"
secret = "api-secret"
scopes = ["akamai:social_profile"]
"#
    )
}

#[tokio::test]
async fn the_token_services_tokens_verify_under_jsonwebtoken_for_every_signing_algorithm() {
    for (algorithm, expected) in [
        ("RS256", jsonwebtoken::Algorithm::RS256),
        ("ES256", jsonwebtoken::Algorithm::ES256),
        ("EdDSA", jsonwebtoken::Algorithm::EdDSA),
    ] {
        let issuer = common::serve_token_service(|issuer| service_config(issuer, algorithm)).await;

        let http = reqwest::Client::new();
        let answer =
            common::client_credentials(&format!("{issuer}/token"), ("reader", "reader-secret"), "")
                .await;
        let token = answer["access_token"].as_str().unwrap();
        let jwks: JwkSet = http
            .get(format!("{issuer}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();

        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, expected, "{algorithm}");
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .unwrap_or_else(|| panic!("{algorithm}: the token's kid is not published"));
        let mut validation = Validation::new(expected);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let decoded =
            jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
                .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
        assert_eq!(decoded.claims["sub"], "reader", "{algorithm}");
        assert_eq!(decoded.claims["client_id"], "reader", "{algorithm}");
        assert_eq!(
            decoded.claims["scope"], "akamai:social_profile:read",
            "{algorithm}"
        );

        // The control: jsonwebtoken refuses the token for another audience.
        let mut elsewhere = Validation::new(expected);
        elsewhere.set_audience(&["https://other.example.test"]);
        assert!(
            jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &elsewhere)
                .is_err()
        );
    }
}
