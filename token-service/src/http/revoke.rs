//! `POST /revoke` (RFC 7009): a client — confidential with its secret, or public with its
//! `client_id` — revokes its own access or refresh tokens (rules in [`crate::revocation`]).

use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::error::no_store;
use super::form::Form;
use super::peer::Peer;
use super::token::identify_client;
use crate::State;
use crate::error::OAuthError;
use crate::revocation::{self, Found, TokenTypeHint};
use crate::telemetry::metrics;

pub(super) async fn revoke(
    Shared(state): Shared<State>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let revoked = revoke_token(&state, &peer, &headers, &body).await;
    metrics::revocation(match &revoked {
        Ok(Found::Done) => "revoked",
        Ok(Found::Unknown) => "unknown",
        Err(error) => error.code.as_str(),
    });
    match revoked {
        Ok(_) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn revoke_token(
    state: &State,
    peer: &Peer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Found, OAuthError> {
    let form = Form::parse(headers, body, &[])?;
    let client = identify_client(state, peer, headers, &form).await?;
    let token = form.require("token")?;
    let hint = form.get("token_type_hint").and_then(TokenTypeHint::parse);
    revocation::revoke(state, &client, token, hint).await
}
