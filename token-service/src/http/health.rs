//! Liveness and readiness.

use axum::extract::State as Shared;
use http::StatusCode;

use crate::State;

/// The process answers.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// The store answers and a key can sign: the instance can serve tokens.
pub(super) async fn readyz(Shared(state): Shared<State>) -> (StatusCode, &'static str) {
    if let Err(error) = state.store().ping().await {
        tracing::warn!(%error, "not ready: the store does not answer");
        return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
    }
    if state.keys().active(state.now()).is_none() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no active signing key");
    }
    (StatusCode::OK, "ready")
}
