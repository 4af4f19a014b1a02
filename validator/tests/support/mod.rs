//! Test support: an in-process fake IdP on port 0 that counts its requests, signing keys, and
//! a token minter that can write any header and claims (including broken ones).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod transmitter;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RsaEncoding,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scopegate_validator::{Algorithm, MockClock, Validator, ValidatorBuilder};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const AUDIENCE: &str = "https://api.example.test";
/// The API's own credentials at the fake IdP: characters that Basic auth must form-encode.
pub const API_ID: &str = "api:one+two";
pub const API_SECRET: &str = "s%cr:t +x";

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum KeyMaterial {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

/// A signing key with its `kid` and JWS algorithm.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: &'static str,
    material: Arc<KeyMaterial>,
}

/// RSA key generation is slow; most tests share one.
fn shared_rsa() -> Arc<KeyMaterial> {
    static KEY: OnceLock<Arc<KeyMaterial>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| {
        Arc::new(KeyMaterial::Rsa(
            RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
        ))
    }))
}

impl SigningKey {
    pub fn rs256(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: "RS256",
            material: shared_rsa(),
        }
    }

    pub fn ps256(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: "PS256",
            material: shared_rsa(),
        }
    }

    /// A distinct RSA key (slow: only where a second key is the point).
    pub fn fresh_rs256(kid: &str) -> Self {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        Self {
            kid: kid.to_owned(),
            alg: "RS256",
            material: Arc::new(KeyMaterial::Rsa(key)),
        }
    }

    pub fn es256(kid: &str) -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.to_owned(),
            alg: "ES256",
            material: Arc::new(KeyMaterial::Ec(key, "P-256")),
        }
    }

    pub fn es384(kid: &str) -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.to_owned(),
            alg: "ES384",
            material: Arc::new(KeyMaterial::Ec(key, "P-384")),
        }
    }

    pub fn es512(kid: &str) -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P521_SHA512_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.to_owned(),
            alg: "ES512",
            material: Arc::new(KeyMaterial::Ec(key, "P-521")),
        }
    }

    pub fn eddsa(kid: &str) -> Self {
        let key = Ed25519KeyPair::generate().unwrap();
        Self {
            kid: kid.to_owned(),
            alg: "EdDSA",
            material: Arc::new(KeyMaterial::Ed(key)),
        }
    }

    /// The public JWK, with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Value {
        let mut jwk = self.bare_jwk();
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg);
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public JWK with only the key members.
    pub fn bare_jwk(&self) -> Value {
        match &*self.material {
            KeyMaterial::Rsa(key) => {
                let public = key.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            KeyMaterial::Ec(key, curve) => {
                let point = key.public_key().as_ref();
                let size = (point.len() - 1) / 2;
                json!({
                    "kty": "EC",
                    "crv": curve,
                    "x": b64(&point[1..=size]),
                    "y": b64(&point[size + 1..]),
                })
            }
            KeyMaterial::Ed(key) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref()) })
            }
        }
    }

    /// Signs `signing_input` with this key's algorithm.
    pub fn sign_bytes(&self, signing_input: &[u8]) -> Vec<u8> {
        match &*self.material {
            KeyMaterial::Rsa(key) => {
                let encoding: &'static dyn RsaEncoding = if self.alg == "PS256" {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    encoding,
                    &SystemRandom::new(),
                    signing_input,
                    &mut signature,
                )
                .unwrap();
                signature
            }
            KeyMaterial::Ec(key, _) => key
                .sign(&SystemRandom::new(), signing_input)
                .unwrap()
                .as_ref()
                .to_vec(),
            KeyMaterial::Ed(key) => key.sign(signing_input).as_ref().to_vec(),
        }
    }

    /// A compact JWS of exactly these header and payload bytes.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let signature = self.sign_bytes(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(signature))
    }

    /// The standard header (`alg`, `kid`, `typ: at+jwt`) over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg, "kid": self.kid, "typ": "at+jwt" });
        self.sign_raw(&header.to_string(), &claims.to_string())
    }
}

/// How the fake IdP answers its JWKS endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Status(u16),
    Garbage,
    /// A body larger than any sensible cap.
    Huge,
    /// Answers after this long.
    Slow(Duration),
    /// Answers once the mode is changed (to `Normal`, say).
    Held,
}

struct IdpState {
    issuer: String,
    discovery_issuer: Mutex<Option<String>>,
    /// A key set published at another address, named by discovery once set (a moved JWKS).
    moved_jwks: Mutex<Option<Value>>,
    jwks: Mutex<Value>,
    etag: Mutex<Option<String>>,
    cache_control: Mutex<Option<String>>,
    mode: Mutex<Mode>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    not_modified: AtomicUsize,
    hit: Notify,
    /// Introspection: the answer per token (absent → `{"active": false}`).
    answers: Mutex<HashMap<String, Value>>,
    introspection_mode: Mutex<Mode>,
    /// Replaces every answer when set: an endpoint that lies.
    lie: Mutex<Option<Value>>,
    credentials: (String, String),
    introspection_calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Wakes held introspection calls when the mode changes.
    mode_changed: Notify,
}

/// An IdP serving discovery and a JWKS on 127.0.0.1, port 0.
pub struct FakeIdp {
    pub issuer: String,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIdp {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IdpState {
            issuer: issuer.clone(),
            discovery_issuer: Mutex::new(None),
            moved_jwks: Mutex::new(None),
            jwks: Mutex::new(jwks_of(keys)),
            etag: Mutex::new(None),
            cache_control: Mutex::new(Some("public, max-age=300".to_owned())),
            mode: Mutex::new(Mode::Normal),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            hit: Notify::new(),
            answers: Mutex::new(HashMap::new()),
            introspection_mode: Mutex::new(Mode::Normal),
            lie: Mutex::new(None),
            credentials: (API_ID.to_owned(), API_SECRET.to_owned()),
            introspection_calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            mode_changed: Notify::new(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/moved-jwks", get(moved_jwks))
            .route("/introspect", post(introspect))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            issuer,
            state,
            task,
        }
    }

    /// Publishes `keys` at a new address and names it in discovery; the old address keeps
    /// serving the old set.
    pub fn move_jwks(&self, keys: &[&SigningKey]) {
        *self.state.moved_jwks.lock().unwrap() = Some(jwks_of(keys));
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.jwks.lock().unwrap() = jwks_of(keys);
    }

    pub fn set_jwks(&self, document: Value) {
        *self.state.jwks.lock().unwrap() = document;
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
        self.state.mode_changed.notify_waiters();
    }

    pub fn set_etag(&self, etag: Option<&str>) {
        *self.state.etag.lock().unwrap() = etag.map(str::to_owned);
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.state.cache_control.lock().unwrap() = value.map(str::to_owned);
    }

    /// Makes discovery claim another issuer.
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self.state.discovery_issuer.lock().unwrap() = Some(issuer.to_owned());
    }

    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn not_modified(&self) -> usize {
        self.state.not_modified.load(Ordering::SeqCst)
    }

    /// The introspection answer for `token` (RFC 7662 JSON).
    pub fn set_answer(&self, token: &str, answer: Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    /// Revokes `token`: from now on the endpoint says `{"active": false}`.
    pub fn revoke(&self, token: &str) {
        self.state.answers.lock().unwrap().remove(token);
    }

    pub fn set_introspection_mode(&self, mode: Mode) {
        *self.state.introspection_mode.lock().unwrap() = mode;
        self.state.mode_changed.notify_waiters();
    }

    /// Introspection calls being answered now.
    pub fn introspections_in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Answers every introspection request with `answer`, whatever the token.
    pub fn lie(&self, answer: Option<Value>) {
        *self.state.lie.lock().unwrap() = answer;
    }

    pub fn introspection_calls(&self) -> usize {
        self.state.introspection_calls.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// An active introspection answer for this issuer and audience, expiring in `ttl` seconds
    /// after `clock`'s now.
    pub fn active_answer(&self, clock: &MockClock, ttl: u64) -> Value {
        use scopegate_validator::Clock as _;
        let now = clock.now().as_secs();
        json!({
            "active": true,
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-1",
            "client_id": "client-1",
            "scope": "akamai:social_profile:read",
            "exp": now + ttl,
            "iat": now,
        })
    }

    /// A validator that introspects with the API's credentials.
    pub fn introspecting_validator(&self, clock: &MockClock) -> ValidatorBuilder {
        self.validator_builder(clock)
            .introspection(API_ID, API_SECRET)
    }

    /// Waits (bounded, 10 s) until the JWKS endpoint has been asked `count` times: for
    /// background refreshes, which no request awaits.
    pub async fn wait_for_jwks_hits(&self, count: usize) {
        let wait = async {
            loop {
                let notified = self.state.hit.notified();
                if self.jwks_hits() >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the JWKS endpoint was not asked in time");
    }

    /// Claims for a valid token of this issuer, expiring 10 minutes after `clock`'s now.
    pub fn claims(&self, clock: &MockClock) -> Value {
        use scopegate_validator::Clock as _;
        let now = clock.now().as_secs();
        json!({
            "iss": self.issuer,
            "sub": "user-1",
            "aud": AUDIENCE,
            "client_id": "client-1",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": "token-1",
            "scope": "openid akamai:social_profile:read",
        })
    }

    /// A builder for a validator of this issuer on `clock`, all algorithms allowed.
    pub fn validator_builder(&self, clock: &MockClock) -> ValidatorBuilder {
        Validator::builder()
            .issuer(&self.issuer)
            .audience(AUDIENCE)
            .algorithms(Algorithm::ALL)
            .clock(clock.clone())
    }

    pub fn validator(&self, clock: &MockClock) -> Validator {
        self.validator_builder(clock).build().unwrap()
    }
}

pub fn jwks_of(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.jwk()).collect::<Vec<_>>() })
}

async fn discovery(State(state): State<Arc<IdpState>>) -> Response {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let issuer = state
        .discovery_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(state.issuer.clone());
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": if state.moved_jwks.lock().unwrap().is_some() {
            format!("{}/moved-jwks", state.issuer)
        } else {
            format!("{}/jwks", state.issuer)
        },
        "token_endpoint": format!("{}/token", state.issuer),
        "introspection_endpoint": format!("{}/introspect", state.issuer),
    }))
    .into_response()
}

async fn moved_jwks(State(state): State<Arc<IdpState>>) -> Response {
    match state.moved_jwks.lock().unwrap().clone() {
        Some(document) => axum::Json(document).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The endpoint's mode, once it is no longer `Held` (waiting for a change of mode until then).
async fn mode_once_released(state: &IdpState, mode: &Mutex<Mode>) -> Mode {
    loop {
        let changed = state.mode_changed.notified();
        let current = mode.lock().unwrap().clone();
        if current != Mode::Held {
            return current;
        }
        changed.await;
    }
}

async fn jwks(State(state): State<Arc<IdpState>>, request_headers: HeaderMap) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let response = jwks_response(&state, &request_headers).await;
    state.hit.notify_waiters();
    response
}

async fn jwks_response(state: &IdpState, request_headers: &HeaderMap) -> Response {
    let mode = mode_once_released(state, &state.mode).await;
    match mode {
        Mode::Normal => {}
        Mode::Status(status) => return StatusCode::from_u16(status).unwrap().into_response(),
        Mode::Garbage => return (StatusCode::OK, "<html>maintenance</html>").into_response(),
        Mode::Huge => {
            let keys = vec![json!({"kty": "RSA", "n": "x".repeat(4096), "e": "AQAB"}); 512];
            return axum::Json(json!({ "keys": keys })).into_response();
        }
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Held => unreachable!("released above"),
    }
    let etag = state.etag.lock().unwrap().clone();
    let mut headers = HeaderMap::new();
    if let Some(value) = state.cache_control.lock().unwrap().clone() {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    if let Some(etag) = &etag {
        headers.insert(header::ETAG, HeaderValue::from_str(etag).unwrap());
        let matches = request_headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|value| value.as_bytes() == etag.as_bytes());
        if matches {
            state.not_modified.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
    }
    let body = state.jwks.lock().unwrap().to_string();
    (headers, body).into_response()
}

async fn introspect(
    State(state): State<Arc<IdpState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    state.introspection_calls.fetch_add(1, Ordering::SeqCst);
    let now_in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state
        .max_in_flight
        .fetch_max(now_in_flight, Ordering::SeqCst);
    let response = introspection_response(&state, &headers, &form).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn introspection_response(
    state: &IdpState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response {
    if !authorized(&state.credentials, headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mode = mode_once_released(state, &state.introspection_mode).await;
    match mode {
        Mode::Normal => {}
        Mode::Status(status) => return StatusCode::from_u16(status).unwrap().into_response(),
        Mode::Garbage => return (StatusCode::OK, "<html>maintenance</html>").into_response(),
        Mode::Huge => {
            return axum::Json(json!({"active": true, "pad": "x".repeat(1 << 20)})).into_response();
        }
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Held => unreachable!("released above"),
    }
    if let Some(lie) = state.lie.lock().unwrap().clone() {
        return axum::Json(lie).into_response();
    }
    let Some(token) = form.get("token") else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    };
    let answer = state.answers.lock().unwrap().get(token).cloned();
    axum::Json(answer.unwrap_or_else(|| json!({"active": false}))).into_response()
}

/// Decodes Basic credentials the RFC 6749 §2.3.1 way: base64, split at the first `:`, then
/// form-decode each part.
fn authorized(expected: &(String, String), headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((id, secret)) = decoded.split_once(':') else {
        return false;
    };
    let form_decode = |part: &str| -> String {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    form_decode(id) == expected.0 && form_decode(secret) == expected.1
}
