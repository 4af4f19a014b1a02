//! `GET /protected` behind `jwt-authorizer`: the token's signature is checked against the JWKS
//! at `JWKS_URL`, its `iss` and `aud`, and its `scope` must hold `REQUIRED_SCOPE` — the same
//! work tower-scopegate does for the bench's protected routes. One thread, like the other side.
//! Prints the bound address on stdout.

use axum::routing::get;
use axum::Router;
use jwt_authorizer::{Authorizer, IntoLayer, JwtAuthorizer, Validation};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Claims {
    #[serde(default)]
    scope: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let required = env("REQUIRED_SCOPE");
    let authorizer: Authorizer<Claims> = JwtAuthorizer::from_jwks_url(&env("JWKS_URL"))
        .validation(Validation::new().iss(&[env("ISSUER")]).aud(&[env("AUDIENCE")]))
        .check(move |claims: &Claims| claims.scope.split(' ').any(|scope| scope == required))
        .build()
        .await
        .expect("jwt-authorizer could not be built");
    let app = Router::new()
        .route("/protected", get(|| async { "ok" }))
        .layer(authorizer.into_layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
