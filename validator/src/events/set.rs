//! One Security Event Token (RFC 8417): verified against the issuer's keys as its access tokens
//! are, then read into the denials its events make (`docs/revocation-events.md`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::deny::{Denial, Target};
use crate::algorithm::Algorithm;
use crate::error::{Error, InvalidToken, Unavailable};
use crate::json;
use crate::jwks::JwksCache;
use crate::jws::UntrustedJws;
use crate::token_type::normalize_typ;

/// An access token revoked: by `jti`, or an opaque token by its SHA-256.
pub(crate) const TOKEN_REVOKED: &str = "https://scopegate.dev/secevent/event-type/token-revoked";
/// CAEP 1.0: a session ended.
pub(crate) const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// RISC 1.0: a user deleted.
pub(crate) const ACCOUNT_PURGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// A client deleted.
pub(crate) const CLIENT_DELETED: &str = "https://scopegate.dev/secevent/event-type/client-deleted";

/// RFC 8417 §2.3: the `typ` of a SET.
const SET_TYPE: &str = "secevent+jwt";

/// What a SET must say to be taken.
#[derive(Debug, Clone)]
pub(crate) struct SetRules {
    /// `iss`: the issuer whose tokens this validator accepts.
    pub(crate) issuer: String,
    /// Must be in `aud`: the API's id at the issuer.
    pub(crate) audience: String,
    pub(crate) algorithms: Vec<Algorithm>,
    /// How long a denial is held when its event has no `tokens_expire_by`, from its `toe`.
    pub(crate) default_hold: Duration,
}

/// A SET that verified: its id, when it was issued, and what it refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecurityEvent {
    pub(crate) jti: String,
    pub(crate) issued_at: Duration,
    pub(crate) denials: Vec<Denial>,
}

/// A SET refused for good, with the RFC 8935 §2.4 error code it is acknowledged with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SetError {
    /// Not a well-formed SET, or an event that cannot be read.
    #[error("malformed SET: {0}")]
    Malformed(String),
    /// Its key or algorithm is not one of the issuer's.
    #[error("SET signed with a key or algorithm not accepted: {0}")]
    Key(InvalidToken),
    /// Its signature does not verify.
    #[error("SET signature does not verify")]
    Signature,
    /// `iss` is not the issuer.
    #[error("SET from another issuer")]
    Issuer,
    /// `aud` does not name this API.
    #[error("SET addressed to another audience")]
    Audience,
}

impl SetError {
    /// The `err` of RFC 8935 §2.4 (used by RFC 8936 `setErrs`).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "invalid_request",
            Self::Key(_) => "invalid_key",
            Self::Signature => "authentication_failed",
            Self::Issuer => "invalid_issuer",
            Self::Audience => "invalid_audience",
        }
    }
}

/// Why a SET could not be judged.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// For good: acknowledged with an error, never applied.
    Invalid(SetError),
    /// Not now: the issuer's keys could not be fetched. Judged again when redelivered.
    KeysUnavailable(Unavailable),
    /// Its `kid` is not in the key set, which may not have been refetched yet: see the
    /// subscriber's rule for how long this is retried.
    UnknownKey(InvalidToken),
}

/// Verifies `token` with the issuer's keys (an unknown `kid` takes the usual refetch path) and
/// reads it.
pub(crate) async fn verify(
    token: &str,
    rules: &SetRules,
    jwks: &Arc<JwksCache>,
) -> Result<SecurityEvent, Rejection> {
    let invalid = |error: SetError| Rejection::Invalid(error);
    let jws = UntrustedJws::parse(token, &rules.algorithms).map_err(|error| {
        invalid(match error {
            InvalidToken::AlgorithmNotAllowed(_) => SetError::Key(error),
            other => SetError::Malformed(other.to_string()),
        })
    })?;
    let typ = jws.header.typ.as_deref().map(normalize_typ);
    if typ.as_deref() != Some(SET_TYPE) {
        let found: String = jws
            .header
            .typ
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(32)
            .collect();
        return Err(invalid(SetError::Malformed(format!(
            "`typ` is {found:?}, not {SET_TYPE:?}"
        ))));
    }
    match jwks.verify(&jws).await {
        Ok(_) => {}
        Err(Error::InvalidToken(unknown @ InvalidToken::UnknownKey(_))) => {
            return Err(Rejection::UnknownKey(unknown));
        }
        Err(Error::InvalidToken(InvalidToken::BadSignature)) => {
            return Err(invalid(SetError::Signature));
        }
        Err(Error::InvalidToken(error)) => return Err(invalid(SetError::Key(error))),
        Err(Error::Unavailable(error)) => return Err(Rejection::KeysUnavailable(error)),
        Err(other) => {
            return Err(invalid(SetError::Malformed(other.to_string())));
        }
    }
    read(&jws.into_payload(), rules).map_err(invalid)
}

/// Reads the claims of a SET whose signature verified.
pub(crate) fn read(payload: &[u8], rules: &SetRules) -> Result<SecurityEvent, SetError> {
    let claims = json::parse_object(payload).map_err(SetError::Malformed)?;
    match claims.get("iss") {
        Some(Value::String(issuer)) if *issuer == rules.issuer => {}
        Some(Value::String(_)) => return Err(SetError::Issuer),
        _ => return Err(malformed("`iss` is missing or not a string")),
    }
    let addressed = match claims.get("aud") {
        Some(Value::String(audience)) => *audience == rules.audience,
        Some(Value::Array(audiences)) => audiences
            .iter()
            .any(|audience| audience.as_str() == Some(rules.audience.as_str())),
        _ => return Err(malformed("`aud` is missing or not a string or array")),
    };
    if !addressed {
        return Err(SetError::Audience);
    }
    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() => jti.clone(),
        _ => return Err(malformed("`jti` is missing or not a non-empty string")),
    };
    let issued_at = date(&claims, "iat")?.ok_or_else(|| malformed("`iat` is missing"))?;
    let Some(Value::Object(events)) = claims.get("events") else {
        return Err(malformed("`events` is missing or not an object"));
    };
    // RFC 8417 §2.2: `toe` is when the event happened; SSF transmitters that leave it out
    // may give it per event (CAEP `event_timestamp`); the SET's `iat` is no earlier.
    let toe = date(&claims, "toe")?;
    let subject = match claims.get("sub_id") {
        None => None,
        Some(Value::Object(subject)) => Some(subject),
        Some(_) => return Err(malformed("`sub_id` is not an object")),
    };
    let mut denials = Vec::new();
    for (kind, event) in events {
        let Value::Object(event) = event else {
            return Err(malformed("an event is not an object"));
        };
        let toe = match toe {
            Some(toe) => toe,
            None => date(event, "event_timestamp")?.unwrap_or(issued_at),
        };
        let until = match date(event, "tokens_expire_by")? {
            Some(until) => until,
            None => toe.saturating_add(rules.default_hold),
        };
        let target = match kind.as_str() {
            TOKEN_REVOKED => token_revoked(event, subject)?,
            SESSION_REVOKED => Target::Session {
                sid: member_id(subject, "session")?,
                toe,
            },
            ACCOUNT_PURGED => match user(subject, &rules.issuer)? {
                Some(sub) => Target::Subject { sub, toe },
                // Another issuer's user: none of the tokens this validator accepts.
                None => continue,
            },
            CLIENT_DELETED => Target::Client {
                client_id: member_id(subject, "application")?,
                toe,
            },
            // Credential changes are informational (their sessions and tokens have events of
            // their own); other types are not ours to act on.
            _ => continue,
        };
        denials.push(Denial { target, until });
    }
    Ok(SecurityEvent {
        jti,
        issued_at,
        denials,
    })
}

fn malformed(problem: &str) -> SetError {
    SetError::Malformed(problem.to_owned())
}

/// A NumericDate (RFC 7519 §2), if present.
fn date(claims: &Map<String, Value>, name: &str) -> Result<Option<Duration>, SetError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => number
            .as_f64()
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .map(Some)
            .ok_or_else(|| SetError::Malformed(format!("`{name}` is not a NumericDate"))),
        Some(_) => Err(SetError::Malformed(format!("`{name}` is not a number"))),
    }
}

/// The `id` of an `opaque` subject identifier (RFC 9493 §3.2.4).
fn opaque_id(subject: &Map<String, Value>, what: &str) -> Result<String, SetError> {
    match (subject.get("format"), subject.get("id")) {
        (Some(Value::String(format)), Some(Value::String(id))) if format == "opaque" => {
            Ok(id.clone())
        }
        _ => Err(SetError::Malformed(format!(
            "{what} is not an opaque identifier with an `id`"
        ))),
    }
}

/// The opaque identifier in member `name` of a `complex` `sub_id` (RFC 9493 §3.2.1, SSF 1.0).
fn member_id(subject: Option<&Map<String, Value>>, name: &str) -> Result<String, SetError> {
    match subject.and_then(|subject| subject.get(name)) {
        Some(Value::Object(member)) => opaque_id(member, &format!("`sub_id.{name}`")),
        _ => Err(SetError::Malformed(format!(
            "`sub_id` has no `{name}` object"
        ))),
    }
}

fn token_revoked(
    event: &Map<String, Value>,
    subject: Option<&Map<String, Value>>,
) -> Result<Target, SetError> {
    let subject = subject.ok_or_else(|| malformed("token-revoked without `sub_id`"))?;
    let id = opaque_id(subject, "`sub_id`")?;
    match event.get("identifier").and_then(Value::as_str) {
        Some("jti") => Ok(Target::TokenId(id)),
        Some("sha256") => {
            let mut digest = [0u8; 32];
            match URL_SAFE_NO_PAD.decode_slice(&id, &mut digest) {
                Ok(32) => Ok(Target::TokenDigest(digest)),
                _ => Err(malformed(
                    "a sha256 identifier is not 32 bytes of unpadded base64url",
                )),
            }
        }
        _ => Err(malformed(
            "token-revoked needs `identifier` \"jti\" or \"sha256\"",
        )),
    }
}

/// The `sub` of an `iss_sub` identifier, when its `iss` is this validator's issuer.
fn user(subject: Option<&Map<String, Value>>, issuer: &str) -> Result<Option<String>, SetError> {
    let subject = subject.ok_or_else(|| malformed("account-purged without `sub_id`"))?;
    match (
        subject.get("format").and_then(Value::as_str),
        subject.get("iss").and_then(Value::as_str),
        subject.get("sub").and_then(Value::as_str),
    ) {
        (Some("iss_sub"), Some(iss), Some(sub)) => Ok((iss == issuer).then(|| sub.to_owned())),
        _ => Err(malformed("`sub_id` is not an iss_sub identifier")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://login.example.test";
    const API: &str = "https://api.example.test";
    const TOE: u64 = 1_764_892_799;

    fn rules() -> SetRules {
        SetRules {
            issuer: ISSUER.to_owned(),
            audience: API.to_owned(),
            algorithms: vec![Algorithm::ES256],
            default_hold: Duration::from_secs(24 * 3600),
        }
    }

    fn set(sub_id: Value, events: Value) -> Value {
        json!({
            "iss": ISSUER,
            "aud": API,
            "iat": TOE + 1,
            "jti": "epoch-42",
            "toe": TOE,
            "sub_id": sub_id,
            "events": events,
        })
    }

    fn read_json(claims: &Value) -> Result<SecurityEvent, SetError> {
        read(claims.to_string().as_bytes(), &rules())
    }

    fn targets(claims: &Value) -> Vec<Denial> {
        read_json(claims).unwrap().denials
    }

    const TOE_D: Duration = Duration::from_secs(TOE);

    #[test]
    fn a_revoked_jwt_is_named_by_its_jti_until_tokens_expire_by() {
        let claims = set(
            json!({"format": "opaque", "id": "token-7"}),
            json!({TOKEN_REVOKED: {"identifier": "jti", "tokens_expire_by": TOE + 600}}),
        );
        let event = read_json(&claims).unwrap();
        assert_eq!(event.jti, "epoch-42");
        assert_eq!(event.issued_at, Duration::from_secs(TOE + 1));
        assert_eq!(
            event.denials,
            vec![Denial {
                target: Target::TokenId("token-7".to_owned()),
                until: Duration::from_secs(TOE + 600),
            }]
        );
    }

    #[test]
    fn a_revoked_opaque_token_is_named_by_its_digest() {
        let digest = crate::introspect::token_digest("opaque-token");
        let claims = set(
            json!({"format": "opaque", "id": URL_SAFE_NO_PAD.encode(digest)}),
            json!({TOKEN_REVOKED: {"identifier": "sha256"}}),
        );
        assert_eq!(
            targets(&claims),
            vec![Denial {
                target: Target::TokenDigest(digest),
                until: TOE_D + Duration::from_secs(24 * 3600),
            }]
        );
        let short = set(
            json!({"format": "opaque", "id": "c2hvcnQ"}),
            json!({TOKEN_REVOKED: {"identifier": "sha256"}}),
        );
        assert!(matches!(read_json(&short), Err(SetError::Malformed(_))));
    }

    #[test]
    fn subject_wide_events_name_their_subject_and_toe() {
        let session = set(
            json!({"format": "complex", "session": {"format": "opaque", "id": "sid-1"},
                   "user": {"format": "iss_sub", "iss": ISSUER, "sub": "jane"}}),
            json!({SESSION_REVOKED: {"event_timestamp": TOE}}),
        );
        let user = set(
            json!({"format": "iss_sub", "iss": ISSUER, "sub": "jane"}),
            json!({ACCOUNT_PURGED: {}}),
        );
        let client = set(
            json!({"format": "complex", "application": {"format": "opaque", "id": "svc"}}),
            json!({CLIENT_DELETED: {"tokens_expire_by": TOE + 86_400}}),
        );
        let target = |claims: &Value| targets(claims).remove(0).target;
        assert_eq!(
            target(&session),
            Target::Session {
                sid: "sid-1".to_owned(),
                toe: TOE_D
            }
        );
        assert_eq!(
            target(&user),
            Target::Subject {
                sub: "jane".to_owned(),
                toe: TOE_D
            }
        );
        assert_eq!(
            target(&client),
            Target::Client {
                client_id: "svc".to_owned(),
                toe: TOE_D
            }
        );
    }

    #[test]
    fn toe_falls_back_to_the_event_timestamp_then_iat() {
        let mut claims = set(
            json!({"format": "iss_sub", "iss": ISSUER, "sub": "jane"}),
            json!({ACCOUNT_PURGED: {"event_timestamp": TOE - 5}}),
        );
        claims.as_object_mut().unwrap().remove("toe");
        let toe = |claims: &Value| match targets(claims).remove(0).target {
            Target::Subject { toe, .. } => toe,
            other => panic!("{other:?}"),
        };
        assert_eq!(toe(&claims), Duration::from_secs(TOE - 5));
        claims["events"] = json!({ACCOUNT_PURGED: {}});
        assert_eq!(toe(&claims), Duration::from_secs(TOE + 1));
    }

    #[test]
    fn informational_unknown_and_foreign_events_refuse_nothing() {
        let user = json!({"format": "iss_sub", "iss": ISSUER, "sub": "jane"});
        let change = set(
            user.clone(),
            json!({"https://schemas.openid.net/secevent/caep/event-type/credential-change":
                   {"credential_type": "password", "change_type": "update"}}),
        );
        let unknown = set(user, json!({"https://example.test/new-kind": {}}));
        let foreign = set(
            json!({"format": "iss_sub", "iss": "https://other.test", "sub": "jane"}),
            json!({ACCOUNT_PURGED: {}}),
        );
        for claims in [change, unknown, foreign] {
            assert_eq!(targets(&claims), Vec::new(), "{claims}");
        }
    }

    #[test]
    fn issuer_audience_and_shape_are_checked() {
        let good = set(
            json!({"format": "opaque", "id": "t"}),
            json!({TOKEN_REVOKED: {"identifier": "jti"}}),
        );
        let mut other_issuer = good.clone();
        other_issuer["iss"] = json!("https://evil.test");
        assert_eq!(read_json(&other_issuer), Err(SetError::Issuer));
        let mut other_audience = good.clone();
        other_audience["aud"] = json!(["https://other-api.test"]);
        assert_eq!(read_json(&other_audience), Err(SetError::Audience));
        let mut listed = good.clone();
        listed["aud"] = json!(["https://other-api.test", API]);
        assert!(read_json(&listed).is_ok());
        for (name, value) in [
            ("events", json!([])),
            ("events", json!({TOKEN_REVOKED: "x"})),
            ("jti", json!(7)),
            ("jti", json!("")),
            ("iat", json!("1")),
            ("toe", json!(-1)),
            ("sub_id", json!("t")),
            ("aud", json!(7)),
        ] {
            let mut broken = good.clone();
            broken[name] = value;
            assert!(
                matches!(read_json(&broken), Err(SetError::Malformed(_))),
                "{name}"
            );
        }
        let mut no_iat = good;
        no_iat.as_object_mut().unwrap().remove("iat");
        assert!(matches!(read_json(&no_iat), Err(SetError::Malformed(_))));
        assert!(matches!(
            read(br#"{"iss":1,"iss":2}"#, &rules()),
            Err(SetError::Malformed(_))
        ));
    }

    #[test]
    fn error_codes_follow_rfc_8935() {
        assert_eq!(SetError::Issuer.code(), "invalid_issuer");
        assert_eq!(SetError::Audience.code(), "invalid_audience");
        assert_eq!(malformed("x").code(), "invalid_request");
        assert_eq!(SetError::Signature.code(), "authentication_failed");
        assert_eq!(
            SetError::Key(InvalidToken::UnknownKey("k".to_owned())).code(),
            "invalid_key"
        );
    }

    proptest::proptest! {
        #[test]
        fn reading_never_panics(payload in ".{0,300}") {
            let _ = read(payload.as_bytes(), &rules());
        }
    }
}
