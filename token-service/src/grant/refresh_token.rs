//! RFC 6749 §6: a refresh token buys a new access token and is rotated on every use
//! (RFC 9700 §4.14.2). A rotated token used again revokes its whole family; a token is bound to
//! its client; scopes can only narrow, and only to what the client may still have; a family
//! ends at its absolute lifetime however often it is rotated.

use std::sync::Arc;

use scopegate_validator::ScopeSet;
use scopegate_validator::scope::grant;

use super::authorization_code::{CodeTokens, UserGrant, user_tokens};
use crate::State;
use crate::config::{Client, GrantType};
use crate::dpop::ProofKey;
use crate::error::{ErrorCode, OAuthError};
use crate::secret::token_digest;

/// A refresh request, already parsed.
#[derive(Clone)]
pub struct RefreshRequest {
    /// `refresh_token`.
    pub refresh_token: String,
    /// `scope`, to narrow.
    pub scope: Option<ScopeSet>,
    /// The DPoP key the request proved.
    pub proof_key: Option<ProofKey>,
}

/// The refresh token is a secret: `Debug` never shows it.
impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RefreshRequest")
            .field("refresh_token", &"[redacted]")
            .field("scope", &self.scope)
            .field("proof_key", &self.proof_key)
            .finish()
    }
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

/// Rotates a refresh token.
///
/// # Errors
///
/// `unauthorized_client`; `invalid_grant` for an unknown, expired, revoked, reused or foreign
/// token; `invalid_scope` for a scope beyond the original grant.
pub async fn refresh_token(
    state: &State,
    client: Arc<Client>,
    request: &RefreshRequest,
) -> Result<CodeTokens, OAuthError> {
    if !client.may_use(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the refresh_token grant",
        ));
    }
    let now = state.now();
    let digest = token_digest(&request.refresh_token);
    let Some(record) = state.store().find_refresh(&digest).await? else {
        return Err(invalid_grant("unknown refresh token"));
    };
    if record.client_id != client.id() {
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if record.revoked_at.is_some() {
        return Err(invalid_grant("the refresh token has been revoked"));
    }
    if record.rotated_at.is_some() {
        return Err(reused(state, &record.family, now).await);
    }
    if record.expires_at <= now {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let proven = request.proof_key.as_ref().map(|key| key.jkt.as_str());
    if record.jkt.is_some() && record.jkt.as_deref() != proven {
        // RFC 9449 §5: a bound refresh token is usable only with a proof of its key.
        return Err(invalid_grant(
            "the refresh token is bound to a DPoP key this request did not prove",
        ));
    }
    let original = ScopeSet::parse_space_separated(&record.scope)
        .map_err(|_| invalid_grant("the refresh token's scope cannot be read"))?;
    // What the grant gave, as far as the client may still have it: a scope taken from the
    // client since is not renewed.
    let original = super::still_allowed(state, &client, &original).await?;
    if original.is_empty() {
        return Err(invalid_grant(
            "the client may no longer have any scope of this grant",
        ));
    }
    let scope = match &request.scope {
        Some(requested) => grant(requested, &original)
            .map_err(|error| OAuthError::new(ErrorCode::InvalidScope, error.to_string()))?,
        None => original.clone(),
    };
    let Some(account) = state.users().find(&record.username).await? else {
        return Err(invalid_grant("the user no longer exists"));
    };
    if account.id != record.user_id {
        return Err(invalid_grant("the user no longer exists"));
    }
    if !state.store().rotate_refresh(&digest, now).await? {
        // Another request rotated it first: this is a reuse.
        return Err(reused(state, &record.family, now).await);
    }
    user_tokens(
        state,
        &client,
        &UserGrant {
            grant_type: GrantType::RefreshToken,
            account: &account,
            family: &record.family,
            sid: &record.sid,
            auth_time: record.auth_time,
            scope: &scope,
            refresh_scope: &original,
            family_started_at: record.family_started_at,
            nonce: None,
            access_jkt: proven,
            refresh_jkt: record.jkt.as_deref(),
        },
    )
    .await
}

/// A rotated token came back: revoke the family (refresh and access tokens), then refuse.
async fn reused(state: &State, family: &str, now: u64) -> OAuthError {
    match state.store().revoke_grant(family, now).await {
        Ok(revoked) => {
            tracing::warn!(revoked, "refresh token reused: its family is revoked");
            invalid_grant("the refresh token was already used")
        }
        Err(error) => OAuthError::store(&error),
    }
}
