//! The example gRPC API: `shop.Orders` with `Get` and `Cancel`, served by tonic and protected
//! per method by tower-scopegate — `Get` needs `shop:orders:read`, `Cancel` `shop:orders:write`,
//! any other method is refused. Refusals are gRPC statuses (`UNAUTHENTICATED`,
//! `PERMISSION_DENIED`, `UNAVAILABLE`) with the RFC 6750 challenge in the `www-authenticate`
//! metadata.
//!
//! Written without code generation (no `protoc` needed): the messages are prost structs and the
//! routing is the few lines tonic's generator would write.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use scopegate_validator::scope::ScopeError;
use scopegate_validator::{Principal, Requirement, Validator};
use tonic::body::Body;
use tonic::{Request, Response, Status};
use tower_scopegate::ScopeLayer;

/// `shop.Orders/Get`.
pub const GET: &str = "/shop.Orders/Get";
/// `shop.Orders/Cancel`.
pub const CANCEL: &str = "/shop.Orders/Cancel";

/// Which order.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct OrderRequest {
    /// The order's id.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// An order, as its caller sees it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Order {
    /// The order's id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `open` or `cancelled`.
    #[prost(string, tag = "2")]
    pub status: String,
    /// The token's subject.
    #[prost(string, tag = "3")]
    pub caller: String,
}

type Codec = tonic_prost::ProstCodec<Order, OrderRequest>;

/// The principal the layer put in the request (tonic keeps the HTTP extensions).
fn caller(request: &Request<OrderRequest>) -> String {
    request
        .extensions()
        .get::<Arc<Principal>>()
        .and_then(|principal| principal.subject().map(str::to_owned))
        .unwrap_or_default()
}

async fn get(request: Request<OrderRequest>) -> Result<Response<Order>, Status> {
    let caller = caller(&request);
    Ok(Response::new(Order {
        id: request.into_inner().id,
        status: "open".to_owned(),
        caller,
    }))
}

async fn cancel(request: Request<OrderRequest>) -> Result<Response<Order>, Status> {
    let caller = caller(&request);
    Ok(Response::new(Order {
        id: request.into_inner().id,
        status: "cancelled".to_owned(),
        caller,
    }))
}

/// The `shop.Orders` service: routes each method to its handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Orders;

impl<B> tower::Service<http::Request<B>> for Orders
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Codec::default());
            Ok(match request.uri().path() {
                GET => grpc.unary(tower::service_fn(get), request).await,
                CANCEL => grpc.unary(tower::service_fn(cancel), request).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// The requirement of each method.
///
/// # Errors
/// Never for these fixed scopes.
pub fn requirements() -> Result<Vec<(&'static str, Requirement)>, ScopeError> {
    Ok(vec![
        (GET, Requirement::all_of(["shop:orders:read"])?),
        (CANCEL, Requirement::all_of(["shop:orders:write"])?),
    ])
}

/// The service behind the layer, as an axum router (served over HTTP/2 by `axum::serve`).
/// With `protected` false, the same service without the layer (for the benchmark).
///
/// # Errors
/// As [`requirements`].
pub fn app(validator: &Validator, protected: bool) -> Result<axum::Router, ScopeError> {
    let router = axum::Router::new().route_service("/shop.Orders/{method}", Orders);
    Ok(if protected {
        router.layer(ScopeLayer::per_path(validator, requirements()?).grpc())
    } else {
        router
    })
}
