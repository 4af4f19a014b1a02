//! RFC 6749 §4.4: the client acts on its own behalf. Never a refresh token.

use std::sync::Arc;

use scopegate_validator::ScopeSet;

use crate::State;
use crate::config::{Client, GrantType};
use crate::dpop::ProofKey;
use crate::error::{ErrorCode, OAuthError};
use crate::tokens::{self, AccessGrant, IssuedToken};

/// A client credentials request, already parsed.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentialsRequest {
    /// `scope`, if sent.
    pub scope: Option<ScopeSet>,
    /// RFC 8707 `resource` values.
    pub resources: Vec<String>,
    /// The DPoP key the request proved, which the token is bound to.
    pub proof_key: Option<ProofKey>,
}

/// Issues an access token to an authenticated confidential client.
///
/// # Errors
///
/// `unauthorized_client` if the client may not use this grant; `invalid_scope`,
/// `invalid_target`; `temporarily_unavailable` if the store fails.
pub async fn client_credentials(
    state: &State,
    client: Arc<Client>,
    request: &ClientCredentialsRequest,
) -> Result<IssuedToken, OAuthError> {
    if client.is_public() || !client.may_use(GrantType::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant",
        ));
    }
    let scope = super::granted_scopes(state, &client, request.scope.as_ref()).await?;
    let audience = super::audience(state, &client, &scope, &request.resources).await?;
    tokens::issue(
        state,
        &AccessGrant {
            grant_type: GrantType::ClientCredentials,
            subject: client.id().to_owned(),
            client,
            scope,
            audience,
            grants: Vec::new(),
            act: None,
            not_after: None,
            jkt: request.proof_key.as_ref().map(|key| key.jkt.clone()),
            sid: None,
            claims: serde_json::Map::new(),
        },
    )
    .await
}
