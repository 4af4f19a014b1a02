//! A client: what it is registered with ([`ClientSettings`]), the one check of it
//! ([`build_client`]) and the checked [`Client`].
//!
//! `ClientSettings` is the one input type of every entry point: its serde attributes make it a
//! `[[clients]]` entry of the configuration file and the body of `POST /admin/clients`, its
//! schema is the admin API's OpenAPI `ClientSettings`, and its clap attributes are the flags of
//! `token-service client add`. A new client field is one member here (and a check in
//! [`build_client`] if it needs one), a migration pair and its column in `store::mapping`.

use std::time::Duration;

use scopegate_validator::{Scope, ScopeSet};
use serde::{Deserialize, Serialize};

use super::keys::AssertionKeys;
use super::{ConfigError, CustomScope, invalid};
use crate::secret::{Secret, SecretHash};

/// How access tokens of a client look.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// An RFC 9068 JWT, verifiable locally against the JWKS.
    #[default]
    Jwt,
    /// A random reference, checked by introspection.
    Opaque,
}

impl TokenFormat {
    /// The name used in the configuration and the store.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Opaque => "opaque",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "jwt" => Some(Self::Jwt),
            "opaque" => Some(Self::Opaque),
            _ => None,
        }
    }
}

impl std::fmt::Display for TokenFormat {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The `grant_type` of RFC 8693 token exchange (named `token_exchange` in settings).
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The OAuth2 grant types a client may use.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.4.
    #[value(alias = "client-credentials")]
    ClientCredentials,
    /// RFC 6749 §4.1.
    #[value(alias = "authorization-code")]
    AuthorizationCode,
    /// RFC 6749 §6.
    #[value(alias = "refresh-token")]
    RefreshToken,
    /// RFC 8693: a service exchanges a user's token it was sent for one addressed to another
    /// API, to call it on the user's behalf.
    #[value(alias = "token-exchange")]
    TokenExchange,
}

impl GrantType {
    /// The `grant_type` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::TokenExchange => TOKEN_EXCHANGE,
        }
    }

    /// The grant type for a `grant_type` value.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "client_credentials" => Some(Self::ClientCredentials),
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            TOKEN_EXCHANGE => Some(Self::TokenExchange),
            _ => None,
        }
    }
}

fn default_grants() -> Vec<GrantType> {
    vec![GrantType::ClientCredentials]
}

/// What a client is registered with: a `[[clients]]` entry of the configuration file, the body
/// of `POST /admin/clients`, the flags of `token-service client add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ClientSettings")]
pub struct ClientSettings {
    /// The client_id: 1 to 255 visible ASCII characters.
    #[serde(default)]
    #[arg(long)]
    pub id: String,
    /// No secret: authorization code with PKCE only.
    #[serde(default)]
    #[arg(long)]
    pub public: bool,
    /// The grant types it may use: client_credentials, authorization_code, refresh_token,
    /// token_exchange.
    #[serde(default = "default_grants")]
    #[schemars(default = "default_grants")]
    #[arg(
        long = "grant",
        value_name = "GRANT",
        default_value = "client_credentials"
    )]
    pub grants: Vec<GrantType>,
    /// The scopes it may be granted (`prefix:name:permission`, `*` for every permission).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ' ')]
    pub scopes: Vec<Scope>,
    /// What it gets when it asks for no scope (kept as granted: `p:n` is the permissions of
    /// it the client has); absent = every allowed scope.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    #[arg(long = "default-scope", value_name = "SCOPE", value_delimiter = ' ')]
    pub default_scopes: Option<Vec<Scope>>,
    /// The access token format: jwt (RFC 9068, verified locally) or opaque (introspected).
    #[serde(default)]
    #[arg(long = "format", value_enum, default_value_t = TokenFormat::Jwt)]
    pub token_format: TokenFormat,
    /// Access token lifetime like `15m`, at most `1d`; absent = the service default.
    #[serde(default, with = "super::duration::optional")]
    #[schemars(with = "Option<String>")]
    #[arg(long = "ttl", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Option<Duration>,
    /// Audiences its tokens may carry (an RFC 8707 `resource` must be one of them).
    #[serde(default)]
    #[arg(long = "audience", value_name = "AUDIENCE")]
    pub audience: Vec<String>,
    /// The audiences of the tokens it may exchange (RFC 8693, grant token_exchange): a subject
    /// token must be addressed to one of them — usually the API this client is.
    #[serde(default)]
    #[arg(long = "exchange-from", value_name = "AUDIENCE")]
    pub exchange_from: Vec<String>,
    /// Redirect URIs (authorization code), compared exactly.
    #[serde(default)]
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Where `/logout` may send the browser afterwards.
    #[serde(default)]
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Claims (released by its scopes) a user must supply before it gets a code.
    #[serde(default)]
    #[arg(long = "required-claim", value_name = "CLAIM")]
    pub required_claims: Vec<String>,
    /// People may create an account on its sign-in page.
    #[serde(default)]
    #[arg(long)]
    pub self_signup: bool,
    /// Its own request rate at `/token`, like `100/s` (per instance); absent = the service's
    /// `limits.client_rate_limit`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[arg(long = "rate-limit", value_name = "RATE")]
    pub rate_limit: Option<super::RateLimit>,
    /// Every token request must carry a DPoP proof, so that each of its access tokens is bound
    /// to the client's key (RFC 9449 §5.2 `dpop_bound_access_tokens`).
    #[serde(default)]
    #[arg(long)]
    pub dpop_bound_access_tokens: bool,
    /// Its public keys, as a JWK Set: it authenticates with a signed JWT (`private_key_jwt`,
    /// RFC 7523) instead of a secret.
    #[serde(default)]
    #[arg(long, value_name = "JWK_SET", value_parser = super::keys::parse_jwks_argument)]
    pub jwks: Option<serde_json::Value>,
    /// The URL of its JWK Set (`private_key_jwt`, instead of `jwks`), fetched and cached.
    #[serde(default)]
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// The client secret in plain text: the configuration file's alone (the admin API and
    /// `client add` generate one), turned into the [`Client::secret`] hash at start-up.
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

impl super::JsonSettings for ClientSettings {}

/// A registered client (from the configuration or the store), checked.
#[derive(Debug, Clone)]
pub struct Client {
    /// What it is registered with.
    pub settings: ClientSettings,
    /// `None` for a public client.
    pub secret: Option<SecretHash>,
    /// When a stored client was registered (seconds since the epoch); `None` for configured
    /// ones. Tokens issued before it belong to an earlier client of the same id.
    pub registered_at: Option<u64>,
    /// `settings.scopes` as a set: what it may be granted.
    pub allowed: ScopeSet,
    /// `settings.default_scopes` as a set; `None` = every allowed scope.
    pub defaults: Option<ScopeSet>,
    /// Its `private_key_jwt` keys (`settings.jwks` or `jwks_uri`), checked.
    pub keys: Option<AssertionKeys>,
}

impl Client {
    /// A client of settings that were checked by [`build_client`] when it was registered.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] if its keys do not pass [`keys::check`](super::keys::check)
    /// (they did when it was registered: only a corrupt row fails here).
    pub fn new(
        settings: ClientSettings,
        secret: Option<SecretHash>,
        registered_at: Option<u64>,
    ) -> Result<Self, ConfigError> {
        let keys = super::keys::check("", settings.jwks.as_ref(), settings.jwks_uri.as_deref())?;
        let allowed = settings.scopes.iter().cloned().collect();
        let defaults = settings
            .default_scopes
            .as_ref()
            .map(|defaults| defaults.iter().cloned().collect());
        Ok(Self {
            settings,
            secret,
            registered_at,
            allowed,
            defaults,
            keys,
        })
    }

    /// Its `client_id`.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.settings.id
    }

    /// Whether the client has no credential, neither secret nor keys (and so cannot use
    /// `client_credentials`).
    #[must_use]
    pub const fn is_public(&self) -> bool {
        self.settings.public
    }

    /// Whether it may use `grant`.
    #[must_use]
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.settings.grants.contains(&grant)
    }
}

/// The one check of a client, wherever it is registered: fields are named `{prefix}id`,
/// `{prefix}grants`, `{prefix}scopes[1]`, … `secret` is its hash (`None` for a public client);
/// the caller has taken the plain `settings.secret` and `secret_hash` out to make it.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the first field that is wrong.
pub fn build_client(
    prefix: &str,
    mut settings: ClientSettings,
    secret: Option<SecretHash>,
    registered_at: Option<u64>,
    custom_scopes: &[CustomScope],
) -> Result<Client, ConfigError> {
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
    let keys = super::keys::check(prefix, settings.jwks.as_ref(), settings.jwks_uri.as_deref())?;
    match (settings.public, &secret, &keys) {
        (true, Some(_), _) => {
            return Err(invalid(field("secret"), "a public client has no secret"));
        }
        (true, None, Some(_)) => {
            return Err(invalid(field("jwks"), "a public client has no keys"));
        }
        (false, Some(_), Some(_)) => {
            return Err(invalid(
                field("secret"),
                "a client authenticates with a secret or with keys (jwks, jwks_uri), not both",
            ));
        }
        (false, None, None) => {
            return Err(invalid(
                field("secret"),
                "a confidential client needs `secret` or `secret_hash`, or `jwks` or `jwks_uri` (or `public = true`)",
            ));
        }
        _ => {}
    }
    check_settings(prefix, &settings, custom_scopes)?;
    // As a set (sorted, once each): the form the store keeps.
    let allowed: ScopeSet = settings.scopes.iter().cloned().collect();
    settings.scopes = allowed.iter().cloned().collect();
    if let Some(defaults) = &settings.default_scopes {
        let asked: ScopeSet = defaults.iter().cloned().collect();
        // Kept as granted, not as written: `p:n` means the permissions of it the client has,
        // never the literal `p:n` it does not.
        let granted = scopegate_validator::scope::grant(&asked, &allowed)
            .map_err(|error| invalid(field("default_scopes"), error.to_string()))?;
        settings.default_scopes = Some(granted.into_iter().collect());
    }
    Client::new(settings, secret, registered_at)
}

/// Token exchange is for a confidential client told whose tokens it may exchange: a client
/// that could exchange any token it came by would turn every leaked token into a new one.
fn check_exchange(prefix: &str, settings: &ClientSettings) -> Result<(), ConfigError> {
    let field = |name: &str| format!("{prefix}{name}");
    let exchanges = settings.grants.contains(&GrantType::TokenExchange);
    if exchanges && settings.public {
        return Err(invalid(
            field("grants"),
            "a public client cannot use token_exchange",
        ));
    }
    if exchanges && settings.exchange_from.is_empty() {
        return Err(invalid(
            field("exchange_from"),
            "name the audiences whose tokens this client may exchange (usually the API it is)",
        ));
    }
    if !exchanges && !settings.exchange_from.is_empty() {
        return Err(invalid(
            field("exchange_from"),
            "only clients with the token_exchange grant exchange tokens",
        ));
    }
    for (position, audience) in settings.exchange_from.iter().enumerate() {
        super::check_audience(&field(&format!("exchange_from[{position}]")), audience)?;
    }
    Ok(())
}

/// Checks what serde cannot: fields are named `{prefix}grants`, `{prefix}scopes[1]`, …
fn check_settings(
    prefix: &str,
    settings: &ClientSettings,
    custom_scopes: &[CustomScope],
) -> Result<(), ConfigError> {
    let field = |name: &str| format!("{prefix}{name}");
    if settings.grants.is_empty() {
        return Err(invalid(field("grants"), "name at least one grant"));
    }
    if settings.public && settings.grants.contains(&GrantType::ClientCredentials) {
        return Err(invalid(
            field("grants"),
            "a public client cannot use client_credentials",
        ));
    }
    check_exchange(prefix, settings)?;
    if let Some(ttl) = settings.access_token_ttl {
        super::check_ttl(&field("access_token_ttl"), ttl, super::MAX_ACCESS_TOKEN_TTL)?;
    }
    for (position, audience) in settings.audience.iter().enumerate() {
        super::check_audience(&field(&format!("audience[{position}]")), audience)?;
    }
    for (position, uri) in settings.post_logout_redirect_uris.iter().enumerate() {
        url::Url::parse(uri).map_err(|error| {
            invalid(
                field(&format!("post_logout_redirect_uris[{position}]")),
                error.to_string(),
            )
        })?;
    }
    for (position, uri) in settings.redirect_uris.iter().enumerate() {
        let name = field(&format!("redirect_uris[{position}]"));
        let parsed = url::Url::parse(uri).map_err(|error| invalid(&name, error.to_string()))?;
        if parsed.fragment().is_some() {
            return Err(invalid(name, "must not have a fragment (RFC 6749 §3.1.2)"));
        }
    }
    let signs_in = settings.grants.contains(&GrantType::AuthorizationCode);
    let allowed: ScopeSet = settings.scopes.iter().cloned().collect();
    for (position, claim) in settings.required_claims.iter().enumerate() {
        if !signs_in {
            return Err(invalid(
                field("required_claims"),
                "only clients with the authorization_code grant sign users in",
            ));
        }
        if crate::id_token::claim_attribute(custom_scopes, &allowed, claim).is_none() {
            return Err(invalid(
                field(&format!("required_claims[{position}]")),
                format!(
                    "`{claim}` is not a claim a user can supply that the client's scopes release"
                ),
            ));
        }
    }
    if settings.self_signup && !signs_in {
        return Err(invalid(
            field("self_signup"),
            "only clients with the authorization_code grant sign users in",
        ));
    }
    Ok(())
}
