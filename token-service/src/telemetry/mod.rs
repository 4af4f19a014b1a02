//! What an operator watches: metrics (recorded through the `metrics` facade, exported by
//! Prometheus when `[telemetry] metrics_listen` is set) and traces (exported over OTLP when
//! `[telemetry] otlp_endpoint` is set). Both are off by default; docs/metrics.md lists every
//! metric.

pub mod metrics;
pub mod traces;

use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The Prometheus exporter could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus exporter: {0}")]
pub struct ExporterError(String);

/// Histogram buckets of durations, in seconds: from a cached lookup to a slow hash.
const SECONDS_BUCKETS: [f64; 15] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram buckets of group-commit batch sizes.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The service's own exporter, once installed (its metric calls cache handles only then).
static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus exporter as the process's metrics recorder, once: later calls (a
/// second service in one process, a test) share the first one's handle.
///
/// # Errors
///
/// [`ExporterError`] if another recorder was installed first.
pub fn prometheus() -> Result<PrometheusHandle, ExporterError> {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = PROMETHEUS.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(metrics::GROUP_COMMIT_BATCH.to_owned()),
                &BATCH_BUCKETS,
            )
        })
        .map_err(|error| ExporterError(error.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|_| {
        ExporterError("another metrics recorder is installed in this process".to_owned())
    })?;
    Ok(PROMETHEUS.get_or_init(|| handle).clone())
}
