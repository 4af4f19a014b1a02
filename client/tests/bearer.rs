//! The two adapters in front of an app's HTTP client — the tower layer over a `service_fn`
//! API, the reqwest wrapper over an API on loopback — with tokens from an in-process token
//! endpoint that counts its requests: a refused token is replaced once, and only a refused one.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use scopegate_client::{BearerClient, BearerLayer, Error, TokenSource};
use support::{Answer, Api, INVALID_TOKEN, Server, Verdict};
use tower::{Service, ServiceBuilder, ServiceExt};

/// An in-process token endpoint and a source of its tokens. The cooldown between two dropped
/// tokens is an hour, so that no slow machine outlasts it within a test.
async fn token_endpoint() -> (Server, TokenSource) {
    let server = Server::start(Answer::Tokens { expires_in: 3600 }).await;
    let tokens = TokenSource::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("svc")
        .client_secret("svc-secret-7f3e")
        .invalidation_cooldown(Duration::from_secs(3600))
        .build()
        .unwrap();
    (server, tokens)
}

/// `api` as a tower service, as an HTTP client would reach it.
fn service(
    api: &Api,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let api = api.clone();
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let api = api.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let (status, headers, text) = api.answer(&parts.method, &parts.headers, &body);
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            Ok::<_, Infallible>(response.body(text).unwrap())
        }
    })
}

fn put(body: &'static str) -> Request<Full<Bytes>> {
    Request::put("http://api.test/profile")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn tokens_and_bodies(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(token, body)| ((*token).to_owned(), (*body).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_request_sent_once_more() {
    let (server, tokens) = token_endpoint().await;
    let api = Api::new(|token| match token {
        "tok-1" => Verdict::Refuse(INVALID_TOKEN),
        _ => Verdict::Accept,
    });
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(tokens))
        .service(service(&api));
    let response = client.oneshot(put("hello")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), "PUT hello");
    assert_eq!(
        api.calls(),
        tokens_and_bodies(&[("tok-1", "hello"), ("tok-2", "hello")])
    );
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn a_401_that_persists_reaches_the_caller_after_one_retry() {
    let (server, tokens) = token_endpoint().await;
    let api = Api::new(|_| Verdict::Refuse(INVALID_TOKEN));
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(tokens))
        .service(service(&api));
    let response = client.clone().oneshot(put("a")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], INVALID_TOKEN);
    assert_eq!(
        api.calls(),
        tokens_and_bodies(&[("tok-1", "a"), ("tok-2", "a")])
    );
    // Refused again within the cooldown: the token is kept and the 401 answered at once.
    let response = client.oneshot(put("b")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(api.calls().len(), 3);
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn a_403_or_another_401_error_is_never_retried() {
    for verdict in [
        Verdict::Forbid,
        Verdict::Refuse(r#"Bearer realm="api", error="invalid_request""#),
    ] {
        let (server, tokens) = token_endpoint().await;
        let api = Api::new(move |_| verdict.clone());
        let client = ServiceBuilder::new()
            .layer(BearerLayer::new(tokens))
            .service(service(&api));
        let response = client.oneshot(put("x")).await.unwrap();
        assert!(matches!(response.status().as_u16(), 401 | 403));
        assert_eq!(api.calls().len(), 1);
        assert_eq!(server.token_requests(), 1);
    }
}

#[tokio::test]
async fn without_retry_the_401_is_answered_and_the_next_call_gets_a_new_token() {
    let (server, tokens) = token_endpoint().await;
    let api = Api::new(|token| match token {
        "tok-1" => Verdict::Refuse(INVALID_TOKEN),
        _ => Verdict::Accept,
    });
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(tokens).without_retry())
        .service(service(&api));
    let response = client.clone().oneshot(put("a")).await.unwrap();
    assert_eq!(response.status(), 401);
    let response = client.oneshot(put("b")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        api.calls(),
        tokens_and_bodies(&[("tok-1", "a"), ("tok-2", "b")])
    );
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn a_token_endpoint_refusal_is_the_callers_typed_error() {
    let (server, tokens) = token_endpoint().await;
    server.set(Answer::Fixed {
        status: 401,
        content_type: "application/json",
        body: br#"{"error":"invalid_client","error_description":"client authentication failed"}"#
            .to_vec(),
    });
    let api = Api::new(|_| Verdict::Accept);
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(tokens))
        .service(service(&api));
    let error = client.oneshot(put("a")).await.unwrap_err();
    let error = error.downcast::<Error>().unwrap();
    assert_eq!(error.oauth_code(), Some("invalid_client"));
    assert!(api.calls().is_empty());
}

#[tokio::test]
async fn the_reqwest_wrapper_replaces_a_refused_token_once() {
    let (server, tokens) = token_endpoint().await;
    let api = Api::new(|token| match token {
        "tok-1" => Verdict::Refuse(INVALID_TOKEN),
        "tok-2" => Verdict::Accept,
        _ => Verdict::Refuse(INVALID_TOKEN),
    });
    let url = api.serve().await;
    let client = BearerClient::new(reqwest::Client::new(), tokens);
    let response = client
        .send(
            client
                .request(http::Method::PUT, format!("{url}/p"))
                .body("hello"),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "PUT hello");
    assert_eq!(
        api.calls(),
        tokens_and_bodies(&[("tok-1", "hello"), ("tok-2", "hello")])
    );
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn an_api_that_cannot_be_reached_is_a_request_error() {
    let (_server, tokens) = token_endpoint().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = BearerClient::new(reqwest::Client::new(), tokens);
    let error = client
        .send(client.get(format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Request { .. }), "{error:?}");
}
