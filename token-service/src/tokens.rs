//! Access tokens: issuing them (RFC 9068 JWT or opaque, per client) and looking them up again
//! for introspection and revocation.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scopegate_validator::ScopeSet;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::State;
use crate::config::{Client, TokenFormat};
use crate::error::{ErrorCode, OAuthError};
use crate::secret::{random_token, token_digest};
use crate::store::{StoreError, TokenRecord};

/// Longest token the service looks at; anything longer is not one of its tokens.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What an access token is issued for.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    /// The client it is issued to.
    pub client: Arc<Client>,
    /// `sub`: the user, or the client id for client credentials.
    pub subject: String,
    /// Granted scopes.
    pub scope: ScopeSet,
    /// `aud`.
    pub audience: Vec<String>,
    /// The grant (an authorization code) it comes from, so that a replayed code can revoke
    /// what it produced.
    pub grant_id: Option<String>,
}

/// A freshly issued access token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The token itself (shown once, to the client).
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes.
    pub scope: ScopeSet,
    /// Its identifier (for logs).
    pub jti: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IssuedToken")
            .field("jti", &self.jti)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
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
}

/// A short random identifier (128 bits) for `jti`.
fn new_jti() -> String {
    random_token()[..22].to_owned()
}

/// Issues an access token for `grant` in the client's format and lifetime.
///
/// # Errors
///
/// `temporarily_unavailable` if an opaque token cannot be stored or no key can sign.
pub async fn issue(state: &State, grant: &AccessGrant) -> Result<IssuedToken, OAuthError> {
    let ttl = grant
        .client
        .access_token_ttl
        .unwrap_or(state.config().access_token_ttl)
        .as_secs();
    let now = state.now();
    let jti = new_jti();
    let access_token = match grant.client.token_format {
        TokenFormat::Opaque => {
            let token = random_token();
            state
                .store()
                .insert_token(&TokenRecord {
                    digest: token_digest(&token),
                    jti: jti.clone(),
                    client_id: grant.client.id.clone(),
                    subject: grant.subject.clone(),
                    scope: grant.scope.to_string(),
                    audience: grant.audience.clone(),
                    issued_at: now,
                    expires_at: now + ttl,
                    revoked_at: None,
                })
                .await?;
            token
        }
        TokenFormat::Jwt => sign_jwt(state, grant, &jti, now, ttl)?,
    };
    if let Some(grant_id) = &grant.grant_id {
        let revoked_meanwhile = state
            .store()
            .record_grant_token(grant_id, &jti, &grant.client.id, now + ttl)
            .await?;
        if revoked_meanwhile {
            // A concurrent replay of the code revoked the grant before this token was
            // recorded: it shares the fate of the grant's other tokens.
            state.store().revoke_grant(grant_id, now).await?;
        }
    }
    tracing::info!(client_id = %grant.client.id, jti = %jti, format = grant.client.token_format.as_str(), scope = %grant.scope, "access token issued");
    Ok(IssuedToken {
        access_token,
        expires_in: ttl,
        scope: grant.scope.clone(),
        jti,
    })
}

/// An RFC 9068 JWT access token signed by the active key.
fn sign_jwt(
    state: &State,
    grant: &AccessGrant,
    jti: &str,
    now: u64,
    ttl: u64,
) -> Result<String, OAuthError> {
    // One audience is written as a string, several as an array (RFC 7519 §4.1.3).
    let audience = match grant.audience.as_slice() {
        [single] => Value::from(single.as_str()),
        many => Value::from(many.to_vec()),
    };
    let claims = json!({
        "iss": state.config().issuer,
        "sub": grant.subject,
        "aud": audience,
        "client_id": grant.client.id,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": jti,
        "scope": grant.scope.to_string(),
    });
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

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
    kid: String,
    typ: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct JwtClaims {
    iss: String,
    sub: String,
    aud: Audience,
    client_id: String,
    iat: u64,
    exp: u64,
    jti: String,
    scope: String,
}

/// Looks a token up: `Some` only if it was issued here and is unexpired and unrevoked.
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
        let Some(found) = state.verified_jwts().verify(state, token, now) else {
            return Ok(None);
        };
        if state.store().is_jwt_revoked(&found.jti).await? {
            return Ok(None);
        }
        // A JWT cannot be recalled, but one whose client was deleted is inactive here.
        if !state
            .registry()
            .issued_to_live_client(&found.client_id, found.issued_at)
            .await?
        {
            return Ok(None);
        }
        return Ok(Some(found));
    }
    let Some(record) = state.store().find_token(&token_digest(token)).await? else {
        return Ok(None);
    };
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Ok(None);
    }
    let Ok(scope) = ScopeSet::parse_space_separated(&record.scope) else {
        tracing::error!(jti = %record.jti, "stored token has an unreadable scope");
        return Ok(None);
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
    }))
}

/// JWT access tokens of this service verified before, by the SHA-256 of the whole token (the
/// cache holds no token). A hit skips only the signature check and the parsing, which cannot
/// give another answer for the same bytes; expiry and the key's state are checked again on every
/// hit, and revocation is checked in the store by the caller every time.
#[derive(Debug)]
pub(crate) struct VerifiedJwts(moka::sync::Cache<[u8; 32], Arc<VerifiedJwt>>);

#[derive(Debug)]
struct VerifiedJwt {
    kid: String,
    token: ActiveToken,
}

/// Most verified JWTs remembered (each ~0.5 KB).
const VERIFIED_JWTS: u64 = 50_000;

impl VerifiedJwts {
    pub(crate) fn new() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(VERIFIED_JWTS)
                // Access tokens live at most a day; expired entries are refused on read anyway.
                .time_to_live(std::time::Duration::from_secs(24 * 3600))
                .build(),
        )
    }

    /// The token's claims if it is one of this service's JWTs, validly signed by a key still
    /// published, and unexpired at `now`.
    fn verify(&self, state: &State, token: &str, now: u64) -> Option<ActiveToken> {
        let digest = token_digest(token);
        if let Some(hit) = self.0.get(&digest) {
            let key_published = state.keys().find(&hit.kid, now).is_some();
            return (key_published && now < hit.token.expires_at).then(|| hit.token.clone());
        }
        let (kid, found) = verify_jwt(state, token, now)?;
        self.0.insert(
            digest,
            Arc::new(VerifiedJwt {
                kid,
                token: found.clone(),
            }),
        );
        Some(found)
    }
}

/// Verifies one of this service's JWT access tokens (published key, signature, issuer, type,
/// expiry); returns the key's `kid` with the claims.
fn verify_jwt(state: &State, token: &str, now: u64) -> Option<(String, ActiveToken)> {
    let mut segments = token.splitn(3, '.');
    let (header, payload, signature) = (segments.next()?, segments.next()?, segments.next()?);
    let header: JwtHeader = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let ring = state.keys();
    let key = ring.find(&header.kid, now)?;
    if header.alg != key.key.algorithm().as_str() || header.typ != "at+jwt" {
        return None;
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let signed = &token[..header_and_payload_len(token)?];
    if !key.key.verify(signed.as_bytes(), &signature) {
        return None;
    }
    let claims: JwtClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    if claims.iss != state.config().issuer || claims.exp <= now {
        return None;
    }
    let found = ActiveToken {
        client_id: claims.client_id,
        subject: claims.sub,
        scope: ScopeSet::parse_space_separated(&claims.scope).ok()?,
        audience: match claims.aud {
            Audience::One(one) => vec![one],
            Audience::Many(many) => many,
        },
        issued_at: claims.iat,
        expires_at: claims.exp,
        jti: claims.jti,
        format: TokenFormat::Jwt,
    };
    Some((header.kid, found))
}

fn header_and_payload_len(token: &str) -> Option<usize> {
    token.rfind('.')
}
