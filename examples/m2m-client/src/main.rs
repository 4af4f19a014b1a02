//! Run with: `CLIENT_SECRET=svc-a-secret cargo run -p example-m2m-client -- --issuer
//! http://127.0.0.1:8080 --client-id svc-a --scope akamai:social_profile:read`

use std::process::ExitCode;

use clap::Parser;
use example_m2m_client::{Config, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // The client's debug lines show each token obtained or refused.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,scopegate_client=debug")),
        )
        .init();
    let config = Config::parse();
    let started = config
        .credentials(|name| std::env::var(name).ok())
        .and_then(|credentials| config.token_source(credentials));
    let tokens = match started {
        Ok(tokens) => tokens,
        Err(message) => {
            eprintln!("m2m-client: {message}");
            return ExitCode::from(2);
        }
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match run(&config, tokens, stop).await {
        Ok(summary) if summary.all_succeeded() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("m2m-client: {message}");
            ExitCode::FAILURE
        }
    }
}
