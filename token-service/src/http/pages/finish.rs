//! Completing an authorization request once the user is signed in: the code, sent back to the
//! client — or first the page asking for claims the client requires that the user has not given.

use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::Pages;
use super::claims_form;
use super::csrf::posted_form;
use super::kit::{error_redirect, redirect_to, request_refused};
use crate::grant::authorization_code;
use crate::grant::authorization_request::{self, AuthorizationRequest};
use crate::http::form::Form;
use crate::store::SessionRecord;

/// A form posted by one of our pages on the way through an authorization request (`what`
/// names it in refusals): CSRF-checked, with the request it carries checked again (a page
/// never trusts what it put in a hidden field).
pub(crate) async fn posted_request(
    pages: &Pages,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<(Form, AuthorizationRequest), Response> {
    let form = posted_form(pages, headers, body, what).map_err(|refusal| *refusal)?;
    let request = form.get("request").unwrap_or_default();
    let checked = authorization_request::check(pages, request)
        .await
        .map_err(|error| request_refused(pages, error))?;
    Ok((form, checked))
}

/// Issues the code and sends the browser back to the client — unless the user must first
/// supply claims the client requires (`request` is the authorization request, for that page).
pub(crate) async fn complete(
    state: &Pages,
    headers: &HeaderMap,
    request: &str,
    checked: &AuthorizationRequest,
    session: &SessionRecord,
) -> Response {
    if let Some(page) = claims_form::ask_if_missing(state, headers, request, checked, session).await
    {
        return page;
    }
    match authorization_code::issue_code(state, &checked.grant, session).await {
        Ok(code) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(client_state) = &checked.state {
                pairs.push(("state", client_state));
            }
            tracing::info!(client_id = %checked.client.id(), sid = %session.sid, "authorization code issued");
            redirect_to(state, &checked.grant.redirect_uri, &pairs)
        }
        Err(error) => error_redirect(
            state,
            &checked.grant.redirect_uri,
            checked.state.as_deref(),
            "temporarily_unavailable",
            &error.description,
        )
        .into_response(),
    }
}
