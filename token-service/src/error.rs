//! The OAuth errors of RFC 6749 §5.2 (and RFC 8707, RFC 7009): what the domain answers when it
//! refuses. Their HTTP form lives in `http::error`.

use crate::store::StoreError;

/// The RFC 6749 §5.2 (and RFC 8707, RFC 7009) error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Missing, repeated or malformed parameter; wrong content type.
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// The grant (code, refresh token) is invalid, expired or revoked.
    InvalidGrant,
    /// The client may not use this grant type (or act on this token).
    UnauthorizedClient,
    /// Unknown `grant_type`.
    UnsupportedGrantType,
    /// A requested scope grants nothing.
    InvalidScope,
    /// A `resource` the client may not address (RFC 8707).
    InvalidTarget,
    /// The store is unreachable, or the service is busy; try again.
    TemporarilyUnavailable,
    /// Too many failed attempts: wait (the RFC 8628 name, answered with 429 and
    /// `Retry-After`).
    SlowDown,
    /// The DPoP proof is missing, malformed, invalid or used already (RFC 9449 §5).
    InvalidDpopProof,
    /// The DPoP proof lacks the server's current nonce, sent with the error (RFC 9449 §8).
    UseDpopNonce,
}

impl ErrorCode {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::SlowDown => "slow_down",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

/// An OAuth error response: code, description, and the HTTP status it implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The error code.
    pub code: ErrorCode,
    /// `error_description`: for the client developer; never a secret or a token.
    pub description: String,
    /// When to try again (`Retry-After`), for `temporarily_unavailable` and `slow_down`.
    pub retry_after: Option<std::time::Duration>,
    /// The nonce a DPoP proof must carry (`DPoP-Nonce`), for `use_dpop_nonce`.
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    /// An error with a description.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
            dpop_nonce: None,
        }
    }

    /// `slow_down`: too many failed client authentications; try again after `retry_after`.
    #[must_use]
    pub fn slow_down(retry_after: std::time::Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::SlowDown,
                "too many failed client authentications; try again later",
            )
        }
    }

    /// `slow_down`: the client (or API) is over its request rate; try again after
    /// `retry_after`.
    #[must_use]
    pub fn over_rate(retry_after: std::time::Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::SlowDown,
                "over this client's request rate; try again later",
            )
        }
    }

    /// `temporarily_unavailable`: every hashing slot stayed busy.
    #[must_use]
    pub fn busy() -> Self {
        Self {
            retry_after: Some(std::time::Duration::from_secs(1)),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                "the token service is busy; try again shortly",
            )
        }
    }

    /// `invalid_dpop_proof`.
    pub fn invalid_dpop_proof(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidDpopProof, description)
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`, always with the same description: what failed is not disclosed.
    #[must_use]
    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    /// The store failed: logged here (as a server fault), 503 to the caller.
    #[must_use]
    pub fn store(error: &StoreError) -> Self {
        tracing::error!(%error, "store failure");
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the token service cannot reach its store; try again shortly",
        )
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        Self::store(&error)
    }
}
