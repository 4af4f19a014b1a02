//! The one place where validation outcomes become HTTP: status, `WWW-Authenticate` (RFC 6750
//! §3, RFC 9449 §7.1), `DPoP-Nonce` (RFC 9449 §9), `Retry-After`, and an optional body shaped
//! by the application.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use scopegate_validator::dpop::DpopError;
use scopegate_validator::{Algorithm, Error, InvalidToken};

/// RFC 9449 §8.1.
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The kinds of refusal, one per row of the response table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No bearer credentials: 401 with a bare challenge.
    MissingToken,
    /// A malformed request (two tokens, a token in the query, a bad header): 400.
    InvalidRequest,
    /// A bad, expired or revoked token: 401 `invalid_token`.
    InvalidToken,
    /// A valid token without the route's scope: 403 `insufficient_scope`.
    InsufficientScope,
    /// The issuer's keys or introspection endpoint could not be reached: 503.
    Unavailable,
    /// A DPoP proof that is missing, malformed, replayed, for another request or made with
    /// another key than the token's: 401 `invalid_dpop_proof` (RFC 9449 §7.1).
    InvalidDpopProof,
    /// A DPoP proof without the server's nonce of the moment: 401 `use_dpop_nonce` with a
    /// `DPoP-Nonce` header (RFC 9449 §9).
    UseDpopNonce,
}

/// An authentication scheme an access token is presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthScheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` with a `DPoP` proof header (RFC 9449).
    Dpop,
}

impl AuthScheme {
    /// The scheme's name as written in headers: `Bearer` or `DPoP`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP",
        }
    }
}

/// Why a request was refused. Placed in the response's extensions so that an outer layer can
/// log or count it; never holds the token.
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: RejectionKind,
    /// For an invalid token, why, from a fixed list (the metrics' `reason` label).
    reason: Option<&'static str>,
    description: String,
    required_scopes: Vec<String>,
    retry_after: Option<Duration>,
    /// The scheme the client presented its token with, when it presented one.
    scheme: Option<AuthScheme>,
    /// A fresh DPoP nonce for the client (RFC 9449 §9), when the route uses nonces.
    dpop_nonce: Option<String>,
    /// How the layer that protects the route writes refusals, for refusals made in handlers.
    options: Option<Arc<ResponseOptions>>,
}

impl Rejection {
    pub(crate) fn from_error(error: &Error) -> Self {
        let kind = match error {
            Error::NoToken => RejectionKind::MissingToken,
            // RFC 6750 §3.1: a header that cannot hold a bearer token is a malformed request.
            Error::InvalidToken(InvalidToken::NotBearerSyntax) => RejectionKind::InvalidRequest,
            Error::InsufficientScope(_) => RejectionKind::InsufficientScope,
            Error::Unavailable(_) => RejectionKind::Unavailable,
            _ => RejectionKind::InvalidToken,
        };
        let reason = match (kind, error) {
            (RejectionKind::InvalidToken, Error::InvalidToken(invalid)) => Some(invalid.reason()),
            _ => None,
        };
        let required_scopes = match error {
            Error::InsufficientScope(insufficient) => insufficient
                .required_scopes()
                .iter()
                .map(|scope| scope.as_str().to_owned())
                .collect(),
            _ => Vec::new(),
        };
        Self {
            kind,
            reason,
            description: error.to_string(),
            required_scopes,
            retry_after: error.retry_after(),
            scheme: None,
            dpop_nonce: None,
            options: None,
        }
    }

    /// A DPoP refusal, with the code RFC 9449 gives it: a proof's fault is
    /// `invalid_dpop_proof`, a missing nonce `use_dpop_nonce`, the token's fault (bound to a
    /// key yet presented as a bearer token, or bound to none yet presented with a proof)
    /// `invalid_token`.
    pub(crate) fn from_dpop_error(error: &DpopError) -> Self {
        let kind = match error.rfc9449_code() {
            "use_dpop_nonce" => RejectionKind::UseDpopNonce,
            "invalid_token" => RejectionKind::InvalidToken,
            _ => RejectionKind::InvalidDpopProof,
        };
        let scheme = match error {
            DpopError::BoundToken => AuthScheme::Bearer,
            _ => AuthScheme::Dpop,
        };
        Self {
            reason: (kind == RejectionKind::InvalidToken).then_some(crate::metrics::DPOP_BINDING),
            description: error.to_string(),
            scheme: Some(scheme),
            ..Self::of_kind(kind)
        }
    }

    /// A DPoP request whose proof header cannot be checked at all (none, two, not ASCII).
    pub(crate) fn invalid_dpop_proof(description: &'static str) -> Self {
        Self {
            description: description.to_owned(),
            scheme: Some(AuthScheme::Dpop),
            ..Self::of_kind(RejectionKind::InvalidDpopProof)
        }
    }

    fn of_kind(kind: RejectionKind) -> Self {
        Self {
            kind,
            reason: None,
            description: String::new(),
            required_scopes: Vec::new(),
            retry_after: None,
            scheme: None,
            dpop_nonce: None,
            options: None,
        }
    }

    /// Answered to a client that presented its token with `scheme`: the error goes on that
    /// scheme's challenge.
    pub(crate) fn presented_with(mut self, scheme: AuthScheme) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// Hands the client this DPoP nonce (in a `DPoP-Nonce` header).
    pub(crate) fn with_dpop_nonce(mut self, nonce: String) -> Self {
        self.dpop_nonce = Some(nonce);
        self
    }

    /// No bearer credentials, naming the scopes the request needs when the layer publishes
    /// resource metadata (so the client knows what to ask for).
    pub(crate) fn missing_token(required_scopes: Vec<String>) -> Self {
        Self {
            required_scopes,
            ..Self::from_error(&Error::NoToken)
        }
    }

    pub(crate) fn invalid_request(description: &'static str) -> Self {
        Self {
            description: description.to_owned(),
            ..Self::of_kind(RejectionKind::InvalidRequest)
        }
    }

    /// Written the way the protecting layer writes its own refusals.
    pub(crate) fn with_options(mut self, options: Option<Arc<ResponseOptions>>) -> Self {
        self.options = options;
        self
    }

    pub(crate) fn options(&self) -> Option<&Arc<ResponseOptions>> {
        self.options.as_ref()
    }

    /// Which row of the table this is.
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// For [`RejectionKind::InvalidToken`], why, as a short `snake_case` name from a fixed list:
    /// [`InvalidToken::reason`], or `dpop_binding` for a token bound to a DPoP key presented as
    /// a bearer token (or one bound to none presented with a proof). The layer's metrics label
    /// refusals with it; a logging layer may too — it never holds anything from the token.
    #[must_use]
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::MissingToken
            | RejectionKind::InvalidToken
            | RejectionKind::InvalidDpopProof
            | RejectionKind::UseDpopNonce => StatusCode::UNAUTHORIZED,
            RejectionKind::InvalidRequest => StatusCode::BAD_REQUEST,
            RejectionKind::InsufficientScope => StatusCode::FORBIDDEN,
            RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The error code (RFC 6750 §3.1, RFC 9449 §7.1 and §9), if the answer carries one.
    #[must_use]
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind {
            RejectionKind::MissingToken | RejectionKind::Unavailable => None,
            RejectionKind::InvalidRequest => Some("invalid_request"),
            RejectionKind::InvalidToken => Some("invalid_token"),
            RejectionKind::InsufficientScope => Some("insufficient_scope"),
            RejectionKind::InvalidDpopProof => Some("invalid_dpop_proof"),
            RejectionKind::UseDpopNonce => Some("use_dpop_nonce"),
        }
    }

    /// The scheme the client presented its token with, when it presented one the route
    /// accepts.
    #[must_use]
    pub fn scheme(&self) -> Option<AuthScheme> {
        self.scheme
    }

    /// The nonce handed to the client in `DPoP-Nonce`, if any.
    #[must_use]
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.dpop_nonce.as_deref()
    }

    /// What went wrong, for logs (and for clients when `error_description` is switched on).
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }

    /// For `insufficient_scope` (and a missing token on a route with resource metadata): the
    /// scopes the route needs.
    #[must_use]
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// For *unavailable*: when to retry.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9449 §7.1), one per scheme the
    /// route accepts — none for a 503, and for a 403 only the scheme the client used. The error
    /// goes on the challenge of the scheme the client used (else the first accepted one).
    fn challenges(&self, options: &ResponseOptions) -> Vec<HeaderValue> {
        if self.kind == RejectionKind::Unavailable {
            return Vec::new();
        }
        let accepted: &[AuthScheme] = match &options.dpop {
            None => &[AuthScheme::Bearer],
            Some(dpop) if dpop.required => &[AuthScheme::Dpop],
            Some(_) => &[AuthScheme::Bearer, AuthScheme::Dpop],
        };
        let at_fault = self
            .scheme
            .filter(|scheme| accepted.contains(scheme))
            .unwrap_or(accepted[0]);
        accepted
            .iter()
            .filter(|scheme| self.kind != RejectionKind::InsufficientScope || **scheme == at_fault)
            .map(|scheme| self.challenge(*scheme, *scheme == at_fault, options))
            .collect()
    }

    /// One challenge; `at_fault` when the error is this scheme's.
    fn challenge(
        &self,
        scheme: AuthScheme,
        at_fault: bool,
        options: &ResponseOptions,
    ) -> HeaderValue {
        let mut parameters = Vec::new();
        if let Some(realm) = &options.realm {
            parameters.push(format!("realm=\"{}\"", quoted(realm)));
        }
        if let Some(code) = self.error_code().filter(|_| at_fault) {
            parameters.push(format!("error=\"{code}\""));
            if options.error_description {
                parameters.push(format!(
                    "error_description=\"{}\"",
                    description_chars(&self.description)
                ));
            }
        }
        let names_scopes = match self.kind {
            RejectionKind::InsufficientScope => at_fault,
            RejectionKind::MissingToken => true,
            _ => false,
        };
        if names_scopes && !self.required_scopes.is_empty() {
            // Scope tokens cannot hold `"` or `\` (RFC 6749 §3.3): nothing to escape.
            parameters.push(format!("scope=\"{}\"", self.required_scopes.join(" ")));
        }
        if let Some(url) = &options.resource_metadata {
            // RFC 9728 §5.1.
            parameters.push(format!("resource_metadata=\"{}\"", quoted(url)));
        }
        if let (AuthScheme::Dpop, Some(dpop)) = (scheme, &options.dpop) {
            // RFC 9449 §7.1: the algorithms a proof may use; registered names, nothing to
            // escape.
            parameters.push(format!("algs=\"{}\"", dpop.algs));
        }
        let value = if parameters.is_empty() {
            scheme.as_str().to_owned()
        } else {
            format!("{} {}", scheme.as_str(), parameters.join(", "))
        };
        // Every part is visible ASCII by construction (realm filtered, description mapped,
        // scopes, codes and algorithm names are ASCII); a bare challenge is the last resort.
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(scheme.as_str()))
    }

    /// The refusal's authentication headers: its challenges and, for DPoP, a nonce.
    fn write_challenges(&self, headers: &mut HeaderMap, options: &ResponseOptions) {
        for challenge in self.challenges(options) {
            headers.append(WWW_AUTHENTICATE, challenge);
        }
        if let Some(nonce) = self
            .dpop_nonce
            .as_deref()
            .and_then(|nonce| HeaderValue::from_str(nonce).ok())
        {
            headers.insert(DPOP_NONCE, nonce);
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.status().as_u16(), self.description)
    }
}

/// Shapes the body of a refusal; status and headers stay as RFC 6750 says. Return `None` for
/// an empty body (the default).
pub trait RejectionBody: Send + Sync + 'static {
    /// The body and its content type.
    fn body(&self, rejection: &Rejection) -> Option<(HeaderValue, Bytes)>;
}

impl<F> RejectionBody for F
where
    F: Fn(&Rejection) -> Option<(HeaderValue, Bytes)> + Send + Sync + 'static,
{
    fn body(&self, rejection: &Rejection) -> Option<(HeaderValue, Bytes)> {
        self(rejection)
    }
}

/// A ready-made body: `{"error": "...", "error_description": "..."}` as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonErrorBody {
    /// Include `error_description` for client errors (never for a 503, whose cause names the
    /// issuer's internal endpoints).
    pub with_description: bool,
}

impl RejectionBody for JsonErrorBody {
    fn body(&self, rejection: &Rejection) -> Option<(HeaderValue, Bytes)> {
        let mut body = serde_json::Map::new();
        let code = rejection.error_code().unwrap_or(match rejection.kind {
            RejectionKind::Unavailable => "temporarily_unavailable",
            _ => "unauthorized",
        });
        body.insert("error".to_owned(), code.into());
        if self.with_description && rejection.kind != RejectionKind::Unavailable {
            body.insert(
                "error_description".to_owned(),
                rejection.description.clone().into(),
            );
        }
        let bytes = serde_json::to_vec(&body).ok()?;
        Some((
            HeaderValue::from_static("application/json"),
            Bytes::from(bytes),
        ))
    }
}

/// How refusals are written. The layer also puts it in the request's extensions, so that a
/// refusal made in a handler is written the same way.
#[derive(Clone)]
pub(crate) struct ResponseOptions {
    pub(crate) realm: Option<String>,
    pub(crate) error_description: bool,
    pub(crate) body: Option<Arc<dyn RejectionBody>>,
    /// RFC 9728 §5.1: the URL of the resource's metadata, named in every challenge.
    pub(crate) resource_metadata: Option<String>,
    /// [`ScopeLayer::grpc`](crate::ScopeLayer::grpc): refusals as gRPC statuses.
    pub(crate) grpc: bool,
    /// [`ScopeLayer::dpop`](crate::ScopeLayer::dpop): the `DPoP` challenge, and whether it
    /// replaces the `Bearer` one.
    pub(crate) dpop: Option<DpopChallenge>,
}

/// What a `DPoP` challenge says.
#[derive(Debug, Clone)]
pub(crate) struct DpopChallenge {
    /// Only `DPoP` is accepted: no `Bearer` challenge.
    pub(crate) required: bool,
    /// `algs`: the accepted algorithms, space-separated.
    pub(crate) algs: String,
}

impl DpopChallenge {
    pub(crate) fn new(required: bool, algorithms: &[Algorithm]) -> Self {
        let algs: Vec<&str> = algorithms.iter().map(|alg| alg.as_str()).collect();
        Self {
            required,
            algs: algs.join(" "),
        }
    }
}

impl fmt::Debug for ResponseOptions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ResponseOptions")
            .field("realm", &self.realm)
            .field("error_description", &self.error_description)
            .field("custom_body", &self.body.is_some())
            .field("resource_metadata", &self.resource_metadata)
            .field("grpc", &self.grpc)
            .field("dpop", &self.dpop)
            .finish()
    }
}

impl Default for ResponseOptions {
    fn default() -> Self {
        Self {
            realm: Some("api".to_owned()),
            error_description: false,
            body: None,
            resource_metadata: None,
            grpc: false,
            dpop: None,
        }
    }
}

/// Builds the response for a refusal and logs it at `debug` (client mistakes are not server
/// faults; an unreachable issuer is logged by the validator).
pub(crate) fn respond<B: From<Bytes>>(
    rejection: Rejection,
    options: &ResponseOptions,
) -> Response<B> {
    tracing::debug!(
        status = rejection.status().as_u16(),
        error = rejection.error_code().unwrap_or("none"),
        reason = %rejection.description,
        "request refused"
    );
    if options.grpc {
        return grpc_refusal(rejection, options);
    }
    let (content_type, body) = match options.body.as_ref().and_then(|body| body.body(&rejection)) {
        Some((content_type, body)) => (Some(content_type), body),
        None => (None, Bytes::new()),
    };
    let mut response = Response::new(B::from(body));
    *response.status_mut() = rejection.status();
    let headers = response.headers_mut();
    rejection.write_challenges(headers, options);
    if let Some(retry_after) = rejection
        .retry_after
        .filter(|_| rejection.kind == RejectionKind::Unavailable)
    {
        let seconds = retry_after
            .as_secs()
            .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, content_type);
    }
    response.extensions_mut().insert(rejection);
    response
}

/// A refusal as gRPC answers one: a "trailers-only" response (HTTP 200, no body, the status in
/// `grpc-status` and `grpc-message`), the RFC 6750 challenge kept in `www-authenticate`.
fn grpc_refusal<B: From<Bytes>>(rejection: Rejection, options: &ResponseOptions) -> Response<B> {
    // https://grpc.github.io/grpc/core/md_doc_statuscodes.html
    let (status, message) = match rejection.kind {
        RejectionKind::MissingToken => (16, "missing bearer token"),
        RejectionKind::InvalidRequest => (16, "malformed bearer credentials"),
        RejectionKind::InvalidToken => (16, "invalid bearer token"),
        RejectionKind::InvalidDpopProof => (16, "invalid DPoP proof"),
        RejectionKind::UseDpopNonce => (16, "DPoP nonce required"),
        RejectionKind::InsufficientScope => (7, "insufficient scope"),
        RejectionKind::Unavailable => (14, "authorization server unavailable"),
    };
    let message = if options.error_description && rejection.kind != RejectionKind::Unavailable {
        grpc_message(&rejection.description)
    } else {
        message.to_owned()
    };
    let mut response = Response::new(B::from(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(status));
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", message);
    }
    rejection.write_challenges(headers, options);
    response.extensions_mut().insert(rejection);
    response
}

/// gRPC's `grpc-message` encoding: percent-encoded UTF-8 outside the printable ASCII range.
fn grpc_message(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A quoted-string (RFC 9110 §5.6.4): `\` and `"` escaped.
fn quoted(value: &str) -> String {
    value
        .chars()
        .fold(String::with_capacity(value.len()), |mut out, character| {
            if character == '"' || character == '\\' {
                out.push('\\');
            }
            out.push(character);
            out
        })
}

/// RFC 6750 §3 allows only `%x20-21 / %x23-5B / %x5D-7E` in `error_description`: quotes become
/// apostrophes, anything else outside the set becomes `?`.
fn description_chars(value: &str) -> String {
    value
        .chars()
        .map(|character| match character {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => character,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_are_escaped() {
        assert_eq!(quoted(r#"my "api" \ x"#), r#"my \"api\" \\ x"#);
    }

    #[test]
    fn a_revoked_token_is_answered_as_any_invalid_token() {
        let revoked = Error::InvalidToken(InvalidToken::Revoked("its session was ended"));
        let rejection = Rejection::from_error(&revoked);
        assert_eq!(rejection.kind(), RejectionKind::InvalidToken);
        assert_eq!(rejection.reason(), Some("revoked"));
        assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(rejection.error_code(), Some("invalid_token"));
        let response: Response<Bytes> = respond(rejection, &ResponseOptions::default());
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="api", error="invalid_token""#
        );
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn descriptions_keep_to_the_rfc_6750_characters() {
        assert_eq!(
            description_chars("alg \"HS256\" \\ é\n"),
            "alg 'HS256' / ??"
        );
    }
}
