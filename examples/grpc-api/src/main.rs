//! Run with: `ISSUER=http://127.0.0.1:8080 AUDIENCE=https://api.example.test cargo run -p example-grpc-api`
//! (`LISTEN`, default `127.0.0.1:50051`).

use std::process::ExitCode;

use scopegate_validator::{Algorithm, Validator};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("grpc-api: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let variable = |name: &str| std::env::var(name).map_err(|_| format!("{name} is required"));
    let validator = Validator::builder()
        .issuer(variable("ISSUER")?)
        .audience(variable("AUDIENCE")?)
        .algorithms(Algorithm::ALL)
        .build()
        .map_err(|error| error.to_string())?;
    let app = example_grpc_api::app(&validator, true).map_err(|error| error.to_string())?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    tracing::info!(%listen, "gRPC API ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|error| error.to_string())
}
