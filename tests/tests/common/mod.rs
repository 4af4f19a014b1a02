//! Shared by the end-to-end tests: the token service on a loopback port, configured from a
//! TOML text that may name its own address, and a client-credentials token from it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod node;
pub mod signing_in;

use std::sync::Arc;

use scopegate_token_service::State;
use scopegate_token_service::config::Config;
use scopegate_token_service::store::{SqlStore, Store};
use scopegate_validator::SystemClock;
use serde_json::Value;

/// The token service on 127.0.0.1 (in-memory SQLite, system clock), configured by
/// `config(issuer)`; returns its issuer URL.
pub async fn serve_token_service(config: impl FnOnce(&str) -> String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let config = Config::from_toml(&config(&issuer)).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqlStore::sqlite("sqlite::memory:").await.unwrap());
    let state = State::with_store(config, store, Arc::new(SystemClock))
        .await
        .unwrap();
    tokio::spawn(scopegate_token_service::http::serve(
        state,
        listener,
        std::future::pending(),
    ));
    issuer
}

/// The token endpoint's answer to a client-credentials request with `extra` form parameters
/// (`&scope=…`, already encoded).
pub async fn client_credentials(token_endpoint: &str, client: (&str, &str), extra: &str) -> Value {
    reqwest::Client::new()
        .post(token_endpoint)
        .basic_auth(client.0, Some(client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials{extra}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
