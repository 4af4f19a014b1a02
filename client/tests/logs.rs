//! What this crate and the HTTP stack under it log — at every level, while a token is
//! obtained, refused, replaced, and refused by the token endpoint — and what `Debug` prints:
//! never the client secret nor a token. A test binary of its own: the log is captured by a
//! process-wide subscriber, which no other test may race.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use scopegate_client::{BearerClient, ClientAuthMethod, TokenSource};
use support::{Answer, Api, INVALID_TOKEN, Server, Verdict};

/// Everything logged, at every level and by every crate.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn neither_secret_nor_token_reaches_the_logs_or_debug_output() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = Server::start(Answer::Tokens { expires_in: 3600 }).await;
    let tokens = TokenSource::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("svc")
        .client_secret("svc-secret-7f3e")
        .build()
        .unwrap();
    let api = Api::new(|token| match token {
        "tok-1" => Verdict::Refuse(INVALID_TOKEN),
        _ => Verdict::Accept,
    });
    let url = api.serve().await;
    let client = BearerClient::new(reqwest::Client::new(), tokens.clone());
    let response = client.send(client.get(&url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let token = tokens.token().await.unwrap();
    // A failed request is logged too; this one sends its secret in the form.
    let failing = TokenSource::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("svc")
        .client_secret("svc-secret-7f3e")
        .client_auth_method(ClientAuthMethod::SecretPost)
        .build()
        .unwrap();
    server.set(Answer::Fixed {
        status: 401,
        content_type: "application/json",
        body: br#"{"error":"invalid_client"}"#.to_vec(),
    });
    let error = failing.token().await.unwrap_err();

    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "access token obtained",
        "retrying once with a new one",
        "could not obtain an access token",
    ] {
        assert!(logged.contains(expected), "{expected:?} not in:\n{logged}");
    }
    let printed =
        format!("{logged}\n{client:?}\n{tokens:?}\n{failing:?}\n{token:?}\n{error:?}\n{error}");
    let basic = server.seen()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    for secret in [
        "svc-secret-7f3e",
        "tok-1",
        "tok-2",
        basic.trim_start_matches("Basic "),
    ] {
        assert!(!printed.contains(secret), "{secret:?} printed:\n{printed}");
    }
}
