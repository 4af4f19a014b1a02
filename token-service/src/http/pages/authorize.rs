//! `GET /authorize` (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2): the request is checked by
//! [`authorization_request::check`]; refusals are shown as a page until the client and its
//! redirect URI are known, and sent back to the client after (with `state` and `iss`, RFC 9207).
//! A browser with a live session gets its code at once unless `prompt=login` or `max_age` asks
//! for a fresh sign-in.

use axum::extract::{RawQuery, State as Shared};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::Pages;
use super::cookies::current_session;
use super::finish::complete;
use super::kit::{error_redirect, request_refused};
use super::login::login_page;
use crate::grant::authorization_request;

pub(crate) async fn authorize(
    Shared(state): Shared<Pages>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let checked = match authorization_request::check(&state, &query).await {
        Ok(checked) => checked,
        Err(error) => return request_refused(&state, error),
    };
    let session = match current_session(&state, &headers).await {
        Ok(session) => session,
        Err(error) => {
            tracing::error!(%error, "store failure reading the session");
            None
        }
    };
    let now = state.now();
    match session {
        Some(session) if checked.session_is_fresh_enough(&session, now) => {
            complete(&state, &headers, &query, &checked, &session).await
        }
        _ if checked.prompt_none => error_redirect(
            &state,
            &checked.grant.redirect_uri,
            checked.state.as_deref(),
            "login_required",
            "the user is not signed in",
        )
        .into_response(),
        _ => login_page(
            &state,
            &headers,
            &query,
            &checked.client,
            None,
            "",
            StatusCode::OK,
        ),
    }
}
