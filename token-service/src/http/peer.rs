//! Who the caller is, for the limits that count per network: the connection's peer, or — when
//! that peer is one of the `trusted_proxies` — the address the proxies forwarded, read from
//! `Forwarded` (RFC 7239) or else `X-Forwarded-For`, right to left, skipping trusted hops. An
//! untrusted peer's forwarding headers are ignored: anyone can write them.
//!
//! Without a peer address (the routes embedded in a server started without connection info)
//! the service falls back to what needs none: the per-network limits are off and the
//! per-account ones are shared by every caller; it says so in its log, once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, header};
use ipnet::IpNet;

/// The configured trusted proxies, handed to every request (see `http::app`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(pub(crate) Arc<[IpNet]>);

/// The caller's IP address, if it is known.
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub(crate) Option<String>);

impl Peer {
    /// The address as text.
    pub(crate) fn address(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

static WARNED: AtomicBool = AtomicBool::new(false);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        if peer.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "requests carry no peer address (the routes are served without connection \
                 info): per-network limits are off, and per-account limits are shared by \
                 every caller"
            );
        }
        // Borrowed, not cloned: every worker would write the `Arc`'s count on every request.
        let trusted = parts
            .extensions
            .get::<TrustedProxies>()
            .map_or(&[][..], |trusted| &trusted.0[..]);
        Ok(Self(peer.map(|peer| {
            client_address(peer, &parts.headers, trusted).to_string()
        })))
    }
}

/// The client behind `peer`: `peer` itself unless it is trusted; else the nearest forwarded
/// address that is not a trusted proxy (the furthest one if all are), or the nearest trusted
/// hop when the forwarding headers cannot be read.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|network| network.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for hop in forwarded_hops(headers).into_iter().rev() {
        let Some(address) = hop else {
            // `unknown`, an obfuscated name, or garbage: whoever is behind it cannot be told.
            return nearest;
        };
        if !is_trusted(&address) {
            return address;
        }
        nearest = address;
    }
    nearest
}

/// The forwarded addresses, client first: `Forwarded`'s `for=` when the request has the
/// header, else `X-Forwarded-For`. `None` for a hop that is not an IP address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: header::HeaderName| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().map(str::to_owned).unwrap_or_default())
            .collect()
    };
    let forwarded = values(header::FORWARDED);
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(name, _)| name.eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| node_address(node))
            })
            .collect();
    }
    values(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .flat_map(|value| value.split(','))
        .map(|hop| node_address(hop.trim()))
        .collect()
}

/// An address as a forwarding header writes it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `"[2001:db8::1]:4711"`.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|net| net.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_are_ignored() {
        let spoofed = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.8"),
        ]);
        assert_eq!(
            client_address(ip("192.0.2.9"), &spoofed, &[]),
            ip("192.0.2.9")
        );
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("192.0.2.9"), &spoofed, &trusted),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn forwarded_addresses_are_read_right_to_left_skipping_trusted_hops() {
        let trusted = nets(&["10.0.0.0/8", "172.16.0.1/32"]);
        // The client wrote a fake first hop; the proxies appended the real ones.
        let chain = headers(&[("x-forwarded-for", "203.0.113.66, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(
            client_address(ip("172.16.0.1"), &chain, &trusted),
            ip("198.51.100.7")
        );
        // Repeated headers are one list, in order.
        let split = headers(&[
            ("x-forwarded-for", "203.0.113.66"),
            ("x-forwarded-for", "198.51.100.7, 10.1.2.3"),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &split, &trusted),
            ip("198.51.100.7")
        );
        // Every hop trusted: the furthest.
        let inside = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.2.3")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &inside, &trusted),
            ip("10.9.9.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_its_forms_are_read() {
        let trusted = nets(&["10.0.0.0/8"]);
        let both = headers(&[
            ("x-forwarded-for", "203.0.113.66"),
            (
                "forwarded",
                "for=198.51.100.7;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.2",
            ),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &both, &trusted),
            ip("2001:db8:cafe::17")
        );
        let port = headers(&[("forwarded", "For=\"198.51.100.7:8080\"")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &port, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn an_unreadable_hop_stops_at_the_nearest_trusted_one() {
        let trusted = nets(&["10.0.0.0/8"]);
        let unknown = headers(&[("forwarded", "for=198.51.100.7, for=unknown, for=10.1.2.3")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &unknown, &trusted),
            ip("10.1.2.3")
        );
        let garbage = headers(&[("x-forwarded-for", "not-an-address")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &garbage, &trusted),
            ip("10.0.0.1")
        );
    }
}
