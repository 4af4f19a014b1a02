//! axum extractors: the principal, typed claims, and an in-handler scope check.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use scopegate_validator::{Error, InvalidToken, Principal, Requirement};
use serde::de::DeserializeOwned;

use crate::response::{Rejection, ResponseOptions, respond};

/// The verified [`Principal`] of the request, put there by [`ScopeLayer`](crate::ScopeLayer).
///
/// A route without the layer answers 500 and says so: a missing layer is a server bug, not
/// the client's missing token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    principal: Arc<Principal>,
    options: Option<Arc<ResponseOptions>>,
}

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl Authenticated {
    /// The principal, shared.
    #[must_use]
    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// Checks a requirement inside the handler, for rules a layer cannot express (e.g. a scope
    /// that depends on the resource).
    ///
    /// # Errors
    /// A [`Rejection`] that answers 403 `insufficient_scope`.
    pub fn require(&self, requirement: &Requirement, method: &str) -> Result<(), Rejection> {
        self.principal
            .check(requirement, method)
            .map_err(|error| Rejection::from_error(&error).with_options(self.options.clone()))
    }
}

fn from_layer(parts: &Parts) -> Result<Authenticated, MissingLayer> {
    let principal = parts
        .extensions
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or(MissingLayer)?;
    let options = parts.extensions.get::<Arc<ResponseOptions>>().cloned();
    Ok(Authenticated { principal, options })
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        from_layer(parts)
    }
}

/// The token's claims as the application's own type.
///
/// A token whose claims do not fit `T` is refused with 401 `invalid_token`: it is not a token
/// this API can use.
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let authenticated = from_layer(parts).map_err(IntoResponse::into_response)?;
        authenticated
            .principal
            .deserialize_claims::<T>()
            .map(Claims)
            .map_err(|_| {
                let problem = "claims do not have the shape this API needs";
                let error = Error::InvalidToken(InvalidToken::Claim { name: "*", problem });
                Rejection::from_error(&error)
                    .with_options(authenticated.options)
                    .into_response()
            })
    }
}

/// The 500 answered when a handler asks for the principal on a route without the layer.
#[derive(Debug, Clone, Copy)]
pub struct MissingLayer;

impl IntoResponse for MissingLayer {
    fn into_response(self) -> Response {
        tracing::error!("a handler asked for the principal on a route without ScopeLayer");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server misconfiguration: this route is not protected by tower_scopegate::ScopeLayer, \
             so no principal is available",
        )
            .into_response()
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let options = self.options().cloned().unwrap_or_default();
        respond(self, &options)
    }
}
