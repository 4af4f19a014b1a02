//! The page kit: every page of the service is built here — escaped text, one layout, the
//! protective headers (CSP, no framing, no referrer, no caching) — and so is every answer that
//! sends the browser back to a client.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::State;
use crate::grant::authorization_request::RequestError;

/// Why a request cannot proceed.
pub(crate) enum Refusal {
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

/// How long a caller turned away for want of a hashing slot is asked to wait.
pub(crate) const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A page refusing an attempt over a limit: its `Retry-After` says when the limit lifts.
pub(crate) fn too_many(mut response: Response, retry_after: std::time::Duration) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after.as_secs().max(1)),
    );
    response
}

/// An authorization request refused: a page while the redirect URI cannot be trusted, else a
/// redirect back to the client with the error, its `state` and `iss`.
pub(crate) fn request_refused(state: &State, error: RequestError) -> Response {
    match error {
        RequestError::Untrusted(message) => {
            Refusal::Page(StatusCode::BAD_REQUEST, message).into_response()
        }
        RequestError::Unavailable => Refusal::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service cannot sign you in right now; try again shortly.".into(),
        )
        .into_response(),
        RequestError::ToClient {
            redirect_uri,
            state: client_state,
            error,
            description,
        } => error_redirect(
            state,
            &redirect_uri,
            client_state.as_deref(),
            error,
            &description,
        )
        .into_response(),
    }
}

/// HTML-escapes text for element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
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

/// A page with `title` and `body` (already escaped), and the protective headers.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
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
pub(crate) async fn stylesheet() -> Response {
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

/// A redirect back to the client with these parameters (and `iss`).
pub(crate) fn redirect_to(state: &State, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
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

/// An error sent back to the client's (registered) redirect URI.
pub(crate) fn error_redirect(
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
