//! The protected gRPC method next to the same method unprotected, over loopback HTTP/2 with
//! tonic clients: requests per second, alternating rounds, the ratio taken per round (the
//! machine is shared and noisy). The token is verified once, then answered from the cache, as
//! in production.
//!
//! Run with: `cargo bench -p example-grpc-api --bench throughput` (`ROUNDS`, default 5;
//! `SECONDS` per round and side, default 2; `CONCURRENCY`, default 32).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use example_grpc_api::{GET, Order, OrderRequest};
use scopegate_validator::{Algorithm, Validator};
use tonic::transport::Channel;

include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../validator/tests/support/doc_issuer.rs"
));

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

async fn serve(validator: &Validator, protected: bool) -> Channel {
    let app = example_grpc_api::app(validator, protected).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Channel::from_shared(address)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn call(channel: Channel, token: Arc<str>) {
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(OrderRequest {
        id: "o-1".to_owned(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    client
        .unary(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static(GET),
            tonic_prost::ProstCodec::<OrderRequest, Order>::default(),
        )
        .await
        .unwrap();
}

/// Requests per second from `concurrency` callers for `seconds`.
async fn round(channel: &Channel, token: &Arc<str>, concurrency: u64, seconds: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (channel, token, done, stop) = (
                channel.clone(),
                Arc::clone(token),
                Arc::clone(&done),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    call(channel.clone(), Arc::clone(&token)).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let issuer = DocIssuer::new();
        let validator = Validator::builder()
            .issuer("https://idp.example.com")
            .audience("https://api.example.com")
            .algorithms([Algorithm::ES256])
            .key_source(issuer.keys())
            .build()
            .unwrap();
        let token: Arc<str> = issuer
            .token("https://api.example.com", "shop:orders:read")
            .into();
        let protected = serve(&validator, true).await;
        let open = serve(&validator, false).await;
        let (rounds, seconds, concurrency) = (
            setting("ROUNDS", 5),
            setting("SECONDS", 2),
            setting("CONCURRENCY", 32),
        );
        // Warm up both (connections, the verified-token cache).
        round(&protected, &token, concurrency, 1).await;
        round(&open, &token, concurrency, 1).await;
        println!("gRPC unary `{GET}`, {concurrency} concurrent tonic callers, HTTP/2 on loopback");
        println!(
            "{:>5} {:>14} {:>14} {:>7}",
            "round", "protected/s", "unprotected/s", "ratio"
        );
        let mut ratios = Vec::new();
        for index in 0..rounds {
            // Alternate which side goes first, so that drift favours neither.
            let (with, without) = if index % 2 == 0 {
                let with = round(&protected, &token, concurrency, seconds).await;
                (with, round(&open, &token, concurrency, seconds).await)
            } else {
                let without = round(&open, &token, concurrency, seconds).await;
                (
                    round(&protected, &token, concurrency, seconds).await,
                    without,
                )
            };
            ratios.push(with / without);
            println!(
                "{index:>5} {with:>14.0} {without:>14.0} {:>7.3}",
                with / without
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "median ratio protected/unprotected: {:.3}",
            ratios[ratios.len() / 2]
        );
    });
}
