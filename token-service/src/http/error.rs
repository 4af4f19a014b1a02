//! The HTTP answer of an [`OAuthError`] (RFC 6749 §5.2): status, JSON body, no caching, a
//! `WWW-Authenticate` for a failed client authentication, `Retry-After` when unavailable.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::error::{ErrorCode, OAuthError};

/// The header a server sends its current DPoP nonce in (RFC 9449 §8).
pub(crate) const DPOP_NONCE: header::HeaderName = header::HeaderName::from_static("dpop-nonce");

/// The HTTP status of `error`.
#[must_use]
pub(crate) const fn status(error: &OAuthError) -> StatusCode {
    match error.code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::SlowDown => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A token-endpoint answer (RFC 6749 §5.1): `value` as JSON, with [`no_store`]'s headers. The
/// body is written into one buffer sized for such an answer: axum's `Json` starts smaller and
/// writes through `BytesMut`'s writer, which checks its capacity at every fragment.
pub(crate) fn no_store_json(value: &impl serde::Serialize) -> Response {
    let mut body = Vec::with_capacity(512);
    if let Err(error) = serde_json::to_writer(&mut body, value) {
        // Only a map with non-string keys fails; none of the answers has one.
        tracing::error!(%error, "an answer could not be written as JSON");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut response);
    response
}

/// Headers every token-endpoint answer carries (RFC 6749 §5.1).
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        if status(&self).is_client_error() {
            tracing::debug!(error = self.code.as_str(), description = %self.description, "request refused");
        }
        let status = status(&self);
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
        if let Some(retry_after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(nonce) = self
            .dpop_nonce
            .as_deref()
            .and_then(|nonce| HeaderValue::from_str(nonce).ok())
        {
            response.headers_mut().insert(DPOP_NONCE, nonce);
        }
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_or_slowed_caller_is_told_when_to_come_back() {
        let busy = OAuthError::busy().into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let slowed = OAuthError::slow_down(std::time::Duration::from_secs(420)).into_response();
        assert_eq!(slowed.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(slowed.headers()[header::RETRY_AFTER], "420");
        assert_eq!(slowed.headers()[header::CACHE_CONTROL], "no-store");
        // An outage without a hint still says "soon".
        let store = OAuthError::new(ErrorCode::TemporarilyUnavailable, "down").into_response();
        assert_eq!(store.headers()[header::RETRY_AFTER], "1");
        // Client errors carry none.
        let wrong = OAuthError::invalid_client().into_response();
        assert!(wrong.headers().get(header::RETRY_AFTER).is_none());
    }
}
