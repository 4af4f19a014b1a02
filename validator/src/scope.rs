//! The scope model shared by the validator, the tower layer and the token service.
//!
//! A [`Scope`] is an RFC 6749 §3.3 scope-token. It is *structured* when it has the shape
//! `prefix:name` or `prefix:name:suffix`, with prefix and name made of `[A-Za-z0-9_.-]` and the
//! suffix made of the same characters or exactly `*`. The prefix names the data source, the name
//! the resource and the suffix the permission (`read`, `write`, `delete`, `*` = all). Every other
//! valid scope (`openid`, `https://x/y`, `akamai:*:read`, `a:b:c:d`) is *plain* and matches only
//! itself. Matching is case-sensitive.
//!
//! | required | granted that covers it | granted that does not |
//! |---|---|---|
//! | `openid` | `openid` | `OpenID`, `openid:x` |
//! | `p:n:read` | `p:n:read`, `p:n:*` | `p:n`, `p:n:write`, `p:*:read` |
//! | `p:n:*` | `p:n:*` | `p:n:read` |
//! | `p:n` (any permission) | `p:n`, `p:n:<any suffix>` | `p:other:read` |
//!
//! Routes state a [`Requirement`] and check it against the [`ScopeSet`] a token carries; the
//! token service decides what a client gets with [`grant`].
//!
//! ```
//! use scopegate_validator::scope::{Requirement, Scope, ScopeSet};
//!
//! let granted = ScopeSet::parse_space_separated("openid akamai:social_profile:*")?;
//! assert!(granted.covers(&Scope::parse("akamai:social_profile:read")?));
//!
//! let requirement = Requirement::method_derived("akamai:social_profile")?;
//! assert!(requirement.check(&granted, "DELETE").is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a scope, a scope list or a [`Requirement`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope is the empty string; RFC 6749 §3.3 requires at least one character.
    #[error("scope is empty; a scope-token needs at least one character")]
    Empty,
    /// The scope contains a character that RFC 6749 §3.3 does not allow in a scope-token.
    #[error(
        "scope {scope:?} contains {character:?} at byte {position}; a scope-token allows only \
         printable ASCII except space, '\"' and '\\'"
    )]
    InvalidCharacter {
        /// The offending scope (one space-separated element when parsing a list).
        scope: String,
        /// Byte offset of the invalid character within `scope`.
        position: usize,
        /// The invalid character.
        character: char,
    },
    /// A structured scope (`prefix:name`) was needed but the scope is plain.
    #[error(
        "scope {scope:?} is not structured; expected `prefix:name` with prefix and name made of \
         [A-Za-z0-9_.-]"
    )]
    NotStructured {
        /// The offending scope.
        scope: String,
    },
    /// A structured scope without a permission suffix (`prefix:name`) was needed, but the scope
    /// has one.
    #[error("scope {scope:?} already has a permission suffix; expected `prefix:name` without one")]
    HasSuffix {
        /// The offending scope.
        scope: String,
    },
    /// A permission suffix is neither `*` nor made of `[A-Za-z0-9_.-]`.
    #[error("suffix {suffix:?} is invalid; expected `*` or one or more of [A-Za-z0-9_.-]")]
    InvalidSuffix {
        /// The offending suffix.
        suffix: String,
    },
    /// A requirement was built from an empty list; the payload says which and why.
    #[error("invalid requirement: {0}")]
    EmptyRequirement(&'static str),
}

/// The shape of a valid scope, with the offsets needed to split it without searching again.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Plain,
    /// `colon` is the index of the first `:`; `name_end` the index of the second `:`, or the
    /// length of the scope when there is no suffix.
    Structured {
        colon: usize,
        name_end: usize,
    },
}

/// One validated RFC 6749 §3.3 scope-token.
///
/// The string is stored once (shared, so cloning is cheap) together with the offsets of its
/// parts; [`Scope::covers`] neither allocates nor re-parses.
///
/// Equality, ordering and hashing are those of the string: case-sensitive, byte-wise.
///
/// # Security
///
/// Matching is exact and case-sensitive (`OpenID` is not `openid`). A plain scope never matches
/// anything but itself, so wildcards only have meaning in the `prefix:name:*` position.
#[derive(Clone)]
pub struct Scope {
    raw: Arc<str>,
    shape: Shape,
}

/// The permission part of a structured scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suffix<'a> {
    /// `*`: every permission on the resource.
    All,
    /// A named permission such as `read`.
    Named(&'a str),
}

impl<'a> Suffix<'a> {
    /// The suffix as written in the scope (`*` for [`Suffix::All`]).
    #[must_use]
    pub const fn as_str(&self) -> &'a str {
        match self {
            Self::All => "*",
            Self::Named(name) => name,
        }
    }
}

impl fmt::Display for Suffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `%x21 / %x23-5B / %x5D-7E` (RFC 6749 §3.3).
const fn is_scope_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// `[A-Za-z0-9_.-]`
const fn is_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn is_part(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_part_byte)
}

fn is_suffix(s: &str) -> bool {
    s == "*" || is_part(s)
}

fn validate(s: &str) -> Result<(), ScopeError> {
    if s.is_empty() {
        return Err(ScopeError::Empty);
    }
    match s.bytes().position(|b| !is_scope_byte(b)) {
        None => Ok(()),
        Some(position) => {
            // Every byte before `position` is ASCII, so `position` is a char boundary.
            let character = s
                .get(position..)
                .and_then(|rest| rest.chars().next())
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            Err(ScopeError::InvalidCharacter {
                scope: s.to_owned(),
                position,
                character,
            })
        }
    }
}

/// Classifies an already validated scope.
fn shape_of(s: &str) -> Shape {
    let mut parts = s.split(':');
    let (Some(prefix), Some(name)) = (parts.next(), parts.next()) else {
        return Shape::Plain;
    };
    let suffix = parts.next();
    if parts.next().is_some() || !is_part(prefix) || !is_part(name) {
        return Shape::Plain;
    }
    if suffix.is_some_and(|suffix| !is_suffix(suffix)) {
        return Shape::Plain;
    }
    let colon = prefix.len();
    Shape::Structured {
        colon,
        name_end: colon + 1 + name.len(),
    }
}

impl Scope {
    /// Parses and classifies one scope-token.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Empty`] for `""`, [`ScopeError::InvalidCharacter`] for anything outside
    /// RFC 6749 §3.3's `%x21 / %x23-5B / %x5D-7E` (space, `"`, `\`, control characters,
    /// non-ASCII).
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        validate(s)?;
        Ok(Self {
            raw: Arc::from(s),
            shape: shape_of(s),
        })
    }

    /// The scope as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether the scope has the shape `prefix:name` or `prefix:name:suffix`.
    #[must_use]
    pub const fn is_structured(&self) -> bool {
        matches!(self.shape, Shape::Structured { .. })
    }

    /// The prefix (data source) of a structured scope.
    #[must_use]
    pub fn prefix(&self) -> Option<&str> {
        match self.shape {
            Shape::Plain => None,
            Shape::Structured { colon, .. } => Some(&self.raw[..colon]),
        }
    }

    /// The name (resource) of a structured scope.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match self.shape {
            Shape::Plain => None,
            Shape::Structured { colon, name_end } => Some(&self.raw[colon + 1..name_end]),
        }
    }

    /// The permission suffix of a structured scope, `None` for `prefix:name` and plain scopes.
    #[must_use]
    pub fn suffix(&self) -> Option<Suffix<'_>> {
        match self.shape {
            Shape::Structured { name_end, .. } if name_end < self.raw.len() => {
                match &self.raw[name_end + 1..] {
                    "*" => Some(Suffix::All),
                    named => Some(Suffix::Named(named)),
                }
            }
            _ => None,
        }
    }

    /// `prefix:name` of a structured scope.
    fn prefix_name(&self) -> Option<&str> {
        match self.shape {
            Shape::Plain => None,
            Shape::Structured { name_end, .. } => Some(&self.raw[..name_end]),
        }
    }

    /// Whether this scope, when granted, satisfies `required`.
    ///
    /// * `required` plain: only the identical scope.
    /// * `p:n:s` with a named suffix: `p:n:s` or `p:n:*`.
    /// * `p:n:*`: only `p:n:*`.
    /// * `p:n` (any permission): `p:n` or `p:n:<any suffix>`, `*` included.
    ///
    /// Does not allocate.
    #[must_use]
    pub fn covers(&self, required: &Scope) -> bool {
        let Shape::Structured {
            name_end: required_name_end,
            ..
        } = required.shape
        else {
            return self.raw == required.raw;
        };
        let Shape::Structured { name_end, .. } = self.shape else {
            // A plain scope never equals a structured one.
            return false;
        };
        let same_resource = self.raw[..name_end] == required.raw[..required_name_end];
        if required_name_end == required.raw.len() {
            // `p:n` asks for any permission on the resource.
            return same_resource;
        }
        if self.raw == required.raw {
            return true;
        }
        // A named suffix is also covered by `p:n:*`; `p:n:*` only by itself (handled above).
        same_resource
            && &required.raw[required_name_end + 1..] != "*"
            && &self.raw[name_end..] == ":*"
    }

    /// Builds `prefix:name:suffix` from a structured scope without suffix.
    ///
    /// # Errors
    ///
    /// [`ScopeError::NotStructured`] for a plain scope, [`ScopeError::HasSuffix`] when this scope
    /// already has a suffix, [`ScopeError::InvalidSuffix`] unless `suffix` is `*` or made of
    /// `[A-Za-z0-9_.-]`.
    pub fn with_suffix(&self, suffix: &str) -> Result<Self, ScopeError> {
        let Shape::Structured { colon, name_end } = self.shape else {
            return Err(ScopeError::NotStructured {
                scope: self.raw.to_string(),
            });
        };
        if name_end != self.raw.len() {
            return Err(ScopeError::HasSuffix {
                scope: self.raw.to_string(),
            });
        }
        if !is_suffix(suffix) {
            return Err(ScopeError::InvalidSuffix {
                suffix: suffix.to_owned(),
            });
        }
        let mut raw = String::with_capacity(self.raw.len() + 1 + suffix.len());
        raw.push_str(&self.raw);
        raw.push(':');
        raw.push_str(suffix);
        Ok(Self {
            raw: Arc::from(raw),
            shape: Shape::Structured { colon, name_end },
        })
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Scope {}

impl PartialOrd for Scope {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scope {
    fn cmp(&self, other: &Self) -> Ordering {
        self.raw.cmp(&other.raw)
    }
}

impl Hash for Scope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

impl Borrow<str> for Scope {
    fn borrow(&self) -> &str {
        &self.raw
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Scope").field(&&*self.raw).finish()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.raw)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Scope {
    type Error = ScopeError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScopeVisitor;

        impl Visitor<'_> for ScopeVisitor {
            type Value = Scope;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single scope string (RFC 6749 scope-token)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scope, E> {
                Scope::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(ScopeVisitor)
    }
}

/// The permission an HTTP method needs on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `read`: GET, HEAD, OPTIONS.
    Read,
    /// `write`: POST, PUT, PATCH.
    Write,
    /// `delete`: DELETE.
    Delete,
}

impl Permission {
    /// The permission an HTTP method needs, `None` for any other method.
    ///
    /// Methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET` and maps to `None`.
    #[must_use]
    pub fn for_method(method: &str) -> Option<Self> {
        match method {
            "GET" | "HEAD" | "OPTIONS" => Some(Self::Read),
            "POST" | "PUT" | "PATCH" => Some(Self::Write),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The scope suffix: `read`, `write` or `delete`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A de-duplicated set of scopes, kept in byte-wise order of the scope strings.
///
/// The order is canonical, so two sets with the same members are equal and display the same
/// way, and lookups are binary searches: a token carrying thousands of scopes stays cheap.
///
/// Serialises as a space-separated string (the `OAuth2` `scope` form). Deserialises from either
/// a space-separated string or a JSON array of strings, each element exactly one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// The empty set.
    #[must_use]
    pub const fn new() -> Self {
        Self { scopes: Vec::new() }
    }

    /// Parses an RFC 6749 §3.3 scope list: scopes separated by spaces.
    ///
    /// Repeated, leading and trailing spaces are tolerated; `""` is the empty set.
    ///
    /// # Errors
    ///
    /// [`ScopeError::InvalidCharacter`] naming the first offending element, for any other
    /// whitespace (tab, newline, …) or character outside the scope-token alphabet.
    pub fn parse_space_separated(s: &str) -> Result<Self, ScopeError> {
        s.split(' ')
            .filter(|element| !element.is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::from_vec)
    }

    /// Builds a set from scopes, dropping duplicates.
    #[must_use]
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self::from_vec(scopes.into_iter().collect())
    }

    fn from_vec(mut scopes: Vec<Scope>) -> Self {
        scopes.sort_unstable();
        scopes.dedup();
        Self { scopes }
    }

    /// The scopes, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.scopes.iter()
    }

    /// The scopes, in order.
    #[must_use]
    pub fn as_slice(&self) -> &[Scope] {
        &self.scopes
    }

    /// The number of scopes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether the set has no scopes.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether the set holds exactly this scope (no wildcard matching; see [`ScopeSet::covers`]).
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.scopes.binary_search(scope).is_ok()
    }

    /// Members whose string starts with `key`: a contiguous run in the sorted vector.
    fn starting_with<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Scope> + 'a {
        let start = self.scopes.partition_point(|scope| scope.as_str() < key);
        self.scopes[start..]
            .iter()
            .take_while(move |scope| scope.as_str().starts_with(key))
    }

    /// Whether some member [covers](Scope::covers) `required`. Does not allocate.
    #[must_use]
    pub fn covers(&self, required: &Scope) -> bool {
        // Every scope that can cover `required` starts with its `prefix:name` (structured) or
        // with the whole scope (plain).
        let key = required.prefix_name().unwrap_or(required.as_str());
        self.starting_with(key)
            .any(|granted| granted.covers(required))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&ScopeList(&self.scopes), f)
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self::from_scopes(iter)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.iter()
    }
}

impl IntoIterator for ScopeSet {
    type Item = Scope;
    type IntoIter = std::vec::IntoIter<Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.into_iter()
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_space_separated(s)
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScopeSetVisitor;

        impl<'de> Visitor<'de> for ScopeSetVisitor {
            type Value = ScopeSet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a space-separated scope string or an array of scope strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScopeSet, E> {
                ScopeSet::parse_space_separated(v).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScopeSet, A::Error> {
                // The hint comes from untrusted input: cap the pre-allocation.
                let mut scopes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(scope) = seq.next_element::<Scope>()? {
                    scopes.push(scope);
                }
                Ok(ScopeSet::from_vec(scopes))
            }
        }

        deserializer.deserialize_any(ScopeSetVisitor)
    }
}

/// Displays scopes separated by single spaces.
struct ScopeList<'a>(&'a [Scope]);

impl fmt::Display for ScopeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

/// The scopes a route needs, checked against the scopes a token was granted.
///
/// Built once at start-up from configuration; every constructor that takes scope strings fails
/// on bad input rather than at request time, and none builds a requirement that silently allows
/// everything except [`Requirement::any_valid_token`], which says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    kind: RequirementKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum RequirementKind {
    AllOf(Vec<Scope>),
    AnyOf(Vec<Scope>),
    /// OR of AND-sets; no alternatives denies everything.
    Policy(Vec<Vec<Scope>>),
    AnyValidToken,
    MethodDerived(Box<MethodScopes>),
}

/// `p:n` and its three method-derived scopes, built once so `check` does not allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MethodScopes {
    base: Scope,
    read: Scope,
    write: Scope,
    delete: Scope,
}

impl MethodScopes {
    const fn for_permission(&self, permission: Permission) -> &Scope {
        match permission {
            Permission::Read => &self.read,
            Permission::Write => &self.write,
            Permission::Delete => &self.delete,
        }
    }
}

/// Parses a configured list, dropping duplicates but keeping the configured order.
fn parse_list(scopes: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Vec<Scope>, ScopeError> {
    let mut parsed: Vec<Scope> = Vec::new();
    for scope in scopes {
        let scope = Scope::parse(scope.as_ref())?;
        if !parsed.contains(&scope) {
            parsed.push(scope);
        }
    }
    Ok(parsed)
}

impl Requirement {
    /// Every listed scope must be covered.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope; [`ScopeError::EmptyRequirement`] for an empty
    /// list, which would allow every request (fail closed).
    pub fn all_of(scopes: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, ScopeError> {
        let scopes = parse_list(scopes)?;
        if scopes.is_empty() {
            return Err(ScopeError::EmptyRequirement(
                "all_of lists no scopes, which would allow every request; refused (fail closed)",
            ));
        }
        Ok(Self {
            kind: RequirementKind::AllOf(scopes),
        })
    }

    /// At least one listed scope must be covered.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope; [`ScopeError::EmptyRequirement`] for an empty
    /// list, which is almost certainly a configuration mistake (to deny everything on purpose,
    /// use an empty [`Requirement::policy`]).
    pub fn any_of(scopes: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, ScopeError> {
        let scopes = parse_list(scopes)?;
        if scopes.is_empty() {
            return Err(ScopeError::EmptyRequirement(
                "any_of lists no scopes and could never be satisfied; refused as a likely \
                 mistake (an empty policy denies on purpose)",
            ));
        }
        Ok(Self {
            kind: RequirementKind::AnyOf(scopes),
        })
    }

    /// An OR of AND-sets: satisfied when every scope of at least one alternative is covered.
    ///
    /// A policy with no alternatives is allowed and denies every request.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope; [`ScopeError::EmptyRequirement`] when an
    /// alternative lists no scopes, which would allow every request (fail closed).
    pub fn policy(
        alternatives: impl IntoIterator<Item = impl IntoIterator<Item = impl AsRef<str>>>,
    ) -> Result<Self, ScopeError> {
        let mut parsed: Vec<Vec<Scope>> = Vec::new();
        for alternative in alternatives {
            let alternative = parse_list(alternative)?;
            if alternative.is_empty() {
                return Err(ScopeError::EmptyRequirement(
                    "a policy alternative lists no scopes, which would allow every request; \
                     refused (fail closed)",
                ));
            }
            if !parsed.contains(&alternative) {
                parsed.push(alternative);
            }
        }
        Ok(Self {
            kind: RequirementKind::Policy(parsed),
        })
    }

    /// Satisfied by any valid token, whatever its scopes (even none).
    #[must_use]
    pub const fn any_valid_token() -> Self {
        Self {
            kind: RequirementKind::AnyValidToken,
        }
    }

    /// Requires `prefix:name:<permission>`, the permission coming from the HTTP method
    /// (see [`Permission::for_method`]). A method that maps to no permission is refused.
    ///
    /// # Errors
    ///
    /// A [`ScopeError`] for an invalid scope, [`ScopeError::NotStructured`] for a plain scope,
    /// [`ScopeError::HasSuffix`] when `prefix_name` already has a suffix.
    pub fn method_derived(prefix_name: &str) -> Result<Self, ScopeError> {
        let base = Scope::parse(prefix_name)?;
        let read = base.with_suffix(Permission::Read.as_str())?;
        let write = base.with_suffix(Permission::Write.as_str())?;
        let delete = base.with_suffix(Permission::Delete.as_str())?;
        Ok(Self {
            kind: RequirementKind::MethodDerived(Box::new(MethodScopes {
                base,
                read,
                write,
                delete,
            })),
        })
    }

    /// Checks the scopes a token was granted for a request with this HTTP method.
    ///
    /// Allocates only on failure.
    ///
    /// # Errors
    ///
    /// [`Insufficient`], carrying the scopes to name in the RFC 6750 §3 `scope` attribute of an
    /// `insufficient_scope` error.
    pub fn check(&self, granted: &ScopeSet, method: &str) -> Result<(), Insufficient> {
        match &self.kind {
            RequirementKind::AllOf(scopes) => {
                if scopes.iter().all(|scope| granted.covers(scope)) {
                    Ok(())
                } else {
                    Err(Insufficient::new(scopes.clone(), Reason::AllOf))
                }
            }
            RequirementKind::AnyOf(scopes) => {
                if scopes.iter().any(|scope| granted.covers(scope)) {
                    Ok(())
                } else {
                    Err(Insufficient::new(scopes.clone(), Reason::AnyOf))
                }
            }
            RequirementKind::Policy(alternatives) => {
                let mut closest: Option<(usize, &Vec<Scope>)> = None;
                for alternative in alternatives {
                    let missing = alternative
                        .iter()
                        .filter(|scope| !granted.covers(scope))
                        .count();
                    if missing == 0 {
                        return Ok(());
                    }
                    if closest.is_none_or(|(fewest, _)| missing < fewest) {
                        closest = Some((missing, alternative));
                    }
                }
                Err(match closest {
                    Some((_, alternative)) => {
                        Insufficient::new(alternative.clone(), Reason::PolicyClosest)
                    }
                    None => Insufficient::new(Vec::new(), Reason::EmptyPolicy),
                })
            }
            RequirementKind::AnyValidToken => Ok(()),
            RequirementKind::MethodDerived(scopes) => match Permission::for_method(method) {
                Some(permission) => {
                    let required = scopes.for_permission(permission);
                    if granted.covers(required) {
                        Ok(())
                    } else {
                        Err(Insufficient::new(
                            vec![required.clone()],
                            Reason::Method(method.to_owned()),
                        ))
                    }
                }
                // No scope would make this method acceptable: name none.
                None => Err(Insufficient::new(
                    Vec::new(),
                    Reason::UnknownMethod(method.to_owned()),
                )),
            },
        }
    }

    /// Every scope that can take part in satisfying this requirement, in order and without
    /// repeats: what a resource publishes as `scopes_supported` (RFC 9728). A method-derived
    /// requirement names its `read`, `write` and `delete` scopes;
    /// [`any_valid_token`](Self::any_valid_token) names none.
    #[must_use]
    pub fn scopes_named(&self) -> Vec<Scope> {
        let named: Vec<&Scope> = match &self.kind {
            RequirementKind::AllOf(scopes) | RequirementKind::AnyOf(scopes) => {
                scopes.iter().collect()
            }
            RequirementKind::Policy(alternatives) => alternatives.iter().flatten().collect(),
            RequirementKind::AnyValidToken => Vec::new(),
            RequirementKind::MethodDerived(scopes) => {
                vec![&scopes.read, &scopes.write, &scopes.delete]
            }
        };
        let mut unique: Vec<Scope> = Vec::with_capacity(named.len());
        for scope in named {
            if !unique.contains(scope) {
                unique.push(scope.clone());
            }
        }
        unique
    }

    /// A one-line description for logs, e.g. `all of [a b]`.
    #[must_use]
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RequirementKind::AllOf(scopes) => write!(f, "all of [{}]", ScopeList(scopes)),
            RequirementKind::AnyOf(scopes) => write!(f, "any of [{}]", ScopeList(scopes)),
            RequirementKind::Policy(alternatives) if alternatives.is_empty() => {
                f.write_str("empty policy (denies every request)")
            }
            RequirementKind::Policy(alternatives) => {
                f.write_str("policy ")?;
                for (i, alternative) in alternatives.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "[{}]", ScopeList(alternative))?;
                }
                Ok(())
            }
            RequirementKind::AnyValidToken => f.write_str("any valid token"),
            RequirementKind::MethodDerived(scopes) => {
                write!(f, "{}:<read|write|delete by method>", scopes.base)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Reason {
    AllOf,
    AnyOf,
    PolicyClosest,
    EmptyPolicy,
    Method(String),
    UnknownMethod(String),
}

/// Renders the reason of an [`Insufficient`] together with its scopes.
struct Explain<'a>(&'a Reason, &'a [Scope]);

impl fmt::Display for Explain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scopes = ScopeList(self.1);
        match self.0 {
            Reason::AllOf => write!(f, "all of [{scopes}] are required"),
            Reason::AnyOf => write!(f, "one of [{scopes}] is required"),
            Reason::PolicyClosest => write!(
                f,
                "no policy alternative is satisfied; the closest requires [{scopes}]"
            ),
            Reason::EmptyPolicy => f.write_str("the policy has no alternatives and denies"),
            Reason::Method(method) => write!(f, "method {method:?} requires [{scopes}]"),
            Reason::UnknownMethod(method) => write!(
                f,
                "method {method:?} maps to no permission on [{scopes}]; denied (fail closed)"
            ),
        }
    }
}

/// The granted scopes do not satisfy a [`Requirement`] (RFC 6750 §3.1 `insufficient_scope`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("insufficient scope: {}", Explain(.reason, .required))]
pub struct Insufficient {
    required: Vec<Scope>,
    reason: Reason,
}

impl Insufficient {
    const fn new(required: Vec<Scope>, reason: Reason) -> Self {
        Self { required, reason }
    }

    /// The scopes to name in the RFC 6750 §3 `scope="…"` attribute: every scope of an `all_of`,
    /// every alternative of an `any_of`, the scopes of the policy alternative missing the
    /// fewest (none for an empty policy), `p:n:<permission>` for a method-derived requirement
    /// (none when the method maps to no permission: no scope would help).
    #[must_use]
    pub fn required_scopes(&self) -> &[Scope] {
        &self.required
    }
}

/// Some requested scopes grant nothing to this client (RFC 6749 §5.2 `invalid_scope`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("requested scope not allowed for this client: {}", ScopeList(.scopes))]
pub struct Ungrantable {
    scopes: Vec<Scope>,
}

impl Ungrantable {
    /// Every requested scope that granted nothing.
    #[must_use]
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }
}

/// Decides which scopes a client gets for the scopes it requested (token-service side).
///
/// For each requested scope:
///
/// * `p:n` (suffix left out): every allowed scope `p:n:<suffix>` (`*` included), and `p:n`
///   itself if allowed;
/// * `p:n:s`: granted when `p:n:s` or `p:n:*` is allowed;
/// * `p:n:*`: granted only when `p:n:*` is allowed;
/// * plain: granted only when allowed as is.
///
/// The result is de-duplicated. What to grant when no `scope` parameter was sent is up to the
/// caller (the client's default scopes).
///
/// # Errors
///
/// [`Ungrantable`] listing every requested scope that grants nothing.
pub fn grant(requested: &ScopeSet, allowed: &ScopeSet) -> Result<ScopeSet, Ungrantable> {
    let mut granted = Vec::new();
    let mut ungrantable = Vec::new();
    for scope in requested {
        let before = granted.len();
        match scope.shape {
            Shape::Structured { name_end, .. } if name_end == scope.raw.len() => {
                granted.extend(
                    allowed
                        .starting_with(scope.as_str())
                        .filter(|allowed| allowed.covers(scope))
                        .cloned(),
                );
            }
            _ => {
                if allowed.covers(scope) {
                    granted.push(scope.clone());
                }
            }
        }
        if granted.len() == before {
            ungrantable.push(scope.clone());
        }
    }
    if ungrantable.is_empty() {
        Ok(ScopeSet::from_vec(granted))
    } else {
        Err(Ungrantable {
            scopes: ungrantable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse_space_separated(s).unwrap()
    }

    fn strings(scopes: &[Scope]) -> Vec<&str> {
        scopes.iter().map(Scope::as_str).collect()
    }

    const _: () = {
        const fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Scope>();
        assert_traits::<ScopeSet>();
        assert_traits::<Requirement>();
        assert_traits::<Insufficient>();
        assert_traits::<Ungrantable>();
        assert_traits::<ScopeError>();
        assert_traits::<Permission>();
    };

    /// Checks one row of the scope table, both through `Scope::covers` and `ScopeSet::covers`.
    fn check_row(required: &str, satisfying: &[&str], not_satisfying: &[&str]) {
        let required = scope(required);
        for granted in satisfying {
            assert!(
                scope(granted).covers(&required),
                "{granted} should cover {required}"
            );
            assert!(
                set(granted).covers(&required),
                "{{{granted}}} should cover {required}"
            );
        }
        for granted in not_satisfying {
            assert!(
                !scope(granted).covers(&required),
                "{granted} should not cover {required}"
            );
        }
        let all_not = ScopeSet::from_scopes(not_satisfying.iter().map(|s| scope(s)));
        assert!(
            !all_not.covers(&required),
            "{all_not} should not cover {required}"
        );
    }

    #[test]
    fn plain_openid_is_covered_only_by_itself_case_sensitively() {
        check_row("openid", &["openid"], &["OpenID", "openid:x"]);
    }

    #[test]
    fn named_suffix_is_covered_by_itself_or_the_star_suffix() {
        check_row(
            "akamai:social_profile:read",
            &["akamai:social_profile:read", "akamai:social_profile:*"],
            &[
                "akamai:social_profile",
                "akamai:social_profile:write",
                "akamai:*:read",
            ],
        );
    }

    #[test]
    fn star_suffix_is_covered_only_by_the_star_suffix() {
        check_row(
            "akamai:social_profile:*",
            &["akamai:social_profile:*"],
            &["akamai:social_profile:read"],
        );
    }

    #[test]
    fn omitted_suffix_is_covered_by_the_resource_with_any_suffix() {
        check_row(
            "akamai:social_profile",
            &[
                "akamai:social_profile",
                "akamai:social_profile:read",
                "akamai:social_profile:write",
                "akamai:social_profile:delete",
                "akamai:social_profile:*",
                "akamai:social_profile:custom_1.x-y",
            ],
            &[
                "akamai:other:read",
                "akamai:social_profile_x:read",
                "akamai:social_profilex",
                "akamai:social_profile:a:b",
                "akamai:social",
                "other:social_profile:read",
            ],
        );
    }

    #[test]
    fn plain_scopes_that_look_structured_match_only_themselves() {
        check_row(
            "akamai:*:read",
            &["akamai:*:read"],
            &["akamai:x:read", "akamai:*:*"],
        );
        check_row("a:b:c:d", &["a:b:c:d"], &["a:b", "a:b:*", "a:b:c"]);
        check_row(
            "https://x/y",
            &["https://x/y"],
            &["https://x/y/z", "https://x"],
        );
    }

    #[test]
    fn structured_required_is_not_covered_by_lookalike_plain_grants() {
        assert!(!scope("a:b:c:d").covers(&scope("a:b")));
        assert!(!scope("a:b:c:d").covers(&scope("a:b:c")));
        assert!(!scope("a:b:*x").covers(&scope("a:b:x")));
    }

    #[test]
    fn every_printable_ascii_but_space_quote_and_backslash_is_valid() {
        let all: String = (0x21u8..=0x7e)
            .filter(|b| *b != b'"' && *b != b'\\')
            .map(char::from)
            .collect();
        assert_eq!(scope(&all).as_str(), all);
    }

    #[test]
    fn invalid_characters_are_rejected_with_their_position() {
        let cases: &[(&str, usize, char)] = &[
            ("a b", 1, ' '),
            ("a\"b", 1, '"'),
            ("ab\\", 2, '\\'),
            ("a\tb", 1, '\t'),
            ("\n", 0, '\n'),
            ("a\u{7f}", 1, '\u{7f}'),
            ("ab\u{0}", 2, '\u{0}'),
            ("xé", 1, 'é'),
            ("日本", 0, '日'),
        ];
        for (input, position, character) in cases {
            assert_eq!(
                Scope::parse(input),
                Err(ScopeError::InvalidCharacter {
                    scope: (*input).to_owned(),
                    position: *position,
                    character: *character,
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn empty_scope_is_rejected() {
        assert_eq!(Scope::parse(""), Err(ScopeError::Empty));
    }

    #[test]
    fn invalid_character_message_escapes_the_scope() {
        let message = Scope::parse("a\nb\u{1b}[31m").unwrap_err().to_string();
        assert!(
            !message.contains('\n') && !message.contains('\u{1b}'),
            "{message}"
        );
        assert!(message.contains(r#""a\nb\u{1b}[31m""#), "{message}");
        assert!(message.contains("at byte 1"), "{message}");
    }

    #[test]
    fn scopes_are_classified_structured_or_plain() {
        /// (scope, prefix, name, suffix); prefix `None` means plain.
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<Suffix<'static>>,
        );
        let cases: &[Case] = &[
            ("openid", None, None, None),
            ("https://x/y", None, None, None),
            ("akamai:*:read", None, None, None),
            ("*:n", None, None, None),
            ("a:b:c:d", None, None, None),
            ("a::b", None, None, None),
            (":a", None, None, None),
            ("a:", None, None, None),
            ("a:b:", None, None, None),
            ("a:b:**", None, None, None),
            ("a:b:r*", None, None, None),
            ("a:b/c", None, None, None),
            ("p:n", Some("p"), Some("n"), None),
            ("p:n:*", Some("p"), Some("n"), Some(Suffix::All)),
            (
                "p:n:read",
                Some("p"),
                Some("n"),
                Some(Suffix::Named("read")),
            ),
            (
                "Ak-4.m_i:Social_Profile-2.0:x_y.z-1",
                Some("Ak-4.m_i"),
                Some("Social_Profile-2.0"),
                Some(Suffix::Named("x_y.z-1")),
            ),
        ];
        for (input, prefix, name, suffix) in cases {
            let parsed = scope(input);
            assert_eq!(parsed.is_structured(), prefix.is_some(), "{input}");
            assert_eq!(parsed.prefix(), *prefix, "{input}");
            assert_eq!(parsed.name(), *name, "{input}");
            assert_eq!(parsed.suffix(), *suffix, "{input}");
            assert_eq!(parsed.to_string(), *input);
        }
    }

    #[test]
    fn suffix_displays_as_written() {
        assert_eq!(Suffix::All.to_string(), "*");
        assert_eq!(Suffix::Named("read").as_str(), "read");
    }

    #[test]
    fn with_suffix_builds_a_structured_scope() {
        let built = scope("p:n").with_suffix("read").unwrap();
        assert_eq!(built, scope("p:n:read"));
        assert_eq!(built.suffix(), Some(Suffix::Named("read")));
        assert_eq!(built.name(), Some("n"));
        assert_eq!(
            scope("p:n").with_suffix("*").unwrap().suffix(),
            Some(Suffix::All)
        );
    }

    #[test]
    fn with_suffix_rejects_plain_suffixed_and_invalid_input() {
        assert!(matches!(
            scope("openid").with_suffix("read"),
            Err(ScopeError::NotStructured { .. })
        ));
        assert!(matches!(
            scope("p:n:read").with_suffix("write"),
            Err(ScopeError::HasSuffix { .. })
        ));
        for bad in ["", "a:b", "a b", "**", "r*"] {
            assert_eq!(
                scope("p:n").with_suffix(bad),
                Err(ScopeError::InvalidSuffix {
                    suffix: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scope_from_str_and_display_round_trip() {
        let parsed: Scope = "p:n:*".parse().unwrap();
        assert_eq!(parsed.to_string(), "p:n:*");
        assert_eq!(format!("{parsed:?}"), r#"Scope("p:n:*")"#);
        assert!("a b".parse::<Scope>().is_err());
    }

    #[test]
    fn scope_serde_is_a_validated_string() {
        assert_eq!(serde_json::to_string(&scope("p:n")).unwrap(), r#""p:n""#);
        assert_eq!(
            serde_json::from_str::<Scope>(r#""p:n""#).unwrap(),
            scope("p:n")
        );
        for bad in [r#""a b""#, r#""""#, "1", "null", r#"["a"]"#, "{}"] {
            assert!(serde_json::from_str::<Scope>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permission_is_derived_from_case_sensitive_methods() {
        let cases = [
            ("GET", Some(Permission::Read)),
            ("HEAD", Some(Permission::Read)),
            ("OPTIONS", Some(Permission::Read)),
            ("POST", Some(Permission::Write)),
            ("PUT", Some(Permission::Write)),
            ("PATCH", Some(Permission::Write)),
            ("DELETE", Some(Permission::Delete)),
            ("get", None),
            ("Delete", None),
            ("TRACE", None),
            ("CONNECT", None),
            ("PROPFIND", None),
            ("", None),
        ];
        for (method, permission) in cases {
            assert_eq!(Permission::for_method(method), permission, "{method:?}");
        }
        assert_eq!(Permission::Read.as_str(), "read");
        assert_eq!(Permission::Write.as_str(), "write");
        assert_eq!(Permission::Delete.to_string(), "delete");
    }

    #[test]
    fn scope_set_tolerates_repeated_leading_and_trailing_spaces() {
        let parsed = set("  b:x   a  b:x ");
        assert_eq!(strings(parsed.as_slice()), ["a", "b:x"]);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed.to_string(), "a b:x");
        assert!(set("").is_empty());
        assert!(set("   ").is_empty());
    }

    #[test]
    fn scope_set_rejects_other_whitespace_naming_the_element() {
        for (input, element) in [
            ("a b\tc d", "b\tc"),
            ("a\nb", "a\nb"),
            ("ok bad\"x", "bad\"x"),
            ("a\u{a0}b", "a\u{a0}b"),
        ] {
            match ScopeSet::parse_space_separated(input) {
                Err(ScopeError::InvalidCharacter { scope, .. }) => {
                    assert_eq!(scope, element, "{input:?}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn scope_set_contains_is_exact_and_covers_matches() {
        let granted = set("openid p:n:*");
        assert!(granted.contains(&scope("p:n:*")));
        assert!(!granted.contains(&scope("p:n:read")));
        assert!(granted.covers(&scope("p:n:read")));
        assert!(granted.covers(&scope("p:n")));
        assert!(!granted.covers(&scope("p:m")));
        assert!(!ScopeSet::new().covers(&scope("openid")));
    }

    #[test]
    fn scope_set_collects_and_iterates() {
        let collected: ScopeSet = [scope("b"), scope("a"), scope("b")].into_iter().collect();
        assert_eq!(collected, set("a b"));
        assert_eq!((&collected).into_iter().count(), 2);
        assert_eq!(
            collected.iter().map(Scope::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(collected.clone().into_iter().count(), 2);
        assert_eq!("b a".parse::<ScopeSet>().unwrap(), collected);
        assert_eq!(ScopeSet::from_scopes([scope("a"), scope("b")]), collected);
    }

    #[test]
    fn scope_set_serialises_as_a_space_separated_string() {
        assert_eq!(serde_json::to_string(&set("b a")).unwrap(), r#""a b""#);
        assert_eq!(serde_json::to_string(&ScopeSet::new()).unwrap(), r#""""#);
    }

    #[test]
    fn scope_set_deserialises_from_a_string_or_an_array() {
        assert_eq!(
            serde_json::from_str::<ScopeSet>(r#"" a  p:n ""#).unwrap(),
            set("a p:n")
        );
        assert_eq!(
            serde_json::from_str::<ScopeSet>(r#"["p:n", "a", "a"]"#).unwrap(),
            set("a p:n")
        );
        assert!(serde_json::from_str::<ScopeSet>("[]").unwrap().is_empty());
        assert!(
            serde_json::from_str::<ScopeSet>(r#""""#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn scope_set_rejects_arrays_with_a_space_inside_an_element() {
        let error = serde_json::from_str::<ScopeSet>(r#"["a b"]"#).unwrap_err();
        assert!(error.to_string().contains(r#""a b""#), "{error}");
        assert!(serde_json::from_str::<ScopeSet>(r#"["a", " b"]"#).is_err());
        assert!(serde_json::from_str::<ScopeSet>(r#"[""]"#).is_err());
    }

    #[test]
    fn scope_set_rejects_non_strings_objects_and_numbers() {
        for bad in [
            "[1]",
            r#"["a", 1]"#,
            r#"["a", null]"#,
            r#"[["a"]]"#,
            r#"[{"a": 1}]"#,
            "{}",
            r#"{"scope": "a"}"#,
            "1",
            "1.5",
            "true",
            "null",
            r#""a\tb""#,
        ] {
            assert!(serde_json::from_str::<ScopeSet>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn all_of_needs_every_scope_and_reports_them_all() {
        let requirement = Requirement::all_of(["openid", "p:n:read"]).unwrap();
        assert!(requirement.check(&set("openid p:n:*"), "GET").is_ok());
        let error = requirement.check(&set("openid"), "GET").unwrap_err();
        assert_eq!(strings(error.required_scopes()), ["openid", "p:n:read"]);
        assert_eq!(
            error.to_string(),
            "insufficient scope: all of [openid p:n:read] are required"
        );
        assert!(requirement.check(&ScopeSet::new(), "GET").is_err());
    }

    #[test]
    fn empty_all_of_is_refused_because_it_would_allow_everything() {
        let error = Requirement::all_of(Vec::<String>::new()).unwrap_err();
        assert!(matches!(error, ScopeError::EmptyRequirement(_)));
        assert!(
            error.to_string().contains("would allow every request"),
            "{error}"
        );
    }

    #[test]
    fn any_of_needs_one_scope_and_reports_every_alternative() {
        let requirement = Requirement::any_of(["a:b:read", "c"]).unwrap();
        assert!(requirement.check(&set("c"), "GET").is_ok());
        assert!(requirement.check(&set("a:b:*"), "GET").is_ok());
        let error = requirement.check(&set("a:b:write"), "GET").unwrap_err();
        assert_eq!(strings(error.required_scopes()), ["a:b:read", "c"]);
        assert_eq!(
            error.to_string(),
            "insufficient scope: one of [a:b:read c] is required"
        );
    }

    #[test]
    fn empty_any_of_is_refused() {
        let error = Requirement::any_of(Vec::<&str>::new()).unwrap_err();
        assert!(matches!(error, ScopeError::EmptyRequirement(_)));
        assert!(
            error.to_string().contains("any_of lists no scopes"),
            "{error}"
        );
    }

    #[test]
    fn requirement_lists_with_invalid_scopes_are_refused() {
        assert!(matches!(
            Requirement::all_of(["ok", "not ok"]),
            Err(ScopeError::InvalidCharacter { .. })
        ));
        assert_eq!(Requirement::any_of([""]), Err(ScopeError::Empty));
        assert!(Requirement::policy([vec!["a"], vec!["b\\"]]).is_err());
    }

    #[test]
    fn policy_is_satisfied_by_any_complete_alternative() {
        let requirement = Requirement::policy([vec!["a", "b"], vec!["p:n:write", "c"]]).unwrap();
        assert!(requirement.check(&set("a b"), "GET").is_ok());
        assert!(requirement.check(&set("p:n:* c"), "GET").is_ok());
        assert!(requirement.check(&set("a c"), "GET").is_err());
    }

    #[test]
    fn policy_failure_reports_the_alternative_missing_the_fewest() {
        let requirement =
            Requirement::policy([vec!["a", "b", "c"], vec!["x", "y"], vec!["a", "z"]]).unwrap();
        let error = requirement.check(&set("a b"), "GET").unwrap_err();
        assert_eq!(strings(error.required_scopes()), ["a", "b", "c"]);
        assert_eq!(
            error.to_string(),
            "insufficient scope: no policy alternative is satisfied; the closest requires [a b c]"
        );
        let error = requirement.check(&set("x"), "GET").unwrap_err();
        assert_eq!(strings(error.required_scopes()), ["x", "y"]);
    }

    #[test]
    fn policy_tie_reports_the_first_closest_alternative() {
        let requirement = Requirement::policy([vec!["x", "y"], vec!["a", "b"]]).unwrap();
        let error = requirement.check(&ScopeSet::new(), "GET").unwrap_err();
        assert_eq!(strings(error.required_scopes()), ["x", "y"]);
    }

    #[test]
    fn empty_policy_denies_every_request() {
        let requirement = Requirement::policy(Vec::<Vec<&str>>::new()).unwrap();
        for granted in ["", "a", "p:n:* openid"] {
            let error = requirement.check(&set(granted), "GET").unwrap_err();
            assert!(error.required_scopes().is_empty());
            assert!(error.to_string().contains("no alternatives"), "{error}");
        }
    }

    #[test]
    fn empty_alternative_in_a_policy_is_refused() {
        let error = Requirement::policy([vec!["a"], vec![]]).unwrap_err();
        assert!(matches!(error, ScopeError::EmptyRequirement(_)));
        assert!(
            error.to_string().contains("would allow every request"),
            "{error}"
        );
    }

    #[test]
    fn a_requirement_names_every_scope_that_can_satisfy_it_once() {
        let names = |requirement: Requirement| -> Vec<String> {
            requirement
                .scopes_named()
                .iter()
                .map(|scope| scope.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            names(Requirement::policy([vec!["a", "b"], vec!["b", "c"]]).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(Requirement::method_derived("p:n").unwrap()),
            ["p:n:read", "p:n:write", "p:n:delete"]
        );
        assert!(names(Requirement::any_valid_token()).is_empty());
    }

    #[test]
    fn any_valid_token_is_satisfied_even_without_scopes() {
        let requirement = Requirement::any_valid_token();
        assert!(requirement.check(&ScopeSet::new(), "GET").is_ok());
        assert!(requirement.check(&set("a"), "FOO").is_ok());
    }

    #[test]
    fn method_derived_requires_the_permission_of_each_method() {
        let requirement = Requirement::method_derived("akamai:social_profile").unwrap();
        let cases = [
            ("GET", "read"),
            ("HEAD", "read"),
            ("OPTIONS", "read"),
            ("POST", "write"),
            ("PUT", "write"),
            ("PATCH", "write"),
            ("DELETE", "delete"),
        ];
        for (method, permission) in cases {
            let exact = format!("akamai:social_profile:{permission}");
            assert!(requirement.check(&set(&exact), method).is_ok(), "{method}");
            assert!(
                requirement
                    .check(&set("akamai:social_profile:*"), method)
                    .is_ok(),
                "{method}"
            );
            let error = requirement
                .check(&set("akamai:social_profile akamai:other:*"), method)
                .unwrap_err();
            assert_eq!(
                strings(error.required_scopes()),
                [exact.as_str()],
                "{method}"
            );
            assert_eq!(
                error.to_string(),
                format!("insufficient scope: method {method:?} requires [{exact}]")
            );
        }
        assert!(
            requirement
                .check(&set("akamai:social_profile:read"), "POST")
                .is_err()
        );
        assert!(
            requirement
                .check(&set("akamai:social_profile:write"), "DELETE")
                .is_err()
        );
    }

    #[test]
    fn method_derived_denies_unknown_and_lowercase_methods() {
        let requirement = Requirement::method_derived("p:n").unwrap();
        for method in ["get", "TRACE", "FOO", "", "G\nET"] {
            let error = requirement.check(&set("p:n:* p:n"), method).unwrap_err();
            assert!(error.required_scopes().is_empty(), "{method:?}");
            let message = error.to_string();
            assert!(message.contains("maps to no permission"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn method_derived_needs_a_structured_scope_without_suffix() {
        assert!(matches!(
            Requirement::method_derived("openid"),
            Err(ScopeError::NotStructured { .. })
        ));
        assert!(matches!(
            Requirement::method_derived("p:n:read"),
            Err(ScopeError::HasSuffix { .. })
        ));
        assert!(matches!(
            Requirement::method_derived("p:n:*"),
            Err(ScopeError::HasSuffix { .. })
        ));
        assert!(matches!(
            Requirement::method_derived("p:*:read"),
            Err(ScopeError::NotStructured { .. })
        ));
        assert!(matches!(
            Requirement::method_derived("p n"),
            Err(ScopeError::InvalidCharacter { .. })
        ));
        assert_eq!(Requirement::method_derived(""), Err(ScopeError::Empty));
    }

    #[test]
    fn requirements_describe_themselves_for_logs() {
        let cases = [
            (
                Requirement::all_of(["a", "b", "a"]).unwrap(),
                "all of [a b]",
            ),
            (Requirement::any_of(["b", "a"]).unwrap(), "any of [b a]"),
            (
                Requirement::policy([vec!["a", "b"], vec!["c"]]).unwrap(),
                "policy [a b] or [c]",
            ),
            (
                Requirement::policy(Vec::<Vec<&str>>::new()).unwrap(),
                "empty policy (denies every request)",
            ),
            (Requirement::any_valid_token(), "any valid token"),
            (
                Requirement::method_derived("p:n").unwrap(),
                "p:n:<read|write|delete by method>",
            ),
        ];
        for (requirement, expected) in cases {
            assert_eq!(requirement.describe(), expected);
            assert_eq!(requirement.to_string(), expected);
        }
    }

    #[test]
    fn grant_without_suffix_gives_every_allowed_suffix() {
        let allowed = set("p:n:read p:n:write p:n:* p:n p:nx:read p:other:read openid");
        assert_eq!(
            grant(&set("p:n"), &allowed).unwrap(),
            set("p:n p:n:read p:n:write p:n:*")
        );
        assert_eq!(
            grant(&set("p:n"), &set("p:n:read")).unwrap(),
            set("p:n:read")
        );
    }

    #[test]
    fn grant_named_suffix_via_exact_or_star() {
        assert_eq!(
            grant(&set("p:n:read"), &set("p:n:*")).unwrap(),
            set("p:n:read")
        );
        assert_eq!(
            grant(&set("p:n:read"), &set("p:n:read")).unwrap(),
            set("p:n:read")
        );
        assert!(grant(&set("p:n:read"), &set("p:n p:n:write")).is_err());
    }

    #[test]
    fn grant_star_only_when_star_is_allowed() {
        assert_eq!(grant(&set("p:n:*"), &set("p:n:*")).unwrap(), set("p:n:*"));
        assert!(grant(&set("p:n:*"), &set("p:n p:n:read p:n:write p:n:delete")).is_err());
    }

    #[test]
    fn grant_plain_only_when_allowed_as_is() {
        assert_eq!(
            grant(&set("openid"), &set("openid profile")).unwrap(),
            set("openid")
        );
        assert!(grant(&set("OpenID"), &set("openid")).is_err());
        assert!(grant(&set("akamai:*:read"), &set("akamai:x:read")).is_err());
    }

    #[test]
    fn grant_deduplicates_overlapping_requests() {
        let granted = grant(&set("p:n p:n:read"), &set("p:n:read p:n:write")).unwrap();
        assert_eq!(granted, set("p:n:read p:n:write"));
        assert_eq!(granted.len(), 2);
    }

    #[test]
    fn grant_names_every_ungrantable_scope_together() {
        let error =
            grant(&set("openid x p:n:read q:m p:n:*"), &set("openid p:n:read")).unwrap_err();
        assert_eq!(strings(error.scopes()), ["p:n:*", "q:m", "x"]);
        assert_eq!(
            error.to_string(),
            "requested scope not allowed for this client: p:n:* q:m x"
        );
    }

    #[test]
    fn grant_of_nothing_requested_is_empty() {
        assert!(grant(&ScopeSet::new(), &set("openid")).unwrap().is_empty());
    }

    const VALID_SCOPE: &str = "[!#-\\[\\]-~]{1,24}";
    const STRUCTURED_SCOPE: &str =
        "[A-Za-z0-9_.-]{1,8}:[A-Za-z0-9_.-]{1,8}(:([A-Za-z0-9_.-]{1,8}|\\*))?";
    /// A small alphabet so that generated scopes often cover each other.
    const OVERLAPPING_SCOPE: &str = "(a|b|ab|a:b)(:(a|b|ab)(:(r|w|\\*|r:w))?)?";

    proptest! {
        #[test]
        fn scope_parse_never_panics(input in ".*") {
            let _ = Scope::parse(&input);
        }

        #[test]
        fn scope_parse_never_panics_on_printable_ascii(input in "[ -~]{0,64}") {
            if let Ok(parsed) = Scope::parse(&input) {
                prop_assert_eq!(parsed.as_str(), input.as_str());
            }
        }

        #[test]
        fn scope_set_parse_never_panics(input in ".*") {
            let _ = ScopeSet::parse_space_separated(&input);
        }

        #[test]
        fn scope_set_parse_never_panics_on_printable_ascii(input in "[ -~]{0,64}") {
            if let Ok(parsed) = ScopeSet::parse_space_separated(&input) {
                prop_assert_eq!(set(&parsed.to_string()), parsed);
            }
        }

        #[test]
        fn valid_scopes_parse_and_round_trip_through_display(input in VALID_SCOPE) {
            let parsed = Scope::parse(&input).unwrap();
            prop_assert_eq!(parsed.to_string(), input);
            prop_assert_eq!(&Scope::parse(parsed.as_str()).unwrap(), &parsed);
            let json = serde_json::to_string(&parsed).unwrap();
            prop_assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), parsed);
        }

        #[test]
        fn structured_scopes_are_classified_and_split_back(input in STRUCTURED_SCOPE) {
            let parsed = Scope::parse(&input).unwrap();
            prop_assert!(parsed.is_structured());
            let mut rebuilt = format!("{}:{}", parsed.prefix().unwrap(), parsed.name().unwrap());
            if let Some(suffix) = parsed.suffix() {
                rebuilt = format!("{rebuilt}:{suffix}");
            }
            prop_assert_eq!(rebuilt, input);
        }

        #[test]
        fn scope_sets_round_trip_through_display_and_json(
            inputs in proptest::collection::vec(VALID_SCOPE, 0..8),
        ) {
            let built = ScopeSet::from_scopes(inputs.iter().map(|s| scope(s)));
            prop_assert_eq!(&set(&built.to_string()), &built);
            let json = serde_json::to_string(&built).unwrap();
            prop_assert_eq!(&serde_json::from_str::<ScopeSet>(&json).unwrap(), &built);
            let array = serde_json::to_string(&inputs).unwrap();
            prop_assert_eq!(serde_json::from_str::<ScopeSet>(&array).unwrap(), built);
        }

        #[test]
        fn covers_is_reflexive(input in VALID_SCOPE) {
            let parsed = Scope::parse(&input).unwrap();
            prop_assert!(parsed.covers(&parsed));
        }

        #[test]
        fn covers_is_reflexive_for_structured_scopes(input in STRUCTURED_SCOPE) {
            let parsed = Scope::parse(&input).unwrap();
            prop_assert!(parsed.covers(&parsed));
        }

        #[test]
        fn set_covers_agrees_with_its_members(
            granted in proptest::collection::vec(OVERLAPPING_SCOPE, 0..6),
            required in OVERLAPPING_SCOPE,
        ) {
            let required = scope(&required);
            let members: Vec<Scope> = granted.iter().map(|s| scope(s)).collect();
            let expected = members.iter().any(|member| member.covers(&required));
            prop_assert_eq!(ScopeSet::from_scopes(members).covers(&required), expected);
        }

        #[test]
        fn granted_scopes_satisfy_what_was_requested(
            requested in proptest::collection::vec(OVERLAPPING_SCOPE, 0..4),
            allowed in proptest::collection::vec(OVERLAPPING_SCOPE, 0..6),
        ) {
            let requested = ScopeSet::from_scopes(requested.iter().map(|s| scope(s)));
            let allowed = ScopeSet::from_scopes(allowed.iter().map(|s| scope(s)));
            if let Ok(granted) = grant(&requested, &allowed) {
                for scope in &requested {
                    prop_assert!(granted.covers(scope));
                }
                for scope in &granted {
                    prop_assert!(allowed.covers(scope));
                }
            }
        }
    }
}
