//! `POST /revoke` (RFC 7009): a client revokes its own access tokens.

use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::form::Form;
use super::token::authenticate_client;
use crate::State;
use crate::config::TokenFormat;
use crate::error::{ErrorCode, OAuthError, no_store};
use crate::secret::token_digest;
use crate::store::Revoked;
use crate::tokens;

pub(super) async fn revoke(
    Shared(state): Shared<State>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke_token(&state, &headers, &body).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn revoke_token(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let form = Form::parse(headers, body, &[])?;
    let client = authenticate_client(state, headers, &form).await?;
    let token = form.require("token")?;
    let not_yours = || {
        OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        )
    };
    // Unknown, expired or already revoked tokens: 200, nothing to do (RFC 7009 §2.2).
    let Some(active) = tokens::lookup(state, token).await? else {
        return Ok(());
    };
    if active.client_id != client.id {
        return Err(not_yours());
    }
    match active.format {
        TokenFormat::Opaque => {
            match state
                .store()
                .revoke_token(&token_digest(token), &client.id, state.now())
                .await?
            {
                Revoked::Done | Revoked::Unknown => {}
                Revoked::OtherClient => return Err(not_yours()),
            }
        }
        TokenFormat::Jwt => {
            state
                .store()
                .revoke_jwt(&active.jti, &client.id, active.expires_at, state.now())
                .await?;
        }
    }
    tracing::info!(client_id = %client.id, jti = %active.jti, "access token revoked");
    Ok(())
}
