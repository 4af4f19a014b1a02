//! Claims a client requires (`required_claims`): which of them a user still lacks for the
//! scopes granted, and what a value typed on a form must look like.

use scopegate_validator::ScopeSet;
use serde_json::{Map, Value};

use crate::config::{Client, CustomScope};
use crate::id_token::claim_attribute;

/// Longest value accepted for a claim typed on a form.
pub const MAX_VALUE_CHARS: usize = 200;

/// A claim a user must supply, and the attribute it is kept in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredClaim {
    /// The claim's name in tokens (`company_name`).
    pub claim: String,
    /// The user attribute it is read from (`companyName`).
    pub attribute: String,
}

impl RequiredClaim {
    /// A label for a form: `company_name` → `Company name`.
    #[must_use]
    pub fn label(&self) -> String {
        let words = self.claim.replace('_', " ");
        let mut characters = words.chars();
        characters.next().map_or_else(String::new, |first| {
            first.to_uppercase().chain(characters).collect()
        })
    }
}

/// The client's required claims that `scope` releases.
#[must_use]
pub fn required(custom: &[CustomScope], client: &Client, scope: &ScopeSet) -> Vec<RequiredClaim> {
    client
        .settings
        .required_claims
        .iter()
        .filter_map(|claim| {
            claim_attribute(custom, scope, claim).map(|attribute| RequiredClaim {
                claim: claim.clone(),
                attribute,
            })
        })
        .collect()
}

/// Those of `required` the user has no value for (absent, null or blank).
#[must_use]
pub fn missing(
    required: Vec<RequiredClaim>,
    attributes: &Map<String, Value>,
) -> Vec<RequiredClaim> {
    required
        .into_iter()
        .filter(|claim| match attributes.get(&claim.attribute) {
            None | Some(Value::Null) => true,
            Some(Value::String(text)) => text.trim().is_empty(),
            Some(_) => false,
        })
        .collect()
}

/// Checks a value typed for `claim`; returns it trimmed.
///
/// # Errors
///
/// A sentence for the person typing it.
pub fn check_value(claim: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is required".to_owned());
    }
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(format!("must be at most {MAX_VALUE_CHARS} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must be plain text on one line".to_owned());
    }
    let valid = match claim {
        "email" => is_email(value),
        "phone_number" => {
            value.chars().any(|c| c.is_ascii_digit())
                && value
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-().".contains(c))
        }
        // OpenID Connect Core §5.1: YYYY-MM-DD, or YYYY alone.
        "birthdate" => is_birthdate(value),
        _ => true,
    };
    if valid {
        Ok(value.to_owned())
    } else {
        Err(match claim {
            "email" => "must be an email address like name@example.com",
            "phone_number" => "must be a phone number like +1 555 0100",
            _ => "must be a date like 1990-12-31",
        }
        .to_owned())
    }
}

fn is_email(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

fn is_birthdate(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let digits = |part: &str, count: usize| {
        part.len() == count && part.bytes().all(|byte| byte.is_ascii_digit())
    };
    match parts.as_slice() {
        [year] => digits(year, 4),
        [year, month, day] => {
            digits(year, 4)
                && digits(month, 2)
                && digits(day, 2)
                && (1..=12).contains(&month.parse::<u8>().unwrap_or(0))
                && (1..=31).contains(&day.parse::<u8>().unwrap_or(0))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_and_checked_by_kind() {
        assert_eq!(
            check_value("company_name", "  Initech "),
            Ok("Initech".into())
        );
        assert!(check_value("company_name", "   ").is_err());
        assert!(check_value("company_name", &"x".repeat(201)).is_err());
        assert!(check_value("company_name", "two\nlines").is_err());
        assert!(check_value("email", "kim@example.test").is_ok());
        for bad in [
            "kim",
            "kim@",
            "@example.test",
            "kim@localhost",
            "k m@example.test",
        ] {
            assert!(check_value("email", bad).is_err(), "{bad}");
        }
        assert!(check_value("phone_number", "+1 (555) 010-0100").is_ok());
        assert!(check_value("phone_number", "call me").is_err());
        assert!(check_value("birthdate", "1990-12-31").is_ok());
        assert!(check_value("birthdate", "1990").is_ok());
        assert!(check_value("birthdate", "1990-13-01").is_err());
        assert!(check_value("birthdate", "31/12/1990").is_err());
    }

    #[test]
    fn blank_and_null_values_count_as_missing() {
        let required = vec![
            RequiredClaim {
                claim: "company_name".into(),
                attribute: "companyName".into(),
            },
            RequiredClaim {
                claim: "given_name".into(),
                attribute: "given_name".into(),
            },
        ];
        let mut attributes = Map::new();
        attributes.insert("companyName".into(), " ".into());
        attributes.insert("given_name".into(), "Kim".into());
        assert_eq!(missing(required.clone(), &attributes), required[..1]);
        attributes.insert("companyName".into(), "Initech".into());
        assert!(missing(required.clone(), &attributes).is_empty());
        assert_eq!(required[0].label(), "Company name");
    }
}
