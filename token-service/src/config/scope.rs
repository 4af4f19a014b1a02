//! A claim scope: what it is defined with ([`ScopeSettings`]), the one check of a definition
//! ([`build_scope`]) and the checked [`CustomScope`].
//!
//! `ScopeSettings` is the one input type of every entry point: a `[[scopes]]` entry of the
//! configuration file, the body of `POST /admin/scopes` and `PUT /admin/scopes/{name}`, the
//! flags of `token-service scope add` and `scope update`; the admin API's OpenAPI document
//! describes it from its schema. A new member of a definition is one member here, its check in
//! [`build_scope`], its field in [`CustomScope`], a migration pair and its column in
//! `store::mapping`.

use std::collections::BTreeMap;
use std::sync::Arc;

use scopegate_validator::Scope;
use serde::{Deserialize, Serialize};

use super::claim_source::{self, ClaimSource};
use super::{Api, ConfigError, invalid, scopes_overlap};
use crate::service_scopes;

/// Claims only the service sets: no claim scope may name one, whatever its source — a
/// profile store, a directory or a user's own attribute never says who the user is, who
/// issued the token, or that an address was verified.
pub const PROTECTED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "cnf",
    "sid",
    "act",
    "may_act",
    "azp",
    "auth_time",
    "acr",
    "amr",
    "nonce",
    "at_hash",
    "c_hash",
    "s_hash",
    "email_verified",
    "phone_number_verified",
    "updated_at",
    "active",
    "token_type",
    "_claim_names",
    "_claim_sources",
];

/// Claims an access token and its introspection answer define besides
/// [`PROTECTED_CLAIMS`]: a scope whose claims go into access tokens may not name one of them.
pub const ACCESS_TOKEN_RESERVED_CLAIMS: &[&str] = &["username"];

/// The longest claim or attribute name of a definition.
pub const MAX_CLAIM_NAME_BYTES: usize = 255;

/// The claims a scope releases: claim name → the user attribute it is read from. In the file
/// and in JSON a table (`{ company_name = "companyName" }`); on the command line one
/// `--claim company_name=companyName` per claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct ClaimMap(pub BTreeMap<String, String>);

/// The id of the `--claim` argument: the member it fills, so that an error about
/// `claims.<name>` names the flag.
const CLAIM_ARGUMENT: &str = "claims";

impl clap::FromArgMatches for ClaimMap {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut claims = Self::default();
        claims.update_from_arg_matches(matches)?;
        Ok(claims)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        let Some(pairs) = matches.get_many::<(String, String)>(CLAIM_ARGUMENT) else {
            return Ok(());
        };
        let mut claims = BTreeMap::new();
        for (claim, attribute) in pairs {
            if claims.insert(claim.clone(), attribute.clone()).is_some() {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::ValueValidation,
                    format!("--claim `{claim}` is given twice\n"),
                ));
            }
        }
        self.0 = claims;
        Ok(())
    }
}

impl clap::Args for ClaimMap {
    fn augment_args(command: clap::Command) -> clap::Command {
        command.arg(
            clap::Arg::new(CLAIM_ARGUMENT)
                .long("claim")
                .value_name("CLAIM=ATTRIBUTE")
                .action(clap::ArgAction::Append)
                .value_parser(parse_claim_argument)
                .help(
                    "A claim it releases and the user attribute it is read from (repeatable): \
                     --claim company_name=companyName",
                ),
        )
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// `CLAIM=ATTRIBUTE`, both non-empty (the rest is [`build_scope`]'s to check).
fn parse_claim_argument(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((claim, attribute)) if !claim.is_empty() && !attribute.is_empty() => {
            Ok((claim.to_owned(), attribute.to_owned()))
        }
        _ => Err("write CLAIM=ATTRIBUTE, like company_name=companyName".to_owned()),
    }
}

/// What a claim scope is defined with: a `[[scopes]]` entry of the configuration file, the
/// body of `POST /admin/scopes` (and `PUT /admin/scopes/{name}`), the flags of
/// `token-service scope add` (and `scope update`).
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ScopeSettings")]
pub struct ScopeSettings {
    /// The scope, as clients ask for it (`ad:user_custom:read`).
    #[serde(default)]
    #[arg(long)]
    pub name: String,
    /// The claims it releases: claim name → the user attribute each is read from.
    #[serde(default)]
    #[command(flatten)]
    pub claims: ClaimMap,
    /// Access tokens granted it carry its claims too (JWTs among their claims, opaque ones at
    /// introspection), not only id_tokens and /userinfo.
    #[serde(default)]
    #[arg(long)]
    pub access_token: bool,
    /// Where its claims are read: a `[[claim_sources]]` name (each claim then names a member
    /// of the source's answer, or a JSON pointer into it); absent, the user's stored
    /// attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub claim_source: Option<String>,
}

impl super::JsonSettings for ScopeSettings {}

/// A claim scope, checked (from the configuration file or the store: one type for both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomScope {
    /// The scope.
    pub name: Scope,
    /// Claim name → user attribute.
    pub claims: BTreeMap<String, String>,
    /// Whether access tokens granted the scope carry its claims too (JWTs in their claims,
    /// opaque ones at introspection), not only id_tokens and `/userinfo`.
    pub access_token: bool,
    /// The claim source its claims are read from ([`claim_source::ATTRIBUTES`]: the user's
    /// stored attributes).
    pub source: String,
}

impl CustomScope {
    /// Whether its claims are the user's stored attributes (which a user may be asked to
    /// supply), not a claim source's.
    #[must_use]
    pub fn reads_attributes(&self) -> bool {
        self.source == claim_source::ATTRIBUTES
    }

    /// What it is defined with (the admin API's answers, the command line's listing).
    #[must_use]
    pub fn settings(&self) -> ScopeSettings {
        ScopeSettings {
            name: self.name.as_str().to_owned(),
            claims: ClaimMap(self.claims.clone()),
            access_token: self.access_token,
            claim_source: (!self.reads_attributes()).then(|| self.source.clone()),
        }
    }

    /// Whether `granted` releases this scope's claims: it is the scope, or covers it
    /// (`p:n:*` covers `p:n:read`; any `p:n:…` covers a scope named `p:n`).
    #[must_use]
    pub fn released_by(&self, granted: &Scope) -> bool {
        granted.covers(&self.name)
    }
}

/// What a definition must not collide with: the definitions there are (the one being
/// replaced left out) and every API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defined<'a> {
    /// The configuration file's definitions.
    pub configured: &'a [CustomScope],
    /// The store's definitions.
    pub stored: &'a [CustomScope],
    /// Every API, with the scopes it owns (the service's own identity left out: its scopes are
    /// the fixed ones, refused by name).
    pub apis: &'a [Arc<Api>],
    /// The configured claim sources a definition may name; `None` when a stored definition is
    /// read back (a source dropped from the file since is met, and handled, at release).
    pub sources: Option<&'a [ClaimSource]>,
}

/// Why a definition is refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeRefused {
    /// A member breaks a rule; the error names it (`name`, `claims.<claim>`).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// A scope of that name is defined already.
    #[error("scope `{name}` is defined already")]
    Defined {
        /// The name.
        name: String,
        /// Whether the configuration file defines it.
        configured: bool,
    },
    /// It overlaps a scope an API owns: each scope has one owner.
    #[error("`{scope}` overlaps `{owned}`, a scope of API `{api}`")]
    OwnedByApi {
        /// The name asked for.
        scope: String,
        /// The API's scope.
        owned: String,
        /// The API.
        api: String,
    },
}

/// The one check of a claim scope's definition, wherever it is defined (the configuration
/// file, the admin API, `token-service scope add|update`): fields are named `{prefix}name`,
/// `{prefix}claims.<claim>`.
///
/// - `name`: a valid scope, none of OpenID Connect's nor the admin API's (no `scopegate`
///   prefix at all: the service's own);
/// - each claim and attribute name: 1 to [`MAX_CLAIM_NAME_BYTES`] bytes, no spaces or control
///   characters; no claim only the service sets ([`PROTECTED_CLAIMS`]); with
///   `access_token`, no claim access tokens define themselves
///   ([`ACCESS_TOKEN_RESERVED_CLAIMS`]);
/// - not a name `defined` already, and no overlap with a scope of one of `defined.apis`
///   (`p:n` overlaps `p:n:read`).
///
/// # Errors
///
/// [`ScopeRefused`]: the first rule broken.
pub fn build_scope(
    prefix: &str,
    settings: ScopeSettings,
    defined: &Defined<'_>,
) -> Result<CustomScope, ScopeRefused> {
    let field = |name: &str| format!("{prefix}{name}");
    if settings.name.is_empty() {
        return Err(invalid(field("name"), "is required").into());
    }
    let name =
        Scope::parse(&settings.name).map_err(|error| invalid(field("name"), error.to_string()))?;
    if let Some(reason) = service_scopes::reserved(&name) {
        return Err(invalid(field("name"), reason).into());
    }
    for (claim, attribute) in &settings.claims.0 {
        let claim_field = field(&format!("claims.{claim}"));
        check_claim_name(&claim_field, "claim", claim)?;
        check_claim_name(&claim_field, "attribute", attribute)?;
        if PROTECTED_CLAIMS.contains(&claim.as_str()) {
            return Err(invalid(
                claim_field,
                format!("`{claim}` is a claim only the service sets"),
            )
            .into());
        }
    }
    let source = match settings.claim_source {
        None => claim_source::ATTRIBUTES.to_owned(),
        Some(source) => {
            let known = source == claim_source::ATTRIBUTES
                || defined
                    .sources
                    .is_none_or(|sources| sources.iter().any(|known| known.name == source));
            if !known {
                return Err(invalid(
                    field("claim_source"),
                    format!("`{source}` is not a configured claim source ([[claim_sources]])"),
                )
                .into());
            }
            source
        }
    };
    if settings.access_token
        && let Some(reserved) = settings
            .claims
            .0
            .keys()
            .find(|claim| ACCESS_TOKEN_RESERVED_CLAIMS.contains(&claim.as_str()))
    {
        return Err(invalid(
            field("claims"),
            format!(
                "`{reserved}` is a claim access tokens define themselves; with \
                 `access_token = true` a custom claim needs another name"
            ),
        )
        .into());
    }
    for (definitions, configured) in [(defined.configured, true), (defined.stored, false)] {
        if definitions.iter().any(|other| other.name == name) {
            return Err(ScopeRefused::Defined {
                name: settings.name,
                configured,
            });
        }
    }
    for api in defined.apis {
        if let Some(owned) = api.scopes.iter().find(|owned| scopes_overlap(owned, &name)) {
            return Err(ScopeRefused::OwnedByApi {
                scope: settings.name,
                owned: owned.as_str().to_owned(),
                api: api.id.clone(),
            });
        }
    }
    Ok(CustomScope {
        name,
        claims: settings.claims.0,
        access_token: settings.access_token,
        source,
    })
}

/// A claim or attribute name: it becomes a JSON member of tokens and a key of user attributes.
fn check_claim_name(field: &str, what: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > MAX_CLAIM_NAME_BYTES
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            field,
            format!(
                "the {what} name must be 1 to {MAX_CLAIM_NAME_BYTES} bytes without spaces or \
                 control characters"
            ),
        ));
    }
    Ok(())
}
