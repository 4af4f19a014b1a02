//! The verified identity behind a token.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::json;
use crate::scope::{Requirement, ScopeSet};

/// Who a verified token speaks for, and what it grants.
///
/// Built only by the validator, from a token whose signature, issuer, audience and lifetime
/// have been checked. Every claim of the token stays available through [`claims`](Self::claims),
/// [`claim`](Self::claim) and [`deserialize_claims`](Self::deserialize_claims), read on demand
/// from the claim set as received: a cached principal keeps the claim set in one buffer, not as
/// a parsed map, which is what keeps a verified-token cache entry small.
#[derive(Clone)]
pub struct Principal {
    /// Shared with the other principals granted the same scopes.
    pub(crate) scopes: Arc<ScopeSet>,
    /// Shared with the other principals of the same single audience.
    pub(crate) audiences: Arc<[String]>,
    pub(crate) expires_at: Option<Duration>,
    pub(crate) issued_at: Option<Duration>,
    /// `iss` when present: it equals the configured issuer, so it is that one, shared.
    pub(crate) issuer: Option<Arc<str>>,
    pub(crate) claims: ClaimText,
    /// Whether the token has `cnf` (RFC 7800): bound to a key, so never a bearer token.
    pub(crate) confirmed: bool,
    /// Which deny set last found this principal not revoked: a cached principal is looked up
    /// again only once the set has changed.
    pub(crate) revocation_check: RevocationCheck,
}

/// The string claims a principal answers for without parsing its claim set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identifier {
    /// `sub`.
    Subject = 0,
    /// `client_id`, else `azp`.
    Client = 1,
    /// `jti`.
    TokenId = 2,
    /// `sid`.
    Session = 3,
    /// `cnf.jkt`.
    KeyThumbprint = 4,
}

const IDENTIFIERS: usize = 5;

/// The claim set as received, with the identifiers read from it.
#[derive(Clone)]
pub(crate) struct ClaimText {
    /// The claim set — a JWT's payload segment as received (base64url), or an introspection
    /// answer's JSON — then each identifier present, decoded, in order: one allocation per
    /// principal.
    text: Box<str>,
    /// A JWT's header segment as received, shared with the principals of the other tokens
    /// with the same header (most of an issuer's tokens have one); `None` for an
    /// introspection answer. `header.payload` is what a verified-token cache hit must match.
    header: Option<Arc<str>>,
    /// Where the claim set ends in `text`.
    claims_end: u32,
    /// Each identifier's length, [`ABSENT`] for one the claims do not have; each starts where
    /// the one before it that is present ends.
    identifier_lengths: [u32; IDENTIFIERS],
}

const ABSENT: u32 = u32::MAX;

impl ClaimText {
    /// A JWT's claims: its signed part (`header.payload`, as received) and its identifiers.
    /// `None` if the token is too long to be described (4 GiB). `share` gives the header
    /// segment's shared copy (see [`Interned`](crate::interned::Interned)).
    pub(crate) fn jws(
        signed: &str,
        share: impl FnOnce(&str) -> Arc<str>,
        identifiers: [Option<&str>; IDENTIFIERS],
    ) -> Option<Self> {
        let (header, payload) = signed.split_once('.')?;
        Self::with_identifiers(payload, Some(share(header)), identifiers)
    }

    /// An introspection answer's claims, as JSON.
    pub(crate) fn json(
        claims: &Map<String, Value>,
        identifiers: [Option<&str>; IDENTIFIERS],
    ) -> Option<Self> {
        let json = serde_json::to_string(claims).ok()?;
        Self::with_identifiers(&json, None, identifiers)
    }

    fn with_identifiers(
        claims: &str,
        header: Option<Arc<str>>,
        identifiers: [Option<&str>; IDENTIFIERS],
    ) -> Option<Self> {
        let length = claims.len()
            + identifiers
                .iter()
                .flatten()
                .map(|id| id.len())
                .sum::<usize>();
        // Every offset fits a u32, and no length is mistaken for ABSENT.
        if length >= ABSENT as usize {
            return None;
        }
        let mut text = String::with_capacity(length);
        text.push_str(claims);
        let mut identifier_lengths = [ABSENT; IDENTIFIERS];
        for (stored, identifier) in identifier_lengths.iter_mut().zip(identifiers) {
            if let Some(identifier) = identifier {
                *stored = u32::try_from(identifier.len()).ok()?;
                text.push_str(identifier);
            }
        }
        Some(Self {
            text: text.into_boxed_str(),
            header,
            claims_end: u32::try_from(claims.len()).ok()?,
            identifier_lengths,
        })
    }

    pub(crate) fn identifier(&self, which: Identifier) -> Option<&str> {
        let (before, rest) = self.identifier_lengths.split_at(which as usize);
        let length = *rest.first()?;
        if length == ABSENT {
            return None;
        }
        let start = before
            .iter()
            .filter(|length| **length != ABSENT)
            .fold(self.claims_end as usize, |start, length| {
                start + *length as usize
            });
        self.text.get(start..start + length as usize)
    }

    /// The claim set as stored: a JWT's payload segment, or an answer's JSON.
    fn claims_text(&self) -> &str {
        self.text
            .get(..self.claims_end as usize)
            .unwrap_or_default()
    }

    /// Whether `signed` is, byte for byte, this JWT's `header.payload`: what a verified-token
    /// cache hit must match. Never true for an introspection answer's claim set.
    pub(crate) fn is_signed_part(&self, signed: &str) -> bool {
        let Some(header) = &self.header else {
            return false;
        };
        let payload = self.claims_text();
        // Length, the header, the dot and the payload: no scan for the separator.
        signed.len() == header.len() + 1 + payload.len()
            && signed.as_bytes().get(header.len()) == Some(&b'.')
            && signed.starts_with(&**header)
            && signed.ends_with(payload)
    }

    /// The claim set's JSON. Decoding cannot fail: the same bytes were decoded and parsed
    /// when the token was verified.
    fn json_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        let claims = self.claims_text();
        if self.header.is_none() {
            return std::borrow::Cow::Borrowed(claims.as_bytes());
        }
        URL_SAFE_NO_PAD
            .decode(claims)
            .map_or(std::borrow::Cow::Borrowed(b"{}"), std::borrow::Cow::Owned)
    }
}

/// What the revocation check remembers about a principal: the version of the last deny set
/// that found it not revoked (0 for none), and its identifiers as the deny set looks them up,
/// computed once. A memo, not part of what the principal says: clones copy it, comparisons
/// ignore it.
#[derive(Default)]
pub(crate) struct RevocationCheck {
    passed: AtomicU64,
    /// 0 for an absent identifier: hashes are never 0.
    identifiers: OnceLock<[u64; 4]>,
}

impl RevocationCheck {
    pub(crate) fn passed(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    pub(crate) fn record_pass(&self, version: u64) {
        self.passed.store(version, Ordering::Relaxed);
    }

    /// The identifiers, computed by `compute` the first time.
    pub(crate) fn identifiers(
        &self,
        compute: impl FnOnce() -> [Option<u64>; 4],
    ) -> [Option<u64>; 4] {
        self.identifiers
            .get_or_init(|| compute().map(|hash| hash.unwrap_or(0)))
            .map(|hash| (hash != 0).then_some(hash))
    }
}

impl Clone for RevocationCheck {
    fn clone(&self) -> Self {
        Self {
            passed: AtomicU64::new(self.passed()),
            identifiers: self.identifiers.clone(),
        }
    }
}

impl PartialEq for RevocationCheck {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for RevocationCheck {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "RevocationCheck({})", self.passed())
    }
}

impl Principal {
    /// `sub`: the user for tokens issued to a person, the client for client credentials.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.claims.identifier(Identifier::Subject)
    }

    /// `client_id` (RFC 9068 §2.2), or `azp` when the issuer writes that instead.
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.claims.identifier(Identifier::Client)
    }

    /// The granted scopes, from `scope` (or `scp`), as a string or an array.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// `iss`, equal to the configured issuer.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.issuer.as_deref().unwrap_or_default()
    }

    /// `aud`, as one or more values; at least one is a configured audience.
    #[must_use]
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// `exp`: always present for a JWT; an introspection answer may leave it out.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
    }

    /// `iat`, when present.
    #[must_use]
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
    }

    /// `jti`, when present.
    #[must_use]
    pub fn token_id(&self) -> Option<&str> {
        self.claims.identifier(Identifier::TokenId)
    }

    /// `sid` (OpenID Connect): the sign-in session the token was issued in, when present.
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.claims.identifier(Identifier::Session)
    }

    /// `cnf.jkt` (RFC 9449 §6.1): the SHA-256 thumbprint of the key this token is bound to, for
    /// a DPoP-bound token — from a JWT's claims or an introspection answer alike. The validator
    /// refuses a token whose `cnf` is not an object or whose `jkt` is not a thumbprint, so
    /// `None` means the token names no DPoP key.
    ///
    /// # Security
    /// A bound token is only good with a proof made with that key (RFC 9449 §7.1), never as
    /// a bearer token (§7.2): see [`dpop::DpopVerifier`](crate::dpop::DpopVerifier) and
    /// [`dpop::check_bearer_use`](crate::dpop::check_bearer_use).
    #[must_use]
    pub fn bound_key_thumbprint(&self) -> Option<&str> {
        self.claims.identifier(Identifier::KeyThumbprint)
    }

    /// The parties acting for the subject (RFC 8693 §4.1 `act`), the current actor first, then
    /// the ones before it: `["api-b", "api-a"]` for a token API A exchanged and API B exchanged
    /// again. Empty for a token used by its subject's own client. An actor without a string
    /// `sub` ends the list.
    ///
    /// # Security
    /// Only the current (first) actor is the party presenting the token; the ones after it are
    /// history, for audit, never for access decisions (RFC 8693 §4.1).
    #[must_use]
    pub fn actors(&self) -> Vec<String> {
        let mut actors = Vec::new();
        let mut act = self.claim("act");
        while let Some(Value::Object(mut members)) = act {
            let Some(Value::String(subject)) = members.remove("sub") else {
                break;
            };
            actors.push(subject);
            act = members.remove("act");
        }
        actors
    }

    /// Every claim of the token, as JSON, read from the claim set on each call.
    #[must_use]
    pub fn claims(&self) -> Map<String, Value> {
        serde_json::from_slice(&self.claims.json_bytes()).unwrap_or_default()
    }

    /// One claim, as JSON, read from the claim set on each call.
    #[must_use]
    pub fn claim(&self, name: &str) -> Option<Value> {
        let mut found = None;
        json::for_each_member_where(
            &self.claims.json_bytes(),
            |member| member == name,
            |_, value| found = Some(value.into_value()),
        )
        .ok()?;
        found
    }

    /// The claims as the application's own type, deserialised straight from the claim set.
    ///
    /// # Errors
    /// When the claims do not fit `T` (a missing field, a wrong type).
    pub fn deserialize_claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.claims.json_bytes())
    }

    /// Checks the granted scopes against a route's requirement for a request `method`.
    ///
    /// # Errors
    /// [`Error::InsufficientScope`] naming the scopes the route needs.
    pub fn check(&self, requirement: &Requirement, method: &str) -> Result<(), Error> {
        requirement
            .check(&self.scopes, method)
            .map_err(Error::InsufficientScope)
    }
}

#[cfg(test)]
impl Principal {
    /// A principal of `claims` as they are, unchecked, issued at `issued_at`.
    pub(crate) fn for_tests(claims: &Map<String, Value>, issued_at: Option<Duration>) -> Self {
        let string = |name: &str| claims.get(name).and_then(Value::as_str);
        Self {
            scopes: Arc::default(),
            audiences: Arc::from([]),
            expires_at: None,
            issued_at,
            issuer: None,
            confirmed: claims.contains_key("cnf"),
            claims: ClaimText::json(
                claims,
                [
                    string("sub"),
                    string("client_id").or_else(|| string("azp")),
                    string("jti"),
                    string("sid"),
                    None,
                ],
            )
            .expect("a small claim set"),
            revocation_check: RevocationCheck::default(),
        }
    }
}

/// Two principals are equal when they say the same: the same claims, scopes and audiences.
impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.scopes == other.scopes
            && self.audiences == other.audiences
            && self.expires_at == other.expires_at
            && self.issued_at == other.issued_at
            && self.claims() == other.claims()
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Principal")
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("claims", &self.claims())
            .field("revocation_check", &self.revocation_check)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached principal's size is paid once per cached token: a field added here shows.
    #[test]
    fn a_principal_stays_small() {
        assert!(size_of::<Principal>() <= 200, "{}", size_of::<Principal>());
    }

    #[test]
    fn only_the_exact_signed_part_matches() {
        let text = ClaimText::jws(
            "ab.cd",
            |header| Arc::from(header),
            [Some("jane"), None, None, None, None],
        )
        .unwrap();
        assert!(text.is_signed_part("ab.cd"));
        for other in [
            "", "ab", "ab.", ".cd", "abcd", "ab.cdx", "xab.cd", "ab.c", "a.bcd", "abc.d", "ab-cd",
            "ab.cD", "aB.cd", "ab..cd", "ab.cd.",
        ] {
            assert!(!text.is_signed_part(other), "{other:?}");
        }
        assert_eq!(text.identifier(Identifier::Subject), Some("jane"));
        assert_eq!(text.identifier(Identifier::Client), None);
        let answer = ClaimText::json(&Map::new(), [None; IDENTIFIERS]).unwrap();
        assert!(!answer.is_signed_part("{}"));
        assert!(!answer.is_signed_part(""));
    }

    #[test]
    fn identifiers_are_found_after_the_claims_and_each_other() {
        let identifiers = [Some("sub-1"), None, Some(""), Some("sid-22"), Some("jkt")];
        let text = ClaimText::jws("h.payload", |header| Arc::from(header), identifiers).unwrap();
        let found = [
            Identifier::Subject,
            Identifier::Client,
            Identifier::TokenId,
            Identifier::Session,
            Identifier::KeyThumbprint,
        ]
        .map(|which| text.identifier(which));
        assert_eq!(found, identifiers);
        assert_eq!(text.claims_text(), "payload");
    }

    #[test]
    fn principals_of_one_header_share_it() {
        let interned = crate::interned::Interned::default();
        let shared = |header: &str| {
            interned
                .headers
                .get_or_make(header, |header| Ok::<_, ()>(Arc::from(header)))
                .unwrap()
        };
        let first = ClaimText::jws("hh.p1", shared, [None; IDENTIFIERS]).unwrap();
        let second = ClaimText::jws("hh.p22", shared, [None; IDENTIFIERS]).unwrap();
        let (Some(one), Some(two)) = (&first.header, &second.header) else {
            panic!("JWT claim sets keep their header");
        };
        assert!(Arc::ptr_eq(one, two));
        assert!(first.is_signed_part("hh.p1") && second.is_signed_part("hh.p22"));
        assert!(!first.is_signed_part("hh.p22") && !second.is_signed_part("hh.p1"));
    }
}
