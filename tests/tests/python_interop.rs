//! Interop with a client implementation we did not write: the Python library
//! `requests-oauth2client` (JOSE by `jwskate`) gets DPoP-bound tokens (RFC 9449) from the token
//! service, which runs in-process on loopback; `tests/python/interop.py` drives the library and
//! prints what it saw as JSON, which these tests check against what the service knows
//! (thumbprints, introspection, the JWT's `cnf`). The example API's side and `private_key_jwt`
//! (RFC 7523) follow when the servers have them.
//!
//! Needs `SCOPEGATE_TEST_PYTHON`: a Python with `tests/python/requirements.txt` installed
//! (`.ci/run` makes a venv and runs these with `--ignored`). Without it they are reported as
//! ignored, and fail when run anyway.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.example.test";
const API_SECRET: &str = "api-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/interop.py");
const NEEDS_PYTHON: &str = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)";
/// The longest one run of the script may take (it gives each request 10 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

fn token_service_config(issuer: &str) -> String {
    format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[[clients]]
id = "dpop-jwt"
secret = "dpop-jwt-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["{AUDIENCE}"]
dpop_bound_access_tokens = true

[[clients]]
id = "dpop-opaque"
secret = "dpop-opaque-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "opaque"
audience = ["{AUDIENCE}"]

[[clients]]
id = "dpop-app"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{REDIRECT_URI}"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["{AUDIENCE}"]

[[apis]]
id = "{AUDIENCE}"
secret = "{API_SECRET}"
scopes = ["akamai:social_profile"]

[[users]]
username = "jane"
password = "jane-password"
"#
    )
}

/// Runs `interop.py args…` with `SCOPEGATE_TEST_PYTHON`; its JSON report. Fails the test when
/// the script fails (it names the check or the step that broke) or runs past its limit.
async fn interop(args: &[&str]) -> Value {
    let python = std::env::var_os("SCOPEGATE_TEST_PYTHON")
        .filter(|python| !python.is_empty())
        .unwrap_or_else(|| panic!("{NEEDS_PYTHON}"));
    let child = tokio::process::Command::new(&python)
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("{} does not start: {error}", python.display()));
    let output = tokio::time::timeout(SCRIPT_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("interop.py {args:?} ran past {SCRIPT_LIMIT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "interop.py {args:?}: {}\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
        output.status
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("interop.py printed no JSON ({error}):\n{stdout}"));
    // Exit 0 means every check held; make sure there were some.
    let checks = report["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "{report:#}");
    assert!(checks.iter().all(|check| check["ok"] == true), "{report:#}");
    report
}

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Our RFC 7638 thumbprint of the public JWK the library reports, which must be the one the
/// library computed itself (jwskate's).
fn thumbprint_agrees(token: &Value) -> String {
    let jkt = scopegate_validator::dpop::thumbprint(token["dpop_public_jwk"].as_object().unwrap())
        .unwrap();
    assert_eq!(token["dpop_jkt"], jkt, "jwskate's thumbprint and ours");
    jkt
}

/// The token service's introspection answer to the API.
async fn introspect(issuer: &str, token: &str) -> Value {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", AUDIENCE)
        .append_pair("client_secret", API_SECRET)
        .append_pair("token", token)
        .finish();
    reqwest::Client::new()
        .post(format!("{issuer}/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn assert_status(seen: &Value, status: u16, what: &str) {
    assert_eq!(seen["status"], status, "{what}: {seen:#}");
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn requests_oauth2client_gets_a_jwt_bound_to_its_key_and_cannot_replay_the_proof() {
    let issuer = common::serve_token_service(token_service_config).await;
    let report = interop(&[
        "dpop-client-credentials",
        "--issuer",
        &issuer,
        "--client-id",
        "dpop-jwt",
        "--client-secret",
        "dpop-jwt-secret",
    ])
    .await;
    let token = &report["token"];
    assert_eq!(token["token_type"], "DPoP", "{report:#}");
    let jkt = thumbprint_agrees(token);
    let access_token = token["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access_token)["cnf"], json!({ "jkt": jkt }));
    let introspected = introspect(&issuer, access_token).await;
    assert_eq!(introspected["active"], true, "{introspected:#}");
    assert_eq!(introspected["token_type"], "DPoP", "{introspected:#}");
    assert_eq!(introspected["cnf"]["jkt"], jkt, "{introspected:#}");
    // The library's token request, replayed byte for byte, is refused for its spent proof.
    assert_status(
        &report["token_proof_replayed"],
        400,
        "replayed token request",
    );
    assert_eq!(
        report["token_proof_replayed"]["body"]["error"],
        "invalid_dpop_proof"
    );
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn a_dpop_bound_opaque_token_is_bound_through_introspection() {
    let issuer = common::serve_token_service(token_service_config).await;
    let report = interop(&[
        "dpop-client-credentials",
        "--issuer",
        &issuer,
        "--client-id",
        "dpop-opaque",
        "--client-secret",
        "dpop-opaque-secret",
    ])
    .await;
    let token = &report["token"];
    assert_eq!(token["token_type"], "DPoP", "{report:#}");
    let jkt = thumbprint_agrees(token);
    let access_token = token["access_token"].as_str().unwrap();
    assert_ne!(access_token.split('.').count(), 3, "an opaque token");
    let introspected = introspect(&issuer, access_token).await;
    assert_eq!(introspected["active"], true, "{introspected:#}");
    assert_eq!(introspected["cnf"]["jkt"], jkt, "{introspected:#}");
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn a_public_clients_refresh_token_is_bound_to_the_key_of_its_code() {
    let issuer = common::serve_token_service(token_service_config).await;
    let report = interop(&[
        "dpop-refresh",
        "--issuer",
        &issuer,
        "--client-id",
        "dpop-app",
        "--redirect-uri",
        REDIRECT_URI,
        "--username",
        "jane",
        "--password",
        "jane-password",
        "--scope",
        "akamai:social_profile:read",
    ])
    .await;
    let token = &report["token"];
    let jkt = thumbprint_agrees(token);
    // RFC 9449 §10: the code was requested for this key.
    assert_eq!(report["dpop_jkt_requested"], jkt, "{report:#}");
    let refreshed = &report["refreshed"];
    assert_eq!(
        refreshed["dpop_jkt"], jkt,
        "the refresh is proven by the same key"
    );
    for token in [token, refreshed] {
        assert_eq!(token["token_type"], "DPoP", "{report:#}");
        let claims = jwt_claims(token["access_token"].as_str().unwrap());
        assert_eq!(claims["cnf"], json!({ "jkt": jkt }), "{claims:#}");
        assert_eq!(claims["sub"], "jane", "{claims:#}");
    }
    assert_ne!(
        token["refresh_token"], refreshed["refresh_token"],
        "rotated"
    );
    for name in ["no_proof", "another_key"] {
        let refused = &report["refresh_refused"][name];
        assert_eq!(refused["error"], "invalid_grant", "{name}: {refused:#}");
        assert_eq!(refused["status"], 400, "{name}: {refused:#}");
    }
}
