//! Each metric of docs/metrics.md's token-service table moves when its event happens, read the
//! way Prometheus reads it: scraped over HTTP from the metrics listener.
//!
//! The recorder is the process's, so the tests of this binary take turns (`one_at_a_time`) and
//! compare scrapes taken before and after what they do.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode, header};
use scopegate_token_service::State;
use scopegate_token_service::config::Config;
use scopegate_token_service::grant::authorization_code::s256;
use scopegate_token_service::http::observe;
use scopegate_token_service::store::{SqlStore, Store};
use scopegate_token_service::telemetry;
use support::*;

/// Every series of a scrape: `name{label="value",...}` → value.
#[derive(Debug, Clone)]
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    /// The sum of the series named `name` carrying every one of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
                series_name == name
                    && labels
                        .iter()
                        .all(|(key, value)| series_labels.contains(&format!("{key}=\"{value}\"")))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Whether any series is named `name`.
    fn has(&self, name: &str) -> bool {
        self.0
            .keys()
            .any(|series| series.split_once('{').map_or(series.as_str(), |s| s.0) == name)
    }
}

/// The metrics listener of this test process (started once).
fn metrics_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let handle = telemetry::prometheus().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        // Its own runtime: each test has one of its own, which ends with the test.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                sender
                    .send(format!("http://{}/metrics", listener.local_addr().unwrap()))
                    .unwrap();
                observe::serve_metrics(handle, listener, std::future::pending())
                    .await
                    .unwrap();
            });
        });
        receiver.recv().unwrap()
    })
}

async fn scrape() -> Scrape {
    let response = reqwest::get(metrics_url()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let series = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect();
    Scrape(series)
}

/// The tests of this binary share the recorder: one runs at a time.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let turn = TURN.lock().await;
    telemetry::prometheus().unwrap();
    turn
}

const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn authorize_query() -> String {
    format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope=openid%20profile&state=st&nonce=n&code_challenge={}&code_challenge_method=S256",
        form_encode(REDIRECT),
        s256(VERIFIER)
    )
}

#[tokio::test]
async fn issuance_is_counted_by_grant_format_and_client() {
    let _turn = one_at_a_time().await;
    let service = TestService::start().await;
    let before = scrape().await;

    service.access_token(JWT_CLIENT).await;
    service.access_token(JWT_CLIENT).await;
    service.access_token(("svc-opaque", "opaque-secret")).await;
    let (code, _) = sign_in_jane(&service, &authorize_query()).await;
    let redeemed = service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                form_encode(REDIRECT)
            ),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.text);
    let refresh_token = redeemed.json["refresh_token"].as_str().unwrap();
    let refreshed = service
        .post(
            "/token",
            None,
            &format!("grant_type=refresh_token&client_id=web-app&refresh_token={refresh_token}"),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);

    let after = scrape().await;
    let issued = |grant, format, client| {
        let labels = [
            ("grant_type", grant),
            ("format", format),
            ("client_id", client),
        ];
        after.sum("scopegate_tokens_issued_total", &labels)
            - before.sum("scopegate_tokens_issued_total", &labels)
    };
    assert_eq!(issued("client_credentials", "jwt", "svc-jwt"), 2.0);
    assert_eq!(issued("client_credentials", "opaque", "svc-opaque"), 1.0);
    assert_eq!(issued("authorization_code", "jwt", "web-app"), 1.0);
    assert_eq!(issued("refresh_token", "jwt", "web-app"), 1.0);

    // The opaque token's row went through the group commit, and its INSERT was timed.
    let batches = |scrape: &Scrape| {
        scrape.sum(
            "scopegate_store_group_commit_batch_size_count",
            &[("writer", "tokens")],
        )
    };
    assert!(batches(&after) > batches(&before));
    let inserts = |scrape: &Scrape| {
        scrape.sum(
            "db_client_operation_duration_seconds_count",
            &[
                ("db_system_name", "sqlite"),
                ("db_operation_name", "INSERT"),
                ("db_collection_name", "access_tokens"),
            ],
        )
    };
    assert!(inserts(&after) >= inserts(&before) + 1.0);
    // The request was timed under its route, never its raw path.
    let token_route = |scrape: &Scrape| {
        scrape.sum(
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", "/token"),
                ("http_request_method", "POST"),
                ("http_response_status_code", "200"),
            ],
        )
    };
    assert_eq!(token_route(&after) - token_route(&before), 5.0);
    let signed_in =
        |scrape: &Scrape| scrape.sum("scopegate_sign_ins_total", &[("result", "success")]);
    assert_eq!(signed_in(&after) - signed_in(&before), 1.0);
}

#[tokio::test]
async fn refusals_at_token_introspect_and_revoke_are_counted_by_result() {
    let _turn = one_at_a_time().await;
    let service = TestService::start().await;
    let token = service.access_token(("svc-opaque", "opaque-secret")).await;
    let before = scrape().await;

    let wrong = service
        .post(
            "/token",
            Some(("svc-jwt", "not-the-secret")),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unsupported = service
        .post("/token", Some(JWT_CLIENT), "grant_type=password")
        .await;
    assert_eq!(unsupported.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        service.introspect((API, API_SECRET), &token).await.json["active"],
        true
    );
    assert_eq!(
        service
            .introspect((API, API_SECRET), "no-such-token")
            .await
            .json["active"],
        false
    );
    assert_eq!(
        service
            .introspect((API, "wrong secret"), &token)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let revoke = |client: (&'static str, &'static str), token: String| {
        let service = &service;
        async move {
            service
                .post(
                    "/revoke",
                    Some(client),
                    &format!("token={}", form_encode(&token)),
                )
                .await
        }
    };
    assert_eq!(
        revoke(JWT_CLIENT, token.clone()).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        revoke(("svc-opaque", "opaque-secret"), token.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        revoke(("svc-opaque", "opaque-secret"), token.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        service.introspect((API, API_SECRET), &token).await.json["active"],
        false
    );

    let after = scrape().await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert_eq!(
        delta(
            "scopegate_token_errors_total",
            &[("error", "invalid_client")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "scopegate_token_errors_total",
            &[("error", "unsupported_grant_type")]
        ),
        1.0
    );
    let introspections = "scopegate_introspections_total";
    assert_eq!(
        delta(introspections, &[("result", "active"), ("api", API)]),
        1.0
    );
    assert_eq!(
        delta(introspections, &[("result", "inactive"), ("api", API)]),
        2.0
    );
    assert_eq!(delta(introspections, &[("result", "invalid_client")]), 1.0);
    let revocations = "scopegate_revocations_total";
    assert_eq!(
        delta(revocations, &[("result", "unauthorized_client")]),
        1.0
    );
    assert_eq!(delta(revocations, &[("result", "revoked")]), 1.0);
    assert_eq!(delta(revocations, &[("result", "unknown")]), 1.0);
    let checks = "scopegate_credential_checks_total";
    assert!(delta(checks, &[("kind", "client_secret"), ("result", "wrong")]) >= 1.0);
    assert!(delta(checks, &[("kind", "api_secret"), ("result", "wrong")]) >= 1.0);
    assert!(delta(checks, &[("kind", "api_secret"), ("result", "accepted")]) >= 3.0);
}

#[tokio::test]
async fn failed_and_throttled_sign_ins_are_counted() {
    let _turn = one_at_a_time().await;
    let service = TestService::start().await;
    let before = scrape().await;
    let mut statuses = Vec::new();
    for _ in 0..=scopegate_token_service::throttle::PER_ACCOUNT_PER_NETWORK {
        let form = login_form(&service, &authorize_query()).await;
        statuses.push(
            submit(&service, &form, "jane", "wrong password")
                .await
                .status,
        );
    }
    let after = scrape().await;
    let failures = statuses
        .iter()
        .filter(|status| **status == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((failures, throttled), (5, 1), "{statuses:?}");
    let delta = |result| {
        after.sum("scopegate_sign_ins_total", &[("result", result)])
            - before.sum("scopegate_sign_ins_total", &[("result", result)])
    };
    assert_eq!(delta("failure"), 5.0);
    assert_eq!(delta("throttled"), 1.0);
    assert_eq!(delta("success"), 0.0);
    let throttled_checks = after.sum(
        "scopegate_credential_checks_total",
        &[("kind", "password"), ("result", "throttled")],
    ) - before.sum(
        "scopegate_credential_checks_total",
        &[("kind", "password"), ("result", "throttled")],
    );
    assert_eq!(throttled_checks, 1.0);
}

#[tokio::test]
async fn the_hashing_queue_shows_its_waits_and_its_refusals_then_empties() {
    let _turn = one_at_a_time().await;
    // One slot, and a wait far shorter than one Argon2id check (19 MiB of memory to fill).
    let service = TestService::start_with(&format!(
        "{}\n[limits]\nmax_concurrent_hashing = 1\nhashing_wait = \"1ms\"\n",
        config_text("http://127.0.0.1:8080", "ES256")
    ))
    .await;
    let before = scrape().await;
    // Unknown clients, each its own check (the decoy hash runs for each).
    let requests = (0..6)
        .map(|index| {
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(
                    header::AUTHORIZATION,
                    basic_header(&format!("nobody-{index}"), "guess"),
                )
                .body(Body::from("grant_type=client_credentials"))
                .unwrap()
        })
        .collect();
    let statuses = service.burst(requests).await;
    let after = scrape().await;
    let busy_answers = statuses
        .iter()
        .filter(|status| **status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(busy_answers >= 1, "{statuses:?}");
    let delta = |name: &str| {
        after.sum(name, &[("kind", "secret")]) - before.sum(name, &[("kind", "secret")])
    };
    assert_eq!(
        delta("scopegate_secret_hash_busy_total"),
        busy_answers as f64
    );
    assert_eq!(delta("scopegate_secret_hash_wait_seconds_count"), 6.0);
    assert_eq!(
        after.sum("scopegate_secret_hash_queue_depth", &[("kind", "secret")]),
        0.0
    );
    assert_eq!(
        after.sum(
            "scopegate_token_errors_total",
            &[("error", "temporarily_unavailable")]
        ) - before.sum(
            "scopegate_token_errors_total",
            &[("error", "temporarily_unavailable")]
        ),
        busy_answers as f64
    );
}

#[tokio::test]
async fn a_client_over_its_rate_is_counted_by_its_id() {
    let _turn = one_at_a_time().await;
    let service = TestService::start_with(&format!(
        "{}\n[limits]\nclient_rate_limit = \"2/min\"\n",
        config_text("http://127.0.0.1:8080", "ES256")
    ))
    .await;
    let before = scrape().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            service
                .post("/token", Some(JWT_CLIENT), "grant_type=client_credentials")
                .await
                .status,
        );
    }
    let after = scrape().await;
    let refused = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(refused >= 2, "{statuses:?}");
    let labels = [("party", "client"), ("id", "svc-jwt")];
    assert_eq!(
        after.sum("scopegate_rate_limited_total", &labels)
            - before.sum("scopegate_rate_limited_total", &labels),
        refused as f64
    );
}

#[tokio::test]
async fn rotation_is_counted_and_the_signing_key_age_follows_the_active_key() {
    let _turn = one_at_a_time().await;
    let service = TestService::start_with(&config_text("http://127.0.0.1:8080", "ES256").replace(
        "announce_period = \"10m\"",
        "announce_period = \"10m\"\nrotation_period = \"1h\"",
    ))
    .await;
    let state = &service.state;
    let active_since =
        |state: &State| state.keys().active(state.now()).unwrap().activates_at as f64;
    let before = scrape().await;
    assert_eq!(
        before.sum("scopegate_signing_key_active_since_timestamp_seconds", &[]),
        active_since(state)
    );

    service.advance(Duration::from_secs(55 * 60));
    assert!(state.rotate_if_due().await.unwrap().is_some());
    let announced = scrape().await;
    assert_eq!(
        announced.sum("scopegate_signing_key_rotations_total", &[])
            - before.sum("scopegate_signing_key_rotations_total", &[]),
        1.0
    );
    service.advance(Duration::from_secs(10 * 60));
    state.reload_keys().await.unwrap();
    let rotated = scrape().await;
    let now_active = active_since(state);
    assert!(now_active > before.sum("scopegate_signing_key_active_since_timestamp_seconds", &[]));
    assert_eq!(
        rotated.sum("scopegate_signing_key_active_since_timestamp_seconds", &[]),
        now_active
    );
}

#[tokio::test]
async fn a_failing_store_is_counted_by_operation_and_error() {
    let _turn = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    let store = Arc::new(SqlStore::sqlite(&url).await.unwrap());
    let config = Config::from_toml(&config_text("http://127.0.0.1:8080", "ES256")).unwrap();
    let clock = Arc::new(scopegate_validator::MockClock::at_system_time());
    let shared: Arc<dyn Store> = store.clone();
    let state = State::with_store(config, shared, clock).await.unwrap();
    let router = scopegate_token_service::http::app(state).await.unwrap();
    let before = scrape().await;

    store.close().await;
    let request = Request::post("/introspect")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic_header(API, API_SECRET))
        .body(Body::from("token=whatever"))
        .unwrap();
    let status = tower::ServiceExt::oneshot(router, request)
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let after = scrape().await;
    let failed = |scrape: &Scrape| {
        scrape.sum(
            "db_client_operation_duration_seconds_count",
            &[("db_system_name", "sqlite"), ("error_type", "pool_closed")],
        )
    };
    assert!(failed(&after) >= failed(&before) + 1.0);
}

#[tokio::test]
async fn event_polls_are_gauged_while_open_and_deliveries_counted() {
    let _turn = one_at_a_time().await;
    let service = TestService::start().await;
    let token = service.access_token(JWT_CLIENT).await;
    let revoked = service
        .post("/revoke", Some(JWT_CLIENT), &format!("token={token}"))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let before = scrape().await;
    let poll = Request::post("/ssf/poll")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, basic_header(API, API_SECRET))
        .body(Body::from(r#"{"returnImmediately":true,"maxEvents":10}"#))
        .unwrap();
    let answer = service.call(poll).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let delivered = answer.json["sets"].as_object().unwrap().len();
    assert!(delivered >= 1);
    let after = scrape().await;
    assert_eq!(
        after.sum("scopegate_events_delivered_total", &[])
            - before.sum("scopegate_events_delivered_total", &[]),
        delivered as f64
    );
    assert_eq!(after.sum("scopegate_event_polls_open", &[]), 0.0);
    assert!(after.has("scopegate_event_polls_open"));
}

#[tokio::test]
async fn labels_name_routes_and_registered_parties_never_what_a_caller_sent() {
    let _turn = one_at_a_time().await;
    let service = TestService::start_with(&format!(
        "{}{ADMIN_CLIENTS}",
        config_text("http://127.0.0.1:8080", "ES256")
    ))
    .await;
    let token = service.access_token(("svc-opaque", "opaque-secret")).await;
    let admin = service.access_token(ADMIN).await;
    let user_page = Request::get("/admin/users/jane")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(service.call(user_page).await.status, StatusCode::OK);
    assert_eq!(
        service
            .get("/no/such/path/secret-looking-segment")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let wrong = service
        .post(
            "/token",
            Some(("made-up-client-id", "made-up-secret")),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let odd_method = Request::builder()
        .method("BREW")
        .uri("/token")
        .body(Body::empty())
        .unwrap();
    service.call(odd_method).await;

    let scrape = scrape().await;
    assert!(
        scrape.sum(
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", "/admin/users/{username}"),
                ("http_request_method", "GET")
            ]
        ) >= 1.0
    );
    assert!(
        scrape.sum(
            "http_server_request_duration_seconds_count",
            &[("http_route", "unmatched")]
        ) >= 1.0
    );
    assert!(
        scrape.sum(
            "http_server_request_duration_seconds_count",
            &[("http_request_method", "_OTHER")]
        ) >= 1.0
    );
    for series in scrape.0.keys() {
        for secret in [
            token.as_str(),
            admin.as_str(),
            "jane",
            "secret-looking-segment",
            "made-up-client-id",
            "made-up-secret",
            "BREW",
        ] {
            assert!(!series.contains(secret), "{series} holds {secret}");
        }
    }
}

#[tokio::test]
async fn a_claim_source_asked_and_one_left_resting_are_counted_by_result() {
    let _turn = one_at_a_time().await;
    // Bound but not listening, for the whole test: three requests find it down, the fourth is
    // not sent.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap();
    let config = Config::from_toml(&format!(
        "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:0\"\nstorage = \"sqlite::memory:\"\n\
         [[claim_sources]]\nname = \"metered\"\nurl = \"http://{closed}/{{sub}}\"\nbackoff = \"10m\"\n"
    ))
    .unwrap();
    let sources = scopegate_token_service::claim_sources::ClaimSources::new(&config.claim_sources);
    let user = scopegate_token_service::claim_sources::Identity {
        sub: "u-1",
        username: "jane",
        email: None,
    };
    let requests = |scrape: &Scrape, result: &str| {
        scrape.sum(
            "scopegate_claim_source_requests_total",
            &[("source", "metered"), ("result", result)],
        )
    };
    let before = scrape().await;
    for _ in 0..4 {
        assert!(sources.record("metered", user).await.is_err());
    }
    let after = scrape().await;
    assert_eq!(
        requests(&after, "unreachable") - requests(&before, "unreachable"),
        3.0
    );
    assert_eq!(
        requests(&after, "skipped") - requests(&before, "skipped"),
        1.0
    );
    assert_eq!(
        after.sum(
            "scopegate_claim_source_duration_seconds_count",
            &[("source", "metered")]
        ) - before.sum(
            "scopegate_claim_source_duration_seconds_count",
            &[("source", "metered")]
        ),
        3.0,
        "a request not sent takes no time"
    );
}
