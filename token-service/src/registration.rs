//! Registering clients and APIs while the service runs (`client add`, `api add` and the admin
//! API): the checks a configured one passes, a secret generated here and shown once, and the
//! row to store (only the secret's Argon2id hash).

use crate::config::{self, Api, ApiSettings, Client, ClientSettings, ConfigError, CustomScope};
use crate::secret::{Secret, SecretHash};

/// Checks `settings` as the configuration file's clients are checked
/// ([`config::build_client`]) and gives it a secret (none for a public client or one with
/// keys), which exists only in the return value.
/// Whether the id is taken is the caller's question (the configuration, then the store);
/// `custom_scopes` are the claim scopes defined now (its required claims must be theirs).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the field (`id`, `grants`, `scopes[1]`, …).
pub fn client(
    custom_scopes: &[CustomScope],
    settings: ClientSettings,
    now: u64,
) -> Result<(Client, Option<Secret>), ConfigError> {
    // A client with keys authenticates with them: it gets no secret.
    let has_keys = settings.jwks.is_some() || settings.jwks_uri.is_some();
    let secret = (!settings.public && !has_keys).then(Secret::generate);
    let hash = secret
        .as_ref()
        .map(|secret| SecretHash::hash(secret.expose()));
    let client = config::build_client("", settings, hash, Some(now), custom_scopes)?;
    Ok((client, secret))
}

/// Checks `settings` as the configuration file's APIs are checked ([`config::build_api`]) and
/// gives it an introspection secret (none for one with keys), which exists only in the return
/// value.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `id` or `scopes[n]`.
pub fn api(settings: ApiSettings, now: u64) -> Result<(Api, Option<Secret>), ConfigError> {
    let has_keys = settings.jwks.is_some() || settings.jwks_uri.is_some();
    let secret = (!has_keys).then(Secret::generate);
    let hash = secret
        .as_ref()
        .map(|secret| SecretHash::hash(secret.expose()));
    let api = config::build_api("", settings, hash, Some(now))?;
    Ok((api, secret))
}
