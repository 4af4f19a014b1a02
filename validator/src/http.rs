//! Fetching documents from the issuer: one shared client, timeouts, a size cap, no redirects.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue,
    IF_NONE_MATCH,
};
use reqwest::{Client, StatusCode};
use url::{Host, Url};

use crate::error::{BuildError, FetchError};

/// What a GET brought back.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// `304 Not Modified` for the `ETag` we sent.
    NotModified { max_age: Option<Duration> },
    /// A `200` with its body.
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        max_age: Option<Duration>,
    },
}

/// Parses a URL that keys or documents are fetched from: https, or http on loopback, or http
/// anywhere with the explicit opt-in.
pub(crate) fn checked_url(
    field: &'static str,
    url: &str,
    allow_insecure_http: bool,
) -> Result<Url, BuildError> {
    let parsed = Url::parse(url).map_err(|error| BuildError::new(field, error.to_string()))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_insecure_http || is_loopback(&parsed) => Ok(parsed),
        "http" => Err(BuildError::new(
            field,
            "plain http is allowed only on loopback hosts (use https, or opt in with \
             dangerous_allow_insecure_http)",
        )),
        other => Err(BuildError::new(
            field,
            format!("unsupported scheme {other:?}"),
        )),
    }
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        None => false,
    }
}

pub(crate) fn client(connect_timeout: Duration, timeout: Duration) -> reqwest::Result<Client> {
    Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        // A redirect could send the fetch anywhere; issuers publish final URLs.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scopegate-validator/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// GETs `url`, reading at most `max_bytes` of body.
pub(crate) async fn get(
    client: &Client,
    url: &Url,
    max_bytes: usize,
    if_none_match: Option<&str>,
) -> Result<Fetched, FetchError> {
    let mut request = client.get(url.clone()).header(ACCEPT, "application/json");
    if let Some(etag) = if_none_match {
        request = request.header(IF_NONE_MATCH, etag);
    }
    let mut response = request
        .send()
        .await
        .map_err(|error| transport(url, error))?;
    let max_age = max_age(response.headers());
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && if_none_match.is_some() {
        return Ok(Fetched::NotModified { max_age });
    }
    if status != StatusCode::OK {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = read_body(&mut response, url, max_bytes).await?;
    Ok(Fetched::Body {
        body,
        etag,
        max_age,
    })
}

/// POSTs a form with an `Authorization` header and returns the `200` body, at most
/// `max_bytes` of it.
pub(crate) async fn post_form(
    client: &Client,
    url: &Url,
    authorization: &HeaderValue,
    form: &[(&str, &str)],
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = client
        .post(url.clone())
        .header(AUTHORIZATION, authorization.clone())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    body_of_ok(request, url, max_bytes).await
}

/// GETs `url` with an `Authorization` header and returns the `200` body, at most `max_bytes`
/// of it.
pub(crate) async fn get_authorized(
    client: &Client,
    url: &Url,
    authorization: &HeaderValue,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let request = client
        .get(url.clone())
        .header(AUTHORIZATION, authorization.clone())
        .header(ACCEPT, "application/json");
    body_of_ok(request, url, max_bytes).await
}

/// POSTs a JSON body with an `Authorization` header and returns the `200` body, at most
/// `max_bytes` of it; `timeout` replaces the client's total timeout (a held long poll needs
/// longer than a document fetch).
pub(crate) async fn post_json(
    client: &Client,
    url: &Url,
    authorization: &HeaderValue,
    body: Vec<u8>,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    let request = client
        .post(url.clone())
        .timeout(timeout)
        .header(AUTHORIZATION, authorization.clone())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    body_of_ok(request, url, max_bytes).await
}

/// Sends `request` and reads the body of a `200`; any other status is an error.
async fn body_of_ok(
    request: reqwest::RequestBuilder,
    url: &Url,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let mut response = request
        .send()
        .await
        .map_err(|error| transport(url, error))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    read_body(&mut response, url, max_bytes).await
}

fn transport(url: &Url, error: reqwest::Error) -> FetchError {
    FetchError::Transport {
        url: url.to_string(),
        message: error.without_url().to_string(),
    }
}

/// Reads a body, refusing it as soon as it is known to exceed `max_bytes`.
async fn read_body(
    response: &mut reqwest::Response,
    url: &Url,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        max: max_bytes,
    };
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport(url, error))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The freshness lifetime from `Cache-Control`: `max-age`, or zero for `no-cache`/`no-store`.
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(seconds) = argument.and_then(|argument| argument.parse::<u64>().ok())
            {
                found = Some(Duration::from_secs(seconds));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    fn cache_control(values: &[&str]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        }
        max_age(&headers)
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            cache_control(&["public, max-age=300"]),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            cache_control(&["MAX-AGE=\"60\""]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            cache_control(&["public", "max-age=5"]),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn no_cache_and_no_store_mean_zero() {
        assert_eq!(
            cache_control(&["max-age=300, no-cache"]),
            Some(Duration::ZERO)
        );
        assert_eq!(cache_control(&["no-store"]), Some(Duration::ZERO));
    }

    #[test]
    fn absent_or_garbled_max_age_means_unknown() {
        assert_eq!(cache_control(&[]), None);
        assert_eq!(cache_control(&["max-age=soon"]), None);
        assert_eq!(cache_control(&["max-age=-1"]), None);
    }
}
