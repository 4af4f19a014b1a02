//! `POST /introspect` (RFC 7662), for registered APIs only. A token is shown to an API only
//! with the scopes that belong to it, and only if some scope or audience of the token is its.

use axum::Json;
use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use scopegate_validator::ScopeSet;
use serde_json::{Value, json};

use super::client_auth;
use super::form::Form;
use crate::State;
use crate::error::{OAuthError, no_store};
use crate::tokens;

pub(super) async fn introspect(
    Shared(state): Shared<State>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match answer(&state, &headers, &body).await {
        Ok(body) => {
            let mut response = Json(body).into_response();
            no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}

async fn answer(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let form = Form::parse(headers, body, &[])?;
    let credentials =
        client_auth::presented(headers, &form)?.ok_or_else(OAuthError::invalid_client)?;
    let secret = credentials.secret.ok_or_else(OAuthError::invalid_client)?;
    let api = state
        .registry()
        .authenticate_api(state.secrets(), &credentials.id, secret.expose())
        .await?
        .ok_or_else(|| {
            tracing::debug!(api = %credentials.id, "API authentication failed at introspection");
            OAuthError::invalid_client()
        })?;
    // token_type_hint is only a hint (RFC 7662 §2.1): every kind is looked up anyway.
    let token = form.require("token")?;
    let Some(active) = tokens::lookup(state, token).await? else {
        return Ok(inactive());
    };
    let scope: ScopeSet = active
        .scope
        .iter()
        .filter(|granted| api.owns(granted))
        .cloned()
        .collect();
    let addressed = active.audience.iter().any(|audience| *audience == api.id);
    if scope.is_empty() && !addressed {
        return Ok(inactive());
    }
    Ok(json!({
        "active": true,
        "scope": scope.to_string(),
        "client_id": active.client_id,
        "sub": active.subject,
        "aud": active.audience,
        "iss": state.config().issuer,
        "iat": active.issued_at,
        "nbf": active.issued_at,
        "exp": active.expires_at,
        "jti": active.jti,
        "token_type": "Bearer",
    }))
}
