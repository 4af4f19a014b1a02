//! A claim source: where the claims of a scope come from when they do not live on the user
//! record — an HTTP service that answers, for one user, a JSON object (a profile store, a
//! directory). `[[claim_sources]]` entries; a scope names one with `source`.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::secret::Secret;

/// The source every scope reads unless it names another: the user's stored attributes.
pub const ATTRIBUTES: &str = "attributes";

/// The placeholders a source URL may hold, each replaced by the user's value, percent-encoded.
pub const PLACEHOLDERS: [&str; 3] = ["{sub}", "{username}", "{email}"];

/// Longest wait for a source; a sign-in waits for it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a source's answer is reused.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest a source that timed out or could not be reached is left alone.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// How a source is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SourceMethod {
    /// `GET` the URL (the user named in it).
    #[default]
    Get,
    /// `POST` the URL with the user's identifiers as a JSON object (`sub`, `username`, `email`).
    Post,
}

/// What happens to a sign-in when a source cannot answer (down, slow, junk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Release the other claims without this source's (a warning is logged).
    #[default]
    Omit,
    /// Refuse: no code, token or userinfo answer is issued without these claims.
    Refuse,
}

/// How the service authenticates to a source.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// `Authorization: Basic` (RFC 7617).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// A header of the source's own (`X-Api-Key`).
    Header {
        /// Its name.
        name: String,
        /// Its value.
        value: Secret,
    },
}

impl std::fmt::Debug for SourceAuth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer { .. } => formatter.write_str("Bearer([redacted])"),
            Self::Basic { username, .. } => write!(formatter, "Basic({username}, [redacted])"),
            Self::Header { name, .. } => write!(formatter, "Header({name}: [redacted])"),
        }
    }
}

/// A `[[claim_sources]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimSource {
    name: String,
    url: String,
    #[serde(default)]
    method: SourceMethod,
    bearer_token: Option<Secret>,
    bearer_token_file: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    password_file: Option<String>,
    header_name: Option<String>,
    header_value: Option<Secret>,
    header_value_file: Option<String>,
    timeout: Option<super::duration::HumanDuration>,
    cache_ttl: Option<super::duration::HumanDuration>,
    backoff: Option<super::duration::HumanDuration>,
    #[serde(default)]
    on_failure: OnFailure,
}

/// A checked claim source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSource {
    /// Its name, which scopes use.
    pub name: String,
    /// The URL, with [`PLACEHOLDERS`].
    pub url: String,
    /// GET or POST.
    pub method: SourceMethod,
    /// Credentials, if the source wants them.
    pub auth: Option<SourceAuth>,
    /// How long one answer may take.
    pub timeout: Duration,
    /// How long an answer is reused for the same user (0: asked every time).
    pub cache_ttl: Duration,
    /// After three timeouts or connection failures in a row, how long the source is not asked
    /// (0: asked every time): a source that is down costs each sign-in its whole timeout
    /// otherwise.
    pub backoff: Duration,
    /// Omit the claims or refuse when the source fails.
    pub on_failure: OnFailure,
}

/// The default wait for a source.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default reuse of an answer.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// The default rest of a source that is down.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);

impl RawClaimSource {
    /// Checks the entry at `claim_sources[position]`.
    pub(super) fn check(self, position: usize) -> Result<ClaimSource, ConfigError> {
        let field = |name: &str| format!("claim_sources[{position}].{name}");
        super::check_identifier(&field("name"), &self.name)?;
        if self.name == ATTRIBUTES {
            return Err(invalid(
                field("name"),
                "`attributes` is the built-in source of stored user attributes",
            ));
        }
        check_url(&field("url"), &self.url)?;
        let bearer_token = secret_or_file(
            &field,
            "bearer_token",
            self.bearer_token,
            self.bearer_token_file,
        )?;
        let password = secret_or_file(&field, "password", self.password, self.password_file)?;
        let header_value = secret_or_file(
            &field,
            "header_value",
            self.header_value,
            self.header_value_file,
        )?;
        let auth = match (
            bearer_token,
            self.username,
            password,
            self.header_name,
            header_value,
        ) {
            (None, None, None, None, None) => None,
            (Some(token), None, None, None, None) => Some(SourceAuth::Bearer { token }),
            (None, Some(username), Some(password), None, None) => {
                Some(SourceAuth::Basic { username, password })
            }
            (None, None, None, Some(name), Some(value)) => {
                let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                    && reqwest::header::HeaderValue::from_str(value.expose()).is_ok();
                let reserved = ["host", "content-length", "content-type", "authorization"]
                    .contains(&name.to_ascii_lowercase().as_str());
                if !valid || reserved {
                    return Err(invalid(
                        field("header_name"),
                        "must be a valid header, other than Host, Content-Length, Content-Type or Authorization",
                    ));
                }
                Some(SourceAuth::Header { name, value })
            }
            _ => {
                return Err(invalid(
                    field("bearer_token"),
                    "authenticate with one of: bearer_token; username and password; \
                     header_name and header_value",
                ));
            }
        };
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT, |timeout| timeout.0);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(invalid(field("timeout"), "must be from 1ms to 30s"));
        }
        let cache_ttl = self.cache_ttl.map_or(DEFAULT_CACHE_TTL, |ttl| ttl.0);
        if cache_ttl > MAX_CACHE_TTL {
            return Err(invalid(field("cache_ttl"), "must be at most 1d"));
        }
        let backoff = self.backoff.map_or(DEFAULT_BACKOFF, |backoff| backoff.0);
        if backoff > MAX_BACKOFF {
            return Err(invalid(field("backoff"), "must be at most 10m"));
        }
        Ok(ClaimSource {
            name: self.name,
            url: self.url,
            method: self.method,
            auth,
            timeout,
            cache_ttl,
            backoff,
            on_failure: self.on_failure,
        })
    }
}

/// A credential given inline (`name`) or in a file (`name_file`, for a mounted secret), not
/// both. The file's content is the value, without the line break that ends it.
fn secret_or_file(
    field: &dyn Fn(&str) -> String,
    name: &str,
    inline: Option<Secret>,
    file: Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let file_field = format!("{name}_file");
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(
            field(&file_field),
            format!("set `{name}` or `{file_field}`, not both"),
        )),
        (inline, None) => Ok(inline),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|error| {
                invalid(field(&file_field), format!("cannot read {path:?}: {error}"))
            })?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(invalid(field(&file_field), format!("{path:?} is empty")));
            }
            Ok(Some(Secret::new(value.to_owned())))
        }
    }
}

/// An `http` or `https` URL without a fragment once its placeholders are filled, and no
/// `{…}` other than the [`PLACEHOLDERS`].
fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    let mut filled = url.to_owned();
    for placeholder in PLACEHOLDERS {
        filled = filled.replace(placeholder, "x");
    }
    if filled.contains('{') || filled.contains('}') {
        return Err(invalid(
            field,
            "only {sub}, {username} and {email} may be filled in",
        ));
    }
    let parsed = url::Url::parse(&filled).map_err(|error| invalid(field, error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.fragment().is_some() {
        return Err(invalid(
            field,
            "must be an http or https URL without a fragment",
        ));
    }
    Ok(())
}

/// Checks every `[[claim_sources]]` entry and that names are unique.
pub(super) fn check_all(raw: Vec<RawClaimSource>) -> Result<Vec<ClaimSource>, ConfigError> {
    let mut sources: Vec<ClaimSource> = Vec::with_capacity(raw.len());
    for (position, entry) in raw.into_iter().enumerate() {
        let source = entry.check(position)?;
        if sources.iter().any(|earlier| earlier.name == source.name) {
            return Err(invalid(
                format!("claim_sources[{position}].name"),
                format!("`{}` is defined twice", source.name),
            ));
        }
        sources.push(source);
    }
    Ok(sources)
}
