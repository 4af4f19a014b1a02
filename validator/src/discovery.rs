//! Finding the issuer's `jwks_uri`: OpenID Connect Discovery 1.0 §4, then RFC 8414.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use reqwest::Client;
use serde_json::Value;
use url::Url;

use crate::clock::Clock;
use crate::error::FetchError;
use crate::http::checked_url;
use crate::http::{self, Fetched};
use crate::json;
use crate::metrics::DiscoveryMetrics;

/// Where the metadata may live, tried in order: OIDC appends to the issuer, RFC 8414 §3
/// inserts the well-known segment before the issuer's path.
fn metadata_urls(issuer: &str) -> Result<Vec<Url>, FetchError> {
    let invalid = |problem: String| FetchError::InvalidDocument {
        url: issuer.to_owned(),
        problem,
    };
    let base = Url::parse(issuer).map_err(|error| invalid(error.to_string()))?;
    let path = base.path().trim_end_matches('/').to_owned();
    let mut oidc = base.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut rfc8414 = base;
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok(if oidc == rfc8414 {
        vec![oidc]
    } else {
        vec![oidc, rfc8414]
    })
}

/// The issuer metadata fields the validator uses.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub(crate) jwks_uri: Option<Url>,
    pub(crate) introspection_endpoint: Option<Url>,
}

/// Metadata and when it was fetched.
#[derive(Debug)]
struct Known {
    metadata: Arc<Metadata>,
    fetched_at: Duration,
}

/// The issuer's metadata, fetched when first needed and again once it is `refresh_after` old
/// (so an issuer that moves its `jwks_uri` is followed without a restart). Attempts are made
/// one at a time; after a failure, callers get that failure at once until the backoff has
/// passed, so an unreachable issuer is not asked by every waiting request in turn — or, when
/// metadata was fetched before, they keep using it.
#[derive(Debug)]
pub(crate) struct IssuerMetadata {
    issuer: String,
    http: Client,
    max_bytes: usize,
    allow_insecure_http: bool,
    clock: Arc<dyn Clock>,
    failure_backoff: Duration,
    refresh_after: Duration,
    known: ArcSwapOption<Known>,
    /// When the last attempt failed, and how.
    last_failure: tokio::sync::Mutex<Option<(Duration, FetchError)>>,
    metrics: DiscoveryMetrics,
}

impl IssuerMetadata {
    pub(crate) fn new(
        issuer: String,
        http: Client,
        max_bytes: usize,
        allow_insecure_http: bool,
        clock: Arc<dyn Clock>,
        failure_backoff: Duration,
        refresh_after: Duration,
    ) -> Self {
        Self {
            metrics: DiscoveryMetrics::register(&issuer),
            issuer,
            http,
            max_bytes,
            allow_insecure_http,
            clock,
            failure_backoff,
            refresh_after,
            known: ArcSwapOption::empty(),
            last_failure: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn is_known(&self) -> bool {
        self.known.load().is_some()
    }

    /// The metadata, if it has been fetched already (however old), without waiting.
    pub(crate) fn known(&self) -> Option<Arc<Metadata>> {
        self.known
            .load()
            .as_ref()
            .map(|known| Arc::clone(&known.metadata))
    }

    /// The metadata: fetched if never fetched or `refresh_after` old. A failed refresh keeps
    /// the metadata fetched before.
    pub(crate) async fn get(&self) -> Result<Arc<Metadata>, FetchError> {
        let fresh = |known: &Option<Arc<Known>>, now: Duration| {
            known
                .as_ref()
                .filter(|known| now < known.fetched_at.saturating_add(self.refresh_after))
                .map(|known| Arc::clone(&known.metadata))
        };
        if let Some(metadata) = fresh(&self.known.load_full(), self.clock.now()) {
            return Ok(metadata);
        }
        let mut last_failure = self.last_failure.lock().await;
        let now = self.clock.now();
        let current = self.known.load_full();
        if let Some(metadata) = fresh(&current, now) {
            return Ok(metadata);
        }
        let previous = current.map(|known| Arc::clone(&known.metadata));
        if let Some((at, error)) = &*last_failure
            && now < *at + self.failure_backoff
        {
            self.metrics.backoff.increment(1);
            return previous.ok_or_else(|| FetchError::BackingOff(Box::new(error.clone())));
        }
        match discover(
            &self.http,
            &self.issuer,
            self.max_bytes,
            self.allow_insecure_http,
        )
        .await
        {
            Ok(metadata) => {
                self.metrics.ok.increment(1);
                let metadata = Arc::new(metadata);
                self.known.store(Some(Arc::new(Known {
                    metadata: Arc::clone(&metadata),
                    fetched_at: now,
                })));
                *last_failure = None;
                Ok(metadata)
            }
            Err(error) => {
                self.metrics.failed.increment(1);
                *last_failure = Some((now, error.clone()));
                match previous {
                    Some(metadata) => {
                        tracing::warn!(
                            issuer = %self.issuer,
                            %error,
                            "could not refresh the issuer metadata; keeping the last one"
                        );
                        Ok(metadata)
                    }
                    None => Err(error),
                }
            }
        }
    }
}

/// Fetches the issuer's metadata and checks that it speaks for exactly this issuer.
async fn discover(
    client: &Client,
    issuer: &str,
    max_bytes: usize,
    allow_insecure_http: bool,
) -> Result<Metadata, FetchError> {
    let mut last_error = None;
    for url in metadata_urls(issuer)? {
        let body = match http::get(client, &url, max_bytes, None).await {
            Ok(Fetched::Body { body, .. }) => body,
            Ok(Fetched::NotModified { .. }) => unreachable_not_modified(&url)?,
            // 404 at the OIDC location: try RFC 8414's before giving up.
            Err(error @ FetchError::Status { status: 404, .. }) => {
                last_error = Some(error);
                continue;
            }
            Err(error) => return Err(error),
        };
        return read_metadata(&url, &body, issuer, allow_insecure_http);
    }
    Err(last_error.unwrap_or_else(|| FetchError::InvalidDocument {
        url: issuer.to_owned(),
        problem: "no metadata location".to_owned(),
    }))
}

fn unreachable_not_modified(url: &Url) -> Result<Vec<u8>, FetchError> {
    Err(FetchError::InvalidDocument {
        url: url.to_string(),
        problem: "304 to a request without If-None-Match".to_owned(),
    })
}

fn read_metadata(
    url: &Url,
    body: &[u8],
    issuer: &str,
    allow_insecure_http: bool,
) -> Result<Metadata, FetchError> {
    let invalid = |problem: String| FetchError::InvalidDocument {
        url: url.to_string(),
        problem,
    };
    let document = json::parse_object(body).map_err(invalid)?;
    // OIDC Discovery §4.3 / RFC 8414 §3.3: the issuer in the document must be identical to the
    // one asked for, or an attacker's metadata could stand in for the real issuer.
    match document.get("issuer") {
        Some(Value::String(found)) if found == issuer => {}
        Some(Value::String(found)) => {
            return Err(invalid(format!(
                "issuer {found:?} is not the configured {issuer:?}"
            )));
        }
        _ => return Err(invalid("no `issuer` string".to_owned())),
    }
    let endpoint = |name: &'static str| match document.get(name) {
        None => Ok(None),
        Some(Value::String(url)) => checked_url(name, url, allow_insecure_http)
            .map(Some)
            .map_err(|error| invalid(error.to_string())),
        Some(_) => Err(invalid(format!("`{name}` is not a string"))),
    };
    Ok(Metadata {
        jwks_uri: endpoint("jwks_uri")?,
        introspection_endpoint: endpoint("introspection_endpoint")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_locations_follow_oidc_then_rfc8414() {
        let urls = metadata_urls("https://idp.test/tenant/").unwrap();
        assert_eq!(
            urls[0].as_str(),
            "https://idp.test/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://idp.test/.well-known/oauth-authorization-server/tenant"
        );
        let urls = metadata_urls("https://idp.test").unwrap();
        assert_eq!(
            urls[0].as_str(),
            "https://idp.test/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://idp.test/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn metadata_for_another_issuer_is_refused() {
        let url = Url::parse("https://idp.test/.well-known/openid-configuration").unwrap();
        let body = br#"{"issuer":"https://idp.test/","jwks_uri":"https://idp.test/jwks"}"#;
        let error = read_metadata(&url, body, "https://idp.test", false).unwrap_err();
        assert!(
            error.to_string().contains("is not the configured"),
            "{error}"
        );
        let body = br#"{"issuer":"https://idp.test","jwks_uri":"http://evil.test/jwks"}"#;
        assert!(read_metadata(&url, body, "https://idp.test", false).is_err());
        let body = br#"{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}"#;
        let metadata = read_metadata(&url, body, "https://idp.test", false).unwrap();
        assert_eq!(metadata.jwks_uri.unwrap().as_str(), "https://idp.test/jwks");
    }
}
