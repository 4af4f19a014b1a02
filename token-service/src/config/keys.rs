//! The public keys a client or an API authenticates with instead of a secret
//! (`private_key_jwt`, RFC 7523 §2.2, OpenID Connect Core §9): a JWK Set registered inline
//! (`jwks`) or the URL it is published at (`jwks_uri`), checked once, wherever registered.

use std::sync::Arc;

use serde_json::Value;

use super::{ConfigError, invalid};

/// Members only a private JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Most keys a registered set may hold.
const MAX_KEYS: usize = 16;

/// Where a party's assertion keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionKeys {
    /// A JWK Set registered with the party (its JSON text).
    Jwks(Arc<str>),
    /// The URL the party publishes its JWK Set at, fetched and cached like an issuer's.
    JwksUri(String),
}

impl AssertionKeys {
    /// What identifies these keys (the set's text or the URL): a party registered again with
    /// other keys must not be checked against the old ones.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        match self {
            Self::Jwks(text) => text,
            Self::JwksUri(uri) => uri,
        }
    }
}

/// Parses `--jwks` (a JWK Set as JSON) on the command line.
///
/// # Errors
///
/// The JSON error, as text.
pub fn parse_jwks_argument(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))
}

/// The one check of `jwks` and `jwks_uri` (fields named `{prefix}jwks`, `{prefix}jwks_uri`):
/// at most one of them; a set of 1 to 16 public keys, each with a `kty` and none with a private
/// member; a URL of https (http only on loopback, for development) without credentials or
/// fragment. `None` when neither is given.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the field.
pub fn check(
    prefix: &str,
    jwks: Option<&Value>,
    jwks_uri: Option<&str>,
) -> Result<Option<AssertionKeys>, ConfigError> {
    let field = |name: &str| format!("{prefix}{name}");
    match (jwks, jwks_uri) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(invalid(
            field("jwks_uri"),
            "give `jwks` or `jwks_uri`, not both",
        )),
        (Some(set), None) => check_set(&field("jwks"), set).map(Some),
        (None, Some(uri)) => check_uri(&field("jwks_uri"), uri).map(Some),
    }
}

fn check_set(field: &str, set: &Value) -> Result<AssertionKeys, ConfigError> {
    let Some(keys) = set.get("keys").and_then(Value::as_array) else {
        return Err(invalid(
            field,
            "must be a JWK Set: an object with a `keys` array",
        ));
    };
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(invalid(field, format!("must hold 1 to {MAX_KEYS} keys")));
    }
    for (position, key) in keys.iter().enumerate() {
        let Some(members) = key.as_object() else {
            return Err(invalid(
                format!("{field}.keys[{position}]"),
                "must be a JWK object",
            ));
        };
        if !members.get("kty").is_some_and(Value::is_string) {
            return Err(invalid(format!("{field}.keys[{position}]"), "has no `kty`"));
        }
        if let Some(private) = PRIVATE_MEMBERS
            .iter()
            .find(|name| members.contains_key(**name))
        {
            return Err(invalid(
                format!("{field}.keys[{position}]"),
                format!(
                    "holds the private member `{private}`: register the public key only (the private key never leaves the client)"
                ),
            ));
        }
    }
    Ok(AssertionKeys::Jwks(set.to_string().into()))
}

fn check_uri(field: &str, uri: &str) -> Result<AssertionKeys, ConfigError> {
    let url =
        url::Url::parse(uri).map_err(|error| invalid(field, format!("not a URL: {error}")))?;
    match url.scheme() {
        "https" => {}
        "http" if super::is_loopback(&url) => {}
        _ => {
            return Err(invalid(
                field,
                "must use https (http is allowed only on loopback, for development)",
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(invalid(field, "must not carry credentials or a fragment"));
    }
    Ok(AssertionKeys::JwksUri(uri.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_of(result: Result<Option<AssertionKeys>, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn a_public_set_or_a_secure_url_is_taken() {
        let set = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "x", "y": "y" }] });
        assert!(matches!(
            check("", Some(&set), None),
            Ok(Some(AssertionKeys::Jwks(_)))
        ));
        for uri in [
            "https://app.example/jwks.json",
            "http://127.0.0.1:9000/jwks",
        ] {
            assert_eq!(
                check("", None, Some(uri)).unwrap(),
                Some(AssertionKeys::JwksUri(uri.to_owned()))
            );
        }
        assert_eq!(check("", None, None).unwrap(), None);
    }

    #[test]
    fn private_keys_bad_sets_and_insecure_urls_are_refused_naming_the_field() {
        let private =
            json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "x", "y": "y", "d": "secret" }] });
        assert_eq!(
            field_of(check("clients[0].", Some(&private), None)),
            "clients[0].jwks.keys[0]"
        );
        for set in [
            json!({}),
            json!({ "keys": [] }),
            json!({ "keys": ["k"] }),
            json!({ "keys": [{}] }),
        ] {
            assert!(
                field_of(check("", Some(&set), None)).starts_with("jwks"),
                "{set}"
            );
        }
        for uri in [
            "http://example.com/jwks",
            "ftp://x/jwks",
            "https://u:p@x/jwks",
            "not a url",
        ] {
            assert_eq!(field_of(check("", None, Some(uri))), "jwks_uri", "{uri}");
        }
        let set = json!({ "keys": [{ "kty": "EC" }] });
        assert_eq!(
            field_of(check("", Some(&set), Some("https://x/jwks"))),
            "jwks_uri"
        );
    }
}
