//! `POST /token` (RFC 6749 §3.2).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use scopegate_validator::ScopeSet;

use super::client_auth::{self, Credentials, Proof};
use super::error::{DPOP_NONCE, no_store_json};
use super::form::Form;
use super::peer::Peer;
use crate::State;
use crate::config::{Client, GrantType};
use crate::credentials::{self, Verdict};
use crate::dpop;
use crate::error::{ErrorCode, OAuthError};
use crate::grant::{
    self, ClientCredentialsRequest, CodeExchange, CodeTokens, ExchangeRequest, RefreshRequest,
};
use crate::telemetry::metrics;
use crate::tokens::IssuedToken;

pub(super) async fn token(
    Shared(state): Shared<State>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match exchange(&state, &peer, &headers, &body).await {
        Ok(Answer {
            access: issued,
            id_token,
            refresh_token,
            issued_token_type,
        }) => {
            let mut response = no_store_json(&TokenResponse {
                access_token: &issued.access_token,
                token_type: issued.token_type(),
                expires_in: issued.expires_in,
                scope: &issued.scope,
                id_token: id_token.as_deref(),
                refresh_token: refresh_token.as_deref(),
                issued_token_type,
            });
            // RFC 9449 §8.2: the nonce to use next, so a client need not be refused for it.
            if let Some(nonce) = state.dpop_nonces().and_then(|nonces| {
                HeaderValue::from_str(&nonces.current(Duration::from_secs(state.now()))).ok()
            }) {
                response.headers_mut().insert(DPOP_NONCE, nonce);
            }
            response
        }
        Err(error) => {
            metrics::token_refused(error.code.as_str());
            error.into_response()
        }
    }
}

/// The successful token response's body (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3,
/// RFC 8693 §2.2.1), serialized as it is, without a JSON tree built first.
#[derive(serde::Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

/// What a grant issued.
struct Answer {
    access: IssuedToken,
    id_token: Option<String>,
    refresh_token: Option<String>,
    /// RFC 8693 §2.2.1, for a token exchange.
    issued_token_type: Option<&'static str>,
}

impl Answer {
    const fn access(access: IssuedToken) -> Self {
        Self {
            access,
            id_token: None,
            refresh_token: None,
            issued_token_type: None,
        }
    }

    fn user(tokens: CodeTokens) -> Self {
        Self {
            access: tokens.access,
            id_token: tokens.id_token,
            refresh_token: tokens.refresh_token,
            issued_token_type: None,
        }
    }
}

async fn exchange(
    state: &State,
    peer: &Peer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, OAuthError> {
    let form = Form::parse(headers, body, &["resource", "audience"])?;
    // The proof is checked first: a bad one costs no client authentication. It is spent once
    // the client is authenticated (`dpop::accept`).
    let proof = dpop::verify(state, dpop_proof(headers)?)?;
    let grant_type = form.require("grant_type")?;
    let grant_type = GrantType::parse(grant_type).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type `{grant_type}` is not supported"),
        )
    })?;
    match grant_type {
        GrantType::ClientCredentials => {
            let client = authenticate_client(state, peer, headers, &form).await?;
            within_rate(state, &client)?;
            let proof_key = dpop::accept(state, &client, proof).await?;
            let request = ClientCredentialsRequest {
                scope: requested_scope(&form)?,
                resources: form.all("resource").to_vec(),
                proof_key,
            };
            let access = grant::client_credentials(state, client, &request).await?;
            Ok(Answer::access(access))
        }
        GrantType::AuthorizationCode => {
            let client = identify_client(state, peer, headers, &form).await?;
            within_rate(state, &client)?;
            let proof_key = dpop::accept(state, &client, proof).await?;
            let exchange = CodeExchange {
                code: form.require("code")?.to_owned(),
                redirect_uri: form.get("redirect_uri").map(str::to_owned),
                code_verifier: form.get("code_verifier").map(str::to_owned),
                proof_key,
            };
            let tokens = grant::authorization_code(state, client, &exchange).await?;
            Ok(Answer::user(tokens))
        }
        GrantType::RefreshToken => {
            let client = identify_client(state, peer, headers, &form).await?;
            within_rate(state, &client)?;
            let proof_key = dpop::accept(state, &client, proof).await?;
            let request = RefreshRequest {
                refresh_token: form.require("refresh_token")?.to_owned(),
                scope: requested_scope(&form)?,
                proof_key,
            };
            let tokens = grant::refresh_token(state, client, &request).await?;
            Ok(Answer::user(tokens))
        }
        GrantType::TokenExchange => {
            let client = authenticate_client(state, peer, headers, &form).await?;
            within_rate(state, &client)?;
            let proof_key = dpop::accept(state, &client, proof).await?;
            let request = ExchangeRequest {
                subject_token: form.require("subject_token")?.to_owned(),
                subject_token_type: form.require("subject_token_type")?.to_owned(),
                actor_token: form.get("actor_token").map(str::to_owned),
                actor_token_type: form.get("actor_token_type").map(str::to_owned),
                requested_token_type: form.get("requested_token_type").map(str::to_owned),
                audiences: form.all("audience").to_vec(),
                resources: form.all("resource").to_vec(),
                scope: requested_scope(&form)?,
                proof_key,
            };
            let access = grant::token_exchange(state, client, &request).await?;
            Ok(Answer {
                issued_token_type: Some(grant::token_exchange::ACCESS_TOKEN_TYPE),
                ..Answer::access(access)
            })
        }
    }
}

/// The `DPoP` header's proof, if sent (RFC 9449 §4.1): one header of visible ASCII.
fn dpop_proof(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_dpop_proof("more than one DPoP header"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| OAuthError::invalid_dpop_proof("the DPoP header is not visible ASCII"))
}

/// Whether `client` is within its request rate (its own, or the service's default).
fn within_rate(state: &State, client: &Client) -> Result<(), OAuthError> {
    let rate = client
        .settings
        .rate_limit
        .unwrap_or(state.config().limits.client_rate_limit);
    state
        .rate_limits()
        .check(&format!("client:{}", client.id()), rate)
        .map_err(OAuthError::over_rate)
}

/// The `scope` parameter, if sent.
fn requested_scope(form: &Form) -> Result<Option<ScopeSet>, OAuthError> {
    form.get("scope")
        .map(|scope| {
            ScopeSet::parse_space_separated(scope)
                .map_err(|error| OAuthError::new(ErrorCode::InvalidScope, error.to_string()))
        })
        .transpose()
}

/// A confidential client authenticated by its secret or assertion, or a public client named
/// by its `client_id` (which then must prove itself with PKCE).
pub(super) async fn identify_client(
    state: &State,
    peer: &Peer,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Arc<Client>, OAuthError> {
    match client_auth::presented(headers, form)? {
        Some(Credentials {
            id,
            proof: Proof::Nothing,
        }) => match state.registry().client(&id).await? {
            Some(client) if client.is_public() => Ok(client),
            _ => Err(OAuthError::invalid_client()),
        },
        presented => authenticate(state, peer, presented).await,
    }
}

/// The party a credential check accepted, or the OAuth error for its refusal.
pub(super) fn accepted<T>(verdict: Verdict<T>) -> Result<T, OAuthError> {
    match verdict {
        Verdict::Accepted(party) => Ok(party),
        Verdict::Wrong => Err(OAuthError::invalid_client()),
        Verdict::Throttled { retry_after } => Err(OAuthError::slow_down(retry_after)),
        Verdict::Busy => Err(OAuthError::busy()),
    }
}

/// A confidential client, authenticated by its secret or its assertion.
pub(super) async fn authenticate_client(
    state: &State,
    peer: &Peer,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Arc<Client>, OAuthError> {
    authenticate(state, peer, client_auth::presented(headers, form)?).await
}

/// Checks the credentials a request presented (read once, by the caller).
async fn authenticate(
    state: &State,
    peer: &Peer,
    presented: Option<Credentials>,
) -> Result<Arc<Client>, OAuthError> {
    let Some(credentials) = presented else {
        return Err(OAuthError::invalid_client());
    };
    let verdict = match &credentials.proof {
        Proof::Nothing => return Err(OAuthError::invalid_client()),
        Proof::Secret(secret) => {
            credentials::client(state, &credentials.id, secret.expose(), peer.address()).await?
        }
        Proof::Assertion(assertion) => {
            credentials::client_assertion(state, &credentials.id, &assertion.0).await?
        }
    };
    accepted(verdict).inspect_err(|error| {
        tracing::debug!(client_id = %credentials.id, error = error.code.as_str(), "client authentication failed");
    })
}
