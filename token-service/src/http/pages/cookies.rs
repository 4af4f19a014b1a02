//! The browser's cookies: the session cookie (a random value, stored only as its SHA-256), the
//! CSRF nonce cookie, and the attributes every cookie of the service carries — HttpOnly,
//! SameSite=Lax, and, when the issuer is https, Secure with the `__Host-` prefix on every name:
//! a sibling subdomain can plant a cookie for this host, but never a `__Host-` one, and a
//! planted cookie without the prefix is not read.

use http::{HeaderMap, HeaderValue, header};

use crate::State;
use crate::session;
use crate::store::{SessionRecord, StoreError};

/// The session cookie's name for this issuer.
pub(crate) fn session_cookie(state: &State) -> &'static str {
    if secure(state) {
        "__Host-scopegate_session"
    } else {
        "scopegate_session"
    }
}

/// The CSRF nonce cookie's name for this issuer.
pub(crate) fn nonce_cookie(state: &State) -> &'static str {
    if secure(state) {
        "__Host-scopegate_login"
    } else {
        "scopegate_login"
    }
}

fn secure(state: &State) -> bool {
    state.config().issuer.starts_with("https://")
}

/// The value of cookie `name` in the request, if sent once.
pub(crate) fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
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
pub(crate) fn set_cookie(
    state: &State,
    name: &str,
    value: &str,
    max_age: u64,
) -> Option<HeaderValue> {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The browser's live session, if its cookie names one.
///
/// # Errors
///
/// [`StoreError`] if the store fails.
pub(crate) async fn current_session(
    state: &State,
    headers: &HeaderMap,
) -> Result<Option<SessionRecord>, StoreError> {
    match read_cookie(headers, session_cookie(state)) {
        Some(value) => session::current(state, value).await,
        None => Ok(None),
    }
}
