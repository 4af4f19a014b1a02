//! An API, a resource server that may introspect: what it is registered with
//! ([`ApiSettings`]: a `[[apis]]` entry of the configuration file, the body of
//! `POST /admin/apis`, the flags of `token-service api add`), the one check of it
//! ([`build_api`]) and the checked [`Api`].

use scopegate_validator::{Scope, ScopeSet};
use serde::{Deserialize, Serialize};

use super::keys::AssertionKeys;
use super::{ConfigError, invalid};
use crate::secret::{Secret, SecretHash};

/// What an API is registered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ApiSettings")]
pub struct ApiSettings {
    /// Its identifier, usually its base URL: the audience of tokens meant for it and its
    /// username at /introspect.
    #[serde(default)]
    #[arg(long)]
    pub id: String,
    /// The scopes it owns: exact, or `prefix:name` for every permission (at least one).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[arg(
        long = "scope",
        value_name = "SCOPE",
        value_delimiter = ' ',
        required = true
    )]
    pub scopes: Vec<Scope>,
    /// Its own request rate at `/introspect`, like `1000/s` (per instance); absent = the
    /// service's `limits.api_rate_limit`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[arg(long = "rate-limit", value_name = "RATE")]
    pub rate_limit: Option<super::RateLimit>,
    // `jwks` and `jwks_uri` are declared here and in `ClientSettings` alike, and checked by
    // one function (`keys::check`): serde cannot flatten a shared struct into a type that
    // denies unknown fields.
    /// Its public keys, as a JWK Set: it authenticates at `/introspect` with a signed JWT
    /// (`private_key_jwt`, RFC 7523) instead of a secret.
    #[serde(default)]
    #[arg(long, value_name = "JWK_SET", value_parser = super::keys::parse_jwks_argument)]
    pub jwks: Option<serde_json::Value>,
    /// The URL of its JWK Set (`private_key_jwt`, instead of `jwks`), fetched and cached.
    #[serde(default)]
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// Its introspection secret in plain text: the configuration file's alone (the admin API
    /// and `api add` generate one), turned into the [`Api::secret`] hash at start-up.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    #[arg(skip)]
    pub secret: Option<Secret>,
    /// The secret's Argon2id hash: the configuration file's alone, as `secret`.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    #[arg(skip)]
    pub secret_hash: Option<String>,
}

impl super::JsonSettings for ApiSettings {}

/// A resource server allowed to introspect tokens.
#[derive(Debug, Clone)]
pub struct Api {
    /// Its identifier (also the audience of tokens meant for it).
    pub id: String,
    /// Its secret for `/introspect`; `None` when it authenticates with [`keys`](Self::keys).
    pub secret: Option<SecretHash>,
    /// Its `private_key_jwt` keys, checked.
    pub keys: Option<AssertionKeys>,
    /// The scopes that belong to it: exact scopes, or `prefix:name` for every permission.
    pub scopes: Vec<Scope>,
    /// When a stored API was registered (seconds since the epoch); `None` for configured ones.
    pub registered_at: Option<u64>,
    /// Its own request rate at `/introspect`; `None` = the service default.
    pub rate_limit: Option<super::RateLimit>,
}

impl Api {
    /// Whether a granted scope belongs to this API.
    #[must_use]
    pub fn owns(&self, granted: &Scope) -> bool {
        self.scopes.iter().any(|owned| owns(owned, granted))
    }
}

/// The one check of an API, wherever it is registered: fields are named `{prefix}id`,
/// `{prefix}scopes`, … `secret` is its hash; the caller has taken the plain
/// `settings.secret` and `secret_hash` out to make it. Which scopes other owners hold is the
/// caller's question (the configuration's, or the directory's).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the first field that is wrong.
pub fn build_api(
    prefix: &str,
    settings: ApiSettings,
    secret: Option<SecretHash>,
    registered_at: Option<u64>,
) -> Result<Api, ConfigError> {
    let field = |name: &str| format!("{prefix}{name}");
    if settings.secret.is_some() || settings.secret_hash.is_some() {
        return Err(invalid(
            field("secret"),
            "set only in the configuration file; elsewhere the service generates it",
        ));
    }
    if settings.id.is_empty() {
        return Err(invalid(field("id"), "is required"));
    }
    super::check_identifier(&field("id"), &settings.id)?;
    super::check_audience(&field("id"), &settings.id)?;
    if settings.scopes.is_empty() {
        return Err(invalid(
            field("scopes"),
            "name at least one scope the API owns",
        ));
    }
    let keys = super::keys::check(prefix, settings.jwks.as_ref(), settings.jwks_uri.as_deref())?;
    match (&secret, &keys) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                field("secret"),
                "an API authenticates with a secret or with keys (jwks, jwks_uri), not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                field("secret"),
                "an API needs `secret` or `secret_hash`, or `jwks` or `jwks_uri`",
            ));
        }
        _ => {}
    }
    // As a set (sorted, once each): the form the store keeps.
    let scopes: ScopeSet = settings.scopes.into_iter().collect();
    Ok(Api {
        id: settings.id,
        secret,
        scopes: scopes.into_iter().collect(),
        registered_at,
        rate_limit: settings.rate_limit,
        keys,
    })
}

/// Whether an owned scope (exact, or `prefix:name` for every permission) takes in `granted`.
#[must_use]
pub fn owns(owned: &Scope, granted: &Scope) -> bool {
    owned == granted || (owned.suffix().is_none() && owned.is_structured() && granted.covers(owned))
}

/// Whether two owned scopes share a granted scope (`p:n` and `p:n:read` do; `p:n:read` and
/// `p:n:write` do not): no two owners may hold such a pair.
#[must_use]
pub fn scopes_overlap(one: &Scope, other: &Scope) -> bool {
    owns(one, other) || owns(other, one)
}
