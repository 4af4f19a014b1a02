//! The token endpoint from the issuer's OpenID Connect discovery document (OpenID Connect
//! Discovery 1.0 §4), checked to be the issuer's own.

use http::header::ACCEPT;
use serde::Deserialize;
use url::Url;

use crate::error::Error;
use crate::http::{read_body, refusal, transport};

#[derive(Deserialize)]
struct Document {
    issuer: String,
    token_endpoint: String,
}

/// `issuer`'s token endpoint, read from `{issuer}/.well-known/openid-configuration`.
///
/// # Errors
/// [`Error::Transport`], [`Error::Status`], [`Error::TooLarge`], [`Error::Malformed`] for the
/// document; [`Error::IssuerMismatch`] when it names another issuer (§4.3);
/// [`Error::InsecureEndpoint`] for a token endpoint that may not receive credentials.
pub(crate) async fn token_endpoint(
    http: &reqwest::Client,
    issuer: &str,
    allow_insecure_http: bool,
) -> Result<Url, Error> {
    let url = document_url(issuer)?;
    tracing::debug!(%url, "reading the issuer's discovery document");
    let response = http
        .get(url.clone())
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| transport(&url, error))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Error::Status {
            url: url.to_string(),
            status,
            retry_after: crate::http::retry_after(response.headers(), std::time::SystemTime::now()),
        });
    }
    let body = read_body(response, &url).await?;
    let document: Document = serde_json::from_slice(&body).map_err(|error| Error::Malformed {
        url: url.to_string(),
        what: "discovery document",
        reason: "no issuer and token_endpoint strings".to_owned(),
        source: Some(error.into()),
    })?;
    if document.issuer != issuer {
        return Err(Error::IssuerMismatch {
            expected: issuer.to_owned(),
            found: document.issuer,
        });
    }
    let insecure = |reason| Error::InsecureEndpoint {
        url: document.token_endpoint.clone(),
        reason,
    };
    let endpoint = Url::parse(&document.token_endpoint).map_err(|_| insecure("not a URL"))?;
    if let Some(reason) = refusal(&endpoint, allow_insecure_http) {
        return Err(insecure(reason));
    }
    Ok(endpoint)
}

/// §4: a terminating `/` of the issuer is removed before the well-known path is appended.
fn document_url(issuer: &str) -> Result<Url, Error> {
    let text = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    // The issuer was checked to be a URL when the source was built.
    Url::parse(&text).map_err(|_| Error::InsecureEndpoint {
        url: text,
        reason: "not a URL",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_sits_under_the_issuer_path() {
        assert_eq!(
            document_url("https://idp.example.test/tenant/")
                .unwrap()
                .as_str(),
            "https://idp.example.test/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            document_url("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080/.well-known/openid-configuration"
        );
    }
}
