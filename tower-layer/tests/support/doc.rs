// For the doc examples, which pull this file in with `include!`: the in-process issuer of the
// validator's examples, a validator trusting it, and a way to send a request through a router.
// Not part of any API.

include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../validator/tests/support/doc_issuer.rs"
));

/// A validator for `https://api.example.com` trusting the in-process issuer.
#[allow(dead_code)]
fn doc_validator(issuer: &DocIssuer) -> scopegate_validator::Validator {
    scopegate_validator::Validator::builder()
        .issuer("https://idp.example.com")
        .audience("https://api.example.com")
        .algorithms([scopegate_validator::Algorithm::ES256])
        .key_source(issuer.keys())
        .build()
        .expect("a valid configuration")
}

/// Sends `method uri` with an optional bearer token; the status and the body.
#[allow(dead_code)]
async fn call(app: &axum::Router, method: &str, uri: &str, token: Option<&str>) -> (u16, String) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let mut request = axum::http::Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(axum::body::Body::empty()).expect("a request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("a body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A DPoP client for the doc examples: a P-256 key and proofs made with it.
#[allow(dead_code)]
struct DocDpopClient {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    jwk: serde_json::Value,
}

#[allow(dead_code)]
impl DocDpopClient {
    fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a P-256 key");
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
        });
        Self { pair, jwk }
    }

    /// The key's RFC 7638 thumbprint: what a token bound to it names in `cnf.jkt`.
    fn thumbprint(&self) -> String {
        let jwk = self.jwk.as_object().expect("an object");
        scopegate_validator::dpop::thumbprint(jwk).expect("a thumbprint")
    }

    /// A proof for `method url` presenting `token`, made now, with a fresh `jti`.
    fn proof(&self, method: &str, url: &str, token: &str) -> String {
        use base64::Engine as _;
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let ath = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
        let header = serde_json::json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk });
        let claims = serde_json::json!({
            "jti": format!("doc-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            "htm": method, "htu": url, "iat": now, "ath": ath,
        });
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

/// Sends `method uri` with `Authorization: DPoP <token>` and the proof; the status and the body.
#[allow(dead_code)]
async fn call_dpop(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    proof: &str,
) -> (u16, String) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(axum::body::Body::empty())
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("a body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
