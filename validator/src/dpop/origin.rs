//! Where clients reach a server: the first half of every `htu` a proof is checked against.

use url::{Host, Url};

use crate::error::BuildError;

/// The origin (`scheme://host[:port]`) at which clients reach this server, as configured —
/// never read from a request's `Host` header, which the client writes: a proof made for another
/// host must not pass because the attacker also sent that host.
///
/// ```
/// use scopegate_validator::dpop::ExternalOrigin;
///
/// let origin = ExternalOrigin::parse("https://API.example.com:443")?;
/// assert_eq!(origin.as_str(), "https://api.example.com");
/// assert_eq!(origin.url_for("/orders/7"), "https://api.example.com/orders/7");
/// assert!(ExternalOrigin::parse("https://api.example.com/v1").is_err());
/// # Ok::<(), scopegate_validator::BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalOrigin(String);

impl ExternalOrigin {
    /// Reads and normalises an origin: scheme and host lowercased, a default port dropped.
    ///
    /// # Errors
    /// [`BuildError`] (field `external_origin`) unless it is an `https` origin — `http` on a
    /// loopback host only, for development — without credentials, path, query or fragment.
    pub fn parse(origin: &str) -> Result<Self, BuildError> {
        let invalid =
            |problem: &str| BuildError::new("external_origin", format!("{origin:?}: {problem}"));
        let url = Url::parse(origin).map_err(|_| invalid("not an absolute URL"))?;
        let loopback = match url.host() {
            Some(Host::Domain(name)) => name == "localhost",
            Some(Host::Ipv4(address)) => address.is_loopback(),
            Some(Host::Ipv6(address)) => address.is_loopback(),
            None => return Err(invalid("has no host")),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(invalid("must use https (http only on a loopback host)")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not hold credentials"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "scheme://host[:port] only: no path, query or fragment",
            ));
        }
        Ok(Self(url.origin().ascii_serialization()))
    }

    /// The normalised origin, without a trailing `/`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of `path` (the request's path as received, without its query) on this origin:
    /// what the proof's `htu` must name.
    #[must_use]
    pub fn url_for(&self, path: &str) -> String {
        let mut url = String::with_capacity(self.0.len() + path.len() + 1);
        url.push_str(&self.0);
        if !path.starts_with('/') {
            url.push('/');
        }
        url.push_str(path);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        for (given, normal) in [
            ("https://api.example.com", "https://api.example.com"),
            ("https://api.example.com/", "https://api.example.com"),
            ("HTTPS://Api.Example.COM:443", "https://api.example.com"),
            (
                "https://api.example.com:8443",
                "https://api.example.com:8443",
            ),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://localhost", "http://localhost"),
            ("http://[::1]:80", "http://[::1]"),
        ] {
            assert_eq!(
                ExternalOrigin::parse(given).unwrap().as_str(),
                normal,
                "{given}"
            );
        }
    }

    #[test]
    fn anything_but_an_origin_is_refused_naming_the_field() {
        for bad in [
            "",
            "api.example.com",
            "http://api.example.com",
            "ftp://api.example.com",
            "https://user:pw@api.example.com",
            "https://api.example.com/v1",
            "https://api.example.com/?x=1",
            "https://api.example.com/#f",
            "file:///etc/passwd",
        ] {
            let error = ExternalOrigin::parse(bad).unwrap_err();
            assert_eq!(error.field(), "external_origin", "{bad}");
        }
    }

    #[test]
    fn a_path_joins_the_origin() {
        let origin = ExternalOrigin::parse("https://api.example.com").unwrap();
        assert_eq!(origin.url_for("/a/b"), "https://api.example.com/a/b");
        assert_eq!(origin.url_for(""), "https://api.example.com/");
        assert_eq!(origin.url_for("*"), "https://api.example.com/*");
    }
}
