//! The HTTP surface: thin handlers (parse → call the domain → build the response). The domain
//! knows no HTTP; this side wraps it with its layers (the service's own scope layers, body
//! limit, request spans), its CSRF key, and the HTTP answers of domain errors (`http/error.rs`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use scopegate_token_service::{Config, State, config::Source, http};
//!
//! let config = Config::load(&Source::Demo)?;
//! let state = State::start(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! // Or embed the routes: `axum::serve(listener, http::app(state).await?)`.
//! http::serve(state, listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub(crate) mod admin;
pub(crate) mod client_auth;
mod discovery;
pub(crate) mod error;
mod events;
pub(crate) mod form;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod introspect;
pub mod observe;
mod pages;
pub(crate) mod peer;
mod revoke;
mod token;
mod userinfo;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::State;
use crate::store::StoreError;

/// Why the HTTP side could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CSRF key, shared by every instance through the store, could not be read.
    #[error("cannot read the CSRF key: {0}")]
    CsrfKey(#[from] crate::sealing::SealingError),
    /// The validator guarding the service's own routes could not be built.
    #[error("cannot guard /userinfo and /admin: {0}")]
    OwnRoutes(#[from] scopegate_validator::BuildError),
    /// A route's scope requirement could not be built.
    #[error("cannot guard /userinfo and /admin: {0}")]
    Scope(#[from] scopegate_validator::scope::ScopeError),
}

/// The token service's routes over `state`.
///
/// # Errors
///
/// [`AppError`] if the store cannot give the CSRF key.
pub async fn app(state: State) -> Result<Router, AppError> {
    let body_limit = state.config().limits.max_body_bytes;
    let csrf_secret = state.shared_secret("csrf").await?;
    let own_routes = state.own_tokens().for_own_routes(&state)?;
    // /userinfo takes the service's DPoP-bound tokens with their proofs (RFC 9449 §7), its URL
    // as the issuer names it; a bound token presented as Bearer is refused.
    let userinfo_layer = tower_scopegate::ScopeLayer::all_of(&own_routes, ["openid"])?
        .realm("token-service")
        .dpop(tower_scopegate::DpopSettings::new(
            state.config().base_url(),
        )?);
    let admin = admin::routes(&admin::AdminLayers::new(&own_routes)?);
    Ok(Router::new()
        .merge(admin)
        .merge(pages::routes(
            state.clone(),
            pages::CsrfKey::new(&csrf_secret),
        ))
        .route(
            "/userinfo",
            get(userinfo::userinfo)
                .post(userinfo::userinfo)
                .route_layer(userinfo_layer),
        )
        .route("/token", post(token::token))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(revoke::revoke))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata),
        )
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route("/.well-known/ssf-configuration", get(events::configuration))
        .route("/ssf/stream", get(events::stream))
        .route("/ssf/poll", post(events::poll))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(peer::TrustedProxies(
            state.config().trusted_proxies.clone().into(),
        )))
        .layer(observe::ObserveLayer)
        .with_state(state))
}

/// Serves on `listener` until `shutdown` resolves, then finishes the requests in flight; runs
/// the background jobs (key reload and rotation, sweeping) meanwhile.
///
/// # Errors
///
/// An I/O error from the listener, or [`AppError`] (as an I/O error) if the routes cannot be
/// set up.
pub async fn serve(
    state: State,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _jobs = state.spawn_background();
    let closing = state.clone();
    let shutdown = async move {
        shutdown.await;
        closing.begin_closing();
    };
    let router = app(state).await.map_err(std::io::Error::other)?;
    // The peer address feeds the login throttle (behind a proxy it is the proxy's).
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(without_nagle(listener), service)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Accepts connections with Nagle's algorithm off: an answer written in parts (a streamed
/// body, the event stream's events) leaves at once instead of waiting for the client's
/// delayed acknowledgement of the previous part (up to 40 ms on Linux).
fn without_nagle(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(turn_nagle_off)
}

fn turn_nagle_off(connection: &mut tokio::net::TcpStream) {
    if let Err(error) = connection.set_nodelay(true) {
        tracing::debug!(%error, "could not turn Nagle's algorithm off for a connection");
    }
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    use super::*;

    #[tokio::test]
    async fn connections_are_accepted_with_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut listener = without_nagle(listener);
        let client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (accepted, peer) = listener.accept().await;
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is not set");
        assert!(!client.nodelay().unwrap(), "a fresh socket has Nagle on");
    }
}
