//! The HTTP surface: thin handlers (parse → call the domain → build the response).

pub(crate) mod admin;
mod authorize;
mod claims;
mod client_auth;
mod discovery;
mod form;
mod health;
mod introspect;
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

/// The span of one request: its method and path, nothing a client sent beyond them.
fn request_span(request: &http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        version = ?request.version(),
    )
}

/// The token service's routes.
///
/// # Panics
///
/// Never for a [`State`] that started: its issuer was checked, and the validator guarding the
/// service's own routes is built from nothing else.
pub fn app(state: State) -> Router {
    let body_limit = state.config().limits.max_body_bytes;
    #[allow(clippy::expect_used)]
    let own_routes = state
        .own_tokens()
        .for_own_routes(&state)
        .expect("the issuer was checked at start");
    #[allow(clippy::expect_used)]
    let userinfo_layer = tower_scopegate::ScopeLayer::all_of(&own_routes, ["openid"])
        .expect("`openid` is a scope")
        .realm("token-service");
    #[allow(clippy::expect_used)]
    let admin = admin::routes(&admin::AdminLayers::new(&own_routes).expect("admin scopes parse"));
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
        // Spans carry method and path only: no headers, no body, and no query — it holds
        // `id_token_hint`, `state`, codes and PKCE challenges.
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}
