//! The background task of one issuer's subscription: polls the stream (RFC 8936, held open),
//! verifies each SET, applies what it revokes, and acknowledges the batch on the next poll.
//!
//! The token service keeps no state per receiver: the stream continues after the latest event
//! a poll acknowledges. So the last batch's ids are acknowledged again on every poll until a
//! new batch replaces them — after an empty answer, a failure or a reconnection alike — and a
//! batch is acknowledged only once every SET in it was judged: one that could not be (the
//! issuer's keys unreachable) makes the poll fail, and the batch comes again.
//!
//! Polls are held open (`returnImmediately` false) once the stream is caught up. At the start
//! and after a failure, they ask for an immediate answer instead, until one says nothing more is
//! waiting: a stream that recovers with nothing new to say is known to be caught up at once,
//! not when its first held poll ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Client;
use reqwest::header::HeaderValue;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use url::Url;

use super::deny::Target;
use super::endpoint::Discovery;
use super::set::{self, Rejection, SecurityEvent, SetError, SetRules};
use super::{EventsPolicy, Revocations};
use crate::clock::Clock;
use crate::error::FetchError;
use crate::introspect::Introspector;
use crate::jwks::JwksCache;

/// The contract's largest batch.
const MAX_EVENTS: u32 = 1000;
/// A transmitter that answers at once instead of holding the poll is asked at most this often.
const MIN_EMPTY_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The first wait after a failure; doubled up to the policy's maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Where the poll endpoint comes from.
#[derive(Debug, Clone)]
pub(crate) enum PollSource {
    Configured(Url),
    Discovered { allow_insecure_http: bool },
}

/// Everything the task works with.
pub(crate) struct Subscriber {
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) jwks: Arc<JwksCache>,
    pub(crate) introspector: Option<Arc<Introspector>>,
    pub(crate) rules: SetRules,
    pub(crate) source: PollSource,
    pub(crate) http: Client,
    pub(crate) authorization: HeaderValue,
    pub(crate) policy: EventsPolicy,
    pub(crate) max_document_bytes: usize,
    pub(crate) clock: Arc<dyn Clock>,
    /// The key set's refetch cooldown: how long a SET with an unknown `kid` is retried.
    pub(crate) refetch_cooldown: Duration,
}

/// What the next poll acknowledges: the last batch, ids and errors.
#[derive(Debug, Default)]
struct Acknowledgements {
    ack: Vec<String>,
    set_errs: BTreeMap<String, SetErr>,
}

/// RFC 8936 §2.4 `setErrs` member (RFC 8935 §2.4 codes).
#[derive(Debug, Clone, Serialize)]
struct SetErr {
    err: &'static str,
    description: String,
}

#[derive(Serialize)]
struct PollRequest<'a> {
    ack: &'a [String],
    #[serde(rename = "setErrs", skip_serializing_if = "BTreeMap::is_empty")]
    set_errs: &'a BTreeMap<String, SetErr>,
    #[serde(rename = "maxEvents")]
    max_events: u32,
    #[serde(rename = "returnImmediately")]
    return_immediately: bool,
}

/// RFC 8936 §2.5: the SETs by id, in the order sent, and whether more are waiting.
#[derive(Debug, Deserialize)]
struct PollAnswer {
    sets: OrderedSets,
    #[serde(rename = "moreAvailable", default)]
    more_available: bool,
}

/// Reads an RFC 8936 poll answer as received: its SETs by id in the order sent, and
/// `moreAvailable` (the fuzz target's entry).
#[cfg(feature = "fuzzing")]
pub(crate) fn read_answer(bytes: &[u8]) -> Option<(Vec<(String, String)>, bool)> {
    serde_json::from_slice::<PollAnswer>(bytes)
        .ok()
        .map(|answer| (answer.sets.0, answer.more_available))
}

/// `sets` in document order (events come in the order they committed), no id twice.
#[derive(Debug)]
struct OrderedSets(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedSets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SetsVisitor;
        impl<'de> Visitor<'de> for SetsVisitor {
            type Value = OrderedSets;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object of SETs (strings) by id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<OrderedSets, A::Error> {
                let mut sets = Vec::new();
                let mut ids = HashSet::new();
                while let Some((id, token)) = access.next_entry::<String, String>()? {
                    if !ids.insert(id.clone()) {
                        return Err(de::Error::custom("an id appears twice"));
                    }
                    sets.push((id, token));
                }
                Ok(OrderedSets(sets))
            }
        }
        deserializer.deserialize_map(SetsVisitor)
    }
}

/// What becomes of one SET.
enum Judgement {
    /// Verified and new: its denials are applied.
    Apply(SecurityEvent),
    /// Verified, but already processed or too old to matter: acknowledged, nothing else.
    Ignore(&'static str),
    /// Not a valid SET from the issuer: acknowledged with an error, nothing else.
    Reject(SetError),
    /// Cannot be judged now: the poll fails and the batch comes again.
    Retry(FetchError),
}

/// How one poll went.
struct Polled {
    sets: usize,
    more_available: bool,
    /// Whether the transmitter was asked to hold the poll.
    held: bool,
}

/// Bounded exponential backoff with jitter: a recovered issuer is polled again within
/// `max` (a few seconds), and many replicas do not retry in step.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: FIRST_BACKOFF.min(max),
            max,
        }
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF.min(self.max);
    }

    /// Between half and all of the current step; the step then doubles.
    fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        let mut random = [0u8; 2];
        let fraction = match aws_lc_rs::rand::fill(&mut random) {
            Ok(()) => f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX),
            Err(_) => 1.0,
        };
        step.mul_f64(0.5 + fraction / 2.0)
    }
}

impl Subscriber {
    /// Polls until the task is aborted (the validator dropped).
    pub(crate) async fn run(self) {
        let mut state = State {
            subscriber: self,
            endpoint: None,
            acknowledged: Acknowledgements::default(),
            seen: HashMap::new(),
            next_forget: None,
            unknown_key: None,
        };
        let mut backoff = Backoff::new(state.subscriber.policy.max_backoff);
        let mut caught_up_once = false;
        let mut in_outage = false;
        let mut bound_reported = false;
        let issuer = state.subscriber.rules.issuer.clone();
        loop {
            let started = tokio::time::Instant::now();
            let result = state.poll().await;
            let revocations = &state.subscriber.revocations;
            match result {
                Ok(polled) => {
                    backoff.reset();
                    let now = state.now();
                    revocations.metrics.answered(
                        now,
                        revocations.health.is_caught_up(),
                        revocations.health.beyond_bound(now),
                    );
                    if revocations.health.is_caught_up() {
                        if in_outage {
                            tracing::info!(%issuer, "revocation event stream recovered");
                        } else if !caught_up_once {
                            tracing::info!(%issuer, "revocation event stream caught up");
                        }
                        caught_up_once = true;
                        in_outage = false;
                        bound_reported = false;
                    }
                    state.purge();
                    if polled.more_available {
                        continue;
                    }
                    if polled.sets == 0 && polled.held {
                        tokio::time::sleep_until(started + MIN_EMPTY_POLL_INTERVAL).await;
                    }
                }
                Err(error) => {
                    let refused = matches!(
                        error,
                        FetchError::Status {
                            status: 401 | 403,
                            ..
                        }
                    );
                    if in_outage {
                        tracing::debug!(%issuer, %error, "revocation event stream still failing");
                    } else if refused {
                        tracing::error!(
                            %issuer,
                            %error,
                            "the revocation event stream refused this API's credentials: \
                             revocations are not seen until it accepts them"
                        );
                        in_outage = true;
                    } else {
                        tracing::warn!(
                            %issuer,
                            %error,
                            "revocation event stream failing: tokens are still verified, but \
                             revocations are not seen until it answers"
                        );
                        in_outage = true;
                    }
                    revocations.health.failed(error);
                    let beyond_bound = revocations.health.beyond_bound(state.now());
                    revocations.metrics.failed(beyond_bound);
                    if !bound_reported && beyond_bound {
                        tracing::error!(
                            %issuer,
                            max_blind = ?state.subscriber.policy.max_blind,
                            "blind to revocations for longer than max_blind: every token of this \
                             issuer is unavailable until the stream answers"
                        );
                        bound_reported = true;
                    }
                    state.purge();
                    tokio::time::sleep(backoff.delay()).await;
                }
            }
        }
    }
}

/// The task's own state, next to what it was given.
struct State {
    subscriber: Subscriber,
    /// The poll endpoint, once known.
    endpoint: Option<Url>,
    acknowledged: Acknowledgements,
    /// Ids of SETs processed, until they are old enough to be ignored anyway.
    seen: HashMap<String, Duration>,
    /// The earliest time an id in `seen` may be forgotten: nothing to scan before it.
    next_forget: Option<Duration>,
    /// A SET whose `kid` was unknown, and when that was first seen.
    unknown_key: Option<(String, Duration)>,
}

impl State {
    fn now(&self) -> Duration {
        self.subscriber.clock.now()
    }

    async fn endpoint(&mut self) -> Result<Url, FetchError> {
        if let Some(endpoint) = &self.endpoint {
            return Ok(endpoint.clone());
        }
        let subscriber = &self.subscriber;
        let endpoint = match &subscriber.source {
            PollSource::Configured(url) => url.clone(),
            PollSource::Discovered {
                allow_insecure_http,
            } => {
                Discovery {
                    http: &subscriber.http,
                    issuer: &subscriber.rules.issuer,
                    authorization: &subscriber.authorization,
                    max_bytes: subscriber.max_document_bytes,
                    allow_insecure_http: *allow_insecure_http,
                }
                .poll_endpoint()
                .await?
            }
        };
        self.endpoint = Some(endpoint.clone());
        Ok(endpoint)
    }

    async fn poll(&mut self) -> Result<Polled, FetchError> {
        let endpoint = self.endpoint().await?;
        let hold = self.subscriber.revocations.health.is_caught_up();
        let request = PollRequest {
            ack: &self.acknowledged.ack,
            set_errs: &self.acknowledged.set_errs,
            max_events: MAX_EVENTS,
            return_immediately: !hold,
        };
        let body = serde_json::to_vec(&request).map_err(|error| FetchError::InvalidDocument {
            url: endpoint.to_string(),
            problem: format!("the poll request could not be written: {error}"),
        })?;
        let subscriber = &self.subscriber;
        let answer = crate::http::post_json(
            &subscriber.http,
            &endpoint,
            &subscriber.authorization,
            body,
            subscriber.policy.max_response_bytes,
            subscriber.policy.poll_timeout,
        )
        .await
        .inspect_err(|error| {
            // Moved: found again through discovery on the next attempt.
            if let FetchError::Status { status: 404, .. } = error {
                self.endpoint = None;
            }
        })?;
        let answer: PollAnswer =
            serde_json::from_slice(&answer).map_err(|error| FetchError::InvalidDocument {
                url: endpoint.to_string(),
                problem: format!("not an RFC 8936 poll answer: {error}"),
            })?;
        let sets = answer.sets.0.len();
        self.process(answer.sets.0).await?;
        let now = self.now();
        let health = &self.subscriber.revocations.health;
        if answer.more_available {
            health.progressed(now);
        } else {
            health.caught_up(now);
        }
        Ok(Polled {
            sets,
            more_available: answer.more_available,
            held: hold,
        })
    }

    /// Judges every SET of a batch in order and applies what the valid ones revoke. The batch
    /// becomes what the next poll acknowledges only if every SET in it was judged.
    async fn process(&mut self, sets: Vec<(String, String)>) -> Result<(), FetchError> {
        let mut batch = Acknowledgements::default();
        let mut applied = Vec::new();
        let mut outcome = Ok(());
        for (id, token) in &sets {
            match self.judge(id, token).await {
                Judgement::Apply(event) => {
                    self.remember(&event);
                    applied.push(event);
                    batch.ack.push(id.clone());
                }
                Judgement::Ignore(why) => {
                    tracing::debug!(set = %id, why, "SET ignored");
                    batch.ack.push(id.clone());
                }
                Judgement::Reject(error) => {
                    tracing::warn!(
                        issuer = %self.subscriber.rules.issuer,
                        set = %id,
                        %error,
                        "SET refused and ignored"
                    );
                    let revocations = &self.subscriber.revocations;
                    revocations.sets_rejected.fetch_add(1, Ordering::Relaxed);
                    revocations.metrics.sets_refused.increment(1);
                    batch.set_errs.insert(
                        id.clone(),
                        SetErr {
                            err: error.code(),
                            description: error.to_string(),
                        },
                    );
                }
                Judgement::Retry(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        // Applied even when the batch is incomplete: refusing early is safe, and the SETs
        // applied are remembered, so the batch coming again does not apply them twice.
        self.apply(&applied).await;
        outcome?;
        if let Some((last, _)) = sets.last() {
            let revocations = &self.subscriber.revocations;
            revocations.last_event.store(Some(Arc::new(last.clone())));
            self.acknowledged = batch;
        }
        Ok(())
    }

    async fn judge(&mut self, id: &str, token: &str) -> Judgement {
        let subscriber = &self.subscriber;
        let verified = set::verify(token, &subscriber.rules, &subscriber.jwks).await;
        let now = self.now();
        match verified {
            Ok(event) if event.jti != id => Judgement::Reject(SetError::Malformed(
                "its `jti` is not the id it was delivered under".to_owned(),
            )),
            Ok(event) if self.seen.contains_key(&event.jti) => {
                Judgement::Ignore("already processed")
            }
            Ok(event)
                if event
                    .issued_at
                    .saturating_add(subscriber.rules.default_hold)
                    <= now =>
            {
                Judgement::Ignore("older than the retention")
            }
            Ok(event) => Judgement::Apply(event),
            Err(Rejection::Invalid(error)) => Judgement::Reject(error),
            Err(Rejection::KeysUnavailable(error)) => Judgement::Retry(error.fetch_error().clone()),
            Err(Rejection::UnknownKey(error)) => {
                // The key set may be older than the key: retried until it could have been
                // fetched again since this SET first came, then refused.
                let first_seen = match &self.unknown_key {
                    Some((unknown, first_seen)) if unknown == id => *first_seen,
                    _ => {
                        self.unknown_key = Some((id.to_owned(), now));
                        now
                    }
                };
                if now >= first_seen + subscriber.refetch_cooldown {
                    self.unknown_key = None;
                    Judgement::Reject(SetError::Key(error))
                } else {
                    Judgement::Retry(FetchError::InvalidDocument {
                        url: subscriber.rules.issuer.clone(),
                        problem: format!(
                            "SET {id:?} names a key the issuer's key set does not hold (yet)"
                        ),
                    })
                }
            }
        }
    }

    /// A SET is remembered until it is old enough to be ignored anyway.
    fn remember(&mut self, event: &SecurityEvent) {
        let forget_at = event
            .issued_at
            .min(self.now())
            .saturating_add(self.subscriber.rules.default_hold);
        self.seen.insert(event.jti.clone(), forget_at);
        self.next_forget = Some(
            self.next_forget
                .map_or(forget_at, |next| next.min(forget_at)),
        );
    }

    async fn apply(&self, events: &[SecurityEvent]) {
        if events.is_empty() {
            return;
        }
        let revocations = &self.subscriber.revocations;
        let denials: Vec<_> = events
            .iter()
            .flat_map(|event| event.denials.iter().cloned())
            .collect();
        revocations.apply(&denials, self.now());
        revocations
            .events_applied
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        revocations
            .metrics
            .events_applied
            .increment(events.len() as u64);
        if let Some(introspector) = &self.subscriber.introspector {
            for denial in &denials {
                if let Target::TokenDigest(digest) = &denial.target {
                    introspector.evict(digest).await;
                }
            }
        }
    }

    fn purge(&mut self) {
        let now = self.now();
        self.subscriber.revocations.purge(now);
        if self.next_forget.is_some_and(|next| next <= now) {
            self.seen.retain(|_, forget_at| *forget_at > now);
            self.next_forget = self.seen.values().min().copied();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_acknowledges_the_last_batch_and_holds() {
        let mut acknowledged = Acknowledgements::default();
        let request = |acknowledged: &Acknowledgements| {
            serde_json::to_value(PollRequest {
                ack: &acknowledged.ack,
                set_errs: &acknowledged.set_errs,
                max_events: MAX_EVENTS,
                return_immediately: false,
            })
            .unwrap()
        };
        assert_eq!(
            request(&acknowledged),
            serde_json::json!({"ack": [], "maxEvents": 1000, "returnImmediately": false})
        );
        acknowledged.ack.push("e-1".to_owned());
        acknowledged.set_errs.insert(
            "e-2".to_owned(),
            SetErr {
                err: "invalid_key",
                description: "bad".to_owned(),
            },
        );
        assert_eq!(
            request(&acknowledged),
            serde_json::json!({
                "ack": ["e-1"],
                "setErrs": {"e-2": {"err": "invalid_key", "description": "bad"}},
                "maxEvents": 1000,
                "returnImmediately": false,
            })
        );
    }

    #[test]
    fn answers_keep_their_order_and_refuse_what_is_not_one() {
        let answer: PollAnswer =
            serde_json::from_str(r#"{"sets": {"e-9": "a", "e-10": "b"}, "moreAvailable": true}"#)
                .unwrap();
        assert_eq!(
            answer.sets.0,
            [
                ("e-9".to_owned(), "a".to_owned()),
                ("e-10".to_owned(), "b".to_owned())
            ]
        );
        assert!(answer.more_available);
        let empty: PollAnswer = serde_json::from_str(r#"{"sets": {}}"#).unwrap();
        assert!(empty.sets.0.is_empty() && !empty.more_available);
        for broken in [
            r#"{"sets": {"e-1": "a", "e-1": "b"}}"#,
            r#"{"sets": {"e-1": 7}}"#,
            r#"{"sets": []}"#,
            r#"{"moreAvailable": false}"#,
            r#"{"sets": {}, "moreAvailable": "no"}"#,
            "<html>",
            "",
        ] {
            assert!(
                serde_json::from_str::<PollAnswer>(broken).is_err(),
                "{broken}"
            );
        }
    }

    #[test]
    fn backoff_grows_to_its_bound_with_jitter_and_resets() {
        let max = Duration::from_secs(2);
        let mut backoff = Backoff::new(max);
        let first = backoff.delay();
        assert!(
            first >= FIRST_BACKOFF / 2 && first <= FIRST_BACKOFF,
            "{first:?}"
        );
        for _ in 0..20 {
            assert!(backoff.delay() <= max);
        }
        let late = backoff.delay();
        assert!(late >= max / 2, "{late:?}");
        backoff.reset();
        assert!(backoff.delay() <= FIRST_BACKOFF);
    }
}
