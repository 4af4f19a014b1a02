//! `Scope<S>`: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response};
use scopegate_validator::{Principal, ScopeSet};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Config;
use crate::response::{Rejection, respond};
use crate::token::{self, Credentials};

/// Checks the bearer token and the route's requirement, then calls the inner service with the
/// [`Principal`] (as `Arc<Principal>`) in the request's extensions. Built by
/// [`ScopeLayer`](crate::ScopeLayer).
#[derive(Debug, Clone)]
pub struct Scope<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Scope<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Scope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        // The fast path: a token whose answer is cached needs no waiting and no allocation.
        if let Some(principal) = cached(&self.config, &parts) {
            pass_on(&self.config, &mut parts, principal);
            return ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)));
        }
        if self.config.anonymous_allowed && presents_nothing(&self.config, &parts) {
            parts.extensions.insert(Anonymous);
            if self.config.options_customized {
                parts.extensions.insert(Arc::clone(&self.config.options));
            }
            return ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)));
        }
        // Validation may wait (a key fetch, an introspection call): a clone waits, and asks for
        // readiness only once the request is authorized, so the ready instance is not held by
        // a request that may well be refused.
        let mut inner = self.inner.clone();
        let config = Arc::clone(&self.config);
        // Only the head is borrowed across the validation (`Parts` is `Sync`; bodies often
        // are not).
        ResponseFuture::validating(async move {
            match authorize(&config, &parts).await {
                Ok(principal) => {
                    pass_on(&config, &mut parts, principal);
                    std::future::poll_fn(|context| inner.poll_ready(context)).await?;
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(rejection) => Ok(respond(rejection, &config.options)),
            }
        })
    }
}

/// What an authorized request carries to the inner service: the principal and, when the layer's
/// response options are not the defaults, those options for the extractors' refusals.
fn pass_on(config: &Config, parts: &mut Parts, principal: Arc<Principal>) {
    parts.extensions.insert(principal);
    if config.options_customized {
        parts.extensions.insert(Arc::clone(&config.options));
    }
}

/// Marks a request let through without credentials by an optional layer
/// ([`ScopeLayer::optional`](crate::ScopeLayer::optional)), so that extractors tell it from a
/// route without the layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anonymous;

/// No `Authorization` header at all, and no token in the query string: the only requests an
/// optional layer serves as anonymous.
fn presents_nothing(config: &Config, request: &Parts) -> bool {
    !request.headers.contains_key(AUTHORIZATION)
        && matches!(
            token::bearer(
                &request.headers,
                request.uri.query(),
                config.max_header_bytes
            ),
            Credentials::Missing
        )
}

/// A cached principal that satisfies the requirement; anything else takes the full path, which
/// also produces the right refusal.
fn cached(config: &Config, request: &Parts) -> Option<Arc<Principal>> {
    let Credentials::Bearer(token) = token::bearer(
        &request.headers,
        request.uri.query(),
        config.max_header_bytes,
    ) else {
        return None;
    };
    let principal = config.validator.cached(token)?;
    principal
        .check(
            config.requirement_for(request.uri.path()),
            request.method.as_str(),
        )
        .ok()?;
    Some(principal)
}

/// The refusal of a request without a token: with resource metadata, it names the scopes this
/// request needs (what `insufficient_scope` would name for a token with none).
fn missing_token(config: &Config, request: &Parts) -> Rejection {
    let needed = config.names_needed_scopes.then(|| {
        config
            .requirement_for(request.uri.path())
            .check(&ScopeSet::default(), request.method.as_str())
            .err()
    });
    let required = needed
        .flatten()
        .map(|insufficient| {
            insufficient
                .required_scopes()
                .iter()
                .map(|scope| scope.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    Rejection::missing_token(required)
}

async fn authorize(config: &Config, request: &Parts) -> Result<Arc<Principal>, Rejection> {
    let token = match token::bearer(
        &request.headers,
        request.uri.query(),
        config.max_header_bytes,
    ) {
        // Its syntax is the validator's first check (a 400 when wrong).
        Credentials::Bearer(token) => token,
        Credentials::Missing => return Err(missing_token(config, request)),
        Credentials::Malformed(problem) => return Err(Rejection::invalid_request(problem)),
    };
    let principal = config
        .validator
        .validate(token)
        .await
        .map_err(|error| Rejection::from_error(&error))?;
    principal
        .check(
            config.requirement_for(request.uri.path()),
            request.method.as_str(),
        )
        .map_err(|error| Rejection::from_error(&error))?;
    Ok(principal)
}
