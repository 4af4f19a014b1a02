//! RFC 6749 §4.1 with PKCE (RFC 7636, S256 only): codes are one-time, short-lived, and bound
//! to the client, the redirect URI and the challenge. A replayed code revokes every token the
//! first redemption produced (RFC 6749 §4.1.2, RFC 9700 §4.5).

use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scopegate_validator::ScopeSet;
use subtle::ConstantTimeEq;

use crate::State;
use crate::config::{Client, GrantType};
use crate::dpop::ProofKey;
use crate::error::{ErrorCode, OAuthError};
use crate::id_token::{self, Subject};
use crate::secret::{random_token, token_digest};
use crate::store::{CodeRecord, Redemption, RefreshRecord, SessionRecord};
use crate::tokens::{self, AccessGrant, IssuedToken};

/// What a code is issued for (the authorization request, checked).
#[derive(Debug, Clone)]
pub struct CodeGrant {
    /// The client.
    pub client_id: String,
    /// The redirect URI the code goes to.
    pub redirect_uri: String,
    /// Granted scopes.
    pub scope: ScopeSet,
    /// `nonce`.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// The DPoP key the code is bound to (RFC 9449 §10 `dpop_jkt`).
    pub dpop_jkt: Option<String>,
}

/// Issues a code for `grant` in `session`; returns the code.
///
/// # Errors
///
/// `temporarily_unavailable` if the store fails.
pub async fn issue_code(
    state: &State,
    grant: &CodeGrant,
    session: &SessionRecord,
) -> Result<String, OAuthError> {
    // A claim source that must answer is asked now: a sign-in it cannot serve gets no code
    // (and its answer, cached, serves the redemption that follows).
    let custom = state.scopes().definitions().await?;
    if id_token::reads_claim_sources(custom.all(), &grant.scope)
        && let Some(account) = state.users().find_by_id(&session.user_id).await?
    {
        id_token::user_records(state, custom.all(), &account, &grant.scope).await?;
    }
    let code = random_token();
    state
        .store()
        .insert_code(&CodeRecord {
            digest: token_digest(&code),
            client_id: grant.client_id.clone(),
            user_id: session.user_id.clone(),
            username: session.username.clone(),
            sid: session.sid.clone(),
            redirect_uri: grant.redirect_uri.clone(),
            scope: grant.scope.to_string(),
            nonce: grant.nonce.clone(),
            code_challenge: grant.code_challenge.clone(),
            dpop_jkt: grant.dpop_jkt.clone(),
            auth_time: session.auth_time,
            expires_at: state.now() + state.config().code_ttl.as_secs(),
            redeemed_at: None,
        })
        .await?;
    Ok(code)
}

/// The grant id of a code (by digest): every token descending from it carries it.
#[must_use]
pub fn grant_id(digest: &[u8; 32]) -> String {
    format!("code:{}", URL_SAFE_NO_PAD.encode(digest))
}

/// A PKCE code verifier or challenge: 43 to 128 unreserved characters (RFC 7636 §4.1).
#[must_use]
pub fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte))
}

/// The S256 challenge of a verifier.
#[must_use]
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// The token request of this grant, already parsed.
#[derive(Clone)]
pub struct CodeExchange {
    /// `code`.
    pub code: String,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `code_verifier`.
    pub code_verifier: Option<String>,
    /// The DPoP key the request proved.
    pub proof_key: Option<ProofKey>,
}

/// The code and the verifier are secrets: `Debug` shows only whether they are there.
impl std::fmt::Debug for CodeExchange {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CodeExchange")
            .field("code", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .field(
                "code_verifier",
                &self.code_verifier.as_ref().map(|_| "[redacted]"),
            )
            .field("proof_key", &self.proof_key)
            .finish()
    }
}

/// Tokens for a user: the access token, an id_token for `openid`, and a refresh token for
/// clients allowed the `refresh_token` grant.
#[derive(Clone)]
pub struct CodeTokens {
    /// The access token.
    pub access: IssuedToken,
    /// The id_token, when `openid` was granted.
    pub id_token: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
}

/// Tokens are secrets: `Debug` shows the access token's own redacted form and whether the
/// others are there.
impl std::fmt::Debug for CodeTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CodeTokens")
            .field("access", &self.access)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

/// Redeems a code for an authenticated (or public, identified) client.
///
/// # Errors
///
/// `unauthorized_client`; `invalid_grant` for an unknown, expired, replayed or foreign code,
/// a wrong redirect URI or PKCE verifier; `temporarily_unavailable` if the store fails.
pub async fn authorization_code(
    state: &State,
    client: Arc<Client>,
    exchange: &CodeExchange,
) -> Result<CodeTokens, OAuthError> {
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization_code grant",
        ));
    }
    let now = state.now();
    let digest = token_digest(&exchange.code);
    let grant_id = grant_id(&digest);
    let Some(code) = state.store().find_code(&digest).await? else {
        return Err(invalid_grant("unknown authorization code"));
    };
    if code.redeemed_at.is_some() {
        return Err(replayed(state, &grant_id, now).await);
    }
    // Checks that leave the code usable by its rightful client.
    if code.client_id != client.id() {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if code.expires_at <= now {
        return Err(invalid_grant("the authorization code has expired"));
    }
    if exchange.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
        return Err(invalid_grant(
            "redirect_uri must be the one of the authorization request",
        ));
    }
    match (&code.code_challenge, &exchange.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            let matches = is_pkce_value(verifier)
                && bool::from(s256(verifier).as_bytes().ct_eq(challenge.as_bytes()));
            if !matches {
                return Err(invalid_grant(
                    "the code_verifier does not match the challenge",
                ));
            }
        }
        (Some(_), None) => return Err(invalid_grant("code_verifier is missing")),
        (None, Some(_)) => {
            return Err(invalid_grant(
                "a code_verifier was sent but the authorization request had no challenge",
            ));
        }
        (None, None) => {}
    }
    let proven = exchange.proof_key.as_ref().map(|key| key.jkt.as_str());
    if code.dpop_jkt.is_some() && code.dpop_jkt.as_deref() != proven {
        // RFC 9449 §10: the code is for the key named at the authorization request only.
        return Err(invalid_grant(
            "the code is bound to another DPoP key (dpop_jkt)",
        ));
    }
    match state.store().redeem_code(&digest, now).await? {
        Redemption::Redeemed => {}
        Redemption::AlreadyRedeemed => return Err(replayed(state, &grant_id, now).await),
        Redemption::Unknown => return Err(invalid_grant("unknown authorization code")),
    }
    let Some(account) = state.users().find(&code.username).await? else {
        return Err(invalid_grant("the user no longer exists"));
    };
    if account.id != code.user_id {
        return Err(invalid_grant("the user no longer exists"));
    }
    let scope = ScopeSet::parse_space_separated(&code.scope)
        .map_err(|_| invalid_grant("the code's scope cannot be read"))?;
    // A scope deleted since the code was issued is no longer given.
    let scope = state
        .registry()
        .withdrawn_scopes(&[&scope])
        .await?
        .remove_from(&scope);
    user_tokens(
        state,
        &client,
        &UserGrant {
            grant_type: GrantType::AuthorizationCode,
            account: &account,
            family: &grant_id,
            sid: &code.sid,
            auth_time: code.auth_time,
            scope: &scope,
            refresh_scope: &scope,
            family_started_at: state.now(),
            nonce: code.nonce.as_deref(),
            access_jkt: proven,
            // RFC 9449 §5: a public client's refresh tokens are bound to its key; a
            // confidential client's are bound to its authentication already.
            refresh_jkt: if client.is_public() { proven } else { None },
        },
    )
    .await
}

/// What a user's tokens are issued for.
pub(crate) struct UserGrant<'a> {
    /// `authorization_code`, or `refresh_token`.
    pub(crate) grant_type: GrantType,
    pub(crate) account: &'a crate::users::Account,
    /// The grant id shared by every token descending from one code.
    pub(crate) family: &'a str,
    pub(crate) sid: &'a str,
    pub(crate) auth_time: u64,
    /// The access token's scopes.
    pub(crate) scope: &'a ScopeSet,
    /// What the next refresh may ask for (the original grant's scopes).
    pub(crate) refresh_scope: &'a ScopeSet,
    /// When the refresh token family started (the code's redemption).
    pub(crate) family_started_at: u64,
    pub(crate) nonce: Option<&'a str>,
    /// The DPoP key the access token is bound to.
    pub(crate) access_jkt: Option<&'a str>,
    /// The DPoP key the refresh token is bound to (the family's, for the life of the family).
    pub(crate) refresh_jkt: Option<&'a str>,
}

/// Issues the access token, the id_token (for `openid`) and the refresh token (for clients
/// allowed that grant).
pub(crate) async fn user_tokens(
    state: &State,
    client: &Arc<Client>,
    grant: &UserGrant<'_>,
) -> Result<CodeTokens, OAuthError> {
    let audience = super::audience(state, client, grant.scope, &[]).await?;
    let custom = state.scopes().definitions().await?;
    let records = id_token::user_records(state, custom.all(), grant.account, grant.scope).await?;
    let access = tokens::issue(
        state,
        &AccessGrant {
            grant_type: grant.grant_type,
            client: Arc::clone(client),
            subject: grant.account.id.clone(),
            scope: grant.scope.clone(),
            audience,
            grants: vec![grant.family.to_owned()],
            act: None,
            not_after: None,
            jkt: grant.access_jkt.map(str::to_owned),
            sid: Some(grant.sid.to_owned()),
            claims: id_token::access_token_claims(state, custom.all(), &records, grant.scope),
        },
    )
    .await?;
    let openid = grant
        .scope
        .iter()
        .any(|granted| granted.as_str() == "openid");
    let id_token = if openid {
        Some(id_token::issue(
            state,
            custom.all(),
            &Subject {
                account: grant.account,
                client_id: client.id(),
                scope: grant.scope,
                nonce: grant.nonce,
                auth_time: grant.auth_time,
                sid: grant.sid,
                access_token: &access.access_token,
                ttl: access.expires_in,
                records: &records,
            },
        )?)
    } else {
        None
    };
    let refresh_token = if client.may_use(GrantType::RefreshToken) {
        let token = random_token();
        let now = state.now();
        state
            .store()
            .insert_refresh(&RefreshRecord {
                digest: token_digest(&token),
                family: grant.family.to_owned(),
                client_id: client.id().to_owned(),
                user_id: grant.account.id.clone(),
                username: grant.account.username.clone(),
                sid: grant.sid.to_owned(),
                scope: grant.refresh_scope.to_string(),
                auth_time: grant.auth_time,
                issued_at: now,
                // Sliding, but never past the family's absolute end.
                expires_at: (now + state.config().refresh_token_ttl.as_secs()).min(
                    grant.family_started_at + state.config().refresh_token_absolute_ttl.as_secs(),
                ),
                rotated_at: None,
                revoked_at: None,
                family_started_at: grant.family_started_at,
                jkt: grant.refresh_jkt.map(str::to_owned),
            })
            .await?;
        Some(token)
    } else {
        None
    };
    Ok(CodeTokens {
        access,
        id_token,
        refresh_token,
    })
}

/// A second redemption: revoke what the first one issued, then refuse.
async fn replayed(state: &State, grant_id: &str, now: u64) -> OAuthError {
    match state.store().revoke_grant(grant_id, now).await {
        Ok(revoked) => {
            tracing::warn!(
                revoked,
                "authorization code replayed: its tokens are revoked"
            );
            invalid_grant("the authorization code was already used")
        }
        Err(error) => OAuthError::store(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_code_a_verifier_or_a_token() {
        let exchange = CodeExchange {
            code: "secret-code-value".into(),
            redirect_uri: Some("https://app.test/cb".into()),
            code_verifier: Some("secret-verifier-value".into()),
            proof_key: None,
        };
        let tokens = CodeTokens {
            access: IssuedToken {
                access_token: "secret-access-value".into(),
                expires_in: 60,
                scope: String::new(),
                jti: "jti-1".into(),
                dpop_bound: false,
            },
            id_token: Some("secret-id-token-value".into()),
            refresh_token: Some("secret-refresh-value".into()),
        };
        let refresh = crate::grant::RefreshRequest {
            refresh_token: "secret-refresh-value".into(),
            scope: None,
            proof_key: None,
        };
        let printed = format!("{exchange:?} {tokens:?} {refresh:?} {exchange:#?} {tokens:#?}");
        assert!(!printed.contains("secret-"), "{printed}");
        assert!(printed.contains("https://app.test/cb") && printed.contains("jti-1"));
    }

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_pkce_value("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!is_pkce_value("short"));
        assert!(!is_pkce_value(&"a+".repeat(30)));
    }
}
