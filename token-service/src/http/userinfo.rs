//! `GET|POST /userinfo` (OpenID Connect Core §5.3), behind this project's own
//! `tower-scopegate` layer requiring `openid`: the user's claims, as far as the token's scopes
//! release them.

use axum::Json;
use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use tower_scopegate::Authenticated;

use super::error::no_store;
use crate::State;
use crate::error::OAuthError;
use crate::id_token::{released_claims, user_records};

pub(super) async fn userinfo(Shared(state): Shared<State>, who: Authenticated) -> Response {
    match claims(&state, &who).await {
        Ok(Some(claims)) => {
            let mut response = Json(Value::Object(claims)).into_response();
            no_store(&mut response);
            response
        }
        // A valid token whose subject is not (or no longer) a user: nothing to show.
        Ok(None) => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"token-service\", error=\"invalid_token\", error_description=\"the token's subject is not a user\"",
                ),
            );
            response
        }
        Err(error) => {
            tracing::error!(error = %error.description, "the claims could not be read at /userinfo");
            unavailable_now()
        }
    }
}

/// The claims the token's scopes release now (a scope deleted since releases none), with
/// `sub`; `None` if the subject is not a user.
async fn claims(
    state: &State,
    who: &Authenticated,
) -> Result<Option<serde_json::Map<String, Value>>, OAuthError> {
    let Some(sub) = who.subject() else {
        return Ok(None);
    };
    let Some(account) = state.users().find_by_id(sub).await? else {
        return Ok(None);
    };
    let custom = state.scopes().definitions().await?;
    let records = user_records(state, custom.all(), &account, who.scopes()).await?;
    let mut claims = released_claims(custom.all(), &account, who.scopes(), &records);
    claims.insert("sub".to_owned(), account.id.clone().into());
    Ok(Some(claims))
}

/// 503 with `Retry-After`: the claims cannot be read now.
fn unavailable_now() -> Response {
    let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
