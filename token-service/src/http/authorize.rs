//! `GET /authorize` (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2) and the login form that
//! completes it (`POST /login`).
//!
//! Until the client and its redirect URI are known to be registered, errors are shown as a page
//! and never redirected; after that they go back to the client with `state` and `iss`
//! (RFC 9207). A browser with a live session gets its code at once unless `prompt=login` or
//! `max_age` asks for a fresh sign-in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State as Shared};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use scopegate_validator::ScopeSet;

use super::claims;
use super::form::Form;
use crate::State;
use crate::config::{Client, GrantType};
use crate::error::OAuthError;
use crate::grant::authorization_code::{self, CodeGrant, is_pkce_value};
use crate::secret::random_token;
use crate::session;
use crate::store::SessionRecord;

/// The cookie holding the login form's CSRF nonce.
pub(super) const LOGIN_NONCE_COOKIE: &str = "scopegate_login";

/// An authorization request that passed every check.
pub(super) struct Checked {
    pub(super) client: Arc<Client>,
    pub(super) grant: CodeGrant,
    pub(super) state: Option<String>,
    prompt_login: bool,
    pub(super) prompt_none: bool,
    max_age: Option<u64>,
}

/// How long after signing in the required-claims page may still complete a request that
/// demanded a fresh sign-in (`prompt=login`).
const FRESH_SIGN_IN_SECS: u64 = 600;

impl Checked {
    /// Whether `session`, signed in at `auth_time`, is recent enough for a request that is
    /// being completed after a page of ours (the required claims): within `max_age`, and for
    /// `prompt=login` within the last few minutes. `prompt=none` never shows a page.
    pub(super) fn may_complete_after_a_page(&self, session: &SessionRecord, now: u64) -> bool {
        let age = now.saturating_sub(session.auth_time);
        !self.prompt_none
            && self.max_age.is_none_or(|max_age| age <= max_age)
            && (!self.prompt_login || age <= FRESH_SIGN_IN_SECS)
    }
}

/// Why a request cannot proceed.
pub(super) enum Refusal {
    /// Shown to the user; the client is not trusted with a redirect.
    Page(StatusCode, String),
    /// Sent back to the client's redirect URI.
    Redirect(Response),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Page(status, message) => page(
                status,
                "Sign-in request refused",
                &format!("<p class=\"error\" role=\"alert\">{}</p>", escape(&message)),
            ),
            Self::Redirect(response) => response,
        }
    }
}

/// HTML-escapes text for element content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The headers of every page: no framing, no referrer, no caching, no sniffing.
fn secure_page(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"/assets/login.css\">\n</head>\n\
         <body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title)
    );
    secure_page((status, Html(html)).into_response())
}

/// The style sheet of the pages (served from here so that the CSP needs no inline style).
pub(super) async fn stylesheet() -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("login.css"),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Parses the query, refusing parameters sent twice (RFC 6749 §3.1).
pub(super) fn parameters(query: &str) -> (HashMap<String, String>, Vec<String>) {
    let mut values = HashMap::new();
    let mut repeated = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if value.is_empty() {
            continue;
        }
        if values
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            repeated.push(name.into_owned());
        }
    }
    (values, repeated)
}

/// A redirect back to the client with these parameters (and `iss`).
pub(super) fn redirect_to(state: &State, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in request refused",
            "<p class=\"error\">The application's redirect URI is not valid.</p>",
        );
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        query.append_pair("iss", &state.config().issuer);
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    secure_page(response)
}

pub(super) fn error_redirect(
    state: &State,
    redirect_uri: &str,
    client_state: Option<&str>,
    code: &str,
    description: &str,
) -> Refusal {
    let mut pairs = vec![("error", code), ("error_description", description)];
    if let Some(client_state) = client_state {
        pairs.push(("state", client_state));
    }
    Refusal::Redirect(redirect_to(state, redirect_uri, &pairs))
}

/// Checks an authorization request.
pub(super) async fn check(state: &State, query: &str) -> Result<Checked, Refusal> {
    let (values, repeated) = parameters(query);
    let get = |name: &str| values.get(name).map(String::as_str);
    let Some(client_id) = get("client_id") else {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            "The request names no client (client_id is missing).".into(),
        ));
    };
    let client = match state.registry().client(client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(Refusal::Page(
                StatusCode::BAD_REQUEST,
                "The application is not registered here.".into(),
            ));
        }
        Err(error) => {
            tracing::error!(%error, "store failure at /authorize");
            return Err(Refusal::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service cannot sign you in right now; try again shortly.".into(),
            ));
        }
    };
    // The redirect URI must be registered, exactly; nothing is redirected before this holds.
    let redirect_uri = match (get("redirect_uri"), client.redirect_uris.as_slice()) {
        (Some(uri), registered) if registered.iter().any(|known| known == uri) => uri.to_owned(),
        (None, [only]) => only.clone(),
        _ => {
            return Err(Refusal::Page(
                StatusCode::BAD_REQUEST,
                "The application asked to return to an address that is not registered for it."
                    .into(),
            ));
        }
    };
    let client_state = get("state");
    let refuse = |code: &str, description: &str| {
        error_redirect(state, &redirect_uri, client_state, code, description)
    };
    if let Some(name) = repeated.first() {
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
    if !client.grants.contains(&GrantType::AuthorizationCode) {
        return Err(refuse(
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    let scope = match get("scope")
        .map(ScopeSet::parse_space_separated)
        .transpose()
    {
        Ok(requested) => crate::grant::granted_scopes(&client, requested.as_ref())
            .map_err(|error: OAuthError| refuse("invalid_scope", &error.description))?,
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
    let max_age = match get("max_age").map(str::parse::<u64>).transpose() {
        Ok(max_age) => max_age,
        Err(_) => {
            return Err(refuse(
                "invalid_request",
                "max_age must be a number of seconds",
            ));
        }
    };
    Ok(Checked {
        grant: CodeGrant {
            client_id: client.id.clone(),
            redirect_uri,
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

/// Issues the code and sends the browser back to the client — unless the user must first
/// supply claims the client requires (`request` is the authorization request, for that page).
pub(super) async fn complete(
    state: &State,
    headers: &HeaderMap,
    request: &str,
    checked: &Checked,
    session: &SessionRecord,
) -> Response {
    if let Some(page) = claims::ask_if_missing(state, headers, request, checked, session).await {
        return page;
    }
    match authorization_code::issue_code(state, &checked.grant, session).await {
        Ok(code) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(client_state) = &checked.state {
                pairs.push(("state", client_state));
            }
            tracing::info!(client_id = %checked.client.id, sid = %session.sid, "authorization code issued");
            redirect_to(state, &checked.grant.redirect_uri, &pairs)
        }
        Err(error) => error_redirect(
            state,
            &checked.grant.redirect_uri,
            checked.state.as_deref(),
            "temporarily_unavailable",
            &error.description,
        )
        .into_response(),
    }
}

pub(super) async fn authorize(
    Shared(state): Shared<State>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let checked = match check(&state, &query).await {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    let session = match session::current(&state, &headers).await {
        Ok(session) => session,
        Err(error) => {
            tracing::error!(%error, "store failure reading the session");
            None
        }
    };
    let now = state.now();
    let fresh_enough = |session: &SessionRecord| {
        checked
            .max_age
            .is_none_or(|max_age| now.saturating_sub(session.auth_time) <= max_age)
    };
    match session {
        Some(session) if !checked.prompt_login && fresh_enough(&session) => {
            complete(&state, &headers, &query, &checked, &session).await
        }
        _ if checked.prompt_none => error_redirect(
            &state,
            &checked.grant.redirect_uri,
            checked.state.as_deref(),
            "login_required",
            "the user is not signed in",
        )
        .into_response(),
        _ => login_page(
            &state,
            &headers,
            &query,
            &checked.client,
            None,
            "",
            StatusCode::OK,
        ),
    }
}

/// The browser's CSRF nonce (its cookie's, or a new one) and the token for it.
pub(super) fn csrf_pair(state: &State, headers: &HeaderMap) -> (String, String) {
    let nonce = session::read_cookie(headers, LOGIN_NONCE_COOKIE)
        .filter(|nonce| nonce.len() == 43)
        .map_or_else(random_token, str::to_owned);
    let csrf = state.csrf_token(&nonce);
    (nonce, csrf)
}

/// A form posted by one of our pages (`what` names it in the refusals): readable, and carrying
/// the CSRF token for the browser's nonce cookie.
pub(super) fn posted_form(
    state: &State,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<Form, Box<Response>> {
    let Ok(form) = Form::parse(headers, body, &[]) else {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            format!("The {what} could not be read."),
        )
        .into_response()
        .into());
    };
    if csrf_ok(state, headers, &form) {
        Ok(form)
    } else {
        Err(Refusal::Page(
            StatusCode::FORBIDDEN,
            format!(
                "This {what} has expired or did not come from this site. Go back to the application and start again."
            ),
        )
        .into_response()
        .into())
    }
}

/// Whether a posted form carries the CSRF token for the browser's nonce cookie.
pub(super) fn csrf_ok(state: &State, headers: &HeaderMap, form: &Form) -> bool {
    match (
        session::read_cookie(headers, LOGIN_NONCE_COOKIE),
        form.get("csrf"),
    ) {
        (Some(nonce), Some(token)) => state.csrf_matches(nonce, token),
        _ => false,
    }
}

/// The sign-in form; `request` is the authorization request it completes.
fn login_page(
    state: &State,
    headers: &HeaderMap,
    request: &str,
    client: &Client,
    error: Option<&str>,
    username: &str,
    status: StatusCode,
) -> Response {
    let (nonce, csrf) = csrf_pair(state, headers);
    let alert = error.map_or_else(String::new, |error| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>\n",
            escape(error)
        )
    });
    let body = format!(
        "<p>Sign in to continue to <strong>{client}</strong>.</p>\n{alert}\
         <form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{username}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n\
         {signup}<p><a href=\"/password\">Change your password</a></p>",
        client = escape(&client.id),
        signup = if client.self_signup {
            format!(
                "<p>New here? <a href=\"/signup?{}\">Create an account</a></p>\n",
                escape(request)
            )
        } else {
            String::new()
        },
        request = escape(request),
        username = escape(username),
    );
    let mut response = page(status, "Sign in", &body);
    if let Some(cookie) = session::set_cookie(state, LOGIN_NONCE_COOKIE, &nonce, 3600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(super) async fn login(
    Shared(state): Shared<State>,
    connection: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match posted_form(&state, &headers, &body, "sign-in form") {
        Ok(form) => form,
        Err(refusal) => return *refusal,
    };
    let request = form.get("request").unwrap_or_default();
    let checked = match check(&state, request).await {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    let address = connection.map(|axum::Extension(ConnectInfo(address))| address.ip().to_string());
    let retry = |error: &str, status: StatusCode| {
        login_page(
            &state,
            &headers,
            request,
            &checked.client,
            Some(error),
            username,
            status,
        )
    };
    let blocked = match state
        .throttle()
        .blocked(username, address.as_deref(), state.now())
        .await
    {
        Ok(blocked) => blocked,
        Err(error) => {
            tracing::error!(%error, "store failure at sign-in");
            return retry(
                "The service cannot sign you in right now; try again shortly.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    if blocked {
        let mut response = retry(
            "Too many failed attempts. Wait a few minutes and try again.",
            StatusCode::TOO_MANY_REQUESTS,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("900"));
        return response;
    }
    let account = match state
        .users()
        .authenticate(state.secrets(), username, password)
        .await
    {
        Ok(account) => account,
        Err(error) => {
            tracing::error!(%error, "store failure at sign-in");
            return retry(
                "The service cannot sign you in right now; try again shortly.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let Some(account) = account else {
        state
            .throttle()
            .failed(username, address.as_deref(), state.now())
            .await;
        tracing::debug!("sign-in failed");
        // The same words whether the user exists or not.
        return retry("Wrong username or password.", StatusCode::UNAUTHORIZED);
    };
    let (cookie, session) = match session::start(&state, &account).await {
        Ok(started) => started,
        Err(error) => {
            tracing::error!(%error, "store failure starting a session");
            return retry(
                "The service cannot sign you in right now; try again shortly.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    tracing::info!(sid = %session.sid, "signed in");
    let mut response = complete(&state, &headers, request, &checked, &session).await;
    let ttl = state.config().session_ttl.as_secs();
    if let Some(cookie) = session::set_cookie(&state, session::cookie_name(&state), &cookie, ttl) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}
