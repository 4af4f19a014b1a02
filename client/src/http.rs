//! Talking to the authorization server: the default client (timeouts, no redirects), which
//! URLs are acceptable, and bodies read up to a cap.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use url::{Host, Url};

use crate::error::Error;

/// The most a token response, error response or discovery document may weigh.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The client used unless the app gives its own: bounded waits, and no redirects — a token
/// endpoint that redirects is misconfigured, and following it would send the credentials on.
pub(crate) fn default_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scopegate-client/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Why `url` may not receive the client's credentials, if it may not: https is required,
/// except on loopback hosts or with the explicit opt-in.
pub(crate) fn refusal(url: &Url, allow_insecure_http: bool) -> Option<&'static str> {
    match url.scheme() {
        "https" => None,
        "http" if allow_insecure_http || is_loopback(url) => None,
        "http" => Some(
            "plain http is allowed only on loopback hosts (use https, or opt in with \
             dangerous_allow_insecure_http)",
        ),
        _ => Some("the scheme must be https"),
    }
    .or_else(|| url.fragment().map(|_| "a URL with a fragment"))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        None => false,
    }
}

pub(crate) fn transport(url: &Url, error: reqwest::Error) -> Error {
    Error::Transport {
        url: url.to_string(),
        source: Arc::new(error),
    }
}

/// The wait a `Retry-After` header asks for (RFC 9110 §10.2.3): a number of seconds, or an
/// HTTP date (a date already past asks for none). `None` when there is no such header or it is
/// neither.
pub(crate) fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Seconds beyond u64 are as good as forever; the caller caps the wait anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads `response`'s body, refusing it as soon as it is known to exceed [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    url: &Url,
) -> Result<Vec<u8>, Error> {
    let too_large = || Error::TooLarge {
        url: url.to_string(),
        limit: MAX_BODY_BYTES,
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport(url, error))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, allow_insecure_http: bool) -> bool {
        refusal(&Url::parse(url).unwrap(), allow_insecure_http).is_some()
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date_and_anything_else_is_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let header = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_str(value).unwrap(),
            );
            retry_after(&headers, now)
        };
        assert_eq!(header("120"), Some(Duration::from_secs(120)));
        assert_eq!(header(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            header("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        // 784111777 s is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example).
        assert_eq!(
            header("Sun, 06 Nov 1994 08:51:37 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            header("Sun, 06 Nov 1994 08:00:00 GMT"),
            Some(Duration::ZERO)
        );
        for junk in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(header(junk), None, "{junk:?}");
        }
        assert_eq!(retry_after(&http::HeaderMap::new(), now), None);
    }

    #[test]
    fn credentials_go_over_https_or_to_loopback_unless_opted_in() {
        assert!(!refused("https://idp.example.test/token", false));
        for loopback in [
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:1/token",
        ] {
            assert!(!refused(loopback, false), "{loopback}");
        }
        assert!(refused("http://idp.example.test/token", false));
        assert!(!refused("http://idp.example.test/token", true));
        assert!(refused("ftp://idp.example.test/token", true));
        assert!(refused("https://idp.example.test/token#x", false));
    }
}
