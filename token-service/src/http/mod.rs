//! The HTTP surface: thin handlers (parse → call the domain → build the response).

pub(crate) mod admin;
mod authorize;
mod claims;
mod client_auth;
mod discovery;
mod form;
mod health;
mod introspect;
mod live_client;
mod logout;
mod password;
mod revoke;
mod signup;
mod token;
mod userinfo;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::State;

/// The token service's routes.
pub fn app(state: State) -> Router {
    let body_limit = state.config().limits.max_body_bytes;
    let userinfo_layer = state.userinfo_layer().clone().realm("token-service");
    let live_client =
        axum::middleware::from_fn_with_state(state.clone(), live_client::require_live_client);
    let admin = admin::routes(state.admin_layers(), &live_client);
    Router::new()
        .merge(admin)
        .route("/authorize", get(authorize::authorize))
        .route("/login", post(authorize::login))
        .route("/claims", post(claims::submit))
        .route("/signup", get(signup::show).post(signup::create))
        .route("/assets/login.css", get(authorize::stylesheet))
        .route("/logout", get(logout::logout).post(logout::confirm_logout))
        .route("/password", get(password::show).post(password::change))
        .route(
            "/userinfo",
            get(userinfo::userinfo)
                .post(userinfo::userinfo)
                // Inner layer first: the principal the scope layer finds is checked next.
                .route_layer(live_client)
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
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(body_limit))
        // Spans carry method and path only: no headers, no query, no body.
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
