//! Typed outcomes of validation. No HTTP types here: the tower layer maps them to RFC 6750.

use std::time::Duration;

use crate::scope::Insufficient;

/// Why a bearer token was not turned into a [`Principal`](crate::Principal).
///
/// The variants are the four outcomes an API must tell apart: no token, an invalid token
/// (RFC 6750 `invalid_token`), a valid token without the required scope (`insufficient_scope`),
/// and *unavailable* — the issuer's keys or introspection endpoint could not be reached, which
/// says nothing about the token and must never be reported as an invalid one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request carried no token (an empty string).
    #[error("no bearer token")]
    NoToken,
    /// The token is malformed, forged, expired, or not meant for this API.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] InvalidToken),
    /// The token is valid but does not grant what the route requires.
    #[error(transparent)]
    InsufficientScope(#[from] Insufficient),
    /// The issuer's keys (or introspection endpoint) could not be obtained.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl Error {
    /// The RFC 6750 §3.1 error code this outcome maps to, if any.
    ///
    /// `NoToken` has none (a bare challenge), and `Unavailable` has none (it is a 503, not a
    /// statement about the token).
    #[must_use]
    pub fn rfc6750_code(&self) -> Option<&'static str> {
        match self {
            Self::NoToken | Self::Unavailable(_) => None,
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope(_) => Some("insufficient_scope"),
        }
    }

    /// Whether this outcome means the issuer could not be reached (answer 503, not 401).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// For *unavailable*: how long a client should wait before retrying.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable(unavailable) => Some(unavailable.retry_after),
            _ => None,
        }
    }
}

/// Why a token is invalid. Messages never contain the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Longer than the configured maximum; rejected before any decoding.
    #[error("token is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Size of the token in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Not a compact JWS and no introspection endpoint is configured for opaque tokens.
    #[error("token is not a JWT and no introspection endpoint is configured")]
    NotAJwt,
    /// An encrypted JWT (JWE, five segments): not accepted as an access token.
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    /// The token's structure or encoding is broken.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header or claims are not valid JSON, or contain duplicate members.
    #[error("malformed {part}: {problem}")]
    Json {
        /// `header` or `claims`.
        part: &'static str,
        /// What is wrong, from the strict JSON reader.
        problem: String,
    },
    /// The `alg` header names an algorithm this validator does not accept.
    #[error("algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// A header parameter that is never honoured (`jku`, `jwk`, `x5u`, `x5c`, ...).
    #[error("header parameter `{0}` is not accepted")]
    ForbiddenHeader(&'static str),
    /// A `crit` header: this validator understands no extensions, so every one is unknown.
    #[error("critical header extension not understood")]
    UnknownCritical,
    /// The `typ` header is not the one required.
    #[error("token type {found:?} is not the required {required:?}")]
    WrongType {
        /// The `typ` found (absent → empty).
        found: String,
        /// The configured one.
        required: String,
    },
    /// Not an RFC 6750 §2.1 `b64token`: a space, a quote, a non-ASCII character… No bearer
    /// token looks like that; HTTP layers answer it as a malformed request.
    #[error("not an RFC 6750 bearer token (b64token syntax)")]
    NotBearerSyntax,
    /// A JWT that is not an access token: an id_token, or another kind the issuer signs (see
    /// `ValidatorBuilder::dangerous_accept_any_token_type`).
    #[error("not an access token: {0}")]
    NotAnAccessToken(&'static str),
    /// No key in the issuer's key set matches the token's `kid`.
    #[error("no key found for kid {0:?}")]
    UnknownKey(String),
    /// Several keys match and the token does not say which one signed it.
    #[error("ambiguous key: {0}")]
    AmbiguousKey(&'static str),
    /// The key the token names may not be used with the token's algorithm.
    #[error("key {kid:?} may not be used with {alg}")]
    KeyAlgorithmMismatch {
        /// The key's id (empty when the key has none).
        kid: String,
        /// The token's algorithm.
        alg: &'static str,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A claim is missing or has the wrong type.
    #[error("claim `{name}`: {problem}")]
    Claim {
        /// The claim name.
        name: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `iss` is not exactly the configured issuer.
    #[error("issuer does not match")]
    WrongIssuer,
    /// `aud` does not contain any configured audience.
    #[error("audience does not match")]
    WrongAudience,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// The issuer's introspection endpoint says the token is not active (revoked, expired,
    /// unknown, or not meant for this API).
    #[error("token is not active")]
    Inactive,
    /// The issuer revoked it, as an event of its revocation stream said: the token itself, its
    /// session, its user or its client (see `ValidatorBuilder::revocation_events`).
    #[error("token is revoked: {0}")]
    Revoked(&'static str),
}

impl InvalidToken {
    /// Every value [`reason`](Self::reason) can give.
    pub const REASONS: &'static [&'static str] = &[
        "malformed",
        "too_large",
        "not_a_jwt",
        "encrypted",
        "algorithm_not_allowed",
        "forbidden_header",
        "wrong_token_type",
        "unknown_key",
        "key_mismatch",
        "bad_signature",
        "invalid_claim",
        "wrong_issuer",
        "wrong_audience",
        "expired",
        "not_yet_valid",
        "inactive",
        "revoked",
    ];

    /// Why, as a short `snake_case` name from the fixed list [`REASONS`](Self::REASONS): the
    /// `reason` label of the `invalid_token` outcome in metrics, and a field for logs. Variants
    /// an operator would act on alike share a name (a broken encoding and broken JSON are both
    /// `malformed`); the name never holds anything from the token.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::Json { .. } | Self::NotBearerSyntax => "malformed",
            Self::TooLarge { .. } => "too_large",
            Self::NotAJwt => "not_a_jwt",
            Self::Encrypted => "encrypted",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::ForbiddenHeader(_) | Self::UnknownCritical => "forbidden_header",
            Self::WrongType { .. } | Self::NotAnAccessToken(_) => "wrong_token_type",
            Self::UnknownKey(_) => "unknown_key",
            Self::AmbiguousKey(_) | Self::KeyAlgorithmMismatch { .. } => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Claim { .. } => "invalid_claim",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid | Self::IssuedInFuture => "not_yet_valid",
            Self::Inactive => "inactive",
            Self::Revoked(_) => "revoked",
        }
    }
}

/// The issuer's keys or introspection endpoint could not be obtained.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} unavailable: {source}")]
pub struct Unavailable {
    what: &'static str,
    retry_after: Duration,
    #[source]
    source: FetchError,
}

impl Unavailable {
    pub(crate) fn new(what: &'static str, retry_after: Duration, source: FetchError) -> Self {
        Self {
            what,
            retry_after,
            source,
        }
    }

    /// What could not be obtained (`JWKS`, `discovery document`, ...).
    #[must_use]
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The cause.
    #[must_use]
    pub fn fetch_error(&self) -> &FetchError {
        &self.source
    }
}

/// Why a document could not be fetched from the issuer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection, TLS or timeout failure.
    #[error("request to {url} failed: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The transport error, rendered (reqwest errors are not `Clone`).
        message: String,
    },
    /// A non-success HTTP status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The response body was larger than allowed.
    #[error("{url} sent more than {max} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The cap.
        max: usize,
    },
    /// The document is not what it must be (bad JSON, wrong issuer, no usable key...).
    #[error("{url} sent an invalid document: {problem}")]
    InvalidDocument {
        /// The URL requested.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// An earlier attempt failed recently; not retried until the backoff passes.
    #[error("backing off after a failed fetch: {0}")]
    BackingOff(Box<FetchError>),
    /// An in-process source ([`KeySource`](crate::KeySource),
    /// [`IntrospectionSource`](crate::IntrospectionSource)) could not answer.
    #[error("the in-process {what} failed: {message}")]
    InProcess {
        /// Which source.
        what: &'static str,
        /// What went wrong (never a token or a secret).
        message: String,
    },
}

/// A configuration value rejected by [`ValidatorBuilder::build`](crate::ValidatorBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid validator configuration: `{field}`: {problem}")]
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

    /// The builder field at fault.
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }
}

#[cfg(test)]
mod tests {
    use super::InvalidToken;

    #[test]
    fn every_reason_is_listed_and_every_listed_reason_is_given() {
        let one_of_each = [
            InvalidToken::TooLarge { size: 2, max: 1 },
            InvalidToken::NotAJwt,
            InvalidToken::Encrypted,
            InvalidToken::Malformed("x"),
            InvalidToken::Json {
                part: "claims",
                problem: String::new(),
            },
            InvalidToken::AlgorithmNotAllowed("HS256".to_owned()),
            InvalidToken::ForbiddenHeader("jku"),
            InvalidToken::UnknownCritical,
            InvalidToken::WrongType {
                found: String::new(),
                required: "at+jwt".to_owned(),
            },
            InvalidToken::NotBearerSyntax,
            InvalidToken::NotAnAccessToken("an id_token"),
            InvalidToken::UnknownKey("k".to_owned()),
            InvalidToken::AmbiguousKey("two keys"),
            InvalidToken::KeyAlgorithmMismatch {
                kid: "k".to_owned(),
                alg: "ES256",
            },
            InvalidToken::BadSignature,
            InvalidToken::Claim {
                name: "exp",
                problem: "missing",
            },
            InvalidToken::WrongIssuer,
            InvalidToken::WrongAudience,
            InvalidToken::Expired,
            InvalidToken::NotYetValid,
            InvalidToken::IssuedInFuture,
            InvalidToken::Inactive,
            InvalidToken::Revoked("its `jti` was revoked"),
        ];
        let given: std::collections::BTreeSet<_> =
            one_of_each.iter().map(InvalidToken::reason).collect();
        let listed: std::collections::BTreeSet<_> = InvalidToken::REASONS.iter().copied().collect();
        assert_eq!(given, listed);
        assert_eq!(listed.len(), InvalidToken::REASONS.len(), "no name twice");
        for reason in InvalidToken::REASONS {
            assert!(
                reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{reason}"
            );
        }
    }
}
