//! `ScopeLayer`: what a route requires, and how refusals are written.

use std::collections::HashMap;
use std::sync::Arc;

use scopegate_validator::scope::ScopeError;
use scopegate_validator::{Requirement, Validator};
use tower_layer::Layer;

use crate::dpop::DpopSettings;
use crate::metadata::ResourceMetadata;
use crate::metrics::Outcomes;
use crate::response::{DpopChallenge, RejectionBody, ResponseOptions};
use crate::service::Scope;

/// Protects a service: every request needs a bearer token that the [`Validator`] accepts and
/// that satisfies the [`Requirement`].
///
/// Requirements are parsed here, when the layer is built: a bad scope string fails at
/// start-up, never per request. The counters of `scopegate_auth_requests_total` are registered
/// here too, from the [`metrics`](https://docs.rs/metrics) recorder installed now: install the
/// exporter before building layers (see the crate's README).
///
/// ```
/// use axum::{Router, routing::get};
/// use scopegate_validator::{Algorithm, Validator};
/// use tower_scopegate::{Authenticated, ScopeLayer};
/// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let issuer = DocIssuer::new();
///
/// let validator = Validator::builder()
///     .issuer("https://idp.example.com")
///     .audience("https://api.example.com")
///     .algorithms([Algorithm::ES256])
/// #   .key_source(issuer.keys()) // the examples' issuer lives in this process
///     .build()?;
/// let app = Router::new().route(
///     "/profile",
///     get(|who: Authenticated| async move { format!("hello {}", who.subject().unwrap_or("?")) })
///         .route_layer(ScopeLayer::all_of(&validator, ["akamai:social_profile:read"])?),
/// );
///
/// let reader = issuer.token("https://api.example.com", "akamai:social_profile:read");
/// let stranger = issuer.token("https://api.example.com", "openid");
/// assert_eq!(call(&app, "GET", "/profile", Some(&reader)).await, (200, "hello jane".into()));
/// assert_eq!(call(&app, "GET", "/profile", Some(&stranger)).await.0, 403);
/// assert_eq!(call(&app, "GET", "/profile", None).await.0, 401);
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
    pub(crate) rule: Rule,
    /// [`ScopeLayer::per_path`]: the rule of each listed request path; `rule` (an empty policy:
    /// deny) for any other.
    pub(crate) per_path: Option<Arc<HashMap<String, Rule>>>,
    pub(crate) options: Arc<ResponseOptions>,
    /// Whether `options` differ from the defaults other than by DPoP's challenge; only then do
    /// they travel in a bearer request's extensions (handlers fall back to the defaults), which
    /// keeps the fast path lean. DPoP requests always carry them.
    pub(crate) options_customized: bool,
    pub(crate) max_header_bytes: usize,
    /// [`ScopeLayer::optional`]: requests without credentials pass as anonymous.
    pub(crate) anonymous_allowed: bool,
    /// [`ScopeLayer::described_by`]: refusals of a missing token name the scopes needed.
    pub(crate) names_needed_scopes: bool,
    /// [`ScopeLayer::dpop`]: DPoP-bound tokens with proofs are accepted.
    pub(crate) dpop: Option<DpopSettings>,
}

/// A requirement, and the counters of the outcomes of the requests it judges.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) requirement: Requirement,
    pub(crate) outcomes: Arc<Outcomes>,
}

impl Rule {
    /// The counters are registered here, when the layer is built: install the exporter first.
    fn new(requirement: Requirement) -> Self {
        let outcomes = Arc::new(Outcomes::register(&requirement));
        Self {
            requirement,
            outcomes,
        }
    }
}

impl ScopeLayer {
    /// A layer for this requirement.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// use scopegate_validator::Requirement;
    ///
    /// let requirement = Requirement::all_of(["reports:all:read"])?;
    /// let app = Router::new()
    ///     .route("/reports", get(|| async { "reports" }))
    ///     .layer(ScopeLayer::new(&validator, requirement));
    /// assert_eq!(call(&app, "GET", "/reports", Some(&token("reports:all:read"))).await.0, 200);
    /// assert_eq!(call(&app, "GET", "/reports", Some(&token("reports:all:write"))).await.0, 403);
    /// # Ok(()) }
    /// ```
    pub fn new(validator: &Validator, requirement: Requirement) -> Self {
        let max_header_bytes = 16 * 1024;
        Self {
            config: Arc::new(Config {
                validator: validator.clone(),
                rule: Rule::new(requirement),
                per_path: None,
                options: Arc::new(ResponseOptions::default()),
                options_customized: false,
                max_header_bytes,
                anonymous_allowed: false,
                names_needed_scopes: false,
                dpop: None,
            }),
        }
    }

    /// Every one of these scopes is required.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// let app = Router::new().route(
    ///     "/orders",
    ///     get(|| async { "orders" })
    ///         .route_layer(ScopeLayer::all_of(&validator, ["shop:orders:read", "shop:customers:read"])?),
    /// );
    /// let both = token("shop:orders:read shop:customers:read");
    /// assert_eq!(call(&app, "GET", "/orders", Some(&both)).await.0, 200);
    /// assert_eq!(call(&app, "GET", "/orders", Some(&token("shop:orders:read"))).await.0, 403);
    /// # Ok(()) }
    /// ```
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
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// let app = Router::new().route(
    ///     "/orders",
    ///     get(|| async { "orders" })
    ///         .route_layer(ScopeLayer::any_of(&validator, ["shop:orders:read", "shop:admin"])?),
    /// );
    /// assert_eq!(call(&app, "GET", "/orders", Some(&token("shop:admin:write"))).await.0, 200);
    /// assert_eq!(call(&app, "GET", "/orders", Some(&token("openid"))).await.0, 403);
    /// # Ok(()) }
    /// ```
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
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// let policy = ScopeLayer::policy(
    ///     &validator,
    ///     [vec!["shop:orders:read", "shop:customers:read"], vec!["shop:admin:*"]],
    /// )?;
    /// let app = Router::new().route("/orders", get(|| async { "orders" }).route_layer(policy));
    /// assert_eq!(call(&app, "GET", "/orders", Some(&token("shop:admin:*"))).await.0, 200);
    /// assert_eq!(call(&app, "GET", "/orders", Some(&token("shop:orders:read"))).await.0, 403);
    /// # Ok(()) }
    /// ```
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
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// let app = Router::new().route(
    ///     "/profile",
    ///     get(|| async { "read" })
    ///         .put(|| async { "written" })
    ///         .route_layer(ScopeLayer::method_derived(&validator, "akamai:social_profile")?),
    /// );
    /// let reader = token("akamai:social_profile:read");
    /// assert_eq!(call(&app, "GET", "/profile", Some(&reader)).await.0, 200);
    /// assert_eq!(call(&app, "PUT", "/profile", Some(&reader)).await.0, 403);
    /// let owner = token("akamai:social_profile:*");
    /// assert_eq!(call(&app, "PUT", "/profile", Some(&owner)).await.0, 200);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Not a structured `prefix:name` scope without a suffix.
    pub fn method_derived(validator: &Validator, prefix_name: &str) -> Result<Self, ScopeError> {
        Ok(Self::new(
            validator,
            Requirement::method_derived(prefix_name)?,
        ))
    }

    /// A requirement per request path — for gRPC, per method (`/package.Service/Method`); a
    /// path not listed is refused (403, or `PERMISSION_DENIED` with [`grpc`](Self::grpc)):
    /// a method added to the service without a requirement fails closed.
    ///
    /// ```
    /// use scopegate_validator::Requirement;
    /// use tower_scopegate::ScopeLayer;
    /// # let validator = scopegate_validator::Validator::builder().issuer("https://idp.example.com")
    /// #     .audience("api").algorithms([scopegate_validator::Algorithm::ES256]).build().unwrap();
    /// let orders = ScopeLayer::per_path(
    ///     &validator,
    ///     [
    ///         ("/shop.Orders/Get", Requirement::all_of(["shop:orders:read"])?),
    ///         ("/shop.Orders/Cancel", Requirement::all_of(["shop:orders:write"])?),
    ///     ],
    /// )
    /// .grpc();
    /// # Ok::<(), scopegate_validator::scope::ScopeError>(())
    /// ```
    pub fn per_path<P: Into<String>>(
        validator: &Validator,
        requirements: impl IntoIterator<Item = (P, Requirement)>,
    ) -> Self {
        let per_path: HashMap<String, Rule> = requirements
            .into_iter()
            .map(|(path, requirement)| (path.into(), Rule::new(requirement)))
            .collect();
        let mut layer = Self::new(validator, Requirement::deny_all());
        Arc::make_mut(&mut layer.config).per_path = Some(Arc::new(per_path));
        layer
    }

    /// Answer refusals as gRPC does (a "trailers-only" response: HTTP 200 with `grpc-status`
    /// 16 `UNAUTHENTICATED` for a missing, malformed or invalid token, 7 `PERMISSION_DENIED`
    /// for a missing scope, 14 `UNAVAILABLE` when the issuer cannot be reached), the RFC 6750
    /// challenge still in `www-authenticate`: a gRPC client cannot read an HTTP 401.
    pub fn grpc(mut self) -> Self {
        self.options_mut().grpc = true;
        self
    }

    /// Any token the validator accepts, whatever its scopes.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// let app = Router::new()
    ///     .route("/me", get(|| async { "me" }).route_layer(ScopeLayer::any_valid_token(&validator)));
    /// assert_eq!(call(&app, "GET", "/me", Some(&token("openid"))).await.0, 200);
    /// assert_eq!(call(&app, "GET", "/me", Some("not.a.token")).await.0, 401);
    /// # Ok(()) }
    /// ```
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
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// use tower_scopegate::Authenticated;
    ///
    /// // Anyone may read the catalogue; a signed-in caller is recognised.
    /// let greeting = |who: Option<Authenticated>| async move {
    ///     who.and_then(|who| who.subject().map(str::to_owned)).unwrap_or_else(|| "guest".into())
    /// };
    /// let app = Router::new().route(
    ///     "/catalogue",
    ///     get(greeting).route_layer(ScopeLayer::any_valid_token(&validator).optional()),
    /// );
    /// assert_eq!(call(&app, "GET", "/catalogue", None).await, (200, "guest".into()));
    /// assert_eq!(call(&app, "GET", "/catalogue", Some(&token("openid"))).await, (200, "jane".into()));
    /// // A presented token is checked all the same: a bad one is refused, not anonymous.
    /// assert_eq!(call(&app, "GET", "/catalogue", Some("not.a.token")).await.0, 401);
    /// # Ok(()) }
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
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::ScopeLayer;
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// # let token = |scope: &str| issuer.token("https://api.example.com", scope);
    /// use tower_scopegate::ResourceMetadata;
    ///
    /// let metadata = ResourceMetadata::new("https://api.example.com", &validator)?;
    /// let app = Router::new()
    ///     .route(
    ///         "/profile",
    ///         get(|| async { "profile" }).route_layer(
    ///             ScopeLayer::method_derived(&validator, "akamai:social_profile")?
    ///                 .described_by(&metadata),
    ///         ),
    ///     )
    ///     .merge(metadata.router());
    /// let (status, document) = call(&app, "GET", "/.well-known/oauth-protected-resource", None).await;
    /// assert_eq!(status, 200);
    /// assert!(document.contains(r#""scopes_supported":["akamai:social_profile:delete""#));
    /// // A 401 names the scope and the metadata (see the response table).
    /// assert_eq!(call(&app, "GET", "/profile", None).await.0, 401);
    /// # Ok(()) }
    /// ```
    pub fn described_by(mut self, metadata: &ResourceMetadata) -> Self {
        // Here rather than in `layer`: axum applies route layers lazily, at the first request.
        metadata.describe(&self.config.rule.requirement);
        for rule in self.config.per_path.iter().flat_map(|paths| paths.values()) {
            metadata.describe(&rule.requirement);
        }
        Arc::make_mut(&mut self.config).names_needed_scopes = true;
        self.options_mut().resource_metadata = Some(metadata.metadata_url().to_owned());
        self
    }

    /// Accept DPoP-bound access tokens (RFC 9449): `Authorization: DPoP <token>` with exactly
    /// one `DPoP` proof header, checked by the settings' verifier against the request's method
    /// and its URL — the settings' external origin followed by the path the client sent (with
    /// axum, the path before any `nest` stripped a prefix) — after the token is validated as
    /// usual. With [`DpopMode::Allowed`](crate::DpopMode::Allowed) (the default) tokens bound
    /// to no key are still accepted as `Bearer`; with `Required`, only `DPoP` is.
    ///
    /// Refusals say so (RFC 9449 §7.1): 401 with a `DPoP` challenge naming the accepted
    /// algorithms (`algs="ES256 …"`) and `error="invalid_dpop_proof"` for a proof that is
    /// missing, doubled, malformed, replayed, for another request or made with another key than
    /// the token's; `error="use_dpop_nonce"` and a `DPoP-Nonce` header when nonces are on and
    /// the proof lacks one of the moment (every 401 then carries a `DPoP-Nonce`, and so does a
    /// success whose proof used a nonce that is no longer the current one). When both schemes
    /// are accepted every 401 carries both challenges; a 403 only the scheme the client used.
    ///
    /// Without this setting a route accepts `Bearer` only — and on every route, with or without
    /// it, a token bound to a key (any `cnf` claim) presented as `Bearer` is refused with
    /// `invalid_token` (RFC 9449 §7.2).
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_scopegate::{DpopSettings, ScopeLayer};
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/doc.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let issuer = DocIssuer::new();
    /// # let validator = doc_validator(&issuer);
    /// let dpop = DpopSettings::new("https://api.example.com")?;
    /// let app = Router::new().route(
    ///     "/orders",
    ///     get(|| async { "orders" })
    ///         .route_layer(ScopeLayer::any_valid_token(&validator).dpop(dpop.clone())),
    /// );
    /// // A proof for this request, made with the key the token is bound to:
    /// # let client = DocDpopClient::new();
    /// let token = issuer.bound_token("https://api.example.com", "openid", &client.thumbprint());
    /// let proof = client.proof("GET", "https://api.example.com/orders", &token);
    /// assert_eq!(call_dpop(&app, "GET", "/orders", &token, &proof).await.0, 200);
    /// // The same proof again is a replay; the bound token as a bearer token is refused.
    /// assert_eq!(call_dpop(&app, "GET", "/orders", &token, &proof).await.0, 401);
    /// assert_eq!(call(&app, "GET", "/orders", Some(&token)).await.0, 401);
    /// # Ok(()) }
    /// ```
    ///
    /// # Security
    /// A proof costs one signature verification per request: it cannot be cached, since each
    /// is good once. Replays are caught in this process only; see
    /// [`ReplayCache`](scopegate_validator::dpop::ReplayCache).
    pub fn dpop(mut self, settings: DpopSettings) -> Self {
        let challenge = DpopChallenge::new(
            settings.requires_dpop(),
            settings.dpop_verifier().algorithms(),
        );
        let config = Arc::make_mut(&mut self.config);
        // Not `options_mut`: DPoP alone does not make bearer requests carry the options.
        Arc::make_mut(&mut config.options).dpop = Some(challenge);
        config.dpop = Some(settings);
        self
    }

    /// `Authorization` (and `DPoP`) headers longer than this are refused before anything is
    /// decoded (default 16 KiB).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_header_bytes = bytes;
        self
    }
}

impl Config {
    /// The rule of a request to `path`.
    pub(crate) fn rule_for(&self, path: &str) -> &Rule {
        self.per_path
            .as_ref()
            .and_then(|paths| paths.get(path))
            .unwrap_or(&self.rule)
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
