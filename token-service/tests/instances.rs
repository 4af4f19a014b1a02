//! Two token-service processes sharing one Postgres database (a fresh one per test), reached
//! over loopback: whatever one instance issues or decides, the other honours, and every
//! one-time rule holds across them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;

use reqwest::StatusCode;
use scopegate_token_service::grant::authorization_code::s256;
use serde_json::Value;
use support::cluster::{Instance, free_port};
use support::postgres::TestDatabase;
use support::*;

const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// Two instances, A and B, of one configuration on one fresh database. The issuer is A's URL
/// (what a load balancer's would be): both sign and check tokens as that issuer.
pub struct Pair {
    pub a: Instance,
    pub b: Instance,
    _dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl Pair {
    async fn start() -> Self {
        let database = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let (port_a, port_b) = (free_port(), free_port());
        let issuer = format!("http://127.0.0.1:{port_a}");
        let config = config_text(&issuer, "ES256").replace(
            "storage = \"sqlite::memory:\"",
            &format!("storage = \"{}\"", database.url),
        );
        let path: PathBuf = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        // Started together, as a deployment would: they race to migrate and to create the
        // first key, and must agree.
        let (a, b) = tokio::join!(
            Instance::start(&path, port_a),
            Instance::start(&path, port_b)
        );
        Self {
            a,
            b,
            _dir: dir,
            _database: database,
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn post(url: &str, basic: Option<(&str, &str)>, body: String) -> (StatusCode, Value) {
    let mut request = http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        request = request.header("authorization", basic_header(id, secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn client_token(instance: &Instance, client: (&str, &str)) -> String {
    let (status, json) = post(
        &format!("{}/token", instance.url),
        Some(client),
        "grant_type=client_credentials".to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["access_token"].as_str().unwrap().to_owned()
}

async fn introspect(instance: &Instance, token: &str) -> Value {
    let (status, json) = post(
        &format!("{}/introspect", instance.url),
        Some(API_CREDENTIALS),
        format!("token={}", form_encode(token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    json
}

fn authorize_query() -> String {
    format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope=openid%20profile&state=st&nonce=n&code_challenge={}&code_challenge_method=S256",
        form_encode(REDIRECT),
        s256(VERIFIER)
    )
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
}

fn code_of(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .expect("a code in the redirect")
}

/// Signs jane in at `instance`; returns the code and the session cookie.
async fn sign_in(instance: &Instance) -> (String, String) {
    let browser = http();
    let page = browser
        .get(format!("{}/authorize?{}", instance.url, authorize_query()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let login_cookie = cookie(&page, "scopegate_login").unwrap();
    let html = page.text().await.unwrap();
    let answer = browser
        .post(format!("{}/login", instance.url))
        .header("cookie", login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&request={}&username=jane&password=jane-password-1",
            form_encode(&hidden(&html, "csrf")),
            form_encode(&hidden(&html, "request")),
        ))
        .send()
        .await
        .unwrap();
    let session = cookie(&answer, "scopegate_session").unwrap();
    (code_of(&answer), session)
}

/// A code from an existing session, without signing in again.
async fn code_with_session(instance: &Instance, session: &str) -> String {
    let answer = http()
        .get(format!("{}/authorize?{}", instance.url, authorize_query()))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    code_of(&answer)
}

async fn redeem(instance: &Instance, code: &str) -> (StatusCode, Value) {
    post(
        &format!("{}/token", instance.url),
        None,
        format!(
            "grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
            form_encode(REDIRECT)
        ),
    )
    .await
}

async fn refresh(instance: &Instance, token: &str) -> (StatusCode, Value) {
    post(
        &format!("{}/token", instance.url),
        None,
        format!("grant_type=refresh_token&client_id=web-app&refresh_token={token}"),
    )
    .await
}

#[tokio::test]
async fn a_token_issued_by_one_instance_introspects_and_revokes_at_the_other() {
    let pair = Pair::start().await;
    // Both instances publish the same keys and agree on the signing key.
    let jwks_a: Value = http()
        .get(format!("{}/.well-known/jwks.json", pair.a.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_b: Value = http()
        .get(format!("{}/.well-known/jwks.json", pair.b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_a, jwks_b);
    assert_eq!(
        jwks_a["keys"].as_array().unwrap().len(),
        1,
        "one first key for both"
    );

    for client in [OPAQUE_CLIENT, JWT_CLIENT] {
        let token = client_token(&pair.a, client).await;
        assert_eq!(
            introspect(&pair.b, &token).await["active"],
            true,
            "{}",
            client.0
        );
        let (status, _) = post(
            &format!("{}/revoke", pair.b.url),
            Some(client),
            format!("token={}", form_encode(&token)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            introspect(&pair.a, &token).await,
            serde_json::json!({"active": false})
        );
        assert_eq!(
            introspect(&pair.b, &token).await,
            serde_json::json!({"active": false})
        );
    }
}

#[tokio::test]
async fn a_session_and_a_code_from_one_instance_are_honoured_by_the_other() {
    let pair = Pair::start().await;
    let (code, session) = sign_in(&pair.a).await;
    let (status, tokens) = redeem(&pair.b, &code).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a code issued by A is redeemed at B: {tokens}"
    );
    assert!(tokens["id_token"].is_string());
    // The session made at A gives a code at B without signing in again.
    let second = code_with_session(&pair.b, &session).await;
    let (status, _) = redeem(&pair.a, &second).await;
    assert_eq!(status, StatusCode::OK);
    // A refresh token from B works at A.
    let (status, refreshed) = refresh(&pair.a, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
}

#[tokio::test]
async fn of_twenty_concurrent_redemptions_over_both_instances_exactly_one_succeeds() {
    let pair = Pair::start().await;
    let (code, _) = sign_in(&pair.a).await;
    let urls = [pair.a.url.clone(), pair.b.url.clone()];
    let mut attempts = tokio::task::JoinSet::new();
    for index in 0..20 {
        let (url, code) = (urls[index % 2].clone(), code.clone());
        attempts.spawn(async move {
            post(
                &format!("{url}/token"),
                None,
                format!(
                    "grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                    form_encode(REDIRECT)
                ),
            )
            .await
        });
    }
    let answers = attempts.join_all().await;
    let successes: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, json)| json)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, json)| {
            *status == StatusCode::BAD_REQUEST && json["error"] == "invalid_grant"
        })
        .count();
    println!(
        "20 concurrent redemptions over 2 instances: {} succeeded, {refused} invalid_grant",
        successes.len()
    );
    assert_eq!((successes.len(), refused), (1, 19));
    // The replays revoked what the one success issued.
    let (status, json) = refresh(&pair.b, successes[0]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn of_twenty_concurrent_refreshes_over_both_instances_exactly_one_succeeds_and_reuse_revokes_the_family()
 {
    let pair = Pair::start().await;
    let (code, _) = sign_in(&pair.a).await;
    let (status, tokens) = redeem(&pair.a, &code).await;
    assert_eq!(status, StatusCode::OK);
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let urls = [pair.a.url.clone(), pair.b.url.clone()];
    let mut attempts = tokio::task::JoinSet::new();
    for index in 0..20 {
        let (url, token) = (urls[index % 2].clone(), refresh_token.clone());
        attempts.spawn(async move {
            post(
                &format!("{url}/token"),
                None,
                format!("grant_type=refresh_token&client_id=web-app&refresh_token={token}"),
            )
            .await
        });
    }
    let answers = attempts.join_all().await;
    let successes: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, json)| json)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, json)| {
            *status == StatusCode::BAD_REQUEST && json["error"] == "invalid_grant"
        })
        .count();
    println!(
        "20 concurrent refreshes over 2 instances: {} succeeded, {refused} invalid_grant",
        successes.len()
    );
    assert_eq!((successes.len(), refused), (1, 19));
    // The 19 reuses revoked the family: the one successor is dead too, at either instance.
    let successor = successes[0]["refresh_token"].as_str().unwrap();
    for instance in [&pair.a, &pair.b] {
        let (status, json) = refresh(instance, successor).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }
}
