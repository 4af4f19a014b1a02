//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic` (RFC 6749 §2.3.1, with its form-encoding of id and secret),
//! `client_secret_post`, or `private_key_jwt` (RFC 7523 §2.2: `client_assertion_type` and
//! `client_assertion`) — one method per request.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, header};

use super::form::Form;
use crate::error::OAuthError;
use crate::secret::Secret;

/// Standard base64, padded or not (clients differ).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the caller presented.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) id: String,
    pub(crate) proof: Proof,
}

/// How the caller proves it is `id`.
#[derive(Debug)]
pub(crate) enum Proof {
    /// Nothing: only a `client_id` (a public client).
    Nothing,
    /// A secret (Basic or the body).
    Secret(Secret),
    /// A signed JWT, not yet verified (`private_key_jwt`).
    Assertion(UntrustedAssertion),
}

/// A client assertion as received: a secret for the life of the assertion, so `Debug` never
/// shows it.
pub(crate) struct UntrustedAssertion(pub(crate) String);

impl std::fmt::Debug for UntrustedAssertion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("UntrustedAssertion([redacted])")
    }
}

impl Credentials {
    /// The secret, if that is the proof.
    pub(crate) fn secret(&self) -> Option<&Secret> {
        match &self.proof {
            Proof::Secret(secret) => Some(secret),
            _ => None,
        }
    }
}

/// The longest client assertion taken (one signed with an RSA 4096 key is under 2 KiB).
pub(crate) const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// Reverses the `application/x-www-form-urlencoded` encoding of a Basic credential part.
fn form_decode(part: &str) -> Option<String> {
    if !part.contains(['+', '%']) {
        // Nothing encoded (most ids and secrets): the part as it is.
        return Some(part.to_owned());
    }
    let plus_as_space = part.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The longest client secret taken: the service generates 43 characters, and an operator's
/// own is rarely longer than a few hundred.
pub(crate) const MAX_SECRET_BYTES: usize = 1024;

/// The credentials in the `Authorization` header or the body; an id or secret longer than any
/// the service has is refused here, before any lookup or hash.
///
/// # Errors
///
/// `invalid_request` for two methods at once or two `Authorization` headers; `invalid_client`
/// for a malformed or non-Basic `Authorization` header, or an id or secret too long to be one.
pub(crate) fn presented(
    headers: &HeaderMap,
    form: &Form,
) -> Result<Option<Credentials>, OAuthError> {
    let credentials = match assertion(headers, form)? {
        Some(credentials) => Some(credentials),
        None => presented_unbounded(headers, form)?,
    };
    if credentials.as_ref().is_some_and(|credentials| {
        credentials.id.len() > crate::config::MAX_IDENTIFIER_BYTES
            || credentials
                .secret()
                .is_some_and(|secret| secret.expose().len() > MAX_SECRET_BYTES)
    }) {
        return Err(OAuthError::invalid_client());
    }
    Ok(credentials)
}

/// `client_assertion_type` and `client_assertion` (RFC 7521 §4.2), if sent: the id is the
/// `client_id` parameter, or else the assertion's own (unverified) `iss`.
fn assertion(headers: &HeaderMap, form: &Form) -> Result<Option<Credentials>, OAuthError> {
    let (kind, assertion) = match (
        form.get("client_assertion_type"),
        form.get("client_assertion"),
    ) {
        (None, None) => return Ok(None),
        (Some(kind), Some(assertion)) => (kind, assertion),
        _ => {
            return Err(OAuthError::invalid_request(
                "client_assertion_type and client_assertion go together",
            ));
        }
    };
    if headers.contains_key(header::AUTHORIZATION) || form.get("client_secret").is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method: a client assertion or a secret, not both",
        ));
    }
    if kind != crate::client_assertion::ASSERTION_TYPE || assertion.len() > MAX_ASSERTION_BYTES {
        return Err(OAuthError::invalid_client());
    }
    let id = match form.get("client_id") {
        Some(id) => id.to_owned(),
        None => untrusted_issuer(assertion).ok_or_else(OAuthError::invalid_client)?,
    };
    Ok(Some(Credentials {
        id,
        proof: Proof::Assertion(UntrustedAssertion(assertion.to_owned())),
    }))
}

/// The `iss` an assertion claims, before anything of it is verified: only to find whose keys
/// verify it.
fn untrusted_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

fn presented_unbounded(
    headers: &HeaderMap,
    form: &Form,
) -> Result<Option<Credentials>, OAuthError> {
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    let header_value = authorizations.next();
    if authorizations.next().is_some() {
        return Err(OAuthError::invalid_request("two Authorization headers"));
    }
    let body_id = form.get("client_id");
    let body_secret = form.get("client_secret");
    let Some(value) = header_value else {
        return Ok(body_id.map(|id| Credentials {
            id: id.to_owned(),
            proof: body_secret.map_or(Proof::Nothing, |secret| {
                Proof::Secret(Secret::new(secret.to_owned()))
            }),
        }));
    };
    if body_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method: the Authorization header or client_secret, not both",
        ));
    }
    let basic = value
        .to_str()
        .ok()
        .and_then(|text| text.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, encoded)| encoded.trim());
    let Some(encoded) = basic else {
        return Err(OAuthError::invalid_client());
    };
    let decoded = BASIC
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(OAuthError::invalid_client)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    let (Some(id), Some(secret)) = (form_decode(id), form_decode(secret)) else {
        return Err(OAuthError::invalid_client());
    };
    if body_id.is_some_and(|body_id| body_id != id) {
        return Err(OAuthError::invalid_request(
            "client_id in the body differs from the Authorization header",
        ));
    }
    Ok(Some(Credentials {
        id,
        proof: Proof::Secret(Secret::new(secret)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn form(body: &str) -> Form {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        Form::parse(&headers, body.as_bytes(), &[]).unwrap()
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn ids_and_secrets_longer_than_any_the_service_has_are_refused_unread() {
        let long_id = "a".repeat(256);
        let long_secret = "s".repeat(1025);
        for (headers, body) in [
            (basic(&long_id, "s"), String::new()),
            (basic("a", &long_secret), String::new()),
            (HeaderMap::new(), format!("client_id={long_id}")),
            (
                HeaderMap::new(),
                format!("client_id=a&client_secret={long_secret}"),
            ),
        ] {
            let error = presented(&headers, &form(&body)).unwrap_err();
            assert_eq!(error.code, crate::error::ErrorCode::InvalidClient);
        }
        let longest = "a".repeat(255);
        assert!(presented(&basic(&longest, "s"), &form("")).is_ok());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let credentials = presented(&basic("api%3Aone%2Btwo", "s%25cr%3At+%2Bx"), &form(""))
            .unwrap()
            .unwrap();
        assert_eq!(credentials.id, "api:one+two");
        assert_eq!(credentials.secret().unwrap().expose(), "s%cr:t +x");
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let mut headers = basic("a", "b");
        let value = headers[header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace("Basic", "bAsIc");
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        assert_eq!(presented(&headers, &form("")).unwrap().unwrap().id, "a");
    }

    #[test]
    fn post_credentials_are_read_from_the_body() {
        let credentials = presented(&HeaderMap::new(), &form("client_id=a&client_secret=b"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                credentials.id.as_str(),
                credentials.secret().unwrap().expose()
            ),
            ("a", "b")
        );
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let error = presented(&basic("a", "b"), &form("client_secret=b")).unwrap_err();
        assert_eq!(error.code.as_str(), "invalid_request");
    }

    #[test]
    fn mismatched_body_client_id_is_refused() {
        let error = presented(&basic("a", "b"), &form("client_id=other")).unwrap_err();
        assert_eq!(error.code.as_str(), "invalid_request");
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        for value in ["Basic !!!", "Basic YWJj", "Bearer abc", "Basic"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            let error = presented(&headers, &form("")).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_client", "{value}");
        }
    }

    #[test]
    fn no_credentials_is_none() {
        assert!(presented(&HeaderMap::new(), &form("")).unwrap().is_none());
    }
}
