//! What the HTTP side tells operators: each request's span (named by its route, joined to the
//! caller's trace), its duration by route and status, and the Prometheus scrape endpoint on a
//! listener of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;
use metrics_exporter_prometheus::PrometheusHandle;
use pin_project_lite::pin_project;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::metrics;

/// The route label of a request no route matched: one series, whatever was asked.
const UNMATCHED: &str = "unmatched";

/// The span of one request: method, route and path — nothing a client sent beyond them (no
/// headers, no body, and no query: it holds `id_token_hint`, `state`, codes and PKCE
/// challenges). Its parent is the caller's span when it sent a W3C `traceparent`.
fn request_span(request: &Request, route: &str) -> tracing::Span {
    let method = request.method().as_str();
    let span = tracing::debug_span!(
        "request",
        otel.name = format_args!("{method} {route}").to_string(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        method,
        path = request.uri().path(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        // A context without a remote span (no header, or a malformed one) leaves the span a
        // root; an error here only means tracing is off.
        let _ = span.set_parent(remote_parent(request.headers()));
    }
    span
}

/// The route template a request matched (never its path), or [`UNMATCHED`].
fn route_name(matched: Option<&MatchedPath>) -> &str {
    matched.map_or(UNMATCHED, MatchedPath::as_str)
}

/// The caller's trace context from its W3C `traceparent` / `tracestate` headers (an empty
/// context when absent or malformed: the request starts a trace of its own).
fn remote_parent(headers: &http::HeaderMap) -> opentelemetry::Context {
    use opentelemetry::propagation::TextMapPropagator as _;
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// Observes each request of the routes it wraps: its span ([`request_span`], entered whenever
/// the route runs), its duration by method, route and status, and its status on the span. One
/// layer, no boxed future and no clone of the route per request: it wraps every route, and a
/// request's own work is a few microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Debug, Clone)]
pub(super) struct Observe<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        let span = request_span(&request, route_name(route.as_ref()));
        let method = metrics::method_label(request.method().as_str());
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        Observed {
            future,
            span,
            method,
            route,
            started,
        }
    }
}

pin_project! {
    /// A request being answered, in its span.
    pub(super) struct Observed<F> {
        #[pin]
        future: F,
        span: tracing::Span,
        method: &'static str,
        route: Option<MatchedPath>,
        started: Instant,
    }
}

impl<F, E> Future for Observed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let answered = std::task::ready!(this.future.poll(context));
        if let Ok(response) = &answered {
            let status = response.status();
            let elapsed = this.started.elapsed();
            this.span
                .record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_server_error() {
                this.span.record("otel.status_code", "ERROR");
                tracing::error!(status = status.as_u16(), ?elapsed, "response failed");
            } else {
                tracing::debug!(status = status.as_u16(), ?elapsed, "request answered");
            }
            let route = route_name(this.route.as_ref());
            metrics::http_request(this.method, route, status.as_u16(), elapsed);
        }
        Poll::Ready(answered)
    }
}

/// The routes of the metrics listener: `GET /metrics` in Prometheus's text format.
pub fn metrics_routes(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// Serves [`metrics_routes`] on `listener` until `shutdown` resolves; keeps the exporter's
/// histograms drained meanwhile, so that they do not grow between scrapes.
///
/// # Errors
///
/// An I/O error from the listener.
pub async fn serve_metrics(
    handle: PrometheusHandle,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = handle.clone();
    let upkeep = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    let served = axum::serve(listener, metrics_routes(handle))
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    served
}

/// Starts what `settings` ask for: with `metrics_listen`, installs the Prometheus exporter and
/// serves it there, in a task of its own for the life of the process. Call it before the
/// service's state is built, so that nothing is recorded before the exporter is there. The
/// address listened on, if any.
///
/// # Errors
///
/// The exporter cannot be installed (another recorder is), or the address cannot be bound.
pub async fn start_metrics(
    settings: &crate::config::Telemetry,
) -> std::io::Result<Option<std::net::SocketAddr>> {
    let Some(address) = settings.metrics_listen else {
        return Ok(None);
    };
    let handle = crate::telemetry::prometheus().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot listen for metrics on {address}: {error}"),
            )
        })?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "metrics at /metrics");
    tokio::spawn(async move {
        if let Err(error) = serve_metrics(handle, listener, std::future::pending()).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    Ok(Some(bound))
}
