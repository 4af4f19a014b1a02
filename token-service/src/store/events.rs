//! The log of revocation events that APIs read (docs/revocation-events.md): one row per
//! revocation, written by the revocation's own transaction ([`record`]), read in position order
//! ([`EventStore`]).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::db::{Row, Transaction, sql};
use super::{SqlStore, StoreError};

/// How long events are kept: the longest access-token lifetime any client can be given
/// ([`crate::config::MAX_ACCESS_TOKEN_TTL`]), so a receiver away for less misses nothing, and one
/// away for longer holds no token an older event could concern.
pub const EVENT_RETENTION_SECS: u64 = crate::config::MAX_ACCESS_TOKEN_TTL.as_secs();

/// The Postgres advisory lock every event writer holds from its insert to its commit: positions
/// are then handed out in commit order, so a reader that saw position *n* saw all before it.
const EVENT_ORDER_LOCK: u64 = 0x5343_4f50_4556_5453; // "SCOPEVTS"

/// The channel on which Postgres announces committed events to every instance.
pub(super) const EVENT_CHANNEL: &str = "scopegate_security_events";

/// What was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// A JWT access token, by `jti`.
    TokenJti,
    /// An opaque access token, by the base64url SHA-256 of its value.
    TokenDigest,
    /// A browser session, by `sid` (with its user).
    Session,
    /// A user deleted, by `sub`.
    UserDeleted,
    /// A user's password changed, by `sub` (informational).
    PasswordChanged,
    /// A client deleted, by `client_id`.
    ClientDeleted,
}

impl EventKind {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TokenJti => "token_jti",
            Self::TokenDigest => "token_sha256",
            Self::Session => "session",
            Self::UserDeleted => "user_deleted",
            Self::PasswordChanged => "password_changed",
            Self::ClientDeleted => "client_deleted",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Self::TokenJti,
            Self::TokenDigest,
            Self::Session,
            Self::UserDeleted,
            Self::PasswordChanged,
            Self::ClientDeleted,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Its position in the stream (increasing in commit order).
    pub position: u64,
    /// What was revoked.
    pub kind: EventKind,
    /// The `jti`, token digest, `sid`, user id or client id.
    pub subject: String,
    /// A session's user.
    pub user_id: Option<String>,
    /// When the revocation happened (seconds since the epoch).
    pub occurred_at: u64,
    /// No token the event affects is valid after this.
    pub tokens_expire_by: u64,
}

/// An event about to be written by a revocation.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewEvent<'a> {
    pub(super) kind: EventKind,
    pub(super) subject: &'a str,
    pub(super) user_id: Option<&'a str>,
    pub(super) occurred_at: u64,
    pub(super) tokens_expire_by: u64,
}

impl<'a> NewEvent<'a> {
    /// An event about every token of a subject (a session, user or client): it concerns the
    /// tokens issued until `now`, the last of which expires within the longest lifetime.
    pub(super) const fn subject_wide(kind: EventKind, subject: &'a str, now: u64) -> Self {
        Self {
            kind,
            subject,
            user_id: None,
            occurred_at: now,
            tokens_expire_by: now + EVENT_RETENTION_SECS,
        }
    }

    /// An event about one access token, which expires at `expires_at`.
    pub(super) const fn token(
        kind: EventKind,
        subject: &'a str,
        now: u64,
        expires_at: u64,
    ) -> Self {
        Self {
            kind,
            subject,
            user_id: None,
            occurred_at: now,
            tokens_expire_by: expires_at,
        }
    }
}

/// Writes `events` in `transaction`, the revocation's own: they commit with it or not at all.
/// On Postgres the writer first takes [`EVENT_ORDER_LOCK`] (held until commit) and the commit
/// announces them on [`EVENT_CHANNEL`].
pub(super) async fn record(
    transaction: &mut Transaction,
    events: &[NewEvent<'_>],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    if transaction.is_postgres() {
        transaction
            .execute(sql("SELECT pg_advisory_xact_lock($1)").int(EVENT_ORDER_LOCK))
            .await?;
    }
    for event in events {
        transaction
            .execute(
                sql("INSERT INTO security_events \
                     (kind, subject, user_id, occurred_at, tokens_expire_by) \
                     VALUES ($1, $2, $3, $4, $5)")
                .text(event.kind.as_str())
                .text(event.subject)
                .optional_text(event.user_id)
                .int(event.occurred_at)
                .int(event.tokens_expire_by),
            )
            .await?;
    }
    if transaction.is_postgres() {
        transaction
            .execute(sql("SELECT pg_notify($1, '')").text(EVENT_CHANNEL))
            .await?;
    }
    Ok(())
}

/// Reading the event log.
#[async_trait]
pub trait EventStore {
    /// The stream's epoch: random, made once with the database.
    async fn event_epoch(&self) -> Result<String, StoreError>;
    /// Up to `limit` events after position `after` (from the oldest kept when `None`), in
    /// position order.
    async fn events_after(
        &self,
        after: Option<u64>,
        limit: u64,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The newest event's position (0 when there is none).
    async fn last_event_position(&self) -> Result<u64, StoreError>;
    /// Notified when an event may have committed: here, or on Postgres by any instance.
    fn event_commits(&self) -> Arc<Notify>;
}

fn event_from_row(row: &Row) -> Result<EventRecord, StoreError> {
    let kind_name = row.text("kind")?;
    let kind = EventKind::parse(&kind_name).ok_or_else(|| StoreError::Corrupt {
        table: "security_events",
        reason: format!("unknown event kind `{kind_name}`"),
    })?;
    Ok(EventRecord {
        position: row.int("seq")?,
        kind,
        subject: row.text("subject")?,
        user_id: row.optional_text("user_id")?,
        occurred_at: row.int("occurred_at")?,
        tokens_expire_by: row.int("tokens_expire_by")?,
    })
}

#[async_trait]
impl EventStore for SqlStore {
    async fn event_epoch(&self) -> Result<String, StoreError> {
        let row = self
            .db
            .optional(sql("SELECT epoch FROM event_stream"))
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table: "event_stream",
                reason: "no epoch".to_owned(),
            })?;
        Ok(row.text("epoch")?)
    }

    async fn events_after(
        &self,
        after: Option<u64>,
        limit: u64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let statement = sql(
            "SELECT seq, kind, subject, user_id, occurred_at, tokens_expire_by \
             FROM security_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .int(after.unwrap_or(0))
        .int(limit);
        self.db
            .all(statement)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn last_event_position(&self) -> Result<u64, StoreError> {
        let row = self
            .db
            .optional(sql(
                "SELECT COALESCE(MAX(seq), 0) AS last FROM security_events",
            ))
            .await?;
        Ok(row.map(|row| row.int("last")).transpose()?.unwrap_or(0))
    }

    fn event_commits(&self) -> Arc<Notify> {
        Arc::clone(&self.event_commits)
    }
}
