//! Floods of bad client credentials (issue 16): failures are counted per client id and per
//! network before any hash runs, refused with 429 `slow_down` and `Retry-After` past the
//! limit, and a client whose secret the service has seen match is never slowed by them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Body;
use base64::Engine;
use http::{Request, StatusCode, header};
use support::*;

fn token_request(client: (&str, &str), body: &str) -> Request<Body> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1));
    Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn a_flood_of_wrong_secrets_for_a_client_gets_no_more_hashes_than_its_limit() {
    let service = TestService::start().await;
    // svc-jwt has been seen with its right secret; svc-opaque has not.
    service.token(JWT_CLIENT, "").await;
    let flood = (0..200)
        .map(|index| {
            let wrong = format!("wrong-{index}");
            let id = if index % 2 == 0 {
                "svc-jwt"
            } else {
                "svc-opaque"
            };
            from_address(
                token_request((id, &wrong), "grant_type=client_credentials"),
                "192.0.2.70",
            )
        })
        .collect();
    let statuses = service.burst(flood).await;
    let judged = statuses
        .iter()
        .filter(|status| passed_the_count(**status))
        .count() as u64;
    let slowed = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count() as u64;
    // Ten per client from this network, and both are under the network's fifty.
    let per_client = scopegate_token_service::throttle::CLIENT_PER_NETWORK;
    assert_eq!(judged, 2 * per_client, "{statuses:?}");
    assert_eq!(judged + slowed, 200, "{statuses:?}");

    // Past its limit, svc-opaque's right secret is not checked either …
    let refused = service
        .call(from_address(
            token_request(OPAQUE_CLIENT, "grant_type=client_credentials"),
            "192.0.2.70",
        ))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert_eq!(refused.json["error"], "slow_down");
    let retry_after: u64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // … but from another network it is; and svc-jwt, whose secret was seen to match, is
    // served from any network but the flooded one (where a right secret and a wrong one now
    // get the same answer).
    let elsewhere = service
        .call(from_address(
            token_request(OPAQUE_CLIENT, "grant_type=client_credentials"),
            "198.51.100.9",
        ))
        .await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.text);
    let served = service
        .call(from_address(
            token_request(JWT_CLIENT, "grant_type=client_credentials"),
            "198.51.100.10",
        ))
        .await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text);
    let flooded = service
        .call(from_address(
            token_request(JWT_CLIENT, "grant_type=client_credentials"),
            "192.0.2.70",
        ))
        .await;
    assert_eq!(
        flooded.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        flooded.text
    );
}

/// A flood of wrong secrets for one client from many networks pushes its counter of all
/// networks past the limit: new secrets are then refused unchecked, but the client presenting
/// its remembered secret from its own network is served as before.
#[tokio::test]
async fn a_distributed_flood_does_not_stop_the_client_with_its_remembered_secret() {
    let service = TestService::start().await;
    service.token(JWT_CLIENT, "").await;
    let all = scopegate_token_service::throttle::CLIENT_FROM_ALL_NETWORKS;
    let flood = (0..all + 20)
        .map(|index| {
            let address = format!("198.18.{}.{}", index / 200, index % 200 + 1);
            from_address(
                token_request(
                    ("svc-jwt", &format!("wrong-{index}")),
                    "grant_type=client_credentials",
                ),
                &address,
            )
        })
        .collect();
    let statuses = service.burst(flood).await;
    let slowed = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(slowed, 20, "{statuses:?}");
    let served = service
        .call(from_address(
            token_request(JWT_CLIENT, "grant_type=client_credentials"),
            "192.0.2.75",
        ))
        .await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text);
}

#[tokio::test]
async fn guessing_many_client_ids_from_one_network_is_limited_too() {
    let service = TestService::start().await;
    let guesses = (0..120)
        .map(|index| {
            from_address(
                token_request(
                    (&format!("guess-{index}"), "x"),
                    "grant_type=client_credentials",
                ),
                "192.0.2.71",
            )
        })
        .collect();
    let statuses = service.burst(guesses).await;
    let judged = statuses
        .iter()
        .filter(|status| passed_the_count(**status))
        .count() as u64;
    assert_eq!(
        judged,
        scopegate_token_service::throttle::CLIENTS_PER_NETWORK,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn introspection_and_revocation_count_failures_the_same_way() {
    let service = TestService::start().await;
    let per_client = scopegate_token_service::throttle::CLIENT_PER_NETWORK;
    for path in ["/introspect", "/revoke"] {
        let (id, address) = if path == "/introspect" {
            (API, "192.0.2.72")
        } else {
            ("conf-web", "192.0.2.73")
        };
        let requests = (0..40)
            .map(|index| {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:wrong-{index}", form_encode(id)));
                let request = Request::post(path)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::AUTHORIZATION, format!("Basic {basic}"))
                    .body(Body::from("token=abc"))
                    .unwrap();
                from_address(request, address)
            })
            .collect();
        let statuses = service.burst(requests).await;
        let judged = statuses
            .iter()
            .filter(|status| passed_the_count(**status))
            .count() as u64;
        let slowed = statuses
            .iter()
            .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
            .count() as u64;
        assert_eq!(
            (judged, slowed),
            (per_client, 40 - per_client),
            "{path}: {statuses:?}"
        );
    }
}

/// A client's own burst of requests with its right secret, before the service has seen it
/// match (after a restart, say), is one attempt: checked once, never slowed.
#[tokio::test]
async fn a_burst_with_the_right_secret_is_checked_once_and_never_slowed() {
    let service = TestService::start().await;
    let per_client = scopegate_token_service::throttle::CLIENT_PER_NETWORK;
    let burst = (0..6 * per_client)
        .map(|_| {
            from_address(
                token_request(OPAQUE_CLIENT, "grant_type=client_credentials"),
                "192.0.2.74",
            )
        })
        .collect();
    let statuses = service.burst(burst).await;
    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "{statuses:?}"
    );
}

/// Each client has a request rate at `/token` and each API one at `/introspect` (per
/// instance): past it, 429 `slow_down` with `Retry-After`; others are not affected.
#[tokio::test]
async fn clients_and_apis_over_their_rate_are_told_to_slow_down() {
    let config = format!(
        "{}\n[limits]\nclient_rate_limit = \"3/min\"\napi_rate_limit = \"2/min\"\n",
        config_text("http://127.0.0.1:8080", "ES256")
    );
    let service = TestService::start_with(&config).await;
    for _ in 0..3 {
        service.token(JWT_CLIENT, "").await;
    }
    let over = service
        .post("/token", Some(JWT_CLIENT), "grant_type=client_credentials")
        .await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.text);
    assert_eq!(over.json["error"], "slow_down");
    let retry_after: u64 = over.header("retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    // Another client has its own count.
    let opaque = service.token(OPAQUE_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        let answer = service.introspect(API_CREDENTIALS, &opaque).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    let over = service.introspect(API_CREDENTIALS, &opaque).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.text);
    assert_eq!(over.json["error"], "slow_down");
}

/// Sends `request` raw over loopback and returns the status line of the answer.
async fn raw_status_line(address: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn headers_over_their_limits_are_refused_before_any_handler_runs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = TestService::start().await;
    tokio::spawn(scopegate_token_service::http::serve(
        service.state.clone(),
        listener,
        std::future::pending(),
    ));
    let body = "grant_type=client_credentials";
    let request = |extra_headers: &str| {
        format!(
            "POST /token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    };
    // The control: within the limits the request reaches /token (401: no credentials).
    let within = raw_status_line(address, request("X-Pad: 1\r\n").as_bytes()).await;
    assert!(within.starts_with("HTTP/1.1 401"), "{within}");

    // More header fields than the server reads (100).
    let many: String = (0..120)
        .map(|index| format!("X-Pad-{index}: 1\r\n"))
        .collect();
    let too_many = raw_status_line(address, request(&many).as_bytes()).await;
    assert!(too_many.starts_with("HTTP/1.1 431"), "{too_many}");

    // One header larger than the server's whole header buffer.
    let huge = format!("Authorization: Basic {}\r\n", "A".repeat(1 << 20));
    let too_large = raw_status_line(address, request(&huge).as_bytes()).await;
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large}");
    // The service goes on serving.
    let after = raw_status_line(address, request("").as_bytes()).await;
    assert!(after.starts_with("HTTP/1.1 401"), "{after}");
}
