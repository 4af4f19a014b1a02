//! [`ScopeSet`]: the scopes a token carries, in canonical order.

use super::*;

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

    pub(super) fn from_vec(mut scopes: Vec<Scope>) -> Self {
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
    pub(super) fn starting_with<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Iterator<Item = &'a Scope> + 'a {
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
