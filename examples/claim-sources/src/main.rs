//! Runs the demo claim sources on `LISTEN` (default `127.0.0.1:3003`); see the crate's docs.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match example_claim_sources::serve_from_env().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("example-claim-sources: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
