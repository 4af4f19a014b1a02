//! One client-credentials token request (RFC 6749 §4.4) and the reading of its answer
//! (§5.1 success, §5.2 error). The token endpoint is configured, or found once through
//! OpenID Connect discovery.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;
use url::Url;
use url::form_urlencoded::{Serializer, byte_serialize};

use crate::assertion::{ASSERTION_TYPE, AssertionKey};
use crate::discovery;
use crate::error::Error;
use crate::http::{read_body, retry_after, transport};
use crate::token::{AccessToken, Secret};

/// Where tokens are asked for.
#[derive(Debug)]
pub(crate) enum Endpoint {
    /// Configured.
    Fixed(Url),
    /// Read from the issuer's discovery document on first use, then kept.
    Discovered {
        issuer: String,
        found: OnceCell<Url>,
    },
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: id and secret in an `Authorization: Basic` header, which every
    /// authorization server must accept.
    #[default]
    SecretBasic,
    /// `client_secret_post`: id and secret as `client_id` and `client_secret` in the form, for
    /// a server that accepts only that (its discovery document's
    /// `token_endpoint_auth_methods_supported` says).
    SecretPost,
}

/// The client's credentials as each request carries them.
pub(crate) enum Credentials {
    /// The `Authorization` header's value.
    Basic(HeaderValue),
    /// `&client_id=…&client_secret=…`, appended to the form.
    Post(Secret),
    /// `private_key_jwt`: a fresh assertion by the client with this id, signed by this key,
    /// for this audience if one is configured.
    Assertion {
        client_id: String,
        key: AssertionKey,
        audience: Option<String>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Basic(_) => "client_secret_basic",
            Self::Post(_) => "client_secret_post",
            Self::Assertion { .. } => "private_key_jwt",
        })
    }
}

impl Credentials {
    /// The credentials of `client_id` sent as `method`; `None` when they cannot be sent so (an
    /// id that cannot be in a header).
    pub(crate) fn new(method: ClientAuthMethod, client_id: &str, secret: &Secret) -> Option<Self> {
        match method {
            ClientAuthMethod::SecretBasic => {
                basic_authorization(client_id, secret).map(Self::Basic)
            }
            ClientAuthMethod::SecretPost => {
                let mut form = Serializer::new(String::new());
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", &secret.0);
                Some(Self::Post(Secret(format!("&{}", form.finish()))))
            }
        }
    }
}

/// `client_secret_basic` (RFC 6749 §2.3.1): id and secret each form-urlencoded, joined by
/// `:`, base64 — so that a `:` or `%` in either survives.
fn basic_authorization(client_id: &str, secret: &Secret) -> Option<HeaderValue> {
    let credentials = format!(
        "{}:{}",
        byte_serialize(client_id.as_bytes()).collect::<String>(),
        byte_serialize(secret.0.as_bytes()).collect::<String>()
    );
    let mut value =
        HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Everything one token request needs, built once.
#[derive(Debug)]
pub(crate) struct TokenRequest {
    pub(crate) http: reqwest::Client,
    pub(crate) endpoint: Endpoint,
    pub(crate) credentials: Credentials,
    /// The form without credentials.
    pub(crate) form: String,
    pub(crate) allow_insecure_http: bool,
}

impl TokenRequest {
    /// The form body: `grant_type=client_credentials`, then `scope` and each `resource`
    /// (RFC 8707) if given.
    pub(crate) fn form(scope: Option<&str>, resources: &[String]) -> String {
        let mut form = Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = scope {
            form.append_pair("scope", scope);
        }
        for resource in resources {
            form.append_pair("resource", resource);
        }
        form.finish()
    }

    /// Asks the token endpoint for a token.
    ///
    /// # Errors
    /// Everything [`Error`] lists but `Request` and `Aborted`.
    pub(crate) async fn send(&self) -> Result<AccessToken, Error> {
        let url = self.endpoint_url().await?;
        tracing::debug!(token_endpoint = %url, "requesting an access token");
        let request = self
            .http
            .post(url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        let request = match &self.credentials {
            Credentials::Basic(authorization) => request
                .header(AUTHORIZATION, authorization.clone())
                .body(self.form.clone()),
            Credentials::Post(credentials) => {
                request.body(format!("{}{}", self.form, credentials.0))
            }
            Credentials::Assertion {
                client_id,
                key,
                audience,
            } => {
                let audience = assertion_audience(&self.endpoint, audience.as_deref(), url);
                let assertion =
                    key.sign(client_id, audience, SystemTime::now())
                        .map_err(|error| Error::Assertion {
                            reason: error.to_string(),
                        })?;
                // Appended to the form: `&` before the first new pair too.
                let mut form = Serializer::for_suffix(self.form.clone(), 0);
                form.append_pair("client_assertion_type", ASSERTION_TYPE);
                form.append_pair("client_assertion", &assertion);
                request.body(form.finish())
            }
        };
        let response = request
            .send()
            .await
            .map_err(|error| transport(url, error))?;
        if response.url() != url {
            return Err(Error::Redirected {
                url: url.to_string(),
                to: response.url().to_string(),
            });
        }
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let body = read_body(response, url).await?;
        if status == 200 {
            let token = token_response(url, &body)?;
            tracing::debug!(
                expires_in = token.expires_in().map(|lifetime| lifetime.as_secs()),
                scope = token.scope(),
                "access token obtained"
            );
            Ok(token)
        } else {
            Err(error_response(url, status, &body, retry_after))
        }
    }

    async fn endpoint_url(&self) -> Result<&Url, Error> {
        match &self.endpoint {
            Endpoint::Fixed(url) => Ok(url),
            Endpoint::Discovered { issuer, found } => {
                found
                    .get_or_try_init(|| {
                        discovery::token_endpoint(&self.http, issuer, self.allow_insecure_http)
                    })
                    .await
            }
        }
    }
}

/// Who an assertion is for: the audience configured; else the issuer when it is known — what
/// RFC 7523's revision asks, so that an assertion cannot be replayed at another server's
/// endpoint — else the token endpoint (OpenID Connect Core §9).
fn assertion_audience<'a>(
    endpoint: &'a Endpoint,
    configured: Option<&'a str>,
    token_endpoint: &'a Url,
) -> &'a str {
    match (configured, endpoint) {
        (Some(audience), _) => audience,
        (None, Endpoint::Discovered { issuer, .. }) => issuer,
        (None, Endpoint::Fixed(_)) => token_endpoint.as_str(),
    }
}

/// RFC 6749 §5.1. Members other than these are ignored.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
}

fn malformed(url: &Url, what: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        url: url.to_string(),
        what,
        reason: reason.into(),
        source: None,
    }
}

fn token_response(url: &Url, body: &[u8]) -> Result<AccessToken, Error> {
    let response: TokenResponse =
        serde_json::from_slice(body).map_err(|error| Error::Malformed {
            url: url.to_string(),
            what: "token response",
            reason: "not the JSON object RFC 6749 §5.1 describes".to_owned(),
            source: Some(error.into()),
        })?;
    // RFC 6749 §7.1: the type is matched without regard to case.
    if !response.token_type.eq_ignore_ascii_case("bearer") {
        return Err(Error::UnsupportedTokenType {
            token_type: response.token_type,
        });
    }
    let expires_in = response
        .expires_in
        .as_ref()
        .map(|value| {
            lifetime(value).ok_or_else(|| {
                malformed(
                    url,
                    "token response",
                    "expires_in is not a number of seconds",
                )
            })
        })
        .transpose()?;
    AccessToken::new(&response.access_token, response.scope, expires_in).ok_or_else(|| {
        malformed(
            url,
            "token response",
            "access_token is empty or not visible ASCII",
        )
    })
}

/// `expires_in` as a lifetime: a non-negative number of seconds, or such a number in a string
/// (as some servers send it).
fn lifetime(value: &Value) -> Option<Duration> {
    match value {
        Value::Number(number) => number.as_u64().map(Duration::from_secs).or_else(|| {
            number
                .as_f64()
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        }),
        Value::String(text) => text.trim().parse().ok().map(Duration::from_secs),
        _ => None,
    }
}

/// RFC 6749 §5.2 error members.
#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_uri: Option<String>,
}

/// A non-200 answer: the OAuth error it carries, or just its status; with the wait its
/// `Retry-After` asked for.
fn error_response(url: &Url, status: u16, body: &[u8], retry_after: Option<Duration>) -> Error {
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(error) if !error.error.is_empty() => Error::OAuth {
            status,
            code: error.error,
            description: error.error_description,
            uri: error.error_uri,
            retry_after,
        },
        _ => Error::Status {
            url: url.to_string(),
            status,
            retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("https://idp.example.test/token").unwrap()
    }

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        let header = basic_authorization("api:one+two", &Secret("s%cr:t +x".to_owned())).unwrap();
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "api%3Aone%2Btwo:s%25cr%3At+%2Bx");
        assert!(header.is_sensitive());
    }

    #[test]
    fn an_assertion_is_for_the_configured_audience_else_the_issuer_else_the_endpoint() {
        let endpoint = url();
        let fixed = Endpoint::Fixed(endpoint.clone());
        let discovered = Endpoint::Discovered {
            issuer: "https://idp.example.test".to_owned(),
            found: OnceCell::new(),
        };
        assert_eq!(
            assertion_audience(&discovered, None, &endpoint),
            "https://idp.example.test"
        );
        assert_eq!(
            assertion_audience(&fixed, None, &endpoint),
            "https://idp.example.test/token"
        );
        for endpoint_kind in [&fixed, &discovered] {
            assert_eq!(
                assertion_audience(endpoint_kind, Some("https://as.test"), &endpoint),
                "https://as.test"
            );
        }
    }

    #[test]
    fn post_credentials_are_form_pairs_that_debug_does_not_show() {
        let secret = Secret("s%cr&t =x".to_owned());
        let post = Credentials::new(ClientAuthMethod::SecretPost, "api:one+two", &secret).unwrap();
        let Credentials::Post(pairs) = &post else {
            panic!("{post:?}");
        };
        assert_eq!(
            pairs.0,
            "&client_id=api%3Aone%2Btwo&client_secret=s%25cr%26t+%3Dx"
        );
        assert_eq!(format!("{post:?}"), "client_secret_post");
        let basic = Credentials::new(ClientAuthMethod::SecretBasic, "api", &secret).unwrap();
        assert!(matches!(basic, Credentials::Basic(_)));
        assert_eq!(format!("{basic:?}"), "client_secret_basic");
    }

    #[test]
    fn the_form_carries_scope_and_every_resource() {
        let resources = [
            "https://a.example.test".to_owned(),
            "https://b.example.test/x?y=1".to_owned(),
        ];
        assert_eq!(
            TokenRequest::form(Some("a:b:read c"), &resources),
            "grant_type=client_credentials&scope=a%3Ab%3Aread+c\
             &resource=https%3A%2F%2Fa.example.test&resource=https%3A%2F%2Fb.example.test%2Fx%3Fy%3D1"
        );
        assert_eq!(
            TokenRequest::form(None, &[]),
            "grant_type=client_credentials"
        );
    }

    #[test]
    fn a_bearer_token_response_is_read() {
        let token = token_response(
            &url(),
            br#"{"access_token":"t1","token_type":"bearer","expires_in":900,"scope":"a b","extra":1}"#,
        )
        .unwrap();
        assert_eq!(token.secret(), "t1");
        assert_eq!(token.expires_in(), Some(Duration::from_secs(900)));
        assert_eq!(token.scope(), Some("a b"));
        let bare =
            token_response(&url(), br#"{"access_token":"t1","token_type":"Bearer"}"#).unwrap();
        assert_eq!(bare.expires_in(), None);
        assert_eq!(bare.scope(), None);
    }

    #[test]
    fn expires_in_may_be_a_string_or_a_fraction_but_not_negative() {
        let read = |expires_in: &str| {
            token_response(
                &url(),
                format!(
                    r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires_in}}}"#
                )
                .as_bytes(),
            )
        };
        assert_eq!(
            read(r#""3600""#).unwrap().expires_in(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            read("1.5").unwrap().expires_in(),
            Some(Duration::from_millis(1500))
        );
        for bad in ["-1", r#""soon""#, "true", "[1]"] {
            let error = read(bad).unwrap_err();
            assert!(
                matches!(&error, Error::Malformed { reason, .. } if reason.contains("expires_in")),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn a_token_of_another_type_is_refused_by_name() {
        let error = token_response(
            &url(),
            br#"{"access_token":"t","token_type":"DPoP","expires_in":60}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&error, Error::UnsupportedTokenType { token_type } if token_type == "DPoP")
        );
        assert!(error.to_string().contains("\"DPoP\""), "{error}");
    }

    #[test]
    fn junk_is_malformed_with_the_parser_error_kept() {
        for junk in [
            &b"<html>Sign in</html>"[..],
            b"",
            b"{}",
            br#"{"access_token":5,"token_type":"Bearer"}"#,
            br#"{"token_type":"Bearer"}"#,
            b"[]",
        ] {
            let error = token_response(&url(), junk).unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::Malformed {
                        source: Some(_),
                        ..
                    }
                ),
                "{junk:?}: {error:?}"
            );
        }
        let error =
            token_response(&url(), br#"{"access_token":"a b","token_type":"Bearer"}"#).unwrap_err();
        assert!(matches!(&error, Error::Malformed { source: None, .. }));
    }

    #[test]
    fn an_error_body_is_the_oauth_error_else_the_status() {
        let error = error_response(
            &url(),
            401,
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
            None,
        );
        assert_eq!(error.oauth_code(), Some("invalid_client"));
        assert_eq!(error.retry_after(), None);
        assert_eq!(
            error.to_string(),
            "the token endpoint refused the request (HTTP 401): invalid_client \
             (\"client authentication failed\")"
        );
        for body in [
            &b"Bad Gateway"[..],
            br#"{"error":""}"#,
            br#"{"message":"x"}"#,
        ] {
            let error = error_response(&url(), 502, body, None);
            assert!(
                matches!(error, Error::Status { status: 502, .. }),
                "{body:?}: {error:?}"
            );
        }
        // The wait a refusal asks for stays with it, OAuth error or not.
        let wait = Some(Duration::from_secs(420));
        let slowed = error_response(&url(), 429, br#"{"error":"slow_down"}"#, wait);
        assert_eq!(
            (slowed.oauth_code(), slowed.retry_after()),
            (Some("slow_down"), wait)
        );
        let busy = error_response(&url(), 503, b"", wait);
        assert!(
            matches!(busy, Error::Status { status: 503, .. }),
            "{busy:?}"
        );
        assert_eq!(busy.retry_after(), wait);
    }
}
