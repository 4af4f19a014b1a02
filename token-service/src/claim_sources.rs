//! Reading a user's record from the claim sources (`[[claim_sources]]`): one HTTP request per
//! user and source, within the source's timeout, its answer (a JSON object) reused for the
//! source's `cache_ttl`. Concurrent sign-ins of one user wait for one request; a source that
//! timed out or could not be reached three times in a row is left alone for its `backoff`, then
//! tried with one request. The scopes' claim
//! mappings then read claims from the record, as they read stored attributes
//! ([`id_token`](crate::id_token)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::config::claim_source::{ClaimSource, OnFailure, SourceAuth, SourceMethod};

/// Largest answer read from a source.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A user's record as a source answered it.
pub type Record = Arc<Map<String, Value>>;

/// Who a source is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The user's `sub`.
    pub sub: &'a str,
    /// Their login name.
    pub username: &'a str,
    /// Their email address, if known.
    pub email: Option<&'a str>,
}

/// Why a source gave no record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No answer within the timeout.
    #[error("claim source `{0}` did not answer in time")]
    Timeout(String),
    /// Connection refused, reset, DNS…
    #[error("claim source `{0}` could not be reached")]
    Unreachable(String),
    /// An answer other than 2xx or 404.
    #[error("claim source `{0}` answered HTTP {1}")]
    Status(String, u16),
    /// Not a JSON object, or larger than [`MAX_ANSWER_BYTES`].
    #[error("claim source `{0}` answered something other than a JSON object: {1}")]
    Junk(String, String),
    /// The user has no `{email}` to fill in the source's URL.
    #[error("claim source `{0}` needs the user's email, which is not known")]
    NoEmail(String),
    /// Not asked: it timed out or could not be reached several times in a row moments ago, and
    /// its `backoff` has not passed yet (or one request is trying it now).
    #[error("claim source `{0}` failed moments ago and is not asked again yet")]
    Resting(String),
    /// A scope names a source that is not configured (cannot happen once the configuration
    /// is checked).
    #[error("no claim source `{0}`")]
    Unknown(String),
}

struct Source {
    settings: ClaimSource,
    /// Records by `sub`; `None` when the source's answers are not reused.
    cache: Option<moka::future::Cache<String, Record>>,
    /// Whether the source is asked, after timeouts or connection failures.
    health: Mutex<Health>,
}

/// A source's recent failures: the state of its circuit breaker.
#[derive(Default)]
struct Health {
    /// Timeouts and connection failures since its last answer.
    failures_in_a_row: u32,
    /// Until when it is not asked; once past, one request goes through to try it.
    resting_until: Option<Instant>,
}

/// Failures in a row before a source rests: one slow record is not an outage.
const FAILURES_BEFORE_REST: u32 = 3;

impl Source {
    /// Whether a request may go to the source now. While it rests, none; once its rest is
    /// over, one — the others keep failing at once until that one comes back or times out.
    fn may_ask(&self) -> bool {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(until) = health.resting_until else {
            return true;
        };
        let now = Instant::now();
        if now < until {
            return false;
        }
        // The trial request's own time: nobody else asks while it is out.
        health.resting_until = now.checked_add(self.settings.timeout);
        true
    }

    /// A source that is slow or down would cost every sign-in its whole timeout: after
    /// [`FAILURES_BEFORE_REST`] such failures in a row (or a failed trial after a rest) it
    /// rests for its `backoff`. An answer, even a refusal, says it is up.
    fn note(&self, outcome: &Result<Record, SourceError>) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Err(SourceError::Timeout(_) | SourceError::Unreachable(_)) => {
                health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
                let trial_failed = health.resting_until.is_some();
                if (trial_failed || health.failures_in_a_row >= FAILURES_BEFORE_REST)
                    && !self.settings.backoff.is_zero()
                {
                    health.resting_until = Instant::now().checked_add(self.settings.backoff);
                }
            }
            Ok(_) | Err(SourceError::Status(..) | SourceError::Junk(..)) => {
                *health = Health::default();
            }
            // Nothing was asked: this says nothing of the source.
            Err(SourceError::NoEmail(_) | SourceError::Resting(_) | SourceError::Unknown(_)) => {}
        }
    }
}

/// Every configured claim source, and the HTTP client that asks them.
#[derive(Clone)]
pub struct ClaimSources {
    sources: Arc<HashMap<String, Source>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ClaimSources {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.sources.keys().collect();
        names.sort();
        formatter
            .debug_struct("ClaimSources")
            .field("sources", &names)
            .finish_non_exhaustive()
    }
}

impl ClaimSources {
    /// The sources of the configuration.
    #[must_use]
    pub fn new(sources: &[ClaimSource]) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let sources = sources
            .iter()
            .map(|settings| {
                let cache = (!settings.cache_ttl.is_zero()).then(|| {
                    moka::future::Cache::builder()
                        .max_capacity(100_000)
                        .time_to_live(settings.cache_ttl)
                        .build()
                });
                (
                    settings.name.clone(),
                    Source {
                        settings: settings.clone(),
                        cache,
                        health: Mutex::default(),
                    },
                )
            })
            .collect();
        Self {
            sources: Arc::new(sources),
            http,
        }
    }

    /// What `source` does when it fails.
    #[must_use]
    pub fn on_failure(&self, source: &str) -> OnFailure {
        self.sources
            .get(source)
            .map_or(OnFailure::Refuse, |source| source.settings.on_failure)
    }

    /// The record of `user` at `source`: from the cache while it is fresh, else asked (once,
    /// however many wait) unless the source is resting after failures in a row, or being tried
    /// by one request after its rest. A user the source does not know (404) has an empty
    /// record.
    ///
    /// # Errors
    ///
    /// [`SourceError`] when the source is down, slow, resting or answers junk; nothing is
    /// cached then.
    pub async fn record(&self, source: &str, user: Identity<'_>) -> Result<Record, SourceError> {
        let Some(entry) = self.sources.get(source) else {
            return Err(SourceError::Unknown(source.to_owned()));
        };
        let Some(cache) = &entry.cache else {
            return self.ask(entry, user).await;
        };
        cache
            .try_get_with(user.sub.to_owned(), self.ask(entry, user))
            .await
            .map_err(|error| (*error).clone())
    }

    /// Asks `entry` about `user`, unless it is resting.
    async fn ask(&self, entry: &Source, user: Identity<'_>) -> Result<Record, SourceError> {
        let source = &entry.settings;
        // Before the breaker: a request that cannot be made must not take the trial's turn.
        let url = filled_url(source, user)?;
        if !entry.may_ask() {
            crate::telemetry::metrics::claim_source_skipped(&source.name);
            return Err(SourceError::Resting(source.name.clone()));
        }
        let outcome = self.ask_now(source, url, user).await;
        entry.note(&outcome);
        outcome
    }

    async fn ask_now(
        &self,
        source: &ClaimSource,
        url: String,
        user: Identity<'_>,
    ) -> Result<Record, SourceError> {
        let name = || source.name.clone();
        let mut request = match source.method {
            SourceMethod::Get => self.http.get(url),
            SourceMethod::Post => self.http.post(url).json(&json!({
                "sub": user.sub,
                "username": user.username,
                "email": user.email,
            })),
        }
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(source.timeout);
        request = match &source.auth {
            None => request,
            Some(SourceAuth::Bearer { token }) => request.bearer_auth(token.expose()),
            Some(SourceAuth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            Some(SourceAuth::Header { name, value }) => request.header(name, value.expose()),
        };
        let started = std::time::Instant::now();
        let outcome = answer(request).await;
        let result = match &outcome {
            Ok(Answer::Record(_)) => "ok",
            Ok(Answer::NotFound) => "not_found",
            Err(Failure::Timeout) => "timeout",
            Err(Failure::Unreachable) => "unreachable",
            Err(Failure::Status(_)) => "status",
            Err(Failure::Junk(_)) => "junk",
        };
        crate::telemetry::metrics::claim_source_asked(&source.name, result, started.elapsed());
        let outcome = outcome.map(Answer::record).map_err(|error| match error {
            Failure::Timeout => SourceError::Timeout(name()),
            Failure::Unreachable => SourceError::Unreachable(name()),
            Failure::Status(status) => SourceError::Status(name(), status),
            Failure::Junk(why) => SourceError::Junk(name(), why),
        });
        match &outcome {
            Ok(_) => {
                tracing::debug!(source = %source.name, elapsed_ms = started.elapsed().as_millis(), "claim source read")
            }
            Err(error) => tracing::warn!(source = %source.name, %error, "claim source failed"),
        }
        outcome
    }
}

/// What a source answered that is not a failure.
enum Answer {
    Record(Record),
    /// 404: the source does not know the user.
    NotFound,
}

impl Answer {
    fn record(self) -> Record {
        match self {
            Self::Record(record) => record,
            Self::NotFound => Arc::new(Map::new()),
        }
    }
}

/// The record in a source's answer.
async fn answer(request: reqwest::RequestBuilder) -> Result<Answer, Failure> {
    let transport = |error: reqwest::Error| {
        if error.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Unreachable
        }
    };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Answer::NotFound);
    }
    if !status.is_success() {
        return Err(Failure::Status(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(Failure::Junk("larger than 64 KiB".to_owned()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Failure::Junk("larger than 64 KiB".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(record)) => Ok(Answer::Record(Arc::new(record))),
        Ok(_) => Err(Failure::Junk("not an object".to_owned())),
        Err(error) => Err(Failure::Junk(format!("not JSON ({error})"))),
    }
}

enum Failure {
    Timeout,
    Unreachable,
    Status(u16),
    Junk(String),
}

/// The source's URL with the user's values, each percent-encoded (a `/` in a username cannot
/// reach another path).
fn filled_url(source: &ClaimSource, user: Identity<'_>) -> Result<String, SourceError> {
    let encode = |value: &str| {
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut url = source
        .url
        .replace("{sub}", &encode(user.sub))
        .replace("{username}", &encode(user.username));
    if url.contains("{email}") {
        let email = user
            .email
            .ok_or_else(|| SourceError::NoEmail(source.name.clone()))?;
        url = url.replace("{email}", &encode(email));
    }
    Ok(url)
}

/// The claim at `path` of `record`: a member name, or a JSON pointer (`/groups/0`) into it;
/// `None` for a missing member or `null`.
#[must_use]
pub fn claim_at<'a>(record: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let value = if let Some(pointer) = path.strip_prefix('/') {
        let (first, rest) = pointer.split_once('/').unwrap_or((pointer, ""));
        let first = first.replace("~1", "/").replace("~0", "~");
        let member = record.get(&first)?;
        if rest.is_empty() {
            member
        } else {
            member.pointer(&format!("/{rest}"))?
        }
    } else {
        record.get(path)?
    };
    (!value.is_null()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> ClaimSource {
        ClaimSource {
            name: "s".into(),
            url: url.into(),
            method: SourceMethod::Get,
            auth: None,
            timeout: Duration::from_secs(1),
            cache_ttl: Duration::ZERO,
            backoff: Duration::ZERO,
            on_failure: OnFailure::Omit,
        }
    }

    #[test]
    fn the_users_values_are_percent_encoded_into_the_url() {
        let user = Identity {
            sub: "u/1",
            username: "jane doe",
            email: Some("jane+x@example.test"),
        };
        let url = filled_url(
            &source("https://p.test/users/{sub}?name={username}&mail={email}"),
            user,
        )
        .unwrap();
        assert_eq!(
            url,
            "https://p.test/users/u%2F1?name=jane%20doe&mail=jane%2Bx%40example%2Etest"
        );
        let without_email = Identity {
            email: None,
            ..user
        };
        assert_eq!(
            filled_url(&source("https://p.test/{email}"), without_email),
            Err(SourceError::NoEmail("s".into()))
        );
    }

    #[test]
    fn claims_are_read_by_member_or_pointer_and_null_is_none() {
        let record = json!({
            "companyName": "Bizcorp",
            "groups": ["admins", "staff"],
            "org": { "unit": "R&D" },
            "a/b": 1,
            "gone": null,
        });
        let record = record.as_object().unwrap();
        assert_eq!(claim_at(record, "companyName"), Some(&json!("Bizcorp")));
        assert_eq!(
            claim_at(record, "groups"),
            Some(&json!(["admins", "staff"]))
        );
        assert_eq!(claim_at(record, "/groups/1"), Some(&json!("staff")));
        assert_eq!(claim_at(record, "/org/unit"), Some(&json!("R&D")));
        assert_eq!(claim_at(record, "/a~1b"), Some(&json!(1)));
        assert_eq!(claim_at(record, "gone"), None);
        assert_eq!(claim_at(record, "missing"), None);
        assert_eq!(claim_at(record, "/org/missing"), None);
    }
}
