//! Interop with a client implementation we did not write: the Python library
//! `requests-oauth2client` (JOSE by `jwskate`), through its own API, against the token service
//! and the example API, both in-process on loopback (the API wired as its `main` wires it).
//! `tests/python/interop.py` drives the library, probes by hand what the servers must refuse,
//! and prints what it saw as JSON; these tests check that against what the servers know
//! (thumbprints, the JWT's `cnf`, introspection).
//!
//! - DPoP (RFC 9449): bound tokens for client credentials (JWT and opaque) and for a public
//!   client's code and refresh tokens, used at the API with the library's proofs; replays and
//!   every other variation refused, at `/token` and at the API.
//! - `private_key_jwt` (RFC 7523) with keys made here, registered inline or at a `jwks_uri`:
//!   at `/token` (also with DPoP), `/revoke`, and `/introspect` by an API; each assertion good
//!   once, and the wrong key, audience, lifetime or client refused.
//!
//! Needs `SCOPEGATE_TEST_PYTHON`: a Python with `tests/python/requirements.txt` installed
//! (`.ci/run` makes a venv and runs these with `--ignored`). Without it they are reported as
//! ignored, and fail when run anyway.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use example_protected_api::{Config as ApiConfig, app_with as api_app};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.example.test";
const API_SECRET: &str = "api-secret";
/// An API that introspects with `private_key_jwt`.
const REPORTS: &str = "https://reports.example.test";
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

struct Stack {
    issuer: String,
    /// The example API's `GET /me`.
    me: String,
}

/// The token service (configured by `config`) and the example API, wired as its `main` wires
/// it (DPoP allowed, proofs for its external origin), on loopback. Both listen before this
/// returns: the script's first request waits in the accept queue, not in a race.
async fn start(config: impl FnOnce(&str) -> String) -> Stack {
    let issuer = common::serve_token_service(config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let api_config = ApiConfig::from_lookup(|name| match name {
        "ISSUER" => Some(issuer.clone()),
        "AUDIENCE" => Some(AUDIENCE.to_owned()),
        "INTROSPECTION_CLIENT_ID" => Some(AUDIENCE.to_owned()),
        "INTROSPECTION_CLIENT_SECRET" => Some(API_SECRET.to_owned()),
        "LISTEN" => Some(address.to_string()),
        "EXTERNAL_ORIGIN" => Some(format!("http://{address}")),
        _ => None,
    })
    .unwrap();
    let dpop = api_config.dpop().unwrap();
    let router = api_app(&api_config.validator().unwrap(), None, Some(&dpop)).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Stack {
        issuer,
        me: format!("http://{address}/me"),
    }
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
    // Shown with --nocapture, or when the test fails.
    println!("interop.py {}: {report:#}", args[0]);
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

/// The API's answer and its refusals of every hand-made variation (RFC 9449 §7).
fn assert_api_accepts_only_fresh_proofs(report: &Value, subject: &str) {
    assert_status(&report["api"], 200, "the library's DPoP call");
    assert_eq!(report["api"]["body"]["sub"], subject, "{report:#}");
    assert_status(&report["api_again"], 200, "a second call, a fresh proof");
    let probes = report["api_probes"].as_object().unwrap();
    for name in [
        "replayed_proof",
        "no_proof",
        "as_bearer",
        "proof_by_another_key",
        "proof_for_another_method",
        "proof_for_another_url",
        "proof_without_ath",
        "proof_for_another_token",
    ] {
        let seen = &probes[name];
        assert_status(seen, 401, name);
        // The error is on the scheme the client used (RFC 9449 §7.1, RFC 6750 §3.1).
        let challenge = seen["www_authenticate"].as_str().unwrap_or_default();
        let error = if name == "as_bearer" {
            r#"Bearer realm="api", error="invalid_token""#
        } else {
            r#"DPoP realm="api", error="invalid_dpop_proof""#
        };
        assert!(challenge.contains(error), "{name}: {seen:#}");
    }
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn a_dpop_bound_jwt_from_requests_oauth2client_opens_the_api_only_with_fresh_proofs() {
    let Stack { issuer, me } = start(token_service_config).await;
    let report = interop(&[
        "dpop-client-credentials",
        "--issuer",
        &issuer,
        "--client-id",
        "dpop-jwt",
        "--client-secret",
        "dpop-jwt-secret",
        "--api",
        &me,
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
    assert_api_accepts_only_fresh_proofs(&report, "dpop-jwt");
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn a_dpop_bound_opaque_token_is_bound_at_the_api_through_introspection() {
    let Stack { issuer, me } = start(token_service_config).await;
    let report = interop(&[
        "dpop-client-credentials",
        "--issuer",
        &issuer,
        "--client-id",
        "dpop-opaque",
        "--client-secret",
        "dpop-opaque-secret",
        "--api",
        &me,
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
    assert_api_accepts_only_fresh_proofs(&report, "dpop-opaque");
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn a_public_clients_refresh_token_is_bound_to_the_key_of_its_code() {
    let Stack { issuer, me } = start(token_service_config).await;
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
        "--api",
        &me,
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
    for answer in ["api", "api_after_refresh"] {
        assert_status(&report[answer], 200, answer);
        assert_eq!(report[answer]["body"]["sub"], "jane", "{answer}");
    }
}

/// A P-256 key made here, as the Rust side of a client would hold it.
struct ClientKey {
    /// For the library: with `d`, `kid` and `alg`.
    private: Value,
    /// For the service: `kty`, `crv`, `kid`, `x`, `y`.
    public: Value,
}

impl ClientKey {
    fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let public = json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        let d = pair.private_key().as_be_bytes().unwrap();
        let mut private = public.clone();
        private["d"] = URL_SAFE_NO_PAD.encode(d.as_ref()).into();
        private["alg"] = "ES256".into();
        Self { private, public }
    }

    /// The private JWK in a file for the script: its path.
    fn write(&self, dir: &tempfile::TempDir) -> String {
        let path = dir
            .path()
            .join(format!("{}.jwk", self.public["kid"].as_str().unwrap()));
        std::fs::write(&path, self.private.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// `jwks = { keys = [ … ] }` with the public JWK, for the configuration file.
    fn inline_jwks(&self) -> String {
        let member = |name: &str| self.public[name].as_str().unwrap().to_owned();
        format!(
            r#"jwks = {{ keys = [{{ kty = "EC", crv = "P-256", kid = "{}", x = "{}", y = "{}" }}] }}"#,
            member("kid"),
            member("x"),
            member("y"),
        )
    }
}

/// A JWK Set served on loopback as a client publishes its keys; its URL, and a count of the
/// times it was fetched.
async fn serve_jwks(jwks: Value) -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&fetches);
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, fetches)
}

/// The service's configuration with `jwt-signer` (its keys registered as `signer_keys`:
/// `jwks = …` or `jwks_uri = …`), `other-signer`, and the reports API that introspects with
/// `private_key_jwt`.
fn signers_config(
    issuer: &str,
    signer_keys: &str,
    other: &ClientKey,
    reports: &ClientKey,
) -> String {
    format!(
        r#"{}
[[clients]]
id = "jwt-signer"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read", "reports:summary"]
token_format = "jwt"
{signer_keys}

[[clients]]
id = "other-signer"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
{}

[[apis]]
id = "{REPORTS}"
scopes = ["reports:summary"]
{}
"#,
        token_service_config(issuer),
        other.inline_jwks(),
        reports.inline_jwks(),
    )
}

/// The script's `private-key-jwt` flow as `jwt-signer`, and what the report must show.
async fn assert_private_key_jwt_everywhere(issuer: &str, signer: &ClientKey, reports: &ClientKey) {
    let dir = tempfile::tempdir().unwrap();
    let report = interop(&[
        "private-key-jwt",
        "--issuer",
        issuer,
        "--client-id",
        "jwt-signer",
        "--private-jwk",
        &signer.write(&dir),
        "--scope",
        "akamai:social_profile:read reports:summary",
        "--other-client-id",
        "other-signer",
        "--introspecting-api",
        REPORTS,
        "--api-private-jwk",
        &reports.write(&dir),
    ])
    .await;

    // What the library sent (RFC 7523 §3), and what the service made of it.
    let token_endpoint = format!("{issuer}/token");
    let assertion = &report["assertion"];
    assert_eq!(
        assertion["assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(
        assertion["header"]["kid"], signer.public["kid"],
        "{assertion:#}"
    );
    assert_eq!(assertion["header"]["alg"], "ES256", "{assertion:#}");
    assert_eq!(assertion["claims"]["iss"], "jwt-signer", "{assertion:#}");
    assert_eq!(assertion["claims"]["sub"], "jwt-signer", "{assertion:#}");
    assert_eq!(assertion["claims"]["aud"], token_endpoint, "{assertion:#}");
    let token = report["token"]["token"]["access_token"].as_str().unwrap();
    let claims = jwt_claims(token);
    assert_eq!(claims["client_id"], "jwt-signer", "{claims:#}");
    assert_eq!(claims["sub"], "jwt-signer", "{claims:#}");
    assert_eq!(report["token_aud_issuer"]["ok"], true, "{report:#}");
    assert_eq!(
        report["assertion_replayed"]["body"]["error"],
        "invalid_client"
    );
    for name in [
        "another_key",
        "another_audience",
        "expired",
        "an_hour_long",
        "another_client",
    ] {
        assert_eq!(
            report["refused"][name]["error"], "invalid_client",
            "{name}: {report:#}"
        );
    }

    // private_key_jwt and DPoP together.
    let bound = &report["token_dpop"]["token"];
    assert_eq!(bound["token_type"], "DPoP", "{report:#}");
    let jkt = thumbprint_agrees(bound);
    let bound_token = bound["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(bound_token)["cnf"], json!({ "jkt": jkt }));

    // Revocation with the library's default aud (the revocation endpoint) and with the issuer;
    // the API that introspected with its own assertion saw both inactive, the bound one active.
    let revocations = &report["revocations"];
    assert_eq!(
        revocations["default_aud"]["assertion"]["claims"]["aud"],
        format!("{issuer}/revoke"),
    );
    assert_eq!(
        revocations["aud_issuer"]["assertion"]["claims"]["aud"],
        issuer
    );
    assert_eq!(
        report["introspection_assertion"]["claims"]["aud"],
        format!("{issuer}/introspect"),
    );
    assert_eq!(report["introspection_assertion"]["claims"]["iss"], REPORTS);
    let introspection = &report["introspection"];
    assert_eq!(
        introspection["dpop_bound"]["active"], true,
        "{introspection:#}"
    );
    assert_eq!(
        introspection["dpop_bound"]["cnf"]["jkt"], jkt,
        "{introspection:#}"
    );
    for name in ["revoked_default_aud", "revoked_aud_issuer"] {
        assert_eq!(introspection[name], json!({ "active": false }), "{name}");
    }
    for replayed in [
        &revocations["default_aud"]["replayed"],
        &revocations["aud_issuer"]["replayed"],
        &report["introspection_assertion_replayed"],
    ] {
        assert_eq!(replayed["body"]["error"], "invalid_client", "{replayed:#}");
    }
    // The same answers, asked with the other API's secret: the revocations are the service's.
    for name in ["default_aud", "aud_issuer"] {
        let revoked = revocations[name]["access_token"].as_str().unwrap();
        assert_eq!(
            introspect(issuer, revoked).await,
            json!({ "active": false })
        );
    }
    assert_eq!(introspect(issuer, bound_token).await["active"], true);
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn requests_oauth2client_authenticates_with_private_key_jwt_at_every_endpoint() {
    let signer = ClientKey::generate("signer-key");
    let (other, reports) = (
        ClientKey::generate("other-key"),
        ClientKey::generate("reports-key"),
    );
    let Stack { issuer, .. } =
        start(|issuer| signers_config(issuer, &signer.inline_jwks(), &other, &reports)).await;
    assert_private_key_jwt_everywhere(&issuer, &signer, &reports).await;
}

#[tokio::test]
#[ignore = "needs SCOPEGATE_TEST_PYTHON: a Python with tests/python/requirements.txt (.ci/run installs it)"]
async fn a_client_publishing_its_keys_at_a_jwks_uri_authenticates_with_them() {
    let signer = ClientKey::generate("published-key");
    let (other, reports) = (
        ClientKey::generate("other-key"),
        ClientKey::generate("reports-key"),
    );
    let (jwks_uri, fetches) = serve_jwks(json!({ "keys": [signer.public] })).await;
    let Stack { issuer, .. } = start(|issuer| {
        signers_config(
            issuer,
            &format!(r#"jwks_uri = "{jwks_uri}""#),
            &other,
            &reports,
        )
    })
    .await;
    assert_private_key_jwt_everywhere(&issuer, &signer, &reports).await;
    assert!(
        fetches.load(Ordering::SeqCst) >= 1,
        "the service read the client's keys there"
    );
}
