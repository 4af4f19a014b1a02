//! Configuration: a TOML file (or the built-in demo), overridden field by field from
//! `SCOPEGATE_*` environment variables, then checked into typed values. Every mistake is
//! reported at start-up with the field it concerns.
//!
//! The models the file describes live here, each with its one check: a client
//! ([`ClientSettings`], [`Client`], [`build_client`]: also what the admin API and
//! `token-service client add` read), an API ([`ApiSettings`], [`Api`], [`build_api`]: the same
//! for `api add`), a claim scope ([`ScopeSettings`], [`CustomScope`], [`build_scope`]: the same
//! for `scope add` and `/admin/scopes`); users are [`crate::users::Account`]s.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

mod api;
pub mod claim_source;
mod client;
mod duration;
pub mod encryption;
mod json;
pub mod keys;
mod rate;
mod scope;

pub use api::{Api, ApiSettings, build_api, owns, scopes_overlap};
pub use client::{Client, ClientSettings, GrantType, TOKEN_EXCHANGE, TokenFormat, build_client};
use duration::HumanDuration;
pub use json::JsonSettings;
pub use rate::RateLimit;
pub use scope::{
    ACCESS_TOKEN_RESERVED_CLAIMS, ClaimMap, CustomScope, Defined, MAX_CLAIM_NAME_BYTES,
    PROTECTED_CLAIMS, ScopeRefused, ScopeSettings, build_scope,
};

use crate::keys::KeyAlgorithm;
use crate::sealing::Sealer;
use crate::secret::{Secret, SecretHash};

/// The demo configuration shipped in the repository, used when no file is given.
pub const DEMO_CONFIG: &str = include_str!("../../demo.toml");

/// Top-level keys that `SCOPEGATE_<KEY>` may override (other `SCOPEGATE_*` variables, such as
/// `SCOPEGATE_CONFIG`, belong to the command line).
const OVERRIDABLE: &[&str] = &[
    "issuer",
    "listen",
    "storage",
    "signing",
    "defaults",
    "limits",
    "dpop",
    "events",
    "telemetry",
    "claim_sources",
    "scopes",
    "clients",
    "apis",
    "users",
    "trusted_proxies",
    "encryption_keys_file",
];

/// A configuration that could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file or an environment override could not be read or does not fit the schema.
    #[error("{0}")]
    Parse(#[source] Box<figment::Error>),
    /// A field holds a value that is not allowed.
    #[error("`{field}`: {reason}")]
    Invalid {
        /// The field, as a path (`clients[1].scopes`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Half the cores, 1 to 4: a flood of wrong secrets then leaves the other half to the requests
/// that need no hash (on two cores, two hashing threads put a remembered client's p99 at 4×
/// its quiet figure, one at 1.6×: BENCHMARKS.md).
fn default_hashing_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cores / 2).clamp(1, 4)
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A TOML file.
    File(PathBuf),
    /// The demo configuration built into the binary.
    Demo,
    /// TOML text (tests).
    Text(String),
}

/// No scope has two owners: no two APIs own overlapping scopes, and none owns one of the
/// service's own (OpenID Connect's, the `[[scopes]]`, the admin API's).
fn check_scope_owners(apis: &[Api], custom: &[CustomScope]) -> Result<(), ConfigError> {
    let service = crate::service_scopes::owned_with(custom);
    for (index, api) in apis.iter().enumerate() {
        for (position, scope) in api.scopes.iter().enumerate() {
            let field = format!("apis[{index}].scopes[{position}]");
            if service.iter().any(|owned| scopes_overlap(owned, scope)) {
                return Err(invalid(
                    field,
                    format!("`{scope}` belongs to the token service itself"),
                ));
            }
            if let Some(other) = apis[..index].iter().find(|other| {
                other
                    .scopes
                    .iter()
                    .any(|owned| scopes_overlap(owned, scope))
            }) {
                return Err(invalid(
                    field,
                    format!("`{scope}` overlaps a scope of API `{}`", other.id),
                ));
            }
        }
    }
    Ok(())
}

/// Signing settings.
#[derive(Debug, Clone)]
pub struct Signing {
    /// Algorithm of newly generated keys.
    pub algorithm: KeyAlgorithm,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age: Duration,
    /// How long a rotated-in key is published before it signs.
    pub announce_period: Duration,
    /// How long a key signs before the next one takes over; `None`: rotation by hand only.
    pub rotation_period: Option<Duration>,
    /// How often each instance re-reads the keys (and rotates when due).
    pub key_reload_interval: Duration,
}

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// The largest size, as JSON, of the custom claims an access token carries.
    pub max_access_token_claims_bytes: usize,
    /// Concurrent slow secret verifications (Argon2id) for clients and APIs, and as many again
    /// for passwords; more wait.
    pub max_concurrent_hashing: usize,
    /// How long a verification waits for a slot before it is answered 503.
    pub hashing_wait: Duration,
    /// Requests a client may make at `/token` (per instance), unless it has its own.
    pub client_rate_limit: RateLimit,
    /// Requests an API may make at `/introspect` (per instance), unless it has its own.
    pub api_rate_limit: RateLimit,
    /// Connections to a Postgres store per instance.
    pub database_connections: u32,
    /// How long a request waits for a database connection before it is answered 503.
    pub database_wait: Duration,
}

/// DPoP at the token endpoint (RFC 9449).
#[derive(Debug, Clone)]
pub struct Dpop {
    /// How far a proof's `iat` may be from now, either way; its `jti` is remembered as long.
    pub proof_window: Duration,
    /// Proofs must carry a nonce of the service's (RFC 9449 §8), shared by every instance.
    pub nonces: bool,
}

/// The revocation event stream read by APIs (docs/revocation-events.md).
#[derive(Debug, Clone)]
pub struct Events {
    /// How long a poll with nothing to deliver is held open before it is answered empty.
    pub long_poll: Duration,
}

/// Metrics and traces for operators (docs/metrics.md); both off by default.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// Where Prometheus scrapes `GET /metrics`: an address of its own, never the public one.
    pub metrics_listen: Option<SocketAddr>,
    /// The OTLP/HTTP collector traces are sent to (`/v1/traces` is appended, as for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<url::Url>,
    /// The share of traces started here that are kept (0 to 1); a caller's sampling decision,
    /// sent in `traceparent`, is followed.
    pub trace_sample_ratio: f64,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer identifier, exactly as configured.
    pub issuer: String,
    /// Socket address to bind.
    pub listen: SocketAddr,
    /// `sqlite://path`, `sqlite::memory:`, `postgres://user@host/database`.
    pub storage: String,
    /// Signing settings.
    pub signing: Signing,
    /// Default access token lifetime.
    pub access_token_ttl: Duration,
    /// Browser session lifetime.
    pub session_ttl: Duration,
    /// Authorization code lifetime.
    pub code_ttl: Duration,
    /// Refresh token lifetime (each rotation starts a new one).
    pub refresh_token_ttl: Duration,
    /// The longest a refresh token family lives from its code's redemption, however often it
    /// is rotated.
    pub refresh_token_absolute_ttl: Duration,
    /// How often expired rows are swept.
    pub sweep_interval: Duration,
    /// Request limits.
    pub limits: Limits,
    /// DPoP proofs at the token endpoint.
    pub dpop: Dpop,
    /// The revocation event stream.
    pub events: Events,
    /// Metrics and traces.
    pub telemetry: Telemetry,
    /// Where scopes' claims come from besides the stored attributes.
    pub claim_sources: Vec<claim_source::ClaimSource>,
    /// Custom scopes.
    pub scopes: Vec<CustomScope>,
    /// Clients from the configuration.
    pub clients: Vec<Client>,
    /// Resource servers from the configuration.
    pub apis: Vec<Api>,
    /// Users from the configuration.
    pub users: Vec<crate::users::Account>,
    /// Fields given as plain secrets (warned about at start-up).
    pub plain_secret_fields: Vec<String>,
    /// The proxies whose `Forwarded` / `X-Forwarded-For` say who the client is.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Encrypts signing keys and shared secrets for the store (keys from
    /// `SCOPEGATE_ENCRYPTION_KEYS` or `encryption_keys_file`; none: kept in clear).
    pub encryption: Arc<Sealer>,
}

impl Config {
    /// Loads and checks the configuration from `source` and the environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field that is missing, malformed or not allowed.
    pub fn load(source: &Source) -> Result<Self, ConfigError> {
        Self::load_with_env(source, true)
    }

    /// Like [`Config::load`], without environment overrides.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::load_with_env(&Source::Text(text.to_owned()), false)
    }

    fn load_with_env(source: &Source, environment: bool) -> Result<Self, ConfigError> {
        let mut figment = match source {
            Source::File(path) => Figment::from(Toml::file_exact(path)),
            Source::Demo => Figment::from(Toml::string(DEMO_CONFIG)),
            Source::Text(text) => Figment::from(Toml::string(text)),
        };
        if environment {
            figment = figment.merge(Env::prefixed("SCOPEGATE_").split("__").filter(|key| {
                let top = key.as_str().split('.').next().unwrap_or_default();
                OVERRIDABLE
                    .iter()
                    .any(|field| field.eq_ignore_ascii_case(top))
            }));
        }
        let raw: RawConfig = figment
            .extract()
            .map_err(|error| ConfigError::Parse(Box::new(error)))?;
        let variable = environment
            .then(|| std::env::var(encryption::KEYS_VARIABLE).ok())
            .flatten();
        let sealer = encryption::sealer(raw.encryption_keys_file.as_deref(), variable)?;
        let mut config = raw.check()?;
        config.encryption = Arc::new(sealer);
        Ok(config)
    }

    /// The longest access token lifetime any configured client can get.
    #[must_use]
    pub fn longest_access_token_ttl(&self) -> Duration {
        self.clients
            .iter()
            .filter_map(|client| client.settings.access_token_ttl)
            .fold(self.access_token_ttl, Duration::max)
    }

    /// The base of every endpoint URL (the issuer without a trailing slash).
    #[must_use]
    pub fn base_url(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

/// Where the configuration came from, for the start-up log. Relative paths in it (the SQLite
/// file) are relative to the working directory, as with every other tool.
#[must_use]
pub fn describe(source: &Source) -> String {
    match source {
        Source::File(path) => path.display().to_string(),
        Source::Demo => "the built-in demo configuration (token-service/demo.toml)".to_owned(),
        Source::Text(_) => "inline configuration".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    listen: String,
    storage: String,
    #[serde(default)]
    signing: RawSigning,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    dpop: RawDpop,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    claim_sources: Vec<claim_source::RawClaimSource>,
    #[serde(default)]
    scopes: Vec<ScopeSettings>,
    #[serde(default)]
    clients: Vec<ClientSettings>,
    #[serde(default)]
    apis: Vec<ApiSettings>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    encryption_keys_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    algorithm: Option<String>,
    jwks_max_age: Option<HumanDuration>,
    announce_period: Option<HumanDuration>,
    rotation_period: Option<HumanDuration>,
    key_reload_interval: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    access_token_ttl: Option<HumanDuration>,
    session_ttl: Option<HumanDuration>,
    code_ttl: Option<HumanDuration>,
    refresh_token_ttl: Option<HumanDuration>,
    refresh_token_absolute_ttl: Option<HumanDuration>,
    sweep_interval: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<usize>,
    max_access_token_claims_bytes: Option<usize>,
    max_concurrent_hashing: Option<usize>,
    hashing_wait: Option<HumanDuration>,
    client_rate_limit: Option<RateLimit>,
    api_rate_limit: Option<RateLimit>,
    database_connections: Option<u32>,
    database_wait: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpop {
    proof_window: Option<HumanDuration>,
    #[serde(default)]
    nonces: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    long_poll: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    metrics_listen: Option<String>,
    otlp_endpoint: Option<String>,
    trace_sample_ratio: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: String,
    password: Option<Secret>,
    password_hash: Option<String>,
    #[serde(default)]
    attributes: serde_json::Map<String, serde_json::Value>,
}

/// The longest access token lifetime accepted: a day (longer-lived access is what refresh
/// tokens are for).
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Checks a lifetime is within `1s..=max`.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `field`.
pub fn check_ttl(field: &str, ttl: Duration, max: Duration) -> Result<Duration, ConfigError> {
    if ttl < Duration::from_secs(1) {
        return Err(invalid(field, "must be at least 1s"));
    }
    if ttl > max {
        return Err(invalid(
            field,
            format!("must be at most {}", humantime::format_duration(max)),
        ));
    }
    Ok(ttl)
}

/// Whether `url`'s host is this machine (where plain http is allowed, for development).
fn is_loopback(url: &url::Url) -> bool {
    url.host().is_some_and(|host| match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(address) => address.is_loopback(),
        url::Host::Ipv6(address) => address.is_loopback(),
    })
}

fn check_issuer(issuer: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(issuer)
        .map_err(|error| invalid("issuer", format!("not a URL: {error}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                "issuer",
                "must use https (http is allowed only on loopback, for development)",
            ));
        }
        other => {
            return Err(invalid(
                "issuer",
                format!("scheme `{other}` is not http(s)"),
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "issuer",
            "must not have a query or fragment (RFC 8414 §2)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("issuer", "must not carry credentials"));
    }
    Ok(issuer.to_owned())
}

/// Checks an audience value: non-empty, no whitespace or control characters.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `field`.
pub fn check_audience(field: &str, audience: &str) -> Result<(), ConfigError> {
    if audience.is_empty()
        || audience
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            field,
            "must be a non-empty identifier without spaces",
        ));
    }
    Ok(())
}

/// The longest client or API identifier.
pub const MAX_IDENTIFIER_BYTES: usize = 255;

/// Checks a client or API identifier: visible ASCII, at most [`MAX_IDENTIFIER_BYTES`].
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `field`.
pub fn check_identifier(field: &str, id: &str) -> Result<(), ConfigError> {
    if id.is_empty()
        || id.len() > MAX_IDENTIFIER_BYTES
        || !id.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(invalid(
            field,
            "must be 1 to 255 visible ASCII characters (no spaces)",
        ));
    }
    Ok(())
}

/// A `[[clients]]` or `[[apis]]` entry's id, not used twice in its list, and its secret as a
/// hash (`None` when it gives neither `secret` nor `secret_hash`).
fn entry_secret(
    prefix: &str,
    id: &str,
    ids: &mut HashSet<String>,
    (secret, secret_hash): (Option<Secret>, Option<String>),
    plain_fields: &mut Vec<String>,
) -> Result<Option<SecretHash>, ConfigError> {
    if !ids.insert(id.to_owned()) {
        return Err(invalid(
            format!("{prefix}id"),
            format!("`{id}` is used twice"),
        ));
    }
    secret_of(
        &format!("{prefix}secret"),
        secret,
        secret_hash,
        plain_fields,
    )
}

fn secret_of(
    field: &str,
    secret: Option<Secret>,
    secret_hash: Option<String>,
    plain_fields: &mut Vec<String>,
) -> Result<Option<SecretHash>, ConfigError> {
    match (secret, secret_hash) {
        (Some(_), Some(_)) => Err(invalid(
            field,
            "give either the secret or its hash, not both",
        )),
        (Some(plain), None) => {
            if plain.expose().is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
            plain_fields.push(field.to_owned());
            Ok(Some(SecretHash::hash(plain.expose())))
        }
        (None, Some(hash)) => SecretHash::parse(&hash)
            .map(Some)
            .map_err(|reason| invalid(format!("{field}_hash"), reason)),
        (None, None) => Ok(None),
    }
}

impl RawTelemetry {
    fn check(self, listen: SocketAddr) -> Result<Telemetry, ConfigError> {
        let metrics_listen = self
            .metrics_listen
            .map(|address| {
                let address: SocketAddr = address.parse().map_err(|_| {
                    invalid(
                        "telemetry.metrics_listen",
                        "must be an address and port like 127.0.0.1:9464",
                    )
                })?;
                if address.port() != 0 && address == listen {
                    return Err(invalid(
                        "telemetry.metrics_listen",
                        "must differ from `listen`: metrics are not for the public listener",
                    ));
                }
                Ok(address)
            })
            .transpose()?;
        let otlp_endpoint = self
            .otlp_endpoint
            .map(|endpoint| {
                url::Url::parse(&endpoint)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                    .ok_or_else(|| {
                        invalid(
                            "telemetry.otlp_endpoint",
                            "must be an http(s) URL like http://127.0.0.1:4318",
                        )
                    })
            })
            .transpose()?;
        let trace_sample_ratio = match self.trace_sample_ratio {
            None => 1.0,
            Some(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            Some(_) => {
                return Err(invalid(
                    "telemetry.trace_sample_ratio",
                    "must be from 0 to 1",
                ));
            }
        };
        Ok(Telemetry {
            metrics_listen,
            otlp_endpoint,
            trace_sample_ratio,
        })
    }
}

impl RawConfig {
    fn check(self) -> Result<Config, ConfigError> {
        let issuer = check_issuer(&self.issuer)?;
        let listen = self
            .listen
            .parse()
            .map_err(|_| invalid("listen", "must be an address and port like 127.0.0.1:8080"))?;
        if !(self.storage.starts_with("sqlite:") || crate::store::is_postgres(&self.storage)) {
            return Err(invalid(
                "storage",
                "must be `sqlite://<path>`, `sqlite::memory:` or `postgres://<user>@<host>/<database>`",
            ));
        }
        let algorithm = match self.signing.algorithm.as_deref() {
            None => KeyAlgorithm::Rs256,
            Some(name) => KeyAlgorithm::parse(name)
                .ok_or_else(|| invalid("signing.algorithm", "must be RS256, ES256 or EdDSA"))?,
        };
        let jwks_max_age = self
            .signing
            .jwks_max_age
            .map_or(Duration::from_secs(300), |d| d.0);
        if jwks_max_age > Duration::from_secs(24 * 3600) {
            return Err(invalid("signing.jwks_max_age", "must be at most 1d"));
        }
        let key_reload_interval = self
            .signing
            .key_reload_interval
            .map_or(Duration::from_secs(30), |d| d.0);
        if key_reload_interval.is_zero() || key_reload_interval > Duration::from_secs(3600) {
            return Err(invalid(
                "signing.key_reload_interval",
                "must be more than 0 and at most 1h",
            ));
        }
        let announce_period = self.signing.announce_period.map_or(
            (2 * jwks_max_age).max(jwks_max_age + key_reload_interval),
            |d| d.0,
        );
        // A validator may hold the JWKS for `jwks_max_age`, and an instance may learn of a new
        // key only at its next reload: a key announced for less than both could sign tokens
        // that validators with a cached JWKS do not know yet.
        if announce_period < jwks_max_age + key_reload_interval {
            return Err(invalid(
                "signing.announce_period",
                format!(
                    "must be at least jwks_max_age + key_reload_interval ({}), so that validators \
                     caching the JWKS know a key before it signs",
                    humantime::format_duration(jwks_max_age + key_reload_interval)
                ),
            ));
        }
        let rotation_period = match self.signing.rotation_period.map(|d| d.0) {
            None => Some(Duration::from_secs(90 * 24 * 3600)),
            Some(period) if period.is_zero() => None,
            Some(period) if period > announce_period => Some(period),
            Some(_) => {
                return Err(invalid(
                    "signing.rotation_period",
                    "must be longer than announce_period (or 0s to rotate by hand only)",
                ));
            }
        };
        let signing = Signing {
            algorithm,
            jwks_max_age,
            announce_period,
            rotation_period,
            key_reload_interval,
        };
        let access_token_ttl = check_ttl(
            "defaults.access_token_ttl",
            self.defaults
                .access_token_ttl
                .map_or(Duration::from_secs(3600), |d| d.0),
            MAX_ACCESS_TOKEN_TTL,
        )?;
        let session_ttl = check_ttl(
            "defaults.session_ttl",
            self.defaults
                .session_ttl
                .map_or(Duration::from_secs(14 * 24 * 3600), |d| d.0),
            Duration::from_secs(366 * 24 * 3600),
        )?;
        let code_ttl = check_ttl(
            "defaults.code_ttl",
            self.defaults
                .code_ttl
                .map_or(Duration::from_secs(60), |d| d.0),
            Duration::from_secs(600),
        )?;
        let refresh_token_ttl = check_ttl(
            "defaults.refresh_token_ttl",
            self.defaults
                .refresh_token_ttl
                .map_or(Duration::from_secs(30 * 24 * 3600), |d| d.0),
            Duration::from_secs(366 * 24 * 3600),
        )?;
        let refresh_token_absolute_ttl = check_ttl(
            "defaults.refresh_token_absolute_ttl",
            self.defaults
                .refresh_token_absolute_ttl
                .map_or(Duration::from_secs(90 * 24 * 3600), |d| d.0),
            Duration::from_secs(3 * 366 * 24 * 3600),
        )?;
        if refresh_token_absolute_ttl < refresh_token_ttl {
            return Err(invalid(
                "defaults.refresh_token_absolute_ttl",
                "must be at least defaults.refresh_token_ttl (the lifetime of one refresh token)",
            ));
        }
        let sweep_interval = check_ttl(
            "defaults.sweep_interval",
            self.defaults
                .sweep_interval
                .map_or(Duration::from_secs(600), |d| d.0),
            Duration::from_secs(24 * 3600),
        )?;
        let limits = Limits {
            max_body_bytes: match self.limits.max_body_bytes {
                None => 64 * 1024,
                Some(bytes) if (1024..=16 * 1024 * 1024).contains(&bytes) => bytes,
                Some(_) => return Err(invalid("limits.max_body_bytes", "must be 1024..=16777216")),
            },
            max_access_token_claims_bytes: match self.limits.max_access_token_claims_bytes {
                None => 1024,
                Some(bytes) if (1..=8192).contains(&bytes) => bytes,
                Some(_) => {
                    return Err(invalid(
                        "limits.max_access_token_claims_bytes",
                        "must be 1..=8192",
                    ));
                }
            },
            max_concurrent_hashing: match self.limits.max_concurrent_hashing {
                None => default_hashing_slots(),
                Some(count) if (1..=256).contains(&count) => count,
                Some(_) => {
                    return Err(invalid("limits.max_concurrent_hashing", "must be 1..=256"));
                }
            },
            hashing_wait: match self.limits.hashing_wait.map(|d| d.0) {
                None => Duration::from_secs(2),
                Some(wait) if !wait.is_zero() && wait <= Duration::from_secs(60) => wait,
                Some(_) => {
                    return Err(invalid(
                        "limits.hashing_wait",
                        "must be more than 0 and at most 60s",
                    ));
                }
            },
            client_rate_limit: self
                .limits
                .client_rate_limit
                .unwrap_or(RateLimit::DEFAULT_CLIENT),
            api_rate_limit: self.limits.api_rate_limit.unwrap_or(RateLimit::DEFAULT_API),
            database_connections: match self.limits.database_connections {
                None => 16,
                Some(count) if (1..=1000).contains(&count) => count,
                Some(_) => return Err(invalid("limits.database_connections", "must be 1..=1000")),
            },
            database_wait: match self.limits.database_wait.map(|d| d.0) {
                None => Duration::from_secs(3),
                Some(wait) if !wait.is_zero() && wait <= Duration::from_secs(60) => wait,
                Some(_) => {
                    return Err(invalid(
                        "limits.database_wait",
                        "must be more than 0 and at most 60s",
                    ));
                }
            },
        };
        let dpop = Dpop {
            proof_window: check_ttl(
                "dpop.proof_window",
                self.dpop
                    .proof_window
                    .map_or(Duration::from_secs(60), |d| d.0),
                Duration::from_secs(600),
            )?,
            nonces: self.dpop.nonces,
        };
        let events = Events {
            long_poll: check_ttl(
                "events.long_poll",
                self.events
                    .long_poll
                    .map_or(Duration::from_secs(25), |d| d.0),
                Duration::from_secs(300),
            )?,
        };
        let telemetry = self.telemetry.check(listen)?;

        let mut plain_secret_fields = Vec::new();
        let claim_sources = claim_source::check_all(self.claim_sources)?;
        // Each checked against those before it; an API overlapping one is refused at the API
        // (`check_scope_owners`), the later entry of the page.
        let mut scopes: Vec<CustomScope> = Vec::new();
        for (index, settings) in self.scopes.into_iter().enumerate() {
            let prefix = format!("scopes[{index}].");
            let defined = Defined {
                configured: &scopes,
                sources: Some(&claim_sources),
                ..Defined::default()
            };
            let scope =
                build_scope(&prefix, settings, &defined).map_err(|refused| match refused {
                    ScopeRefused::Invalid(error) => error,
                    ScopeRefused::Defined { name, .. } => {
                        invalid(format!("{prefix}name"), format!("`{name}` is used twice"))
                    }
                    other => invalid(format!("{prefix}name"), other.to_string()),
                })?;
            scopes.push(scope);
        }

        let mut client_ids = HashSet::new();
        let mut clients = Vec::new();
        for (index, mut settings) in self.clients.into_iter().enumerate() {
            let prefix = format!("clients[{index}].");
            let (secret, secret_hash) = (settings.secret.take(), settings.secret_hash.take());
            let secret = entry_secret(
                &prefix,
                &settings.id,
                &mut client_ids,
                (secret, secret_hash),
                &mut plain_secret_fields,
            )?;
            clients.push(build_client(&prefix, settings, secret, None, &scopes)?);
        }

        let mut api_ids = HashSet::new();
        let mut apis = Vec::new();
        for (index, mut settings) in self.apis.into_iter().enumerate() {
            let prefix = format!("apis[{index}].");
            let (secret, secret_hash) = (settings.secret.take(), settings.secret_hash.take());
            let secret = entry_secret(
                &prefix,
                &settings.id,
                &mut api_ids,
                (secret, secret_hash),
                &mut plain_secret_fields,
            )?;
            apis.push(build_api(&prefix, settings, secret, None)?);
        }

        let mut usernames = HashSet::new();
        let mut users = Vec::new();
        for (index, raw) in self.users.into_iter().enumerate() {
            let field = |name: &str| format!("users[{index}].{name}");
            // The rule every path that creates a user follows (see `directory`).
            crate::users::check_new_username(&raw.username)
                .map_err(|reason| invalid(field("username"), reason))?;
            if !usernames.insert(raw.username.to_ascii_lowercase()) {
                return Err(invalid(
                    field("username"),
                    format!(
                        "`{}` is used twice (usernames ignore ASCII case)",
                        raw.username
                    ),
                ));
            }
            // A configured user's `sub` is their username: no client may have it as its id.
            if clients
                .iter()
                .any(|client| client.id().eq_ignore_ascii_case(&raw.username))
            {
                return Err(invalid(
                    field("username"),
                    format!(
                        "`{}` is also a client's id: clients and users never share a subject",
                        raw.username
                    ),
                ));
            }
            let password = secret_of(
                &field("password"),
                raw.password,
                raw.password_hash,
                &mut plain_secret_fields,
            )?
            .ok_or_else(|| invalid(field("password"), "needs `password` or `password_hash`"))?;
            users.push(crate::users::configured_account(
                raw.username,
                password,
                raw.attributes,
            ));
        }

        check_scope_owners(&apis, &scopes)?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(index, text)| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|network| network.trunc())
                    .map_err(|_| {
                        invalid(
                            format!("trusted_proxies[{index}]"),
                            "must be an IP address or a CIDR range like 10.0.0.0/8",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Config {
            issuer,
            listen,
            storage: self.storage,
            signing,
            access_token_ttl,
            session_ttl,
            code_ttl,
            refresh_token_ttl,
            refresh_token_absolute_ttl,
            sweep_interval,
            limits,
            dpop,
            events,
            telemetry,
            claim_sources,
            scopes,
            clients,
            apis,
            users,
            plain_secret_fields,
            trusted_proxies,
            encryption: Arc::new(Sealer::clear()),
        })
    }
}

#[cfg(test)]
mod tests {
    use scopegate_validator::Scope;

    use super::*;

    const MINIMAL: &str = r#"
issuer = "http://127.0.0.1:8080"
listen = "127.0.0.1:8080"
storage = "sqlite::memory:"
"#;

    fn with(extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("{MINIMAL}{extra}"))
    }

    /// The field an error names: `clients[0].scopes[1]` (a parse error's key path written
    /// the same way).
    fn field_of(error: ConfigError) -> String {
        match error {
            ConfigError::Invalid { field, .. } => field,
            ConfigError::Parse(error) => {
                error
                    .path
                    .iter()
                    .fold(String::new(), |path, key| match key.parse::<usize>() {
                        Ok(index) => format!("{path}[{index}]"),
                        Err(_) if path.is_empty() => key.clone(),
                        Err(_) => format!("{path}.{key}"),
                    })
            }
        }
    }

    #[test]
    fn demo_config_is_valid() {
        let config = Config::load_with_env(&Source::Demo, false).unwrap();
        assert_eq!(config.issuer, "http://127.0.0.1:8080");
        assert!(config.clients.iter().any(|client| client.id() == "svc-a"));
        assert_eq!(config.access_token_ttl, Duration::from_secs(3600));
        assert_eq!(config.session_ttl, Duration::from_secs(14 * 24 * 3600));
    }

    #[test]
    fn defaults_apply() {
        let config = with("").unwrap();
        assert_eq!(config.signing.algorithm, KeyAlgorithm::Rs256);
        assert_eq!(config.signing.jwks_max_age, Duration::from_secs(300));
        assert_eq!(config.signing.announce_period, Duration::from_secs(600));
        assert_eq!(
            config.signing.rotation_period,
            Some(Duration::from_secs(90 * 86400))
        );
        assert_eq!(config.signing.key_reload_interval, Duration::from_secs(30));
        assert_eq!(config.limits.max_body_bytes, 65536);
        assert_eq!(config.limits.database_connections, 16);
        assert_eq!(config.limits.database_wait, Duration::from_secs(3));
    }

    #[test]
    fn rotation_settings_are_checked_against_each_other() {
        // A key must be announced for longer than validators may cache the JWKS plus the time
        // instances take to learn of it.
        let error =
            with("[signing]\njwks_max_age = \"5m\"\nannounce_period = \"5m\"\n").unwrap_err();
        assert_eq!(field_of(error), "signing.announce_period");
        // The default announce period follows a short max-age and a long reload interval.
        let config =
            with("[signing]\njwks_max_age = \"1s\"\nkey_reload_interval = \"1m\"\n").unwrap();
        assert_eq!(config.signing.announce_period, Duration::from_secs(61));
        let error = with("[signing]\nrotation_period = \"5m\"\n").unwrap_err();
        assert_eq!(field_of(error), "signing.rotation_period");
        let config = with("[signing]\nrotation_period = \"0s\"\n").unwrap();
        assert_eq!(config.signing.rotation_period, None, "0s: by hand only");
        let error = with("[signing]\nkey_reload_interval = \"0s\"\n").unwrap_err();
        assert_eq!(field_of(error), "signing.key_reload_interval");
    }

    #[test]
    fn storage_and_database_limits_are_checked() {
        let config = Config::from_toml(
            "issuer = \"https://a.test\"\nlisten = \"127.0.0.1:1\"\nstorage = \"postgres://u@h/db\"\n",
        )
        .unwrap();
        assert_eq!(config.storage, "postgres://u@h/db");
        let error = Config::from_toml(
            "issuer = \"https://a.test\"\nlisten = \"127.0.0.1:1\"\nstorage = \"mysql://h/db\"\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "storage");
        assert_eq!(
            field_of(with("[limits]\ndatabase_connections = 0\n").unwrap_err()),
            "limits.database_connections"
        );
        assert_eq!(
            field_of(with("[limits]\ndatabase_wait = \"2m\"\n").unwrap_err()),
            "limits.database_wait"
        );
    }

    #[test]
    fn telemetry_is_off_by_default_and_checked_when_on() {
        let off = with("").unwrap().telemetry;
        assert_eq!(
            (
                off.metrics_listen,
                off.otlp_endpoint,
                off.trace_sample_ratio
            ),
            (None, None, 1.0)
        );
        let on = with(
            "[telemetry]\nmetrics_listen = \"127.0.0.1:9464\"\notlp_endpoint = \"http://127.0.0.1:4318\"\ntrace_sample_ratio = 0.25\n",
        )
        .unwrap()
        .telemetry;
        assert_eq!(on.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(on.otlp_endpoint.unwrap().as_str(), "http://127.0.0.1:4318/");
        assert_eq!(on.trace_sample_ratio, 0.25);
        for (extra, field) in [
            ("metrics_listen = \"localhost\"", "telemetry.metrics_listen"),
            (
                "metrics_listen = \"127.0.0.1:8080\"",
                "telemetry.metrics_listen",
            ),
            (
                "otlp_endpoint = \"127.0.0.1:4318\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"grpc://collector:4317\"",
                "telemetry.otlp_endpoint",
            ),
            ("trace_sample_ratio = 1.5", "telemetry.trace_sample_ratio"),
            ("trace_sample_ratio = -0.1", "telemetry.trace_sample_ratio"),
            ("metrics = true", "telemetry.metrics"),
        ] {
            let error = with(&format!("[telemetry]\n{extra}\n")).unwrap_err();
            assert_eq!(field_of(error), field, "{extra}");
        }
    }

    #[test]
    fn claims_carried_into_access_tokens_may_not_take_a_reserved_name() {
        let scope = |claims: &str, access_token: bool| {
            with(&format!(
                "[[scopes]]\nname = \"ad:user_custom:read\"\nclaims = {{ {claims} }}\naccess_token = {access_token}\n"
            ))
        };
        assert!(
            scope("company_name = \"companyName\"", true)
                .unwrap()
                .scopes[0]
                .access_token
        );
        // `sub` is the service's alone, with or without access tokens.
        for access_token in [false, true] {
            let refused = scope("sub = \"employeeId\"", access_token).unwrap_err();
            assert!(refused.to_string().contains("`sub`"), "{refused}");
            assert_eq!(field_of(refused), "scopes[0].claims.sub");
        }
        // `username` only access tokens define (at introspection).
        assert!(!scope("username = \"login\"", false).unwrap().scopes[0].access_token);
        let refused = scope("username = \"login\"", true).unwrap_err();
        assert!(refused.to_string().contains("`username`"), "{refused}");
        assert_eq!(field_of(refused), "scopes[0].claims");
        assert_eq!(with("").unwrap().limits.max_access_token_claims_bytes, 1024);
        let refused = with("[limits]\nmax_access_token_claims_bytes = 0\n").unwrap_err();
        assert_eq!(field_of(refused), "limits.max_access_token_claims_bytes");
    }

    #[test]
    fn claim_scope_definitions_are_checked_by_name_claims_and_uniqueness() {
        let scope = |name: &str, claims: &str| {
            format!("[[scopes]]\nname = \"{name}\"\nclaims = {{ {claims} }}\n")
        };
        let good = scope("ad:user_custom:read", "company_name = \"companyName\"");
        assert_eq!(with(&good).unwrap().scopes.len(), 1);
        for (extra, field) in [
            (format!("{good}{good}"), "scopes[1].name"),
            (scope("openid", ""), "scopes[0].name"),
            (scope("profile", "nick = \"nick\""), "scopes[0].name"),
            (scope("scopegate:reports:read", ""), "scopes[0].name"),
            (scope("scopegate", ""), "scopes[0].name"),
            (scope("bad scope", ""), "scopes[0].name"),
            (scope("", ""), "scopes[0].name"),
            (scope("a:b:read", "\"a b\" = \"x\""), "scopes[0].claims.a b"),
            (scope("a:b:read", "c = \"\""), "scopes[0].claims.c"),
            ("[[scopes]]\nclaims = {}\n".to_owned(), "scopes[0].name"),
        ] {
            let error = with(&extra).unwrap_err();
            assert_eq!(field_of(error), field, "{extra}");
        }
        // Names of other scopes of the service's own are fine when not its admin API's.
        assert!(with(&scope("scopegatekeeper:x:read", "")).is_ok());
    }

    #[test]
    fn durations_accept_human_units() {
        let config =
            with("[defaults]\naccess_token_ttl = \"15m\"\nsession_ttl = \"2d\"\n").unwrap();
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.session_ttl, Duration::from_secs(2 * 86400));
    }

    #[test]
    fn bad_duration_names_the_field() {
        let error = with("[defaults]\naccess_token_ttl = \"soon\"\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("defaults.access_token_ttl"), "{text}");
        assert!(text.contains("soon"), "{text}");
    }

    #[test]
    fn unknown_field_is_refused() {
        let text = with("colour = \"blue\"\n").unwrap_err().to_string();
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn non_loopback_http_issuer_is_refused() {
        let error = Config::from_toml(
            "issuer = \"http://auth.example.test\"\nlisten = \"127.0.0.1:1\"\nstorage = \"sqlite::memory:\"\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "issuer");
    }

    #[test]
    fn bad_listen_address_is_refused() {
        let error = Config::from_toml(
            "issuer = \"https://auth.example.test\"\nlisten = \"everywhere\"\nstorage = \"sqlite::memory:\"\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "listen");
    }

    #[test]
    fn client_scope_errors_name_the_element() {
        let error = with(
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"client_credentials\"]\nscopes = [\"ok:x:read\", \"bad scope\"]\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "clients[0].scopes[1]");
    }

    #[test]
    fn duplicate_client_ids_are_refused() {
        let client = "[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"client_credentials\"]\n";
        let error = with(&format!("{client}{client}")).unwrap_err();
        assert_eq!(field_of(error), "clients[1].id");
    }

    #[test]
    fn secret_and_hash_together_are_refused() {
        let hash = SecretHash::hash("s");
        let error = with(&format!(
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\nsecret_hash = \"{}\"\ngrants = [\"client_credentials\"]\n",
            hash.as_str()
        ))
        .unwrap_err();
        assert_eq!(field_of(error), "clients[0].secret");
    }

    #[test]
    fn malformed_secret_hash_is_refused() {
        let error = with(
            "[[clients]]\nid = \"a\"\nsecret_hash = \"md5:abc\"\ngrants = [\"client_credentials\"]\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "clients[0].secret_hash");
    }

    #[test]
    fn confidential_client_without_secret_is_refused() {
        let error =
            with("[[clients]]\nid = \"a\"\ngrants = [\"client_credentials\"]\n").unwrap_err();
        assert_eq!(field_of(error), "clients[0].secret");
    }

    #[test]
    fn public_client_cannot_use_client_credentials() {
        let error =
            with("[[clients]]\nid = \"a\"\npublic = true\ngrants = [\"client_credentials\"]\n")
                .unwrap_err();
        assert_eq!(field_of(error), "clients[0].grants");
    }

    #[test]
    fn token_exchange_needs_a_confidential_client_told_whose_tokens_it_may_exchange() {
        let client = |extra: &str| {
            format!(
                "[[clients]]\nid = \"a\"\ngrants = [\"token_exchange\"]\nscopes = [\"x:y:read\"]\n{extra}"
            )
        };
        let accepted = with(&client(
            "secret = \"s\"\nexchange_from = [\"https://api.example.test\"]\n",
        ))
        .unwrap();
        assert!(accepted.clients[0].may_use(GrantType::TokenExchange));
        for (extra, field) in [
            (
                "public = true\nexchange_from = [\"https://api.example.test\"]\n",
                "clients[0].grants",
            ),
            ("secret = \"s\"\n", "clients[0].exchange_from"),
            (
                "secret = \"s\"\nexchange_from = [\"\"]\n",
                "clients[0].exchange_from[0]",
            ),
        ] {
            let error = with(&client(extra)).unwrap_err();
            assert_eq!(field_of(error), field, "{extra}");
        }
        let error = with(
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"client_credentials\"]\nexchange_from = [\"https://api.example.test\"]\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "clients[0].exchange_from");
    }

    #[test]
    fn unknown_grant_is_refused() {
        let text = with("[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"password\"]\n")
            .unwrap_err()
            .to_string();
        assert!(text.contains("password"), "{text}");
    }

    #[test]
    fn default_scopes_must_be_grantable() {
        let error = with(
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"client_credentials\"]\nscopes = [\"x:y:read\"]\ndefault_scopes = [\"x:y:write\"]\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "clients[0].default_scopes");
    }

    #[test]
    fn default_scopes_are_kept_as_granted() {
        let config = with(
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"client_credentials\"]\nscopes = [\"x:y:read\", \"x:y:write\", \"z:w:read\"]\ndefault_scopes = [\"x:y\"]\n",
        )
        .unwrap();
        let defaults = config.clients[0].defaults.as_ref().unwrap();
        assert_eq!(defaults.to_string(), "x:y:read x:y:write");
    }

    #[test]
    fn too_long_access_token_ttl_is_refused() {
        let error = with(
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"client_credentials\"]\naccess_token_ttl = \"2d\"\n",
        )
        .unwrap_err();
        assert_eq!(field_of(error), "clients[0].access_token_ttl");
    }

    #[test]
    fn plain_secrets_are_listed_for_the_warning() {
        let config =
            with("[[clients]]\nid = \"a\"\nsecret = \"s\"\ngrants = [\"client_credentials\"]\n")
                .unwrap();
        assert_eq!(config.plain_secret_fields, ["clients[0].secret"]);
        assert!(config.clients[0].secret.as_ref().unwrap().verify("s"));
    }

    #[test]
    fn api_owns_its_scopes_and_their_permissions() {
        let api = Api {
            id: "api".into(),
            secret: Some(SecretHash::hash("s")),
            keys: None,
            scopes: vec![
                Scope::parse("akamai:social_profile").unwrap(),
                Scope::parse("exact:only:read").unwrap(),
            ],
            registered_at: None,
            rate_limit: None,
        };
        let owns = |s: &str| api.owns(&Scope::parse(s).unwrap());
        assert!(owns("akamai:social_profile:read"));
        assert!(owns("akamai:social_profile:*"));
        assert!(owns("akamai:social_profile"));
        assert!(owns("exact:only:read"));
        assert!(!owns("exact:only:write"));
        assert!(!owns("akamai:other:read"));
        assert!(!owns("openid"));
    }
}
