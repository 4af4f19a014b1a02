//! `Scope<S>`: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Extensions, HeaderValue, Request, Response, StatusCode};
use scopegate_validator::dpop::check_bearer_use;
use scopegate_validator::{Principal, ScopeSet};
use tower_service::Service;

use crate::dpop::DpopSettings;
use crate::future::ResponseFuture;
use crate::layer::{Config, Rule};
use crate::response::{AuthScheme, DPOP_NONCE, Rejection, respond};
use crate::token::{self, Credentials};

/// Checks the bearer token and the route's requirement, then calls the inner service with the
/// [`Principal`] (as `Arc<Principal>`) in the request's extensions. Built by
/// [`ScopeLayer`](crate::ScopeLayer).
#[derive(Debug, Clone)]
pub struct Scope<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Scope<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Scope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let rule = self.config.rule_for(request.uri().path());
        // The fast path: a token whose answer is cached needs no waiting and no allocation,
        // and the request goes on whole (not taken apart and put together again).
        if let Some(principal) = cached(&self.config, rule, &request) {
            rule.outcomes.accepted();
            pass_on(
                &self.config,
                request.extensions_mut(),
                principal,
                AuthScheme::Bearer,
            );
            return ResponseFuture::inner(self.inner.call(request));
        }
        if self.config.anonymous_allowed && presents_nothing(&self.config, &request) {
            rule.outcomes.anonymous();
            request.extensions_mut().insert(Anonymous);
            // An extractor's 401 to an anonymous caller challenges as the layer would: with
            // DPoP's challenge too where DPoP is accepted.
            if self.config.options_customized || self.config.dpop.is_some() {
                request
                    .extensions_mut()
                    .insert(Arc::clone(&self.config.options));
            }
            return ResponseFuture::inner(self.inner.call(request));
        }
        let (mut parts, body) = request.into_parts();
        // Validation may wait (a key fetch, an introspection call): a clone waits, and asks for
        // readiness only once the request is authorized, so the ready instance is not held by
        // a request that may well be refused.
        let mut inner = self.inner.clone();
        let config = Arc::clone(&self.config);
        // Only the head is borrowed across the validation (`Parts` is `Sync`; bodies often
        // are not).
        ResponseFuture::validating(async move {
            let rule = config.rule_for(parts.uri.path());
            match authorize(&config, rule, &parts).await {
                Ok(authorized) => {
                    rule.outcomes.accepted();
                    pass_on(
                        &config,
                        &mut parts.extensions,
                        authorized.principal,
                        authorized.scheme,
                    );
                    std::future::poll_fn(|context| inner.poll_ready(context)).await?;
                    let mut response = inner.call(Request::from_parts(parts, body)).await?;
                    if let Some(nonce) = authorized.next_nonce {
                        // RFC 9449 §8.2: the client's nonce is about to expire; here is the next.
                        response.headers_mut().insert(DPOP_NONCE, nonce);
                    }
                    Ok(response)
                }
                Err(rejection) => {
                    rule.outcomes.refused(&rejection);
                    Ok(respond(with_nonce(&config, rejection), &config.options))
                }
            }
        })
    }
}

/// An authorized request: who, how the token was presented, and a DPoP nonce to hand out.
struct Authorized {
    principal: Arc<Principal>,
    scheme: AuthScheme,
    next_nonce: Option<HeaderValue>,
}

impl Authorized {
    fn bearer(principal: Arc<Principal>) -> Self {
        Self {
            principal,
            scheme: AuthScheme::Bearer,
            next_nonce: None,
        }
    }
}

/// With server nonces on, every 401 hands out the nonce of the moment (RFC 9449 §9), so that a
/// client's next proof can carry it.
fn with_nonce(config: &Config, rejection: Rejection) -> Rejection {
    let nonces = config
        .dpop
        .as_ref()
        .and_then(|dpop| dpop.dpop_verifier().nonces());
    match nonces {
        Some(nonces) if rejection.status() == StatusCode::UNAUTHORIZED => {
            rejection.with_dpop_nonce(nonces.current(config.validator.clock().now()))
        }
        _ => rejection,
    }
}

/// What an authorized request carries to the inner service: the principal; for a DPoP request,
/// the scheme and the layer's response options (an extractor's refusal then challenges with
/// DPoP); for a bearer request, the options only when they are not the defaults — a bearer
/// request's refusals challenge `Bearer`, which the defaults do, and its fast path stays lean.
fn pass_on(
    config: &Config,
    extensions: &mut Extensions,
    principal: Arc<Principal>,
    scheme: AuthScheme,
) {
    extensions.insert(principal);
    let dpop = scheme == AuthScheme::Dpop;
    if dpop {
        extensions.insert(scheme);
    }
    if config.options_customized || dpop {
        extensions.insert(Arc::clone(&config.options));
    }
}

/// Marks a request let through without credentials by an optional layer
/// ([`ScopeLayer::optional`](crate::ScopeLayer::optional)), so that extractors tell it from a
/// route without the layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anonymous;

/// No `Authorization` header at all, and no token in the query string: the only requests an
/// optional layer serves as anonymous.
fn presents_nothing<B>(config: &Config, request: &Request<B>) -> bool {
    !request.headers().contains_key(AUTHORIZATION)
        && matches!(
            token::credentials(
                request.headers(),
                request.uri().query(),
                config.max_header_bytes
            ),
            Credentials::Missing
        )
}

/// A cached principal, presented as a bearer token where that is accepted, that is no
/// sender-constrained token and satisfies the rule's requirement; anything else takes the full
/// path, which also produces the right refusal.
fn cached<B>(config: &Config, rule: &Rule, request: &Request<B>) -> Option<Arc<Principal>> {
    let Credentials::Bearer(token) = token::credentials(
        request.headers(),
        request.uri().query(),
        config.max_header_bytes,
    ) else {
        return None;
    };
    if config
        .dpop
        .as_ref()
        .is_some_and(DpopSettings::requires_dpop)
    {
        return None;
    }
    let principal = config.validator.cached(token)?;
    check_bearer_use(&principal).ok()?;
    principal
        .check(&rule.requirement, request.method().as_str())
        .ok()?;
    Some(principal)
}

/// The refusal of a request without a token: with resource metadata, it names the scopes this
/// request needs (what `insufficient_scope` would name for a token with none).
fn missing_token(config: &Config, rule: &Rule, request: &Parts) -> Rejection {
    let needed = config.names_needed_scopes.then(|| {
        rule.requirement
            .check(&ScopeSet::default(), request.method.as_str())
            .err()
    });
    let required = needed
        .flatten()
        .map(|insufficient| {
            insufficient
                .required_scopes()
                .iter()
                .map(|scope| scope.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    Rejection::missing_token(required)
}

async fn authorize(config: &Config, rule: &Rule, request: &Parts) -> Result<Authorized, Rejection> {
    let credentials = token::credentials(
        &request.headers,
        request.uri.query(),
        config.max_header_bytes,
    );
    let dpop = config.dpop.as_ref();
    match credentials {
        // Its syntax is the validator's first check (a 400 when wrong).
        Credentials::Bearer(token) if !dpop.is_some_and(DpopSettings::requires_dpop) => {
            authorize_bearer(config, rule, request, token).await
        }
        Credentials::Dpop(token) => match dpop {
            Some(dpop) => authorize_dpop(config, rule, dpop, request, token).await,
            // A route that does not take DPoP: another scheme, as Basic would be.
            None => Err(missing_token(config, rule, request)),
        },
        // Bearer where only DPoP is accepted: answered as no credentials, with a DPoP challenge.
        Credentials::Bearer(_) | Credentials::Missing => Err(missing_token(config, rule, request)),
        Credentials::Malformed(problem) => Err(Rejection::invalid_request(problem)),
    }
}

async fn authorize_bearer(
    config: &Config,
    rule: &Rule,
    request: &Parts,
    token: &str,
) -> Result<Authorized, Rejection> {
    let refuse = |rejection: Rejection| rejection.presented_with(AuthScheme::Bearer);
    let principal = config
        .validator
        .validate(token)
        .await
        .map_err(|error| refuse(Rejection::from_error(&error)))?;
    check_bearer_use(&principal).map_err(|error| Rejection::from_dpop_error(&error))?;
    principal
        .check(&rule.requirement, request.method.as_str())
        .map_err(|error| refuse(Rejection::from_error(&error)))?;
    Ok(Authorized::bearer(principal))
}

/// RFC 9449 §7.1: the token validated as any other, then the proof checked against it and this
/// request by the one rule ([`DpopVerifier::verify`](scopegate_validator::dpop::DpopVerifier::verify)),
/// then the scopes.
async fn authorize_dpop(
    config: &Config,
    rule: &Rule,
    dpop: &DpopSettings,
    request: &Parts,
    token: &str,
) -> Result<Authorized, Rejection> {
    let refuse = |rejection: Rejection| rejection.presented_with(AuthScheme::Dpop);
    let proof = token::dpop_proof(&request.headers, config.max_header_bytes)
        .map_err(Rejection::invalid_dpop_proof)?;
    let principal = config
        .validator
        .validate(token)
        .await
        .map_err(|error| refuse(Rejection::from_error(&error)))?;
    let now = config.validator.clock().now();
    let verifier = dpop.dpop_verifier();
    let proof = verifier
        .verify(
            &principal,
            token,
            proof,
            request.method.as_str(),
            &dpop.url_of(request),
            now,
        )
        .map_err(|error| Rejection::from_dpop_error(&error))?;
    principal
        .check(&rule.requirement, request.method.as_str())
        .map_err(|error| refuse(Rejection::from_error(&error)))?;
    let next_nonce = verifier.nonces().and_then(|nonces| {
        let current = proof
            .nonce
            .as_deref()
            .is_some_and(|nonce| nonces.is_current(nonce, now));
        (!current)
            .then(|| HeaderValue::from_str(&nonces.current(now)).ok())
            .flatten()
    });
    Ok(Authorized {
        principal,
        scheme: AuthScheme::Dpop,
        next_nonce,
    })
}
