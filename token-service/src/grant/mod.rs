//! The grants, one module each. They take typed requests and an authenticated client, and
//! return an issued token or an OAuth error; no HTTP types here.

pub mod authorization_code;
pub mod authorization_request;
mod client_credentials;
mod refresh_token;
pub mod token_exchange;

pub use authorization_code::{CodeExchange, CodeGrant, CodeTokens, authorization_code};
pub use client_credentials::{ClientCredentialsRequest, client_credentials};
pub use refresh_token::{RefreshRequest, refresh_token};
pub use token_exchange::{ExchangeRequest, token_exchange};

use scopegate_validator::ScopeSet;
use scopegate_validator::scope::grant;

use crate::State;
use crate::config::Client;
use crate::error::{ErrorCode, OAuthError};

/// The scopes a client gets: what it asked for, as the scope model grants it, or its defaults
/// when it asked for nothing — never a withdrawn scope (a deleted claim scope, even if the
/// client still lists it: [`crate::scope_catalogue`]).
///
/// # Errors
///
/// `invalid_scope` naming every requested scope that grants nothing, or a withdrawn one;
/// `temporarily_unavailable` if the claim scopes cannot be read.
pub async fn granted_scopes(
    state: &State,
    client: &Client,
    requested: Option<&ScopeSet>,
) -> Result<ScopeSet, OAuthError> {
    let concerned: Vec<&ScopeSet> = [Some(&client.allowed), client.defaults.as_ref(), requested]
        .into_iter()
        .flatten()
        .collect();
    let withdrawn = state.registry().withdrawn_scopes(&concerned).await?;
    let allowed = withdrawn.remove_from(&client.allowed);
    match requested {
        Some(requested) => {
            if let Some(scope) = requested.iter().find(|scope| withdrawn.contains(scope)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope `{scope}` is no longer defined"),
                ));
            }
            grant(requested, &allowed)
                .map_err(|error| OAuthError::new(ErrorCode::InvalidScope, error.to_string()))
        }
        None => Ok(client
            .defaults
            .as_ref()
            .map_or(allowed, |defaults| withdrawn.remove_from(defaults))),
    }
}

/// The scopes of `granted` that `client` may still have (a scope taken from it since is
/// dropped, as is one withdrawn since; one narrowed, such as `p:n:*` to `p:n:read`, is dropped
/// too rather than guessed).
///
/// # Errors
///
/// `temporarily_unavailable` if the claim scopes cannot be read.
pub async fn still_allowed(
    state: &State,
    client: &Client,
    granted: &ScopeSet,
) -> Result<ScopeSet, OAuthError> {
    let withdrawn = state
        .registry()
        .withdrawn_scopes(&[&client.allowed, granted])
        .await?;
    let allowed = withdrawn.remove_from(&client.allowed);
    Ok(withdrawn
        .remove_from(granted)
        .iter()
        .filter(|scope| {
            let one: ScopeSet = std::iter::once((*scope).clone()).collect();
            grant(&one, &allowed).is_ok()
        })
        .cloned()
        .collect())
}

/// The `aud` of a token: the requested RFC 8707 resources (each one the client may address),
/// else the client's configured audiences, else the APIs that own a granted scope, else the
/// issuer itself; the issuer is added whenever `openid` is granted (it serves `/userinfo`).
///
/// # Errors
///
/// `invalid_target` for a resource that is not an absolute URI or not one the client may use;
/// `temporarily_unavailable` if the store fails.
pub async fn audience(
    state: &State,
    client: &Client,
    scope: &ScopeSet,
    resources: &[String],
) -> Result<Vec<String>, OAuthError> {
    let allowed = addressable(state, client, scope).await?;
    if resources.is_empty() {
        let issuer = &state.config().issuer;
        let openid = scope.iter().any(|granted| granted.as_str() == "openid");
        let mut audience = allowed;
        // The token service itself serves /userinfo to `openid` tokens.
        if (audience.is_empty() || openid) && !audience.contains(issuer) {
            audience.push(issuer.clone());
        }
        return Ok(audience);
    }
    let mut audience = Vec::with_capacity(resources.len());
    for resource in resources {
        let absolute = url::Url::parse(resource).is_ok_and(|url| url.fragment().is_none());
        if !absolute {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("resource `{resource}` is not an absolute URI without a fragment"),
            ));
        }
        if !allowed.contains(resource) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("resource `{resource}` is not an audience this client may address"),
            ));
        }
        if !audience.contains(resource) {
            audience.push(resource.clone());
        }
    }
    Ok(audience)
}

/// The audiences `client` may address with `scope`: its configured ones, else the APIs that
/// own a scope of it.
///
/// # Errors
///
/// `temporarily_unavailable` if the store fails.
pub async fn addressable(
    state: &State,
    client: &Client,
    scope: &ScopeSet,
) -> Result<Vec<String>, OAuthError> {
    Ok(if client.settings.audience.is_empty() {
        state.registry().apis_owning(scope).await?
    } else {
        client.settings.audience.clone()
    })
}
