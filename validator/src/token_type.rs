//! Is this JWT an access token? An id_token (or any other JWT the issuer signs) must never be
//! accepted as one, whatever its `aud` says: a client's id_token is addressed to the client, and
//! an API whose audience is also that client's id would otherwise take it (RFC 9068 §4,
//! RFC 8725 §3.11).
//!
//! The default rule holds for issuers that type their tokens and for those that do not:
//! - `typ` `at+jwt` (RFC 9068): an access token;
//! - any other explicit type (`id+jwt`, `logout+jwt`, `secevent+jwt`, …): not one;
//! - no `typ`, or the generic `JWT` (Keycloak, Entra ID, Auth0 and Okta access tokens, but also
//!   every id_token): an access token only if it carries none of OpenID Connect's id_token
//!   claims (`nonce`, `at_hash`, `c_hash`), no Keycloak `typ` claim other than `Bearer`, and
//!   grants something — `scope`, `scp` or `roles` — which id_tokens never carry.

use crate::error::InvalidToken;

/// What the access-token rule reads of a claim set, gathered in the pass that reads the
/// registered claims.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TypeMarks {
    /// One of the claims only id_tokens carry: `nonce`, `at_hash`, `c_hash` (OpenID Connect
    /// Core §2, §3.1.3.6, §3.3.2.11).
    pub(crate) id_token_claim: bool,
    /// A `typ` claim (Keycloak's), and whether it says `Bearer`.
    pub(crate) typ_claim: Option<bool>,
    /// A claim by which an untyped token grants something: `scope`, `scp` or `roles`.
    pub(crate) grant_claim: bool,
}

/// `typ` values are media types: compare without case and without `application/`.
pub(crate) fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// Whether `typ` normalises to `normalized` (lower case, without `application/`), without
/// building the normalised string: this runs on every verification.
pub(crate) fn typ_is(typ: &str, normalized: &str) -> bool {
    let prefix = "application/";
    let bare = match typ.get(..prefix.len()) {
        Some(start) if start.eq_ignore_ascii_case(prefix) => &typ[prefix.len()..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(normalized)
}

/// How a JWT is recognised as an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeRule {
    /// The default: see the module documentation.
    AccessToken,
    /// `required_typ`: exactly this `typ` (normalised), nothing else.
    Exactly(String),
    /// `dangerous_accept_any_token_type`: no check.
    Any,
}

impl TypeRule {
    /// Checks the header's `typ` (before any key is looked up).
    pub(crate) fn check_header(&self, typ: Option<&str>) -> Result<(), InvalidToken> {
        let found = typ.unwrap_or_default();
        match self {
            Self::Any => Ok(()),
            Self::Exactly(required) if typ_is(found, required) => Ok(()),
            Self::Exactly(required) => Err(InvalidToken::WrongType {
                found: normalize_typ(found),
                required: required.clone(),
            }),
            Self::AccessToken if ["", "jwt", "at+jwt"].iter().any(|name| typ_is(found, name)) => {
                Ok(())
            }
            Self::AccessToken => Err(InvalidToken::NotAnAccessToken(
                "its `typ` names another kind of token",
            )),
        }
    }

    /// Checks the claims of a token whose header passed [`check_header`](Self::check_header).
    pub(crate) fn check_claims(
        &self,
        typ: Option<&str>,
        marks: TypeMarks,
    ) -> Result<(), InvalidToken> {
        let typed = typ.is_some_and(|typ| typ_is(typ, "at+jwt"));
        if *self != Self::AccessToken || typed {
            return Ok(());
        }
        if marks.id_token_claim {
            return Err(InvalidToken::NotAnAccessToken(
                "it carries id_token claims (`nonce`, `at_hash` or `c_hash`)",
            ));
        }
        if marks.typ_claim == Some(false) {
            return Err(InvalidToken::NotAnAccessToken(
                "its `typ` claim names another kind of token",
            ));
        }
        if !marks.grant_claim {
            return Err(InvalidToken::NotAnAccessToken(
                "an untyped token without `scope`, `scp` or `roles` grants nothing",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn judge(rule: &TypeRule, typ: Option<&str>, claims: Value) -> Result<(), InvalidToken> {
        rule.check_header(typ)?;
        rule.check_claims(typ, crate::claims::type_marks_of(&object(claims)))
    }

    #[test]
    fn typed_access_tokens_pass_and_other_types_do_not() {
        let rule = TypeRule::AccessToken;
        assert!(judge(&rule, Some("at+jwt"), json!({})).is_ok());
        assert!(judge(&rule, Some("application/AT+JWT"), json!({"nonce": "n"})).is_ok());
        for other in ["id+jwt", "logout+jwt", "secevent+jwt", "dpop+jwt"] {
            assert!(matches!(
                judge(&rule, Some(other), json!({"scope": "a"})),
                Err(InvalidToken::NotAnAccessToken(_))
            ));
        }
    }

    #[test]
    fn typ_is_agrees_with_normalize_typ() {
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
            "application/",
            "",
            "JWT",
            "appl",
            "application/application/jwt",
            "ät+jwt",
        ] {
            for name in ["", "jwt", "at+jwt", "application/jwt"] {
                assert_eq!(
                    typ_is(typ, name),
                    normalize_typ(typ) == name,
                    "{typ} {name}"
                );
            }
        }
    }

    #[test]
    fn the_other_rules_are_what_they_say() {
        let exactly = TypeRule::Exactly("at+jwt".to_owned());
        assert!(judge(&exactly, Some("at+jwt"), json!({})).is_ok());
        assert!(matches!(
            judge(&exactly, Some("JWT"), json!({"scope": "a"})),
            Err(InvalidToken::WrongType { .. })
        ));
        assert!(judge(&TypeRule::Any, Some("id+jwt"), json!({"nonce": "n"})).is_ok());
    }
}
