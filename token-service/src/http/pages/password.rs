//! `GET|POST /password`: a user changes their password, giving the current one every time.
//! CSRF-protected and throttled like the sign-in.

use axum::extract::State as Shared;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};

use super::Pages;
use super::cookies::{current_session, nonce_cookie, set_cookie};
use super::csrf::{csrf_ok, csrf_pair};
use super::kit::{BUSY_RETRY, escape, page, too_many};
use crate::credentials::{self, Verdict};
use crate::http::form::Form;
use crate::http::peer::Peer;
use crate::users::PasswordError;

fn form_page(
    state: &Pages,
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<(&str, bool)>,
    username: &str,
) -> Response {
    let (nonce, csrf) = csrf_pair(state, headers);
    let notice = message.map_or_else(String::new, |(text, error)| {
        let class = if error { "error" } else { "notice" };
        format!("<p class=\"{class}\" role=\"alert\">{}</p>\n", escape(text))
    });
    let body = format!(
        "{notice}<form method=\"post\" action=\"/password\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{username}\">\n\
         <label for=\"current\">Current password</label>\n\
         <input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <label for=\"new\">New password (at least {min} characters)</label>\n\
         <input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" minlength=\"{min}\" required>\n\
         <label for=\"confirm\">New password, again</label>\n\
         <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\n\
         <button type=\"submit\">Change password</button>\n</form>",
        username = escape(username),
        min = crate::users::MIN_PASSWORD_CHARS,
    );
    let mut response = page(status, "Change your password", &body);
    if let Some(cookie) = set_cookie(state, nonce_cookie(state), &nonce, 3600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn show(Shared(state): Shared<Pages>, headers: HeaderMap) -> Response {
    form_page(&state, &headers, StatusCode::OK, None, "")
}

pub(crate) async fn change(
    Shared(state): Shared<Pages>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(form) = Form::parse(&headers, &body, &[]) else {
        return form_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            Some(("The form could not be read.", true)),
            "",
        );
    };
    if !csrf_ok(&state, &headers, &form) {
        return page(
            StatusCode::FORBIDDEN,
            "Change your password",
            "<p class=\"error\" role=\"alert\">This form has expired or did not come from this site. Reload it and try again.</p>",
        );
    }
    let username = form.get("username").unwrap_or_default();
    let answer =
        |status, text: &str| form_page(&state, &headers, status, Some((text, true)), username);
    let (current, new, confirm) = (
        form.get("current").unwrap_or_default(),
        form.get("new").unwrap_or_default(),
        form.get("confirm").unwrap_or_default(),
    );
    let verdict = credentials::password(&state, username, current, peer.address()).await;
    let account = match verdict {
        Ok(Verdict::Accepted(account)) => account,
        Ok(Verdict::Wrong) => {
            return answer(StatusCode::UNAUTHORIZED, "Wrong username or password.");
        }
        Ok(Verdict::Throttled { retry_after }) => {
            return too_many(
                answer(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts. Wait a few minutes and try again.",
                ),
                retry_after,
            );
        }
        Ok(Verdict::Busy) => {
            return too_many(
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is busy; try again in a moment.",
                ),
                BUSY_RETRY,
            );
        }
        Err(error) => {
            tracing::error!(%error, "store failure at password change");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service cannot change passwords right now; try again shortly.",
            );
        }
    };
    if new != confirm {
        return answer(StatusCode::BAD_REQUEST, "The two new passwords differ.");
    }
    // The browser's own session survives the change, if it is this user's.
    let keep_sid = match current_session(&state, &headers).await {
        Ok(current) => current
            .filter(|current| current.user_id == account.id)
            .map(|current| current.sid),
        Err(error) => {
            tracing::error!(%error, "store failure at password change");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service cannot change passwords right now; try again shortly.",
            );
        }
    };
    match state
        .users()
        .set_password(&account.username, new, keep_sid.as_deref(), state.now())
        .await
    {
        Ok(()) => form_page(
            &state,
            &headers,
            StatusCode::OK,
            Some(("Your password has been changed.", false)),
            username,
        ),
        Err(PasswordError::Rule(reason)) => answer(StatusCode::BAD_REQUEST, &reason),
        Err(PasswordError::Configured(_)) => answer(
            StatusCode::CONFLICT,
            "This account is managed in the service's configuration; ask its operator to change the password.",
        ),
        Err(PasswordError::Unknown(_)) => {
            answer(StatusCode::UNAUTHORIZED, "Wrong username or password.")
        }
        Err(error) => {
            tracing::error!(%error, "could not change a password");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service cannot change passwords right now; try again shortly.",
            )
        }
    }
}
