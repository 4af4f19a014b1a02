//! A small web app that signs a user in through the token service (authorization code + PKCE,
//! as a public client, with the `openidconnect` crate), shows the id_token's claims, and calls
//! the protected example API with the access token.
//!
//! Run with: `ISSUER=http://127.0.0.1:8080 cargo run -p example-web-login`, then open
//! <http://127.0.0.1:3001/>.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use http::StatusCode;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

/// The scopes the app asks for when `SCOPES` is not set (`openid` is always asked).
pub const DEFAULT_SCOPES: &str = "profile email ad:user_custom:read akamai:social_profile:read";

/// The app's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The token service's issuer (`ISSUER`).
    pub issuer: String,
    /// This app's client id (`CLIENT_ID`, default `web-app`).
    pub client_id: String,
    /// Where the token service sends the browser back (`REDIRECT_URL`, default
    /// `http://127.0.0.1:3001/callback`).
    pub redirect_url: String,
    /// The protected API (`API_URL`, default `http://127.0.0.1:3000`).
    pub api_url: String,
    /// The API's route called with the access token (`API_PATH`, default `/me`; the example
    /// API's `/delegated` calls another API on the user's behalf).
    pub api_path: String,
    /// The scopes asked for besides `openid` (`SCOPES`, space-separated, default
    /// [`DEFAULT_SCOPES`]).
    pub scopes: Vec<String>,
    /// Address to listen on (`LISTEN`, default `127.0.0.1:3001`).
    pub listen: String,
}

impl Config {
    /// Reads the settings through `lookup` (the environment, in `main`).
    ///
    /// # Errors
    ///
    /// A message naming a missing variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        Ok(Self {
            issuer: lookup("ISSUER").ok_or("ISSUER is required (the token service's issuer)")?,
            client_id: lookup("CLIENT_ID").unwrap_or_else(|| "web-app".to_owned()),
            redirect_url: lookup("REDIRECT_URL")
                .unwrap_or_else(|| "http://127.0.0.1:3001/callback".to_owned()),
            api_url: lookup("API_URL").unwrap_or_else(|| "http://127.0.0.1:3000".to_owned()),
            api_path: match lookup("API_PATH") {
                Some(path) if !path.starts_with('/') => {
                    return Err(format!("API_PATH must start with `/`, not {path:?}"));
                }
                Some(path) => path,
                None => "/me".to_owned(),
            },
            scopes: lookup("SCOPES")
                .unwrap_or_else(|| DEFAULT_SCOPES.to_owned())
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            listen: lookup("LISTEN").unwrap_or_else(|| "127.0.0.1:3001".to_owned()),
        })
    }
}

type Oidc = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Shared {
    config: Config,
    oidc: Oidc,
    http: reqwest::Client,
    /// Sign-ins under way: `state` → PKCE verifier and nonce. Never held across an await.
    pending: Mutex<HashMap<String, (PkceCodeVerifier, Nonce)>>,
}

/// `openidconnect`'s HTTP interface over reqwest, without following redirects (a token
/// endpoint that redirects is not one to trust).
async fn send(
    client: reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut answer = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    let status = response.status();
    let body = response.bytes().await?.to_vec();
    // The builder only fails on invalid parts, which came from a valid response.
    Ok(answer.body(body).unwrap_or_else(|_| {
        let mut fallback = http::Response::new(Vec::new());
        *fallback.status_mut() = status;
        fallback
    }))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Web login example</title></head>\n<body>\n<h1>Web login example</h1>\n{body}\n</body></html>\n"
    );
    (status, Html(html)).into_response()
}

/// Discovers the token service and builds the app.
///
/// # Errors
///
/// A message if the issuer cannot be discovered or a URL is invalid.
pub async fn app(config: Config) -> Result<Router, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| error.to_string())?;
    let transport = http.clone();
    let issuer =
        IssuerUrl::new(config.issuer.clone()).map_err(|error| format!("ISSUER: {error}"))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, &move |request| {
        send(transport.clone(), request)
    })
    .await
    .map_err(|error| format!("discovery of {} failed: {error}", config.issuer))?;
    let redirect = RedirectUrl::new(config.redirect_url.clone())
        .map_err(|error| format!("REDIRECT_URL: {error}"))?;
    let oidc =
        CoreClient::from_provider_metadata(metadata, ClientId::new(config.client_id.clone()), None)
            .set_redirect_uri(redirect);
    let shared = Arc::new(Shared {
        config,
        oidc,
        http,
        pending: Mutex::new(HashMap::new()),
    });
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .with_state(shared))
}

async fn home() -> Response {
    page(
        StatusCode::OK,
        "<p>You are not signed in.</p>\n<p><a id=\"sign-in\" href=\"/login\">Sign in</a></p>",
    )
}

async fn login(State(shared): State<Arc<Shared>>) -> Response {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = shared
        .oidc
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scopes(shared.config.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    if let Ok(mut pending) = shared.pending.lock() {
        pending.insert(state.secret().clone(), (verifier, nonce));
    }
    Redirect::to(url.as_str()).into_response()
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(error) = params.get("error") {
        return page(
            StatusCode::BAD_REQUEST,
            &format!("<p>Sign-in failed: {}</p>", escape(error)),
        );
    }
    // RFC 9207: the response must come from the issuer we asked.
    if params.get("iss") != Some(&shared.config.issuer) {
        return page(
            StatusCode::BAD_REQUEST,
            "<p>The response did not come from our issuer.</p>",
        );
    }
    let pending = params
        .get("state")
        .and_then(|state| shared.pending.lock().ok()?.remove(state));
    let (Some((verifier, nonce)), Some(code)) = (pending, params.get("code")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "<p>Unknown or replayed sign-in response.</p>",
        );
    };
    let transport = shared.http.clone();
    let http = move |request| send(transport.clone(), request);
    let exchange = match shared
        .oidc
        .exchange_code(AuthorizationCode::new(code.clone()))
    {
        Ok(request) => {
            request
                .set_pkce_verifier(verifier)
                .request_async(&http)
                .await
        }
        Err(error) => {
            return page(
                StatusCode::BAD_GATEWAY,
                &format!("<p>{}</p>", escape(&error.to_string())),
            );
        }
    };
    let tokens = match exchange {
        Ok(tokens) => tokens,
        Err(error) => {
            return page(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "<p>Code exchange failed: {}</p>",
                    escape(&error.to_string())
                ),
            );
        }
    };
    let Some(id_token) = tokens.id_token() else {
        return page(StatusCode::BAD_GATEWAY, "<p>No id_token in the answer.</p>");
    };
    let verifier = shared.oidc.id_token_verifier();
    let Ok(claims) = id_token.claims(&verifier, &nonce) else {
        return page(
            StatusCode::BAD_GATEWAY,
            "<p>The id_token did not verify.</p>",
        );
    };
    // The raw claims (custom ones included) of the verified token.
    let raw: Value = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(base64_url_decode)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    let api = shared
        .http
        .get(format!(
            "{}{}",
            shared.config.api_url, shared.config.api_path
        ))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await;
    let api = match api {
        Ok(response) => format!(
            "{} {}",
            response.status().as_u16(),
            response.text().await.unwrap_or_default()
        ),
        Err(error) => format!("the API could not be reached: {error}"),
    };
    let body = format!(
        "<p id=\"welcome\">Signed in as <strong>{subject}</strong>.</p>\n<h2>id_token claims</h2>\n<pre id=\"claims\">{claims}</pre>\n<h2>GET {api_url}{api_path} with the access token</h2>\n<pre id=\"api\">{api}</pre>\n<p><a href=\"/\">Home</a></p>",
        subject = escape(claims.subject().as_str()),
        claims = escape(&serde_json::to_string_pretty(&raw).unwrap_or_default()),
        api_url = escape(&shared.config.api_url),
        api_path = escape(&shared.config.api_path),
        api = escape(&api),
    );
    page(StatusCode::OK, &body)
}

fn base64_url_decode(segment: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
}
