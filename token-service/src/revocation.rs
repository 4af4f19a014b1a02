//! Revoking a token on behalf of the client it was issued to (RFC 7009): an access token (and
//! the tokens exchanged from it, RFC 8693), or a refresh token together with everything its
//! grant produced (§2.1). The one place that says
//! who may revoke what; `/revoke` is its adapter.

use crate::State;
use crate::config::{Client, TokenFormat};
use crate::error::{ErrorCode, OAuthError};
use crate::secret::token_digest;
use crate::store::{Revoked, TokenKey};
use crate::tokens;

/// RFC 7009 §2.1 `token_type_hint`: where to look first. Every kind is looked up anyway
/// (§2.1: the server extends its search when the hint is wrong); an unknown hint is no hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    /// The hint named by `value`, if it is one this service knows.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "access_token" => Some(Self::AccessToken),
            "refresh_token" => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

/// What a revocation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Revoked now (or before).
    Done,
    /// Not a token of this kind (or no longer active): look elsewhere.
    Unknown,
}

fn not_yours() -> OAuthError {
    OAuthError::new(
        ErrorCode::UnauthorizedClient,
        "the token was not issued to this client",
    )
}

/// Revokes `token` for `client` (authenticated, or public and named by its `client_id`).
/// Unknown, expired and already revoked tokens are no error (RFC 7009 §2.2): they are
/// [`Found::Unknown`], answered as a revocation is.
///
/// # Errors
///
/// `unauthorized_client` for a token issued to another client (nothing changes);
/// `temporarily_unavailable` if the store fails.
pub async fn revoke(
    state: &State,
    client: &Client,
    token: &str,
    hint: Option<TokenTypeHint>,
) -> Result<Found, OAuthError> {
    let refresh_first = hint == Some(TokenTypeHint::RefreshToken);
    let found = if refresh_first {
        match revoke_refresh(state, client, token).await? {
            Found::Unknown => revoke_access(state, client, token).await?,
            done => done,
        }
    } else {
        match revoke_access(state, client, token).await? {
            Found::Unknown => revoke_refresh(state, client, token).await?,
            done => done,
        }
    };
    if found == Found::Unknown {
        tracing::debug!(client_id = %client.id(), "revocation of an unknown or inactive token");
    }
    Ok(found)
}

async fn revoke_access(state: &State, client: &Client, token: &str) -> Result<Found, OAuthError> {
    let Some(active) = tokens::lookup(state, token).await? else {
        return Ok(Found::Unknown);
    };
    if active.client_id != client.id() {
        return Err(not_yours());
    }
    match active.format {
        TokenFormat::Opaque => {
            match state
                .store()
                .revoke_token(&TokenKey::of(token), client.id(), state.now())
                .await?
            {
                Revoked::Done | Revoked::Unknown => {}
                Revoked::OtherClient => return Err(not_yours()),
            }
        }
        TokenFormat::Jwt => {
            state
                .store()
                .revoke_jwt(&active.jti, client.id(), active.expires_at, state.now())
                .await?;
        }
    }
    // What was exchanged from it (RFC 8693) acts on its authority: it goes too.
    let exchanged = crate::grant::token_exchange::exchanged_from(&active.jti);
    state.store().revoke_grant(&exchanged, state.now()).await?;
    tracing::info!(client_id = %client.id(), jti = %active.jti, "access token revoked");
    Ok(Found::Done)
}

/// A refresh token revokes its whole family: the refresh tokens and the access tokens of its
/// grant (RFC 7009 §2.1, "SHOULD also invalidate all access tokens based on the same
/// authorization grant").
async fn revoke_refresh(state: &State, client: &Client, token: &str) -> Result<Found, OAuthError> {
    let Some(record) = state.store().find_refresh(&token_digest(token)).await? else {
        return Ok(Found::Unknown);
    };
    if record.client_id != client.id() {
        return Err(not_yours());
    }
    let revoked = state
        .store()
        .revoke_grant(&record.family, state.now())
        .await?;
    tracing::info!(client_id = %client.id(), access_tokens = revoked, "refresh token family revoked");
    Ok(Found::Done)
}
