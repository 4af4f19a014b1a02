//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1), checked. Until
//! the client and its redirect URI are known to be registered, nothing may be sent to that URI:
//! the error says which side of that line it falls on, and the HTTP side shows a page or
//! redirects accordingly (RFC 6749 §4.1.2.1).

use std::collections::HashMap;
use std::sync::Arc;

use scopegate_validator::ScopeSet;

use super::authorization_code::{CodeGrant, is_pkce_value};
use crate::State;
use crate::config::{Client, GrantType};
use crate::store::SessionRecord;

/// How long after signing in a page of ours (the required claims) may still complete a request
/// that demanded a fresh sign-in (`prompt=login`).
const FRESH_SIGN_IN_SECS: u64 = 600;

/// An authorization request that passed every check.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The client, registered.
    pub client: Arc<Client>,
    /// What the code will be issued for.
    pub grant: CodeGrant,
    /// The client's `state`, returned with the answer.
    pub state: Option<String>,
    /// `prompt=login`: a fresh sign-in is needed.
    pub prompt_login: bool,
    /// `prompt=none`: no page may be shown.
    pub prompt_none: bool,
    /// `max_age`, seconds.
    pub max_age: Option<u64>,
}

impl AuthorizationRequest {
    /// Whether a session signed in at `auth_time` may give a code without signing in again.
    #[must_use]
    pub fn session_is_fresh_enough(&self, session: &SessionRecord, now: u64) -> bool {
        !self.prompt_login
            && self
                .max_age
                .is_none_or(|max_age| now.saturating_sub(session.auth_time) <= max_age)
    }

    /// Whether `session` is recent enough for a request being completed after a page of ours:
    /// within `max_age`, and for `prompt=login` within the last few minutes. `prompt=none`
    /// never shows a page.
    #[must_use]
    pub fn may_complete_after_a_page(&self, session: &SessionRecord, now: u64) -> bool {
        let age = now.saturating_sub(session.auth_time);
        !self.prompt_none
            && self.max_age.is_none_or(|max_age| age <= max_age)
            && (!self.prompt_login || age <= FRESH_SIGN_IN_SECS)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The client or the redirect URI cannot be trusted: the user is told, nothing is sent to
    /// the client.
    Untrusted(String),
    /// The store failed before the client was known: the user is told to try again.
    Unavailable,
    /// The client and redirect URI are sound: the error goes back to the client (RFC 6749
    /// §4.1.2.1) with its `state`.
    ToClient {
        /// The registered redirect URI.
        redirect_uri: String,
        /// The client's `state`.
        state: Option<String>,
        /// The RFC 6749 error code.
        error: &'static str,
        /// `error_description`.
        description: String,
    },
}

/// An authorization request's parameters: single values, and the names sent more than once
/// (RFC 6749 §3.1: refused). Empty values count as absent.
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    values: HashMap<String, String>,
    repeated: Vec<String>,
}

impl Parameters {
    /// Parses a query string (`application/x-www-form-urlencoded`).
    #[must_use]
    pub fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if value.is_empty() {
                continue;
            }
            if parsed
                .values
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                parsed.repeated.push(name.into_owned());
            }
        }
        parsed
    }

    /// The value of `name`, if sent (once).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The first parameter sent more than once, if any.
    #[must_use]
    pub fn first_repeated(&self) -> Option<&str> {
        self.repeated.first().map(String::as_str)
    }
}

/// Checks an authorization request.
///
/// # Errors
///
/// [`RequestError`], saying whether the redirect URI can be trusted with the error.
pub async fn check(state: &State, query: &str) -> Result<AuthorizationRequest, RequestError> {
    let parameters = Parameters::parse(query);
    let get = |name: &str| parameters.get(name);
    let Some(client_id) = get("client_id") else {
        return Err(RequestError::Untrusted(
            "The request names no client (client_id is missing).".into(),
        ));
    };
    let client = match state.registry().client(client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(RequestError::Untrusted(
                "The application is not registered here.".into(),
            ));
        }
        Err(error) => {
            tracing::error!(%error, "store failure at /authorize");
            return Err(RequestError::Unavailable);
        }
    };
    // The redirect URI must be registered, exactly; nothing is redirected before this holds.
    let redirect_uri = match (
        get("redirect_uri"),
        client.settings.redirect_uris.as_slice(),
    ) {
        (Some(uri), registered) if registered.iter().any(|known| known == uri) => uri.to_owned(),
        (None, [only]) => only.clone(),
        _ => {
            return Err(RequestError::Untrusted(
                "The application asked to return to an address that is not registered for it."
                    .into(),
            ));
        }
    };
    let client_state = get("state");
    let refuse = |error: &'static str, description: &str| RequestError::ToClient {
        redirect_uri: redirect_uri.clone(),
        state: client_state.map(str::to_owned),
        error,
        description: description.to_owned(),
    };
    if let Some(name) = parameters.first_repeated() {
        return Err(refuse(
            "invalid_request",
            &format!("parameter `{name}` is repeated"),
        ));
    }
    match get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        None => return Err(refuse("invalid_request", "response_type is missing")),
    }
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(refuse(
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    let scope = match get("scope")
        .map(ScopeSet::parse_space_separated)
        .transpose()
    {
        Ok(requested) => super::granted_scopes(state, &client, requested.as_ref())
            .await
            .map_err(|error| refuse(error.code.as_str(), &error.description))?,
        Err(error) => return Err(refuse("invalid_scope", &error.to_string())),
    };
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(challenge), Some("S256")) if is_pkce_value(challenge) => Some(challenge.to_owned()),
        (Some(_), Some("S256")) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be 43 to 128 unreserved characters",
            ));
        }
        (Some(_), Some(_) | None) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
        (None, Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method without code_challenge",
            ));
        }
        (None, None) if client.is_public() => {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        (None, None) => None,
    };
    let prompts: Vec<&str> = get("prompt")
        .map(|prompt| prompt.split(' ').collect())
        .unwrap_or_default();
    let prompt_none = prompts.contains(&"none");
    let prompt_login = prompts.contains(&"login");
    if prompt_none && prompts.len() > 1 {
        return Err(refuse(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let Ok(max_age) = get("max_age").map(str::parse::<u64>).transpose() else {
        return Err(refuse(
            "invalid_request",
            "max_age must be a number of seconds",
        ));
    };
    // RFC 9449 §10: a SHA-256 JWK thumbprint, base64url (43 characters).
    let dpop_jkt = get("dpop_jkt");
    let is_thumbprint = |jkt: &str| {
        jkt.len() == 43
            && jkt
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    if dpop_jkt.is_some_and(|jkt| !is_thumbprint(jkt)) {
        return Err(refuse(
            "invalid_request",
            "dpop_jkt must be a SHA-256 JWK thumbprint (43 base64url characters)",
        ));
    }
    Ok(AuthorizationRequest {
        grant: CodeGrant {
            dpop_jkt: dpop_jkt.map(str::to_owned),
            client_id: client.id().to_owned(),
            redirect_uri: redirect_uri.clone(),
            scope,
            nonce: get("nonce").map(str::to_owned),
            code_challenge,
        },
        client,
        state: client_state.map(str::to_owned),
        prompt_login,
        prompt_none,
        max_age,
    })
}
