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

/// Displays scopes separated by single spaces.
pub(crate) struct ScopeList<'a>(&'a [Scope]);

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

mod grant;
mod requirement;
mod set;

pub use grant::{Ungrantable, grant};
pub use requirement::{Insufficient, Requirement};
pub use set::ScopeSet;

#[cfg(test)]
mod tests;
