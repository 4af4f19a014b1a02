//! Run with: `ISSUER=http://127.0.0.1:8080 AUDIENCE=https://api.example.test cargo run -p example-protected-api`

use std::process::ExitCode;

use example_protected_api::{Config, app_with};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("protected-api: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let config = Config::from_lookup(|name| std::env::var(name).ok())?;
    let validator = config.validator().map_err(|error| error.to_string())?;
    // Fetch the issuer's keys now so the first request does not wait; a failure here is not
    // fatal (the issuer may start later), requests answer 503 until it is reachable.
    if let Err(error) = validator.refresh_keys().await {
        tracing::warn!(%error, "could not fetch the issuer's keys yet");
    }
    let metadata = config
        .metadata(&validator)
        .map_err(|error| error.to_string())?;
    let dpop = config.dpop().map_err(|error| error.to_string())?;
    let app =
        app_with(&validator, metadata.as_ref(), Some(&dpop)).map_err(|error| error.to_string())?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        issuer = %config.issuer,
        dpop_origin = %dpop.origin().as_str(),
        revocation_events = config.revocation_events.is_some(),
        "protected API ready"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|error| error.to_string())
}
