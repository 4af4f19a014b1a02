//! Delegation across three parts (issue 21, item 1): jane signs in through the web example,
//! which calls API A; A exchanges her token (RFC 8693) for one addressed to API B and calls B.
//! B sees jane as `sub` and A as the actor; a scope jane was not granted cannot be obtained,
//! and her own token, addressed to A, is refused by B. The token service, both APIs (as
//! processes of the example binary) and the web app talk over real HTTP on loopback.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::node::{Node, free_port};
use common::signing_in::{self, cookie, encode, hidden};
use example_web_login::{Config as WebConfig, app as web_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

const API_A: &str = "https://api-a.example.test";
const API_B: &str = "https://api-b.example.test";
const EXCHANGER: (&str, &str) = ("api-a", "api-a-exchange-secret");
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn config(issuer: &str, redirect: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[signing]
algorithm = "ES256"

[[clients]]
id = "web-app"
public = true
grants = ["authorization_code"]
redirect_uris = ["{redirect}"]
scopes = ["openid", "profile", "akamai:social_profile:read", "akamai:friends:read"]
audience = ["{API_A}"]

[[clients]]
id = "{exchanger}"
secret = "{exchanger_secret}"
grants = ["token_exchange"]
exchange_from = ["{API_A}"]
scopes = ["akamai:friends:*"]
audience = ["{API_B}"]

[[apis]]
id = "{API_A}"
secret = "api-a-secret"
scopes = ["akamai:social_profile"]

[[apis]]
id = "{API_B}"
secret = "api-b-secret"
scopes = ["akamai:friends"]

[[users]]
username = "jane"
password = "jane-password-1"
attributes = {{ given_name = "Jane" }}
"#,
        exchanger = EXCHANGER.0,
        exchanger_secret = EXCHANGER.1,
    )
}

/// The text of the element `<pre id="{id}">` of a page, unescaped.
fn pre(html: &str, id: &str) -> String {
    let marker = format!("<pre id=\"{id}\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id}: {html}"))
        + marker.len();
    let end = start + html[start..].find("</pre>").unwrap();
    html[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn location(answer: &reqwest::Response) -> String {
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{answer:?}");
    answer.headers()["location"].to_str().unwrap().to_owned()
}

struct Running {
    issuer: String,
    web: String,
    api_a: String,
    api_b: String,
    _nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}", web_listener.local_addr().unwrap());
    let redirect = format!("{web}/callback");
    let issuer = common::serve_token_service(|issuer| config(issuer, &redirect)).await;
    let (port_a, port_b) = (free_port(), free_port());
    let (api_a, api_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let listen_b = format!("127.0.0.1:{port_b}");
    let b = Node::start(
        &["protected-api"],
        &[
            ("ISSUER", issuer.as_str()),
            ("AUDIENCE", API_B),
            ("LISTEN", listen_b.as_str()),
        ],
        dir.path().join("api-b.log"),
        api_b.clone(),
    )
    .await;
    let listen_a = format!("127.0.0.1:{port_a}");
    let a = Node::start(
        &["protected-api"],
        &[
            ("ISSUER", issuer.as_str()),
            ("AUDIENCE", API_A),
            ("LISTEN", listen_a.as_str()),
            ("DOWNSTREAM_URL", api_b.as_str()),
            ("DOWNSTREAM_AUDIENCE", API_B),
            ("DOWNSTREAM_SCOPE", "akamai:friends:read"),
            ("EXCHANGE_CLIENT_ID", EXCHANGER.0),
            ("EXCHANGE_CLIENT_SECRET", EXCHANGER.1),
        ],
        dir.path().join("api-a.log"),
        api_a.clone(),
    )
    .await;
    let web_config = WebConfig::from_lookup(|name| match name {
        "ISSUER" => Some(issuer.clone()),
        "REDIRECT_URL" => Some(redirect.clone()),
        "API_URL" => Some(api_a.clone()),
        "API_PATH" => Some("/delegated".to_owned()),
        "SCOPES" => Some("profile akamai:social_profile:read akamai:friends:read".to_owned()),
        _ => None,
    })
    .unwrap();
    let web_router = web_app(web_config).await.unwrap();
    tokio::spawn(async move { axum::serve(web_listener, web_router).await.unwrap() });
    Running {
        issuer,
        web,
        api_a,
        api_b,
        _nodes: vec![a, b],
        _dir: dir,
    }
}

/// Jane signs in through the web app, as a browser would follow its redirects: the page the
/// app shows afterwards.
async fn sign_in_through_the_web_app(running: &Running) -> String {
    let http = signing_in::http();
    let to_service = location(
        &http
            .get(format!("{}/login", running.web))
            .send()
            .await
            .unwrap(),
    );
    assert!(to_service.starts_with(&running.issuer), "{to_service}");
    let form = http.get(&to_service).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let login_cookie = cookie(&form, "scopegate_login").unwrap();
    let html = form.text().await.unwrap();
    let signed_in = http
        .post(format!("{}/login", running.issuer))
        .header("cookie", login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&request={}&username=jane&password=jane-password-1",
            encode(&hidden(&html, "csrf")),
            encode(&hidden(&html, "request")),
        ))
        .send()
        .await
        .unwrap();
    let back = location(&signed_in);
    assert!(back.starts_with(&running.web), "{back}");
    let page = http.get(&back).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

/// Jane's own access token from the web app's client (as the web app holds it).
async fn janes_token(running: &Running) -> String {
    let redirect = format!("{}/callback", running.web);
    let query = format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope={}&state=st&code_challenge={}&code_challenge_method=S256",
        encode(&redirect),
        encode("openid akamai:social_profile:read akamai:friends:read"),
        signing_in::s256(VERIFIER)
    );
    let (_, code) = signing_in::sign_in(&running.issuer, &query, "jane", "jane-password-1").await;
    let answer: Value = signing_in::http()
        .post(format!("{}/token", running.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id=web-app&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            encode(&code),
            encode(&redirect)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_web_app_calls_api_a_which_calls_api_b_on_janes_behalf() {
    let running = start().await;
    let page = sign_in_through_the_web_app(&running).await;
    let api = pre(&page, "api");
    let body = api
        .strip_prefix("200 ")
        .unwrap_or_else(|| panic!("API A answered: {api}"));
    let a: Value = serde_json::from_str(body).unwrap();
    let jane = a["sub"].as_str().unwrap();
    assert_eq!(a["exchanged_scope"], "akamai:friends:read");
    assert_eq!(a["downstream"]["status"], 200, "{a}");
    let b = &a["downstream"]["body"];
    assert_eq!(b["sub"], jane, "B sees jane as the subject: {b}");
    assert_eq!(b["actors"], json!([EXCHANGER.0]), "and A as the actor");
    assert_eq!(b["client_id"], EXCHANGER.0);
    assert_eq!(b["scopes"], json!(["akamai:friends:read"]));
}

#[tokio::test]
async fn a_scope_jane_was_not_granted_cannot_be_obtained_and_her_own_token_is_not_bs() {
    let running = start().await;
    let token = janes_token(&running).await;
    let http = reqwest::Client::new();

    // Addressed to A, jane's token is refused by B: A cannot just forward it.
    let forwarded = http
        .get(format!("{}/me", running.api_b))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), StatusCode::UNAUTHORIZED);

    // A may get `akamai:friends:write` in general, but jane was only granted `read`.
    let through_a = http
        .get(format!(
            "{}/delegated?scope=akamai:friends:write",
            running.api_a
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(through_a.status(), StatusCode::FORBIDDEN);
    let refusal: Value = through_a.json().await.unwrap();
    assert_eq!(refusal["exchange_error"], "invalid_scope", "{refusal}");

    // The same at the token endpoint, with A's credentials.
    let direct = http
        .post(format!("{}/token", running.issuer))
        .basic_auth(EXCHANGER.0, Some(EXCHANGER.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type={}&subject_token={}&subject_token_type={}&scope=akamai:friends:write",
            encode("urn:ietf:params:oauth:grant-type:token-exchange"),
            encode(&token),
            encode("urn:ietf:params:oauth:token-type:access_token"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), StatusCode::BAD_REQUEST);
    let answer: Value = direct.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_scope", "{answer}");

    // With the scope jane has, A gets through.
    let allowed = http
        .get(format!("{}/delegated", running.api_a))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let a: Value = allowed.json().await.unwrap();
    assert_eq!(a["downstream"]["status"], 200, "{a}");
}
