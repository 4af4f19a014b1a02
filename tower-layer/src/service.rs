//! `Scope<S>`: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use scopegate_validator::{Error, Principal};
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
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Call the instance that was driven to readiness; keep a fresh clone for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        // Only the head is borrowed across the validation (`Parts` is `Sync`; bodies often
        // are not).
        let (mut parts, body) = request.into_parts();
        ResponseFuture::new(async move {
            match authorize(&config, &parts).await {
                Ok(principal) => {
                    parts.extensions.insert(principal);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(rejection) => Ok(respond(rejection, &config.options)),
            }
        })
    }
}

async fn authorize(config: &Config, request: &Parts) -> Result<Arc<Principal>, Rejection> {
    let token = match token::bearer(
        &request.headers,
        request.uri.query(),
        config.max_header_bytes,
    ) {
        Credentials::Bearer(token) => token,
        Credentials::Missing => return Err(Rejection::from_error(&Error::NoToken)),
        Credentials::Malformed(problem) => return Err(Rejection::invalid_request(problem)),
    };
    let principal = config
        .validator
        .validate(token)
        .await
        .map_err(|error| Rejection::from_error(&error))?;
    principal
        .check(&config.requirement, request.method.as_str())
        .map_err(|error| Rejection::from_error(&error))?;
    Ok(principal)
}
