//! [`TokenSource`]: one client's access tokens, from its configuration to the cache.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use url::Url;

use crate::assertion::AssertionKey;
use crate::cache::{Cache, Fetch, MAX_LIFETIME, Policy};
use crate::error::{BuildError, Error};
use crate::http::{default_client, refusal};
use crate::token::{AccessToken, Secret};
use crate::token_request::{ClientAuthMethod, Credentials, Endpoint, TokenRequest};

/// Access tokens for one OAuth client, obtained with the client-credentials grant
/// (RFC 6749 §4.4) and kept until shortly before they expire.
///
/// Cheap to clone (one `Arc`): share one per client across the app, so that every caller uses
/// the same token and waits on the same refresh.
///
/// - A token is kept until 30 s before it expires ([`refresh_margin`]), or half its lifetime
///   for tokens shorter than a minute; from then until it expires, callers still get it at once
///   while one request for the next runs.
/// - However many callers need a new token at once, one request is in flight; its answer —
///   token or error — goes to all of them. After a failure, callers without a valid token get
///   that error for a second ([`retry_after_failure`]), or as long as the server's
///   `Retry-After` asks (at most five minutes), before the endpoint is asked again.
/// - [`invalidate`](Self::invalidate) drops a token an API refused, only if it is still the one
///   held.
///
/// [`refresh_margin`]: TokenSourceBuilder::refresh_margin
/// [`retry_after_failure`]: TokenSourceBuilder::retry_after_failure
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: String,
    request: Arc<TokenRequest>,
    cache: Cache,
}

impl TokenSource {
    /// Starts a configuration: [`token_endpoint`](TokenSourceBuilder::token_endpoint) or
    /// [`issuer`](TokenSourceBuilder::issuer), then
    /// [`client_id`](TokenSourceBuilder::client_id) and
    /// [`client_secret`](TokenSourceBuilder::client_secret) are required.
    pub fn builder() -> TokenSourceBuilder {
        TokenSourceBuilder::default()
    }

    /// A valid access token: the one held, or a new one.
    ///
    /// # Errors
    /// Why none could be obtained: [`Error::OAuth`] when the token endpoint refused (wrong
    /// secret, scope not allowed, …), [`Error::Transport`] when it could not be reached,
    /// [`Error::Malformed`], [`Error::TooLarge`], [`Error::Status`] or
    /// [`Error::UnsupportedTokenType`] when its answer is not a bearer token response.
    /// Discovery adds its own ([`Error::IssuerMismatch`], …).
    pub async fn token(&self) -> Result<AccessToken, Error> {
        self.inner.cache.token().await
    }

    /// Reports that an API refused `token` as invalid or expired (RFC 6750 §3.1
    /// `invalid_token`): if it is still the token held, it is dropped and the next
    /// [`token`](Self::token) call asks for a new one. A token already replaced drops nothing,
    /// so that fifty calls refused at once cost one new token.
    ///
    /// At most one token is dropped per [`invalidation_cooldown`] (10 s): when an API refuses
    /// every token, the token endpoint is not asked once per call.
    ///
    /// [`invalidation_cooldown`]: TokenSourceBuilder::invalidation_cooldown
    pub fn invalidate(&self, token: &AccessToken) {
        self.inner.cache.invalidate(token);
    }

    /// The client these tokens are for.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TokenSource")
            .field("client_id", &self.inner.client_id)
            .field("endpoint", &self.inner.request.endpoint)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenSource`]; [`build`](Self::build) checks every setting.
#[derive(Debug, Default)]
#[must_use]
pub struct TokenSourceBuilder {
    token_endpoint: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    assertion_key: Option<AssertionKey>,
    assertion_audience: Option<String>,
    auth_method: Option<ClientAuthMethod>,
    scope: Vec<String>,
    resources: Vec<String>,
    http: Option<reqwest::Client>,
    policy: Policy,
    allow_insecure_http: bool,
}

impl TokenSourceBuilder {
    /// The token endpoint's URL. Or set [`issuer`](Self::issuer) to find it by discovery.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// The authorization server's issuer: the token endpoint is read from its OpenID Connect
    /// discovery document (`{issuer}/.well-known/openid-configuration`) at the first token
    /// request, which must name this exact issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The client's id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client's secret, sent as `client_secret_basic` (RFC 6749 §2.3.1, which every
    /// authorization server must support): id and secret form-urlencoded, then base64. See
    /// [`client_auth_method`](Self::client_auth_method) for a server that wants it in the
    /// form.
    ///
    /// # Security
    /// Never printed: `Debug` output shows `[redacted]`.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(Secret(secret.into()));
        self
    }

    /// Authenticate with `private_key_jwt` (RFC 7523 §2.2) instead of a secret: each token
    /// request carries a fresh assertion signed by `key` (`iss` and `sub` the client id, `aud`
    /// the issuer when it is set, else the token endpoint; one minute; a random `jti`). The
    /// server must hold the matching public key (the token service: `clients[].jwks` or
    /// `jwks_uri`).
    pub fn private_key_jwt(mut self, key: AssertionKey) -> Self {
        self.assertion_key = Some(key);
        self
    }

    /// The `aud` of each `private_key_jwt` assertion. By default the issuer when it is set
    /// (what RFC 7523's revision asks of servers), else the token endpoint (OpenID Connect
    /// Core §9); set it for a server that wants the other — its issuer identifier while the
    /// token endpoint is configured, say.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// How id and secret reach the token endpoint: in the `Authorization` header
    /// ([`SecretBasic`](ClientAuthMethod::SecretBasic), the default) or in the form
    /// ([`SecretPost`](ClientAuthMethod::SecretPost)).
    pub fn client_auth_method(mut self, method: ClientAuthMethod) -> Self {
        self.auth_method = Some(method);
        self
    }

    /// Scopes to ask for, space-separated; called again, adds more. Without any, the token
    /// endpoint grants the client's default.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope.push(scope.into());
        self
    }

    /// A resource the token is for (RFC 8707): an absolute URI without fragment, such as the
    /// API's identifier; may be called once per resource.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// The HTTP client for the token endpoint and discovery. By default one of its own: 5 s
    /// to connect, 30 s in all, no redirects.
    ///
    /// # Security
    /// Give one that follows no redirects (`reqwest::redirect::Policy::none()`): a 307 or 308
    /// from the token endpoint would send the form — with `client_secret_post` the secret, with
    /// `private_key_jwt` an assertion still unused at the real server — to wherever it points.
    /// A token request that was redirected anyway is answered with
    /// [`Error::Redirected`](crate::Error::Redirected), not with its token.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// How long before it expires a token is replaced (default 30 s), at most half its
    /// lifetime. It covers the time a request takes to reach the API and the API's clock
    /// running ahead; `expires_in` is counted from when the token was asked for.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.policy.refresh_margin = margin;
        self
    }

    /// The lifetime assumed for a token whose response has no `expires_in` (default 5
    /// minutes; at most a day). If it ends sooner, the API's 401 replaces it.
    pub fn assumed_lifetime(mut self, lifetime: Duration) -> Self {
        self.policy.assumed_lifetime = lifetime;
        self
    }

    /// After a failed token request, how long callers without a valid token get its error
    /// before the endpoint is asked again (default 1 s; zero asks again at once, still one
    /// request at a time). An answer whose `Retry-After` asks for longer (a 429 `slow_down`, a
    /// 503, or any other refusal carrying one) is held that long instead, up to five minutes;
    /// the server's value is in [`Error::retry_after`].
    ///
    /// [`Error::retry_after`]: crate::Error::retry_after
    pub fn retry_after_failure(mut self, hold_off: Duration) -> Self {
        self.policy.retry_after_failure = hold_off;
        self
    }

    /// The least time between two tokens dropped by [`TokenSource::invalidate`] (default
    /// 10 s). Within it, a refused token is kept and calls get the API's 401.
    pub fn invalidation_cooldown(mut self, cooldown: Duration) -> Self {
        self.policy.invalidation_cooldown = cooldown;
        self
    }

    /// Allow plain-`http` token endpoints and issuers on hosts other than loopback.
    ///
    /// # Security
    /// The client secret and the tokens then cross the network in clear. Loopback URLs are
    /// always allowed, for development.
    pub fn dangerous_allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// Checks the settings and builds the source. No request is made until the first token is
    /// needed.
    ///
    /// # Errors
    /// A [`BuildError`] naming the setting at fault: neither or both of `token_endpoint` and
    /// `issuer`, a URL that is not https (or http on loopback), a missing or empty `client_id`,
    /// neither or both of `client_secret` and `private_key_jwt` (or a `client_auth_method` with a
    /// private key, an `assertion_audience` without one or empty), a `scope` with characters
    /// RFC 6749 §3.3 does not allow, a `resource` that is not an absolute URI without fragment,
    /// an `assumed_lifetime` of zero or over a day.
    pub fn build(self) -> Result<TokenSource, BuildError> {
        let endpoint = self.endpoint()?;
        let client_id = self
            .client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| BuildError::new("client_id", "required"))?;
        let credentials = credentials(
            &client_id,
            self.client_secret,
            self.assertion_key,
            self.assertion_audience,
            self.auth_method,
        )?;
        let scope = checked_scope(&self.scope)?;
        for resource in &self.resources {
            check_resource(resource)?;
        }
        if self.policy.assumed_lifetime.is_zero() || self.policy.assumed_lifetime > MAX_LIFETIME {
            return Err(BuildError::new(
                "assumed_lifetime",
                "must be more than zero and at most a day",
            ));
        }
        let http = match self.http {
            Some(client) => client,
            None => default_client()
                .map_err(|error| BuildError::new("http_client", error.to_string()))?,
        };
        let request = Arc::new(TokenRequest {
            http,
            endpoint,
            credentials,
            form: TokenRequest::form(scope.as_deref(), &self.resources),
            allow_insecure_http: self.allow_insecure_http,
        });
        let fetching = Arc::clone(&request);
        let fetch: Fetch = Arc::new(move || {
            let request = Arc::clone(&fetching);
            Box::pin(async move { request.send().await })
        });
        Ok(TokenSource {
            inner: Arc::new(Inner {
                client_id,
                request,
                cache: Cache::new(fetch, self.policy),
            }),
        })
    }

    fn endpoint(&self) -> Result<Endpoint, BuildError> {
        let insecure = self.allow_insecure_http;
        match (&self.token_endpoint, &self.issuer) {
            (Some(url), None) => Ok(Endpoint::Fixed(checked_url(
                "token_endpoint",
                url,
                insecure,
            )?)),
            (None, Some(issuer)) => {
                let parsed = checked_url("issuer", issuer, insecure)?;
                if parsed.query().is_some() {
                    return Err(BuildError::new("issuer", "an issuer has no query"));
                }
                Ok(Endpoint::Discovered {
                    issuer: issuer.clone(),
                    found: OnceCell::new(),
                })
            }
            (Some(_), Some(_)) => Err(BuildError::new(
                "token_endpoint",
                "set the token endpoint or the issuer, not both",
            )),
            (None, None) => Err(BuildError::new(
                "token_endpoint",
                "required, or the issuer to find it by discovery",
            )),
        }
    }
}

/// The credentials the settings give: a secret (sent as `method` says) or a private key (for
/// `audience`, if set), never both, and no setting that belongs to the other kind.
fn credentials(
    client_id: &str,
    secret: Option<Secret>,
    key: Option<AssertionKey>,
    audience: Option<String>,
    method: Option<ClientAuthMethod>,
) -> Result<Credentials, BuildError> {
    match (secret, key) {
        (Some(_), Some(_)) => Err(BuildError::new(
            "client_secret",
            "set a client secret or a private key (private_key_jwt), not both",
        )),
        (None, Some(_)) if method.is_some() => Err(BuildError::new(
            "client_auth_method",
            "says how a client secret is sent; private_key_jwt sends none",
        )),
        (None, Some(_)) if audience.as_deref() == Some("") => {
            Err(BuildError::new("assertion_audience", "is empty"))
        }
        (None, Some(key)) => Ok(Credentials::Assertion {
            client_id: client_id.to_owned(),
            key,
            audience,
        }),
        (_, None) if audience.is_some() => Err(BuildError::new(
            "assertion_audience",
            "is for private_key_jwt assertions; this client sends a secret",
        )),
        (secret, None) => {
            let secret = secret
                .filter(|secret| !secret.0.is_empty())
                .ok_or_else(|| {
                    BuildError::new(
                        "client_secret",
                        "required, or a private key (private_key_jwt)",
                    )
                })?;
            Credentials::new(method.unwrap_or_default(), client_id, &secret)
                .ok_or_else(|| BuildError::new("client_id", "cannot be sent in a header"))
        }
    }
}

fn checked_url(
    field: &'static str,
    url: &str,
    allow_insecure_http: bool,
) -> Result<Url, BuildError> {
    let parsed = Url::parse(url).map_err(|error| BuildError::new(field, error.to_string()))?;
    match refusal(&parsed, allow_insecure_http) {
        Some(reason) => Err(BuildError::new(field, reason)),
        None => Ok(parsed),
    }
}

/// The scopes asked for, space-separated, each of RFC 6749 §3.3's characters.
fn checked_scope(parts: &[String]) -> Result<Option<String>, BuildError> {
    let tokens: Vec<&str> = parts.iter().flat_map(|part| part.split(' ')).collect();
    if tokens.is_empty() {
        return Ok(None);
    }
    let allowed =
        |byte: u8| byte == 0x21 || (0x23..=0x5B).contains(&byte) || (0x5D..=0x7E).contains(&byte);
    if let Some(bad) = tokens
        .iter()
        .find(|token| token.is_empty() || !token.bytes().all(allowed))
    {
        return Err(BuildError::new(
            "scope",
            format!(
                "{bad:?} is not a scope token (one space between scopes; no quotes, \
                 backslashes or control characters)"
            ),
        ));
    }
    Ok(Some(tokens.join(" ")))
}

/// RFC 8707 §2: an absolute URI without fragment. It is sent as given: servers compare it with
/// the API identifiers they know as a string, and parsing would add a `/` to a bare origin.
fn check_resource(resource: &str) -> Result<(), BuildError> {
    let parsed = Url::parse(resource)
        .map_err(|error| BuildError::new("resource", format!("{resource:?}: {error}")))?;
    if parsed.fragment().is_some() {
        return Err(BuildError::new(
            "resource",
            format!("{resource:?} has a fragment"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> TokenSourceBuilder {
        TokenSource::builder()
            .token_endpoint("https://idp.example.test/token")
            .client_id("svc")
            .client_secret("svc-secret")
    }

    fn field_of(builder: TokenSourceBuilder) -> &'static str {
        builder.build().unwrap_err().field()
    }

    #[test]
    fn each_missing_or_bad_setting_is_named() {
        complete().build().unwrap();
        assert_eq!(field_of(TokenSource::builder()), "token_endpoint");
        assert_eq!(
            field_of(complete().issuer("https://idp.example.test")),
            "token_endpoint"
        );
        assert_eq!(
            field_of(complete().token_endpoint("not a url")),
            "token_endpoint"
        );
        assert_eq!(
            field_of(complete().token_endpoint("http://idp.example.test/token")),
            "token_endpoint"
        );
        assert_eq!(field_of(complete().client_id("")), "client_id");
        assert_eq!(field_of(complete().client_secret("")), "client_secret");
        assert_eq!(field_of(complete().scope("a  b")), "scope");
        assert_eq!(field_of(complete().scope("a\"b")), "scope");
        assert_eq!(field_of(complete().resource("api")), "resource");
        assert_eq!(
            field_of(complete().resource("https://api.test/#x")),
            "resource"
        );
        assert_eq!(
            field_of(complete().assumed_lifetime(Duration::ZERO)),
            "assumed_lifetime"
        );
        let issuer_only = TokenSource::builder()
            .client_id("svc")
            .client_secret("s")
            .issuer("https://idp.example.test/?tenant=1");
        assert_eq!(field_of(issuer_only), "issuer");
        complete()
            .token_endpoint("http://idp.example.test/token")
            .dangerous_allow_insecure_http()
            .build()
            .unwrap();
    }

    #[test]
    fn a_private_key_takes_the_place_of_the_secret_never_beside_it() {
        let (pem, _, _) = crate::assertion::tests::p256();
        let key =
            || AssertionKey::from_pem(crate::AssertionAlgorithm::ES256, pem.as_bytes()).unwrap();
        let keyed = || {
            TokenSource::builder()
                .token_endpoint("https://idp.example.test/token")
                .client_id("svc")
                .private_key_jwt(key())
        };
        let source = keyed().build().unwrap();
        assert_eq!(
            format!("{:?}", source.inner.request.credentials),
            "private_key_jwt"
        );
        assert_eq!(field_of(complete().private_key_jwt(key())), "client_secret");
        for method in [ClientAuthMethod::SecretPost, ClientAuthMethod::SecretBasic] {
            assert_eq!(
                field_of(keyed().client_auth_method(method)),
                "client_auth_method"
            );
        }
        keyed()
            .assertion_audience("https://as.test")
            .build()
            .unwrap();
        assert_eq!(
            field_of(keyed().assertion_audience("")),
            "assertion_audience"
        );
        assert_eq!(
            field_of(complete().assertion_audience("https://as.test")),
            "assertion_audience"
        );
        assert_eq!(
            field_of(
                TokenSource::builder()
                    .token_endpoint("https://idp.example.test/token")
                    .client_id("svc")
            ),
            "client_secret"
        );
        assert_eq!(field_of(keyed().client_id("")), "client_id");
    }

    #[test]
    fn scopes_given_in_parts_are_joined() {
        assert_eq!(
            checked_scope(&["a:b:read c".to_owned(), "d".to_owned()]).unwrap(),
            Some("a:b:read c d".to_owned())
        );
        assert_eq!(checked_scope(&[]).unwrap(), None);
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let builder = complete().client_secret("s3cret-value");
        let printed = format!("{builder:?}");
        assert!(!printed.contains("s3cret-value"), "{printed}");
        let source = builder.build().unwrap();
        let printed = format!("{source:?}");
        assert!(!printed.contains("s3cret-value"), "{printed}");
        assert!(printed.contains("svc"), "{printed}");
    }
}
