//! One process of an end-to-end test: the token service (as `token-service serve`, from a
//! configuration file, metrics included) or the example protected API (configured by its environment variables,
//! as its own binary). The tests start several, so that each is a process of its own that can
//! be killed, on ports they choose.
//!
//! Usage: `scopegate-e2e-node token-service <config.toml>` | `scopegate-e2e-node protected-api`

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match arguments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["token-service", config] => token_service(config).await,
        ["protected-api"] => example_protected_api::serve_from_env().await,
        _ => {
            Err("usage: scopegate-e2e-node token-service <config.toml> | protected-api".to_owned())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("scopegate-e2e-node: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn token_service(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{path}: {error}"))?;
    let config =
        scopegate_token_service::Config::from_toml(&text).map_err(|error| error.to_string())?;
    let listen = config.listen;
    scopegate_token_service::http::observe::start_metrics(&config.telemetry)
        .await
        .map_err(|error| error.to_string())?;
    let state = scopegate_token_service::State::start(config)
        .await
        .map_err(|error| error.to_string())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    tracing::info!(%listen, "token service ready");
    scopegate_token_service::http::serve(state, listener, std::future::pending())
        .await
        .map_err(|error| error.to_string())
}
