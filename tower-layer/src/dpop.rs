//! What a route needs to accept DPoP-bound tokens (RFC 9449): where clients reach it, which
//! schemes it takes, and the verifier that holds the rule (in the validator crate, shared with
//! any other framework).

use http::request::Parts;
use scopegate_validator::BuildError;
use scopegate_validator::dpop::{DpopVerifier, ExternalOrigin};

/// Which schemes a DPoP-aware route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DpopMode {
    /// Only `Authorization: DPoP <token>` with a proof; a bearer presentation is answered like
    /// no credentials, with a `DPoP` challenge.
    Required,
    /// `Bearer` for tokens bound to no key, `DPoP` for bound ones (the default, for moving
    /// clients over one by one). A bound token as `Bearer` is refused either way.
    #[default]
    Allowed,
}

/// DPoP for a [`ScopeLayer`](crate::ScopeLayer): see [`ScopeLayer::dpop`](crate::ScopeLayer::dpop).
///
/// Cheap to clone; clones share the verifier's replay cache, so build one per API and hand it
/// to every route.
///
/// ```
/// use std::time::Duration;
/// use scopegate_validator::Algorithm;
/// use scopegate_validator::dpop::{DpopNonces, DpopVerifier};
/// use tower_scopegate::{DpopMode, DpopSettings};
///
/// // Defaults: every asymmetric algorithm, a 60 s iat window, 100 000 remembered proofs,
/// // no nonces, Bearer still accepted for unbound tokens.
/// let simple = DpopSettings::new("https://api.example.com")?;
/// assert_eq!(simple.dpop_mode(), DpopMode::Allowed);
///
/// let strict = DpopSettings::new("https://api.example.com")?
///     .mode(DpopMode::Required)
///     .verifier(
///         DpopVerifier::builder()
///             .algorithms([Algorithm::ES256, Algorithm::EdDSA])
///             .window(Duration::from_secs(30))
///             .nonces(DpopNonces::random()?)
///             .build()?,
///     );
/// // Behind a proxy that strips `/api`, proofs name the URL clients call.
/// let proxied = DpopSettings::new("https://example.com/api")?;
/// assert_eq!(proxied.origin().url_for("/orders"), "https://example.com/api/orders");
/// assert!(DpopSettings::new("https://api.example.com/?v=1").is_err(), "no query");
/// # let _ = strict;
/// # Ok::<(), scopegate_validator::BuildError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DpopSettings {
    origin: ExternalOrigin,
    mode: DpopMode,
    verifier: DpopVerifier,
}

impl DpopSettings {
    /// DPoP for an API reached at `external_origin` (`scheme://host[:port]` as clients call
    /// it, plus the path prefix a reverse proxy strips, if any), in [`DpopMode::Allowed`],
    /// with a default [`DpopVerifier`].
    ///
    /// # Errors
    /// [`BuildError`] (field `external_origin`) unless it is an https origin (http on a
    /// loopback host) without query or fragment.
    ///
    /// # Security
    /// `htu` is rebuilt from this origin and the request's path, never from the `Host` header,
    /// which the client writes (RFC 9449 §4.3 step 9, §7.1).
    pub fn new(external_origin: &str) -> Result<Self, BuildError> {
        Ok(Self {
            origin: ExternalOrigin::parse(external_origin)?,
            mode: DpopMode::default(),
            verifier: DpopVerifier::builder().build()?,
        })
    }

    /// Which schemes are accepted (default [`DpopMode::Allowed`]).
    pub fn mode(mut self, mode: DpopMode) -> Self {
        self.mode = mode;
        self
    }

    /// The verifier (algorithms, iat window, replay cache size, nonces); share one between
    /// several settings to share its replay cache.
    pub fn verifier(mut self, verifier: DpopVerifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// The configured mode.
    #[must_use]
    pub fn dpop_mode(&self) -> DpopMode {
        self.mode
    }

    /// Where clients reach the API.
    #[must_use]
    pub fn origin(&self) -> &ExternalOrigin {
        &self.origin
    }

    /// The verifier in use.
    #[must_use]
    pub fn dpop_verifier(&self) -> &DpopVerifier {
        &self.verifier
    }

    pub(crate) fn requires_dpop(&self) -> bool {
        self.mode == DpopMode::Required
    }

    /// The URL a proof for this request must name: the external origin and the path the
    /// client sent (before any router nesting stripped a prefix).
    pub(crate) fn url_of(&self, request: &Parts) -> String {
        #[cfg(feature = "axum")]
        if let Some(axum::extract::OriginalUri(uri)) = request.extensions.get() {
            return self.origin.url_for(uri.path());
        }
        self.origin.url_for(request.uri.path())
    }
}
