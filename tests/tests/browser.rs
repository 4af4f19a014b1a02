//! A real browser (Debian's Chromium, headless, driven over WebDriver by chromedriver) opens
//! the web-login example, is sent to the token service's login page, signs in, and ends on the
//! example's page showing the id_token's claims and the protected API's answer. Then a user
//! without the `company_name` the app requires is asked for it after signing in, and a new
//! user signs up from the login page; both end with the claim in their id_token.
//!
//! Needs `SCOPEGATE_TEST_CHROMIUM` (the browser binary; `.ci/run` installs Chromium and sets
//! it) and chromedriver (`SCOPEGATE_TEST_CHROMEDRIVER`, default `/usr/bin/chromedriver`).
//! It is `#[ignore]`d, so that `cargo test --workspace` on a machine without a browser reports
//! it as ignored rather than passed; `.ci/run` runs it with `--ignored`, and run so without the
//! variable it fails, saying why.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use example_protected_api::{Config as ApiConfig, app as api_app};
use example_web_login::{Config as WebConfig, app as web_app};
use scopegate_token_service::State;
use scopegate_token_service::config::Config;
use scopegate_token_service::store::{SqlStore, Store};
use scopegate_validator::SystemClock;
use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.example.test";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn token_service_config(issuer: &str, storage: &str, web: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "{storage}"

[[scopes]]
name = "ad:user_custom:read"
claims = {{ company_name = "companyName" }}

[[clients]]
id = "web-app"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{web}/callback"]
scopes = ["openid", "profile", "email", "ad:user_custom:read", "akamai:social_profile:read"]
audience = ["{AUDIENCE}"]
required_claims = ["company_name"]
self_signup = true

[[apis]]
id = "{AUDIENCE}"
secret = "api-secret"
scopes = ["akamai:social_profile"]

[[users]]
username = "jane"
password = "jane-password"
attributes = {{ given_name = "Jane", email = "jane@example.test", email_verified = true, companyName = "Bizcorp" }}
"#
    )
}

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(chromedriver: &str) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = http.get(format!("{}/status", driver.url)).send().await
            && response.status().is_success()
        {
            return driver;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A WebDriver session (W3C protocol over plain HTTP).
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn open(driver: &Driver, chromium: &str) -> Self {
        let http = reqwest::Client::new();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    ],
                },
            }},
        });
        let answer: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Self {
            http,
            session: format!("{}/session/{session}", driver.url),
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Waits (up to 15 s) for an element matching `selector`.
    async fn find(&self, selector: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .command(
                    reqwest::Method::POST,
                    "/element",
                    json!({ "using": "css selector", "value": selector }),
                )
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_owned();
            }
            if Instant::now() > deadline {
                let source = self
                    .command(reqwest::Method::GET, "/source", Value::Null)
                    .await;
                panic!("no `{selector}` on the page:\n{source}\n(last answer: {found})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, selector: &str) {
        let id = self.find(selector).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let id = self.find(selector).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn text(&self, selector: &str) -> String {
        let id = self.find(selector).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{id}/text"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SCOPEGATE_TEST_CHROMIUM: Debian's chromium and chromium-driver (.ci/run installs them)"]
async fn a_browser_signs_in_through_the_web_login_example() {
    let chromium = std::env::var("SCOPEGATE_TEST_CHROMIUM").expect(
        "SCOPEGATE_TEST_CHROMIUM is not set (.ci/run installs Debian's chromium and chromium-driver and sets it)",
    );
    let chromedriver = std::env::var("SCOPEGATE_TEST_CHROMEDRIVER")
        .unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());

    // Three servers on loopback: the token service, the protected API, the web app.
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}/tokens.db", dir.path().display());
    let service_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", service_listener.local_addr().unwrap());
    let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}", web_listener.local_addr().unwrap());
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", api_listener.local_addr().unwrap());

    let config = Config::from_toml(&token_service_config(&issuer, &storage, &web)).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqlStore::sqlite(&storage).await.unwrap());
    let mut attributes = serde_json::Map::new();
    attributes.insert("given_name".into(), "Kim".into());
    let kim = scopegate_token_service::users::new_account("kim", "kim-password-1", attributes, 1)
        .await
        .unwrap();
    store.insert_user(&kim).await.unwrap();
    let state = State::with_store(config, store, Arc::new(SystemClock))
        .await
        .unwrap();
    tokio::spawn(scopegate_token_service::http::serve(
        state,
        service_listener,
        std::future::pending(),
    ));

    let api_config = ApiConfig::from_lookup(|name| match name {
        "ISSUER" => Some(issuer.clone()),
        "AUDIENCE" => Some(AUDIENCE.to_owned()),
        _ => None,
    })
    .unwrap();
    let api_router = api_app(&api_config.validator().unwrap()).unwrap();
    tokio::spawn(async move { axum::serve(api_listener, api_router).await.unwrap() });

    let web_config = WebConfig::from_lookup(|name| match name {
        "ISSUER" => Some(issuer.clone()),
        "REDIRECT_URL" => Some(format!("{web}/callback")),
        "API_URL" => Some(api.clone()),
        _ => None,
    })
    .unwrap();
    let web_router = web_app(web_config).await.unwrap();
    tokio::spawn(async move { axum::serve(web_listener, web_router).await.unwrap() });

    let driver = start_driver(&chromedriver).await;
    // Each in a fresh browser session (no cookies of the one before).
    jane_signs_in(Browser::open(&driver, &chromium).await, &web).await;
    kim_supplies_the_required_claim(Browser::open(&driver, &chromium).await, &web).await;
    lee_signs_up(Browser::open(&driver, &chromium).await, &web).await;
    drop(driver);
}

/// The id_token claims the web app shows, and the protected API's answer.
async fn signed_in_page(browser: &Browser) -> (String, Value, String) {
    let welcome = browser.text("#welcome").await;
    let claims = browser.text("#claims").await;
    let api_answer = browser.text("#api").await;
    (welcome, serde_json::from_str(&claims).unwrap(), api_answer)
}

async fn jane_signs_in(browser: Browser, web: &str) {
    browser.go(&format!("{web}/")).await;
    browser.click("#sign-in").await;
    // Now on the token service's login page.
    browser.type_into("#username", "jane").await;
    browser.type_into("#password", "jane-password").await;
    browser.click("button[type=submit]").await;
    // Back on the web app, signed in.
    let (welcome, claims, api_answer) = signed_in_page(&browser).await;
    browser.close().await;
    assert!(welcome.contains("jane"), "{welcome}");
    assert_eq!(
        claims["company_name"], "Bizcorp",
        "the custom scope's claim"
    );
    assert_eq!(claims["given_name"], "Jane");
    assert_eq!(claims["email"], "jane@example.test");
    assert!(api_answer.starts_with("200 "), "{api_answer}");
    let me: Value = serde_json::from_str(&api_answer[4..]).unwrap();
    assert_eq!(me["sub"], "jane");
    assert_eq!(me["client_id"], "web-app");
}

/// kim (stored, no `companyName`) signs in, is asked for the company before the code is
/// issued, and ends signed in with it in the id_token.
async fn kim_supplies_the_required_claim(browser: Browser, web: &str) {
    browser.go(&format!("{web}/")).await;
    browser.click("#sign-in").await;
    browser.type_into("#username", "kim").await;
    browser.type_into("#password", "kim-password-1").await;
    browser.click("button[type=submit]").await;
    // The required-claims page: a blank value is refused, then the company is accepted
    // (typed after the blanks, which are trimmed).
    browser.type_into("#claim-company_name", "   ").await;
    browser.click("button[type=submit]").await;
    browser.find("#claim-company_name-error").await;
    browser.type_into("#claim-company_name", "Initech").await;
    browser.click("button[type=submit]").await;
    let (_, claims, api_answer) = signed_in_page(&browser).await;
    browser.close().await;
    assert_eq!(claims["company_name"], "Initech", "{claims}");
    assert_eq!(claims["given_name"], "Kim");
    assert!(api_answer.starts_with("200 "), "{api_answer}");
}

/// lee follows "Create an account" from the login page, signs up with the company the app
/// requires, and ends signed in.
async fn lee_signs_up(browser: Browser, web: &str) {
    browser.go(&format!("{web}/")).await;
    browser.click("#sign-in").await;
    browser.click("a[href^='/signup?']").await;
    browser.type_into("#username", "lee@example.test").await;
    browser
        .type_into("#password", "a long enough password")
        .await;
    browser
        .type_into("#confirm", "a long enough password")
        .await;
    browser.type_into("#claim-company_name", "Acme").await;
    browser.click("button[type=submit]").await;
    let (_, claims, api_answer) = signed_in_page(&browser).await;
    browser.close().await;
    assert_eq!(claims["company_name"], "Acme", "{claims}");
    assert_eq!(claims["email"], "lee@example.test");
    assert!(api_answer.starts_with("200 "), "{api_answer}");
}
