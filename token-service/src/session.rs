//! Browser sessions: a random cookie value (stored only as its SHA-256), HttpOnly,
//! SameSite=Lax, Secure (and `__Host-` prefixed) when the issuer is https.

use http::{HeaderMap, HeaderValue, header};

use crate::State;
use crate::secret::{random_token, token_digest};
use crate::store::{SessionRecord, Store, StoreError};
use crate::users::Account;

/// The cookie's name for this issuer.
#[must_use]
pub fn cookie_name(state: &State) -> &'static str {
    if secure(state) {
        "__Host-scopegate_session"
    } else {
        "scopegate_session"
    }
}

fn secure(state: &State) -> bool {
    state.config().issuer.starts_with("https://")
}

/// The value of cookie `name` in the request, if sent once.
#[must_use]
pub fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value with the service's attributes.
#[must_use]
pub fn set_cookie(state: &State, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// Starts a session for `account`; returns the cookie value and the record.
///
/// # Errors
///
/// [`StoreError`] if it cannot be stored.
pub async fn start(
    state: &State,
    account: &Account,
) -> Result<(String, SessionRecord), StoreError> {
    let value = random_token();
    let now = state.now();
    let record = SessionRecord {
        digest: token_digest(&value),
        sid: random_token()[..22].to_owned(),
        user_id: account.id.clone(),
        username: account.username.clone(),
        auth_time: now,
        expires_at: now + state.config().session_ttl.as_secs(),
        ended_at: None,
    };
    state.store().insert_session(&record).await?;
    Ok((value, record))
}

/// The browser's live session, if its cookie names one.
///
/// # Errors
///
/// [`StoreError`] if the store fails.
pub async fn current(
    state: &State,
    headers: &HeaderMap,
) -> Result<Option<SessionRecord>, StoreError> {
    let Some(value) = read_cookie(headers, cookie_name(state)) else {
        return Ok(None);
    };
    if value.len() != 43 {
        return Ok(None);
    }
    let now = state.now();
    Ok(state
        .store()
        .find_session(&token_digest(value))
        .await?
        .filter(|session| session.ended_at.is_none() && now < session.expires_at))
}

/// Ends a session and revokes every token issued in it (refresh tokens, opaque access tokens;
/// JWT access tokens go on the revocation list seen by introspection).
///
/// # Errors
///
/// [`StoreError`] if the store fails.
pub async fn end(store: &dyn Store, sid: &str, now: u64) -> Result<(), StoreError> {
    store.end_session(sid, now).await?;
    let mut grants: Vec<String> = store
        .session_codes(sid)
        .await?
        .iter()
        .map(crate::grant::authorization_code::grant_id)
        .collect();
    grants.extend(store.session_families(sid).await?);
    grants.sort();
    grants.dedup();
    for grant in &grants {
        store.revoke_grant(grant, now).await?;
    }
    tracing::info!(sid, grants = grants.len(), "session ended");
    Ok(())
}
