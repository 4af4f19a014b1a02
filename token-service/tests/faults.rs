//! Faults a deployment meets: an instance killed with SIGKILL while it issues tokens, the
//! database restarting under load, a restart between `/authorize` and `/token`. Real
//! processes, real databases, loopback only, bounded in time.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use support::cluster::*;
use support::pg_server::PrivatePostgres;
use support::postgres::TestDatabase;
use support::*;

/// Writes the test configuration for `storage` (issuer = the first port's URL).
fn write_config(dir: &tempfile::TempDir, port: u16, storage: &str, extra: &str) -> PathBuf {
    let config = config_text(&format!("http://127.0.0.1:{port}"), "ES256").replace(
        "storage = \"sqlite::memory:\"",
        &format!("storage = \"{storage}\""),
    );
    // These tests issue as fast as they can: the per-client request rate is not their subject.
    let rate = "client_rate_limit = \"1000000/s\"\napi_rate_limit = \"1000000/s\"\n";
    let extra = if extra.contains("[limits]\n") {
        extra.replacen("[limits]\n", &format!("[limits]\n{rate}"), 1)
    } else {
        format!("[limits]\n{rate}{extra}")
    };
    // Extra tables go before `[signing]`, the first table of the text.
    let config = config.replacen("[signing]", &format!("{extra}\n[signing]"), 1);
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A POST that reports connection failures instead of panicking (the server may be gone).
async fn try_post(
    client: &reqwest::Client,
    url: &str,
    basic: (&str, &str),
    body: String,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let response = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic_header(basic.0, basic.1))
        .body(body)
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Issues tokens from `workers` concurrent clients (alternating the opaque and the JWT
/// client, spread over `urls`) until `stop`; returns every token answered with 200.
fn issue_until(
    urls: Vec<String>,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinSet<Vec<String>> {
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (urls, stop) = (urls.clone(), Arc::clone(&stop));
        set.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut issued = Vec::new();
            let mut round = worker;
            while !stop.load(Ordering::Relaxed) {
                let url = &urls[round % urls.len()];
                let credentials = if round % 2 == 0 {
                    OPAQUE_CLIENT
                } else {
                    JWT_CLIENT
                };
                round += 1;
                match try_post(
                    &client,
                    &format!("{url}/token"),
                    credentials,
                    "grant_type=client_credentials".into(),
                )
                .await
                {
                    Ok((StatusCode::OK, json)) => {
                        issued.push(json["access_token"].as_str().unwrap().to_owned())
                    }
                    Ok((status, json)) => panic!("issuance answered {status}: {json}"),
                    // The instance was killed: this request got no token.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            issued
        });
    }
    set
}

/// How many of `tokens` introspect as active at `instance` (16 at a time, one connection pool).
async fn all_active_at(instance: &Instance, tokens: &[String]) -> usize {
    let client = reqwest::Client::new();
    let mut active = 0;
    for chunk in tokens.chunks(16) {
        let mut checks = tokio::task::JoinSet::new();
        for token in chunk {
            let (client, url, token) = (client.clone(), instance.url.clone(), token.clone());
            checks.spawn(async move {
                let (status, json) = try_post(
                    &client,
                    &format!("{url}/introspect"),
                    API_CREDENTIALS,
                    format!("token={}", form_encode(&token)),
                )
                .await
                .unwrap();
                status == StatusCode::OK && json["active"] == true
            });
        }
        active += checks
            .join_all()
            .await
            .into_iter()
            .filter(|active| *active)
            .count();
    }
    active
}

#[tokio::test]
async fn kill_9_during_issuance_loses_no_issued_token_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("store.db");
    let config = write_config(&dir, port, &format!("sqlite://{}", file.display()), "");
    let mut instance = Instance::start(&config, port).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = issue_until(vec![instance.url.clone()], 8, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    instance.kill_9();
    stop.store(true, Ordering::Relaxed);
    let issued: Vec<String> = load.join_all().await.into_iter().flatten().collect();
    let opaque = issued.iter().filter(|token| !token.contains('.')).count();

    // The file the killed process left: intact, and holding every opaque token it answered.
    let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let (integrity,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM access_tokens")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    assert_eq!(integrity, "ok");
    assert!(
        rows >= i64::try_from(opaque).unwrap(),
        "{rows} rows for {opaque} opaque tokens"
    );

    instance.restart().await;
    let active = all_active_at(&instance, &issued).await;
    println!(
        "kill -9 on SQLite: {} tokens answered before the kill ({opaque} opaque), {active} active after restart, integrity {integrity}",
        issued.len()
    );
    assert!(issued.len() >= 50, "too little load: {}", issued.len());
    assert_eq!(active, issued.len(), "tokens lost");
}

#[tokio::test]
async fn kill_9_of_one_instance_during_issuance_loses_no_issued_token_on_postgres() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let config = write_config(&dir, port_a, &database.url, "");
    let (mut a, b) = tokio::join!(
        Instance::start(&config, port_a),
        Instance::start(&config, port_b)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = issue_until(vec![a.url.clone(), b.url.clone()], 8, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill_9();
    // B carries on alone for a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let issued: Vec<String> = load.join_all().await.into_iter().flatten().collect();

    let at_b = all_active_at(&b, &issued).await;
    a.restart().await;
    let at_a = all_active_at(&a, &issued).await;
    println!(
        "kill -9 on Postgres: {} tokens answered, {at_b} active at the survivor, {at_a} at the restarted instance",
        issued.len()
    );
    assert!(issued.len() >= 50, "too little load: {}", issued.len());
    assert_eq!((at_b, at_a), (issued.len(), issued.len()), "tokens lost");
}

#[tokio::test]
async fn a_postgres_restart_under_load_gives_503_never_500_or_a_wrong_answer_and_recovers() {
    let server = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        &dir,
        port,
        &server.url(),
        "[limits]\ndatabase_wait = \"1s\"\n",
    );
    let instance = Instance::start(&config, port).await;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    // Each worker: issue an opaque token, then introspect it at once. Every answer is logged
    // with its time.
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (url, stop) = (instance.url.clone(), Arc::clone(&stop));
        workers.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap();
            let mut log = Vec::new();
            let mut issued = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, json) = try_post(
                    &client,
                    &format!("{url}/token"),
                    OPAQUE_CLIENT,
                    "grant_type=client_credentials".into(),
                )
                .await
                .unwrap();
                log.push((started.elapsed(), "token", status, json.clone()));
                if status != StatusCode::OK {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let token = json["access_token"].as_str().unwrap().to_owned();
                let (status, json) = try_post(
                    &client,
                    &format!("{url}/introspect"),
                    API_CREDENTIALS,
                    format!("token={token}"),
                )
                .await
                .unwrap();
                log.push((started.elapsed(), "introspect", status, json));
                issued.push(token);
            }
            (log, issued)
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let down_at = started.elapsed();
    server.stop_server();
    // While it is down, readiness says so.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = http()
        .get(format!("{}/readyz", instance.url))
        .send()
        .await
        .unwrap()
        .status();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.start_server();
    let up_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let results = workers.join_all().await;
    let log: Vec<_> = results.iter().flat_map(|(log, _)| log.clone()).collect();
    let issued: Vec<String> = results.into_iter().flat_map(|(_, issued)| issued).collect();

    assert_eq!(
        ready,
        StatusCode::SERVICE_UNAVAILABLE,
        "readyz while the database is down"
    );
    for (at, endpoint, status, json) in &log {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::SERVICE_UNAVAILABLE,
            "{endpoint} at {at:?}: {status} {json}"
        );
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(json["error"], "temporarily_unavailable", "{json}");
        }
        if *endpoint == "introspect" && *status == StatusCode::OK {
            // A token just issued is never reported inactive: that would be a wrong answer.
            assert_eq!(json["active"], true, "{endpoint} at {at:?}: {json}");
        }
    }
    let unavailable = log
        .iter()
        .filter(|(_, _, status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    let recovered_at = log
        .iter()
        .filter(|(at, _, status, _)| *at > up_at && *status == StatusCode::OK)
        .map(|(at, _, _, _)| *at)
        .min()
        .expect("no success after the database came back");
    let failures_after_recovery = log
        .iter()
        .filter(|(at, _, status, _)| {
            *at > recovered_at + Duration::from_secs(1) && *status != StatusCode::OK
        })
        .count();
    let ready_after = http()
        .get(format!("{}/readyz", instance.url))
        .send()
        .await
        .unwrap()
        .status();
    println!(
        "Postgres restart: down at {down_at:?}, up at {up_at:?}; {} answers, {unavailable} × 503, none 500; first success {:?} after it returned",
        log.len(),
        recovered_at - up_at
    );
    assert!(unavailable > 0, "the outage was not seen");
    assert!(
        recovered_at - up_at < Duration::from_secs(4),
        "slow recovery: {:?}",
        recovered_at - up_at
    );
    assert_eq!(failures_after_recovery, 0);
    assert_eq!(ready_after, StatusCode::OK);
    // Every token answered with 200 was stored, before or after the restart.
    assert_eq!(all_active_at(&instance, &issued).await, issued.len());
}

#[tokio::test]
async fn a_restart_between_authorize_and_token_keeps_a_durable_code_and_never_crashes() {
    // On a file, the code outlives the restart and is redeemed.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        &dir,
        port,
        &format!("sqlite://{}/store.db", dir.path().display()),
        "",
    );
    let mut instance = Instance::start(&config, port).await;
    let (code, session) = sign_in(&instance).await;
    instance.restart().await;
    let (status, tokens) = redeem(&instance, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    // And the session too.
    let second = code_with_session(&instance, &session).await;
    assert_eq!(redeem(&instance, &second).await.0, StatusCode::OK);

    // In memory, the restart forgets the code: a clean invalid_grant, the service still up.
    let memory_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(&memory_dir, port, "sqlite::memory:", "");
    let mut instance = Instance::start(&config, port).await;
    let (code, _) = sign_in(&instance).await;
    instance.restart().await;
    let (status, json) = redeem(&instance, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "invalid_grant", "{json}");
    assert_eq!(
        http()
            .get(format!("{}/readyz", instance.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
