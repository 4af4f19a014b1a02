//! Entry points for the fuzz targets in the repository's `fuzz/` folder (feature `fuzzing`):
//! each hands untrusted bytes to one parser a remote party or an operator's file can reach.
//! Not part of the API.

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

use crate::config::{Config, MAX_IDENTIFIER_BYTES};
use crate::http::client_auth::{self, MAX_SECRET_BYTES};
use crate::http::form::Form;

const REPEATABLE: [&str; 1] = ["resource"];

/// An `application/x-www-form-urlencoded` body: what it accepts reads back parameter by
/// parameter as `form_urlencoded` decodes it.
pub fn form_body(input: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let Ok(form) = Form::parse(&headers, input, &REPEATABLE) else {
        return;
    };
    for (name, value) in form_urlencoded::parse(input) {
        if value.is_empty() {
            continue;
        }
        if REPEATABLE.contains(&name.as_ref()) {
            assert!(form.all(&name).iter().any(|kept| *kept == value));
        } else {
            assert_eq!(form.get(&name), Some(value.as_ref()));
        }
    }
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1) in the `Authorization` header: what is
/// accepted is within the bounds checked before any lookup.
pub fn basic_credentials(input: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(input) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    if let Ok(Some(credentials)) = client_auth::presented(&headers, &Form::default()) {
        assert!(credentials.id.len() <= MAX_IDENTIFIER_BYTES);
        assert!(
            credentials
                .secret()
                .is_none_or(|secret| secret.expose().len() <= MAX_SECRET_BYTES)
        );
    }
}

/// The configuration file (TOML), every check of its entries included.
pub fn config_file(input: &[u8]) {
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = Config::from_toml(text);
    }
}

/// An RFC 8936 poll body at `/ssf/poll`: what is accepted acknowledges no more events than the
/// bound, and asks for what its JSON says.
pub fn event_poll(input: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let Ok(poll) = crate::http::events::read_poll(&headers, input) else {
        return;
    };
    assert!(poll.acknowledged.len() <= crate::http::events::MAX_ACKNOWLEDGEMENTS);
    assert!(
        std::str::from_utf8(input).is_ok(),
        "an accepted poll is UTF-8"
    );
    // A member the service ignores may hold a number `Value` cannot (`1e999`: valid JSON, out
    // of an f64's range); the members read are compared when it can.
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(input) else {
        return;
    };
    assert_eq!(
        poll.max_events,
        body.get("maxEvents").and_then(serde_json::Value::as_u64)
    );
    assert_eq!(
        poll.return_immediately,
        body.get("returnImmediately") == Some(&serde_json::Value::Bool(true))
    );
}
