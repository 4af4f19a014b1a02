//! One event as a Security Event Token's claims (RFC 8417), in the types and subject formats of
//! docs/revocation-events.md: CAEP 1.0 and RISC 1.0 where one fits, Scopegate's own otherwise.

use serde_json::{Value, json};

use crate::store::{EventKind, EventRecord};

/// An access token revoked (Scopegate's own: no CAEP or RISC type names one token).
pub const TOKEN_REVOKED: &str = "https://scopegate.dev/secevent/event-type/token-revoked";
/// A session ended (CAEP 1.0).
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// A user deleted (RISC 1.0).
pub const ACCOUNT_PURGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// A user's password changed (CAEP 1.0).
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// A client deleted (Scopegate's own).
pub const CLIENT_DELETED: &str = "https://scopegate.dev/secevent/event-type/client-deleted";

/// Every event type the stream carries.
pub const EVENT_TYPES: [&str; 5] = [
    TOKEN_REVOKED,
    SESSION_REVOKED,
    ACCOUNT_PURGED,
    CREDENTIAL_CHANGE,
    CLIENT_DELETED,
];

/// The `jti` of the event at `position` in the stream of `epoch`.
#[must_use]
pub fn event_id(epoch: &str, position: u64) -> String {
    format!("{epoch}-{position}")
}

/// The position an event id names, if it is one of this stream's (epoch `epoch`).
#[must_use]
pub fn position_of(epoch: &str, id: &str) -> Option<u64> {
    let (named_epoch, position) = id.rsplit_once('-')?;
    if named_epoch != epoch || position.starts_with('+') {
        return None;
    }
    position.parse().ok()
}

/// The claims of the SET telling `audience` of `event`, issued at `now`.
#[must_use]
pub fn claims(issuer: &str, audience: &str, epoch: &str, event: &EventRecord, now: u64) -> Value {
    let user = |sub: &str| json!({ "format": "iss_sub", "iss": issuer, "sub": sub });
    let opaque = |id: &str| json!({ "format": "opaque", "id": id });
    let mut details = json!({
        "event_timestamp": event.occurred_at,
        "tokens_expire_by": event.tokens_expire_by,
    });
    let (event_type, subject) = match event.kind {
        EventKind::TokenJti | EventKind::TokenDigest => {
            let identifier = if event.kind == EventKind::TokenJti {
                "jti"
            } else {
                "sha256"
            };
            details["identifier"] = identifier.into();
            (TOKEN_REVOKED, opaque(&event.subject))
        }
        EventKind::Session => {
            let mut subject = json!({ "format": "complex", "session": opaque(&event.subject) });
            if let Some(user_id) = &event.user_id {
                subject["user"] = user(user_id);
            }
            (SESSION_REVOKED, subject)
        }
        EventKind::UserDeleted => (ACCOUNT_PURGED, user(&event.subject)),
        EventKind::PasswordChanged => {
            details["credential_type"] = "password".into();
            details["change_type"] = "update".into();
            (CREDENTIAL_CHANGE, user(&event.subject))
        }
        EventKind::ClientDeleted => (
            CLIENT_DELETED,
            json!({ "format": "complex", "application": opaque(&event.subject) }),
        ),
    };
    json!({
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "jti": event_id(epoch, event.position),
        "toe": event.occurred_at,
        "sub_id": subject,
        "events": { event_type: details },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_name_their_position_only_in_their_own_epoch() {
        let id = event_id("a1b2c3", 42);
        assert_eq!(position_of("a1b2c3", &id), Some(42));
        assert_eq!(position_of("ffffff", &id), None);
        for foreign in [
            "",
            "42",
            "a1b2c3-",
            "a1b2c3-x",
            "a1b2c3-+4",
            "a1b2c3--4",
            "a1b2c3-99999999999999999999",
        ] {
            assert_eq!(position_of("a1b2c3", foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_session_event_names_the_session_and_its_user() {
        let event = EventRecord {
            position: 7,
            kind: EventKind::Session,
            subject: "sid-1".into(),
            user_id: Some("u1".into()),
            occurred_at: 100,
            tokens_expire_by: 200,
        };
        let claims = claims("https://login.test", "https://api.test", "e", &event, 150);
        assert_eq!(claims["jti"], "e-7");
        assert_eq!(claims["toe"], 100);
        assert_eq!(claims["aud"], "https://api.test");
        assert_eq!(claims["sub_id"]["session"]["id"], "sid-1");
        assert_eq!(claims["sub_id"]["user"]["sub"], "u1");
        assert_eq!(claims["sub_id"]["user"]["iss"], "https://login.test");
        assert_eq!(claims["events"][SESSION_REVOKED]["tokens_expire_by"], 200);
    }
}
