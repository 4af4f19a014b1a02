//! OpenID Connect id_tokens: the claims a user's granted scopes release (OpenID Connect Core
//! §5.4's scope claims and the claim scopes of the catalogue), `nonce`, `auth_time`, `sid`,
//! `at_hash`.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scopegate_validator::ScopeSet;
use serde_json::{Map, Value, json};

use std::collections::HashMap;

use crate::State;
use crate::claim_sources::{Identity, Record, SourceError, claim_at};
use crate::config::CustomScope;
use crate::config::claim_source::OnFailure;
use crate::error::OAuthError;
use crate::keys::KeyAlgorithm;
use crate::tokens::sign_jws;
use crate::users::Account;

/// Standard claims each standard scope releases (OpenID Connect Core §5.4).
const STANDARD: &[(&str, &[&str])] = &[
    ("openid", &["acr"]),
    (
        "profile",
        &[
            "name",
            "given_name",
            "middle_name",
            "family_name",
            "nickname",
            "birthdate",
            "gender",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("phone", &["phone_number", "phone_number_verified"]),
];

const ADDRESS_PARTS: &[&str] = &[
    "street_address",
    "locality",
    "region",
    "postal_code",
    "country",
];

/// Standard claims only the service or an operator sets, never the user on a form.
const NOT_SELF_ASSERTED: &[&str] = &[
    "acr",
    "email_verified",
    "phone_number_verified",
    "updated_at",
];

/// The user attribute claim `claim` is read from, if one of `scope` releases it and a user
/// may supply it themselves (a required claim, asked for on a form).
#[must_use]
pub fn claim_attribute(custom: &[CustomScope], scope: &ScopeSet, claim: &str) -> Option<String> {
    let granted = |name: &str| scope.iter().any(|scope| scope.as_str() == name);
    let standard = STANDARD
        .iter()
        .any(|(scope_name, names)| granted(scope_name) && names.contains(&claim));
    if standard && !NOT_SELF_ASSERTED.contains(&claim) {
        return Some(claim.to_owned());
    }
    // Only stored attributes can be asked for: a claim source's records are not the user's
    // to write.
    released(custom, scope)
        .filter(|custom| custom.reads_attributes())
        .find_map(|custom| custom.claims.get(claim).cloned())
}

/// What the claim scopes read about a user: their stored attributes, and the records of the
/// claim sources the granted scopes name (those that answered).
#[derive(Debug, Clone)]
pub struct UserRecords<'a> {
    attributes: &'a Map<String, Value>,
    sources: HashMap<String, Record>,
}

impl<'a> UserRecords<'a> {
    /// The stored attributes alone (for a user whose scopes name no claim source).
    #[must_use]
    pub fn attributes_only(account: &'a Account) -> Self {
        Self {
            attributes: &account.attributes,
            sources: HashMap::new(),
        }
    }

    /// The record `custom` reads, if its source answered.
    fn of(&self, custom: &CustomScope) -> Option<&Map<String, Value>> {
        if custom.reads_attributes() {
            Some(self.attributes)
        } else {
            self.sources.get(&custom.source).map(AsRef::as_ref)
        }
    }

    /// The claims `custom` maps from its record.
    fn claims_of<'s>(
        &'s self,
        custom: &'s CustomScope,
    ) -> impl Iterator<Item = (&'s String, &'s Value)> + 's {
        let record = self.of(custom);
        custom.claims.iter().filter_map(move |(claim, path)| {
            record
                .and_then(|record| claim_at(record, path))
                .map(|value| (claim, value))
        })
    }
}

/// A claim source whose `on_failure` is `refuse` could not be read: nothing that would carry
/// its claims is issued.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ClaimsUnavailable(pub SourceError);

impl From<ClaimsUnavailable> for OAuthError {
    fn from(unavailable: ClaimsUnavailable) -> Self {
        Self::new(
            crate::error::ErrorCode::TemporarilyUnavailable,
            format!("the user's claims cannot be read now: {}", unavailable.0),
        )
    }
}

/// Whether a claim scope of `custom` that `scope` releases reads a claim source (not the
/// stored attributes): only then is there anything to ask before the user's claims are known.
#[must_use]
pub fn reads_claim_sources(custom: &[CustomScope], scope: &ScopeSet) -> bool {
    released(custom, scope).any(|custom| !custom.reads_attributes())
}

/// Reads the records the claim scopes of `custom` that `scope` releases need about `account`:
/// each claim source once (through its cache). A source that fails is left out, with a
/// warning, unless its `on_failure` is `refuse`.
///
/// # Errors
///
/// [`ClaimsUnavailable`] for a failed source whose `on_failure` is `refuse`.
pub async fn user_records<'a>(
    state: &State,
    custom: &[CustomScope],
    account: &'a Account,
    scope: &ScopeSet,
) -> Result<UserRecords<'a>, ClaimsUnavailable> {
    let mut records = UserRecords::attributes_only(account);
    let identity = Identity {
        sub: &account.id,
        username: &account.username,
        email: account.attributes.get("email").and_then(Value::as_str),
    };
    for custom in released(custom, scope) {
        if custom.reads_attributes() || records.sources.contains_key(&custom.source) {
            continue;
        }
        let sources = state.claim_sources();
        match sources.record(&custom.source, identity).await {
            Ok(record) => {
                records.sources.insert(custom.source.clone(), record);
            }
            Err(SourceError::Unknown(source)) => {
                // A stored scope names a source the configuration no longer has.
                tracing::error!(scope = %custom.name, %source, "a claim scope names an unknown claim source: its claims are left out");
            }
            Err(error) => match sources.on_failure(&custom.source) {
                OnFailure::Refuse => return Err(ClaimsUnavailable(error)),
                OnFailure::Omit => {
                    tracing::warn!(scope = %custom.name, %error, "claims of a claim source left out");
                }
            },
        }
    }
    Ok(records)
}

/// The claim scopes of `custom` (the definitions now) whose claims `scope` releases.
fn released<'a>(
    custom: &'a [CustomScope],
    scope: &'a ScopeSet,
) -> impl Iterator<Item = &'a CustomScope> {
    custom
        .iter()
        .filter(|custom| scope.iter().any(|granted| custom.released_by(granted)))
}

/// The claims `scope` releases about `account` under the claim scopes `custom` (the
/// definitions now): its attributes, and what the service knows of it — `updated_at` from its
/// record, `name` made of its name parts when none is stored.
#[must_use]
pub fn released_claims(
    custom: &[CustomScope],
    account: &Account,
    scope: &ScopeSet,
    records: &UserRecords<'_>,
) -> Map<String, Value> {
    let attributes = &account.attributes;
    let granted = |name: &str| scope.iter().any(|scope| scope.as_str() == name);
    let mut claims = Map::new();
    for (scope_name, names) in STANDARD {
        if granted(scope_name) {
            for name in *names {
                if let Some(value) = attributes.get(*name) {
                    claims.insert((*name).to_owned(), value.clone());
                }
            }
        }
    }
    if granted("profile") {
        // The record's time of its last change is the truth; a configured user has none, and
        // keeps what its configuration says.
        if let Some(updated_at) = account.updated_at {
            claims.insert("updated_at".to_owned(), updated_at.into());
        }
        if !claims.contains_key("name")
            && let Some(name) = full_name(attributes)
        {
            claims.insert("name".to_owned(), name.into());
        }
    }
    if granted("address") {
        let address = match attributes.get("address") {
            Some(Value::Object(parts)) => parts.clone(),
            _ => ADDRESS_PARTS
                .iter()
                .filter_map(|part| {
                    attributes
                        .get(*part)
                        .map(|value| ((*part).to_owned(), value.clone()))
                })
                .collect(),
        };
        if !address.is_empty() {
            claims.insert("address".to_owned(), Value::Object(address));
        }
    }
    for custom in released(custom, scope) {
        for (claim, value) in records.claims_of(custom) {
            claims.insert(claim.clone(), value.clone());
        }
    }
    claims
}

/// The custom claims an access token granted `scope` carries about a user with `attributes`:
/// those of the claim scopes of `custom` (the definitions now) marked `access_token` that
/// `scope` covers. All of them, or none
/// when together they are larger, as JSON, than `limits.max_access_token_claims_bytes` — a
/// token too large for the headers that carry it would fail at every API, and an API missing a
/// claim refuses rather than guesses (the service logs a warning).
#[must_use]
pub fn access_token_claims(
    state: &State,
    custom: &[CustomScope],
    records: &UserRecords<'_>,
    scope: &ScopeSet,
) -> Map<String, Value> {
    let mut claims = Map::new();
    for custom in released(custom, scope).filter(|custom| custom.access_token) {
        for (claim, value) in records.claims_of(custom) {
            claims.insert(claim.clone(), value.clone());
        }
    }
    let limit = state.config().limits.max_access_token_claims_bytes;
    let size = serde_json::to_vec(&claims).map_or(usize::MAX, |json| json.len());
    if !claims.is_empty() && size > limit {
        tracing::warn!(
            size,
            limit,
            "custom claims left out of an access token: larger than limits.max_access_token_claims_bytes"
        );
        return Map::new();
    }
    claims
}

/// `given_name [middle_name] family_name`, when both given and family names are known (a name
/// made of one part could not be told from a nickname, and is left out).
fn full_name(attributes: &Map<String, Value>) -> Option<String> {
    let part = |name: &str| {
        attributes
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|part| !part.is_empty())
    };
    let (given, family) = (part("given_name")?, part("family_name")?);
    Some(match part("middle_name") {
        Some(middle) => format!("{given} {middle} {family}"),
        None => format!("{given} {family}"),
    })
}

/// `at_hash`: the left half of the access token's hash, with the hash of the signing
/// algorithm (SHA-256 for RS256/ES256, SHA-512 for Ed25519).
#[must_use]
pub fn at_hash(access_token: &str, algorithm: KeyAlgorithm) -> String {
    let hash = match algorithm {
        KeyAlgorithm::Rs256 | KeyAlgorithm::Es256 => &digest::SHA256,
        KeyAlgorithm::EdDsa => &digest::SHA512,
    };
    let full = digest::digest(hash, access_token.as_bytes());
    let bytes = full.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// What an id_token is about.
#[derive(Debug)]
pub struct Subject<'a> {
    /// The user (`sub` is its id).
    pub account: &'a Account,
    /// `aud`: the client.
    pub client_id: &'a str,
    /// Granted scopes.
    pub scope: &'a ScopeSet,
    /// `nonce` of the authorization request.
    pub nonce: Option<&'a str>,
    /// `auth_time`.
    pub auth_time: u64,
    /// `sid`.
    pub sid: &'a str,
    /// The access token issued with it.
    pub access_token: &'a str,
    /// Its lifetime in seconds.
    pub ttl: u64,
    /// What the claim scopes read about the user.
    pub records: &'a UserRecords<'a>,
}

/// Signs an id_token, with the claims the claim scopes `custom` (the definitions now) release.
///
/// # Errors
///
/// `temporarily_unavailable` if no key can sign.
pub fn issue(
    state: &State,
    custom: &[CustomScope],
    subject: &Subject<'_>,
) -> Result<String, OAuthError> {
    let now = state.now();
    let algorithm = state
        .keys()
        .active(now)
        .map_or(KeyAlgorithm::Rs256, |key| key.key.algorithm());
    let mut claims = released_claims(custom, subject.account, subject.scope, subject.records);
    let fixed = json!({
        "iss": state.config().issuer,
        "sub": subject.account.id,
        "aud": subject.client_id,
        "azp": subject.client_id,
        "iat": now,
        "exp": now + subject.ttl,
        "auth_time": subject.auth_time,
        "sid": subject.sid,
        "at_hash": at_hash(subject.access_token, algorithm),
    });
    if let Value::Object(fixed) = fixed {
        claims.extend(fixed);
    }
    if let Some(nonce) = subject.nonce {
        claims.insert("nonce".to_owned(), nonce.into());
    }
    let (token, _) = sign_jws(state, "JWT", &Value::Object(claims), now)?;
    Ok(token)
}

/// The claims of an id_token this service issued, verified by
/// [`OwnTokens`](crate::own_tokens::OwnTokens) (published key, signature, issuer, `typ` JWT) but
/// not for expiry: an `id_token_hint` may have expired (OpenID Connect RP-Initiated Logout §2).
pub async fn verify_hint(state: &State, token: &str) -> Option<Map<String, Value>> {
    let principal = state
        .own_tokens()
        .id_token_hints()
        .validate(token)
        .await
        .ok()?;
    Some(principal.claims())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_openid_example() {
        // OpenID Connect Core, appendix A.3: access token and its at_hash (RS256).
        assert_eq!(
            at_hash(
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
                KeyAlgorithm::Rs256
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
