//! Run with: `ISSUER=http://127.0.0.1:8080 AUDIENCE=https://api.example.test cargo run -p example-protected-api`

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match example_protected_api::serve_from_env().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("protected-api: {message}");
            ExitCode::FAILURE
        }
    }
}
