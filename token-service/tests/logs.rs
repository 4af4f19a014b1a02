//! Logs at every level never carry a token or a secret.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every event at every level on this thread, into the returned buffer, while the guard lives.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn trace_logs_hold_no_tokens_or_secrets() {
    let (captured, _guard) = capture();

    let service = TestService::start().await;
    let jwt = service.token(JWT_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let opaque = service.token(OPAQUE_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    service.introspect(API_CREDENTIALS, &opaque).await;
    service.introspect(API_CREDENTIALS, &jwt).await;
    service
        .post(
            "/token",
            Some(("svc-jwt", "a-wrong-secret")),
            "grant_type=client_credentials",
        )
        .await;
    service
        .post(
            "/introspect",
            Some((API, "another-wrong-secret")),
            &format!("token={opaque}"),
        )
        .await;
    service
        .post("/revoke", Some(OPAQUE_CLIENT), &format!("token={opaque}"))
        .await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("access token issued"),
        "the logs were captured:\n{logs}"
    );
    assert!(logs.contains("access token revoked"));
    for secret in [
        jwt.as_str(),
        jwt.split('.').nth(2).unwrap(),
        opaque.as_str(),
        "jwt-secret",
        "opaque-secret",
        API_SECRET,
        "a-wrong-secret",
        "another-wrong-secret",
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` appears in the logs:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn request_logs_record_the_path_without_the_query() {
    let (captured, _guard) = capture();

    let service = TestService::start().await;
    // A logout hint and an authorization request carry what a log must not keep.
    let hint = "eyJhbGciOiJFUzI1NiJ9.eyJzZWNyZXQtaGludCI6MX0.c2lnbmF0dXJlLXNlY3JldA";
    service
        .get(&format!(
            "/logout?id_token_hint={hint}&state=state-secret-1"
        ))
        .await;
    service
        .get("/authorize?response_type=code&client_id=web-app&state=state-secret-2&code_challenge=challenge-secret-3")
        .await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/logout") && logs.contains("/authorize"),
        "request spans were captured:\n{logs}"
    );
    for secret in [
        hint,
        "state-secret-1",
        "state-secret-2",
        "challenge-secret-3",
        "id_token_hint",
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` appears in the logs:\n{logs}"
        );
    }
}
