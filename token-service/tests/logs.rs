//! Logs at every level never carry a token or a secret.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

#[tokio::test(flavor = "current_thread")]
async fn trace_logs_hold_no_tokens_or_secrets() {
    let (captured, _guard) = logs::capture(tracing::Level::TRACE);

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

    let logs = captured.text();
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
    let (captured, _guard) = logs::capture(tracing::Level::TRACE);

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
    let logs = captured.text();
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
