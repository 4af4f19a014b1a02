//! Every metric the token service records, by name, with the one function that records it: an
//! entry point never writes a metric name or a label of its own. Names and labels are listed in
//! docs/metrics.md; label values are fixed words or ids an operator registered, never a token,
//! a username, an address or a raw path.

use std::time::Duration;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;

use metrics::{Histogram, Label, counter, gauge, histogram};

use crate::config::{GrantType, TokenFormat};

/// `scopegate_tokens_issued_total{grant_type, format, client_id}`.
pub const TOKENS_ISSUED: &str = "scopegate_tokens_issued_total";
/// `scopegate_token_errors_total{error}`: `/token` requests refused, by OAuth error code.
pub const TOKEN_ERRORS: &str = "scopegate_token_errors_total";
/// `scopegate_introspections_total{result}` (and `api` when the API authenticated).
pub const INTROSPECTIONS: &str = "scopegate_introspections_total";
/// `scopegate_revocations_total{result}`.
pub const REVOCATIONS: &str = "scopegate_revocations_total";
/// `scopegate_credential_checks_total{kind, result}`.
pub const CREDENTIAL_CHECKS: &str = "scopegate_credential_checks_total";
/// `scopegate_sign_ins_total{result}`.
pub const SIGN_INS: &str = "scopegate_sign_ins_total";
/// `scopegate_rate_limited_total{party, id}`.
pub const RATE_LIMITED: &str = "scopegate_rate_limited_total";
/// `scopegate_secret_hash_queue_depth{kind}`: checks waiting for a hashing slot.
pub const HASH_QUEUE_DEPTH: &str = "scopegate_secret_hash_queue_depth";
/// `scopegate_secret_hash_wait_seconds{kind}`: how long a check waited for its slot.
pub const HASH_WAIT: &str = "scopegate_secret_hash_wait_seconds";
/// `scopegate_secret_hash_busy_total{kind}`: checks turned away, no slot freed in time.
pub const HASH_BUSY: &str = "scopegate_secret_hash_busy_total";
/// `db_client_operation_duration_seconds{db_system_name, db_operation_name,
/// db_collection_name, error_type}` (OpenTelemetry's database client convention).
pub const DB_OPERATION: &str = "db_client_operation_duration_seconds";
/// `scopegate_store_group_commit_batch_size{writer}`.
pub const GROUP_COMMIT_BATCH: &str = "scopegate_store_group_commit_batch_size";
/// `scopegate_signing_key_rotations_total`: keys added by rotation (not the first key).
pub const KEY_ROTATIONS: &str = "scopegate_signing_key_rotations_total";
/// `scopegate_signing_key_active_since_timestamp_seconds`: when the key signing now began to
/// sign (its age is `time()` minus this).
pub const SIGNING_KEY_ACTIVE_SINCE: &str = "scopegate_signing_key_active_since_timestamp_seconds";
/// `http_server_request_duration_seconds{http_request_method, http_route,
/// http_response_status_code}` (OpenTelemetry's HTTP server convention).
pub const HTTP_REQUEST: &str = "http_server_request_duration_seconds";
/// `scopegate_event_polls_open`: revocation event polls being answered now (most of them
/// held open until an event comes).
pub const EVENT_POLLS_OPEN: &str = "scopegate_event_polls_open";
/// `scopegate_events_delivered_total`: SETs handed to APIs.
pub const EVENTS_DELIVERED: &str = "scopegate_events_delivered_total";
/// `scopegate_claim_source_requests_total{source, result}`.
pub const CLAIM_SOURCE_REQUESTS: &str = "scopegate_claim_source_requests_total";
/// `scopegate_claim_source_duration_seconds{source}`.
pub const CLAIM_SOURCE_DURATION: &str = "scopegate_claim_source_duration_seconds";

/// A claim source was asked: `result` is `ok`, `not_found`, `timeout`, `unreachable`,
/// `status` or `junk`.
pub fn claim_source_asked(source: &str, result: &'static str, took: Duration) {
    counter!(CLAIM_SOURCE_REQUESTS, "source" => source.to_owned(), "result" => result).increment(1);
    histogram!(CLAIM_SOURCE_DURATION, "source" => source.to_owned()).record(took.as_secs_f64());
}

/// A claim source was not asked, resting after a timeout or a connection failure: counted
/// with `result` `skipped`, and no duration.
pub fn claim_source_skipped(source: &str) {
    counter!(CLAIM_SOURCE_REQUESTS, "source" => source.to_owned(), "result" => "skipped")
        .increment(1);
}

/// An access token was issued.
pub fn token_issued(grant: GrantType, format: TokenFormat, client_id: &str) {
    counter!(
        TOKENS_ISSUED,
        "grant_type" => grant.as_str(),
        "format" => format.as_str(),
        "client_id" => client_id.to_owned(),
    )
    .increment(1);
}

/// `/token` refused a request with the OAuth error `code`.
pub fn token_refused(code: &'static str) {
    counter!(TOKEN_ERRORS, "error" => code).increment(1);
}

/// What `/introspect` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Introspected<'a> {
    /// `active: true`, to this API.
    Active(&'a str),
    /// `active: false`, to this API.
    Inactive(&'a str),
    /// Refused with this OAuth error (`invalid_client`, `slow_down`, ...).
    Refused(&'static str),
}

/// An introspection was answered.
pub fn introspected(answer: Introspected<'_>) {
    match answer {
        Introspected::Active(api) => {
            counter!(INTROSPECTIONS, "result" => "active", "api" => api.to_owned()).increment(1);
        }
        Introspected::Inactive(api) => {
            counter!(INTROSPECTIONS, "result" => "inactive", "api" => api.to_owned()).increment(1);
        }
        Introspected::Refused(code) => {
            counter!(INTROSPECTIONS, "result" => code).increment(1);
        }
    }
}

/// A revocation request was answered: `revoked`, `unknown` (RFC 7009 answers it alike), or
/// the OAuth error that refused it.
pub fn revocation(result: &'static str) {
    counter!(REVOCATIONS, "result" => result).increment(1);
}

/// A credential was checked. `kind`: `client_secret`, `client_assertion`, `api_secret`,
/// `api_assertion`, `password`; `result`: `accepted`, `wrong`, `throttled`, `busy`.
pub fn credential_checked(kind: &'static str, result: &'static str) {
    counter!(CREDENTIAL_CHECKS, "kind" => kind, "result" => result).increment(1);
}

/// A sign-in form was answered: `success`, `failure` (wrong username or password),
/// `throttled`, `busy` (no hashing slot), `error` (the store failed).
pub fn sign_in(result: &'static str) {
    counter!(SIGN_INS, "result" => result).increment(1);
}

/// A registered party (`client` or `api`) went over its request rate.
pub fn rate_limited(party: &'static str, id: &str) {
    counter!(RATE_LIMITED, "party" => party, "id" => id.to_owned()).increment(1);
}

/// A check waiting for a hashing slot of `kind` (`secret` or `password`): the queue depth
/// counts it until it is dropped.
#[must_use]
pub fn hash_queued(kind: &'static str) -> HashQueued {
    let depth = gauge!(HASH_QUEUE_DEPTH, "kind" => kind);
    depth.increment(1.0);
    HashQueued {
        kind,
        depth,
        since: std::time::Instant::now(),
    }
}

/// A check in the hashing queue (see [`hash_queued`]).
#[derive(Debug)]
pub struct HashQueued {
    kind: &'static str,
    depth: metrics::Gauge,
    since: std::time::Instant,
}

impl HashQueued {
    /// It got its slot (`true`) or gave up (`false`, counted as busy).
    pub fn done(self, got_slot: bool) {
        histogram!(HASH_WAIT, "kind" => self.kind).record(self.since.elapsed().as_secs_f64());
        if !got_slot {
            counter!(HASH_BUSY, "kind" => self.kind).increment(1);
        }
    }
}

impl Drop for HashQueued {
    fn drop(&mut self) {
        self.depth.decrement(1.0);
    }
}

/// A database operation finished after `elapsed`; `collection` is the table it touched (none
/// for `BEGIN` and `COMMIT`), `error` names its failure (a fixed word).
pub fn db_operation(
    system: &'static str,
    operation: &'static str,
    collection: Option<&'static str>,
    elapsed: Duration,
    error: Option<&'static str>,
) {
    let key = (system, operation, collection, error);
    with_cached(
        &DB_HISTOGRAMS,
        key,
        || db_histogram(key),
        |histogram| {
            histogram.record(elapsed.as_secs_f64());
        },
    );
}

/// The series of one route's requests, by method and status (a few: a list is quicker to
/// search than a map).
type RouteSeries = Vec<((&'static str, u16), Histogram)>;

/// The series of a database operation (see [`db_operation`]).
type DbSeries = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

fn db_histogram((system, operation, collection, error): DbSeries) -> Histogram {
    let mut labels = vec![
        Label::from_static_parts("db_system_name", system),
        Label::from_static_parts("db_operation_name", operation),
    ];
    if let Some(collection) = collection {
        labels.push(Label::from_static_parts("db_collection_name", collection));
    }
    if let Some(error) = error {
        labels.push(Label::from_static_parts("error_type", error));
    }
    histogram!(DB_OPERATION, labels)
}

/// A group commit wrote `size` requests in one transaction (`writer`: `tokens`, `spends`).
pub fn group_commit(writer: &'static str, size: usize) {
    #[allow(clippy::cast_precision_loss)] // batch sizes are small
    histogram!(GROUP_COMMIT_BATCH, "writer" => writer).record(size as f64);
}

/// Rotation added a signing key.
pub fn key_rotated() {
    counter!(KEY_ROTATIONS).increment(1);
}

/// The key signing now began to sign at `activated_at` (seconds since the epoch).
pub fn signing_key_in_use(activated_at: u64) {
    #[allow(clippy::cast_precision_loss)] // seconds since the epoch fit a double exactly
    gauge!(SIGNING_KEY_ACTIVE_SINCE).set(activated_at as f64);
}

/// An HTTP request was answered. `method` is its [`method_label`]; `route` is the matched route
/// template (never the raw path).
pub fn http_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    let record = |histogram: &Histogram| histogram.record(elapsed.as_secs_f64());
    let new_series = || {
        histogram!(
            HTTP_REQUEST,
            "http_request_method" => method,
            "http_route" => route.to_owned(),
            "http_response_status_code" => status.to_string(),
        )
    };
    if super::PROMETHEUS.get().is_none() {
        return record(&new_series());
    }
    HTTP_HISTOGRAMS.with_borrow_mut(|routes| {
        let series = match routes.get_mut(route) {
            Some(series) => series,
            None => routes.entry(route.into()).or_default(),
        };
        match series.iter().find(|(key, _)| *key == (method, status)) {
            Some((_, histogram)) => record(histogram),
            None => {
                let histogram = new_series();
                record(&histogram);
                series.push(((method, status), histogram));
            }
        }
    });
}

// Handles of labelled series, per thread, once the service's own exporter is installed: a
// registry lookup (hashing the labels, a shared lock) costs more than the record itself, and
// these two are recorded on every request and every statement. Their keys are bounded (routes,
// methods, statuses; operations, tables, error kinds). Before the exporter is installed — or with
// an application's own recorder — every call asks the recorder, so no handle taken too early
// stays a no-op.
thread_local! {
    static HTTP_HISTOGRAMS: RefCell<HashMap<Box<str>, RouteSeries>> = RefCell::new(HashMap::new());
    static DB_HISTOGRAMS: RefCell<HashMap<DbSeries, Histogram>> = RefCell::new(HashMap::new());
}

/// Runs `use_it` on the cached handle of `key` in `cache`, taken from `create` the first time.
fn with_cached<K: Eq + Hash>(
    cache: &'static std::thread::LocalKey<RefCell<HashMap<K, Histogram>>>,
    key: K,
    create: impl FnOnce() -> Histogram,
    use_it: impl FnOnce(&Histogram),
) {
    if super::PROMETHEUS.get().is_none() {
        return use_it(&create());
    }
    cache.with_borrow_mut(|handles| use_it(handles.entry(key).or_insert_with(create)));
}

/// The label of a request's method (`http_request`'s `method`): a method outside the standard
/// ones is `_OTHER` (OpenTelemetry's rule), so that a client choosing its own methods makes no
/// new series.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("_OTHER")
}

/// A revocation event poll is held open until the returned guard drops.
#[must_use]
pub fn event_poll_held() -> HeldPoll {
    let held = gauge!(EVENT_POLLS_OPEN);
    held.increment(1.0);
    HeldPoll(held)
}

/// A held event poll (see [`event_poll_held`]).
#[derive(Debug)]
pub struct HeldPoll(metrics::Gauge);

impl Drop for HeldPoll {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// SETs were handed to an API.
pub fn events_delivered(count: usize) {
    counter!(EVENTS_DELIVERED).increment(count as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label("POST"), "POST");
        assert_eq!(method_label("BREW"), "_OTHER");
        assert_eq!(method_label("post"), "_OTHER");
    }
}
