//! axum extractors: the principal, typed claims, and an in-handler scope check.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use scopegate_validator::{Error, InvalidToken, Principal, Requirement};
use serde::de::DeserializeOwned;

use crate::response::{AuthScheme, Rejection, ResponseOptions, respond};
use crate::service::Anonymous;

/// The verified [`Principal`] of the request, put there by [`ScopeLayer`](crate::ScopeLayer).
///
/// A route without the layer answers 500 and says so: a missing layer is a server bug, not
/// the client's missing token. On a route with an [optional](crate::ScopeLayer::optional)
/// layer, take `Option<Authenticated>`: `None` for an anonymous caller (`Authenticated` alone
/// answers such a caller 401, as if the layer were not optional).
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_scopegate::ScopeLayer;
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let issuer = DocIssuer::new();
/// # let validator = doc_validator(&issuer);
/// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
/// use tower_scopegate::Authenticated;
///
/// async fn me(who: Authenticated) -> String {
///     format!("{} via {}", who.subject().unwrap_or("?"), who.client_id().unwrap_or("?"))
/// }
/// let app = Router::new()
///     .route("/me", get(me).route_layer(ScopeLayer::any_valid_token(&validator)));
/// assert_eq!(
///     call(&app, "GET", "/me", Some(&token("openid"))).await,
///     (200, "jane via reports-app".into())
/// );
/// // Without the layer the handler cannot run: 500, a server bug, not the caller's fault.
/// let forgotten = Router::new().route("/me", get(me));
/// assert_eq!(call(&forgotten, "GET", "/me", Some(&token("openid"))).await.0, 500);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated {
    principal: Arc<Principal>,
    options: Option<Arc<ResponseOptions>>,
    scheme: AuthScheme,
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

    /// How the token was presented: [`AuthScheme::Dpop`] when the layer checked a DPoP proof
    /// made with the key the token is bound to.
    #[must_use]
    pub fn scheme(&self) -> AuthScheme {
        self.scheme
    }

    /// Checks a requirement inside the handler, for rules a layer cannot express (e.g. a scope
    /// that depends on the resource).
    ///
    /// # Errors
    /// A [`Rejection`] that answers 403 `insufficient_scope`, challenging with the scheme the
    /// token was presented with.
    pub fn require(&self, requirement: &Requirement, method: &str) -> Result<(), Rejection> {
        self.principal.check(requirement, method).map_err(|error| {
            Rejection::from_error(&error)
                .presented_with(self.scheme)
                .with_options(self.options.clone())
        })
    }
}

/// The principal the layer passed on; `Ok(None)` for a caller an optional layer let through
/// anonymously.
fn from_layer(parts: &Parts) -> Result<Option<Authenticated>, MissingLayer> {
    let options = parts.extensions.get::<Arc<ResponseOptions>>().cloned();
    match parts.extensions.get::<Arc<Principal>>() {
        Some(principal) => Ok(Some(Authenticated {
            principal: Arc::clone(principal),
            options,
            // The layer marks only DPoP requests, so that bearer requests carry nothing more.
            scheme: parts
                .extensions
                .get::<AuthScheme>()
                .copied()
                .unwrap_or(AuthScheme::Bearer),
        })),
        None if parts.extensions.get::<Anonymous>().is_some() => Ok(None),
        None => Err(MissingLayer),
    }
}

/// The principal, or 401 for an anonymous caller (as the layer answers one when not optional).
#[allow(clippy::result_large_err, reason = "axum's rejections are responses")]
fn required(parts: &Parts) -> Result<Authenticated, Response> {
    match from_layer(parts) {
        Ok(Some(authenticated)) => Ok(authenticated),
        Ok(None) => {
            let options = parts.extensions.get::<Arc<ResponseOptions>>().cloned();
            Err(Rejection::from_error(&Error::NoToken)
                .with_options(options)
                .into_response())
        }
        Err(missing) => Err(missing.into_response()),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        required(parts)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        from_layer(parts)
    }
}

/// The token's claims as the application's own type.
///
/// A token whose claims do not fit `T` is refused with 401 `invalid_token`: it is not a token
/// this API can use.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_scopegate::ScopeLayer;
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let issuer = DocIssuer::new();
/// # let validator = doc_validator(&issuer);
/// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
/// use serde::Deserialize;
/// use tower_scopegate::Claims;
///
/// #[derive(Deserialize)]
/// struct Caller {
///     sub: String,
///     client_id: String,
/// }
/// let app = Router::new().route(
///     "/whoami",
///     get(|Claims(caller): Claims<Caller>| async move { format!("{}/{}", caller.sub, caller.client_id) })
///         .route_layer(ScopeLayer::any_valid_token(&validator)),
/// );
/// assert_eq!(
///     call(&app, "GET", "/whoami", Some(&token("openid"))).await,
///     (200, "jane/reports-app".into())
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let authenticated = required(parts)?;
        authenticated
            .principal
            .deserialize_claims::<T>()
            .map(Claims)
            .map_err(|_| {
                let problem = "claims do not have the shape this API needs";
                let error = Error::InvalidToken(InvalidToken::Claim { name: "*", problem });
                Rejection::from_error(&error)
                    .presented_with(authenticated.scheme)
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
