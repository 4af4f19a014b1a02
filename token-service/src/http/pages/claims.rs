//! `POST /claims`: the values a user typed on the required-claims page are checked and stored,
//! then the authorization request completes (CSRF-protected like the sign-in form).

use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::Pages;
use super::claims_form::{claims_page, missing_for, read_values, unavailable};
use super::cookies::current_session;
use super::finish::{complete, posted_request};
use super::kit::Refusal;

/// `POST /claims`: stores the values typed, then issues the code.
pub(crate) async fn submit(
    Shared(state): Shared<Pages>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, checked) = match posted_request(&state, &headers, &body, "form").await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let request = form.get("request").unwrap_or_default();
    let session = match current_session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return Refusal::Page(
                StatusCode::UNAUTHORIZED,
                "Your sign-in has ended. Go back to the application and sign in again.".into(),
            )
            .into_response();
        }
        Err(error) => {
            tracing::error!(%error, "store failure reading the session");
            return unavailable();
        }
    };
    // The page completes a request as /authorize would: no older sign-in than it allows.
    if !checked.may_complete_after_a_page(&session, state.now()) {
        return Refusal::Page(
            StatusCode::UNAUTHORIZED,
            "Your sign-in is too old for this request. Go back to the application and sign in again.".into(),
        )
        .into_response();
    }
    let account = match state.users().find_by_id(&session.user_id).await {
        Ok(Some(account)) if !account.configured => account,
        Ok(_) => {
            return Refusal::Page(
                StatusCode::FORBIDDEN,
                "This account cannot be changed here.".into(),
            )
            .into_response();
        }
        Err(error) => {
            tracing::error!(%error, "store failure reading the user for required claims");
            return unavailable();
        }
    };
    let missing = match missing_for(&state, &checked, &account).await {
        Ok(missing) => missing,
        Err(response) => return response,
    };
    if !missing.is_empty() {
        let values = match read_values(&missing, &form) {
            Ok(values) => values,
            Err(errors) => {
                return claims_page(
                    &state,
                    &headers,
                    request,
                    checked.client.id(),
                    &missing,
                    Some((&form, &errors)),
                    StatusCode::BAD_REQUEST,
                );
            }
        };
        match state
            .store()
            .merge_user_attributes(&account.username, &values, state.now())
            .await
        {
            Ok(Some(_)) => tracing::info!(sub = %account.id, "required claims supplied"),
            Ok(None) => {
                return Refusal::Page(
                    StatusCode::FORBIDDEN,
                    "This account no longer exists.".into(),
                )
                .into_response();
            }
            Err(error) => {
                tracing::error!(%error, "store failure saving required claims");
                return unavailable();
            }
        }
    }
    complete(&state, &headers, request, &checked, &session).await
}
