//! Claim sources (issue 21, item 2), the reader alone, against a fake source over loopback:
//! what a request carries, answers that are slow, down, junk or too large, the cache and the
//! one request many waiters share. How sign-ins use the records is in `claim_sources_sign_in.rs`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
async fn failures_are_typed_and_a_404_is_an_empty_record() {
    let (fake, url) = Fake::start().await;
    let sources = sources(&format!(
        "[[claim_sources]]\nname = \"p\"\nurl = \"{url}/p/{{sub}}\"\ntimeout = \"300ms\"\ncache_ttl = \"0s\"\n"
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

    // Nobody listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = self::sources(&format!(
        "[[claim_sources]]\nname = \"down\"\nurl = \"http://127.0.0.1:{closed}/x\"\n"
    ));
    assert_eq!(
        down.record("down", JANE).await.unwrap_err(),
        SourceError::Unreachable("down".into())
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
