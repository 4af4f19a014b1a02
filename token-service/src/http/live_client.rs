//! For the routes this service guards with its own `tower-scopegate` layer (`/userinfo`,
//! `/admin`): a JWT is verified locally, so a token whose client was deleted (or replaced by a
//! later registration of the same id) is refused here, as introspection refuses it.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Request, State as Shared};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use scopegate_validator::Principal;

use crate::State;

/// Runs inside the scope layer, which has put the caller's principal in the request.
pub(super) async fn require_live_client(
    Shared(state): Shared<State>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>() else {
        return next.run(request).await;
    };
    let issued_at = principal
        .issued_at()
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs());
    let client_id = principal.client_id().unwrap_or_default().to_owned();
    match state
        .registry()
        .issued_to_live_client(&client_id, issued_at)
        .await
    {
        Ok(true) => next.run(request).await,
        Ok(false) => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"token-service\", error=\"invalid_token\", error_description=\"the token's client is no longer registered\"",
                ),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "store failure checking a token's client");
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}
