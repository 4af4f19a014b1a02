//! The verified identity behind a token.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::scope::{Requirement, ScopeSet};
use crate::{json, jws};

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
    /// Shared with the other principals of the same single audience. (Each shared value is
    /// behind a thin pointer: 8 bytes per cached token, not 16.)
    pub(crate) audiences: Arc<Vec<String>>,
    pub(crate) expires_at: NumericDate,
    pub(crate) issued_at: NumericDate,
    /// `iss` when present: it equals the configured issuer, so it is that one, shared.
    pub(crate) issuer: Option<Arc<String>>,
    pub(crate) claims: ClaimText,
    /// Whether the token has `cnf` (RFC 7800): bound to a key, so never a bearer token.
    pub(crate) confirmed: bool,
    /// Which deny set last found this principal not revoked: a cached principal is looked up
    /// again only once the set has changed.
    pub(crate) revocation_check: RevocationCheck,
}

/// A date claim (`exp`, `iat`) as a principal keeps it: whole milliseconds since the epoch, in
/// 8 bytes where `Option<Duration>` takes 16. Rounded down: an expiry kept is never later than
/// the one signed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumericDate(u64);

impl NumericDate {
    const ABSENT: u64 = u64::MAX;

    /// The date `since_epoch` after the epoch; the far future past ~584 million years.
    pub(crate) fn new(since_epoch: Option<Duration>) -> Self {
        Self(since_epoch.map_or(Self::ABSENT, |since_epoch| {
            u64::try_from(since_epoch.as_millis())
                .unwrap_or(u64::MAX)
                .min(Self::ABSENT - 1)
        }))
    }

    pub(crate) fn get(self) -> Option<Duration> {
        (self.0 != Self::ABSENT).then(|| Duration::from_millis(self.0))
    }
}

impl fmt::Debug for NumericDate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(formatter)
    }
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

/// The claim set, decoded, with the identifiers read from it.
#[derive(Clone)]
pub(crate) struct ClaimText {
    /// The claim set's JSON — a JWT's decoded payload (three quarters of its base64url
    /// segment), an introspection answer's — then each identifier present, decoded, in
    /// order: one allocation per principal.
    text: Box<str>,
    /// A JWT's header segment as received, shared with the principals of the other tokens
    /// with the same header (most of an issuer's tokens have one); `None` for an
    /// introspection answer. `header.payload` is what a verified-token cache hit must match.
    header: Option<Arc<String>>,
    /// Where the claim set ends in `text`.
    claims_end: u32,
    /// Each identifier's length, [`ABSENT`] for one the claims do not have; each starts where
    /// the one before it that is present ends.
    identifier_lengths: [u32; IDENTIFIERS],
}

const ABSENT: u32 = u32::MAX;

impl ClaimText {
    /// A JWT's claims: its header segment as received, its decoded claim set (whose
    /// encoding is the payload segment as received: there is one, decoding is strict) and
    /// its identifiers. `None` if the token is too long to be described (4 GiB). `share`
    /// gives the header segment's shared copy (see [`Interned`](crate::interned::Interned)).
    pub(crate) fn jws(
        header: &str,
        claims: &str,
        share: impl FnOnce(&str) -> Arc<String>,
        identifiers: [Option<&str>; IDENTIFIERS],
    ) -> Option<Self> {
        Self::with_identifiers(claims, Some(share(header)), identifiers)
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
        header: Option<Arc<String>>,
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

    /// The claim set's JSON.
    fn claims_text(&self) -> &str {
        self.text
            .get(..self.claims_end as usize)
            .unwrap_or_default()
    }

    /// Whether `signed` is, byte for byte, this JWT's `header.payload`: what a verified-token
    /// cache hit must match. Never true for an introspection answer's claim set.
    ///
    /// The payload is compared by encoding the kept claim set again, on the stack (~0.07 ns
    /// per byte of token: ~21 ns for 430 bytes, ~110 for 1.8 KB), which lets a cached token
    /// keep its claims in three quarters of the space; a payload spelt any other way is not
    /// this token's.
    pub(crate) fn is_signed_part(&self, signed: &str) -> bool {
        let Some(header) = &self.header else {
            return false;
        };
        // The header and the dot first: no scan for the separator.
        let Some((presented_header, payload)) = signed.split_at_checked(header.len()) else {
            return false;
        };
        presented_header == header.as_str()
            && payload
                .strip_prefix('.')
                .is_some_and(|payload| jws::is_encoding_of(payload, self.claims_text().as_bytes()))
    }
}

/// What the revocation check remembers about a principal: the version of the last deny set
/// that found it not revoked (0 for none). A memo, not part of what the principal says: clones
/// copy it, comparisons ignore it. (Its identifiers' hashes are not kept: 32 bytes per cached
/// token, to save hashing them again once per change of the deny set.)
#[derive(Default)]
pub(crate) struct RevocationCheck {
    passed: AtomicU64,
}

impl RevocationCheck {
    pub(crate) fn passed(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    pub(crate) fn record_pass(&self, version: u64) {
        self.passed.store(version, Ordering::Relaxed);
    }
}

impl Clone for RevocationCheck {
    fn clone(&self) -> Self {
        Self {
            passed: AtomicU64::new(self.passed()),
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
        self.issuer.as_deref().map_or("", String::as_str)
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
            .get()
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
    }

    /// `iat`, when present.
    #[must_use]
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
            .get()
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
        serde_json::from_slice(self.claims.claims_text().as_bytes()).unwrap_or_default()
    }

    /// One claim, as JSON, read from the claim set on each call.
    #[must_use]
    pub fn claim(&self, name: &str) -> Option<Value> {
        let mut found = None;
        json::for_each_member_where(
            self.claims.claims_text().as_bytes(),
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
        serde_json::from_slice(self.claims.claims_text().as_bytes())
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
            audiences: Arc::default(),
            expires_at: NumericDate::new(None),
            issued_at: NumericDate::new(issued_at),
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
        assert!(size_of::<Principal>() <= 104, "{}", size_of::<Principal>());
    }

    #[test]
    fn dates_are_kept_to_the_millisecond_rounded_down() {
        let kept = |since_epoch| NumericDate::new(since_epoch).get();
        assert_eq!(kept(None), None);
        assert_eq!(kept(Some(Duration::ZERO)), Some(Duration::ZERO));
        assert_eq!(
            kept(Some(Duration::from_secs_f64(1_700_000_000.999_9))),
            Some(Duration::from_millis(1_700_000_000_999))
        );
        // The far future stays a date, and stays in the future.
        let far = kept(Some(Duration::MAX)).expect("a date");
        assert!(far > Duration::from_secs(100 * 365 * 24 * 3600 * 1_000_000));
    }

    fn shared(header: &str) -> Arc<String> {
        Arc::new(header.to_owned())
    }

    #[test]
    fn only_the_exact_signed_part_matches() {
        // `{"a":1}` is `eyJhIjoxfQ`; its last character has four unused bits.
        let text = ClaimText::jws(
            "ab",
            r#"{"a":1}"#,
            shared,
            [Some("jane"), None, None, None, None],
        )
        .unwrap();
        assert!(text.is_signed_part("ab.eyJhIjoxfQ"));
        for other in [
            "",
            "ab",
            "ab.",
            ".eyJhIjoxfQ",
            "abeyJhIjoxfQ",
            "ab.eyJhIjoxfQx",
            "xab.eyJhIjoxfQ",
            "ab.eyJhIjoxf",
            "a.beyJhIjoxfQ",
            "ab-eyJhIjoxfQ",
            "aB.eyJhIjoxfQ",
            "ab..eyJhIjoxfQ",
            "ab.eyJhIjoxfQ.",
            // The same bytes spelt otherwise: a set unused bit, padding.
            "ab.eyJhIjoxfR",
            "ab.eyJhIjoxfQ==",
            "ab.eyJhIjoxfq",
        ] {
            assert!(!text.is_signed_part(other), "{other:?}");
        }
        assert_eq!(text.identifier(Identifier::Subject), Some("jane"));
        assert_eq!(text.identifier(Identifier::Client), None);
        let answer = ClaimText::json(&Map::new(), [None; IDENTIFIERS]).unwrap();
        assert!(!answer.is_signed_part("{}"));
        assert!(!answer.is_signed_part(""));
    }

    /// A claim set longer than the comparison's stack chunk, of every length around its
    /// boundaries: the encoding matches, and a change of any one character does not.
    #[test]
    fn long_claim_sets_are_compared_chunk_by_chunk() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for length in [
            383, 384, 385, 3071, 3072, 3073, 3074, 6143, 6144, 6145, 7000,
        ] {
            let claims = format!(r#"{{"p":"{}"}}"#, "x".repeat(length - 8));
            let text = ClaimText::jws("hh", &claims, shared, [None; IDENTIFIERS]).unwrap();
            let payload = URL_SAFE_NO_PAD.encode(&claims);
            assert!(text.is_signed_part(&format!("hh.{payload}")), "{length}");
            for position in [
                0,
                4095,
                4096,
                4097,
                8191,
                8192,
                payload.len() / 2,
                payload.len() - 1,
            ] {
                let Some(original) = payload.as_bytes().get(position) else {
                    continue;
                };
                let mut changed = payload.clone().into_bytes();
                changed[position] = if *original == b'A' { b'B' } else { b'A' };
                let changed = String::from_utf8(changed).unwrap();
                assert!(
                    !text.is_signed_part(&format!("hh.{changed}")),
                    "{length} at {position}"
                );
            }
            assert!(!text.is_signed_part(&format!("hh.{}", &payload[1..])));
            assert!(!text.is_signed_part(&format!("hh.{payload}A")));
        }
    }

    #[test]
    fn identifiers_are_found_after_the_claims_and_each_other() {
        let identifiers = [Some("sub-1"), None, Some(""), Some("sid-22"), Some("jkt")];
        let text = ClaimText::jws("h", "{}", shared, identifiers).unwrap();
        let found = [
            Identifier::Subject,
            Identifier::Client,
            Identifier::TokenId,
            Identifier::Session,
            Identifier::KeyThumbprint,
        ]
        .map(|which| text.identifier(which));
        assert_eq!(found, identifiers);
        assert_eq!(text.claims_text(), "{}");
    }

    #[test]
    fn principals_of_one_header_share_it() {
        let interned = crate::interned::Interned::default();
        let shared = |header: &str| {
            interned
                .headers
                .get_or_make(header, |header| Ok::<_, ()>(Arc::new(header.to_owned())))
                .unwrap()
        };
        let first = ClaimText::jws("hh", "{}", shared, [None; IDENTIFIERS]).unwrap();
        let second = ClaimText::jws("hh", "[]", shared, [None; IDENTIFIERS]).unwrap();
        let (Some(one), Some(two)) = (&first.header, &second.header) else {
            panic!("JWT claim sets keep their header");
        };
        assert!(Arc::ptr_eq(one, two));
        // `{}` is `e30`, `[]` is `W10`.
        assert!(first.is_signed_part("hh.e30") && second.is_signed_part("hh.W10"));
        assert!(!first.is_signed_part("hh.W10") && !second.is_signed_part("hh.e30"));
    }
}
