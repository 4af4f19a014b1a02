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
pub(crate) fn for_each_member<'de>(
    bytes: &'de [u8],
    member: impl FnMut(&str, Member<'de>),
) -> Result<(), String> {
    for_each_member_where(bytes, |_| true, member)
}

/// A member's value: a string borrowed from the input where it has no escapes, or any other
/// JSON value, read with the checks of [`parse_object`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Member<'de> {
    String(Cow<'de, str>),
    Other(Value),
}

impl Member<'_> {
    pub(crate) fn into_value(self) -> Value {
        match self {
            Self::String(string) => Value::String(string.into_owned()),
            Self::Other(value) => value,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(string) => Some(string),
            Self::Other(_) => None,
        }
    }
}

impl<'de> de::Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberValueVisitor;

        impl<'de> Visitor<'de> for MemberValueVisitor {
            type Value = Member<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON value")
            }

            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Member<'de>, E> {
                Ok(Member::String(Cow::Borrowed(value)))
            }

            fn visit_str<E>(self, value: &str) -> Result<Member<'de>, E> {
                Ok(Member::String(Cow::Owned(value.to_owned())))
            }

            fn visit_string<E>(self, value: String) -> Result<Member<'de>, E> {
                Ok(Member::String(Cow::Owned(value)))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Member<'de>, E> {
                StrictVisitor.visit_bool(value).map(Member::Other)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Member<'de>, E> {
                StrictVisitor.visit_i64(value).map(Member::Other)
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Member<'de>, E> {
                StrictVisitor.visit_u64(value).map(Member::Other)
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Member<'de>, E> {
                StrictVisitor.visit_f64(value).map(Member::Other)
            }

            fn visit_unit<E>(self) -> Result<Member<'de>, E> {
                Ok(Member::Other(Value::Null))
            }

            fn visit_none<E>(self) -> Result<Member<'de>, E> {
                Ok(Member::Other(Value::Null))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
                StrictVisitor.visit_seq(seq).map(Member::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Member<'de>, A::Error> {
                StrictVisitor.visit_map(access).map(Member::Other)
            }
        }

        deserializer.deserialize_any(MemberValueVisitor)
    }
}

/// [`for_each_member`] for the members whose name passes `wanted`; the others are checked as
/// strictly (duplicates at any depth) but never built: a claim set is read on every
/// verification, and only its registered claims are wanted then.
pub(crate) fn for_each_member_where<'de>(
    bytes: &'de [u8],
    wanted: impl Fn(&str) -> bool,
    member: impl FnMut(&str, Member<'de>),
) -> Result<(), String> {
    let visitor = MemberVisitor { wanted, member };
    // UTF-8 checked once for the whole input (a fast scan) rather than per string, which is
    // most of what `serde_json` spends on a claim set; invalid input is read byte by byte so
    // that the error says where.
    match std::str::from_utf8(bytes) {
        Ok(text) => read_map(&mut serde_json::Deserializer::from_str(text), visitor),
        Err(_) => read_map(&mut serde_json::Deserializer::from_slice(bytes), visitor),
    }
}

fn read_map<'de, R: serde_json::de::Read<'de>>(
    deserializer: &mut serde_json::Deserializer<R>,
    visitor: impl Visitor<'de, Value = ()>,
) -> Result<(), String> {
    de::Deserializer::deserialize_map(&mut *deserializer, visitor)
        .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())
}

struct MemberVisitor<W, F> {
    wanted: W,
    member: F,
}

impl<'de, W: Fn(&str) -> bool, F: FnMut(&str, Member<'de>)> Visitor<'de> for MemberVisitor<W, F> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<(), A::Error> {
        let mut seen = SeenNames::default();
        while let Some(MemberName(name)) = access.next_key()? {
            if (self.wanted)(&name) {
                let value: Member<'de> = access.next_value()?;
                (self.member)(&name, value);
            } else {
                access.next_value::<StrictSkip>()?;
            }
            seen.insert(name)?;
        }
        Ok(())
    }
}

/// The member names of one object so far, to refuse a duplicate. The first sixteen names
/// without escapes (a claim set's dozen) are borrowed from the input, kept on the stack and
/// scanned: no allocation, and nothing to drop. Past them, or at the first escaped name, a set,
/// so an object of hundreds of members costs no quadratic comparison.
#[derive(Default)]
struct SeenNames<'de> {
    few: [&'de str; 16],
    count: usize,
    many: BTreeSet<Cow<'de, str>>,
}

impl<'de> SeenNames<'de> {
    fn insert<E: de::Error>(&mut self, name: Cow<'de, str>) -> Result<(), E> {
        if self.many.is_empty() {
            if let Cow::Borrowed(borrowed) = name
                && self.count < self.few.len()
            {
                if self.few[..self.count].contains(&borrowed) {
                    return Err(duplicate(borrowed));
                }
                self.few[self.count] = borrowed;
                self.count += 1;
                return Ok(());
            }
            self.many.extend(
                self.few[..self.count]
                    .iter()
                    .map(|seen| Cow::Borrowed(*seen)),
            );
        }
        if self.many.contains(&name) {
            return Err(duplicate(&name));
        }
        self.many.insert(name);
        Ok(())
    }
}

fn duplicate<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate member {:?}", truncate(name)))
}

/// A JSON value checked like a [`StrictValue`] (duplicate names at any depth), and dropped as
/// it is read.
struct StrictSkip;

impl<'de> de::Deserialize<'de> for StrictSkip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = StrictSkip;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<StrictSkip, E> {
        Ok(StrictSkip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<StrictSkip, E> {
        Ok(StrictSkip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<StrictSkip, E> {
        Ok(StrictSkip)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<StrictSkip, E> {
        // As StrictValue: a number that is not a finite f64 is refused.
        if value.is_finite() {
            Ok(StrictSkip)
        } else {
            Err(E::custom("non-finite number"))
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<StrictSkip, E> {
        Ok(StrictSkip)
    }

    fn visit_unit<E>(self) -> Result<StrictSkip, E> {
        Ok(StrictSkip)
    }

    fn visit_none<E>(self) -> Result<StrictSkip, E> {
        Ok(StrictSkip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictSkip, A::Error> {
        while seq.next_element::<StrictSkip>()?.is_some() {}
        Ok(StrictSkip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictSkip, A::Error> {
        let mut seen = SeenNames::default();
        while let Some(MemberName(name)) = access.next_key()? {
            access.next_value::<StrictSkip>()?;
            seen.insert(name)?;
        }
        Ok(StrictSkip)
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
            members.push((name.to_owned(), value.into_value()));
        })
        .unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].1["a"], 1);
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"a":1,"\u0061":2}"#,
            // An escaped name moves the names seen into the set: both orders are caught.
            br#"{"\u0061":1,"a":2}"#,
            br#"{"a":1,"\u0062":2,"a":3}"#,
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
    fn members_not_wanted_are_checked_as_strictly_but_not_handed_over() {
        let mut members = Vec::new();
        for_each_member_where(
            br#"{"a":1,"skip":{"x":[{"y":1},2.5,"s",null,true]},"b":"c"}"#,
            |name| name != "skip",
            |name, value| members.push((name.to_owned(), value)),
        )
        .unwrap();
        assert_eq!(
            members,
            [
                ("a".to_owned(), Member::Other(Value::from(1))),
                ("b".to_owned(), Member::String(Cow::Borrowed("c")))
            ]
        );
        for bad in [
            &br#"{"skip":{"x":1,"x":2}}"#[..],
            br#"{"skip":[{"x":1,"\u0078":2}]}"#,
            br#"{"skip":1,"skip":2}"#,
            br#"{"a":1,"skip":2,"\u0061":3}"#,
            br#"{"skip":[1,}"#,
            br#"{"skip":1} x"#,
        ] {
            assert!(
                for_each_member_where(bad, |name| name != "skip", |_, _| {}).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_long_object_still_refuses_a_duplicate() {
        // Past the short list, names are kept in a set: a duplicate is found either way.
        let members: Vec<String> = (0..40)
            .map(|index| format!("\"m{index}\":{index}"))
            .collect();
        let object = format!("{{{}}}", members.join(","));
        assert!(for_each_member_where(object.as_bytes(), |_| false, |_, _| {}).is_ok());
        for duplicate in ["m0", "m15", "m16", "m39"] {
            let object = format!("{{{},\"{duplicate}\":1}}", members.join(","));
            assert!(
                for_each_member_where(object.as_bytes(), |_| false, |_, _| {}).is_err(),
                "{duplicate}"
            );
            let nested = format!("{{\"n\":{{{},\"{duplicate}\":1}}}}", members.join(","));
            assert!(parse_object(nested.as_bytes()).is_err(), "{duplicate}");
            assert!(
                for_each_member_where(nested.as_bytes(), |_| false, |_, _| {}).is_err(),
                "{duplicate}"
            );
        }
    }

    #[test]
    fn escaped_duplicate_names_are_duplicates() {
        // "\u0065xp" is "exp": the comparison is on decoded names.
        assert!(parse_object(br#"{"exp":1,"\u0065xp":2}"#).is_err());
    }
}
