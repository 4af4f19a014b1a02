//! A revocation event transmitter on 127.0.0.1, port 0, speaking the contract of
//! `docs/revocation-events.md`: OIDC discovery and a JWKS, SSF discovery, the API's stream
//! configuration, and the RFC 8936 poll endpoint held open until an event is published. SETs are
//! signed with a real key; every poll is recorded, so tests can see what was acknowledged. It
//! also answers RFC 7662 introspection, for opaque tokens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use scopegate_validator::{Algorithm, Clock as _, MockClock, Validator, ValidatorBuilder};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::{API_ID, API_SECRET, AUDIENCE, SigningKey, authorized, b64, jwks_of};

pub const TOKEN_REVOKED: &str = "https://scopegate.dev/secevent/event-type/token-revoked";
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const ACCOUNT_PURGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-purged";
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
pub const CLIENT_DELETED: &str = "https://scopegate.dev/secevent/event-type/client-deleted";

/// How the poll endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum PollMode {
    /// As the contract says.
    Normal,
    /// This status, no body.
    Status(u16),
    /// `200` with this body (not a poll answer).
    Body(String),
}

/// One poll the transmitter received, in order of arrival: the request body, and whether it
/// has been answered normally (by the contract, not by a failure mode).
#[derive(Debug, Clone)]
pub struct Poll {
    pub request: Value,
    pub answered: bool,
}

impl Poll {
    /// The ids in `ack`.
    pub fn ack(&self) -> Vec<String> {
        self.request["ack"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `err` of each id in `setErrs`.
    pub fn errors(&self) -> HashMap<String, String> {
        self.request["setErrs"]
            .as_object()
            .map(|errors| {
                errors
                    .iter()
                    .map(|(id, error)| (id.clone(), error["err"].as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every id the request acknowledges, in `ack` or in `setErrs`.
    pub fn acknowledged(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.request["ack"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(errors) = self.request["setErrs"].as_object() {
            ids.extend(errors.keys().cloned());
        }
        ids
    }
}

struct TxState {
    issuer: String,
    jwks: Mutex<Value>,
    /// The stream: (id, SET) in publication order.
    stream: Mutex<Vec<(String, String)>>,
    published: Notify,
    hold: Mutex<Duration>,
    mode: Mutex<PollMode>,
    polls: Mutex<Vec<Poll>>,
    held: AtomicUsize,
    ssf_configuration_hits: AtomicUsize,
    /// Introspection answers by token; absent: inactive.
    answers: Mutex<HashMap<String, Value>>,
    introspection_calls: AtomicUsize,
    /// Set to `true` to end held polls and stop serving.
    stopping: Mutex<watch::Sender<bool>>,
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

pub struct Transmitter {
    pub issuer: String,
    pub key: SigningKey,
    pub clock: MockClock,
    address: SocketAddr,
    state: Arc<TxState>,
    running: Mutex<Option<Running>>,
    next_event: AtomicU64,
    next_token: AtomicU64,
}

impl Drop for Transmitter {
    fn drop(&mut self) {
        if let Some(running) = self.running.lock().unwrap().take() {
            running.task.abort();
        }
    }
}

impl Transmitter {
    /// Starts serving; polls are held up to 25 s, as the token service does by default.
    pub async fn start(clock: &MockClock) -> Self {
        let key = SigningKey::es256("set-key-1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let issuer = format!("http://{address}");
        let state = Arc::new(TxState {
            issuer: issuer.clone(),
            jwks: Mutex::new(jwks_of(&[&key])),
            stream: Mutex::new(Vec::new()),
            published: Notify::new(),
            hold: Mutex::new(Duration::from_secs(25)),
            mode: Mutex::new(PollMode::Normal),
            polls: Mutex::new(Vec::new()),
            held: AtomicUsize::new(0),
            ssf_configuration_hits: AtomicUsize::new(0),
            answers: Mutex::new(HashMap::new()),
            introspection_calls: AtomicUsize::new(0),
            stopping: Mutex::new(watch::channel(false).0),
        });
        let transmitter = Self {
            issuer,
            key,
            clock: clock.clone(),
            address,
            state,
            running: Mutex::new(None),
            next_event: AtomicU64::new(1),
            next_token: AtomicU64::new(1),
        };
        transmitter.serve(listener);
        transmitter
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (stop, mut stopped) = watch::channel(false);
        *self.state.stopping.lock().unwrap() = stop.clone();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/.well-known/ssf-configuration", get(ssf_configuration))
            .route("/ssf/stream", get(stream_configuration))
            .route("/ssf/poll", post(poll))
            .route("/introspect", post(introspect))
            .with_state(Arc::clone(&self.state));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
                .unwrap();
        });
        *self.running.lock().unwrap() = Some(Running { task, stop });
    }

    /// Stops serving: held polls are answered, connections closed, and new ones refused.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            let _ = running.stop.send(true);
            tokio::time::timeout(Duration::from_secs(10), running.task)
                .await
                .expect("the transmitter did not stop")
                .unwrap();
        }
    }

    /// Serves again at the same address.
    pub async fn restart(&self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    /// A validator of this issuer subscribed to its events, all algorithms allowed, retrying
    /// fast (200 ms at most between attempts).
    pub fn validator_builder(&self) -> ValidatorBuilder {
        Validator::builder()
            .issuer(&self.issuer)
            .audience(AUDIENCE)
            .algorithms(Algorithm::ALL)
            .clock(self.clock.clone())
            .revocation_events(API_ID, API_SECRET)
            .revocation_events_max_backoff(Duration::from_millis(200))
    }

    pub fn validator(&self) -> Validator {
        self.validator_builder().build().unwrap()
    }

    pub fn now(&self) -> u64 {
        self.clock.now().as_secs()
    }

    /// An access token of this issuer: the usual claims (a fresh `jti`, issued now, expiring in
    /// 10 minutes) with `changes` applied; a `null` in `changes` removes that claim.
    pub fn token(&self, changes: Value) -> String {
        let now = self.now();
        let number = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mut claims = json!({
            "iss": self.issuer,
            "sub": "user-1",
            "aud": AUDIENCE,
            "client_id": "client-1",
            "iat": now,
            "exp": now + 600,
            "jti": format!("token-{number}"),
            "scope": "openid",
        });
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        self.key.sign(&claims)
    }

    /// The claims of a SET of this issuer for this API, issued now.
    pub fn set_claims(&self, jti: &str, sub_id: Value, events: Value) -> Value {
        let now = self.now();
        json!({
            "iss": self.issuer,
            "aud": API_ID,
            "iat": now,
            "jti": jti,
            "toe": now,
            "sub_id": sub_id,
            "events": events,
        })
    }

    /// A SET signed with the issuer's key (`typ` `secevent+jwt`).
    pub fn sign_set(&self, claims: &Value) -> String {
        self.sign_set_with(&self.key, "secevent+jwt", claims)
    }

    pub fn sign_set_with(&self, key: &SigningKey, typ: &str, claims: &Value) -> String {
        let header = json!({ "alg": key.alg, "kid": key.kid, "typ": typ });
        key.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// A new event id.
    pub fn next_id(&self) -> String {
        format!("ep1-{}", self.next_event.fetch_add(1, Ordering::Relaxed))
    }

    /// Appends a SET to the stream and wakes the held polls.
    pub fn publish(&self, id: &str, set: String) {
        self.state.stream.lock().unwrap().push((id.to_owned(), set));
        self.state.published.notify_waiters();
    }

    /// Signs and publishes an event; returns its id.
    pub fn emit(&self, sub_id: Value, events: Value) -> String {
        let id = self.next_id();
        let set = self.sign_set(&self.set_claims(&id, sub_id, events));
        self.publish(&id, set);
        id
    }

    /// token-revoked for a JWT's `jti`.
    pub fn revoke_jti(&self, jti: &str) -> String {
        let expire_by = self.now() + 600;
        self.emit(
            json!({"format": "opaque", "id": jti}),
            json!({TOKEN_REVOKED: {"identifier": "jti", "tokens_expire_by": expire_by}}),
        )
    }

    /// token-revoked for an opaque token, named by its digest.
    pub fn revoke_opaque(&self, token: &str) -> String {
        let expire_by = self.now() + 3600;
        self.emit(
            json!({"format": "opaque", "id": digest_of(token)}),
            json!({TOKEN_REVOKED: {"identifier": "sha256", "tokens_expire_by": expire_by}}),
        )
    }

    /// session-revoked, the event at `toe`.
    pub fn end_session(&self, sid: &str, toe: u64) -> String {
        let id = self.next_id();
        let mut claims = self.set_claims(
            &id,
            json!({"format": "complex",
                   "session": {"format": "opaque", "id": sid},
                   "user": {"format": "iss_sub", "iss": self.issuer, "sub": "user-1"}}),
            json!({SESSION_REVOKED: {"event_timestamp": toe, "tokens_expire_by": toe + 86_400}}),
        );
        claims["toe"] = json!(toe);
        self.publish(&id, self.sign_set(&claims));
        id
    }

    /// account-purged of a user of `issuer`, the event at `toe`, held until `expire_by`.
    pub fn delete_user_of(&self, issuer: &str, sub: &str, toe: u64, expire_by: u64) -> String {
        let id = self.next_id();
        let mut claims = self.set_claims(
            &id,
            json!({"format": "iss_sub", "iss": issuer, "sub": sub}),
            json!({ACCOUNT_PURGED: {"tokens_expire_by": expire_by}}),
        );
        claims["toe"] = json!(toe);
        self.publish(&id, self.sign_set(&claims));
        id
    }

    pub fn delete_user(&self, sub: &str, toe: u64) -> String {
        self.delete_user_of(&self.issuer.clone(), sub, toe, toe + 86_400)
    }

    /// client-deleted, the event at `toe`.
    pub fn delete_client(&self, client_id: &str, toe: u64) -> String {
        let id = self.next_id();
        let mut claims = self.set_claims(
            &id,
            json!({"format": "complex", "application": {"format": "opaque", "id": client_id}}),
            json!({CLIENT_DELETED: {"tokens_expire_by": toe + 86_400}}),
        );
        claims["toe"] = json!(toe);
        self.publish(&id, self.sign_set(&claims));
        id
    }

    /// Changes how polls are answered, held ones included.
    pub fn set_mode(&self, mode: PollMode) {
        *self.state.mode.lock().unwrap() = mode;
        self.state.published.notify_waiters();
    }

    /// How long a poll with nothing to deliver is held.
    pub fn set_hold(&self, hold: Duration) {
        *self.state.hold.lock().unwrap() = hold;
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.jwks.lock().unwrap() = jwks_of(keys);
    }

    pub fn polls(&self) -> Vec<Poll> {
        self.state.polls.lock().unwrap().clone()
    }

    pub fn poll_count(&self) -> usize {
        self.state.polls.lock().unwrap().len()
    }

    /// Polls being held open now.
    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    pub fn ssf_configuration_hits(&self) -> usize {
        self.state.ssf_configuration_hits.load(Ordering::SeqCst)
    }

    pub fn set_answer(&self, token: &str, answer: Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    /// An active introspection answer for this issuer, expiring in an hour.
    pub fn active_answer(&self) -> Value {
        let now = self.now();
        json!({"active": true, "iss": self.issuer, "aud": AUDIENCE, "sub": "user-1",
               "client_id": "client-1", "scope": "openid", "iat": now, "exp": now + 3600})
    }

    pub fn introspection_calls(&self) -> usize {
        self.state.introspection_calls.load(Ordering::SeqCst)
    }

    /// Waits (bounded, 20 s) until a poll acknowledges `id`: every SET up to it was judged.
    pub async fn wait_for_ack(&self, id: &str) {
        self.wait_for_ack_since(id, 0).await;
    }

    /// Waits (bounded, 20 s) until a poll answered after the first `since` acknowledges `id`.
    pub async fn wait_for_ack_since(&self, id: &str, since: usize) {
        self.wait_until(&format!("a poll acknowledging {id}"), || {
            self.polls()
                .iter()
                .skip(since)
                .any(|poll| poll.acknowledged().iter().any(|acked| acked == id))
        })
        .await;
    }

    /// The place of the first poll that acknowledges `id`.
    pub fn first_poll_acknowledging(&self, id: &str) -> usize {
        self.polls()
            .iter()
            .position(|poll| poll.acknowledged().iter().any(|acked| acked == id))
            .unwrap()
    }

    /// Asserts that every poll from the first acknowledging `earlier` to the first acknowledging
    /// `later` (excluded) acknowledged exactly `[earlier]`, and returns how many there were:
    /// across an outage, the last batch is acknowledged again until a new one replaces it.
    pub fn assert_acknowledged_until(&self, earlier: &str, later: &str) -> usize {
        let polls = self.polls();
        let from = self.first_poll_acknowledging(earlier);
        let to = self.first_poll_acknowledging(later);
        for (place, poll) in polls[from..to].iter().enumerate() {
            assert_eq!(
                poll.acknowledged(),
                [earlier],
                "poll {} of {}",
                place,
                to - from
            );
        }
        to - from
    }

    /// The SET published under `id` (the first, if several were).
    pub fn published(&self, id: &str) -> String {
        let stream = self.state.stream.lock().unwrap();
        stream
            .iter()
            .find(|(published, _)| published == id)
            .map(|(_, set)| set.clone())
            .unwrap()
    }

    /// Waits (bounded, 20 s) until `condition` holds.
    pub async fn wait_until(&self, what: &str, condition: impl FnMut() -> bool) {
        if !self
            .wait_until_polling(Duration::from_millis(10), condition)
            .await
        {
            panic!("timed out waiting for {what}");
        }
    }

    /// Whether `condition` came to hold within 20 s, looked at every `every`.
    pub async fn wait_until_polling(
        &self,
        every: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !condition() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(every).await;
        }
        true
    }
}

async fn discovery(State(state): State<Arc<TxState>>) -> Response {
    axum::Json(json!({
        "issuer": state.issuer,
        "jwks_uri": format!("{}/jwks", state.issuer),
        "introspection_endpoint": format!("{}/introspect", state.issuer),
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<TxState>>) -> Response {
    let body = state.jwks.lock().unwrap().to_string();
    ([(header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

async fn ssf_configuration(State(state): State<Arc<TxState>>) -> Response {
    state.ssf_configuration_hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "spec_version": "1_0",
        "issuer": state.issuer,
        "jwks_uri": format!("{}/jwks", state.issuer),
        "delivery_methods_supported": ["urn:ietf:rfc:8936"],
        "configuration_endpoint": format!("{}/ssf/stream", state.issuer),
        "default_subjects": "ALL",
    }))
    .into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"ssf\"")],
    )
        .into_response()
}

async fn stream_configuration(State(state): State<Arc<TxState>>, headers: HeaderMap) -> Response {
    if !authorized(&(API_ID.to_owned(), API_SECRET.to_owned()), &headers) {
        return unauthorized();
    }
    let types = [
        TOKEN_REVOKED,
        SESSION_REVOKED,
        ACCOUNT_PURGED,
        CREDENTIAL_CHANGE,
        CLIENT_DELETED,
    ];
    axum::Json(json!({
        "stream_id": API_ID,
        "iss": state.issuer,
        "aud": API_ID,
        "delivery": {"method": "urn:ietf:rfc:8936", "endpoint_url": format!("{}/ssf/poll", state.issuer)},
        "events_supported": types,
        "events_requested": types,
        "events_delivered": types,
    }))
    .into_response()
}

/// RFC 8936 §2.4 as the contract says: continue after the latest id acknowledged (in `ack` or
/// `setErrs`), from the start when none is known; hold while there is nothing to send. The
/// poll is recorded once answered.
async fn poll(State(state): State<Arc<TxState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&(API_ID.to_owned(), API_SECRET.to_owned()), &headers) {
        return unauthorized();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"err": "invalid_request", "description": "not JSON"})),
        )
            .into_response();
    };
    let index = {
        let mut polls = state.polls.lock().unwrap();
        polls.push(Poll {
            request: request.clone(),
            answered: false,
        });
        polls.len() - 1
    };
    let (response, answered) = answer(&state, &request).await;
    state.polls.lock().unwrap()[index].answered = answered;
    response
}

/// The answer to a poll, and whether it was a normal one.
async fn answer(state: &TxState, request: &Value) -> (Response, bool) {
    let acknowledged = Poll {
        request: request.clone(),
        answered: true,
    }
    .acknowledged();
    let max_events = request["maxEvents"].as_u64().unwrap_or(100).min(1000) as usize;
    let immediately = request["returnImmediately"].as_bool().unwrap_or(false);
    let hold = *state.hold.lock().unwrap();
    let deadline = tokio::time::Instant::now() + hold;
    let mut stopping = state.stopping.lock().unwrap().subscribe();
    loop {
        // Before looking: a publication (or a change of mode) from now on wakes this poll.
        let published = state.published.notified();
        let mode = state.mode.lock().unwrap().clone();
        match mode {
            PollMode::Normal => {}
            PollMode::Status(status) => {
                return (StatusCode::from_u16(status).unwrap().into_response(), false);
            }
            PollMode::Body(body) => return ((StatusCode::OK, body).into_response(), false),
        }
        let (sets, more_available) = {
            let stream = state.stream.lock().unwrap();
            let start = stream
                .iter()
                .rposition(|(id, _)| acknowledged.contains(id))
                .map_or(0, |position| position + 1);
            let waiting = &stream[start..];
            let sets: Vec<(String, String)> = waiting.iter().take(max_events).cloned().collect();
            (sets, waiting.len() > max_events)
        };
        let answer = || answer_in_stream_order(&sets, more_available);
        if !sets.is_empty() || immediately || tokio::time::Instant::now() >= deadline {
            return (answer(), true);
        }
        state.held.fetch_add(1, Ordering::SeqCst);
        let stopped = tokio::select! {
            () = published => false,
            () = tokio::time::sleep_until(deadline) => false,
            _ = stopping.wait_for(|stop| *stop) => true,
        };
        state.held.fetch_sub(1, Ordering::SeqCst);
        if stopped {
            return (answer(), true);
        }
    }
}

/// `{"sets": {…}, "moreAvailable": …}` with the SETs in stream order (a `serde_json::Map`
/// would sort them by id).
fn answer_in_stream_order(sets: &[(String, String)], more_available: bool) -> Response {
    let members: Vec<String> = sets
        .iter()
        .map(|(id, set)| format!("{}:{}", json!(id), json!(set)))
        .collect();
    let body = format!(
        r#"{{"sets":{{{}}},"moreAvailable":{more_available}}}"#,
        members.join(",")
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn introspect(
    State(state): State<Arc<TxState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    state.introspection_calls.fetch_add(1, Ordering::SeqCst);
    if !authorized(&(API_ID.to_owned(), API_SECRET.to_owned()), &headers) {
        return unauthorized();
    }
    let answer = form
        .get("token")
        .and_then(|token| state.answers.lock().unwrap().get(token).cloned());
    axum::Json(answer.unwrap_or_else(|| json!({"active": false}))).into_response()
}

/// The unpadded base64url SHA-256 of `token`, as the contract names an opaque token.
pub fn digest_of(token: &str) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}
