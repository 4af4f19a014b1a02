//! Access tokens: issuing them (RFC 9068 JWT or opaque, per client) and looking them up again
//! for introspection and revocation.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scopegate_validator::ScopeSet;
use serde::Serialize;
use serde_json::{Value, json};

use crate::State;
use crate::config::{Client, GrantType, TokenFormat};
use crate::error::{ErrorCode, OAuthError};
use crate::opaque_token;
use crate::secret;
use crate::store::{StoreError, TokenKey, TokenRecord};
use crate::telemetry::metrics;

/// Longest token the service looks at; anything longer is not one of its tokens.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What an access token is issued for.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    /// The grant it is issued by (for the metrics).
    pub grant_type: GrantType,
    /// The client it is issued to.
    pub client: Arc<Client>,
    /// `sub`: the user, or the client id for client credentials.
    pub subject: String,
    /// Granted scopes.
    pub scope: ScopeSet,
    /// `aud`.
    pub audience: Vec<String>,
    /// The grants it belongs to — the authorization code it comes from, the token it was
    /// exchanged from — so that revoking one (a replayed code, a revoked refresh or subject
    /// token) revokes what it produced.
    pub grants: Vec<String>,
    /// The DPoP key it is bound to (`cnf.jkt`, RFC 9449 §6), if the request proved one.
    pub jkt: Option<String>,
    /// The browser session it was issued in (`sid`), so that an API can refuse it once that
    /// session ends (docs/revocation-events.md).
    pub sid: Option<String>,
    /// A time (seconds since the epoch) it must not outlive: the expiry of the token it was
    /// exchanged from.
    pub not_after: Option<u64>,
    /// The `act` claim (RFC 8693 §4.1) of a token issued by token exchange: who acts for the
    /// subject, and before them (nested) who did.
    pub act: Option<Value>,
    /// Custom claims of the user, from scopes marked `access_token`
    /// ([`id_token::access_token_claims`](crate::id_token::access_token_claims)).
    pub claims: serde_json::Map<String, Value>,
}

/// A freshly issued access token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The token itself (shown once, to the client).
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes, space-separated (as the token response and the token's row write them).
    pub scope: String,
    /// Its identifier (for logs).
    pub jti: String,
    /// Bound to a DPoP key: its `token_type` is `DPoP` (RFC 9449 §5).
    pub dpop_bound: bool,
}

impl IssuedToken {
    /// The `token_type` of the token response: `DPoP` for a bound token, else `Bearer`.
    #[must_use]
    pub const fn token_type(&self) -> &'static str {
        token_type(self.dpop_bound)
    }
}

/// `DPoP` for a bound token, `Bearer` for any other (RFC 9449 §5, RFC 7662 `token_type`).
const fn token_type(dpop_bound: bool) -> &'static str {
    if dpop_bound { "DPoP" } else { "Bearer" }
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IssuedToken")
            .field("jti", &self.jti)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("dpop_bound", &self.dpop_bound)
            .finish_non_exhaustive()
    }
}

/// A token that is active: issued here, unexpired, unrevoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    /// `client_id`.
    pub client_id: String,
    /// `sub`.
    pub subject: String,
    /// `scope`.
    pub scope: ScopeSet,
    /// `aud`.
    pub audience: Vec<String>,
    /// `iat` (seconds since the epoch).
    pub issued_at: u64,
    /// `exp` (seconds since the epoch).
    pub expires_at: u64,
    /// `jti`.
    pub jti: String,
    /// JWT or opaque.
    pub format: TokenFormat,
    /// The DPoP key it is bound to (`cnf.jkt`), if any.
    pub jkt: Option<String>,
    /// Its `act` claim, if it was issued by token exchange.
    pub act: Option<Value>,
    /// The browser session it was issued in (`sid`), as far as the token tells (a JWT does).
    pub sid: Option<String>,
}

/// A `jti` issued `since_epoch` after the epoch: the millisecond, in hex (12 characters),
/// then 96 random bits (16 characters, base64url). Identifiers issued one after another sort
/// one after another, so an opaque token's row lands at the end of the `jti` index rather
/// than on a random page of it; the random part keeps them unique across instances.
fn new_jti(since_epoch: std::time::Duration, random: &[u8; JTI_RANDOM_BYTES]) -> String {
    use std::fmt::Write as _;
    let millisecond = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
    let mut jti = String::with_capacity(28);
    // Writing to a `String` cannot fail.
    let _ = write!(jti, "{millisecond:012x}");
    URL_SAFE_NO_PAD.encode_string(random, &mut jti);
    jti
}

/// Random bytes in a `jti`: 96 bits, 16 characters.
const JTI_RANDOM_BYTES: usize = 12;

/// Issues an access token for `grant` in the client's format and lifetime.
///
/// # Errors
///
/// `temporarily_unavailable` if an opaque token cannot be stored or no key can sign.
pub async fn issue(state: &State, grant: &AccessGrant) -> Result<IssuedToken, OAuthError> {
    // One reading of the clock: `iat`, the `jti` and an opaque token's issue time agree.
    let since_epoch = state.since_epoch();
    let now = since_epoch.as_secs();
    let lifetime = grant
        .client
        .settings
        .access_token_ttl
        .unwrap_or(state.config().access_token_ttl)
        .as_secs();
    let ttl = grant.not_after.map_or(lifetime, |not_after| {
        lifetime.min(not_after.saturating_sub(now))
    });
    // The `jti`'s random part and an opaque token's, in one draw.
    let random: [u8; JTI_RANDOM_BYTES + opaque_token::RANDOM_BYTES] = secret::random_array();
    let (mut jti_random, mut token_random) =
        ([0; JTI_RANDOM_BYTES], [0; opaque_token::RANDOM_BYTES]);
    jti_random.copy_from_slice(&random[..JTI_RANDOM_BYTES]);
    token_random.copy_from_slice(&random[JTI_RANDOM_BYTES..]);
    let jti = new_jti(since_epoch, &jti_random);
    let scope = grant.scope.to_string();
    let access_token = match grant.client.settings.token_format {
        TokenFormat::Opaque => {
            let token = opaque_token::new(since_epoch, &token_random);
            state
                .store()
                .insert_token(TokenRecord {
                    key: TokenKey::of(&token),
                    jti: jti.clone(),
                    client_id: grant.client.id().to_owned(),
                    subject: grant.subject.clone(),
                    scope: scope.clone(),
                    audience: grant.audience.clone(),
                    issued_at: now,
                    expires_at: now + ttl,
                    revoked_at: None,
                    jkt: grant.jkt.clone(),
                    act: grant.act.as_ref().map(Value::to_string),
                })
                .await?;
            token
        }
        TokenFormat::Jwt => sign_jwt(state, grant, &scope, &jti, now, ttl)?,
    };
    for grant_id in &grant.grants {
        let revoked_meanwhile = state
            .store()
            .record_grant_token(grant_id, &jti, grant.client.id(), now + ttl)
            .await?;
        if revoked_meanwhile {
            // A concurrent replay of the code (or revocation of the subject token) revoked the
            // grant before this token was recorded: it shares the fate of the grant's other
            // tokens.
            state.store().revoke_grant(grant_id, now).await?;
        }
    }
    metrics::token_issued(
        grant.grant_type,
        grant.client.settings.token_format,
        grant.client.id(),
    );
    tracing::info!(client_id = %grant.client.id(), jti = %jti, format = grant.client.settings.token_format.as_str(), scope = %grant.scope, dpop_bound = grant.jkt.is_some(), "access token issued");
    Ok(IssuedToken {
        access_token,
        expires_in: ttl,
        scope,
        jti,
        dpop_bound: grant.jkt.is_some(),
    })
}

/// An RFC 9068 JWT access token signed by the active key.
fn sign_jwt(
    state: &State,
    grant: &AccessGrant,
    scope: &str,
    jti: &str,
    now: u64,
    ttl: u64,
) -> Result<String, OAuthError> {
    // One audience is written as a string, several as an array (RFC 7519 §4.1.3).
    let audience = match grant.audience.as_slice() {
        [single] => Value::from(single.as_str()),
        many => Value::from(many.to_vec()),
    };
    let mut claims = json!({
        "iss": state.config().issuer,
        "sub": grant.subject,
        "aud": audience,
        "client_id": grant.client.id(),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": jti,
        "scope": scope,
    });
    if let Some(fields) = claims.as_object_mut() {
        if let Some(jkt) = &grant.jkt {
            fields.insert("cnf".to_owned(), json!({ "jkt": jkt }));
        }
        if let Some(sid) = &grant.sid {
            fields.insert("sid".to_owned(), sid.as_str().into());
        }
        if let Some(act) = &grant.act {
            fields.insert("act".to_owned(), act.clone());
        }
        // Their names are none of the above: the configuration refuses reserved ones.
        fields.extend(grant.claims.clone());
    }
    sign_jws(state, "at+jwt", &claims, now).map(|(token, _)| token)
}

/// A compact JWS of `claims` with header `typ`, signed by the key active at `now`; also
/// returns that key's algorithm.
///
/// # Errors
///
/// `temporarily_unavailable` if no key is active or signing fails.
pub fn sign_jws(
    state: &State,
    typ: &str,
    claims: &Value,
    now: u64,
) -> Result<(String, crate::keys::KeyAlgorithm), OAuthError> {
    let ring = state.keys();
    let key = ring.active(now).ok_or_else(|| {
        tracing::error!("no signing key is active");
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "no signing key is active",
        )
    })?;
    let header = json!({
        "alg": key.key.algorithm().as_str(),
        "typ": typ,
        "kid": key.key.kid(),
    });
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key.key.sign(token.as_bytes()).map_err(|_| {
        tracing::error!(kid = key.key.kid(), "signing failed");
        OAuthError::new(ErrorCode::TemporarilyUnavailable, "signing failed")
    })?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok((token, key.key.algorithm()))
}

/// Whether the user a token speaks for still exists (a client-credentials token speaks for
/// its client, whose subject is its id: clients and users never share one).
async fn subject_lives(state: &State, token: &ActiveToken) -> Result<bool, StoreError> {
    if token.subject == token.client_id {
        return Ok(true);
    }
    Ok(state.users().find_by_id(&token.subject).await?.is_some())
}

/// Looks a token up: `Some` only if it was issued here and is unexpired and unrevoked, and its
/// client and user are still there. Every place where a token of this service opens something
/// of the service asks this.
///
/// # Errors
///
/// [`StoreError`] if the store fails (the answer is then unknown, not "inactive").
pub async fn lookup(state: &State, token: &str) -> Result<Option<ActiveToken>, StoreError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Ok(None);
    }
    let now = state.now();
    if token.bytes().filter(|byte| *byte == b'.').count() == 2 {
        let Some(found) = verified_jwt(state, token).await else {
            return Ok(None);
        };
        if found.expires_at <= now || state.store().is_jwt_revoked(&found.jti).await? {
            return Ok(None);
        }
        // A JWT cannot be recalled, but one whose client or user was deleted is inactive here.
        if !state
            .registry()
            .issued_to_live_client(&found.client_id, found.issued_at)
            .await?
            || !subject_lives(state, &found).await?
        {
            return Ok(None);
        }
        return Ok(Some(found));
    }
    let Some(record) = state.store().find_token(&TokenKey::of(token)).await? else {
        return Ok(None);
    };
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Ok(None);
    }
    let Ok(scope) = ScopeSet::parse_space_separated(&record.scope) else {
        tracing::error!(jti = %record.jti, "stored token has an unreadable scope");
        return Ok(None);
    };
    let act = match record.act.as_deref().map(serde_json::from_str::<Value>) {
        None => None,
        Some(Ok(act)) => Some(act),
        Some(Err(_)) => {
            tracing::error!(jti = %record.jti, "stored token has an unreadable act claim");
            return Ok(None);
        }
    };
    Ok(Some(ActiveToken {
        client_id: record.client_id,
        subject: record.subject,
        scope,
        audience: record.audience,
        issued_at: record.issued_at,
        expires_at: record.expires_at,
        jti: record.jti,
        format: TokenFormat::Opaque,
        jkt: record.jkt,
        act,
        sid: None,
    }))
}

/// A JWT of this service, verified by [`OwnTokens`](crate::own_tokens::OwnTokens) (published
/// key, signature, issuer, `typ` at+jwt); `None` for anything else.
async fn verified_jwt(state: &State, token: &str) -> Option<ActiveToken> {
    let principal = match state.own_tokens().access_tokens().validate(token).await {
        Ok(principal) => principal,
        Err(scopegate_validator::Error::Unavailable(error)) => {
            // The key ring is in memory: this cannot happen short of a bug. Inactive is the
            // safe answer.
            tracing::error!(%error, "the service's own keys were unavailable");
            return None;
        }
        Err(_) => return None,
    };
    let seconds = |at: Option<std::time::SystemTime>| {
        at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|since| since.as_secs())
    };
    Some(ActiveToken {
        client_id: principal.client_id()?.to_owned(),
        subject: principal.subject()?.to_owned(),
        scope: principal.scopes().clone(),
        audience: principal.audiences().to_vec(),
        issued_at: seconds(principal.issued_at())?,
        expires_at: seconds(principal.expires_at())?,
        jti: principal.token_id()?.to_owned(),
        format: TokenFormat::Jwt,
        jkt: principal.bound_key_thumbprint().map(str::to_owned),
        act: principal.claim("act"),
        sid: principal.session_id().map(str::to_owned),
    })
}

/// The RFC 7662 §2.2 answer for an active token, serialized as it is (no JSON map built
/// first: introspection is a hot path).
#[derive(Debug, Serialize)]
pub struct IntrospectionAnswer {
    active: bool,
    scope: String,
    client_id: String,
    sub: String,
    aud: Vec<String>,
    iss: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    token_type: &'static str,
    /// RFC 9449 §6.2: the resource server compares this to the proof's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation>,
    /// RFC 8693 §4.1: who acts for the subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<Value>,
    /// Custom claims about the token's user: never one of the names above, which no claim
    /// scope may define (`config::PROTECTED_CLAIMS`).
    #[serde(flatten)]
    user_claims: serde_json::Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct Confirmation {
    jkt: String,
}

impl IntrospectionAnswer {
    /// The answer as a JSON object.
    #[must_use]
    pub fn into_map(self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // A struct of strings, numbers and JSON values always serializes to an object.
            _ => serde_json::Map::new(),
        }
    }
}

/// The RFC 7662 §2.2 answer for `active`, showing `scope` (the caller decides which of its
/// scopes the asker may see).
#[must_use]
pub fn introspection_answer(
    state: &State,
    active: ActiveToken,
    scope: &ScopeSet,
) -> IntrospectionAnswer {
    IntrospectionAnswer {
        active: true,
        scope: scope.to_string(),
        client_id: active.client_id,
        sub: active.subject,
        aud: active.audience,
        iss: state.config().issuer.clone(),
        iat: active.issued_at,
        nbf: active.issued_at,
        exp: active.expires_at,
        jti: active.jti,
        token_type: token_type(active.jkt.is_some()),
        cnf: active.jkt.map(|jkt| Confirmation { jkt }),
        act: active.act,
        user_claims: serde_json::Map::new(),
    }
}

/// What an API may learn of `token` at introspection: only if some scope or audience of the
/// token is the API's, and then only the scopes that belong to it. `None` means inactive.
///
/// # Errors
///
/// `temporarily_unavailable` if the store fails (the answer is then unknown), or a claim
/// source whose `on_failure` is `refuse` cannot give the claims the token carries.
pub async fn introspect_for_api(
    state: &State,
    api: &crate::config::Api,
    token: &str,
) -> Result<Option<IntrospectionAnswer>, OAuthError> {
    let Some(active) = lookup(state, token).await? else {
        return Ok(None);
    };
    let scope: ScopeSet = active
        .scope
        .iter()
        .filter(|granted| api.owns(granted))
        .cloned()
        .collect();
    let addressed = active.audience.contains(&api.id);
    if scope.is_empty() && !addressed {
        return Ok(None);
    }
    let user_claims = if addressed {
        user_claims(state, &active).await?
    } else {
        serde_json::Map::new()
    };
    let mut answer = introspection_answer(state, active, &scope);
    answer.user_claims = user_claims;
    Ok(Some(answer))
}

/// The custom claims the token carries about its user (scopes marked `access_token`), read
/// now: what its JWT form carries, told to an API it is addressed to. None for a token issued
/// to a client for itself.
async fn user_claims(
    state: &State,
    active: &ActiveToken,
) -> Result<serde_json::Map<String, Value>, OAuthError> {
    // The claim scopes now: one deleted since the token was issued releases nothing.
    let custom = state.scopes().definitions().await?;
    let carried = custom.all().iter().any(|custom| {
        custom.access_token
            && active
                .scope
                .iter()
                .any(|granted| custom.released_by(granted))
    });
    // A client's own token has its id as `sub`: never a user's claims, whatever users exist.
    if !carried || active.subject == active.client_id {
        return Ok(serde_json::Map::new());
    }
    Ok(match state.users().find_by_id(&active.subject).await? {
        Some(account) => {
            let records =
                crate::id_token::user_records(state, custom.all(), &account, &active.scope).await?;
            crate::id_token::access_token_claims(state, custom.all(), &records, &active.scope)
        }
        None => serde_json::Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_jti_is_the_millisecond_in_hex_then_its_random_part_in_base64url() {
        let since_epoch = Duration::from_millis(0x0123_4567_89ab);
        assert_eq!(
            new_jti(since_epoch, &[0xff; JTI_RANDOM_BYTES]),
            "0123456789ab________________"
        );
        // Twelve hex digits at least, for as long as the clock reads before the year 10 000.
        assert_eq!(
            new_jti(Duration::from_millis(1), &[0; JTI_RANDOM_BYTES]),
            "000000000001AAAAAAAAAAAAAAAA"
        );
    }
}
