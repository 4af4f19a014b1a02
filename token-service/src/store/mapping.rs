//! The store's mapping between the model types ([`Client`], [`Api`]) and their columns: what is
//! stored is read back with the same rules it was checked by, and a row this version cannot
//! read is reported as corrupt, never half-used.

use std::time::Duration;

use scopegate_validator::ScopeSet;

use super::{ApiRecord, ClientRecord, StoreError};
use crate::config::{self, Api, Client, GrantType, TokenFormat};
use crate::secret::SecretHash;

/// Rebuilds an API from its stored row.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming what could not be read.
pub(super) fn api_from_record(record: &ApiRecord) -> Result<Api, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "apis",
        reason: format!("API `{}`: {reason}", record.id),
    };
    Ok(Api {
        id: record.id.clone(),
        secret: SecretHash::parse(&record.secret_hash).map_err(corrupt)?,
        scopes: ScopeSet::parse_space_separated(&record.scopes)
            .map_err(|error| corrupt(error.to_string()))?
            .into_iter()
            .collect(),
        registered_at: Some(record.created_at),
    })
}

/// Rebuilds a client from its stored row.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming what could not be read.
pub(super) fn client_from_record(record: &ClientRecord) -> Result<Client, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "clients",
        reason: format!("client `{}`: {reason}", record.id),
    };
    let secret = record
        .secret_hash
        .as_deref()
        .map(SecretHash::parse)
        .transpose()
        .map_err(corrupt)?;
    let grants = record
        .grants
        .iter()
        .map(|name| {
            GrantType::parse(name).ok_or_else(|| corrupt(format!("unknown grant `{name}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scopes = ScopeSet::parse_space_separated(&record.scopes)
        .map_err(|error| corrupt(error.to_string()))?;
    let token_format = TokenFormat::parse(&record.token_format)
        .ok_or_else(|| corrupt(format!("unknown token format `{}`", record.token_format)))?;
    let access_token_ttl = record
        .access_token_ttl
        .map(|seconds| {
            config::check_ttl(
                "access_token_ttl",
                Duration::from_secs(seconds),
                config::MAX_ACCESS_TOKEN_TTL,
            )
            .map_err(|error| corrupt(error.to_string()))
        })
        .transpose()?;
    Ok(Client {
        id: record.id.clone(),
        secret,
        grants,
        scopes,
        default_scopes: None,
        token_format,
        access_token_ttl,
        audience: record.audience.clone(),
        redirect_uris: record.redirect_uris.clone(),
        post_logout_redirect_uris: record.post_logout_redirect_uris.clone(),
        required_claims: record.required_claims.clone(),
        self_signup: record.self_signup,
        registered_at: Some(record.created_at),
    })
}

/// The columns of a client (configured clients are never stored: `registered_at` is set).
pub(super) fn client_to_record(client: &Client) -> ClientRecord {
    ClientRecord {
        id: client.id.clone(),
        secret_hash: client.secret.as_ref().map(|hash| hash.as_str().to_owned()),
        grants: client
            .grants
            .iter()
            .map(|grant| grant.as_str().to_owned())
            .collect(),
        scopes: client.scopes.to_string(),
        token_format: client.token_format.as_str().to_owned(),
        access_token_ttl: client.access_token_ttl.map(|ttl| ttl.as_secs()),
        audience: client.audience.clone(),
        redirect_uris: client.redirect_uris.clone(),
        post_logout_redirect_uris: client.post_logout_redirect_uris.clone(),
        required_claims: client.required_claims.clone(),
        self_signup: client.self_signup,
        created_at: client.registered_at.unwrap_or_default(),
    }
}

/// The columns of an API.
pub(super) fn api_to_record(api: &Api) -> ApiRecord {
    let scopes: ScopeSet = api.scopes.iter().cloned().collect();
    ApiRecord {
        id: api.id.clone(),
        secret_hash: api.secret.as_str().to_owned(),
        scopes: scopes.to_string(),
        created_at: api.registered_at.unwrap_or_default(),
    }
}
