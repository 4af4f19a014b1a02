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
use crate::id_token::released_claims;

pub(super) async fn userinfo(Shared(state): Shared<State>, who: Authenticated) -> Response {
    let account = match who.subject() {
        Some(sub) => state.users().find_by_id(sub).await,
        None => Ok(None),
    };
    // The claims the token's scopes release now: a scope deleted since releases none.
    let found = match account {
        Ok(Some(account)) => state
            .scopes()
            .definitions()
            .await
            .map(|custom| Some((account, custom))),
        Ok(None) => Ok(None),
        Err(error) => Err(error),
    };
    match found {
        Ok(Some((account, custom))) => {
            let mut claims = released_claims(custom.all(), &account, who.scopes());
            claims.insert("sub".to_owned(), account.id.clone().into());
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
            tracing::error!(%error, "store failure at /userinfo");
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}
