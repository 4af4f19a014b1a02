//! [`BearerLayer`]: puts a [`TokenSource`]'s token on every request of an HTTP client service.

use tower_layer::Layer;

use crate::replay::{CloneRequest, NoRetry};
use crate::service::Bearer;
use crate::source::TokenSource;

/// Adds `Authorization: Bearer <token>` to every request of an `http::Request` service — a
/// hyper-util client, a tonic channel — and, when the API refuses the token as invalid or
/// expired, drops it and sends the request once more with a new one.
///
/// A retry needs a copy of the request made before it is sent: by default
/// ([`CloneRequest`]) the body type must be `Clone` (`Full<Bytes>`, `String`, …). Streaming
/// bodies (tonic's among them) cannot be replayed: use [`without_retry`](Self::without_retry),
/// and a refused token is still dropped so that the next call gets a new one.
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use scopegate_client::{BearerLayer, TokenSource};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # async fn run() -> Result<(), scopegate_client::BoxError> {
/// let tokens = TokenSource::builder()
///     .issuer("http://127.0.0.1:8080")
///     .client_id("svc-a")
///     .client_secret(std::env::var("CLIENT_SECRET")?)
///     .build()?;
/// let client = ServiceBuilder::new()
///     .layer(BearerLayer::new(tokens))
///     .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
///
/// let request = http::Request::get("http://127.0.0.1:3000/me").body(Full::new(Bytes::new()))?;
/// let response = client.oneshot(request).await?;
/// println!("{}", response.status());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BearerLayer<R = CloneRequest> {
    tokens: TokenSource,
    replay: R,
}

impl BearerLayer {
    /// Tokens from `tokens`; a refused request is sent again once, copied with
    /// [`CloneRequest`].
    pub fn new(tokens: TokenSource) -> Self {
        Self {
            tokens,
            replay: CloneRequest,
        }
    }
}

impl<R> BearerLayer<R> {
    /// Never sends a request twice: for bodies that cannot be copied. A refused token is still
    /// dropped, so the next request gets a new one.
    pub fn without_retry(self) -> BearerLayer<NoRetry> {
        self.replay_with(NoRetry)
    }

    /// Copies requests for their retry with `replay` (see [`Replay`](crate::Replay)).
    pub fn replay_with<Q>(self, replay: Q) -> BearerLayer<Q> {
        BearerLayer {
            tokens: self.tokens,
            replay,
        }
    }
}

impl<S, R: Clone> Layer<S> for BearerLayer<R> {
    type Service = Bearer<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Bearer::new(inner, self.tokens.clone(), self.replay.clone())
    }
}
