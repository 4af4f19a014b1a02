//! CSRF protection of every form the pages post: the browser holds a random nonce in a cookie,
//! the form carries an HMAC of it under a key every instance shares (through the store), and a
//! post is taken only when the two agree (compared in constant time).

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, StatusCode};

use super::Pages;
use super::cookies::{nonce_cookie, read_cookie};
use super::kit::Refusal;
use crate::http::form::Form;
use crate::secret::random_token;

/// The HMAC key of the CSRF tokens.
#[derive(Clone)]
pub(crate) struct CsrfKey(Arc<aws_lc_rs::hmac::Key>);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CsrfKey([redacted])")
    }
}

impl CsrfKey {
    /// A key from a secret shared by every instance.
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self(Arc::new(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret,
        )))
    }

    /// The CSRF token for `nonce`.
    pub(crate) fn token(&self, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&self.0, nonce.as_bytes()).as_ref())
    }

    /// Whether `token` is the CSRF token for `nonce` (constant-time).
    pub(crate) fn matches(&self, nonce: &str, token: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(token)
            .is_ok_and(|tag| aws_lc_rs::hmac::verify(&self.0, nonce.as_bytes(), &tag).is_ok())
    }
}

/// The browser's CSRF nonce (its cookie's, or a new one) and the token for it.
pub(crate) fn csrf_pair(pages: &Pages, headers: &HeaderMap) -> (String, String) {
    let nonce = read_cookie(headers, nonce_cookie(pages))
        .filter(|nonce| nonce.len() == 43)
        .map_or_else(random_token, str::to_owned);
    let csrf = pages.csrf.token(&nonce);
    (nonce, csrf)
}

/// A form posted by one of our pages (`what` names it in the refusals): readable, and carrying
/// the CSRF token for the browser's nonce cookie.
pub(crate) fn posted_form(
    pages: &Pages,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<Form, Box<Response>> {
    let Ok(form) = Form::parse(headers, body, &[]) else {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            format!("The {what} could not be read."),
        )
        .into_response()
        .into());
    };
    if csrf_ok(pages, headers, &form) {
        Ok(form)
    } else {
        Err(Refusal::Page(
            StatusCode::FORBIDDEN,
            format!(
                "This {what} has expired or did not come from this site. Go back to the application and start again."
            ),
        )
        .into_response()
        .into())
    }
}

/// Whether a posted form carries the CSRF token for the browser's nonce cookie.
pub(crate) fn csrf_ok(pages: &Pages, headers: &HeaderMap, form: &Form) -> bool {
    match (read_cookie(headers, nonce_cookie(pages)), form.get("csrf")) {
        (Some(nonce), Some(token)) => pages.csrf.matches(nonce, token),
        _ => false,
    }
}
