//! [`Bearer`]: the service [`BearerLayer`](crate::BearerLayer) builds.

use std::future::poll_fn;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_service::Service;

use crate::BoxError;
use crate::future::ResponseFuture;
use crate::replay::{CloneRequest, Replay};
use crate::retry::token_for_retry;
use crate::source::TokenSource;
use crate::token::AccessToken;

/// Sends each request with the token source's bearer token, and once more with a new token if
/// the API refuses it (see [`BearerLayer`](crate::BearerLayer)).
///
/// Errors are boxed ([`BoxError`]): the inner service's, or a [`crate::Error`] (downcast to
/// read it) when no token could be obtained.
#[derive(Debug, Clone)]
pub struct Bearer<S, R = CloneRequest> {
    inner: S,
    tokens: TokenSource,
    replay: R,
}

impl<S, R> Bearer<S, R> {
    /// `inner` with tokens from `tokens`, copying requests for their retry with `replay`.
    pub fn new(inner: S, tokens: TokenSource, replay: R) -> Self {
        Self {
            inner,
            tokens,
            replay,
        }
    }
}

impl<S, R, B, ResBody> Service<Request<B>> for Bearer<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    R: Replay<B>,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service goes into the future; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let retry = self.replay.replay(&request);
        ResponseFuture::new(send(inner, self.tokens.clone(), request, retry))
    }
}

async fn send<S, B, ResBody>(
    mut inner: S,
    tokens: TokenSource,
    mut request: Request<B>,
    retry: Option<Request<B>>,
) -> Result<Response<ResBody>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    let token = tokens.token().await?;
    authorize(&mut request, &token);
    let response = inner.call(request).await.map_err(Into::into)?;
    let fresh = token_for_retry(
        &tokens,
        &token,
        response.status(),
        response.headers(),
        retry.is_some(),
    )
    .await?;
    let (Some(fresh), Some(mut retry)) = (fresh, retry) else {
        return Ok(response);
    };
    drop(response);
    authorize(&mut retry, &fresh);
    poll_fn(|cx| inner.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    inner.call(retry).await.map_err(Into::into)
}

/// Sets `Authorization` (replacing any the request had).
fn authorize<B>(request: &mut Request<B>, token: &AccessToken) {
    request
        .headers_mut()
        .insert(AUTHORIZATION, token.authorization().clone());
}
