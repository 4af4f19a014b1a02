//! The required-claims page: after sign-in, a user without a value for a claim the client
//! requires (and the granted scopes release) is asked for it before the code is issued. Its
//! inputs are also the sign-up page's.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use super::Pages;
use super::cookies::nonce_cookie;
use super::cookies::set_cookie;
use super::csrf::csrf_pair;
use super::kit::{Refusal, error_redirect, escape, page};
use crate::State;
use crate::grant::authorization_request::AuthorizationRequest;
use crate::http::form::Form;
use crate::required_claims::{self, RequiredClaim};
use crate::store::SessionRecord;
use crate::users::Account;

/// The form field of a claim.
fn field_name(claim: &RequiredClaim) -> String {
    format!("claim.{}", claim.claim)
}

/// The HTML inputs for `claims`, with the values typed so far and their errors.
pub(crate) fn inputs(
    claims: &[RequiredClaim],
    form: Option<&Form>,
    errors: &[(String, String)],
) -> String {
    let mut html = String::new();
    for claim in claims {
        let name = field_name(claim);
        let id = format!("claim-{}", claim.claim);
        let value = form.and_then(|form| form.get(&name)).unwrap_or_default();
        let error = errors
            .iter()
            .find(|(claim_name, _)| *claim_name == claim.claim)
            .map(|(_, message)| message);
        let described = error.map_or_else(String::new, |_| {
            format!(
                " aria-invalid=\"true\" aria-describedby=\"{}-error\"",
                escape(&id)
            )
        });
        let autocomplete = match claim.claim.as_str() {
            "given_name" => "given-name",
            "family_name" => "family-name",
            "name" => "name",
            "nickname" => "nickname",
            "email" => "email",
            "phone_number" => "tel",
            "birthdate" => "bday",
            _ if claim.claim.contains("company") || claim.claim.contains("organization") => {
                "organization"
            }
            _ => "off",
        };
        let kind = match claim.claim.as_str() {
            "email" => "email",
            "phone_number" => "tel",
            _ => "text",
        };
        html.push_str(&format!(
            "<label for=\"{id}\">{label}</label>\n\
             <input id=\"{id}\" name=\"{name}\" type=\"{kind}\" autocomplete=\"{autocomplete}\" \
             maxlength=\"{max}\" required value=\"{value}\"{described}>\n",
            id = escape(&id),
            label = escape(&claim.label()),
            name = escape(&name),
            max = required_claims::MAX_VALUE_CHARS,
            value = escape(value),
        ));
        if let Some(message) = error {
            html.push_str(&format!(
                "<p class=\"error\" role=\"alert\" id=\"{id}-error\">{label} {message}.</p>\n",
                id = escape(&id),
                label = escape(&claim.label()),
                message = escape(message),
            ));
        }
    }
    html
}

/// Reads and checks the typed values of `claims`: the attributes to store, or the errors.
pub(crate) fn read_values(
    claims: &[RequiredClaim],
    form: &Form,
) -> Result<Map<String, Value>, Vec<(String, String)>> {
    let mut values = Map::new();
    let mut errors = Vec::new();
    for claim in claims {
        let typed = form.get(&field_name(claim)).unwrap_or_default();
        match required_claims::check_value(&claim.claim, typed) {
            Ok(value) => {
                values.insert(claim.attribute.clone(), Value::String(value));
                // A value the user typed is not one anybody verified.
                if let Some(verified) = match claim.claim.as_str() {
                    "email" => Some("email_verified"),
                    "phone_number" => Some("phone_number_verified"),
                    _ => None,
                } {
                    values.insert(verified.to_owned(), Value::Bool(false));
                }
            }
            Err(message) => errors.push((claim.claim.clone(), message)),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// The page asking for `missing`.
pub(crate) fn claims_page(
    state: &Pages,
    headers: &HeaderMap,
    request: &str,
    client_id: &str,
    missing: &[RequiredClaim],
    typed: Option<(&Form, &[(String, String)])>,
    status: StatusCode,
) -> Response {
    let (form, errors) = typed.map_or((None, &[][..]), |(form, errors)| (Some(form), errors));
    let (nonce, csrf) = csrf_pair(state, headers);
    let body = format!(
        "<p><strong>{client}</strong> needs a few more details before you continue.</p>\n\
         <form method=\"post\" action=\"/claims\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\n\
         {inputs}<button type=\"submit\">Continue</button>\n</form>",
        client = escape(client_id),
        request = escape(request),
        inputs = inputs(missing, form, errors),
    );
    let mut response = page(status, "A few more details", &body);
    if let Some(cookie) = set_cookie(state, nonce_cookie(state), &nonce, 3600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The claims the client requires for this request (under the claim scopes now) that
/// `account` lacks; the page to show when the claim scopes cannot be read.
pub(crate) async fn missing_for(
    state: &State,
    checked: &AuthorizationRequest,
    account: &Account,
) -> Result<Vec<RequiredClaim>, Response> {
    let custom = state.scopes().definitions().await.map_err(|error| {
        tracing::error!(%error, "store failure reading the claim scopes for required claims");
        unavailable()
    })?;
    let required = required_claims::required(custom.all(), &checked.client, &checked.grant.scope);
    Ok(required_claims::missing(required, &account.attributes))
}

pub(crate) fn unavailable() -> Response {
    Refusal::Page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service cannot sign you in right now; try again shortly.".into(),
    )
    .into_response()
}

/// `None` if the user has every claim the request needs; otherwise the page to show instead
/// of issuing the code.
pub(crate) async fn ask_if_missing(
    state: &Pages,
    headers: &HeaderMap,
    request: &str,
    checked: &AuthorizationRequest,
    session: &SessionRecord,
) -> Option<Response> {
    if checked.client.settings.required_claims.is_empty() {
        return None;
    }
    let account = match state.users().find_by_id(&session.user_id).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            return Some(
                Refusal::Page(
                    StatusCode::FORBIDDEN,
                    "This account no longer exists.".into(),
                )
                .into_response(),
            );
        }
        Err(error) => {
            tracing::error!(%error, "store failure reading the user for required claims");
            return Some(unavailable());
        }
    };
    let missing = match missing_for(state, checked, &account).await {
        Ok(missing) => missing,
        Err(response) => return Some(response),
    };
    if missing.is_empty() {
        return None;
    }
    // OpenID Connect Core §3.1.2.6: with prompt=none no page may be shown.
    if checked.prompt_none {
        return Some(
            error_redirect(
                state,
                &checked.grant.redirect_uri,
                checked.state.as_deref(),
                "interaction_required",
                "the user must supply details this client requires",
            )
            .into_response(),
        );
    }
    if account.configured {
        let labels: Vec<String> = missing.iter().map(RequiredClaim::label).collect();
        return Some(
            Refusal::Page(
                StatusCode::FORBIDDEN,
                format!(
                    "{} needs details your account does not have ({}), and this account can only \
                     be changed by the service's operator.",
                    checked.client.id(),
                    labels.join(", ")
                ),
            )
            .into_response(),
        );
    }
    Some(claims_page(
        state,
        headers,
        request,
        checked.client.id(),
        &missing,
        None,
        StatusCode::OK,
    ))
}
