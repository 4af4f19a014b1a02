//! Finding the poll endpoint: the issuer's SSF configuration (SSF 1.0 §7.1) names the stream
//! configuration endpoint, whose answer for this API (§8.1.1, read with the API's credentials)
//! names the RFC 8936 delivery endpoint.

use reqwest::Client;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value};
use url::Url;

use crate::error::FetchError;
use crate::http::{self, Fetched, checked_url};
use crate::json;

/// RFC 8936: poll-based delivery.
pub(crate) const POLL_DELIVERY: &str = "urn:ietf:rfc:8936";

/// Where SSF 1.0 §7.1 puts the configuration: the well-known segment between host and path;
/// for an issuer with a path, also after it (as a proxy that strips a prefix serves it).
fn configuration_urls(issuer: &str) -> Result<Vec<Url>, FetchError> {
    let base = Url::parse(issuer).map_err(|error| FetchError::InvalidDocument {
        url: issuer.to_owned(),
        problem: error.to_string(),
    })?;
    let path = base.path().trim_end_matches('/').to_owned();
    let mut inserted = base.clone();
    inserted.set_path(&format!("/.well-known/ssf-configuration{path}"));
    let mut appended = base;
    appended.set_path(&format!("{path}/.well-known/ssf-configuration"));
    Ok(if inserted == appended {
        vec![inserted]
    } else {
        vec![inserted, appended]
    })
}

/// What discovery needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Discovery<'a> {
    pub(crate) http: &'a Client,
    pub(crate) issuer: &'a str,
    pub(crate) authorization: &'a HeaderValue,
    pub(crate) max_bytes: usize,
    pub(crate) allow_insecure_http: bool,
}

impl Discovery<'_> {
    /// The poll endpoint of this API's stream.
    pub(crate) async fn poll_endpoint(self) -> Result<Url, FetchError> {
        let configuration_endpoint = self.configuration_endpoint().await?;
        let body = http::get_authorized(
            self.http,
            &configuration_endpoint,
            self.authorization,
            self.max_bytes,
        )
        .await?;
        read_stream(&configuration_endpoint, &body, self.allow_insecure_http)
    }

    async fn configuration_endpoint(self) -> Result<Url, FetchError> {
        let mut last_error = None;
        for url in configuration_urls(self.issuer)? {
            let body = match http::get(self.http, &url, self.max_bytes, None).await {
                Ok(Fetched::Body { body, .. }) => body,
                Ok(Fetched::NotModified { .. }) => {
                    return Err(invalid(&url, "304 to a request without If-None-Match"));
                }
                Err(error @ FetchError::Status { status: 404, .. }) => {
                    last_error = Some(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            return read_configuration(&url, &body, self.issuer, self.allow_insecure_http);
        }
        Err(last_error.unwrap_or_else(|| invalid(&self.issuer, "no configuration location")))
    }
}

fn invalid(url: &impl ToString, problem: &str) -> FetchError {
    FetchError::InvalidDocument {
        url: url.to_string(),
        problem: problem.to_owned(),
    }
}

/// The transmitter configuration (SSF 1.0 §7.1): for exactly this issuer, delivering by poll.
fn read_configuration(
    url: &Url,
    body: &[u8],
    issuer: &str,
    allow_insecure_http: bool,
) -> Result<Url, FetchError> {
    let document = json::parse_object(body).map_err(|problem| invalid(url, &problem))?;
    // As for OIDC metadata: a document naming another issuer could stand in for this one's.
    if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(invalid(url, "`issuer` is not the configured issuer"));
    }
    if let Some(methods) = document.get("delivery_methods_supported")
        && !methods
            .as_array()
            .is_some_and(|methods| methods.iter().any(|method| method == POLL_DELIVERY))
    {
        return Err(invalid(
            url,
            "the transmitter does not deliver by RFC 8936 poll",
        ));
    }
    match document.get("configuration_endpoint") {
        Some(Value::String(endpoint)) => {
            checked_url("configuration_endpoint", endpoint, allow_insecure_http)
                .map_err(|error| invalid(url, &error.to_string()))
        }
        _ => Err(invalid(url, "no `configuration_endpoint` string")),
    }
}

/// The stream configuration (SSF 1.0 §8.1.1): one object, or a list of the receiver's streams
/// (the answer without `stream_id`), of which the first delivered by poll is taken.
fn read_stream(url: &Url, body: &[u8], allow_insecure_http: bool) -> Result<Url, FetchError> {
    let document: Value =
        serde_json::from_slice(body).map_err(|error| invalid(url, &error.to_string()))?;
    let by_poll = |stream: &Map<String, Value>| {
        stream
            .get("delivery")
            .and_then(|delivery| delivery.get("method"))
            .is_some_and(|method| method == POLL_DELIVERY)
    };
    let stream = match &document {
        Value::Object(stream) => Some(stream),
        Value::Array(streams) => streams
            .iter()
            .filter_map(Value::as_object)
            .find(|stream| by_poll(stream)),
        _ => None,
    }
    .ok_or_else(|| invalid(url, "not a stream configuration"))?;
    if !by_poll(stream) {
        return Err(invalid(url, "the stream is not delivered by RFC 8936 poll"));
    }
    match stream
        .get("delivery")
        .and_then(|delivery| delivery.get("endpoint_url"))
    {
        Some(Value::String(endpoint)) => checked_url("endpoint_url", endpoint, allow_insecure_http)
            .map_err(|error| invalid(url, &error.to_string())),
        _ => Err(invalid(url, "no `delivery.endpoint_url` string")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_configuration_is_found_between_host_and_path_then_after_the_path() {
        let urls = configuration_urls("https://idp.test").unwrap();
        assert_eq!(
            urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["https://idp.test/.well-known/ssf-configuration"]
        );
        let urls = configuration_urls("https://idp.test/api/").unwrap();
        assert_eq!(
            urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            [
                "https://idp.test/.well-known/ssf-configuration/api",
                "https://idp.test/api/.well-known/ssf-configuration",
            ]
        );
    }

    fn url() -> Url {
        Url::parse("https://idp.test/.well-known/ssf-configuration").unwrap()
    }

    #[test]
    fn a_configuration_must_be_this_issuers_and_deliver_by_poll() {
        let read = |document: Value| {
            read_configuration(
                &url(),
                document.to_string().as_bytes(),
                "https://idp.test",
                false,
            )
        };
        let good = json!({
            "issuer": "https://idp.test",
            "delivery_methods_supported": [POLL_DELIVERY],
            "configuration_endpoint": "https://idp.test/ssf/stream",
        });
        assert_eq!(
            read(good.clone()).unwrap().as_str(),
            "https://idp.test/ssf/stream"
        );
        let mut other = good.clone();
        other["issuer"] = json!("https://evil.test");
        assert!(read(other).is_err());
        let mut push_only = good.clone();
        push_only["delivery_methods_supported"] = json!(["urn:ietf:rfc:8935"]);
        assert!(read(push_only).is_err());
        let mut plain = good;
        plain["configuration_endpoint"] = json!("http://idp.test/ssf/stream");
        assert!(read(plain).is_err());
    }

    #[test]
    fn the_stream_names_the_poll_endpoint() {
        let read = |document: Value| read_stream(&url(), document.to_string().as_bytes(), false);
        let stream = json!({
            "stream_id": "https://api.test",
            "delivery": {"method": POLL_DELIVERY, "endpoint_url": "https://idp.test/ssf/poll"},
        });
        assert_eq!(
            read(stream.clone()).unwrap().as_str(),
            "https://idp.test/ssf/poll"
        );
        let push = json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://api.test/events"}});
        assert_eq!(
            read(json!([push.clone(), stream])).unwrap().as_str(),
            "https://idp.test/ssf/poll"
        );
        assert!(read(push).is_err());
        assert!(read(json!([])).is_err());
        assert!(read(json!("x")).is_err());
    }
}
