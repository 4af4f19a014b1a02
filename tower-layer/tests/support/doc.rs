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
