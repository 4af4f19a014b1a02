//! RFC 8693 token exchange: a service that was sent a user's access token (the subject token)
//! gets one addressed to another API, to call it on the user's behalf. Delegation, never
//! impersonation: the new token keeps the user as `sub` and names the service in `act`
//! (nested under the actors before it).
//!
//! Every rule of the other grants applies, and the subject token's own limits carry over: the
//! client must be confidential, allowed the grant and told whose tokens it may exchange
//! (`exchange_from`); the subject token must be active and addressed to one of those
//! audiences; the scope only narrows — to what the subject token has and the client may get;
//! the audience is one the client may address; the token never outlives the subject token,
//! joins its grants (revoking the subject token, its refresh token or its sign-in revokes this
//! one too), and comes without a refresh token.

use std::sync::Arc;

use scopegate_validator::ScopeSet;
use scopegate_validator::scope::grant;
use serde_json::{Value, json};

use crate::State;
use crate::config::{Client, GrantType};
use crate::dpop::ProofKey;
use crate::error::{ErrorCode, OAuthError};
use crate::tokens::{self, AccessGrant, ActiveToken, IssuedToken};

/// The token type this service exchanges and issues: its own access tokens, JWT or opaque.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Most actors a chain of exchanges may name: each hop nests the one before, and a chain
/// longer than this is a loop or a design to stop.
pub const MAX_ACTORS: usize = 5;

/// A token exchange request, already parsed.
#[derive(Clone, Default)]
pub struct ExchangeRequest {
    /// `subject_token`.
    pub subject_token: String,
    /// `subject_token_type`.
    pub subject_token_type: String,
    /// `actor_token`, if sent.
    pub actor_token: Option<String>,
    /// `actor_token_type`, if sent.
    pub actor_token_type: Option<String>,
    /// `requested_token_type`, if sent.
    pub requested_token_type: Option<String>,
    /// `audience` values (logical names of the target services).
    pub audiences: Vec<String>,
    /// RFC 8707 `resource` values.
    pub resources: Vec<String>,
    /// `scope`, to narrow.
    pub scope: Option<ScopeSet>,
    /// The DPoP key the request proved, which the new token is bound to.
    pub proof_key: Option<ProofKey>,
}

/// The tokens are secrets: `Debug` never shows them.
impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ExchangeRequest")
            .field("subject_token", &"[redacted]")
            .field("subject_token_type", &self.subject_token_type)
            .field(
                "actor_token",
                &self.actor_token.as_ref().map(|_| "[redacted]"),
            )
            .field("actor_token_type", &self.actor_token_type)
            .field("requested_token_type", &self.requested_token_type)
            .field("audiences", &self.audiences)
            .field("resources", &self.resources)
            .field("scope", &self.scope)
            .field("proof_key", &self.proof_key)
            .finish()
    }
}

/// RFC 8693 §2.2.2: a subject or actor token that is invalid or unacceptable by policy is an
/// `invalid_request`.
fn unacceptable(description: impl Into<String>) -> OAuthError {
    OAuthError::invalid_request(description)
}

/// Exchanges a subject token for an access token addressed to another API.
///
/// # Errors
///
/// `unauthorized_client` if the client may not exchange; `invalid_request` for an unsupported
/// token type or a subject or actor token that is inactive or not the client's to exchange;
/// `invalid_scope`; `invalid_target`; `temporarily_unavailable` if the store fails.
pub async fn token_exchange(
    state: &State,
    client: Arc<Client>,
    request: &ExchangeRequest,
) -> Result<IssuedToken, OAuthError> {
    if client.is_public() || !client.may_use(GrantType::TokenExchange) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the token exchange grant",
        ));
    }
    check_token_types(request)?;
    let subject = subject(state, &client, &request.subject_token).await?;
    let actor = match &request.actor_token {
        Some(token) => actor(state, &client, token, request.proof_key.as_ref()).await?,
        None => client.id().to_owned(),
    };
    let act = chained(&actor, subject.act.as_ref())?;
    let scope = narrowed(state, &client, &subject.scope, request.scope.as_ref()).await?;
    let audience = target(state, &client, &scope, request).await?;
    let Some(account) = state.users().find_by_id(&subject.subject).await? else {
        // `lookup` found the user a moment ago: deleted since.
        return Err(unacceptable("the subject token's user no longer exists"));
    };
    // The new token shares the fate of the subject token: its grants (its sign-in's code and
    // refresh family) and the subject token itself.
    let mut grants = state.store().grants_of(&subject.jti).await?;
    let custom = state.scopes().definitions().await?;
    let records = crate::id_token::user_records(state, custom.all(), &account, &scope).await?;
    grants.push(exchanged_from(&subject.jti));
    let issued = tokens::issue(
        state,
        &AccessGrant {
            grant_type: GrantType::TokenExchange,
            client: Arc::clone(&client),
            subject: subject.subject.clone(),
            claims: crate::id_token::access_token_claims(state, custom.all(), &records, &scope),
            scope,
            audience,
            grants,
            jkt: request.proof_key.as_ref().map(|key| key.jkt.clone()),
            sid: subject.sid.clone(),
            not_after: Some(subject.expires_at),
            act: Some(act),
        },
    )
    .await?;
    tracing::info!(client_id = %client.id(), subject_jti = %subject.jti, jti = %issued.jti, "token exchanged");
    Ok(issued)
}

/// The grant every token exchanged from the token `jti` is recorded under: revoking that token
/// revokes them ([`revocation`](crate::revocation)).
#[must_use]
pub fn exchanged_from(jti: &str) -> String {
    format!("exchange:{jti}")
}

/// Only this service's access tokens go in, and only access tokens come out.
fn check_token_types(request: &ExchangeRequest) -> Result<(), OAuthError> {
    let supported = |kind: &str, value: &str| {
        if value == ACCESS_TOKEN_TYPE {
            Ok(())
        } else {
            Err(OAuthError::invalid_request(format!(
                "{kind} `{value}` is not supported: only {ACCESS_TOKEN_TYPE}"
            )))
        }
    };
    supported("subject_token_type", &request.subject_token_type)?;
    if let Some(requested) = &request.requested_token_type {
        supported("requested_token_type", requested)?;
    }
    match (&request.actor_token, &request.actor_token_type) {
        (Some(_), Some(kind)) => supported("actor_token_type", kind),
        (None, None) => Ok(()),
        (Some(_), None) => Err(OAuthError::invalid_request(
            "actor_token_type is required with actor_token",
        )),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "actor_token_type is sent only with actor_token",
        )),
    }
}

/// The subject token, if it is one `client` may exchange: active, a user's, addressed to an
/// audience of its `exchange_from`, and not bound to a key.
async fn subject(state: &State, client: &Client, token: &str) -> Result<ActiveToken, OAuthError> {
    let Some(subject) = tokens::lookup(state, token).await? else {
        return Err(unacceptable(
            "the subject token is not an active access token of this service",
        ));
    };
    if subject.subject == subject.client_id {
        return Err(unacceptable(
            "the subject token is a client's own token: exchange acts for a user",
        ));
    }
    if !subject
        .audience
        .iter()
        .any(|audience| client.settings.exchange_from.contains(audience))
    {
        return Err(unacceptable(
            "the subject token is not addressed to an audience this client may exchange from",
        ));
    }
    if subject.jkt.is_some() {
        // Its holder proved a key this client does not have; exchanging it would unbind it.
        return Err(unacceptable(
            "the subject token is bound to a DPoP key and cannot be exchanged",
        ));
    }
    Ok(subject)
}

/// Who the actor token says acts: its subject, if it is an active token issued to `client`
/// (the party that authenticated) and, if bound, bound to the key this request proved.
async fn actor(
    state: &State,
    client: &Client,
    token: &str,
    proof_key: Option<&ProofKey>,
) -> Result<String, OAuthError> {
    let Some(actor) = tokens::lookup(state, token).await? else {
        return Err(unacceptable(
            "the actor token is not an active access token of this service",
        ));
    };
    if actor.client_id != client.id() {
        return Err(unacceptable(
            "the actor token was not issued to this client",
        ));
    }
    if actor.jkt.is_some() && actor.jkt.as_deref() != proof_key.map(|key| key.jkt.as_str()) {
        return Err(unacceptable(
            "the actor token is bound to a DPoP key this request did not prove",
        ));
    }
    Ok(actor.subject)
}

/// The `act` claim for `actor` acting now, the subject token's actors (if it was exchanged
/// itself) nested under it (RFC 8693 §4.1: the outermost is the current actor).
fn chained(actor: &str, before: Option<&Value>) -> Result<Value, OAuthError> {
    let mut depth = 1;
    let mut inner = before;
    while let Some(previous) = inner {
        depth += 1;
        inner = previous.get("act");
    }
    if depth > MAX_ACTORS {
        return Err(unacceptable(format!(
            "the delegation chain would name more than {MAX_ACTORS} actors"
        )));
    }
    let mut act = json!({ "sub": actor });
    if let (Some(previous), Some(fields)) = (before, act.as_object_mut()) {
        fields.insert("act".to_owned(), previous.clone());
    }
    Ok(act)
}

/// The scope of the new token: what was asked for (else everything that qualifies), within
/// the subject token's scope as far as `client` may have it.
async fn narrowed(
    state: &State,
    client: &Client,
    subject: &ScopeSet,
    requested: Option<&ScopeSet>,
) -> Result<ScopeSet, OAuthError> {
    let available = super::still_allowed(state, client, subject).await?;
    let scope = match requested {
        Some(requested) => grant(requested, &available).map_err(|error| {
            OAuthError::new(
                ErrorCode::InvalidScope,
                format!("{error} (the subject token's scopes that this client may get bound an exchange)"),
            )
        })?,
        None => available,
    };
    if scope.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "no scope of the subject token may be exchanged by this client",
        ));
    }
    Ok(scope)
}

/// The new token's audience: the `audience` and `resource` values asked for, each one
/// `client` may address, else what the other grants would give.
async fn target(
    state: &State,
    client: &Client,
    scope: &ScopeSet,
    request: &ExchangeRequest,
) -> Result<Vec<String>, OAuthError> {
    if request.audiences.is_empty() {
        return super::audience(state, client, scope, &request.resources).await;
    }
    let addressable = super::addressable(state, client, scope).await?;
    let mut audience = if request.resources.is_empty() {
        Vec::new()
    } else {
        super::audience(state, client, scope, &request.resources).await?
    };
    for name in &request.audiences {
        if !addressable.contains(name) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("audience `{name}` is not one this client may address"),
            ));
        }
        if !audience.contains(name) {
            audience.push(name.clone());
        }
    }
    Ok(audience)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_exchange_nests_the_actors_before_it() {
        let first = chained("api-a", None).unwrap();
        assert_eq!(first, json!({ "sub": "api-a" }));
        let second = chained("api-b", Some(&first)).unwrap();
        assert_eq!(second, json!({ "sub": "api-b", "act": { "sub": "api-a" } }));
    }

    #[test]
    fn a_chain_longer_than_the_limit_is_refused() {
        let mut act: Option<Value> = None;
        for hop in 0..MAX_ACTORS {
            act = Some(chained(&format!("api-{hop}"), act.as_ref()).unwrap());
        }
        let error = chained("one-too-many", act.as_ref()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn token_types_other_than_access_tokens_are_refused_by_name() {
        let request =
            |subject: &str, actor: Option<&str>, requested: Option<&str>| ExchangeRequest {
                subject_token: "t".into(),
                subject_token_type: subject.into(),
                actor_token: actor.map(|_| "a".to_owned()),
                actor_token_type: actor.map(str::to_owned),
                requested_token_type: requested.map(str::to_owned),
                ..ExchangeRequest::default()
            };
        let id_token = "urn:ietf:params:oauth:token-type:id_token";
        assert!(check_token_types(&request(ACCESS_TOKEN_TYPE, None, None)).is_ok());
        for bad in [
            request(id_token, None, None),
            request(ACCESS_TOKEN_TYPE, Some(id_token), None),
            request(ACCESS_TOKEN_TYPE, None, Some(id_token)),
        ] {
            let error = check_token_types(&bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRequest);
            assert!(error.description.contains(id_token), "{error:?}");
        }
        let mut half = request(ACCESS_TOKEN_TYPE, None, None);
        half.actor_token = Some("a".into());
        assert!(check_token_types(&half).is_err());
    }

    #[test]
    fn debug_shows_no_token() {
        let request = ExchangeRequest {
            subject_token: "subject-secret".into(),
            actor_token: Some("actor-secret".into()),
            ..ExchangeRequest::default()
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
