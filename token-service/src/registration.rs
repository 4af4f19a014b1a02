//! Registering clients and APIs while the service runs (`client add`, `api add` and the admin
//! API): the checks a configured one passes, a secret generated here and shown once, and the
//! row to store (only the secret's Argon2id hash).

use std::time::Duration;

use scopegate_validator::{Scope, ScopeSet};

use crate::clients;
use crate::config::{self, ClientShape, Config, ConfigError, GrantType, TokenFormat};
use crate::secret::{Secret, SecretHash};
use crate::store::{ApiRecord, ClientRecord};

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// `client_id`.
    pub id: String,
    /// No secret (authorization code with PKCE only).
    pub public: bool,
    /// Grant types.
    pub grants: Vec<GrantType>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// JWT or opaque access tokens.
    pub token_format: TokenFormat,
    /// Access token lifetime; `None` = the service default.
    pub access_token_ttl: Option<Duration>,
    /// Audiences its tokens may carry.
    pub audience: Vec<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Where `/logout` may send the browser afterwards.
    pub post_logout_redirect_uris: Vec<String>,
    /// Claims a user must supply before the client gets a code.
    pub required_claims: Vec<String>,
    /// Whether people may create an account on the client's sign-in page.
    pub self_signup: bool,
}

/// Checks `new` as the configuration file's clients are checked and builds its row; the
/// secret (none for a public client) exists only in the return value. Whether the id is
/// taken is the caller's question (the configuration, then the store's unique key).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the field (`id`, `grants`, `scopes[1]`, …).
pub fn client(
    config: &Config,
    new: NewClient,
    now: u64,
) -> Result<(ClientRecord, Option<Secret>), ConfigError> {
    config::check_identifier("id", &new.id)?;
    let scopes = config::check_client(
        "",
        ClientShape {
            public: new.public,
            grants: &new.grants,
            scopes: &new.scopes,
            access_token_ttl: new.access_token_ttl,
            audience: &new.audience,
            redirect_uris: &new.redirect_uris,
            post_logout_redirect_uris: &new.post_logout_redirect_uris,
            required_claims: &new.required_claims,
            self_signup: new.self_signup,
        },
        &config.scopes,
    )?;
    let secret = (!new.public).then(Secret::generate);
    let record = ClientRecord {
        id: new.id,
        secret_hash: secret
            .as_ref()
            .map(|secret| SecretHash::hash(secret.expose()).as_str().to_owned()),
        grants: new
            .grants
            .iter()
            .map(|grant| grant.as_str().to_owned())
            .collect(),
        scopes: scopes.to_string(),
        token_format: new.token_format.as_str().to_owned(),
        access_token_ttl: new.access_token_ttl.map(|ttl| ttl.as_secs()),
        audience: new.audience,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        required_claims: new.required_claims,
        self_signup: new.self_signup,
        created_at: now,
    };
    // The service reads the row back with the same rules: a row it could not read is never
    // written.
    clients::client_from_record(&record).map_err(|error| ConfigError::Invalid {
        field: "id".to_owned(),
        reason: error.to_string(),
    })?;
    Ok((record, secret))
}

/// Checks an API registration (`id` is also the audience of tokens meant for it; `scopes` are
/// exact scopes, or `prefix:name` for every permission) and builds its row and secret.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `id` or `scopes[n]`.
pub fn api(id: &str, scopes: &[String], now: u64) -> Result<(ApiRecord, Secret), ConfigError> {
    config::check_identifier("id", id)?;
    config::check_audience("id", id)?;
    if scopes.is_empty() {
        return Err(ConfigError::Invalid {
            field: "scopes".to_owned(),
            reason: "name at least one scope the API owns".to_owned(),
        });
    }
    let owned = scopes
        .iter()
        .enumerate()
        .map(|(position, scope)| {
            Scope::parse(scope).map_err(|error| ConfigError::Invalid {
                field: format!("scopes[{position}]"),
                reason: error.to_string(),
            })
        })
        .collect::<Result<ScopeSet, _>>()?;
    let secret = Secret::generate();
    let record = ApiRecord {
        id: id.to_owned(),
        secret_hash: SecretHash::hash(secret.expose()).as_str().to_owned(),
        scopes: owned.to_string(),
        created_at: now,
    };
    clients::api_from_record(&record).map_err(|error| ConfigError::Invalid {
        field: "id".to_owned(),
        reason: error.to_string(),
    })?;
    Ok((record, secret))
}
