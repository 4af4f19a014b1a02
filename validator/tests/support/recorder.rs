//! A metrics recorder for the metric tests, installed once per test binary, whose values can be
//! read without being consumed.
//!
//! `metrics_util::debugging::DebuggingRecorder` would do, but its snapshots consume what they
//! read (counters and gauges swapped to zero, histograms emptied): two tests reading in parallel
//! would steal each other's increments, and a gauge would read 0 the second time. This is the
//! same storage (`metrics_util`'s registry of atomics) read in place. Tests read only the series
//! labelled with their own issuer (each fake IdP has its own port) or requirement, and compare
//! values before and after what they do, so that they run in parallel.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry<Key, AtomicStorage>>,
}

struct Installed(Metrics);

impl Recorder for Installed {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .registry
            .get_or_create_counter(key, |counter| Counter::from_arc(Arc::clone(counter)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .registry
            .get_or_create_gauge(key, |gauge| Gauge::from_arc(Arc::clone(gauge)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .registry
            .get_or_create_histogram(key, |histogram| Histogram::from_arc(Arc::clone(histogram)))
    }
}

/// The recorder of this process, installed on first use: call it before building anything
/// (handles taken before stay no-ops).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = Metrics {
            registry: Arc::new(Registry::atomic()),
        };
        metrics::set_global_recorder(Installed(metrics.clone()))
            .unwrap_or_else(|_| panic!("another recorder was installed"));
        metrics
    })
}

/// Whether `key` is `name` with every one of `labels`.
fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && labels.iter().all(|(wanted, value)| {
            key.labels()
                .any(|label| label.key() == *wanted && label.value() == *value)
        })
}

impl Metrics {
    /// The sum of the counters `name` that carry all of `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.registry
            .get_counter_handles()
            .iter()
            .filter(|(key, _)| matches(key, name, labels))
            .map(|(_, counter)| counter.load(Ordering::SeqCst))
            .sum()
    }

    /// The gauge `name` with exactly one series carrying all of `labels`, if registered.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .registry
            .get_gauge_handles()
            .iter()
            .filter(|(key, _)| matches(key, name, labels))
            .map(|(_, gauge)| f64::from_bits(gauge.load(Ordering::SeqCst)))
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?}: several series");
        found.first().copied()
    }

    /// The values recorded in the histograms `name` that carry all of `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.registry
            .get_histogram_handles()
            .iter()
            .filter(|(key, _)| matches(key, name, labels))
            .flat_map(|(_, histogram)| histogram.data())
            .collect()
    }

    /// Every registered series: its name and labels.
    pub fn series(&self) -> Vec<(String, Vec<(String, String)>)> {
        let keys = self
            .registry
            .get_counter_handles()
            .into_keys()
            .chain(self.registry.get_gauge_handles().into_keys())
            .chain(self.registry.get_histogram_handles().into_keys());
        keys.map(|key| {
            let labels = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels)
        })
        .collect()
    }
}

/// Waits (bounded, 20 s) until `condition` holds: for what a background task records.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
