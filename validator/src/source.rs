//! Keys and introspection answers from the same process, for an authorization server that
//! guards its own routes with this validator: it hands over its key set and its own
//! introspection answer directly, instead of fetching them from itself over HTTP.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::error::FetchError;

/// A boxed future, as the source traits return (they are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The issuer's key set, held in this process.
///
/// The validator reads it as it would fetch a JWKS: on first use, when the set's lifetime
/// (the `jwks_ttl` default, there being no `Cache-Control`) has passed, when a token names an
/// unknown key (once per refetch cooldown), and on [`Validator::refresh_keys`] — which the
/// owner calls whenever its keys change.
///
/// [`Validator::refresh_keys`]: crate::Validator::refresh_keys
pub trait KeySource: Send + Sync + fmt::Debug + 'static {
    /// The current JWKS document (RFC 7517 §5), as JSON. It is checked like a fetched one.
    ///
    /// # Errors
    /// A [`FetchError`] (for example [`FetchError::InProcess`]) when no key set can be given;
    /// the validator then treats the issuer as unavailable.
    fn jwks(&self) -> Result<Vec<u8>, FetchError>;
}

/// The issuer's RFC 7662 introspection, answered in this process.
///
/// Answers are not cached by the validator: the source is asked on every request, so a
/// revocation is seen at once.
pub trait IntrospectionSource: Send + Sync + fmt::Debug + 'static {
    /// The RFC 7662 §2.2 answer for `token`: a JSON object with `active`, and for an active
    /// token its claims. It is checked like an answer from an endpoint.
    ///
    /// # Errors
    /// A [`FetchError`] when the answer is unknown (a store that failed): the validator
    /// reports the issuer unavailable, never the token invalid.
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Map<String, Value>, FetchError>>;
}
