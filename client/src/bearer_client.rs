//! [`BearerClient`]: a `reqwest::Client` whose requests carry a [`TokenSource`]'s token.

use http::Method;
use http::header::AUTHORIZATION;
use reqwest::{IntoUrl, Request, RequestBuilder, Response};

use crate::error::Error;
use crate::retry::token_for_retry;
use crate::source::TokenSource;

/// A `reqwest::Client` that sends each request with `Authorization: Bearer <token>` and, when
/// the API refuses the token as invalid or expired, drops it and sends the request once more
/// with a new one.
///
/// A request whose body is a stream cannot be copied (`reqwest::Request::try_clone`), so it
/// is not sent again; its refused token is still dropped, so the next request gets a new one.
///
/// ```no_run
/// use scopegate_client::{BearerClient, TokenSource};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tokens = TokenSource::builder()
///     .issuer("http://127.0.0.1:8080")
///     .client_id("svc-a")
///     .client_secret(std::env::var("CLIENT_SECRET")?)
///     .scope("akamai:social_profile:read")
///     .build()?;
/// let api = BearerClient::new(reqwest::Client::new(), tokens);
/// let response = api.send(api.get("http://127.0.0.1:3000/me")).await?;
/// println!("{}: {}", response.status(), response.text().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BearerClient {
    http: reqwest::Client,
    tokens: TokenSource,
}

impl BearerClient {
    /// Requests through `http`, with tokens from `tokens`.
    #[must_use]
    pub fn new(http: reqwest::Client, tokens: TokenSource) -> Self {
        Self { http, tokens }
    }

    /// A request to build with reqwest's builder, then give to [`send`](Self::send).
    pub fn request(&self, method: Method, url: impl IntoUrl) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// A `GET` request to build, then give to [`send`](Self::send).
    pub fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// Builds and sends `request` (see [`execute`](Self::execute)).
    ///
    /// # Errors
    /// As [`execute`](Self::execute); a request that does not build is [`Error::Request`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Error> {
        self.execute(request.build().map_err(request_error)?).await
    }

    /// Sends `request` with the current token (replacing any `Authorization` it had); if the
    /// API refuses the token as invalid or expired, once more with a new one. Any other
    /// answer, a 403 included, is the caller's.
    ///
    /// # Errors
    /// The token source's [`Error`] when no token could be obtained; [`Error::Request`] when
    /// the API could not be reached.
    pub async fn execute(&self, mut request: Request) -> Result<Response, Error> {
        let token = self.tokens.token().await?;
        let retry = request.try_clone();
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.authorization().clone());
        let response = self.http.execute(request).await.map_err(request_error)?;
        let fresh = token_for_retry(
            &self.tokens,
            &token,
            response.status(),
            response.headers(),
            retry.is_some(),
        )
        .await?;
        let (Some(fresh), Some(mut retry)) = (fresh, retry) else {
            return Ok(response);
        };
        drop(response);
        retry
            .headers_mut()
            .insert(AUTHORIZATION, fresh.authorization().clone());
        self.http.execute(retry).await.map_err(request_error)
    }

    /// The token source.
    #[must_use]
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }
}

fn request_error(error: reqwest::Error) -> Error {
    Error::Request {
        source: error.into(),
    }
}
