//! Registering clients and APIs while the service runs (`client add`, `api add` and the admin
//! API): the checks a configured one passes, a secret generated here and shown once, and the
//! row to store (only the secret's Argon2id hash).

use scopegate_validator::{Scope, ScopeSet};

use crate::config::{self, Api, Client, ClientSettings, Config, ConfigError};
use crate::secret::{Secret, SecretHash};

/// Checks `settings` as the configuration file's clients are checked
/// ([`config::build_client`]) and gives it a secret (none for a public client), which exists
/// only in the return value.
/// Whether the id is taken is the caller's question (the configuration, then the store).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the field (`id`, `grants`, `scopes[1]`, …).
pub fn client(
    config: &Config,
    settings: ClientSettings,
    now: u64,
) -> Result<(Client, Option<Secret>), ConfigError> {
    let secret = (!settings.public).then(Secret::generate);
    let hash = secret
        .as_ref()
        .map(|secret| SecretHash::hash(secret.expose()));
    let client = config::build_client("", settings, hash, Some(now), &config.scopes)?;
    Ok((client, secret))
}

/// Checks an API registration (`id` is also the audience of tokens meant for it; `scopes` are
/// exact scopes, or `prefix:name` for every permission) and builds its row and secret.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `id` or `scopes[n]`.
pub fn api(id: &str, scopes: &[String], now: u64) -> Result<(Api, Secret), ConfigError> {
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
    let api = Api {
        id: id.to_owned(),
        secret: SecretHash::hash(secret.expose()),
        scopes: owned.into_iter().collect(),
        registered_at: Some(now),
    };
    Ok((api, secret))
}
