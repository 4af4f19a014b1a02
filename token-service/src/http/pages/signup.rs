//! Self sign-up (`GET`/`POST /signup`), for clients with `self_signup = true`: a page reached
//! from the sign-in page that creates the user (Argon2id), collects the claims the client
//! requires, signs them in and continues the authorization request. Throttled per client
//! address; CSRF-protected and served with the sign-in page's headers.

use axum::extract::{RawQuery, State as Shared};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use super::Pages;
use super::claims_form;
use super::cookies::{nonce_cookie, session_cookie, set_cookie};
use super::csrf::csrf_pair;
use super::finish::{complete, posted_request};
use super::kit::{Refusal, escape, page, request_refused, too_many};
use crate::State;
use crate::config::ConfigError;
use crate::directory::DirectoryError;
use crate::grant::authorization_request::{self, AuthorizationRequest};
use crate::http::form::Form;
use crate::http::peer::Peer;
use crate::required_claims::{self, RequiredClaim};
use crate::session;
use crate::throttle::Admission;
use crate::users;

/// What the person typed, and what is wrong with it.
#[derive(Default)]
struct Typed<'a> {
    form: Option<&'a Form>,
    alert: Option<String>,
    claim_errors: Vec<(String, String)>,
}

/// The claims the new account must have for this request (under the claim scopes now).
async fn required_for(
    state: &State,
    checked: &AuthorizationRequest,
) -> Result<Vec<RequiredClaim>, Response> {
    match state.scopes().definitions().await {
        Ok(custom) => Ok(required_claims::required(
            custom.all(),
            &checked.client,
            &checked.grant.scope,
        )),
        Err(error) => {
            tracing::error!(%error, "store failure reading the claim scopes for sign-up");
            Err(unavailable())
        }
    }
}

fn signup_page(
    state: &Pages,
    headers: &HeaderMap,
    request: &str,
    checked: &AuthorizationRequest,
    required: &[RequiredClaim],
    typed: &Typed<'_>,
    status: StatusCode,
) -> Response {
    let (nonce, csrf) = csrf_pair(state, headers);
    let username = typed
        .form
        .and_then(|form| form.get("username"))
        .unwrap_or_default();
    let alert = typed.alert.as_deref().map_or_else(String::new, |alert| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"signup-error\">{}</p>\n",
            escape(alert)
        )
    });
    let body = format!(
        "<p>Create an account to continue to <strong>{client}</strong>.</p>\n{alert}\
         <form method=\"post\" action=\"/signup\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{request_field}\">\n\
         <label for=\"username\">Username or email</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus \
         minlength=\"3\" maxlength=\"64\" value=\"{username}\">\n\
         <label for=\"password\">Password (at least {min} characters)</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" \
         minlength=\"{min}\" required>\n\
         <label for=\"confirm\">Password again</label>\n\
         <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" \
         minlength=\"{min}\" required>\n\
         {claims}<button type=\"submit\">Create account</button>\n</form>\n\
         <p>Have an account? <a href=\"/authorize?{request_link}\">Sign in</a></p>",
        client = escape(checked.client.id()),
        request_field = escape(request),
        request_link = escape(request),
        username = escape(username),
        min = users::MIN_PASSWORD_CHARS,
        claims = claims_form::inputs(required, typed.form, &typed.claim_errors),
    );
    let mut response = page(status, "Create an account", &body);
    if let Some(cookie) = set_cookie(state, nonce_cookie(state), &nonce, 3600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The refusal for a request whose client does not offer sign-up.
fn not_offered(checked: &AuthorizationRequest) -> Option<Response> {
    (!checked.client.settings.self_signup).then(|| {
        Refusal::Page(
            StatusCode::FORBIDDEN,
            "This application does not offer sign-up here.".into(),
        )
        .into_response()
    })
}

fn unavailable() -> Response {
    Refusal::Page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service cannot create your account right now; try again shortly.".into(),
    )
    .into_response()
}

/// `GET /signup?<the authorization request>`.
pub(super) async fn show(
    Shared(state): Shared<Pages>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let request = query.unwrap_or_default();
    let checked = match authorization_request::check(&state, &request).await {
        Ok(checked) => checked,
        Err(error) => return request_refused(&state, error),
    };
    if let Some(refusal) = not_offered(&checked) {
        return refusal;
    }
    let required = match required_for(&state, &checked).await {
        Ok(required) => required,
        Err(response) => return response,
    };
    signup_page(
        &state,
        &headers,
        &request,
        &checked,
        &required,
        &Typed::default(),
        StatusCode::OK,
    )
}

/// `POST /signup`.
pub(super) async fn create(
    Shared(state): Shared<Pages>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, checked) = match posted_request(&state, &headers, &body, "form").await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    if let Some(refusal) = not_offered(&checked) {
        return refusal;
    }
    let required = match required_for(&state, &checked).await {
        Ok(required) => required,
        Err(response) => return response,
    };
    let request = form.get("request").unwrap_or_default();
    let retry = |alert: &str, claim_errors: Vec<(String, String)>, status: StatusCode| {
        let typed = Typed {
            form: Some(&form),
            alert: (!alert.is_empty()).then(|| alert.to_owned()),
            claim_errors,
        };
        signup_page(
            &state, &headers, request, &checked, &required, &typed, status,
        )
    };

    // Every attempt counts against the address, successful or not.
    let now = state.now();
    let throttle = state.throttle();
    match throttle.sign_up(peer.address(), now).await {
        Ok(Admission::Admitted(_)) => {}
        Ok(Admission::Refused { retry_after }) => {
            return too_many(
                retry(
                    "Too many accounts were created from here. Wait a few minutes and try again.",
                    Vec::new(),
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                retry_after,
            );
        }
        Err(error) => {
            tracing::error!(%error, "store failure counting a sign-up");
            return unavailable();
        }
    }

    let username = form.get("username").unwrap_or_default().trim();
    let password = form.get("password").unwrap_or_default();
    if let Err(reason) = users::check_new_username(username) {
        return retry(&capitalized(&reason), Vec::new(), StatusCode::BAD_REQUEST);
    }
    if let Err(reason) = users::check_new_password(username, password) {
        return retry(&capitalized(&reason), Vec::new(), StatusCode::BAD_REQUEST);
    }
    if form.get("confirm") != Some(password) {
        return retry(
            "The two passwords differ.",
            Vec::new(),
            StatusCode::BAD_REQUEST,
        );
    }
    let mut attributes = match claims_form::read_values(&required, &form) {
        Ok(values) => values,
        Err(errors) => {
            return retry(
                "Some details are missing or not valid.",
                errors,
                StatusCode::BAD_REQUEST,
            );
        }
    };
    // A username that is an email address is also the account's (unverified) email.
    if required_claims::check_value("email", username).is_ok() && !attributes.contains_key("email")
    {
        attributes.insert("email".to_owned(), Value::String(username.to_owned()));
        attributes.insert("email_verified".to_owned(), Value::Bool(false));
    }

    // Only the fact that the name is taken, whether by a configured or a stored user.
    let taken = || {
        retry(
            "That username is taken; choose another.",
            Vec::new(),
            StatusCode::CONFLICT,
        )
    };
    let account = match state
        .directory()
        .create_user(username, password, attributes, now)
        .await
    {
        Ok(account) => account,
        // A name that is a client's id is as taken as a user's, and says no more.
        Err(DirectoryError::Taken { .. } | DirectoryError::Clash { .. }) => return taken(),
        Err(DirectoryError::Invalid(ConfigError::Invalid { reason, .. })) => {
            return retry(&capitalized(&reason), Vec::new(), StatusCode::BAD_REQUEST);
        }
        Err(error) => {
            tracing::error!(%error, "could not create an account at sign-up");
            return unavailable();
        }
    };
    tracing::info!(sub = %account.id, client_id = %checked.client.id(), "account created by sign-up");
    // From here on the account exists: a failure must not say it was not created.
    let created_but_not_signed_in = || {
        Refusal::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Your account was created, but you could not be signed in right now. Go back to the application and sign in.".into(),
        )
        .into_response()
    };
    let (cookie, session) = match session::start(&state, &account).await {
        Ok(started) => started,
        Err(error) => {
            tracing::error!(%error, "store failure starting a session");
            return created_but_not_signed_in();
        }
    };
    let mut response = complete(&state, &headers, request, &checked, &session).await;
    let ttl = state.config().session_ttl.as_secs();
    if let Some(cookie) = set_cookie(&state, session_cookie(&state), &cookie, ttl) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `the password …` → `The password ….`
fn capitalized(sentence: &str) -> String {
    let mut characters = sentence.chars();
    characters.next().map_or_else(String::new, |first| {
        format!("{}{}.", first.to_uppercase(), characters.as_str())
    })
}
