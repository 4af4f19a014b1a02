//! Finding the access token in a request (RFC 6750 §2, RFC 9449 §7.1): the `Authorization`
//! header only; and the `DPoP` header that goes with a DPoP-bound token.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

/// The proof header of RFC 9449 §4.1.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credentials<'a> {
    /// A bearer token from the `Authorization` header, its characters not yet checked (the
    /// validator's first check is its RFC 6750 `b64token` syntax).
    Bearer(&'a str),
    /// A token presented with the `DPoP` scheme (RFC 9449 §7.1), unchecked as above.
    Dpop(&'a str),
    /// No credentials at all (no header, or another scheme such as Basic).
    Missing,
    /// Something RFC 6750 calls a malformed request (§3.1 `invalid_request`).
    Malformed(&'static str),
}

/// Reads the access token. `max_header_bytes` bounds the header before anything is decoded.
pub(crate) fn credentials<'a>(
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
    // Scheme names are case-insensitive (RFC 9110 §11.1).
    let dpop = scheme.eq_ignore_ascii_case("dpop");
    if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme carries no token: a bare challenge, as for no credentials.
        return Credentials::Missing;
    }
    let token = rest.trim_start_matches(' ');
    match (token.is_empty(), dpop) {
        (true, false) => Credentials::Malformed("Bearer without a token"),
        (true, true) => Credentials::Malformed("DPoP without a token"),
        (false, false) => Credentials::Bearer(token),
        (false, true) => Credentials::Dpop(token),
    }
}

/// The one `DPoP` header's value (RFC 9449 §4.3 steps 1–2: exactly one, a single JWT), or
/// why there is none to check.
pub(crate) fn dpop_proof(
    headers: &HeaderMap,
    max_header_bytes: usize,
) -> Result<&str, &'static str> {
    let mut values = headers.get_all(DPOP).iter();
    let value = values.next().ok_or("no DPoP header")?;
    if values.next().is_some() {
        return Err("more than one DPoP header");
    }
    if value.len() > max_header_bytes {
        return Err("DPoP header too large");
    }
    let proof = value
        .to_str()
        .map_err(|_| "DPoP header is not visible ASCII")?;
    if proof.is_empty() || proof.contains([' ', ',']) {
        return Err("the DPoP header is not a single JWT");
    }
    Ok(proof)
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
                credentials(&headers(&[value]), None, 8192),
                Credentials::Bearer("abc"),
                "{value}"
            );
        }
    }

    #[test]
    fn no_header_or_another_scheme_is_missing() {
        assert_eq!(credentials(&headers(&[]), None, 8192), Credentials::Missing);
        assert_eq!(
            credentials(&headers(&["Basic dXNlcjpwdw=="]), None, 8192),
            Credentials::Missing
        );
        assert_eq!(
            credentials(&headers(&["Bearerabc"]), None, 8192),
            Credentials::Missing
        );
    }

    #[test]
    fn malformed_requests_are_recognised() {
        let malformed = |headers: &HeaderMap, query| match credentials(headers, query, 8192) {
            Credentials::Malformed(_) => true,
            Credentials::Bearer(_) | Credentials::Dpop(_) | Credentials::Missing => false,
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
            credentials(&headers(&[&value]), None, 64),
            Credentials::Malformed("Authorization header too large")
        );
    }

    #[test]
    fn the_dpop_scheme_is_told_apart_whatever_its_case() {
        for value in ["DPoP abc", "dpop abc", "DPOP  abc"] {
            assert_eq!(
                credentials(&headers(&[value]), None, 8192),
                Credentials::Dpop("abc"),
                "{value}"
            );
        }
        assert!(matches!(
            credentials(&headers(&["DPoP"]), None, 8192),
            Credentials::Malformed(_)
        ));
        assert_eq!(
            credentials(&headers(&["DPoPabc"]), None, 8192),
            Credentials::Missing
        );
    }

    fn proofs(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(DPOP, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn exactly_one_dpop_header_holding_one_jwt_is_read() {
        assert_eq!(dpop_proof(&proofs(&[b"a.b.c"]), 8192), Ok("a.b.c"));
        for (headers, problem) in [
            (proofs(&[]), "no DPoP header"),
            (proofs(&[b"a.b.c", b"a.b.c"]), "more than one DPoP header"),
            (
                proofs(&[b"a.b.c, d.e.f"]),
                "the DPoP header is not a single JWT",
            ),
            (proofs(&[b""]), "the DPoP header is not a single JWT"),
            (proofs(&[b"a.b.\xff"]), "DPoP header is not visible ASCII"),
            (proofs(&[&[b'a'; 100]]), "DPoP header too large"),
        ] {
            assert_eq!(dpop_proof(&headers, 64), Err(problem));
        }
    }

    proptest! {
        #[test]
        fn reading_never_panics(value in "[ -~]{0,80}", query in ".{0,40}") {
            if let Ok(value) = HeaderValue::from_str(&value) {
                let mut map = HeaderMap::new();
                map.insert(AUTHORIZATION, value);
                let _ = credentials(&map, Some(&query), 64);
            }
        }

        #[test]
        fn reading_dpop_headers_never_panics(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..3),
        ) {
            let mut map = HeaderMap::new();
            for value in values {
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    map.append(DPOP, value);
                }
            }
            if let Ok(proof) = dpop_proof(&map, 64) {
                prop_assert!(!proof.is_empty() && proof.len() <= 64);
            }
        }
    }
}
