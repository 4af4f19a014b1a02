//! Finding the bearer token in a request (RFC 6750 §2): the `Authorization` header only.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credentials<'a> {
    /// A bearer token from the `Authorization` header, its characters not yet checked (the
    /// validator's first check is its RFC 6750 `b64token` syntax).
    Bearer(&'a str),
    /// No bearer credentials at all (no header, or another scheme such as Basic).
    Missing,
    /// Something RFC 6750 calls a malformed request (§3.1 `invalid_request`).
    Malformed(&'static str),
}

/// Reads the bearer token. `max_header_bytes` bounds the header before anything is decoded.
pub(crate) fn bearer<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
    max_header_bytes: usize,
) -> Credentials<'a> {
    // RFC 6750 §2.3 allows a query parameter, but it leaks tokens into logs and histories
    // (RFC 9700 §2.5); a client that sends one is told so rather than ignored.
    if query.is_some_and(has_access_token_parameter) {
        return Credentials::Malformed("access tokens are not accepted in the query string");
    }
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credentials::Missing;
    };
    if values.next().is_some() {
        return Credentials::Malformed("more than one Authorization header");
    }
    if value.len() > max_header_bytes {
        return Credentials::Malformed("Authorization header too large");
    }
    let Ok(value) = value.to_str() else {
        return Credentials::Malformed("Authorization header is not visible ASCII");
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme is not a bearer token: a bare challenge, as for no credentials.
        return Credentials::Missing;
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Credentials::Malformed("Bearer without a token");
    }
    Credentials::Bearer(token)
}

/// Names are form-decoded first: `access%5Ftoken` is `access_token` to any server that reads it.
fn has_access_token_parameter(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token")
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr  abc"] {
            assert_eq!(
                bearer(&headers(&[value]), None, 8192),
                Credentials::Bearer("abc"),
                "{value}"
            );
        }
    }

    #[test]
    fn no_header_or_another_scheme_is_missing() {
        assert_eq!(bearer(&headers(&[]), None, 8192), Credentials::Missing);
        assert_eq!(
            bearer(&headers(&["Basic dXNlcjpwdw=="]), None, 8192),
            Credentials::Missing
        );
        assert_eq!(
            bearer(&headers(&["Bearerabc"]), None, 8192),
            Credentials::Missing
        );
    }

    #[test]
    fn malformed_requests_are_recognised() {
        let malformed = |headers: &HeaderMap, query| match bearer(headers, query, 8192) {
            Credentials::Malformed(_) => true,
            Credentials::Bearer(_) => false,
            Credentials::Missing => false,
        };
        assert!(malformed(&headers(&["Bearer a", "Bearer b"]), None));
        assert!(malformed(&headers(&["Bearer"]), None));
        assert!(malformed(&headers(&["Bearer "]), None));
        assert!(malformed(&headers(&[]), Some("x=1&access_token=abc")));
        assert!(malformed(&headers(&[]), Some("access%5Ftoken=abc")));
        assert!(malformed(&headers(&[]), Some("access_token")));
        assert!(malformed(
            &headers(&["Bearer abc"]),
            Some("access_token=abc")
        ));
        assert!(!malformed(
            &headers(&["Bearer abc"]),
            Some("not_access_token=1")
        ));
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert!(malformed(&non_ascii, None));
    }

    #[test]
    fn an_oversized_header_is_refused_before_decoding() {
        let value = format!("Bearer {}", "a".repeat(100));
        assert_eq!(
            bearer(&headers(&[&value]), None, 64),
            Credentials::Malformed("Authorization header too large")
        );
    }

    proptest! {
        #[test]
        fn reading_never_panics(value in "[ -~]{0,80}", query in ".{0,40}") {
            if let Ok(value) = HeaderValue::from_str(&value) {
                let mut map = HeaderMap::new();
                map.insert(AUTHORIZATION, value);
                let _ = bearer(&map, Some(&query), 64);
            }
        }
    }
}
