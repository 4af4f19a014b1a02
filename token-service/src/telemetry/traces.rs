//! Traces over OTLP/HTTP (`[telemetry] otlp_endpoint`): the service's `tracing` spans — a
//! request, and under it each store operation — become OpenTelemetry spans, joined to the
//! caller's trace when it sent a W3C `traceparent`.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::config::Telemetry;

/// The `service.name` of the spans.
pub const SERVICE_NAME: &str = "scopegate-token-service";

/// How long an export may take before it is given up (spans are dropped, never waited on by
/// a request).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {message}")]
pub struct TraceError {
    endpoint: String,
    message: String,
}

/// Spans being exported; [`Exporting::shutdown`] sends what is left.
#[derive(Debug)]
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Exporting {
    /// Sends the spans not yet sent and stops exporting.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "could not send the last spans");
        }
    }
}

/// The layer turning spans into OpenTelemetry spans, when `settings` name a collector.
///
/// It takes this service's spans and events down to DEBUG, whatever the log level (a trace
/// without its request span would be no trace), and other crates' at INFO.
///
/// # Errors
///
/// [`TraceError`] if the exporter cannot be built.
pub fn layer<S>(
    settings: &Telemetry,
) -> Result<Option<(impl Layer<S> + use<S>, Exporting)>, TraceError>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(endpoint) = &settings.otlp_endpoint else {
        return Ok(None);
    };
    let traces_url = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(&traces_url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|error| TraceError {
            endpoint: traces_url.clone(),
            message: error.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.trace_sample_ratio,
        ))))
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    // Every span of the service, whatever the log level; other crates' events at INFO (sqlx's
    // statement summaries at WARN: one per query would double every trace).
    let filter = Targets::new()
        .with_target("scopegate_token_service", Level::DEBUG)
        .with_target("sqlx", Level::WARN)
        .with_default(Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter);
    Ok(Some((layer, Exporting { provider })))
}
