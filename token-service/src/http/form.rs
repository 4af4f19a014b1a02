//! Strict `application/x-www-form-urlencoded` bodies (RFC 6749 §3.2): the right content type,
//! UTF-8, and no parameter sent twice (§3.1) unless it may repeat.

use std::collections::HashMap;

use http::{HeaderMap, header};

use crate::error::OAuthError;

/// Parameters of a form body. Empty values count as absent (RFC 6749 §3.1).
#[derive(Default)]
pub(crate) struct Form {
    single: HashMap<String, String>,
    repeated: HashMap<String, Vec<String>>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values hold secrets and tokens: only the names are shown.
        formatter
            .debug_set()
            .entries(self.single.keys().chain(self.repeated.keys()))
            .finish()
    }
}

/// Whether the request's `Content-Type` is `expected` (parameters such as `charset` aside,
/// case ignored).
pub(crate) fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case(expected)
}

impl Form {
    /// Parses `body`; `repeatable` names the parameters that may appear more than once
    /// (RFC 8707 `resource`).
    pub(crate) fn parse(
        headers: &HeaderMap,
        body: &[u8],
        repeatable: &[&str],
    ) -> Result<Self, OAuthError> {
        if !has_media_type(headers, "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(OAuthError::invalid_request("the body is not UTF-8"));
        }
        let mut form = Self::default();
        for (name, value) in form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            if repeatable.contains(&name.as_ref()) {
                form.repeated
                    .entry(name.into_owned())
                    .or_default()
                    .push(value.into_owned());
            } else if form
                .single
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                )));
            }
        }
        Ok(form)
    }

    /// A single-valued parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.single.get(name).map(String::as_str)
    }

    /// A required single-valued parameter.
    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is missing")))
    }

    /// Every value of a repeatable parameter.
    pub(crate) fn all(&self, name: &str) -> &[String] {
        self.repeated.get(name).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=UTF-8"
                .parse()
                .unwrap(),
        );
        headers
    }

    #[test]
    fn parameters_are_decoded() {
        let form = Form::parse(
            &form_headers(),
            b"a=x%20y&b=1+2&resource=r1&resource=r2",
            &["resource"],
        )
        .unwrap();
        assert_eq!(form.get("a"), Some("x y"));
        assert_eq!(form.get("b"), Some("1 2"));
        assert_eq!(form.all("resource"), ["r1", "r2"]);
    }

    #[test]
    fn repeated_parameter_is_refused_naming_it() {
        let error = Form::parse(&form_headers(), b"scope=a&scope=b", &[]).unwrap_err();
        assert!(error.description.contains("`scope`"), "{error}");
    }

    #[test]
    fn empty_values_are_absent() {
        let form = Form::parse(&form_headers(), b"scope=&grant_type=x", &[]).unwrap();
        assert_eq!(form.get("scope"), None);
        assert!(form.require("scope").is_err());
    }

    #[test]
    fn other_content_types_are_refused() {
        let mut headers = HeaderMap::new();
        assert!(Form::parse(&headers, b"a=b", &[]).is_err());
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(Form::parse(&headers, b"a=b", &[]).is_err());
    }

    #[test]
    fn non_utf8_body_is_refused() {
        assert!(Form::parse(&form_headers(), b"a=\xff", &[]).is_err());
    }

    #[test]
    fn debug_shows_no_values() {
        let form = Form::parse(&form_headers(), b"client_secret=hunter2", &[]).unwrap();
        assert!(!format!("{form:?}").contains("hunter2"));
    }
}
