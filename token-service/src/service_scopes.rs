//! The scopes the service itself owns, as an API of its own: OpenID Connect's, the configured
//! claim scopes (`[[scopes]]`), and its admin API's. Tokens carrying them are addressed to the
//! service, and no registered API may own one of them.

use scopegate_validator::Scope;

use crate::config::{Config, CustomScope};

/// Reading users (the admin API).
pub const USERS_READ: &str = "scopegate:users:read";
/// Creating, changing and deleting users (the admin API).
pub const USERS_WRITE: &str = "scopegate:users:write";
/// Reading clients and APIs (the admin API).
pub const CLIENTS_READ: &str = "scopegate:clients:read";
/// Registering and deleting clients and APIs (the admin API).
pub const CLIENTS_WRITE: &str = "scopegate:clients:write";
/// The admin API's scopes, every permission of each.
pub const ADMIN: [&str; 2] = ["scopegate:users", "scopegate:clients"];
/// The scopes OpenID Connect defines, served at `/userinfo`.
pub const OPENID: [&str; 5] = ["openid", "profile", "email", "phone", "address"];

/// Every scope the service owns under `config`.
#[must_use]
pub fn owned(config: &Config) -> Vec<Scope> {
    owned_with(&config.scopes)
}

/// Every scope the service owns with the claim scopes `custom`.
#[must_use]
pub fn owned_with(custom: &[CustomScope]) -> Vec<Scope> {
    OPENID
        .iter()
        .chain(ADMIN.iter())
        .filter_map(|name| Scope::parse(name).ok())
        .chain(custom.iter().map(|scope| scope.name.clone()))
        .collect()
}
