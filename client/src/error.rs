//! Typed failures: what the token endpoint (or discovery) answered, or why it could not be
//! asked. Messages never contain the client secret or a token.

use std::sync::Arc;
use std::time::Duration;

/// Why no access token could be obtained, or why a call through [`BearerClient`] failed.
///
/// Cheap to clone: a failed refresh is handed to every caller that waited for it.
///
/// [`BearerClient`]: crate::BearerClient
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint refused the request with an OAuth error (RFC 6749 §5.2): wrong
    /// credentials (`invalid_client`), a scope the client may not have (`invalid_scope`), …
    #[error("the token endpoint refused the request (HTTP {status}): {code}{}",
        description.as_deref().map(|text| format!(" ({text:?})")).unwrap_or_default())]
    #[non_exhaustive]
    OAuth {
        /// The HTTP status (400 or 401 as RFC 6749 says; some servers use others).
        status: u16,
        /// The `error` code, e.g. `invalid_client`.
        code: String,
        /// The `error_description`, if the server sent one.
        description: Option<String>,
        /// The `error_uri`, if the server sent one.
        uri: Option<String>,
        /// How long the server asked to wait before the next request (its `Retry-After`,
        /// RFC 9110 §10.2.3), if it said so.
        retry_after: Option<Duration>,
    },
    /// The server could not be reached, or its answer could not be read (connection refused,
    /// TLS, timeout, …).
    #[error("cannot reach {url}")]
    Transport {
        /// The URL asked (the token endpoint or the discovery document).
        url: String,
        /// What went wrong.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The server answered a status that is neither success nor an OAuth error.
    #[error("{url} answered HTTP {status}")]
    #[non_exhaustive]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// How long the server asked to wait before the next request (its `Retry-After`,
        /// RFC 9110 §10.2.3), if it said so — typically with 429 or 503.
        retry_after: Option<Duration>,
    },
    /// The token endpoint redirected the request and the HTTP client followed: the app's own
    /// client (see `TokenSourceBuilder::http_client`) follows redirects. Its answer is not
    /// used.
    #[error(
        "{url} redirected the token request to {to}; use an HTTP client that follows no redirects"
    )]
    #[non_exhaustive]
    Redirected {
        /// The token endpoint.
        url: String,
        /// Where the answer came from.
        to: String,
    },
    /// The answer's body is larger than a token response or discovery document can be.
    #[error("{url} answered more than {limit} bytes")]
    TooLarge {
        /// The URL asked.
        url: String,
        /// The largest body read.
        limit: usize,
    },
    /// The answer is not the JSON document expected (not JSON, a required member missing or of
    /// the wrong type, an access token that cannot be sent in a header).
    #[error("{url} answered a malformed {what}: {reason}")]
    Malformed {
        /// The URL asked.
        url: String,
        /// `token response`, `error response` or `discovery document`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
        /// The JSON parser's error, when the body did not parse.
        #[source]
        source: Option<Arc<serde_json::Error>>,
    },
    /// The token endpoint issued a token of a type other than `Bearer` (RFC 6750), such as
    /// `DPoP`: sending it as a bearer token would be refused.
    #[error("the token endpoint issued a {token_type:?} token; only Bearer tokens are supported")]
    UnsupportedTokenType {
        /// The `token_type` received.
        token_type: String,
    },
    /// The discovery document names another issuer than the one configured (OpenID Connect
    /// Discovery §4.3): its endpoints are not to be trusted for this issuer.
    #[error("the discovery document of {expected} names the issuer {found:?}")]
    IssuerMismatch {
        /// The issuer configured.
        expected: String,
        /// The issuer the document names.
        found: String,
    },
    /// The token endpoint found by discovery is not an acceptable URL (plain http off loopback,
    /// or not a URL).
    #[error("the token endpoint {url:?} found by discovery is refused: {reason}")]
    InsecureEndpoint {
        /// The endpoint as discovered.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The client assertion (`private_key_jwt`) could not be signed.
    #[error("cannot sign the client assertion: {reason}")]
    #[non_exhaustive]
    Assertion {
        /// What went wrong.
        reason: String,
    },
    /// Called outside a tokio runtime: the token refresh runs as a tokio task.
    #[error("no tokio runtime: scopegate-client needs one to refresh tokens")]
    NoRuntime,
    /// The refresh task ended without an answer (its runtime is shutting down).
    #[error("the token refresh ended without an answer")]
    Aborted,
    /// The call to the API itself failed (through [`BearerClient`](crate::BearerClient)).
    #[error("the request to the API failed")]
    Request {
        /// What went wrong.
        #[source]
        source: Arc<reqwest::Error>,
    },
}

impl Error {
    /// The message with its causes (`cannot reach …: connection refused`), for a log line.
    #[must_use]
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// How long the server asked to wait before asking again (its `Retry-After`, as it sent
    /// it), when it did. The source itself holds requests off at most five minutes.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::OAuth { retry_after, .. } | Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The RFC 6749 §5.2 error code, when the token endpoint answered one.
    #[must_use]
    pub fn oauth_code(&self) -> Option<&str> {
        match self {
            Self::OAuth { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A setting refused by [`TokenSourceBuilder::build`](crate::TokenSourceBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token source configuration: `{field}`: {problem}")]
pub struct BuildError {
    field: &'static str,
    problem: String,
}

impl BuildError {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }

    /// The builder setting at fault, e.g. `client_secret`.
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }
}
