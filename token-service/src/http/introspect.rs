//! `POST /introspect` (RFC 7662), for registered APIs only: authenticates the API and answers
//! what [`tokens::introspect_for_api`] lets it see.

use std::sync::Arc;

use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use serde_json::json;

use super::client_auth::{self, Proof};
use super::error::no_store_json;
use super::form::Form;
use super::peer::Peer;
use super::token::accepted;
use crate::State;
use crate::config::Api;
use crate::credentials;
use crate::error::OAuthError;
use crate::telemetry::metrics::{self, Introspected};
use crate::tokens::{self, IntrospectionAnswer};

pub(super) async fn introspect(
    Shared(state): Shared<State>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answered = answer(&state, &peer, &headers, &body).await;
    metrics::introspected(match &answered {
        Ok((api, Some(_))) => Introspected::Active(&api.id),
        Ok((api, None)) => Introspected::Inactive(&api.id),
        Err(error) => Introspected::Refused(error.code.as_str()),
    });
    match answered {
        Ok((_, Some(active))) => no_store_json(&active),
        Ok((_, None)) => no_store_json(&json!({ "active": false })),
        Err(error) => error.into_response(),
    }
}

/// A registered API, authenticated by its secret (Basic or the form) or its assertion, and
/// within its request rate: the one check of every endpoint only APIs may call.
pub(super) async fn authenticate_api(
    state: &State,
    peer: &Peer,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Arc<Api>, OAuthError> {
    let credentials =
        client_auth::presented(headers, form)?.ok_or_else(OAuthError::invalid_client)?;
    let verdict = match &credentials.proof {
        Proof::Nothing => return Err(OAuthError::invalid_client()),
        Proof::Secret(secret) => {
            credentials::api(state, &credentials.id, secret.expose(), peer.address()).await?
        }
        Proof::Assertion(assertion) => {
            credentials::api_assertion(state, &credentials.id, &assertion.0).await?
        }
    };
    let api = accepted(verdict).inspect_err(|error| {
        tracing::debug!(api = %credentials.id, error = error.code.as_str(), "API authentication failed");
    })?;
    let rate = api
        .rate_limit
        .unwrap_or(state.config().limits.api_rate_limit);
    state
        .rate_limits()
        .check(&format!("api:{}", api.id), rate)
        .map_err(OAuthError::over_rate)?;
    Ok(api)
}

async fn answer(
    state: &State,
    peer: &Peer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Arc<Api>, Option<IntrospectionAnswer>), OAuthError> {
    let form = Form::parse(headers, body, &[])?;
    let api = authenticate_api(state, peer, headers, &form).await?;
    // token_type_hint is only a hint (RFC 7662 §2.1): every kind is looked up anyway.
    let token = form.require("token")?;
    let answer = tokens::introspect_for_api(state, &api, token).await?;
    Ok((api, answer))
}
