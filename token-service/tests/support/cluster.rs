//! Token-service processes (the real binary) sharing one store, reached over loopback: what
//! several instances behind a load balancer are.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::{API_CREDENTIALS, basic_header, form_encode};
use scopegate_token_service::grant::authorization_code::s256;

pub const REDIRECT: &str = "http://127.0.0.1:3000/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A free loopback port (bound, then released for the instance to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `token-service serve` process.
pub struct Instance {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Instance {
    /// Starts an instance of `config` listening on `port`, and waits until it is ready.
    pub async fn start(config: &Path, port: u16) -> Self {
        let log = config.with_file_name(format!("instance-{port}.log"));
        let mut instance = Self {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            config: config.to_owned(),
            log,
        };
        instance.spawn();
        instance.wait_ready(Duration::from_secs(60)).await;
        instance
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_token-service"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("SCOPEGATE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&mut self, within: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "instance on {} exited ({status}): {}",
                    self.port,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "instance on {} not ready: {}",
                self.port,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, nothing flushed by the process.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the process again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill_9();
        self.spawn();
        self.wait_ready(Duration::from_secs(60)).await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_9();
    }
}

// HTTP helpers speaking to instances as clients and browsers do.

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn post(url: &str, basic: Option<(&str, &str)>, body: String) -> (StatusCode, Value) {
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

pub async fn client_token(instance: &Instance, client: (&str, &str)) -> String {
    let (status, json) = post(
        &format!("{}/token", instance.url),
        Some(client),
        "grant_type=client_credentials".to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["access_token"].as_str().unwrap().to_owned()
}

pub async fn introspect(instance: &Instance, token: &str) -> Value {
    let (status, json) = post(
        &format!("{}/introspect", instance.url),
        Some(API_CREDENTIALS),
        format!("token={}", form_encode(token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    json
}

pub fn authorize_query() -> String {
    format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope=openid%20profile&state=st&nonce=n&code_challenge={}&code_challenge_method=S256",
        form_encode(REDIRECT),
        s256(VERIFIER)
    )
}

pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

pub fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
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

pub fn code_of(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .expect("a code in the redirect")
}

/// Opens the login page at `instance` and submits `password` for jane.
pub async fn submit_password(instance: &Instance, password: &str) -> reqwest::Response {
    let browser = http();
    let page = browser
        .get(format!("{}/authorize?{}", instance.url, authorize_query()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let login_cookie = cookie(&page, "scopegate_login").unwrap();
    let html = page.text().await.unwrap();
    browser
        .post(format!("{}/login", instance.url))
        .header("cookie", login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&request={}&username=jane&password={}",
            form_encode(&hidden(&html, "csrf")),
            form_encode(&hidden(&html, "request")),
            form_encode(password),
        ))
        .send()
        .await
        .unwrap()
}

/// Signs jane in at `instance`; returns the code and the session cookie.
pub async fn sign_in(instance: &Instance) -> (String, String) {
    let answer = submit_password(instance, "jane-password-1").await;
    let session = cookie(&answer, "scopegate_session").unwrap();
    (code_of(&answer), session)
}

/// A code from an existing session, without signing in again.
pub async fn code_with_session(instance: &Instance, session: &str) -> String {
    let answer = http()
        .get(format!("{}/authorize?{}", instance.url, authorize_query()))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    code_of(&answer)
}

pub async fn redeem(instance: &Instance, code: &str) -> (StatusCode, Value) {
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

pub async fn refresh(instance: &Instance, token: &str) -> (StatusCode, Value) {
    post(
        &format!("{}/token", instance.url),
        None,
        format!("grant_type=refresh_token&client_id=web-app&refresh_token={token}"),
    )
    .await
}
