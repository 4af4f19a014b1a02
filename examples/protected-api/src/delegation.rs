//! Calling another API on the caller's behalf (RFC 8693 token exchange): `GET /delegated`
//! exchanges the token the caller sent for one addressed to the downstream API, calls that
//! API's `/me` with it, and answers with what it said. The caller's token itself is never
//! forwarded: the downstream API only ever sees a token addressed to it, naming this API as
//! the actor.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use scopegate_validator::Validator;
use scopegate_validator::scope::ScopeError;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tower_scopegate::{Authenticated, ScopeLayer};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Largest answer read from the token service or the downstream API.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where `/delegated` calls, and how this API exchanges tokens for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Downstream {
    /// `DOWNSTREAM_URL`: the downstream API's base URL (its `/me` is called).
    pub url: String,
    /// `DOWNSTREAM_AUDIENCE`: the audience to ask for; unset, the token service's default for
    /// this client.
    pub audience: Option<String>,
    /// `DOWNSTREAM_SCOPE`: the scope to ask for; unset, every scope the exchange allows.
    pub scope: Option<String>,
    /// `EXCHANGE_CLIENT_ID` / `EXCHANGE_CLIENT_SECRET`: this API's client at the token
    /// service, with the `token_exchange` grant.
    pub client: (String, String),
}

/// The secret is never shown.
impl std::fmt::Debug for Downstream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Downstream")
            .field("url", &self.url)
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("client_id", &self.client.0)
            .finish_non_exhaustive()
    }
}

impl Downstream {
    /// Reads the `DOWNSTREAM_*` and `EXCHANGE_*` settings through `lookup`: `None` when none is
    /// set.
    ///
    /// # Errors
    /// A message naming what is missing when only some are set.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
        match (
            set("DOWNSTREAM_URL"),
            set("EXCHANGE_CLIENT_ID"),
            set("EXCHANGE_CLIENT_SECRET"),
        ) {
            (Some(url), Some(id), Some(secret)) => Ok(Some(Self {
                url: url.trim_end_matches('/').to_owned(),
                audience: set("DOWNSTREAM_AUDIENCE"),
                scope: set("DOWNSTREAM_SCOPE"),
                client: (id, secret),
            })),
            (None, None, None) => {
                if set("DOWNSTREAM_AUDIENCE").is_some() || set("DOWNSTREAM_SCOPE").is_some() {
                    return Err("DOWNSTREAM_AUDIENCE and DOWNSTREAM_SCOPE need DOWNSTREAM_URL, EXCHANGE_CLIENT_ID and EXCHANGE_CLIENT_SECRET".to_owned());
                }
                Ok(None)
            }
            _ => Err(
                "set all of DOWNSTREAM_URL, EXCHANGE_CLIENT_ID and EXCHANGE_CLIENT_SECRET, or none"
                    .to_owned(),
            ),
        }
    }
}

struct Delegation {
    downstream: Downstream,
    issuer: String,
    http: reqwest::Client,
    /// The token service's token endpoint, from its discovery document on first use.
    token_endpoint: OnceCell<String>,
}

/// `GET /delegated`, behind `akamai:social_profile:read`: the caller's token exchanged for
/// `downstream`, and `downstream`'s `/me` called with it. `?scope=` asks for another scope
/// than `DOWNSTREAM_SCOPE`.
///
/// # Errors
/// Never for this fixed scope (as [`app`](crate::app)).
pub fn routes(
    validator: &Validator,
    issuer: &str,
    downstream: Downstream,
) -> Result<Router, ScopeError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let shared = Arc::new(Delegation {
        downstream,
        issuer: issuer.trim_end_matches('/').to_owned(),
        http,
        token_endpoint: OnceCell::new(),
    });
    Ok(Router::new()
        .route(
            "/delegated",
            get(delegated).route_layer(ScopeLayer::all_of(
                validator,
                ["akamai:social_profile:read"],
            )?),
        )
        .with_state(shared))
}

async fn delegated(
    State(shared): State<Arc<Delegation>>,
    who: Authenticated,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    // The layer accepted this request's bearer token: the one to exchange.
    let Some(subject_token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return failed(
            StatusCode::BAD_REQUEST,
            "only a bearer token can be exchanged",
        );
    };
    let scope = query.get("scope").or(shared.downstream.scope.as_ref());
    let exchanged = match shared.exchange(subject_token, scope).await {
        Ok(exchanged) => exchanged,
        Err(answer) => return answer,
    };
    let Some(token) = exchanged["access_token"].as_str() else {
        return failed(StatusCode::BAD_GATEWAY, "the exchange answer has no token");
    };
    let called = shared
        .http
        .get(format!("{}/me", shared.downstream.url))
        .bearer_auth(token)
        .send()
        .await;
    let (status, body) = match called {
        Ok(answer) => {
            let status = answer.status().as_u16();
            (status, read_json(answer).await)
        }
        Err(error) => {
            tracing::warn!(%error, "the downstream API could not be reached");
            return failed(
                StatusCode::BAD_GATEWAY,
                "the downstream API could not be reached",
            );
        }
    };
    (
        StatusCode::OK,
        Json(json!({
            "sub": who.subject(),
            "exchanged_scope": exchanged["scope"],
            "downstream": { "status": status, "body": body },
        })),
    )
}

impl Delegation {
    /// The token endpoint, from discovery (once it answered).
    async fn token_endpoint(&self) -> Result<&str, (StatusCode, Json<Value>)> {
        self.token_endpoint
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let answer = self.http.get(&url).send().await.map_err(|error| {
                    tracing::warn!(%error, "discovery failed");
                    failed(
                        StatusCode::BAD_GATEWAY,
                        "the token service could not be reached",
                    )
                })?;
                read_json(answer).await["token_endpoint"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        failed(StatusCode::BAD_GATEWAY, "discovery names no token endpoint")
                    })
            })
            .await
            .map(String::as_str)
    }

    /// RFC 8693 §2.1, authenticated with `client_secret_basic`; the token service's answer,
    /// or the answer for the caller when it refused (its OAuth error passed on).
    async fn exchange(
        &self,
        subject_token: &str,
        scope: Option<&String>,
    ) -> Result<Value, (StatusCode, Json<Value>)> {
        let endpoint = self.token_endpoint().await?;
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", GRANT_TYPE)
                .append_pair("subject_token", subject_token)
                .append_pair("subject_token_type", ACCESS_TOKEN_TYPE);
            if let Some(audience) = &self.downstream.audience {
                form.append_pair("audience", audience);
            }
            if let Some(scope) = scope {
                form.append_pair("scope", scope);
            }
            form.finish()
        };
        let (id, secret) = &self.downstream.client;
        let answer = self
            .http
            .post(endpoint)
            .header(header::AUTHORIZATION, basic(id, secret))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(%error, "token exchange failed");
                failed(
                    StatusCode::BAD_GATEWAY,
                    "the token service could not be reached",
                )
            })?;
        let status = answer.status();
        let body = read_json(answer).await;
        if status.is_success() {
            return Ok(body);
        }
        // The caller's token or scope was refused (a 400): the caller learns why; anything
        // else is this API's problem with the token service.
        let error = body["error"].as_str().unwrap_or("unknown").to_owned();
        tracing::info!(%status, %error, "token exchange refused");
        let answer_status = if status == StatusCode::BAD_REQUEST
            && matches!(
                error.as_str(),
                "invalid_scope" | "invalid_request" | "invalid_target"
            ) {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_GATEWAY
        };
        Err((
            answer_status,
            Json(json!({
                "error": "exchange_refused",
                "exchange_error": error,
                "exchange_error_description": body["error_description"],
            })),
        ))
    }
}

/// `client_secret_basic` (RFC 6749 §2.3.1): id and secret form-encoded, then base64.
fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let encode =
        |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            encode(id),
            encode(secret)
        ))
    )
}

/// An answer's body as JSON (at most [`MAX_ANSWER_BYTES`]); `null` if it is not JSON.
async fn read_json(answer: reqwest::Response) -> Value {
    let too_long = answer
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64);
    if too_long {
        return Value::Null;
    }
    match answer.bytes().await {
        Ok(bytes) if bytes.len() <= MAX_ANSWER_BYTES => {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

fn failed(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": message })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    #[test]
    fn delegation_is_configured_all_or_nothing_and_the_secret_is_not_shown() {
        assert_eq!(Downstream::from_lookup(&lookup(&[])), Ok(None));
        let full = Downstream::from_lookup(&lookup(&[
            ("DOWNSTREAM_URL", "http://127.0.0.1:3002/"),
            ("EXCHANGE_CLIENT_ID", "api-a"),
            ("EXCHANGE_CLIENT_SECRET", "hush-hush"),
            ("DOWNSTREAM_SCOPE", "akamai:friends:read"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(full.url, "http://127.0.0.1:3002");
        assert_eq!(full.scope.as_deref(), Some("akamai:friends:read"));
        assert!(!format!("{full:?}").contains("hush-hush"));
        let half = Downstream::from_lookup(&lookup(&[("DOWNSTREAM_URL", "http://x")]));
        assert!(half.unwrap_err().contains("EXCHANGE_CLIENT_SECRET"));
        let stray = Downstream::from_lookup(&lookup(&[("DOWNSTREAM_SCOPE", "a:b:read")]));
        assert!(stray.unwrap_err().contains("DOWNSTREAM_URL"));
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        use base64::Engine;
        let header = basic("api a", "s:cr+t");
        let encoded = header.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"api+a:s%3Acr%2Bt");
    }
}
