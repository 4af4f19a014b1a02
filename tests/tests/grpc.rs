//! The example gRPC API behind tower-scopegate, called by a tonic client over real HTTP/2 with
//! tokens from the token service: each method's requirement holds, and every refusal is a gRPC
//! status a gRPC client can read, with the RFC 6750 challenge in its metadata (issue 17, item 3).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use example_grpc_api::{CANCEL, GET, Order, OrderRequest};
use scopegate_validator::{Algorithm, Validator};
use tonic::Code;
use tonic::transport::Channel;

const AUDIENCE: &str = "https://orders.example.test";

async fn token_service() -> String {
    common::serve_token_service(|issuer| {
        format!(
            r#"
issuer = "{issuer}"
listen = "127.0.0.1:0"
storage = "sqlite::memory:"

[[clients]]
id = "clerk"
secret = "clerk-secret"
grants = ["client_credentials"]
scopes = ["shop:orders:read"]
token_format = "jwt"
audience = ["{AUDIENCE}"]

[[apis]]
id = "{AUDIENCE}"
secret = "api-secret"
scopes = ["shop:orders"]
"#
        )
    })
    .await
}

async fn grpc_api(issuer: &str) -> String {
    let validator = Validator::builder()
        .issuer(issuer)
        .audience(AUDIENCE)
        .algorithms(Algorithm::ALL)
        .build()
        .unwrap();
    let app = example_grpc_api::app(&validator, true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn call(
    channel: &Channel,
    method: &'static str,
    token: Option<&str>,
) -> Result<Order, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(OrderRequest {
        id: "o-1".to_owned(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    client
        .unary(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static(method),
            tonic_prost::ProstCodec::<OrderRequest, Order>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

fn challenge(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_tonic_client_gets_its_answer_or_a_grpc_status_with_the_challenge() {
    let issuer = token_service().await;
    let api = grpc_api(&issuer).await;
    let channel = Channel::from_shared(api).unwrap().connect().await.unwrap();
    let answer =
        common::client_credentials(&format!("{issuer}/token"), ("clerk", "clerk-secret"), "").await;
    let token = answer["access_token"].as_str().unwrap();

    let order = call(&channel, GET, Some(token)).await.unwrap();
    assert_eq!(
        (
            order.id.as_str(),
            order.status.as_str(),
            order.caller.as_str()
        ),
        ("o-1", "open", "clerk")
    );

    let denied = call(&channel, CANCEL, Some(token)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        challenge(&denied),
        r#"Bearer realm="api", error="insufficient_scope", scope="shop:orders:write""#
    );

    let anonymous = call(&channel, GET, None).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert_eq!(challenge(&anonymous), r#"Bearer realm="api""#);

    let forged = call(&channel, GET, Some("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);
    assert!(challenge(&forged).contains(r#"error="invalid_token""#));

    // A method the service has but no requirement names: refused, not served.
    let unlisted = call(&channel, "/shop.Orders/Delete", Some(token))
        .await
        .unwrap_err();
    assert_eq!(unlisted.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable_to_a_grpc_client() {
    // Nothing listens on port 9 of the loopback: discovery fails.
    let api = grpc_api("http://127.0.0.1:9").await;
    let channel = Channel::from_shared(api).unwrap().connect().await.unwrap();
    let unavailable = call(&channel, GET, Some("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"))
        .await
        .unwrap_err();
    assert_eq!(unavailable.code(), Code::Unavailable);
}
