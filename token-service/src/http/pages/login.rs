//! The sign-in form and `POST /login`: CSRF-protected, throttled per username and address,
//! the same answer for an unknown user and a wrong password; a session cookie on success.

use axum::extract::State as Shared;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};

use super::Pages;
use super::cookies::{nonce_cookie, session_cookie, set_cookie};
use super::csrf::csrf_pair;
use super::finish::{complete, posted_request};
use super::kit::{BUSY_RETRY, escape, page, too_many};
use crate::config::Client;
use crate::credentials::{self, Verdict};
use crate::http::peer::Peer;
use crate::session;
use crate::telemetry::metrics;

/// The sign-in form; `request` is the authorization request it completes.
pub(crate) fn login_page(
    state: &Pages,
    headers: &HeaderMap,
    request: &str,
    client: &Client,
    error: Option<&str>,
    username: &str,
    status: StatusCode,
) -> Response {
    let (nonce, csrf) = csrf_pair(state, headers);
    let alert = error.map_or_else(String::new, |error| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>\n",
            escape(error)
        )
    });
    let body = format!(
        "<p>Sign in to continue to <strong>{client}</strong>.</p>\n{alert}\
         <form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{username}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n\
         {signup}<p><a href=\"/password\">Change your password</a></p>",
        client = escape(client.id()),
        signup = if client.settings.self_signup {
            format!(
                "<p>New here? <a href=\"/signup?{}\">Create an account</a></p>\n",
                escape(request)
            )
        } else {
            String::new()
        },
        request = escape(request),
        username = escape(username),
    );
    let mut response = page(status, "Sign in", &body);
    if let Some(cookie) = set_cookie(state, nonce_cookie(state), &nonce, 3600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn login(
    Shared(state): Shared<Pages>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, checked) = match posted_request(&state, &headers, &body, "sign-in form").await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let request = form.get("request").unwrap_or_default();
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    let retry = |error: &str, status: StatusCode| {
        login_page(
            &state,
            &headers,
            request,
            &checked.client,
            Some(error),
            username,
            status,
        )
    };
    let verdict = credentials::password(&state, username, password, peer.address()).await;
    let account = match verdict {
        Ok(Verdict::Accepted(account)) => account,
        Ok(Verdict::Wrong) => {
            metrics::sign_in("failure");
            tracing::debug!("sign-in failed");
            // The same words whether the user exists or not.
            return retry("Wrong username or password.", StatusCode::UNAUTHORIZED);
        }
        Ok(Verdict::Throttled { retry_after }) => {
            metrics::sign_in("throttled");
            return too_many(
                retry(
                    "Too many failed attempts. Wait a few minutes and try again.",
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                retry_after,
            );
        }
        Ok(Verdict::Busy) => {
            metrics::sign_in("busy");
            return too_many(
                retry(
                    "The service is busy; try again in a moment.",
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                BUSY_RETRY,
            );
        }
        Err(error) => {
            metrics::sign_in("error");
            tracing::error!(%error, "store failure at sign-in");
            return retry(
                "The service cannot sign you in right now; try again shortly.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let (cookie, session) = match session::start(&state, &account).await {
        Ok(started) => started,
        Err(error) => {
            metrics::sign_in("error");
            tracing::error!(%error, "store failure starting a session");
            return retry(
                "The service cannot sign you in right now; try again shortly.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    metrics::sign_in("success");
    tracing::info!(sid = %session.sid, "signed in");
    let mut response = complete(&state, &headers, request, &checked, &session).await;
    let ttl = state.config().session_ttl.as_secs();
    if let Some(cookie) = set_cookie(&state, session_cookie(&state), &cookie, ttl) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}
