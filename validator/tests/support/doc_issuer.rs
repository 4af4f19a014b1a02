// An issuer in this process for the doc examples, which pull this file in with `include!`: an
// ES256 key, its JWK Set handed to the validator as a `KeySource` (no network), and RFC 9068
// access tokens signed with it. Not part of any API.

/// The issuer the doc examples trust.
#[allow(dead_code)]
struct DocIssuer {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    jwks: Vec<u8>,
}

#[derive(Debug)]
#[allow(dead_code)]
struct DocKeys(Vec<u8>);

impl scopegate_validator::KeySource for DocKeys {
    fn jwks(&self) -> Result<Vec<u8>, scopegate_validator::FetchError> {
        Ok(self.0.clone())
    }
}

#[allow(dead_code)]
impl DocIssuer {
    fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a P-256 key");
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": "doc", "alg": "ES256", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        }]});
        Self { pair, jwks: jwks.to_string().into_bytes() }
    }

    /// The issuer's keys, for `ValidatorBuilder::key_source`.
    fn keys(&self) -> DocKeys {
        DocKeys(self.jwks.clone())
    }

    /// An access token for `audience` granting `scope`, valid for five minutes.
    fn token(&self, audience: &str, scope: &str) -> String {
        self.token_with(audience, scope, serde_json::json!({}))
    }

    /// As `token`, bound to the DPoP key whose RFC 7638 thumbprint is `jkt` (`cnf.jkt`).
    fn bound_token(&self, audience: &str, scope: &str, jkt: &str) -> String {
        self.token_with(audience, scope, serde_json::json!({ "cnf": { "jkt": jkt } }))
    }

    fn token_with(&self, audience: &str, scope: &str, extra: serde_json::Value) -> String {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let header = serde_json::json!({ "alg": "ES256", "kid": "doc", "typ": "at+jwt" });
        let mut claims = serde_json::json!({
            "iss": "https://idp.example.com", "aud": audience, "sub": "jane",
            "client_id": "reports-app", "iat": now, "exp": now + 300, "jti": "doc-1",
            "scope": scope,
        });
        if let (Some(claims), serde_json::Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = self.pair.sign(&rng, input.as_bytes()).expect("a signature");
        format!("{input}.{}", b64(signature.as_ref()))
    }
}
