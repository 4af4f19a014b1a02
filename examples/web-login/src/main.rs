//! Run with: `ISSUER=http://127.0.0.1:8080 cargo run -p example-web-login`, then open
//! <http://127.0.0.1:3001/> and sign in as `jane` / `jane-password` (the demo configuration).

use std::process::ExitCode;

use example_web_login::{Config, app};
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
            eprintln!("web-login: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let config = Config::from_lookup(|name| std::env::var(name).ok())?;
    let listen = config.listen.clone();
    let router = app(config).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    tracing::info!(%listen, "web login example ready: open http://{listen}/");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|error| error.to_string())
}
