//! A strict JSON reader: RFC 7515 §5.2 and RFC 8725 §3.1 ask that JOSE headers and claim sets
//! with duplicate member names be rejected, while `serde_json` silently keeps the last one.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON object, rejecting duplicate member names at any depth.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let StrictValue(value) =
        de::Deserialize::deserialize(&mut deserializer).map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".to_owned()),
    }
}

/// Reads `bytes` as one JSON object with the checks of [`parse_object`] (duplicate names at any
/// depth, nothing after the object), handing each member to `member` instead of building a map:
/// a JWS header is read on every verification, and only a few of its members are wanted.
pub(crate) fn for_each_member(bytes: &[u8], member: impl FnMut(&str, Value)) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    de::Deserializer::deserialize_map(&mut deserializer, MemberVisitor(member))
        .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())
}

struct MemberVisitor<F>(F);

impl<'de, F: FnMut(&str, Value)> Visitor<'de> for MemberVisitor<F> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<(), A::Error> {
        // Names borrowed from the input where they have no escapes; a set, not a list, so a
        // header of hundreds of members costs no quadratic comparison.
        let mut seen = BTreeSet::new();
        while let Some(MemberName(name)) = access.next_key()? {
            if seen.contains(&name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member {:?}",
                    truncate(&name)
                )));
            }
            let StrictValue(value) = access.next_value()?;
            (self.0)(&name, value);
            seen.insert(name);
        }
        Ok(())
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct MemberName<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Borrowed(name)))
            }

            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(name.to_owned())))
            }

            fn visit_string<E>(self, name: String) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(name)))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

/// A JSON value read with the duplicate-member check at every depth.
struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Vacant(entry) => {
                    let StrictValue(value) = access.next_value()?;
                    entry.insert(value);
                }
                Entry::Occupied(entry) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member {:?}",
                        truncate(entry.key())
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// Attacker-controlled names go into error messages shortened.
fn truncate(name: &str) -> &str {
    match name.char_indices().nth(40) {
        Some((index, _)) => &name[..index],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_top_level_member_fails() {
        let error = parse_object(br#"{"exp":1,"exp":2}"#).unwrap_err();
        assert!(error.contains("duplicate member \"exp\""), "{error}");
    }

    #[test]
    fn duplicate_nested_member_fails() {
        assert!(parse_object(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_object(br#"{"a":[{"b":1,"b":1}]}"#).is_err());
    }

    #[test]
    fn same_name_at_different_depths_is_fine() {
        let map = parse_object(br#"{"a":{"a":1},"b":[1,2.5,"x",null,true]}"#).unwrap();
        assert_eq!(map["a"]["a"], 1);
        assert_eq!(map["b"][1], 2.5);
    }

    #[test]
    fn non_objects_and_trailing_data_fail() {
        assert!(parse_object(b"[1]").is_err());
        assert!(parse_object(b"\"x\"").is_err());
        assert!(parse_object(br#"{"a":1} x"#).is_err());
        assert!(parse_object(br#"{"a":1}{"b":2}"#).is_err());
        assert!(parse_object(b"").is_err());
    }

    #[test]
    fn members_are_read_with_the_same_checks() {
        let mut members = Vec::new();
        for_each_member(br#"{"a":{"a":1},"b":[1,"x"]}"#, |name, value| {
            members.push((name.to_owned(), value));
        })
        .unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].1["a"], 1);
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"a":1,"\u0061":2}"#,
            br#"{"a":{"b":1,"b":1}}"#,
            br#"{"a":[{"b":1,"b":1}]}"#,
            br#"{"a":1} x"#,
            b"[1]",
            b"\"x\"",
            b"",
        ] {
            assert!(for_each_member(bad, |_, _| {}).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaped_duplicate_names_are_duplicates() {
        // "\u0065xp" is "exp": the comparison is on decoded names.
        assert!(parse_object(br#"{"exp":1,"\u0065xp":2}"#).is_err());
    }
}
