//! `ScopeLayer`: what a route requires, and how refusals are written.

use std::sync::Arc;

use scopegate_validator::scope::ScopeError;
use scopegate_validator::{Requirement, Validator};
use tower_layer::Layer;

use crate::metadata::ResourceMetadata;
use crate::response::{RejectionBody, ResponseOptions};
use crate::service::Scope;

/// Protects a service: every request needs a bearer token that the [`Validator`] accepts and
/// that satisfies the [`Requirement`].
///
/// Requirements are parsed here, when the layer is built: a bad scope string fails at
/// start-up, never per request.
///
/// ```no_run
/// # use scopegate_validator::{Algorithm, Validator};
/// # use tower_scopegate::ScopeLayer;
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let validator = Validator::builder()
///     .issuer("https://idp.example.com")
///     .audience("https://api.example.com")
///     .algorithms([Algorithm::RS256])
///     .build()?;
/// let read_profile = ScopeLayer::all_of(&validator, ["akamai:social_profile:read"])?;
/// let profile = ScopeLayer::method_derived(&validator, "akamai:social_profile")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ScopeLayer {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) validator: Validator,
    pub(crate) requirement: Requirement,
    pub(crate) options: Arc<ResponseOptions>,
    /// Whether `options` differ from the defaults; only then do they travel in the request
    /// extensions (handlers fall back to the defaults), which keeps the fast path lean.
    pub(crate) options_customized: bool,
    pub(crate) max_header_bytes: usize,
    /// [`ScopeLayer::optional`]: requests without credentials pass as anonymous.
    pub(crate) anonymous_allowed: bool,
    /// [`ScopeLayer::described_by`]: refusals of a missing token name the scopes needed.
    pub(crate) names_needed_scopes: bool,
}

impl ScopeLayer {
    /// A layer for this requirement.
    pub fn new(validator: &Validator, requirement: Requirement) -> Self {
        let max_header_bytes = 16 * 1024;
        Self {
            config: Arc::new(Config {
                validator: validator.clone(),
                requirement,
                options: Arc::new(ResponseOptions::default()),
                options_customized: false,
                max_header_bytes,
                anonymous_allowed: false,
                names_needed_scopes: false,
            }),
        }
    }

    /// Every one of these scopes is required.
    ///
    /// # Errors
    /// A scope string that is not a valid scope, or an empty list.
    pub fn all_of<I, S>(validator: &Validator, scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self::new(validator, Requirement::all_of(scopes)?))
    }

    /// At least one of these scopes is required.
    ///
    /// # Errors
    /// A scope string that is not a valid scope, or an empty list.
    pub fn any_of<I, S>(validator: &Validator, scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self::new(validator, Requirement::any_of(scopes)?))
    }

    /// One of several sets of scopes, each required in full (OR of AND). No sets denies all.
    ///
    /// # Errors
    /// A scope string that is not a valid scope, or an empty set.
    pub fn policy<I, J, S>(validator: &Validator, alternatives: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = J>,
        J: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self::new(validator, Requirement::policy(alternatives)?))
    }

    /// `prefix:name` with the permission taken from the HTTP method: GET/HEAD/OPTIONS → `read`,
    /// POST/PUT/PATCH → `write`, DELETE → `delete`; any other method is refused.
    ///
    /// # Errors
    /// Not a structured `prefix:name` scope without a suffix.
    pub fn method_derived(validator: &Validator, prefix_name: &str) -> Result<Self, ScopeError> {
        Ok(Self::new(
            validator,
            Requirement::method_derived(prefix_name)?,
        ))
    }

    /// Any token the validator accepts, whatever its scopes.
    pub fn any_valid_token(validator: &Validator) -> Self {
        Self::new(validator, Requirement::any_valid_token())
    }

    /// The `realm` of the challenges (default `api`). Only visible ASCII and spaces are kept:
    /// a header value can hold nothing else.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        let realm: String = realm
            .into()
            .chars()
            .filter(|character| matches!(character, ' '..='~'))
            .collect();
        self.options_mut().realm = Some(realm);
        self
    }

    /// Challenges without a `realm`.
    pub fn without_realm(mut self) -> Self {
        self.options_mut().realm = None;
        self
    }

    /// Tell clients why in `error_description` (off by default: the reasons help an attacker
    /// probe as much as they help a developer debug).
    pub fn error_description(mut self, include: bool) -> Self {
        self.options_mut().error_description = include;
        self
    }

    /// Shape the body of refusals (status and challenge stay as RFC 6750 says).
    pub fn rejection_body(mut self, body: impl RejectionBody) -> Self {
        self.options_mut().body = Some(Arc::new(body));
        self
    }

    /// Optional sign-in: a request with no `Authorization` header (and no token in the query)
    /// is served as anonymous — the inner service sees no principal, and the axum extractor
    /// `Option<Authenticated>` gives `None`. A request that presents anything is checked
    /// exactly as without this: an invalid, expired or malformed token, another scheme
    /// (`Basic`), or a token that does not meet the requirement is refused as usual, and an
    /// unreachable issuer is 503 — never a fall-back to anonymous.
    ///
    /// ```
    /// # use scopegate_validator::{Algorithm, Validator};
    /// # use tower_scopegate::ScopeLayer;
    /// # let validator = Validator::builder().issuer("https://idp.example.com")
    /// #     .audience("https://api.example.com").algorithms([Algorithm::ES256]).build().unwrap();
    /// // Anyone may read the catalogue; a signed-in caller is recognised.
    /// let catalogue = ScopeLayer::any_valid_token(&validator).optional();
    /// ```
    pub fn optional(mut self) -> Self {
        Arc::make_mut(&mut self.config).anonymous_allowed = true;
        self
    }

    /// Ties the route to its resource's RFC 9728 metadata: the requirement's scopes join the
    /// document's `scopes_supported` (so the list is derived from the requirements the routes
    /// are built with, never kept by hand), and every challenge names the
    /// document (`resource_metadata="…"`), a 401 for a missing token also the scopes the
    /// request needs (`scope="…"`), so that a client knowing only the API's URL can find the
    /// authorization server and ask it for the right token.
    pub fn described_by(mut self, metadata: &ResourceMetadata) -> Self {
        // Here rather than in `layer`: axum applies route layers lazily, at the first request.
        metadata.describe(&self.config.requirement);
        Arc::make_mut(&mut self.config).names_needed_scopes = true;
        self.options_mut().resource_metadata = Some(metadata.metadata_url().to_owned());
        self
    }

    /// `Authorization` headers longer than this are refused before anything is decoded
    /// (default 16 KiB).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_header_bytes = bytes;
        self
    }
}

impl ScopeLayer {
    fn options_mut(&mut self) -> &mut ResponseOptions {
        let config = Arc::make_mut(&mut self.config);
        config.options_customized = true;
        Arc::make_mut(&mut config.options)
    }
}

impl<S> Layer<S> for ScopeLayer {
    type Service = Scope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Scope::new(inner, Arc::clone(&self.config))
    }
}
