//! RFC 6749 §5.2 error responses — the one place where failures become HTTP.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

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
    /// The store is unreachable; try again.
    TemporarilyUnavailable,
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
}

impl OAuthError {
    /// An error with a description.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
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

    /// The HTTP status for this error.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
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

/// Headers every token-endpoint answer carries (RFC 6749 §5.1).
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        if self.status().is_client_error() {
            tracing::debug!(error = self.code.as_str(), description = %self.description, "request refused");
        }
        let status = self.status();
        let mut response = (
            status,
            Json(json!({
                "error": self.code.as_str(),
                "error_description": self.description,
            })),
        )
            .into_response();
        no_store(&mut response);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token-service\", charset=\"UTF-8\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(self);
        response
    }
}
