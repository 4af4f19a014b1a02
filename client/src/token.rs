//! The values that must never be printed: the client secret and the access token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

/// A client secret; its `Debug` output is `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// An access token issued to this client, with what the token endpoint said about it.
///
/// Cheap to clone. Its `Debug` output shows the scope and lifetime, never the token.
/// Two values are equal when they hold the same token.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<str>,
    authorization: HeaderValue,
    scope: Option<Arc<str>>,
    expires_in: Option<Duration>,
}

impl AccessToken {
    /// A token as the endpoint issued it; `None` if it cannot be sent in an `Authorization`
    /// header (empty, or not visible ASCII — RFC 6750 §2.1's `b64token` is narrower still).
    pub(crate) fn new(
        value: &str,
        scope: Option<String>,
        expires_in: Option<Duration>,
    ) -> Option<Self> {
        if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
            return None;
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {value}")).ok()?;
        // Kept out of HTTP/2 header compression tables, and out of `HeaderValue`'s Debug.
        authorization.set_sensitive(true);
        Some(Self {
            value: value.into(),
            authorization,
            scope: scope.map(Into::into),
            expires_in,
        })
    }

    /// The token itself, to send as `Authorization: Bearer <token>`.
    ///
    /// # Security
    /// Anyone holding it acts as this client until it expires: never log it.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// `Bearer <token>`, marked sensitive.
    #[must_use]
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// The scope granted (the response's `scope`), when the endpoint said; RFC 6749 §5.1 lets
    /// it leave it out when it granted exactly what was asked.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The lifetime the endpoint announced (`expires_in`), if it did.
    #[must_use]
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for AccessToken {}

impl fmt::Debug for AccessToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_neither_token_nor_secret() {
        let token = AccessToken::new(
            "tok-3f9a",
            Some("a:b:read".to_owned()),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        let printed = format!("{token:?} {:?}", token.authorization());
        assert!(!printed.contains("tok-3f9a"), "{printed}");
        assert!(printed.contains("a:b:read"), "{printed}");
        assert_eq!(format!("{:?}", Secret("s3cret".to_owned())), "[redacted]");
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused() {
        for value in ["", "has space", "line\nbreak", "caf\u{e9}"] {
            assert!(AccessToken::new(value, None, None).is_none(), "{value:?}");
        }
        let token = AccessToken::new("abc.DEF-_~+/=", None, None).unwrap();
        assert_eq!(token.authorization(), "Bearer abc.DEF-_~+/=");
        assert!(token.authorization().is_sensitive());
    }
}
