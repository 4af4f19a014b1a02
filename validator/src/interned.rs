//! Values many tokens share — a client's granted scopes, an API's audience — kept once per
//! validator rather than once per cached token: a verified-token cache of a million entries
//! then holds a few distinct scope sets, not a million copies.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::scope::ScopeSet;

/// How many distinct values an interner keeps; past that, values are made and not kept, so
/// tokens with ever-new scope strings cannot grow it.
const CAPACITY: usize = 1024;

/// The shared values of one validator.
#[derive(Debug, Default)]
pub(crate) struct Interned {
    /// Scope sets by their space-separated text.
    pub(crate) scopes: Interner<ScopeSet>,
    /// Single audiences, by their text.
    pub(crate) audiences: Interner<Vec<String>>,
    /// JWT header segments as received: an issuer's tokens mostly share one, and a cached
    /// principal keeps its token's header for the exact-token comparison.
    pub(crate) headers: Interner<String>,
}

/// Values by the text they were made from. Only values made from verified claim sets are
/// kept, and at most [`CAPACITY`] of them.
#[derive(Debug)]
pub(crate) struct Interner<T: ?Sized> {
    /// `ahash`, not SipHash: three lookups per verification, and only verified tokens reach
    /// them (an attacker cannot choose the keys without the issuer's signature).
    values: RwLock<HashMap<Box<str>, Arc<T>, ahash::RandomState>>,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Self {
            values: RwLock::default(),
        }
    }
}

impl<T: ?Sized> Interner<T> {
    /// The value made from `text`, shared with every earlier caller for the same text; `make`
    /// runs only for text not seen before, and its error is returned, never kept.
    pub(crate) fn get_or_make<E>(
        &self,
        text: &str,
        make: impl FnOnce(&str) -> Result<Arc<T>, E>,
    ) -> Result<Arc<T>, E> {
        // A poisoned lock (a panic elsewhere while holding it) only means no sharing.
        if let Some(found) = self
            .values
            .read()
            .ok()
            .and_then(|values| values.get(text).cloned())
        {
            return Ok(found);
        }
        let made = make(text)?;
        if let Ok(mut values) = self.values.write()
            && values.len() < CAPACITY
        {
            return Ok(Arc::clone(
                values
                    .entry(text.into())
                    .or_insert_with(|| Arc::clone(&made)),
            ));
        }
        Ok(made)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.values.read().map_or(0, |values| values.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_gives_the_same_value_and_errors_are_not_kept() {
        let interner = Interner::<ScopeSet>::default();
        let parse = |text: &str| ScopeSet::parse_space_separated(text).map(Arc::new);
        let first = interner.get_or_make("a:b:read openid", parse).unwrap();
        let second = interner.get_or_make("a:b:read openid", parse).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.to_string(), "a:b:read openid");
        assert!(interner.get_or_make("bad\tscope", parse).is_err());
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn it_stops_keeping_at_its_capacity_and_still_answers() {
        let interner = Interner::<ScopeSet>::default();
        let parse = |text: &str| ScopeSet::parse_space_separated(text).map(Arc::new);
        for index in 0..CAPACITY + 10 {
            let text = format!("scope-{index}");
            let value = interner.get_or_make(&text, parse).unwrap();
            assert_eq!(value.to_string(), text);
        }
        assert_eq!(interner.len(), CAPACITY);
    }
}
