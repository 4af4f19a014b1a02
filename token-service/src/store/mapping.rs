//! The store's mapping between the model types ([`Client`], [`Api`], [`CustomScope`]) and their
//! columns: the one
//! place a stored field is named. A row is written from [`client_columns`] (the `INSERT` lists
//! exactly these) and read back by [`client_from_row`] with the rules it was checked by; a row
//! this version cannot read is reported as corrupt, never half-used.

use std::time::Duration;

use scopegate_validator::{Scope, ScopeSet};

use super::StoreError;
use super::db::{Row, Value};
use super::scopes::StoredScope;
use super::sql::{json_list, parse_list};
use crate::config::keys::AssertionKeys;
use crate::config::{
    self, Api, ClaimMap, Client, ClientSettings, CustomScope, GrantType, RateLimit, ScopeSettings,
    TokenFormat,
};
use crate::secret::SecretHash;

/// A row's columns by name, in the order the `INSERT` lists them.
pub(super) type Columns = Vec<(&'static str, Value)>;

/// The columns of a client (configured clients are never stored: `registered_at` is set).
pub(super) fn client_columns(client: &Client) -> Columns {
    let settings = &client.settings;
    let grants: Vec<String> = settings
        .grants
        .iter()
        .map(|grant| grant.as_str().to_owned())
        .collect();
    vec![
        ("id", Value::Text(settings.id.clone())),
        (
            "secret_hash",
            Value::OptionalText(client.secret.as_ref().map(|hash| hash.as_str().to_owned())),
        ),
        ("grants", Value::Text(json_list(&grants))),
        ("scopes", Value::Text(scope_text(&settings.scopes))),
        (
            "default_scopes",
            Value::OptionalText(settings.default_scopes.as_deref().map(scope_text)),
        ),
        (
            "token_format",
            Value::Text(settings.token_format.as_str().to_owned()),
        ),
        (
            "access_token_ttl",
            Value::OptionalInt(settings.access_token_ttl.map(|ttl| ttl.as_secs())),
        ),
        ("audience", Value::Text(json_list(&settings.audience))),
        (
            "exchange_from",
            Value::Text(json_list(&settings.exchange_from)),
        ),
        (
            "redirect_uris",
            Value::Text(json_list(&settings.redirect_uris)),
        ),
        (
            "post_logout_redirect_uris",
            Value::Text(json_list(&settings.post_logout_redirect_uris)),
        ),
        (
            "required_claims",
            Value::Text(json_list(&settings.required_claims)),
        ),
        ("self_signup", Value::Int(u64::from(settings.self_signup))),
        (
            "dpop_bound_access_tokens",
            Value::Int(u64::from(settings.dpop_bound_access_tokens)),
        ),
        (
            "jwks",
            Value::OptionalText(settings.jwks.as_ref().map(ToString::to_string)),
        ),
        ("jwks_uri", Value::OptionalText(settings.jwks_uri.clone())),
        (
            "rate_limit",
            Value::OptionalText(settings.rate_limit.map(|rate| rate.to_string())),
        ),
        (
            "created_at",
            Value::Int(client.registered_at.unwrap_or_default()),
        ),
    ]
}

/// Rebuilds a client from its stored row.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming what could not be read.
pub(super) fn client_from_row(row: &Row) -> Result<Client, StoreError> {
    let id = row.text("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "clients",
        reason: format!("client `{id}`: {reason}"),
    };
    let secret = row
        .optional_text("secret_hash")?
        .as_deref()
        .map(SecretHash::parse)
        .transpose()
        .map_err(corrupt)?;
    let grants = parse_list("clients", &row.text("grants")?)?
        .iter()
        .map(|name| {
            GrantType::parse(name).ok_or_else(|| corrupt(format!("unknown grant `{name}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scopes = |text: &str| {
        ScopeSet::parse_space_separated(text)
            .map(|set| set.into_iter().collect::<Vec<_>>())
            .map_err(|error| corrupt(error.to_string()))
    };
    let format = row.text("token_format")?;
    let token_format = TokenFormat::parse(&format)
        .ok_or_else(|| corrupt(format!("unknown token format `{format}`")))?;
    let access_token_ttl = row
        .optional_int("access_token_ttl")?
        .map(|seconds| {
            config::check_ttl(
                "access_token_ttl",
                Duration::from_secs(seconds),
                config::MAX_ACCESS_TOKEN_TTL,
            )
            .map_err(|error| corrupt(error.to_string()))
        })
        .transpose()?;
    let jwks = row
        .optional_text("jwks")?
        .map(|text| serde_json::from_str(&text).map_err(|error| corrupt(format!("jwks: {error}"))))
        .transpose()?;
    let jwks_uri = row.optional_text("jwks_uri")?;
    let settings = ClientSettings {
        public: secret.is_none() && jwks.is_none() && jwks_uri.is_none(),
        jwks,
        jwks_uri,
        grants,
        scopes: scopes(&row.text("scopes")?)?,
        default_scopes: row
            .optional_text("default_scopes")?
            .as_deref()
            .map(scopes)
            .transpose()?,
        token_format,
        access_token_ttl,
        audience: parse_list("clients", &row.text("audience")?)?,
        exchange_from: parse_list("clients", &row.text("exchange_from")?)?,
        redirect_uris: parse_list("clients", &row.text("redirect_uris")?)?,
        post_logout_redirect_uris: parse_list("clients", &row.text("post_logout_redirect_uris")?)?,
        required_claims: parse_list("clients", &row.text("required_claims")?)?,
        self_signup: row.int("self_signup")? != 0,
        dpop_bound_access_tokens: row.int("dpop_bound_access_tokens")? != 0,
        rate_limit: rate_of(row, &corrupt)?,
        secret: None,
        secret_hash: None,
        id,
    };
    let created_at = row.int("created_at")?;
    let checked = Client::new(settings, secret, Some(created_at));
    checked.map_err(|error| StoreError::Corrupt {
        table: "clients",
        reason: error.to_string(),
    })
}

/// The columns of an API.
pub(super) fn api_columns(api: &Api) -> Columns {
    vec![
        ("id", Value::Text(api.id.clone())),
        (
            "secret_hash",
            Value::OptionalText(api.secret.as_ref().map(|hash| hash.as_str().to_owned())),
        ),
        ("scopes", Value::Text(scope_text(&api.scopes))),
        (
            "created_at",
            Value::Int(api.registered_at.unwrap_or_default()),
        ),
        (
            "rate_limit",
            Value::OptionalText(api.rate_limit.map(|rate| rate.to_string())),
        ),
        (
            "jwks",
            Value::OptionalText(match &api.keys {
                Some(AssertionKeys::Jwks(set)) => Some(set.to_string()),
                _ => None,
            }),
        ),
        (
            "jwks_uri",
            Value::OptionalText(match &api.keys {
                Some(AssertionKeys::JwksUri(uri)) => Some(uri.clone()),
                _ => None,
            }),
        ),
    ]
}

/// Rebuilds an API from its stored row.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming what could not be read.
pub(super) fn api_from_row(row: &Row) -> Result<Api, StoreError> {
    let id = row.text("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "apis",
        reason: format!("API `{id}`: {reason}"),
    };
    let jwks = row
        .optional_text("jwks")?
        .map(|text| serde_json::from_str(&text).map_err(|error| corrupt(format!("jwks: {error}"))))
        .transpose()?;
    let keys = config::keys::check("", jwks.as_ref(), row.optional_text("jwks_uri")?.as_deref())
        .map_err(|error| corrupt(error.to_string()))?;
    Ok(Api {
        secret: row
            .optional_text("secret_hash")?
            .as_deref()
            .map(SecretHash::parse)
            .transpose()
            .map_err(corrupt)?,
        keys,
        scopes: ScopeSet::parse_space_separated(&row.text("scopes")?)
            .map_err(|error| corrupt(error.to_string()))?
            .into_iter()
            .collect(),
        registered_at: Some(row.int("created_at")?),
        rate_limit: rate_of(row, &corrupt)?,
        id,
    })
}

/// A claim scope's definition columns: `claims` (a JSON object), `access_token` (0 or 1) and
/// `source`.
pub(super) fn scope_definition(scope: &CustomScope) -> (String, u64, &str) {
    let claims: serde_json::Map<String, serde_json::Value> = scope
        .claims
        .iter()
        .map(|(claim, attribute)| (claim.clone(), attribute.clone().into()))
        .collect();
    (
        serde_json::Value::Object(claims).to_string(),
        u64::from(scope.access_token),
        scope.source.as_str(),
    )
}

/// Rebuilds a stored claim scope from its row, checked again by the one check of a definition.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming the scope and what could not be read.
pub(super) fn scope_from_row(row: &Row) -> Result<StoredScope, StoreError> {
    let name = row.text("name")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "scopes",
        reason: format!("scope `{name}`: {reason}"),
    };
    let claims: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&row.text("claims")?)
            .map_err(|error| corrupt(format!("claims: {error}")))?;
    let settings = ScopeSettings {
        name: name.clone(),
        claims: ClaimMap(claims),
        access_token: row.int("access_token")? != 0,
        claim_source: Some(row.text("source")?),
    };
    let scope = config::build_scope("", settings, &config::Defined::default())
        .map_err(|refused| corrupt(refused.to_string()))?;
    Ok(StoredScope {
        scope,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        deleted_at: row.optional_int("deleted_at")?,
    })
}

/// `INSERT INTO {table} (…) VALUES ($1, …)` for `columns`.
pub(super) fn insert_sql(table: &str, columns: &Columns) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let places: Vec<String> = (1..=columns.len())
        .map(|place| format!("${place}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        places.join(", ")
    )
}

/// A row's `rate_limit` column.
fn rate_of(
    row: &Row,
    corrupt: &impl Fn(String) -> StoreError,
) -> Result<Option<RateLimit>, StoreError> {
    row.optional_text("rate_limit")?
        .map(|text| text.parse().map_err(corrupt))
        .transpose()
}

/// Scopes as one space-separated column.
fn scope_text(scopes: &[Scope]) -> String {
    scopes.iter().cloned().collect::<ScopeSet>().to_string()
}
