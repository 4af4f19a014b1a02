//! Routes served without connection info have no peer address (issue 16): the per-network
//! limits are then off and the per-account ones shared — never silently: the log says so,
//! once. (Its own test binary: the warning is once per process.)

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::StatusCode;
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

#[tokio::test(flavor = "current_thread")]
async fn without_a_peer_address_the_log_says_which_limits_are_off_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings = logs.matches("requests carry no peer address").count();
    assert_eq!(warnings, 1, "{logs}");
    assert!(logs.contains("per-network limits are off"), "{logs}");
}
