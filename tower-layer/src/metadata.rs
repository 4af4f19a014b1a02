//! RFC 9728 protected resource metadata: the document at
//! `/.well-known/oauth-protected-resource` that tells a client which authorization servers
//! issue tokens for this API and which scopes it knows, and the `resource_metadata` parameter
//! that points 401 challenges to it.
//!
//! `scopes_supported` is not a hand-kept list: every [`ScopeLayer`](crate::ScopeLayer) that is
//! [described by](crate::ScopeLayer::described_by) the metadata adds the scopes of its
//! requirement.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use scopegate_validator::{Requirement, Validator};
use serde_json::{Value, json};
use tower_service::Service;
use url::Url;

/// The well-known path segment of RFC 9728 §3.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A resource identifier that RFC 9728 §2 does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource identifier {resource:?}: {problem}")]
pub struct InvalidResource {
    resource: String,
    problem: &'static str,
}

/// The metadata of one protected resource (RFC 9728), shared by the layers that protect its
/// routes and the service that publishes it.
///
/// ```
/// # use scopegate_validator::{Algorithm, Validator};
/// # use tower_scopegate::{ResourceMetadata, ScopeLayer};
/// # let validator = Validator::builder().issuer("https://idp.example.com")
/// #     .audience("https://api.example.com").algorithms([Algorithm::ES256]).build().unwrap();
/// let metadata = ResourceMetadata::new("https://api.example.com", &validator)
///     .unwrap()
///     .resource_name("Orders API");
/// let orders = ScopeLayer::method_derived(&validator, "shop:orders")
///     .unwrap()
///     .described_by(&metadata);
/// assert_eq!(
///     metadata.metadata_url(),
///     "https://api.example.com/.well-known/oauth-protected-resource"
/// );
/// // Mount `metadata.service()` at `metadata.path()` (with axum: `metadata.router()`).
/// ```
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    path: String,
    metadata_url: String,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    /// Filled by the layers described by this metadata.
    scopes: Arc<Mutex<BTreeSet<String>>>,
}

impl ResourceMetadata {
    /// The metadata of the resource `resource` (its URL, as clients call it), whose tokens come
    /// from the validator's issuer.
    ///
    /// # Errors
    /// [`InvalidResource`] unless `resource` is an `https` URL without query or fragment
    /// (RFC 9728 §2); `http` is allowed for loopback hosts only, for development.
    pub fn new(resource: &str, validator: &Validator) -> Result<Self, InvalidResource> {
        let invalid = |problem| InvalidResource {
            resource: resource.to_owned(),
            problem,
        };
        let url = Url::parse(resource).map_err(|_| invalid("not an absolute URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(address)) => address.is_loopback(),
            Some(url::Host::Ipv6(address)) => address.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(invalid("must use https (http only on a loopback host)")),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must have no query and no fragment"));
        }
        // §3.1: the well-known segment goes between the host and the resource's path.
        let resource_path = url.path().trim_end_matches('/');
        let path = format!("{WELL_KNOWN}{resource_path}");
        let metadata_url = format!("{}{path}", url.origin().ascii_serialization());
        Ok(Self {
            resource: resource.to_owned(),
            authorization_servers: validator.issuers().into_iter().map(str::to_owned).collect(),
            path,
            metadata_url,
            resource_name: None,
            resource_documentation: None,
            scopes: Arc::default(),
        })
    }

    /// Another authorization server whose tokens this resource accepts.
    #[must_use]
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// `resource_name`: a name for people.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// `resource_documentation`: where developers read about the API.
    #[must_use]
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// Where the document is served on this host: `/.well-known/oauth-protected-resource`,
    /// followed by the resource's path if it has one (RFC 9728 §3.1).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The document's full URL, as challenges name it in `resource_metadata`.
    #[must_use]
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    pub(crate) fn describe(&self, requirement: &Requirement) {
        let mut scopes = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        scopes.extend(
            requirement
                .scopes_named()
                .iter()
                .map(|scope| scope.as_str().to_owned()),
        );
    }

    /// The metadata document (RFC 9728 §2).
    #[must_use]
    pub fn document(&self) -> Value {
        let scopes: Vec<String> = self
            .scopes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let mut document = json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
            "scopes_supported": scopes,
        });
        if let Some(name) = &self.resource_name {
            document["resource_name"] = json!(name);
        }
        if let Some(url) = &self.resource_documentation {
            document["resource_documentation"] = json!(url);
        }
        document
    }

    /// A service answering `GET` and `HEAD` with the document (any path: mount it at
    /// [`path`](Self::path)), with responses of body type `ResBody`.
    #[must_use]
    pub fn service<ResBody>(&self) -> MetadataService<ResBody> {
        MetadataService {
            metadata: self.clone(),
            body: PhantomData,
        }
    }

    /// An axum router serving the document at [`path`](Self::path), to merge into the API's.
    #[cfg(feature = "axum")]
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        axum::Router::new().route_service(&self.path, self.service::<axum::body::Body>())
    }
}

/// Serves a [`ResourceMetadata`] document.
pub struct MetadataService<ResBody> {
    metadata: ResourceMetadata,
    body: PhantomData<fn() -> ResBody>,
}

impl<ResBody> Clone for MetadataService<ResBody> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            body: PhantomData,
        }
    }
}

impl<ResBody> fmt::Debug for MetadataService<ResBody> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("MetadataService")
            .field("path", &self.metadata.path)
            .finish()
    }
}

impl<B, ResBody: From<Bytes>> Service<Request<B>> for MetadataService<ResBody> {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let mut response = Response::new(ResBody::from(Bytes::new()));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ready(Ok(response));
        }
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(self.metadata.document().to_string())
        };
        let mut response = Response::new(ResBody::from(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use scopegate_validator::Algorithm;

    use super::*;

    fn validator() -> Validator {
        Validator::builder()
            .issuer("https://idp.example.com")
            .audience("api")
            .algorithms([Algorithm::ES256])
            .build()
            .unwrap()
    }

    #[test]
    fn the_well_known_segment_goes_before_the_resources_path() {
        let root = ResourceMetadata::new("https://api.example.com", &validator()).unwrap();
        assert_eq!(root.path(), "/.well-known/oauth-protected-resource");
        let nested =
            ResourceMetadata::new("https://api.example.com/v1/orders/", &validator()).unwrap();
        assert_eq!(
            nested.path(),
            "/.well-known/oauth-protected-resource/v1/orders"
        );
        assert_eq!(
            nested.metadata_url(),
            "https://api.example.com/.well-known/oauth-protected-resource/v1/orders"
        );
        let port = ResourceMetadata::new("http://127.0.0.1:3000", &validator()).unwrap();
        assert_eq!(
            port.metadata_url(),
            "http://127.0.0.1:3000/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn identifiers_rfc_9728_does_not_allow_are_refused() {
        for bad in [
            "http://api.example.com",
            "https://api.example.com/?x=1",
            "https://api.example.com/#f",
            "api.example.com",
        ] {
            assert!(ResourceMetadata::new(bad, &validator()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_document_names_the_issuer_and_the_described_scopes() {
        let metadata = ResourceMetadata::new("https://api.example.com", &validator())
            .unwrap()
            .resource_name("Orders");
        metadata.describe(&Requirement::method_derived("shop:orders").unwrap());
        metadata.describe(&Requirement::any_of(["shop:orders:read", "admin"]).unwrap());
        assert_eq!(
            metadata.document(),
            json!({
                "resource": "https://api.example.com",
                "authorization_servers": ["https://idp.example.com"],
                "bearer_methods_supported": ["header"],
                "scopes_supported": ["admin", "shop:orders:delete", "shop:orders:read",
                                     "shop:orders:write"],
                "resource_name": "Orders",
            })
        );
    }
}
