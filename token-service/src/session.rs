//! Browser sessions (14 days by default): started by a sign-in, known by the SHA-256 of the
//! random value the browser holds, ended by logout — which revokes every token issued in it.

use crate::State;
use crate::secret::{random_token, token_digest};
use crate::store::{SessionRecord, Store, StoreError};
use crate::users::Account;

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

/// The live session whose cookie value is `value`, if any.
///
/// # Errors
///
/// [`StoreError`] if the store fails.
pub async fn current(state: &State, value: &str) -> Result<Option<SessionRecord>, StoreError> {
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
