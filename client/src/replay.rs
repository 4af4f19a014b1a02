//! How a request is copied for its one retry, if it can be.

use http::Request;

/// Copies a request before it is sent, for the one retry after a refused token; `None` when
/// it cannot be (the request is then sent once).
pub trait Replay<B> {
    /// A copy of `request`, or `None`.
    fn replay(&self, request: &Request<B>) -> Option<Request<B>>;
}

/// Copies method, URI, version, headers, extensions and body: for body types that are
/// `Clone` (`Full<Bytes>`, `Empty<Bytes>`, `String`, `Vec<u8>`, …).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

impl<B: Clone> Replay<B> for CloneRequest {
    fn replay(&self, request: &Request<B>) -> Option<Request<B>> {
        let mut copy = Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// Never copies: every request is sent once.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetry;

impl<B> Replay<B> for NoRetry {
    fn replay(&self, _: &Request<B>) -> Option<Request<B>> {
        None
    }
}
