//! Access tokens: opaque ones known by their key (written in groups, see `group_commit`), and
//! the revocation list of JWTs. The `digest` column holds the key: the token's issue time then
//! its SHA-256 (40 bytes), or the SHA-256 alone for a token of the earlier format (32 bytes;
//! the first migration's comment predates this).

use async_trait::async_trait;

use super::db::{Db, Row, Statement, sql};
use super::events::{self, EventKind, NewEvent};
use super::group_commit::{self, TokenSink};
use super::sql::{Placeholders, json_list, parse_list};
use super::sqlite_writer::SqliteWriter;
use super::{Revoked, SqlStore, StoreError, TokenKey, TokenRecord};

/// Opaque access tokens and revoked JWTs.
#[async_trait]
pub trait TokenStore {
    /// Records an opaque access token; returns once it is committed.
    async fn insert_token(&self, token: TokenRecord) -> Result<(), StoreError>;
    /// An opaque access token by key (expired and revoked ones included).
    async fn find_token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes an opaque token on behalf of `client_id`.
    async fn revoke_token(
        &self,
        key: &TokenKey,
        client_id: &str,
        now: u64,
    ) -> Result<Revoked, StoreError>;
    /// Records that the JWT `jti` (issued to `client_id`, valid until `expires_at`) is revoked.
    async fn revoke_jwt(
        &self,
        jti: &str,
        client_id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError>;
    /// Whether the JWT `jti` was revoked.
    async fn is_jwt_revoked(&self, jti: &str) -> Result<bool, StoreError>;
}

fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        key: stored_key(&row.bytes("digest")?)?,
        jti: row.text("jti")?,
        client_id: row.text("client_id")?,
        subject: row.text("subject")?,
        scope: row.text("scope")?,
        audience: parse_list("access_tokens", &row.text("audience")?)?,
        issued_at: row.int("issued_at")?,
        expires_at: row.int("expires_at")?,
        revoked_at: row.optional_int("revoked_at")?,
        jkt: row.optional_text("jkt")?,
        act: row.optional_text("act")?,
    })
}

/// Binds one access-token row to a statement made by `group_commit::statement`.
fn bind_token<'a>(
    statement: Statement<'a>,
    token: &'a TokenRecord,
    audience: &'a str,
) -> Statement<'a> {
    statement
        .bytes(token.key.as_stored())
        .text(&token.jti)
        .text(&token.client_id)
        .text(&token.subject)
        .text(&token.scope)
        .text(audience)
        .int(token.issued_at)
        .int(token.expires_at)
        .optional_int(token.revoked_at)
        .optional_text(token.jkt.as_deref())
        .optional_text(token.act.as_deref())
}

/// The statement inserting `tokens` (their `audiences` written as JSON lists).
fn insert_tokens<'a>(
    placeholders: Placeholders,
    tokens: &[&'a TokenRecord],
    audiences: &'a [String],
) -> Statement<'a> {
    let mut statement = sql(group_commit::statement(placeholders, tokens.len()));
    for (token, audience) in tokens.iter().zip(audiences) {
        statement = bind_token(statement, token, audience);
    }
    statement
}

fn audiences(tokens: &[&TokenRecord]) -> Vec<String> {
    tokens
        .iter()
        .map(|token| json_list(&token.audience))
        .collect()
}

impl TokenSink for Db {
    async fn insert(&self, tokens: &[&TokenRecord]) -> Result<(), sqlx::Error> {
        let audiences = audiences(tokens);
        let statement = insert_tokens(self.placeholders(), tokens, &audiences);
        self.execute(statement).await.map(|_| ())
    }
}

impl TokenSink for SqliteWriter {
    async fn insert(&self, tokens: &[&TokenRecord]) -> Result<(), sqlx::Error> {
        let audiences = audiences(tokens);
        let statement = insert_tokens(Placeholders::Anonymous, tokens, &audiences);
        self.execute(statement).await.map(|_| ())
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_token(&self, token: TokenRecord) -> Result<(), StoreError> {
        self.tokens.insert(token).await
    }

    async fn find_token(&self, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        self.lookup(sql("SELECT * FROM access_tokens WHERE digest = $1").bytes(key.as_stored()))
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn revoke_token(
        &self,
        key: &TokenKey,
        client_id: &str,
        now: u64,
    ) -> Result<Revoked, StoreError> {
        // One statement checks ownership and revokes; the event commits with it.
        let mut transaction = self.db.begin().await?;
        let revoked = transaction
            .optional(
                sql("UPDATE access_tokens SET revoked_at = $1 \
                     WHERE digest = $2 AND client_id = $3 AND revoked_at IS NULL \
                     RETURNING expires_at")
                .int(now)
                .bytes(key.as_stored())
                .text(client_id),
            )
            .await?;
        if let Some(row) = revoked {
            let subject = token_digest_text(&key.digest());
            let event = NewEvent::token(
                EventKind::TokenDigest,
                &subject,
                now,
                row.int("expires_at")?,
            );
            events::record(&mut transaction, &[event]).await?;
            transaction.commit().await?;
            self.events_committed();
            return Ok(Revoked::Done);
        }
        drop(transaction);
        let owner =
            sql("SELECT client_id FROM access_tokens WHERE digest = $1").bytes(key.as_stored());
        Ok(match self.db.optional(owner).await? {
            Some(row) if row.text("client_id")? == client_id => Revoked::Done,
            Some(_) => Revoked::OtherClient,
            None => Revoked::Unknown,
        })
    }

    async fn revoke_jwt(
        &self,
        jti: &str,
        client_id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut transaction = self.db.begin().await?;
        let listed = transaction
            .execute(
                sql(
                    "INSERT INTO revoked_jwts (jti, client_id, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING",
                )
                .text(jti)
                .text(client_id)
                .int(expires_at)
                .int(now),
            )
            .await?;
        if listed > 0 {
            let event = NewEvent::token(EventKind::TokenJti, jti, now, expires_at);
            events::record(&mut transaction, &[event]).await?;
        }
        transaction.commit().await?;
        if listed > 0 {
            self.events_committed();
        }
        Ok(())
    }

    async fn is_jwt_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let statement = sql("SELECT 1 AS revoked FROM revoked_jwts WHERE jti = $1").text(jti);
        Ok(self.db.optional(statement).await?.is_some())
    }
}

/// An access token's key as stored (its `digest` column: see [`TokenKey`]).
pub(super) fn stored_key(stored: &[u8]) -> Result<TokenKey, StoreError> {
    TokenKey::from_stored(stored).ok_or_else(|| StoreError::Corrupt {
        table: "access_tokens",
        reason: "a token key is neither 40 nor 32 bytes".to_owned(),
    })
}

/// How an opaque token is named in events: the unpadded base64url of its SHA-256, which
/// reveals nothing of the token and which an API holding the token can compute.
pub(super) fn token_digest_text(digest: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}
