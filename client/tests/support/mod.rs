//! An authorization server and an API in this process, on port 0, that count what they are
//! asked — to give the client answers the real token service never gives.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// What the token endpoint answers.
#[derive(Clone)]
pub enum Answer {
    /// `tok-<n>` for the n-th request, a Bearer token living `expires_in` seconds.
    Tokens { expires_in: u64 },
    /// This status, content type and body.
    Fixed {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// A 200 whose body is streamed (no `Content-Length`), `size` bytes of JSON-looking text.
    Streamed { size: usize },
    /// At `/token`, a 307 to this path of the server; there, tokens as `Tokens`.
    RedirectTo(&'static str),
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Clone)]
pub struct Server {
    pub url: String,
    answer: Arc<Mutex<Answer>>,
    discovered_issuer: Arc<Mutex<Option<String>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    token_requests: Arc<AtomicUsize>,
}

impl Server {
    pub async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = Self {
            url,
            answer: Arc::new(Mutex::new(answer)),
            discovered_issuer: Arc::new(Mutex::new(None)),
            seen: Arc::default(),
            token_requests: Arc::default(),
        };
        let handler = server.clone();
        let app = Router::new().fallback(move |method, uri, headers, body| {
            let server = handler.clone();
            async move { server.answer(method, uri, headers, body) }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.url)
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Makes the discovery document name `issuer` instead of this server.
    pub fn claim_issuer(&self, issuer: &str) {
        *self.discovered_issuer.lock().unwrap() = Some(issuer.to_owned());
    }

    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.seen.lock().unwrap().push(Seen {
            method,
            path: uri.path().to_owned(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if uri.path() == "/.well-known/openid-configuration" {
            let issuer = self
                .discovered_issuer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| self.url.clone());
            let document = serde_json::json!({
                "issuer": issuer,
                "token_endpoint": self.token_endpoint(),
            });
            return ([("content-type", "application/json")], document.to_string()).into_response();
        }
        let n = self.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        match self.answer.lock().unwrap().clone() {
            Answer::Tokens { expires_in } => {
                let body = serde_json::json!({
                    "access_token": format!("tok-{n}"),
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                });
                ([("content-type", "application/json")], body.to_string()).into_response()
            }
            Answer::Fixed {
                status,
                content_type,
                body,
            } => (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", content_type)],
                body,
            )
                .into_response(),
            Answer::RedirectTo(path) if uri.path() == "/token" => (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("{}{path}", self.url))],
            )
                .into_response(),
            Answer::RedirectTo(_) => {
                let body = serde_json::json!({
                    "access_token": format!("tok-{n}"),
                    "token_type": "Bearer",
                    "expires_in": 60,
                });
                ([("content-type", "application/json")], body.to_string()).into_response()
            }
            Answer::Streamed { size } => {
                let chunk = Bytes::from(vec![b' '; 1024]);
                let chunks = (0..size / 1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
            }
        }
    }
}

/// How the in-process API answers a bearer token.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// 200, echoing method and body.
    Accept,
    /// 401 with this `WWW-Authenticate`.
    Refuse(&'static str),
    /// 403 `insufficient_scope`.
    Forbid,
}

/// The challenge of an API refusing an invalid or expired token.
pub const INVALID_TOKEN: &str = r#"Bearer realm="api", error="invalid_token""#;

/// An API deciding by token (`verdict`), recording each call's token and body.
#[derive(Clone)]
pub struct Api {
    verdict: Arc<dyn Fn(&str) -> Verdict + Send + Sync>,
    calls: Arc<Mutex<Vec<(String, String)>>>,
}

impl Api {
    pub fn new(verdict: impl Fn(&str) -> Verdict + Send + Sync + 'static) -> Self {
        Self {
            verdict: Arc::new(verdict),
            calls: Arc::default(),
        }
    }

    /// (token, body) of each call, in order.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }

    pub fn answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (u16, Vec<(&'static str, &'static str)>, String) {
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let body = String::from_utf8_lossy(body).into_owned();
        self.calls
            .lock()
            .unwrap()
            .push((token.clone(), body.clone()));
        match (self.verdict)(&token) {
            Verdict::Accept => (200, vec![], format!("{method} {body}")),
            Verdict::Refuse(challenge) => {
                (401, vec![("www-authenticate", challenge)], String::new())
            }
            Verdict::Forbid => (
                403,
                vec![(
                    "www-authenticate",
                    r#"Bearer realm="api", error="insufficient_scope", scope="a:b:delete""#,
                )],
                String::new(),
            ),
        }
    }

    /// Serves this API over HTTP on port 0; its base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let api = self.clone();
        let app = Router::new().fallback(move |method: Method, headers: HeaderMap, body: Bytes| {
            let api = api.clone();
            async move {
                let (status, headers, body) = api.answer(&method, &headers, &body);
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}
