//! `/logout` (OpenID Connect RP-Initiated Logout 1.0): ends the browser session, revokes the
//! tokens issued in it, and returns only to a registered post-logout URI. Only an
//! `id_token_hint` issued in the browser's own session signs out without asking; otherwise the
//! user confirms first (a CSRF-protected form), so that another site — or anyone holding an old
//! id_token — cannot sign people out behind their back.

use axum::extract::{RawQuery, State as Shared};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};

use super::Pages;
use super::cookies::{current_session, nonce_cookie, session_cookie, set_cookie};
use super::csrf::{csrf_ok, csrf_pair};
use super::kit::{escape, page, redirect_to};
use crate::State;
use crate::grant::authorization_request::Parameters;
use crate::http::form::Form;
use crate::id_token::verify_hint;
use crate::session;

fn refused(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Sign-out request refused",
        &format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message)),
    )
}

/// A checked logout request.
struct Checked {
    /// Where to go afterwards (registered), with the client's `state`.
    redirect: Option<(String, Option<String>)>,
    /// The session a valid `id_token_hint` names.
    hinted_sid: Option<String>,
}

async fn check(state: &State, query: &str) -> Result<Checked, Response> {
    let values = Parameters::parse(query);
    if let Some(name) = values.first_repeated() {
        return Err(refused(&format!("Parameter `{name}` is repeated.")));
    }
    let hint = match values.get("id_token_hint") {
        Some(hint) => verify_hint(state, hint).await,
        None => None,
    };
    let hinted_client = hint
        .as_ref()
        .and_then(|claims| claims.get("aud"))
        .and_then(|aud| aud.as_str())
        .map(str::to_owned);
    let client_id = match (values.get("client_id"), &hinted_client) {
        (Some(named), Some(hinted)) if named != hinted => {
            return Err(refused("client_id does not match the id_token_hint."));
        }
        (Some(named), _) => Some(named.to_owned()),
        (None, hinted) => hinted.clone(),
    };
    let redirect = match values.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = match &client_id {
                Some(id) => state.registry().client(id).await.ok().flatten(),
                None => None,
            };
            let registered = client.as_ref().is_some_and(|client| {
                client
                    .settings
                    .post_logout_redirect_uris
                    .iter()
                    .any(|known| known.as_str() == uri)
            });
            if !registered {
                return Err(refused(
                    "The application asked to return to an address that is not registered for it.",
                ));
            }
            Some((uri.to_owned(), values.get("state").map(str::to_owned)))
        }
    };
    Ok(Checked {
        redirect,
        hinted_sid: hint
            .as_ref()
            .and_then(|claims| claims.get("sid"))
            .and_then(|sid| sid.as_str())
            .map(str::to_owned),
    })
}

/// The browser's session id, if it holds a live session.
async fn current_sid(
    state: &State,
    headers: &HeaderMap,
) -> Result<Option<String>, crate::store::StoreError> {
    Ok(current_session(state, headers)
        .await?
        .map(|current| current.sid))
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-out failed",
        "<p class=\"error\" role=\"alert\">The service cannot sign you out right now; try again shortly.</p>",
    )
}

/// Ends the browser's own session, clears the cookie, and answers. (A hint naming another
/// session ends nothing more: an id_token is no proof of holding the session.)
async fn sign_out(state: &State, headers: &HeaderMap, checked: &Checked) -> Response {
    let ended = match current_sid(state, headers).await {
        Ok(Some(sid)) => session::end(&**state.store(), &sid, state.now()).await,
        Ok(None) => Ok(()),
        Err(error) => Err(error),
    };
    if let Err(error) = ended {
        tracing::error!(%error, "store failure at sign-out");
        return unavailable();
    }
    let mut response = match &checked.redirect {
        Some((uri, client_state)) => {
            let pairs: Vec<(&str, &str)> = client_state
                .iter()
                .map(|client_state| ("state", client_state.as_str()))
                .collect();
            redirect_to(state, uri, &pairs)
        }
        None => page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>"),
    };
    if let Some(cookie) = set_cookie(state, session_cookie(state), "", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn logout(
    Shared(state): Shared<Pages>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let checked = match check(&state, &query).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let hint_is_this_sessions = match &checked.hinted_sid {
        Some(hinted) => match current_sid(&state, &headers).await {
            Ok(current) => current.as_ref() == Some(hinted),
            Err(error) => {
                tracing::error!(%error, "store failure at sign-out");
                return unavailable();
            }
        },
        None => false,
    };
    if hint_is_this_sessions {
        return sign_out(&state, &headers, &checked).await;
    }
    let (nonce, csrf) = csrf_pair(&state, &headers);
    let body = format!(
        "<p>Do you want to sign out?</p>\n<form method=\"post\" action=\"/logout\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\n\
         <button type=\"submit\">Sign out</button>\n</form>",
        request = escape(&query)
    );
    let mut response = page(StatusCode::OK, "Sign out", &body);
    if let Some(cookie) = set_cookie(&state, nonce_cookie(&state), &nonce, 3600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn confirm_logout(
    Shared(state): Shared<Pages>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(form) = Form::parse(&headers, &body, &[]) else {
        return refused("The sign-out form could not be read.");
    };
    if !csrf_ok(&state, &headers, &form) {
        return page(
            StatusCode::FORBIDDEN,
            "Sign-out request refused",
            "<p class=\"error\" role=\"alert\">This form has expired or did not come from this site.</p>",
        )
        .into_response();
    }
    let checked = match check(&state, form.get("request").unwrap_or_default()).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    sign_out(&state, &headers, &checked).await
}
