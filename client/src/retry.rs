//! The one rule both adapters follow after an API's answer: was the token refused, and if so,
//! which token (if any) the request is sent again with — once.

use http::{HeaderMap, StatusCode};

use crate::error::Error;
use crate::source::TokenSource;
use crate::token::AccessToken;

/// gRPC's `UNAUTHENTICATED`, as a trailers-only answer carries it in the headers.
const GRPC_UNAUTHENTICATED: &str = "16";

/// After an answer to a request sent with `used`: the token to send it again with, once, or
/// `None` to hand the answer to the caller.
///
/// A refused token (see [`token_refused`]) is reported to `tokens` whether or not the request
/// can be sent again, so that the next call gets a new one. The request is sent again only if
/// it `can_replay` and the token held now differs from `used` (it does not when another was
/// dropped within the cooldown).
///
/// # Errors
/// The token source's error when no new token could be obtained.
pub(crate) async fn token_for_retry(
    tokens: &TokenSource,
    used: &AccessToken,
    status: StatusCode,
    headers: &HeaderMap,
    can_replay: bool,
) -> Result<Option<AccessToken>, Error> {
    if !token_refused(status, headers) {
        return Ok(None);
    }
    tokens.invalidate(used);
    if !can_replay {
        tracing::debug!("the API refused the token; the request cannot be replayed, not retried");
        return Ok(None);
    }
    let fresh = tokens.token().await?;
    if fresh == *used {
        tracing::debug!("the API refused the token again; not retried within the cooldown");
        return Ok(None);
    }
    tracing::debug!("the API refused the token; retrying once with a new one");
    Ok(Some(fresh))
}

/// Whether an answer says the bearer token was refused: a 401 (or a gRPC `UNAUTHENTICATED`
/// answered in the headers) whose `Bearer` challenge names no error or `invalid_token`
/// (RFC 6750 §3.1). A challenge naming another error — `invalid_request`,
/// `insufficient_scope` — is not about the token's validity: a new one would not help. A 403
/// is never a refused token.
///
/// A 401 without any `Bearer` error counts: many APIs and gateways answer an expired token so,
/// and at most one retry follows.
pub(crate) fn token_refused(status: StatusCode, headers: &HeaderMap) -> bool {
    let unauthenticated = status == StatusCode::UNAUTHORIZED
        || headers
            .get("grpc-status")
            .is_some_and(|value| value.as_bytes() == GRPC_UNAUTHENTICATED.as_bytes());
    unauthenticated && bearer_error(headers).is_none_or(|error| error == "invalid_token")
}

/// The `error` of the first `Bearer` challenge that names one, in any `WWW-Authenticate`.
fn bearer_error(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .find_map(|value| challenge_error(&String::from_utf8_lossy(value.as_bytes()), "bearer"))
}

/// RFC 9110 §11.6.1: `challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, several
/// per header separated by commas, as are the parameters. A bare token after a comma starts a
/// new challenge; directly after a scheme it is a token68.
pub(crate) fn challenge_error(header: &str, wanted_scheme: &str) -> Option<String> {
    let mut reader = Reader {
        text: header.as_bytes(),
        at: 0,
    };
    let mut in_wanted = false;
    let mut after_scheme = false;
    loop {
        let comma = reader.skip_separators();
        if comma {
            after_scheme = false;
        }
        if reader.done() {
            return None;
        }
        let name = reader.token();
        if name.is_empty() {
            // Not a token (a stray `=` or quote): step over it.
            reader.at += 1;
            continue;
        }
        reader.skip_spaces();
        if reader.peek() == Some(b'=') && !reader.is_token68_padding() {
            reader.at += 1;
            reader.skip_spaces();
            let value = reader.value();
            if in_wanted && name.eq_ignore_ascii_case("error") {
                return Some(value);
            }
            after_scheme = false;
        } else if after_scheme {
            // A token68 (with its padding): no parameters to read.
            while reader.peek() == Some(b'=') {
                reader.at += 1;
            }
            after_scheme = false;
        } else {
            in_wanted = name.eq_ignore_ascii_case(wanted_scheme);
            after_scheme = true;
        }
    }
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Skips spaces and commas; whether there was a comma.
    fn skip_separators(&mut self) -> bool {
        let mut comma = false;
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\t' => {}
                b',' => comma = true,
                _ => break,
            }
            self.at += 1;
        }
        comma
    }

    fn token(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|byte| !matches!(byte, b' ' | b'\t' | b',' | b'=' | b'"'))
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    /// At an `=`: whether it is a token68's padding (more `=`, then the end or a comma) rather
    /// than a parameter's.
    fn is_token68_padding(&self) -> bool {
        let rest = &self.text[self.at..];
        let padding = rest.iter().take_while(|&&byte| byte == b'=').count();
        let after = rest[padding..]
            .iter()
            .find(|&&byte| !matches!(byte, b' ' | b'\t'));
        padding > 1 || matches!(after, None | Some(b','))
    }

    /// A token or a quoted-string (its escapes undone).
    fn value(&mut self) -> String {
        if self.peek() != Some(b'"') {
            return self.token();
        }
        self.at += 1;
        let mut value = Vec::new();
        while let Some(byte) = self.peek() {
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.at += 1;
                    }
                }
                _ => value.push(byte),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(challenges: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for challenge in challenges {
            headers.append(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_str(challenge).unwrap(),
            );
        }
        headers
    }

    fn refused(status: u16, challenges: &[&str]) -> bool {
        token_refused(StatusCode::from_u16(status).unwrap(), &headers(challenges))
    }

    #[test]
    fn an_invalid_token_401_is_a_refusal() {
        assert!(refused(
            401,
            &[r#"Bearer realm="api", error="invalid_token""#]
        ));
        assert!(refused(
            401,
            &[r#"Bearer realm="api", error="invalid_token", error_description="expired""#]
        ));
        // The example API's two challenges, the error on the Bearer one.
        assert!(refused(
            401,
            &[r#"Bearer realm="api", error="invalid_token", DPoP realm="api", algs="ES256 EdDSA""#]
        ));
        assert!(refused(
            401,
            &[r#"DPoP algs="ES256""#, r#"bearer error=invalid_token"#]
        ));
        // No challenge, or one naming no error: the token is taken as refused.
        assert!(refused(401, &[]));
        assert!(refused(401, &[r#"Bearer realm="api""#]));
    }

    #[test]
    fn other_errors_and_statuses_are_not_refusals() {
        assert!(!refused(
            403,
            &[r#"Bearer error="insufficient_scope", scope="a:b:delete""#]
        ));
        assert!(!refused(
            401,
            &[r#"Bearer error="insufficient_scope", scope="a:b:delete""#]
        ));
        assert!(!refused(401, &[r#"Bearer error="invalid_request""#]));
        // A 403 is about permission, whatever its challenge says.
        assert!(!refused(403, &[]));
        assert!(!refused(403, &[r#"Bearer error="invalid_token""#]));
        assert!(!refused(200, &[]));
        assert!(!refused(500, &[r#"Bearer error="invalid_token""#]));
    }

    #[test]
    fn a_grpc_unauthenticated_answer_is_a_refusal() {
        let mut unauthenticated = headers(&[r#"Bearer error="invalid_token""#]);
        unauthenticated.insert("grpc-status", HeaderValue::from_static("16"));
        assert!(token_refused(StatusCode::OK, &unauthenticated));
        let mut denied = headers(&[r#"Bearer error="insufficient_scope""#]);
        denied.insert("grpc-status", HeaderValue::from_static("7"));
        assert!(!token_refused(StatusCode::OK, &denied));
    }

    #[test]
    fn only_the_wanted_schemes_error_is_read() {
        let read = |header| challenge_error(header, "bearer");
        assert_eq!(
            read(r#"DPoP error="invalid_token", Bearer realm="x""#),
            None
        );
        assert_eq!(
            read(r#"Basic YWJjOmRlZg==, Bearer error="invalid_token""#),
            Some("invalid_token".to_owned())
        );
        assert_eq!(
            read(r#"Newauth abc=, Bearer error = "a\"b""#),
            Some("a\"b".to_owned())
        );
        assert_eq!(
            read(r#"Bearer realm="a, error=\"x\"", error=y"#),
            Some("y".to_owned())
        );
        assert_eq!(read(""), None);
    }

    proptest! {
        #[test]
        fn any_header_is_read_without_panicking(header in "\\PC*") {
            let _ = challenge_error(&header, "bearer");
        }

        #[test]
        fn the_error_is_found_among_any_other_parameters(
            before in proptest::collection::vec(("[a-df-z][a-z_]{0,8}", "[ -~&&[^\"\\\\]]{0,12}"), 0..4),
            error in "[a-z_]{1,20}",
            other_scheme in "[A-Za-z][A-Za-z0-9]{0,8}",
        ) {
            prop_assume!(!other_scheme.eq_ignore_ascii_case("bearer"));
            let params: Vec<String> =
                before.iter().map(|(name, value)| format!("{name}=\"{value}\"")).collect();
            let mut bearer = String::from("Bearer ");
            for param in &params {
                bearer.push_str(param);
                bearer.push_str(", ");
            }
            bearer.push_str(&format!("error=\"{error}\""));
            let header = format!("{other_scheme} realm=\"x\", error=\"other\", {bearer}");
            prop_assert_eq!(challenge_error(&header, "bearer"), Some(error));
        }
    }
}
