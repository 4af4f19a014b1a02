//! The scopes the service itself owns, as an API of its own: OpenID Connect's and its admin
//! API's (fixed), and the claim scopes of its catalogue (the configuration file's `[[scopes]]`
//! and those defined at run time: [`crate::scope_catalogue`]). Tokens carrying them are
//! addressed to the service, and no registered API may own one of them.

use scopegate_validator::Scope;

use crate::config::CustomScope;

/// Reading users (the admin API).
pub const USERS_READ: &str = "scopegate:users:read";
/// Creating, changing and deleting users (the admin API).
pub const USERS_WRITE: &str = "scopegate:users:write";
/// Reading clients and APIs (the admin API).
pub const CLIENTS_READ: &str = "scopegate:clients:read";
/// Registering and deleting clients and APIs (the admin API).
pub const CLIENTS_WRITE: &str = "scopegate:clients:write";
/// Reading claim scopes (the admin API).
pub const SCOPES_READ: &str = "scopegate:scopes:read";
/// Defining, changing and deleting claim scopes (the admin API).
pub const SCOPES_WRITE: &str = "scopegate:scopes:write";
/// The admin API's scopes, every permission of each.
pub const ADMIN: [&str; 3] = ["scopegate:users", "scopegate:clients", "scopegate:scopes"];
/// The scopes OpenID Connect defines, served at `/userinfo`.
pub const OPENID: [&str; 5] = ["openid", "profile", "email", "phone", "address"];
/// The prefix of the service's own scopes, present and future: no claim scope may take it.
const OWN_PREFIX: &str = "scopegate";

/// The scopes the service owns whatever is configured: OpenID Connect's and the admin API's.
#[must_use]
pub fn fixed() -> Vec<Scope> {
    OPENID
        .iter()
        .chain(ADMIN.iter())
        .filter_map(|name| Scope::parse(name).ok())
        .collect()
}

/// Every scope the service owns with the claim scopes `custom`.
#[must_use]
pub fn owned_with(custom: &[CustomScope]) -> Vec<Scope> {
    fixed()
        .into_iter()
        .chain(custom.iter().map(|scope| scope.name.clone()))
        .collect()
}

/// Why `name` cannot be a claim scope's, if it cannot: it is one of OpenID Connect's scopes
/// (their claims are the standard ones) or the service's own (`scopegate…`).
#[must_use]
pub fn reserved(name: &Scope) -> Option<String> {
    let text = name.as_str();
    if OPENID.contains(&text) {
        return Some(format!(
            "`{text}` is an OpenID Connect scope: its claims are the standard ones"
        ));
    }
    if text.split(':').next() == Some(OWN_PREFIX) {
        return Some(format!(
            "`{text}`: scopes starting with `{OWN_PREFIX}` are the service's own (its admin API's)"
        ));
    }
    None
}
