//! What a sign-in grants: browser sessions, authorization codes, refresh token families, and
//! the record of which access tokens each grant produced — with the one-time rules (a code
//! redeemed once, a refresh token rotated once, a revoked grant's late tokens revoked too)
//! decided by single statements, so they hold across instances.

use async_trait::async_trait;

use super::db::{Row, sql};
use super::events::{self, EventKind, NewEvent};
use super::sql::{REVOKED_MARK, digest_of, duplicate_or};
use super::tokens::{stored_key, token_digest_text};
use super::{CodeRecord, Redemption, RefreshRecord, SessionRecord, SqlStore, StoreError};

/// Sessions, codes, refresh tokens and the tokens of each grant.
#[async_trait]
pub trait GrantStore {
    /// Starts a browser session.
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// A session by cookie digest (ended and expired ones included).
    async fn find_session(&self, digest: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    /// Ends a session.
    async fn end_session(&self, sid: &str, now: u64) -> Result<(), StoreError>;
    /// The digests of every code issued in a session.
    async fn session_codes(&self, sid: &str) -> Result<Vec<[u8; 32]>, StoreError>;
    /// The refresh token families started in a session.
    async fn session_families(&self, sid: &str) -> Result<Vec<String>, StoreError>;
    /// The ids of a user's sessions that have not ended (expired ones included).
    async fn user_sessions(&self, user_id: &str) -> Result<Vec<String>, StoreError>;
    /// A user's refresh token families with an unrevoked token, each with the session it
    /// started in: `(family, sid)`.
    async fn user_families(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Records an authorization code.
    async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError>;
    /// A code by digest (redeemed and expired ones included).
    async fn find_code(&self, digest: &[u8; 32]) -> Result<Option<CodeRecord>, StoreError>;
    /// Marks a code redeemed, atomically: of concurrent callers exactly one sees `Redeemed`.
    async fn redeem_code(&self, digest: &[u8; 32], now: u64) -> Result<Redemption, StoreError>;

    /// Records a refresh token.
    async fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError>;
    /// A refresh token by digest (rotated, revoked and expired ones included).
    async fn find_refresh(&self, digest: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError>;
    /// Marks a refresh token rotated, atomically: `false` if it was rotated or revoked already.
    async fn rotate_refresh(&self, digest: &[u8; 32], now: u64) -> Result<bool, StoreError>;

    /// Records that `grant_id` produced the access token `jti`; `true` if the grant has been
    /// revoked meanwhile (a concurrent replay), in which case the caller revokes again.
    async fn record_grant_token(
        &self,
        grant_id: &str,
        jti: &str,
        client_id: &str,
        expires_at: u64,
    ) -> Result<bool, StoreError>;
    /// Revokes every access and refresh token `grant_id` produced, and marks the grant revoked
    /// so that tokens recorded later learn of it; returns how many access tokens were revoked.
    async fn revoke_grant(&self, grant_id: &str, now: u64) -> Result<u64, StoreError>;
    /// The grants the access token `jti` was recorded under ([`record_grant_token`](Self::record_grant_token)).
    async fn grants_of(&self, jti: &str) -> Result<Vec<String>, StoreError>;
}

fn session_from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        digest: digest_of("sessions", &row.bytes("digest")?)?,
        sid: row.text("sid")?,
        user_id: row.text("user_id")?,
        username: row.text("username")?,
        auth_time: row.int("auth_time")?,
        expires_at: row.int("expires_at")?,
        ended_at: row.optional_int("ended_at")?,
    })
}

fn code_from_row(row: &Row) -> Result<CodeRecord, StoreError> {
    Ok(CodeRecord {
        digest: digest_of("authorization_codes", &row.bytes("digest")?)?,
        client_id: row.text("client_id")?,
        user_id: row.text("user_id")?,
        username: row.text("username")?,
        sid: row.text("sid")?,
        redirect_uri: row.text("redirect_uri")?,
        scope: row.text("scope")?,
        nonce: row.optional_text("nonce")?,
        code_challenge: row.optional_text("code_challenge")?,
        dpop_jkt: row.optional_text("dpop_jkt")?,
        auth_time: row.int("auth_time")?,
        expires_at: row.int("expires_at")?,
        redeemed_at: row.optional_int("redeemed_at")?,
    })
}

fn refresh_from_row(row: &Row) -> Result<RefreshRecord, StoreError> {
    Ok(RefreshRecord {
        digest: digest_of("refresh_tokens", &row.bytes("digest")?)?,
        family: row.text("family")?,
        client_id: row.text("client_id")?,
        user_id: row.text("user_id")?,
        username: row.text("username")?,
        sid: row.text("sid")?,
        scope: row.text("scope")?,
        auth_time: row.int("auth_time")?,
        issued_at: row.int("issued_at")?,
        expires_at: row.int("expires_at")?,
        rotated_at: row.optional_int("rotated_at")?,
        revoked_at: row.optional_int("revoked_at")?,
        family_started_at: row.int("family_started_at")?,
        jkt: row.optional_text("jkt")?,
    })
}

/// The texts of one column of `rows`.
fn texts(rows: &[Row], column: &str) -> Result<Vec<String>, StoreError> {
    rows.iter().map(|row| Ok(row.text(column)?)).collect()
}

#[async_trait]
impl GrantStore for SqlStore {
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let statement = sql(
            "INSERT INTO sessions (digest, sid, user_id, username, auth_time, expires_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bytes(&session.digest)
        .text(&session.sid)
        .text(&session.user_id)
        .text(&session.username)
        .int(session.auth_time)
        .int(session.expires_at)
        .optional_int(session.ended_at);
        self.db
            .execute(statement)
            .await
            .map_err(|error| duplicate_or(error, &session.sid))?;
        Ok(())
    }

    async fn find_session(&self, digest: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM sessions WHERE digest = $1").bytes(digest))
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn end_session(&self, sid: &str, now: u64) -> Result<(), StoreError> {
        let mut transaction = self.db.begin().await?;
        let ended = transaction
            .optional(
                sql(
                    "UPDATE sessions SET ended_at = $1 WHERE sid = $2 AND ended_at IS NULL \
                     RETURNING user_id",
                )
                .int(now)
                .text(sid),
            )
            .await?;
        let Some(row) = ended else {
            return Ok(());
        };
        let user_id = row.text("user_id")?;
        let event = NewEvent {
            user_id: Some(&user_id),
            ..NewEvent::subject_wide(EventKind::Session, sid, now)
        };
        events::record(&mut transaction, &[event]).await?;
        transaction.commit().await?;
        self.events_committed();
        Ok(())
    }

    async fn session_codes(&self, sid: &str) -> Result<Vec<[u8; 32]>, StoreError> {
        self.db
            .all(sql("SELECT digest FROM authorization_codes WHERE sid = $1").text(sid))
            .await?
            .iter()
            .map(|row| digest_of("authorization_codes", &row.bytes("digest")?))
            .collect()
    }

    async fn session_families(&self, sid: &str) -> Result<Vec<String>, StoreError> {
        let statement = sql("SELECT DISTINCT family FROM refresh_tokens WHERE sid = $1").text(sid);
        texts(&self.db.all(statement).await?, "family")
    }

    async fn user_sessions(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let statement =
            sql("SELECT sid FROM sessions WHERE user_id = $1 AND ended_at IS NULL").text(user_id);
        texts(&self.db.all(statement).await?, "sid")
    }

    async fn user_families(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let statement = sql(
            "SELECT DISTINCT family, sid FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .text(user_id);
        self.db
            .all(statement)
            .await?
            .iter()
            .map(|row| Ok((row.text("family")?, row.text("sid")?)))
            .collect()
    }

    async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        let statement = sql(
            "INSERT INTO authorization_codes (digest, client_id, user_id, username, sid, \
             redirect_uri, scope, nonce, code_challenge, auth_time, expires_at, redeemed_at, \
             dpop_jkt) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bytes(&code.digest)
        .text(&code.client_id)
        .text(&code.user_id)
        .text(&code.username)
        .text(&code.sid)
        .text(&code.redirect_uri)
        .text(&code.scope)
        .optional_text(code.nonce.as_deref())
        .optional_text(code.code_challenge.as_deref())
        .int(code.auth_time)
        .int(code.expires_at)
        .optional_int(code.redeemed_at)
        .optional_text(code.dpop_jkt.as_deref());
        self.db.execute(statement).await?;
        Ok(())
    }

    async fn find_code(&self, digest: &[u8; 32]) -> Result<Option<CodeRecord>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM authorization_codes WHERE digest = $1").bytes(digest))
            .await?
            .as_ref()
            .map(code_from_row)
            .transpose()
    }

    async fn redeem_code(&self, digest: &[u8; 32], now: u64) -> Result<Redemption, StoreError> {
        // One statement: the database decides which of concurrent redemptions wins.
        let statement = sql("UPDATE authorization_codes SET redeemed_at = $1 \
             WHERE digest = $2 AND redeemed_at IS NULL")
        .int(now)
        .bytes(digest);
        if self.db.execute(statement).await? == 1 {
            return Ok(Redemption::Redeemed);
        }
        Ok(if self.find_code(digest).await?.is_some() {
            Redemption::AlreadyRedeemed
        } else {
            Redemption::Unknown
        })
    }

    async fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError> {
        let statement = sql(
            "INSERT INTO refresh_tokens (digest, family, client_id, user_id, username, sid, scope, \
             auth_time, issued_at, expires_at, rotated_at, revoked_at, family_started_at, jkt) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bytes(&token.digest)
        .text(&token.family)
        .text(&token.client_id)
        .text(&token.user_id)
        .text(&token.username)
        .text(&token.sid)
        .text(&token.scope)
        .int(token.auth_time)
        .int(token.issued_at)
        .int(token.expires_at)
        .optional_int(token.rotated_at)
        .optional_int(token.revoked_at)
        .int(token.family_started_at)
        .optional_text(token.jkt.as_deref());
        self.db.execute(statement).await?;
        // A replay that revoked the family while this token was being made: it shares the
        // family's fate (see `revoke_grant`).
        let late = sql("UPDATE refresh_tokens SET revoked_at = $1 \
             WHERE digest = $2 AND revoked_at IS NULL AND EXISTS \
             (SELECT 1 FROM grant_tokens WHERE grant_id = $3 AND jti = $4)")
        .int(token.issued_at)
        .bytes(&token.digest)
        .text(&token.family)
        .text(REVOKED_MARK);
        self.db.execute(late).await?;
        Ok(())
    }

    async fn find_refresh(&self, digest: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError> {
        self.db
            .optional(sql("SELECT * FROM refresh_tokens WHERE digest = $1").bytes(digest))
            .await?
            .as_ref()
            .map(refresh_from_row)
            .transpose()
    }

    async fn rotate_refresh(&self, digest: &[u8; 32], now: u64) -> Result<bool, StoreError> {
        let statement = sql("UPDATE refresh_tokens SET rotated_at = $1 \
             WHERE digest = $2 AND rotated_at IS NULL AND revoked_at IS NULL")
        .int(now)
        .bytes(digest);
        Ok(self.db.execute(statement).await? == 1)
    }

    async fn record_grant_token(
        &self,
        grant_id: &str,
        jti: &str,
        client_id: &str,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let record = sql(
            "INSERT INTO grant_tokens (grant_id, jti, client_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .text(grant_id)
        .text(jti)
        .text(client_id)
        .int(expires_at);
        self.db.execute(record).await?;
        let mark = sql("SELECT 1 AS marked FROM grant_tokens WHERE grant_id = $1 AND jti = $2")
            .text(grant_id)
            .text(REVOKED_MARK);
        Ok(self.db.optional(mark).await?.is_some())
    }

    async fn grants_of(&self, jti: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db
            .all(sql("SELECT grant_id FROM grant_tokens WHERE jti = $1").text(jti))
            .await?;
        texts(&rows, "grant_id")
    }

    async fn revoke_grant(&self, grant_id: &str, now: u64) -> Result<u64, StoreError> {
        // The mark is committed before the revocations read anything: a token recorded
        // concurrently is either seen by the statements below or, recorded after they read,
        // sees the mark itself (`record_grant_token`, `insert_refresh`). This holds under
        // Postgres' READ COMMITTED as under SQLite's single writer.
        let mark = sql(
            "INSERT INTO grant_tokens (grant_id, jti, client_id, expires_at) \
             VALUES ($1, $2, '', $3) ON CONFLICT DO NOTHING",
        )
        .text(grant_id)
        .text(REVOKED_MARK)
        .int(now + 2 * 86400);
        self.db.execute(mark).await?;
        let mut transaction = self.db.begin().await?;
        let opaque = transaction
            .all(
                sql(
                    "UPDATE access_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND jti IN \
                     (SELECT jti FROM grant_tokens WHERE grant_id = $2) \
                     RETURNING digest, expires_at",
                )
                .int(now)
                .text(grant_id),
            )
            .await?;
        // JWTs cannot be recalled; their jti goes on the revocation list (opaque ones too:
        // harmless, and it keeps the statement simple) and, for the JWTs newly listed, into an
        // event for the APIs that verify them.
        let listed = transaction
            .all(
                sql(
                    "INSERT INTO revoked_jwts (jti, client_id, expires_at, revoked_at) \
                     SELECT jti, client_id, expires_at, $1 FROM grant_tokens \
                     WHERE grant_id = $2 AND jti <> $3 \
                     ON CONFLICT (jti) DO NOTHING \
                     RETURNING jti, expires_at, \
                     EXISTS (SELECT 1 FROM access_tokens WHERE access_tokens.jti = revoked_jwts.jti) \
                     AS opaque",
                )
                .int(now)
                .text(grant_id)
                .text(REVOKED_MARK),
            )
            .await?;
        let mut named = Vec::with_capacity(opaque.len() + listed.len());
        for row in &opaque {
            let key = stored_key(&row.bytes("digest")?)?;
            named.push((
                EventKind::TokenDigest,
                token_digest_text(&key.digest()),
                row.int("expires_at")?,
            ));
        }
        for row in &listed {
            if !row.flag("opaque")? {
                named.push((
                    EventKind::TokenJti,
                    row.text("jti")?,
                    row.int("expires_at")?,
                ));
            }
        }
        let events: Vec<NewEvent<'_>> = named
            .iter()
            .map(|(kind, subject, expires_at)| NewEvent::token(*kind, subject, now, *expires_at))
            .collect();
        events::record(&mut transaction, &events).await?;
        transaction
            .execute(
                sql(
                    "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $1) \
                     WHERE family = $2",
                )
                .int(now)
                .text(grant_id),
            )
            .await?;
        transaction.commit().await?;
        if !events.is_empty() {
            self.events_committed();
        }
        Ok((opaque.len() as u64).max(listed.len() as u64))
    }
}
