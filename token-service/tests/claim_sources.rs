//! Claim sources (issue 21, item 2) against a fake source over loopback. The reader: what a
//! request carries, answers that are slow, down, junk or too large, the cache and the one
//! request many waiters share. Sign-ins: a scope's claims read from a source into the
//! id_token, `/userinfo`, the JWT and introspection; the failure policies; claims a source
//! must not set.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use scopegate_token_service::claim_sources::{ClaimSources, Identity, SourceError};
use scopegate_token_service::config::Config;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// What the fake source does with each request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Profile,
    Slow,
    Junk,
    Array,
    Huge,
    Error,
    Unknown,
    /// Waits until released (to hold requests in flight).
    Held,
}

/// A request as the fake source saw it: method, path and query, headers, body.
type Seen = (String, String, HeaderMap, String);

#[derive(Clone)]
struct Fake {
    behaviour: Arc<std::sync::Mutex<Behaviour>>,
    requests: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
}

impl Fake {
    async fn start() -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener)
    }

    /// The fake, answering on `listener`.
    fn start_on(listener: tokio::net::TcpListener) -> (Self, String) {
        let fake = Self {
            behaviour: Arc::new(std::sync::Mutex::new(Behaviour::Profile)),
            requests: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(std::sync::Mutex::new(Vec::new())),
            release: Arc::new(Notify::new()),
        };
        let state = fake.clone();
        let app = Router::new().fallback(any(
            move |method: axum::http::Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.answer(method.to_string(), uri, headers, body).await }
            },
        ));
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn answer(&self, method: String, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push((
            method,
            uri.to_string(),
            headers,
            String::from_utf8_lossy(&body).into_owned(),
        ));
        let behaviour = *self.behaviour.lock().unwrap();
        let json = |value: Value| {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                value.to_string(),
            )
                .into_response()
        };
        match behaviour {
            Behaviour::Profile => json(json!({
                "companyName": "Bizcorp",
                "groups": ["staff"],
                "sub": "someone-else",
                "iss": "https://evil.example",
                "email_verified": true,
            })),
            Behaviour::Slow => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                json(json!({ "companyName": "too late" }))
            }
            Behaviour::Junk => "<html>not json</html>".into_response(),
            Behaviour::Array => json(json!(["not", "an", "object"])),
            Behaviour::Huge => json(json!({ "blob": "x".repeat(70 * 1024) })),
            Behaviour::Error => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Behaviour::Unknown => StatusCode::NOT_FOUND.into_response(),
            Behaviour::Held => {
                self.release.notified().await;
                json(json!({ "companyName": "Bizcorp" }))
            }
        }
    }
}

/// The sources of a configuration whose `[[claim_sources]]` are `entries`.
fn sources(entries: &str) -> ClaimSources {
    let config = Config::from_toml(&format!(
        "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:0\"\nstorage = \"sqlite::memory:\"\n{entries}"
    ))
    .unwrap();
    ClaimSources::new(&config.claim_sources)
}

const JANE: Identity<'static> = Identity {
    sub: "u-1/jane",
    username: "jane",
    email: Some("jane@example.test"),
};

#[tokio::test]
async fn a_get_names_the_user_in_the_url_and_sends_the_credentials() {
    let (fake, url) = Fake::start().await;
    let sources = sources(&format!(
        r#"
[[claim_sources]]
name = "profiles"
url = "{url}/profiles/{{sub}}?name={{username}}"
bearer_token = "profile-token"
cache_ttl = "0s"

[[claim_sources]]
name = "directory"
url = "{url}/directory"
method = "POST"
username = "scopegate"
password = "directory password"
cache_ttl = "0s"

[[claim_sources]]
name = "keyed"
url = "{url}/keyed/{{email}}"
header_name = "X-Api-Key"
header_value = "key-1"
cache_ttl = "0s"
"#
    ));
    let record = sources.record("profiles", JANE).await.unwrap();
    assert_eq!(record["companyName"], "Bizcorp");
    sources.record("directory", JANE).await.unwrap();
    sources.record("keyed", JANE).await.unwrap();
    let seen = fake.seen.lock().unwrap().clone();
    let (method, uri, headers, _) = &seen[0];
    assert_eq!(method, "GET");
    assert_eq!(uri, "/profiles/u%2D1%2Fjane?name=jane");
    assert_eq!(headers["authorization"], "Bearer profile-token");
    let (method, uri, headers, body) = &seen[1];
    assert_eq!((method.as_str(), uri.as_str()), ("POST", "/directory"));
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("scopegate:directory password");
    assert_eq!(headers["authorization"], format!("Basic {basic}").as_str());
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        sent,
        json!({ "sub": "u-1/jane", "username": "jane", "email": "jane@example.test" })
    );
    let (_, uri, headers, _) = &seen[2];
    assert_eq!(uri, "/keyed/jane%40example%2Etest");
    assert_eq!(headers["x-api-key"], "key-1");
    assert!(headers.get("authorization").is_none());
}

#[tokio::test]
async fn credentials_may_come_from_files_without_their_line_break() {
    let (fake, url) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().replace('\\', "/")
    };
    let (token, password, key) = (
        file("token", "file-token\n"),
        file("password", "file password\r\n"),
        file("key", "file-key"),
    );
    let sources = sources(&format!(
        r#"
[[claim_sources]]
name = "bearer"
url = "{url}/bearer"
bearer_token_file = "{token}"
cache_ttl = "0s"

[[claim_sources]]
name = "basic"
url = "{url}/basic"
username = "scopegate"
password_file = "{password}"
cache_ttl = "0s"

[[claim_sources]]
name = "keyed"
url = "{url}/keyed"
header_name = "X-Api-Key"
header_value_file = "{key}"
cache_ttl = "0s"
"#
    ));
    for source in ["bearer", "basic", "keyed"] {
        sources.record(source, JANE).await.unwrap();
    }
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].2["authorization"], "Bearer file-token");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("scopegate:file password");
    assert_eq!(
        seen[1].2["authorization"],
        format!("Basic {basic}").as_str()
    );
    assert_eq!(seen[2].2["x-api-key"], "file-key");
}

#[tokio::test]
async fn failures_are_typed_and_a_404_is_an_empty_record() {
    let (fake, url) = Fake::start().await;
    let sources = sources(&format!(
        "[[claim_sources]]\nname = \"p\"\nurl = \"{url}/p/{{sub}}\"\ntimeout = \"300ms\"\ncache_ttl = \"0s\"\nbackoff = \"0s\"\n"
    ));
    for (behaviour, expected) in [
        (Behaviour::Slow, SourceError::Timeout("p".into())),
        (Behaviour::Error, SourceError::Status("p".into(), 500)),
    ] {
        fake.set(behaviour);
        assert_eq!(sources.record("p", JANE).await.unwrap_err(), expected);
    }
    for behaviour in [Behaviour::Junk, Behaviour::Array, Behaviour::Huge] {
        fake.set(behaviour);
        let error = sources.record("p", JANE).await.unwrap_err();
        assert!(matches!(error, SourceError::Junk(..)), "{error:?}");
    }
    fake.set(Behaviour::Unknown);
    assert!(sources.record("p", JANE).await.unwrap().is_empty());

    // Bound but not listening, for the whole test: nobody can answer there.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap().port();
    let down = self::sources(&format!(
        "[[claim_sources]]\nname = \"down\"\nurl = \"http://127.0.0.1:{closed}/x\"\n"
    ));
    for _ in 0..3 {
        assert_eq!(
            down.record("down", JANE).await.unwrap_err(),
            SourceError::Unreachable("down".into())
        );
    }
    assert_eq!(
        down.record("down", JANE).await.unwrap_err(),
        SourceError::Resting("down".into()),
        "a source down three times in a row rests for its backoff"
    );
    let no_email = self::sources(&format!(
        "[[claim_sources]]\nname = \"m\"\nurl = \"{url}/{{email}}\"\n"
    ));
    let without = Identity {
        email: None,
        ..JANE
    };
    assert_eq!(
        no_email.record("m", without).await.unwrap_err(),
        SourceError::NoEmail("m".into())
    );
}

#[tokio::test]
async fn answers_are_reused_for_their_lifetime_and_failures_are_not() {
    let (fake, url) = Fake::start().await;
    let sources = sources(&format!(
        "[[claim_sources]]\nname = \"p\"\nurl = \"{url}/p/{{sub}}\"\ncache_ttl = \"1h\"\n"
    ));
    fake.set(Behaviour::Error);
    assert!(sources.record("p", JANE).await.is_err());
    assert!(sources.record("p", JANE).await.is_err());
    assert_eq!(fake.count(), 2, "a failure is asked again");
    fake.set(Behaviour::Profile);
    sources.record("p", JANE).await.unwrap();
    sources.record("p", JANE).await.unwrap();
    assert_eq!(fake.count(), 3, "a success is reused");
    let other = Identity {
        sub: "u-2",
        username: "john",
        email: None,
    };
    sources.record("p", other).await.unwrap();
    assert_eq!(fake.count(), 4, "per user");
}

const JOHN: Identity<'static> = Identity {
    sub: "u-2",
    username: "john",
    email: None,
};

#[tokio::test]
async fn a_source_that_timed_out_three_times_in_a_row_rests_and_its_cached_answers_stay() {
    let (fake, url) = Fake::start().await;
    // A timeout long enough for an answer on a slow machine; `Slow` answers after 30 s.
    let sources = sources(&format!(
        "[[claim_sources]]\nname = \"p\"\nurl = \"{url}/p/{{sub}}\"\ntimeout = \"2s\"\ncache_ttl = \"1h\"\nbackoff = \"10m\"\n"
    ));
    let timed_out = || async {
        assert_eq!(
            sources.record("p", JOHN).await.unwrap_err(),
            SourceError::Timeout("p".into())
        );
    };
    fake.set(Behaviour::Profile);
    sources.record("p", JANE).await.unwrap();

    // Two timeouts then an answer: one slow moment is not an outage, and the count starts over.
    fake.set(Behaviour::Slow);
    timed_out().await;
    timed_out().await;
    fake.set(Behaviour::Error);
    assert!(matches!(
        sources.record("p", JOHN).await,
        Err(SourceError::Status(..))
    ));
    fake.set(Behaviour::Slow);
    timed_out().await;
    timed_out().await;
    assert_eq!(fake.count(), 6, "every one of these was asked");
    timed_out().await;

    // Three in a row: up again, but resting, it is asked for nobody within its backoff; an
    // answer it gave before stays cached.
    fake.set(Behaviour::Profile);
    assert_eq!(
        sources.record("p", JOHN).await.unwrap_err(),
        SourceError::Resting("p".into())
    );
    assert_eq!(
        sources.record("p", JANE).await.unwrap()["companyName"],
        "Bizcorp"
    );
    assert_eq!(fake.count(), 7, "a resting source is not asked");
}

#[tokio::test]
async fn after_its_rest_one_request_tries_the_source_while_the_others_fail_at_once() {
    // Bound but not listening: connections are refused until it listens.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let sources = sources(&format!(
        "[[claim_sources]]\nname = \"p\"\nurl = \"http://{address}/p/{{sub}}\"\ntimeout = \"30s\"\ncache_ttl = \"0s\"\nbackoff = \"200ms\"\n"
    ));
    // (That it then rests is shown above, with a backoff no machine outlasts.)
    for _ in 0..3 {
        assert_eq!(
            sources.record("p", JANE).await.unwrap_err(),
            SourceError::Unreachable("p".into())
        );
    }

    // Back up, answering slowly; once the backoff has passed (the sleep only ever outlasts
    // it) one request goes through and the others do not wait for it.
    let (fake, _) = Fake::start_on(socket.listen(64).unwrap());
    fake.set(Behaviour::Held);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let trial = {
        let sources = sources.clone();
        tokio::spawn(async move { sources.record("p", JANE).await })
    };
    // Bounded: were the trial refused, the test fails here instead of waiting forever.
    for _ in 0..3000 {
        if fake.count() > 0 || trial.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.count(),
        1,
        "the trial request did not reach the source"
    );
    assert_eq!(
        sources.record("p", JOHN).await.unwrap_err(),
        SourceError::Resting("p".into()),
        "a second request while the trial is out"
    );
    assert_eq!(fake.count(), 1);
    fake.release.notify_waiters();
    assert_eq!(trial.await.unwrap().unwrap()["companyName"], "Bizcorp");

    // Its answer closes the circuit: everyone is asked again.
    fake.set(Behaviour::Profile);
    sources.record("p", JOHN).await.unwrap();
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn twenty_concurrent_sign_ins_of_one_user_make_one_request() {
    let (fake, url) = Fake::start().await;
    fake.set(Behaviour::Held);
    let sources = sources(&format!(
        "[[claim_sources]]\nname = \"p\"\nurl = \"{url}/p/{{sub}}\"\ntimeout = \"30s\"\n"
    ));
    let mut waiting = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let sources = sources.clone();
        waiting.spawn(async move { sources.record("p", JANE).await });
    }
    // The first request arrives; give the others time to send theirs if they would (on a
    // slow machine this only makes the check weaker, never wrong), then release it. A
    // request sent after the release would wait forever and fail the test by its timeout.
    while fake.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.release.notify_waiters();
    let records = waiting.join_all().await;
    assert!(
        records
            .iter()
            .all(|record| record.as_ref().unwrap()["companyName"] == "Bizcorp")
    );
    assert_eq!(fake.count(), 1);
}

#[test]
fn a_bad_source_is_refused_at_start_up_naming_its_field() {
    let field = |entry: &str| {
        let text = format!(
            "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:0\"\nstorage = \"sqlite::memory:\"\n[[claim_sources]]\n{entry}"
        );
        match Config::from_toml(&text).unwrap_err() {
            scopegate_token_service::config::ConfigError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        }
    };
    for (entry, expected) in [
        (
            "name = \"attributes\"\nurl = \"http://x.test\"",
            "claim_sources[0].name",
        ),
        (
            "name = \"a\"\nurl = \"ftp://x.test\"",
            "claim_sources[0].url",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test/{id}\"",
            "claim_sources[0].url",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test/#f\"",
            "claim_sources[0].url",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\nbearer_token = \"t\"\nusername = \"u\"\npassword = \"p\"",
            "claim_sources[0].bearer_token",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\nusername = \"u\"",
            "claim_sources[0].bearer_token",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\nheader_name = \"Host\"\nheader_value = \"v\"",
            "claim_sources[0].header_name",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\ntimeout = \"31s\"",
            "claim_sources[0].timeout",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\ncache_ttl = \"2d\"",
            "claim_sources[0].cache_ttl",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\nbackoff = \"11m\"",
            "claim_sources[0].backoff",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\nbearer_token = \"t\"\nbearer_token_file = \"/etc/hostname\"",
            "claim_sources[0].bearer_token_file",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\nusername = \"u\"\npassword_file = \"/nonexistent/scopegate-password\"",
            "claim_sources[0].password_file",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\nheader_name = \"X-Key\"\nheader_value_file = \"/dev/null\"",
            "claim_sources[0].header_value_file",
        ),
        (
            "name = \"a\"\nurl = \"http://x.test\"\n[[claim_sources]]\nname = \"a\"\nurl = \"http://y.test\"",
            "claim_sources[1].name",
        ),
    ] {
        assert_eq!(field(entry), expected, "{entry}");
    }
}

#[test]
fn no_credential_is_shown_by_debug() {
    let config = Config::from_toml(
        "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:0\"\nstorage = \"sqlite::memory:\"\n[[claim_sources]]\nname = \"a\"\nurl = \"http://x.test\"\nusername = \"u\"\npassword = \"pass-1234\"\n[[claim_sources]]\nname = \"b\"\nurl = \"http://x.test\"\nbearer_token = \"tok-5678\"\n",
    )
    .unwrap();
    let shown = format!("{:?}", config.claim_sources);
    assert!(
        !shown.contains("pass-1234") && !shown.contains("tok-5678"),
        "{shown}"
    );
}

// ---- sign-ins -----------------------------------------------------------------------------

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use scopegate_token_service::grant::authorization_code::s256;
use support::{
    ADMIN, ADMIN_CLIENTS, TestService, form_encode, location_params, login_form, param,
    sign_in_jane, submit,
};

const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const API: &str = "https://api.example.test";

/// A service whose scope `crm:company:read` reads `company_name` and `groups` from the source
/// `profiles` at `url` (its `on_failure` is `policy`), and `crm:tier:read` reads `tier` from
/// `strict` (always `refuse`).
fn service_config(url: &str, policy: &str) -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:8080"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[signing]
algorithm = "ES256"

[[claim_sources]]
name = "profiles"
url = "{url}/profiles/{{username}}"
bearer_token = "profile-token"
timeout = "300ms"
cache_ttl = "1h"
backoff = "0s"
on_failure = "{policy}"

[[scopes]]
name = "crm:company:read"
claim_source = "profiles"
claims = {{ company_name = "companyName", first_group = "/groups/0", groups = "groups" }}
access_token = true

[[clients]]
id = "web"
public = true
grants = ["authorization_code"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "email", "crm:company:read", "akamai:social_profile:read"]

[[apis]]
id = "{API}"
secret = "api-secret"
scopes = ["akamai:social_profile"]

[[users]]
username = "jane"
password = "jane-password-1"
attributes = {{ given_name = "Jane", email = "jane@example.test", companyName = "stored, not the source's" }}
{ADMIN_CLIENTS}
"#
    )
}

const SCOPE: &str = "openid email crm:company:read akamai:social_profile:read";

fn authorize_query() -> String {
    format!(
        "response_type=code&client_id=web&redirect_uri={}&scope={}&state=st&nonce=n&code_challenge={}&code_challenge_method=S256",
        form_encode(REDIRECT),
        form_encode(SCOPE),
        s256(VERIFIER)
    )
}

async fn redeem(service: &TestService, code: &str) -> support::Answer {
    service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id=web&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                form_encode(REDIRECT)
            ),
        )
        .await
}

fn payload(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn userinfo(service: &TestService, token: &str) -> support::Answer {
    service
        .call(
            Request::get("/userinfo")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
}

#[tokio::test]
async fn a_sources_claims_reach_the_id_token_userinfo_the_jwt_and_introspection() {
    let (fake, url) = Fake::start().await;
    let service = TestService::start_with(&service_config(&url, "omit")).await;
    let (code, _) = sign_in_jane(&service, &authorize_query()).await;
    let tokens = redeem(&service, &code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);

    let id_token = payload(tokens.json["id_token"].as_str().unwrap());
    assert_eq!(
        id_token["company_name"], "Bizcorp",
        "the source's, not the stored attribute"
    );
    assert_eq!(id_token["groups"], json!(["staff"]));
    assert_eq!(id_token["first_group"], "staff");
    // The source also answered `sub`, `iss` and `email_verified`: none is taken.
    assert_ne!(id_token["sub"], "someone-else");
    assert_eq!(id_token["iss"], "http://127.0.0.1:8080");
    assert!(id_token.get("email_verified").is_none(), "{id_token}");
    assert_eq!(id_token["email"], "jane@example.test");

    let access = tokens.json["access_token"].as_str().unwrap();
    let carried = payload(access);
    assert_eq!(carried["company_name"], "Bizcorp");
    assert_eq!(carried["sub"], id_token["sub"]);

    let info = userinfo(&service, access).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text);
    assert_eq!(info.json["company_name"], "Bizcorp");
    assert_eq!(info.json["sub"], id_token["sub"]);
    let seen = service.introspect((API, "api-secret"), access).await;
    assert_eq!(seen.json["company_name"], "Bizcorp", "{}", seen.text);

    // One request served the sign-in, the redemption, userinfo and introspection (1 h cache).
    assert_eq!(fake.count(), 1);
    let (_, uri, headers, _) = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(uri, "/profiles/jane");
    assert_eq!(headers["authorization"], "Bearer profile-token");
}

#[tokio::test]
async fn a_failing_source_set_to_omit_leaves_its_claims_out_and_the_sign_in_goes_on() {
    for behaviour in [Behaviour::Slow, Behaviour::Error, Behaviour::Junk] {
        let (fake, url) = Fake::start().await;
        fake.set(behaviour);
        let service = TestService::start_with(&service_config(&url, "omit")).await;
        let (code, _) = sign_in_jane(&service, &authorize_query()).await;
        let tokens = redeem(&service, &code).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
        let id_token = payload(tokens.json["id_token"].as_str().unwrap());
        assert!(id_token.get("company_name").is_none(), "{id_token}");
        assert!(id_token.get("groups").is_none(), "{id_token}");
        assert_eq!(
            id_token["email"], "jane@example.test",
            "the other claims stay"
        );
        let info = userinfo(&service, tokens.json["access_token"].as_str().unwrap()).await;
        assert_eq!(info.status, StatusCode::OK);
        assert!(info.json.get("company_name").is_none());
    }
}

#[tokio::test]
async fn a_failing_source_set_to_refuse_turns_the_sign_in_away_without_a_code() {
    for behaviour in [Behaviour::Slow, Behaviour::Error, Behaviour::Junk] {
        let (fake, url) = Fake::start().await;
        fake.set(behaviour);
        let service = TestService::start_with(&service_config(&url, "refuse")).await;
        let form = login_form(&service, &authorize_query()).await;
        let answer = submit(&service, &form, "jane", "jane-password-1").await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
        let (location, params) = location_params(&answer);
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(param(&params, "error"), Some("temporarily_unavailable"));
        assert!(param(&params, "code").is_none());
        assert_eq!(param(&params, "state"), Some("st"));

        // Back up: the same sign-in (the session stands) gets its code, and the claims.
        fake.set(Behaviour::Profile);
        let (code, _) = sign_in_jane(&service, &authorize_query()).await;
        let tokens = redeem(&service, &code).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
        let id_token = payload(tokens.json["id_token"].as_str().unwrap());
        assert_eq!(id_token["company_name"], "Bizcorp");
    }
}

#[tokio::test]
async fn a_source_that_is_down_is_omitted_or_refuses_as_configured() {
    // Bound but not listening, for the whole test: nobody can answer there.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = format!("http://{}", socket.local_addr().unwrap());
    let omitting = TestService::start_with(&service_config(&closed, "omit")).await;
    let (code, _) = sign_in_jane(&omitting, &authorize_query()).await;
    let tokens = redeem(&omitting, &code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
    let id_token = payload(tokens.json["id_token"].as_str().unwrap());
    assert!(id_token.get("company_name").is_none(), "{id_token}");

    let refusing = TestService::start_with(&service_config(&closed, "refuse")).await;
    let form = login_form(&refusing, &authorize_query()).await;
    let answer = submit(&refusing, &form, "jane", "jane-password-1").await;
    let (_, params) = location_params(&answer);
    assert_eq!(param(&params, "error"), Some("temporarily_unavailable"));
    assert!(param(&params, "code").is_none());
}

#[tokio::test]
async fn a_sign_in_while_the_source_rests_is_turned_away_without_asking_it() {
    let (fake, url) = Fake::start().await;
    fake.set(Behaviour::Slow);
    let config = service_config(&url, "refuse")
        .replace("backoff = \"0s\"", "backoff = \"10m\"")
        .replace("timeout = \"300ms\"", "timeout = \"2s\"");
    let service = TestService::start_with(&config).await;
    let refused = |answer: &support::Answer| {
        let (_, params) = location_params(answer);
        param(&params, "error") == Some("temporarily_unavailable")
            && param(&params, "code").is_none()
    };
    // Three sign-ins in a row wait out the source's timeout and are turned away.
    for attempt in 1..=3 {
        let form = login_form(&service, &authorize_query()).await;
        let answer = submit(&service, &form, "jane", "jane-password-1").await;
        assert!(refused(&answer), "{}", answer.text);
        assert_eq!(fake.count(), attempt);
    }

    fake.set(Behaviour::Profile);
    let form = login_form(&service, &authorize_query()).await;
    let answer = submit(&service, &form, "jane", "jane-password-1").await;
    assert!(refused(&answer), "{}", answer.text);
    assert_eq!(fake.count(), 3, "the resting source was asked");
}

#[test]
fn no_scope_may_map_a_claim_the_service_sets() {
    for claim in ["sub", "iss", "email_verified", "aud", "nonce"] {
        let config = service_config("http://127.0.0.1:9", "omit").replace(
            "company_name = \"companyName\"",
            &format!("{claim} = \"{claim}\""),
        );
        let error = Config::from_toml(&config).unwrap_err().to_string();
        assert!(
            error.contains(&format!("scopes[0].claims.{claim}")),
            "{claim}: {error}"
        );
    }
    let unknown = service_config("http://127.0.0.1:9", "omit")
        .replace("claim_source = \"profiles\"", "claim_source = \"nowhere\"");
    let error = Config::from_toml(&unknown).unwrap_err().to_string();
    assert!(error.contains("scopes[0].claim_source"), "{error}");
}

#[tokio::test]
async fn a_scope_defined_at_run_time_reads_a_configured_source() {
    let (_fake, url) = Fake::start().await;
    let service = TestService::start_with(&service_config(&url, "omit")).await;
    let admin = service.access_token(ADMIN).await;
    let define = |body: Value| {
        Request::post("/admin/scopes")
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let refused = service
        .call(define(json!({
            "name": "crm:region:read",
            "claim_source": "nowhere",
            "claims": { "region": "region" },
        })))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(refused.text.contains("claim_source"), "{}", refused.text);
    let protected = service
        .call(define(json!({
            "name": "crm:region:read",
            "claim_source": "profiles",
            "claims": { "sub": "sub" },
        })))
        .await;
    assert_eq!(
        protected.status,
        StatusCode::BAD_REQUEST,
        "{}",
        protected.text
    );

    let created = service
        .call(define(json!({
            "name": "crm:region:read",
            "claim_source": "profiles",
            "claims": { "company": "companyName" },
        })))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let read = service
        .call(
            Request::get("/admin/scopes/crm:region:read")
                .header("authorization", format!("Bearer {admin}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(read.json["claim_source"], "profiles", "{}", read.text);
    assert_eq!(read.json["source"], "store", "where it is defined");
}
