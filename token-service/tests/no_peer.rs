//! Routes served without connection info have no peer address (issue 16): the per-network
//! limits are then off and the per-account ones shared — never silently: the log says so,
//! once. (Its own test binary: the warning is once per process.)

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use support::*;

#[tokio::test(flavor = "current_thread")]
async fn without_a_peer_address_the_log_says_which_limits_are_off_once() {
    let (captured, _guard) = logs::capture(tracing::Level::WARN);

    let service = TestService::start().await;
    for _ in 0..3 {
        let answer = service
            .post(
                "/token",
                Some(("svc-jwt", "a-wrong-secret")),
                "grant_type=client_credentials",
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let logs = captured.text();
    let warnings = logs.matches("requests carry no peer address").count();
    assert_eq!(warnings, 1, "{logs}");
    assert!(logs.contains("per-network limits are off"), "{logs}");
}
