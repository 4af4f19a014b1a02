//! The validator's metrics, recorded through the [`metrics`] facade: their names, the fixed
//! values of their labels, and the handles a validator registers once per issuer when it is
//! built. Recording is then an atomic operation on a handle — no registry lookup, no string, no
//! allocation — so the warm path pays one increment with an exporter installed and a branch
//! without one. A handle taken while no exporter is installed stays a no-op: install the
//! exporter before building validators. `docs/metrics.md` lists every metric with what moves it.
//!
//! Every metric carries the configured `issuer` and nothing else that varies per request: no
//! token, no digest, no user.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Unit};

pub(crate) const JWKS_FETCHES: &str = "scopegate_jwks_fetches_total";
pub(crate) const JWKS_FETCH_DURATION: &str = "scopegate_jwks_fetch_duration_seconds";
pub(crate) const JWKS_STALE: &str = "scopegate_jwks_stale";
pub(crate) const JWKS_LAST_REFRESH: &str = "scopegate_jwks_last_refresh_timestamp_seconds";
pub(crate) const JWKS_UNKNOWN_KID_REFETCHES: &str = "scopegate_jwks_unknown_kid_refetches_total";
pub(crate) const DISCOVERY_FETCHES: &str = "scopegate_discovery_fetches_total";
pub(crate) const VERIFIED_CACHE_REQUESTS: &str = "scopegate_verified_cache_requests_total";
pub(crate) const VERIFIED_CACHE_ENTRIES: &str = "scopegate_verified_cache_entries";
pub(crate) const INTROSPECTION_REQUESTS: &str = "scopegate_introspection_requests_total";
pub(crate) const INTROSPECTION_DURATION: &str = "scopegate_introspection_duration_seconds";
pub(crate) const INTROSPECTION_CACHE_REQUESTS: &str =
    "scopegate_introspection_cache_requests_total";
pub(crate) const INTROSPECTION_COALESCED: &str = "scopegate_introspection_coalesced_total";
pub(crate) const INTROSPECTION_IN_FLIGHT: &str = "scopegate_introspection_in_flight";
pub(crate) const STREAM_CONNECTED: &str = "scopegate_revocation_stream_connected";
pub(crate) const STREAM_UNAVAILABLE: &str = "scopegate_revocation_stream_unavailable";
pub(crate) const STREAM_LAST_SUCCESS: &str =
    "scopegate_revocation_stream_last_success_timestamp_seconds";
pub(crate) const STREAM_POLLS: &str = "scopegate_revocation_stream_polls_total";
pub(crate) const STREAM_EVENTS_APPLIED: &str = "scopegate_revocation_stream_events_applied_total";
pub(crate) const STREAM_SETS_REFUSED: &str = "scopegate_revocation_stream_sets_refused_total";
pub(crate) const STREAM_DENY_SET_ENTRIES: &str = "scopegate_revocation_stream_deny_set_entries";

/// The label every metric of this crate carries: the issuer as configured.
const ISSUER: &str = "issuer";
/// The label of a fetch's, a call's or a cache look-up's result, from a fixed list per metric.
const RESULT: &str = "result";

/// Wall-clock time as a Prometheus timestamp (seconds since the epoch).
fn timestamp(since_epoch: Duration) -> f64 {
    since_epoch.as_secs_f64()
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

fn counter(name: &'static str, issuer: &str) -> Counter {
    metrics::counter!(name, ISSUER => issuer.to_owned())
}

fn result_counter(name: &'static str, issuer: &str, result: &'static str) -> Counter {
    metrics::counter!(name, ISSUER => issuer.to_owned(), RESULT => result)
}

fn gauge(name: &'static str, issuer: &str) -> Gauge {
    metrics::gauge!(name, ISSUER => issuer.to_owned())
}

fn histogram(name: &'static str, issuer: &str) -> Histogram {
    metrics::histogram!(name, ISSUER => issuer.to_owned())
}

/// Gives the installed exporter each metric's unit and help text. Called at every build: an
/// exporter installed between two builds still gets them.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        JWKS_FETCHES,
        Unit::Count,
        "Key-set fetch attempts by result: ok, not_modified, failed, and fetches refused \
         (cooldown: an unknown kid within the refetch cooldown; backoff: within the failure backoff)"
    );
    describe_histogram!(
        JWKS_FETCH_DURATION,
        Unit::Seconds,
        "Duration of key-set fetches that reached the issuer (discovery included when it was needed)"
    );
    describe_gauge!(
        JWKS_STALE,
        "1 while a key set past its lifetime is served because refreshing it failed, else 0"
    );
    describe_gauge!(
        JWKS_LAST_REFRESH,
        Unit::Seconds,
        "When the key set was last fetched or revalidated successfully (Unix time)"
    );
    describe_counter!(
        JWKS_UNKNOWN_KID_REFETCHES,
        Unit::Count,
        "Key-set fetches made because a token named a key the set did not hold"
    );
    describe_counter!(
        DISCOVERY_FETCHES,
        Unit::Count,
        "Issuer metadata fetch attempts by result: ok, failed, backoff (refused within the failure backoff)"
    );
    describe_counter!(
        VERIFIED_CACHE_REQUESTS,
        Unit::Count,
        "JWTs answered from the verified-token cache (hit) or verified in full (miss)"
    );
    describe_gauge!(
        VERIFIED_CACHE_ENTRIES,
        Unit::Count,
        "Tokens held in the verified-token cache"
    );
    describe_counter!(
        INTROSPECTION_REQUESTS,
        Unit::Count,
        "Introspection calls by answer: active, inactive, failed"
    );
    describe_histogram!(
        INTROSPECTION_DURATION,
        Unit::Seconds,
        "Duration of introspection calls"
    );
    describe_counter!(
        INTROSPECTION_CACHE_REQUESTS,
        Unit::Count,
        "Opaque tokens answered from the introspection cache (hit) or not (miss)"
    );
    describe_counter!(
        INTROSPECTION_COALESCED,
        Unit::Count,
        "Cache misses that shared another request's introspection call instead of making one"
    );
    describe_gauge!(
        INTROSPECTION_IN_FLIGHT,
        Unit::Count,
        "Introspection calls in progress"
    );
    describe_gauge!(
        STREAM_CONNECTED,
        "1 while the revocation event stream is caught up, 0 while revocations may be missed"
    );
    describe_gauge!(
        STREAM_UNAVAILABLE,
        "1 while blind to revocations for longer than max_blind: every token of the issuer is unavailable"
    );
    describe_gauge!(
        STREAM_LAST_SUCCESS,
        Unit::Seconds,
        "When a revocation event poll was last answered (Unix time; 0 before the first)"
    );
    describe_counter!(
        STREAM_POLLS,
        Unit::Count,
        "Revocation event polls by result: ok, failed"
    );
    describe_counter!(
        STREAM_EVENTS_APPLIED,
        Unit::Count,
        "Security event tokens verified and applied"
    );
    describe_counter!(
        STREAM_SETS_REFUSED,
        Unit::Count,
        "Security event tokens that failed verification (ignored, acknowledged with an error)"
    );
    describe_gauge!(
        STREAM_DENY_SET_ENTRIES,
        Unit::Count,
        "Revoked identifiers held (token ids, token digests, sessions, users, clients)"
    );
}

/// The key set of one issuer.
#[derive(Debug, Clone)]
pub(crate) struct JwksMetrics {
    pub(crate) ok: Counter,
    pub(crate) not_modified: Counter,
    pub(crate) failed: Counter,
    pub(crate) cooldown: Counter,
    pub(crate) backoff: Counter,
    pub(crate) duration: Histogram,
    pub(crate) stale: Gauge,
    pub(crate) last_refresh: Gauge,
    pub(crate) unknown_kid_refetches: Counter,
}

impl JwksMetrics {
    pub(crate) fn register(issuer: &str) -> Self {
        Self {
            ok: result_counter(JWKS_FETCHES, issuer, "ok"),
            not_modified: result_counter(JWKS_FETCHES, issuer, "not_modified"),
            failed: result_counter(JWKS_FETCHES, issuer, "failed"),
            cooldown: result_counter(JWKS_FETCHES, issuer, "cooldown"),
            backoff: result_counter(JWKS_FETCHES, issuer, "backoff"),
            duration: histogram(JWKS_FETCH_DURATION, issuer),
            stale: gauge(JWKS_STALE, issuer),
            last_refresh: gauge(JWKS_LAST_REFRESH, issuer),
            unknown_kid_refetches: counter(JWKS_UNKNOWN_KID_REFETCHES, issuer),
        }
    }

    /// A fetch that reached the issuer (or the in-process source), started at `started`.
    pub(crate) fn fetched(&self, result: &Counter, started: Instant) {
        result.increment(1);
        self.duration.record(started.elapsed());
    }

    /// A key set fetched or revalidated at `now` (clock time).
    pub(crate) fn refreshed(&self, now: Duration) {
        self.stale.set(0.0);
        self.last_refresh.set(timestamp(now));
    }

    /// Whether the key set in use is one past its lifetime, after a refresh failed.
    pub(crate) fn serving_stale(&self, stale: bool) {
        self.stale.set(flag(stale));
    }
}

/// The issuer's metadata (OIDC discovery / RFC 8414).
#[derive(Debug, Clone)]
pub(crate) struct DiscoveryMetrics {
    pub(crate) ok: Counter,
    pub(crate) failed: Counter,
    pub(crate) backoff: Counter,
}

impl DiscoveryMetrics {
    pub(crate) fn register(issuer: &str) -> Self {
        Self {
            ok: result_counter(DISCOVERY_FETCHES, issuer, "ok"),
            failed: result_counter(DISCOVERY_FETCHES, issuer, "failed"),
            backoff: result_counter(DISCOVERY_FETCHES, issuer, "backoff"),
        }
    }
}

/// The verified-token cache.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedCacheMetrics {
    pub(crate) hit: Counter,
    pub(crate) miss: Counter,
    pub(crate) entries: Arc<HeldEntries>,
}

impl VerifiedCacheMetrics {
    pub(crate) fn register(issuer: &str) -> Self {
        Self {
            hit: result_counter(VERIFIED_CACHE_REQUESTS, issuer, "hit"),
            miss: result_counter(VERIFIED_CACHE_REQUESTS, issuer, "miss"),
            entries: Arc::new(HeldEntries {
                gauge: gauge(VERIFIED_CACHE_ENTRIES, issuer),
                held: AtomicI64::new(0),
            }),
        }
    }
}

/// A cache's entries in a gauge that every validator of the issuer adds to: each sets its own
/// share, and gives back what it still holds when it is dropped — a validator rebuilt on
/// a configuration reload leaves no phantom entries behind.
#[derive(Debug)]
pub(crate) struct HeldEntries {
    gauge: Gauge,
    held: AtomicI64,
}

impl HeldEntries {
    /// The cache holds `count` entries now.
    pub(crate) fn set(&self, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let before = self.held.swap(count, Ordering::Relaxed);
        self.gauge.increment((count - before) as f64);
    }
}

impl Drop for HeldEntries {
    fn drop(&mut self) {
        self.gauge.decrement(*self.held.get_mut() as f64);
    }
}

/// RFC 7662 introspection.
#[derive(Debug, Clone)]
pub(crate) struct IntrospectionMetrics {
    pub(crate) active: Counter,
    pub(crate) inactive: Counter,
    pub(crate) failed: Counter,
    pub(crate) duration: Histogram,
    pub(crate) cache_hit: Counter,
    pub(crate) cache_miss: Counter,
    pub(crate) coalesced: Counter,
    in_flight: Gauge,
}

impl IntrospectionMetrics {
    pub(crate) fn register(issuer: &str) -> Self {
        Self {
            active: result_counter(INTROSPECTION_REQUESTS, issuer, "active"),
            inactive: result_counter(INTROSPECTION_REQUESTS, issuer, "inactive"),
            failed: result_counter(INTROSPECTION_REQUESTS, issuer, "failed"),
            duration: histogram(INTROSPECTION_DURATION, issuer),
            cache_hit: result_counter(INTROSPECTION_CACHE_REQUESTS, issuer, "hit"),
            cache_miss: result_counter(INTROSPECTION_CACHE_REQUESTS, issuer, "miss"),
            coalesced: counter(INTROSPECTION_COALESCED, issuer),
            in_flight: gauge(INTROSPECTION_IN_FLIGHT, issuer),
        }
    }

    /// Counts a call in flight until the returned guard is dropped — however the call ends,
    /// its caller dropped included — and times it.
    pub(crate) fn call(&self) -> CallInFlight<'_> {
        self.in_flight.increment(1.0);
        CallInFlight {
            metrics: self,
            started: Instant::now(),
        }
    }
}

/// An introspection call in progress.
pub(crate) struct CallInFlight<'a> {
    metrics: &'a IntrospectionMetrics,
    started: Instant,
}

impl CallInFlight<'_> {
    /// The call answered (`Some(active)`) or failed (`None`).
    pub(crate) fn answered(self, active: Option<bool>) {
        let result = match active {
            Some(true) => &self.metrics.active,
            Some(false) => &self.metrics.inactive,
            None => &self.metrics.failed,
        };
        result.increment(1);
        self.metrics.duration.record(self.started.elapsed());
    }
}

impl Drop for CallInFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.decrement(1.0);
    }
}

/// The revocation event stream of one issuer.
#[derive(Debug)]
pub(crate) struct StreamMetrics {
    connected: Gauge,
    unavailable: Gauge,
    last_success: Gauge,
    polls_ok: Counter,
    polls_failed: Counter,
    pub(crate) events_applied: Counter,
    pub(crate) sets_refused: Counter,
    pub(crate) deny_set_entries: Gauge,
}

impl StreamMetrics {
    pub(crate) fn register(issuer: &str) -> Self {
        let metrics = Self {
            connected: gauge(STREAM_CONNECTED, issuer),
            unavailable: gauge(STREAM_UNAVAILABLE, issuer),
            last_success: gauge(STREAM_LAST_SUCCESS, issuer),
            polls_ok: result_counter(STREAM_POLLS, issuer, "ok"),
            polls_failed: result_counter(STREAM_POLLS, issuer, "failed"),
            events_applied: counter(STREAM_EVENTS_APPLIED, issuer),
            sets_refused: counter(STREAM_SETS_REFUSED, issuer),
            deny_set_entries: gauge(STREAM_DENY_SET_ENTRIES, issuer),
        };
        // Blind until the first answer; set here, as another subscription to the same issuer
        // may have left the series at anything.
        metrics.connected.set(0.0);
        metrics.unavailable.set(0.0);
        metrics.deny_set_entries.set(0.0);
        metrics
    }

    /// A poll answered at `now`: `caught_up` when nothing more was waiting (or already so).
    pub(crate) fn answered(&self, now: Duration, caught_up: bool, beyond_bound: bool) {
        self.polls_ok.increment(1);
        self.last_success.set(timestamp(now));
        self.connected.set(flag(caught_up));
        self.unavailable.set(flag(beyond_bound));
    }

    /// A poll that failed; `beyond_bound`: blind for longer than allowed.
    pub(crate) fn failed(&self, beyond_bound: bool) {
        self.polls_failed.increment(1);
        self.connected.set(0.0);
        self.unavailable.set(flag(beyond_bound));
    }
}
