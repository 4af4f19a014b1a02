//! Revocation that reaches an API within a second (issue 19), over real processes: two
//! token-service instances sharing one fresh Postgres database, and the example protected API
//! subscribed to the issuer's revocation events, its verified-token cache warm. Each is a
//! process of its own (`scopegate-e2e-node`), so that one can be killed and started again.
//!
//! Needs Postgres: `SCOPEGATE_TEST_POSTGRES_URL` (`.ci/run` sets it). Without it the test fails
//! rather than pretending to pass.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::node::{Node, free_port};
use common::signing_in::{self, code_in, encode, http};
use reqwest::StatusCode;
use serde_json::{Value, json};

const API_ID: &str = "https://api.example.test";
const API_SECRET: &str = "api-secret-for-events";
const SERVICE_CLIENT: (&str, &str) = ("svc", "svc-secret");
const ADMIN_CLIENT: (&str, &str) = ("admin", "admin-secret");
const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const SIGNED_OUT: &str = "http://127.0.0.1:3000/signed-out";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// How soon the API must refuse a revoked token (the issue's promise).
const WITHIN: Duration = Duration::from_secs(1);
/// How long a refusal is waited for before the trial is counted as failed (never passed).
const GIVE_UP_AFTER: Duration = Duration::from_secs(15);

// ---- processes -------------------------------------------------------------------------------

/// A Postgres database of this test's own, dropped at the end.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Self {
        let admin_url = std::env::var("SCOPEGATE_TEST_POSTGRES_URL").expect(
            "SCOPEGATE_TEST_POSTGRES_URL is not set: these tests need Postgres (.ci/run sets it)",
        );
        let name = format!(
            "scopegate_e2e_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut admin = sqlx_connect(&admin_url).await;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = admin_url.rsplit_once('/').unwrap().0;
        Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }
}

async fn sqlx_connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap()
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Dropped from a thread of its own: Drop cannot await, and the test's runtime may be
        // ending.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = sqlx_connect(&admin_url).await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            });
        })
        .join();
    }
}

fn token_service_config(issuer: &str, port: u16, storage: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:{port}"
storage = "{storage}"

[signing]
algorithm = "ES256"

[limits]
client_rate_limit = "100000/s"

[[clients]]
id = "{svc}"
secret = "{svc_secret}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["{API_ID}"]

[[clients]]
id = "web"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["{SIGNED_OUT}"]
scopes = ["openid", "akamai:social_profile:read"]
token_format = "jwt"
audience = ["{API_ID}"]

[[clients]]
id = "{admin}"
secret = "{admin_secret}"
grants = ["client_credentials"]
scopes = ["scopegate:users:*"]

[[apis]]
id = "{API_ID}"
secret = "{API_SECRET}"
scopes = ["akamai:social_profile"]
"#,
        svc = SERVICE_CLIENT.0,
        svc_secret = SERVICE_CLIENT.1,
        admin = ADMIN_CLIENT.0,
        admin_secret = ADMIN_CLIENT.1,
    )
}

/// Instances A and B of the token service on one database (the issuer is A's URL, as a load
/// balancer's would be), and the API subscribed through A.
struct Deployment {
    a: Node,
    b: Node,
    api: Node,
    _database: Database,
    _dir: tempfile::TempDir,
}

impl Deployment {
    async fn start() -> Self {
        Self::start_behind(None).await
    }

    /// With `relay`, the issuer URL is the relay's (a load balancer in front of A), so that
    /// what the API hears can be tampered with.
    async fn start_behind(relay: Option<&Relay>) -> Self {
        let database = Database::create().await;
        let dir = tempfile::tempdir().unwrap();
        let (port_a, port_b, port_api) = (free_port(), free_port(), free_port());
        let issuer = relay.map_or_else(
            || format!("http://127.0.0.1:{port_a}"),
            |relay| relay.url.clone(),
        );
        let mut instances = Vec::new();
        for port in [port_a, port_b] {
            let path = dir.path().join(format!("token-service-{port}.toml"));
            std::fs::write(&path, token_service_config(&issuer, port, &database.url)).unwrap();
            instances.push((path, port));
        }
        let start = |(path, port): (PathBuf, u16)| {
            let log = log_path(dir.path(), &format!("token-service-{port}"));
            async move {
                Node::start(
                    &["token-service", path.to_str().unwrap()],
                    &[],
                    log,
                    format!("http://127.0.0.1:{port}"),
                )
                .await
            }
        };
        let mut instances = instances.into_iter();
        let (first, second) = (instances.next().unwrap(), instances.next().unwrap());
        let (a, b) = tokio::join!(start(first), start(second));
        if let Some(relay) = relay {
            relay.forward_to(&a.url);
        }
        let listen = format!("127.0.0.1:{port_api}");
        let api = Node::start(
            &["protected-api"],
            &[
                ("ISSUER", issuer.as_str()),
                ("AUDIENCE", API_ID),
                ("LISTEN", listen.as_str()),
                ("REVOCATION_EVENTS_CLIENT_ID", API_ID),
                ("REVOCATION_EVENTS_CLIENT_SECRET", API_SECRET),
            ],
            log_path(dir.path(), "protected-api"),
            format!("http://{listen}"),
        )
        .await;
        Self {
            a,
            b,
            api,
            _database: database,
            _dir: dir,
        }
    }

    /// What the API answers `token` at `/me`.
    async fn api_status(&self, token: &str) -> StatusCode {
        http()
            .get(format!("{}/me", self.api.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Waits until the API refuses every one of `tokens` (401); how long that took.
    async fn refused_within(&self, tokens: &[String]) -> Duration {
        let started = Instant::now();
        loop {
            let mut all_refused = true;
            for token in tokens {
                if self.api_status(token).await != StatusCode::UNAUTHORIZED {
                    all_refused = false;
                    break;
                }
            }
            if all_refused {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < GIVE_UP_AFTER,
                "the API still accepts a revoked token after {GIVE_UP_AFTER:?}: {}",
                self.api.log_text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

// ---- protocol helpers ------------------------------------------------------------------------

async fn post_form(url: &str, basic: Option<(&str, &str)>, body: String) -> Value {
    let mut request = http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{url}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn client_token(instance: &Node, client: (&str, &str)) -> String {
    post_form(
        &format!("{}/token", instance.url),
        Some(client),
        "grant_type=client_credentials".to_owned(),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn revoke(instance: &Node, client: (&str, &str), token: &str) {
    post_form(
        &format!("{}/revoke", instance.url),
        Some(client),
        format!("token={}", encode(token)),
    )
    .await;
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn authorize_query() -> String {
    let challenge = URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes()).as_ref(),
    );
    format!(
        "response_type=code&client_id=web&redirect_uri={}&scope=openid%20akamai%3Asocial_profile%3Aread&state=st&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        encode(REDIRECT)
    )
}

/// A browser session of `username` at `instance`: its cookie, and the code of the first
/// authorization.
async fn sign_in(instance: &Node, username: &str, password: &str) -> (String, String) {
    signing_in::sign_in(&instance.url, &authorize_query(), username, password).await
}

/// The tokens of one more authorization in the session `session`: (access token, id_token).
async fn tokens_in_session(
    instance: &Node,
    session: &str,
    code: Option<String>,
) -> (String, String) {
    let code = match code {
        Some(code) => code,
        None => {
            let answer = http()
                .get(format!("{}/authorize?{}", instance.url, authorize_query()))
                .header("cookie", session)
                .send()
                .await
                .unwrap();
            code_in(&answer)
        }
    };
    let tokens = post_form(
        &format!("{}/token", instance.url),
        None,
        format!(
            "grant_type=authorization_code&client_id=web&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            encode(&code),
            encode(REDIRECT)
        ),
    )
    .await;
    (
        tokens["access_token"].as_str().unwrap().to_owned(),
        tokens["id_token"].as_str().unwrap().to_owned(),
    )
}

async fn admin(
    instance: &Node,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> StatusCode {
    let token = client_token(instance, ADMIN_CLIENT).await;
    let mut request = http()
        .request(method, format!("{}{path}", instance.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status()
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

// ---- the test --------------------------------------------------------------------------------

/// The whole story on one deployment (its processes take seconds to start): 100 revocations at
/// B, each refused by the API within a second; a logout; a deleted user; the stream cut and
/// resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_at_any_instance_reach_the_api_within_a_second() {
    let mut deployment = Deployment::start().await;

    // 1. A hundred trials: a JWT from A, accepted by the API (now in its cache), revoked at B.
    let mut latencies = Vec::new();
    for trial in 0..100 {
        let token = client_token(&deployment.a, SERVICE_CLIENT).await;
        assert_eq!(
            deployment.api_status(&token).await,
            StatusCode::OK,
            "trial {trial}"
        );
        assert_eq!(
            deployment.api_status(&token).await,
            StatusCode::OK,
            "trial {trial}"
        );
        revoke(&deployment.b, SERVICE_CLIENT, &token).await;
        latencies.push(deployment.refused_within(&[token]).await);
    }
    latencies.sort();
    let (p50, p99, worst) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!(
        "revoked at B, refused by the API: p50 {p50:?}, p99 {p99:?}, max {worst:?} (100 trials)"
    );
    assert!(
        worst <= WITHIN,
        "a revoked JWT was accepted for {worst:?} (p50 {p50:?}, p99 {p99:?})"
    );
    // An unrelated token is still accepted.
    let bystander = client_token(&deployment.b, SERVICE_CLIENT).await;
    assert_eq!(deployment.api_status(&bystander).await, StatusCode::OK);

    // 2. Logout: every JWT of the session is refused; another session's are not.
    let admin_status = admin(
        &deployment.a,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({ "username": "kim", "password": "a long enough password" })),
    )
    .await;
    assert_eq!(admin_status, StatusCode::CREATED);
    let (session, code) = sign_in(&deployment.a, "kim", "a long enough password").await;
    let (first, id_token) = tokens_in_session(&deployment.a, &session, Some(code)).await;
    let (second, _) = tokens_in_session(&deployment.b, &session, None).await;
    assert_eq!(claims(&first)["sid"], claims(&second)["sid"]);
    let (other_session, other_code) = sign_in(&deployment.b, "kim", "a long enough password").await;
    let (other, _) = tokens_in_session(&deployment.b, &other_session, Some(other_code)).await;
    for token in [&first, &second, &other] {
        assert_eq!(deployment.api_status(token).await, StatusCode::OK);
    }
    let logout = http()
        .get(format!(
            "{}/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
            deployment.b.url,
            encode(SIGNED_OUT)
        ))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let took = deployment
        .refused_within(&[first.clone(), second.clone()])
        .await;
    println!("logout at B: both JWTs of the session refused within {took:?}");
    assert!(took <= WITHIN, "{took:?}");
    assert_eq!(deployment.api_status(&other).await, StatusCode::OK);

    // 3. The user deleted: all their JWTs are refused, a service's are not.
    let (_, code) = sign_in(&deployment.a, "kim", "a long enough password").await;
    let (third_session_token, _) = tokens_in_session(&deployment.a, "", Some(code)).await;
    assert_eq!(
        deployment.api_status(&third_session_token).await,
        StatusCode::OK
    );
    let deleted = admin(
        &deployment.b,
        reqwest::Method::DELETE,
        "/admin/users/kim",
        None,
    )
    .await;
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    let took = deployment
        .refused_within(&[other.clone(), third_session_token.clone()])
        .await;
    println!("user deleted at B: all their JWTs refused within {took:?}");
    assert!(took <= WITHIN, "{took:?}");
    assert_eq!(deployment.api_status(&bystander).await, StatusCode::OK);

    // 4. The stream cut: A (which the API subscribes through) is killed; B revokes meanwhile;
    //    A comes back and the API, resuming, misses none of it.
    let mut cut_off = Vec::new();
    for _ in 0..3 {
        let token = client_token(&deployment.b, SERVICE_CLIENT).await;
        assert_eq!(deployment.api_status(&token).await, StatusCode::OK);
        cut_off.push(token);
    }
    deployment.a.kill();
    for token in &cut_off {
        revoke(&deployment.b, SERVICE_CLIENT, token).await;
    }
    deployment.a.restart().await;
    let took = deployment.refused_within(&cut_off).await;
    println!("stream resumed after A restarted: the 3 revoked meanwhile refused within {took:?}");
    assert_eq!(deployment.api_status(&bystander).await, StatusCode::OK);
    // The API said so while it happened, and that it recovered.
    let log = deployment.api.log_text();
    for reported in [
        "revocation event stream failing",
        "revocation event stream recovered",
    ] {
        assert!(
            log.contains(reported),
            "the API never logged {reported:?}: {log}"
        );
    }
}

// ---- a tampering relay -----------------------------------------------------------------------

/// What the relay adds to the next poll answers it passes on.
#[derive(Default)]
struct Tampering {
    target: String,
    /// SETs to slip into the next answer that carries events.
    inject: Vec<(String, String)>,
    /// Every genuine SET passed on, to replay.
    seen: Vec<(String, String)>,
}

/// A relay in front of instance A, at the issuer URL: it passes every request on, and adds
/// SETs of the test's choosing to poll answers.
struct Relay {
    url: String,
    tampering: std::sync::Arc<std::sync::Mutex<Tampering>>,
}

impl Relay {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tampering = std::sync::Arc::new(std::sync::Mutex::new(Tampering::default()));
        let app = axum::Router::new()
            .fallback(relay)
            .with_state(std::sync::Arc::clone(&tampering));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, tampering }
    }

    fn forward_to(&self, target: &str) {
        self.tampering.lock().unwrap().target = target.to_owned();
    }

    fn inject(&self, id: &str, set: &str) {
        self.tampering
            .lock()
            .unwrap()
            .inject
            .push((id.to_owned(), set.to_owned()));
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.tampering.lock().unwrap().seen.clone()
    }
}

async fn relay(
    axum::extract::State(tampering): axum::extract::State<
        std::sync::Arc<std::sync::Mutex<Tampering>>,
    >,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let target = tampering.lock().unwrap().target.clone();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = http().request(parts.method.clone(), format!("{target}{path}"));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    let Ok(answer) = forwarded.body(body).send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.unwrap_or_default().to_vec();
    if parts.uri.path() == "/ssf/poll"
        && status == StatusCode::OK
        && let Ok(mut poll) = serde_json::from_slice::<Value>(&bytes)
        && let Some(sets) = poll["sets"].as_object_mut()
        && !sets.is_empty()
    {
        let mut tampering = tampering.lock().unwrap();
        for (id, set) in sets.iter() {
            tampering
                .seen
                .push((id.clone(), set.as_str().unwrap().to_owned()));
        }
        for (id, set) in tampering.inject.drain(..) {
            sets.insert(id, Value::String(set));
        }
        bytes = serde_json::to_vec(&poll).unwrap();
    }
    let mut response = (status, bytes).into_response();
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// A SET signed by a key that is not the issuer's, under the issuer's `kid`.
fn forged_set(issuer: &str, kid: &str, id: &str, jti: &str, now: u64) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let header = json!({ "typ": "secevent+jwt", "alg": "ES256", "kid": kid });
    let claims = json!({
        "iss": issuer, "aud": API_ID, "iat": now, "jti": id, "toe": now,
        "sub_id": { "format": "opaque", "id": jti },
        "events": { "https://scopegate.dev/secevent/event-type/token-revoked": {
            "event_timestamp": now, "identifier": "jti", "tokens_expire_by": now + 3600
        } },
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// What reaches the API through a relay that forges and replays: a SET signed by another key
/// (revoking a live token) is ignored, as is a genuine SET sent again; the genuine events in the
/// same answers take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_events_are_ignored() {
    let relay = Relay::start().await;
    let deployment = Deployment::start_behind(Some(&relay)).await;
    let live = client_token(&deployment.a, SERVICE_CLIENT).await;
    assert_eq!(claims(&live)["iss"], relay.url.as_str());
    assert_eq!(deployment.api_status(&live).await, StatusCode::OK);

    // A forged revocation of `live`, slipped into the answer that carries a genuine one.
    let jwks: Value = http()
        .get(format!("{}/.well-known/jwks.json", deployment.a.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    let now = claims(&live)["iat"].as_u64().unwrap();
    let live_jti = claims(&live)["jti"].as_str().unwrap().to_owned();
    relay.inject(
        "forged-1",
        &forged_set(&relay.url, kid, "forged-1", &live_jti, now),
    );
    let first = client_token(&deployment.a, SERVICE_CLIENT).await;
    assert_eq!(deployment.api_status(&first).await, StatusCode::OK);
    revoke(&deployment.b, SERVICE_CLIENT, &first).await;
    deployment.refused_within(&[first]).await;
    assert_eq!(
        deployment.api_status(&live).await,
        StatusCode::OK,
        "a forged event revoked a live token"
    );

    // The genuine SET replayed, beside the next genuine one: the next takes effect, the replay
    // changes nothing.
    let (replayed_id, replayed) = relay.seen().into_iter().next().unwrap();
    relay.inject(&replayed_id, &replayed);
    let second = client_token(&deployment.a, SERVICE_CLIENT).await;
    assert_eq!(deployment.api_status(&second).await, StatusCode::OK);
    revoke(&deployment.b, SERVICE_CLIENT, &second).await;
    deployment.refused_within(&[second]).await;
    assert_eq!(deployment.api_status(&live).await, StatusCode::OK);
    let log = deployment.api.log_text();
    assert!(
        log.contains("forged-1"),
        "the API did not report the refused SET: {log}"
    );
}
