//! The SQL both stores share, written once. Placeholders are `$N`, which SQLite and Postgres
//! both read, and columns use types both map to the same Rust types (`i64`, `String`, bytes), so
//! `sql_store!` implements [`Store`](super::Store) for either backend's pool and row types: the
//! one-time rules (codes, refresh rotation, revocation) are the same statements on both.

use super::StoreError;

/// The `jti` of the row that marks a grant revoked (no real jti starts with `!`).
pub(super) const REVOKED_MARK: &str = "!revoked";

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(super) fn json_list(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

pub(super) fn parse_list(table: &'static str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        table,
        reason: format!("a list column is not a JSON array of strings: {error}"),
    })
}

pub(super) fn duplicate_or(error: sqlx::Error, key: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            StoreError::Duplicate(key.to_owned())
        }
        _ => StoreError::Database(error),
    }
}

pub(super) fn digest_of(table: &'static str, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
        table,
        reason: "a digest is not 32 bytes".to_owned(),
    })
}

/// Pairs of stored usernames that differ by case alone (none once migration 0009 is applied).
pub(super) const USERNAMES_DIFFERING_BY_CASE: &str = "SELECT a.username AS one, b.username AS other \
     FROM users a JOIN users b ON lower(a.username) = lower(b.username) AND a.username < b.username \
     ORDER BY a.username";

/// Migration 0009 makes usernames unique without regard to case; a database holding names
/// that differ by case alone cannot take it, and must be told which.
pub(super) fn usernames_differing_by_case(pairs: &[(String, String)]) -> Result<(), StoreError> {
    if pairs.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = pairs
        .iter()
        .map(|(one, other)| format!("`{one}` and `{other}`"))
        .collect();
    Err(StoreError::Corrupt {
        table: "users",
        reason: format!(
            "usernames must differ by more than case before this version can start: \
             rename or delete one of {} (the service was not changed)",
            listed.join(", ")
        ),
    })
}

/// `INSERT` of `rows` access-token rows in one statement (bind each with [`bind_token!`]).
pub(super) fn insert_tokens_sql(rows: usize) -> String {
    const COLUMNS: usize = 9;
    let mut sql = String::from(
        "INSERT INTO access_tokens (digest, jti, client_id, subject, scope, audience, \
         issued_at, expires_at, revoked_at) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let placeholders: Vec<String> = (1..=COLUMNS)
            .map(|column| format!("${}", row * COLUMNS + column))
            .collect();
        sql.push('(');
        sql.push_str(&placeholders.join(", "));
        sql.push(')');
    }
    sql
}

/// Binds one access-token row to a query made from [`insert_tokens_sql`].
macro_rules! bind_token {
    ($query:expr, $token:expr) => {{
        let token: &TokenRecord = $token;
        $query
            .bind(token.digest.as_slice())
            .bind(&token.jti)
            .bind(&token.client_id)
            .bind(&token.subject)
            .bind(&token.scope)
            .bind(json_list(&token.audience))
            .bind(to_i64(token.issued_at))
            .bind(to_i64(token.expires_at))
            .bind(token.revoked_at.map(to_i64))
    }};
}

pub(super) use bind_token;

/// Implements `Store` for `$store` (a struct with a `pool` field of type `$pool` and a
/// `tokens` [`TokenWriter`](super::group_commit::TokenWriter)) whose rows are `$row`, and
/// [`TokenSink`](super::group_commit::TokenSink) for `$pool`.
macro_rules! sql_store {
    ($store:ty, $pool:ty, $row:ty) => {
        impl TokenSink for $pool {
            async fn insert(&self, tokens: &[&TokenRecord]) -> Result<(), sqlx::Error> {
                let mut query = sqlx::query(group_commit::statement(tokens.len()));
                for token in tokens {
                    query = bind_token!(query, token);
                }
                query.execute(self).await.map(|_| ())
            }
        }

        fn client_from_row(row: &$row) -> Result<ClientRecord, StoreError> {
            Ok(ClientRecord {
                id: row.try_get("id")?,
                secret_hash: row.try_get("secret_hash")?,
                grants: parse_list("clients", &row.try_get::<String, _>("grants")?)?,
                scopes: row.try_get("scopes")?,
                token_format: row.try_get("token_format")?,
                access_token_ttl: row
                    .try_get::<Option<i64>, _>("access_token_ttl")?
                    .map(to_u64),
                audience: parse_list("clients", &row.try_get::<String, _>("audience")?)?,
                redirect_uris: parse_list("clients", &row.try_get::<String, _>("redirect_uris")?)?,
                post_logout_redirect_uris: parse_list(
                    "clients",
                    &row.try_get::<String, _>("post_logout_redirect_uris")?,
                )?,
                required_claims: parse_list("clients", &row.try_get::<String, _>("required_claims")?)?,
                self_signup: row.try_get::<i64, _>("self_signup")? != 0,
                created_at: to_u64(row.try_get("created_at")?),
            })
        }

        fn api_from_row(row: &$row) -> Result<ApiRecord, StoreError> {
            Ok(ApiRecord {
                id: row.try_get("id")?,
                secret_hash: row.try_get("secret_hash")?,
                scopes: row.try_get("scopes")?,
                created_at: to_u64(row.try_get("created_at")?),
            })
        }

        fn user_from_row(row: &$row) -> Result<UserRecord, StoreError> {
            let attributes: String = row.try_get("attributes")?;
            Ok(UserRecord {
                id: row.try_get("id")?,
                username: row.try_get("username")?,
                password_hash: row.try_get("password_hash")?,
                attributes: serde_json::from_str(&attributes).map_err(|error| StoreError::Corrupt {
                    table: "users",
                    reason: format!("attributes are not a JSON object: {error}"),
                })?,
                created_at: to_u64(row.try_get("created_at")?),
                updated_at: to_u64(row.try_get("updated_at")?),
            })
        }

        fn session_from_row(row: &$row) -> Result<SessionRecord, StoreError> {
            Ok(SessionRecord {
                digest: digest_of("sessions", &row.try_get::<Vec<u8>, _>("digest")?)?,
                sid: row.try_get("sid")?,
                user_id: row.try_get("user_id")?,
                username: row.try_get("username")?,
                auth_time: to_u64(row.try_get("auth_time")?),
                expires_at: to_u64(row.try_get("expires_at")?),
                ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(to_u64),
            })
        }

        fn code_from_row(row: &$row) -> Result<CodeRecord, StoreError> {
            Ok(CodeRecord {
                digest: digest_of("authorization_codes", &row.try_get::<Vec<u8>, _>("digest")?)?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                username: row.try_get("username")?,
                sid: row.try_get("sid")?,
                redirect_uri: row.try_get("redirect_uri")?,
                scope: row.try_get("scope")?,
                nonce: row.try_get("nonce")?,
                code_challenge: row.try_get("code_challenge")?,
                auth_time: to_u64(row.try_get("auth_time")?),
                expires_at: to_u64(row.try_get("expires_at")?),
                redeemed_at: row.try_get::<Option<i64>, _>("redeemed_at")?.map(to_u64),
            })
        }

        fn refresh_from_row(row: &$row) -> Result<RefreshRecord, StoreError> {
            Ok(RefreshRecord {
                digest: digest_of("refresh_tokens", &row.try_get::<Vec<u8>, _>("digest")?)?,
                family: row.try_get("family")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                username: row.try_get("username")?,
                sid: row.try_get("sid")?,
                scope: row.try_get("scope")?,
                auth_time: to_u64(row.try_get("auth_time")?),
                issued_at: to_u64(row.try_get("issued_at")?),
                expires_at: to_u64(row.try_get("expires_at")?),
                rotated_at: row.try_get::<Option<i64>, _>("rotated_at")?.map(to_u64),
                revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(to_u64),
                family_started_at: to_u64(row.try_get("family_started_at")?),
            })
        }

        fn token_from_row(row: &$row) -> Result<TokenRecord, StoreError> {
            let digest: Vec<u8> = row.try_get("digest")?;
            let digest = <[u8; 32]>::try_from(digest.as_slice()).map_err(|_| StoreError::Corrupt {
                table: "access_tokens",
                reason: "a digest is not 32 bytes".to_owned(),
            })?;
            Ok(TokenRecord {
                digest,
                jti: row.try_get("jti")?,
                client_id: row.try_get("client_id")?,
                subject: row.try_get("subject")?,
                scope: row.try_get("scope")?,
                audience: parse_list("access_tokens", &row.try_get::<String, _>("audience")?)?,
                issued_at: to_u64(row.try_get("issued_at")?),
                expires_at: to_u64(row.try_get("expires_at")?),
                revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(to_u64),
            })
        }

        #[async_trait::async_trait]
                impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn insert_client(&self, client: &Client) -> Result<(), StoreError> {
                let client = &super::mapping::client_to_record(client);
                sqlx::query(
                    "INSERT INTO clients (id, secret_hash, grants, scopes, token_format, access_token_ttl, \
                     audience, redirect_uris, created_at, post_logout_redirect_uris, required_claims, \
                     self_signup) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&client.id)
                .bind(&client.secret_hash)
                .bind(json_list(&client.grants))
                .bind(&client.scopes)
                .bind(&client.token_format)
                .bind(client.access_token_ttl.map(to_i64))
                .bind(json_list(&client.audience))
                .bind(json_list(&client.redirect_uris))
                .bind(to_i64(client.created_at))
                .bind(json_list(&client.post_logout_redirect_uris))
                .bind(json_list(&client.required_claims))
                .bind(i64::from(client.self_signup))
                .execute(&self.pool)
                .await
                .map_err(|error| duplicate_or(error, &client.id))?;
                Ok(())
            }

            async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
                sqlx::query("SELECT * FROM clients WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(|row| super::mapping::client_from_record(&client_from_row(row)?))
                    .transpose()
            }

            async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
                sqlx::query("SELECT * FROM clients ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|row| super::mapping::client_from_record(&client_from_row(row)?))
                    .collect()
            }

            async fn delete_client(&self, id: &str, now: u64) -> Result<bool, StoreError> {
                let mut transaction = self.pool.begin().await?;
                let deleted = sqlx::query("DELETE FROM clients WHERE id = $1")
                    .bind(id)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                for statement in [
                    "UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
                    "UPDATE access_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
                ] {
                    sqlx::query(statement)
                        .bind(to_i64(now))
                        .bind(id)
                        .execute(&mut *transaction)
                        .await?;
                }
                transaction.commit().await?;
                Ok(true)
            }

            async fn delete_api(&self, id: &str) -> Result<bool, StoreError> {
                let deleted = sqlx::query("DELETE FROM apis WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(deleted > 0)
            }

            async fn insert_api(&self, api: &Api) -> Result<(), StoreError> {
                let api = &super::mapping::api_to_record(api);
                sqlx::query("INSERT INTO apis (id, secret_hash, scopes, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&api.id)
                    .bind(&api.secret_hash)
                    .bind(&api.scopes)
                    .bind(to_i64(api.created_at))
                    .execute(&self.pool)
                    .await
                    .map_err(|error| duplicate_or(error, &api.id))?;
                Ok(())
            }

            async fn find_api(&self, id: &str) -> Result<Option<Api>, StoreError> {
                sqlx::query("SELECT * FROM apis WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(|row| super::mapping::api_from_record(&api_from_row(row)?))
                    .transpose()
            }

            async fn list_apis(&self) -> Result<Vec<Api>, StoreError> {
                sqlx::query("SELECT * FROM apis ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|row| super::mapping::api_from_record(&api_from_row(row)?))
                    .collect()
            }

            async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO users (id, username, password_hash, attributes, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&user.id)
                .bind(&user.username)
                .bind(&user.password_hash)
                .bind(serde_json::Value::Object(user.attributes.clone()).to_string())
                .bind(to_i64(user.created_at))
                .bind(to_i64(user.updated_at))
                .execute(&self.pool)
                .await
                .map_err(|error| duplicate_or(error, &user.username))?;
                Ok(())
            }

            async fn find_user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
                sqlx::query("SELECT * FROM users WHERE username = $1")
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(user_from_row)
                    .transpose()
            }

            async fn username_taken(&self, username: &str) -> Result<bool, StoreError> {
                // Usernames are ASCII: lower() folds them alike on SQLite and Postgres.
                let row = sqlx::query("SELECT 1 AS taken FROM users WHERE lower(username) = lower($1) LIMIT 1")
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn find_user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
                sqlx::query("SELECT * FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(user_from_row)
                    .transpose()
            }

            async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
                sqlx::query("SELECT * FROM users ORDER BY username")
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(user_from_row)
                    .collect()
            }

            async fn set_password(
                &self,
                username: &str,
                password_hash: &str,
                now: u64,
            ) -> Result<bool, StoreError> {
                let updated =
                    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3")
                        .bind(password_hash)
                        .bind(to_i64(now))
                        .bind(username)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                Ok(updated > 0)
            }

            async fn merge_user_attributes(
                &self,
                username: &str,
                changes: &serde_json::Map<String, serde_json::Value>,
                now: u64,
            ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, StoreError> {
                let mut transaction = self.pool.begin().await?;
                // Writing first takes the row's lock (Postgres) or the database's write lock
                // (SQLite) before the read: concurrent merges queue, so none is lost.
                let locked = sqlx::query("UPDATE users SET updated_at = $1 WHERE username = $2")
                    .bind(to_i64(now))
                    .bind(username)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                if locked == 0 {
                    return Ok(None);
                }
                let row = sqlx::query("SELECT attributes FROM users WHERE username = $1")
                    .bind(username)
                    .fetch_one(&mut *transaction)
                    .await?;
                let current: String = row.try_get("attributes")?;
                let mut attributes: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&current).map_err(|error| StoreError::Corrupt {
                        table: "users",
                        reason: format!("user `{username}`: attributes: {error}"),
                    })?;
                for (name, value) in changes {
                    if value.is_null() {
                        attributes.remove(name);
                    } else {
                        attributes.insert(name.clone(), value.clone());
                    }
                }
                sqlx::query("UPDATE users SET attributes = $1 WHERE username = $2")
                    .bind(serde_json::Value::Object(attributes.clone()).to_string())
                    .bind(username)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Ok(Some(attributes))
            }

            async fn delete_user(&self, username: &str, now: u64) -> Result<bool, StoreError> {
                let mut transaction = self.pool.begin().await?;
                let Some(row) = sqlx::query("DELETE FROM users WHERE username = $1 RETURNING id")
                    .bind(username)
                    .fetch_optional(&mut *transaction)
                    .await?
                else {
                    return Ok(false);
                };
                let id: String = row.try_get("id")?;
                for statement in [
                    "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL",
                    "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                    // Opaque access tokens issued to the user (their `sub` is the user's random id).
                    "UPDATE access_tokens SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL",
                ] {
                    sqlx::query(statement)
                        .bind(to_i64(now))
                        .bind(&id)
                        .execute(&mut *transaction)
                        .await?;
                }
                transaction.commit().await?;
                Ok(true)
            }

            async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO sessions (digest, sid, user_id, username, auth_time, expires_at, ended_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(session.digest.as_slice())
                .bind(&session.sid)
                .bind(&session.user_id)
                .bind(&session.username)
                .bind(to_i64(session.auth_time))
                .bind(to_i64(session.expires_at))
                .bind(session.ended_at.map(to_i64))
                .execute(&self.pool)
                .await
                .map_err(|error| duplicate_or(error, &session.sid))?;
                Ok(())
            }

            async fn find_session(&self, digest: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
                sqlx::query("SELECT * FROM sessions WHERE digest = $1")
                    .bind(digest.as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(session_from_row)
                    .transpose()
            }

            async fn end_session(&self, sid: &str, now: u64) -> Result<(), StoreError> {
                sqlx::query("UPDATE sessions SET ended_at = COALESCE(ended_at, $1) WHERE sid = $2")
                    .bind(to_i64(now))
                    .bind(sid)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn session_codes(&self, sid: &str) -> Result<Vec<[u8; 32]>, StoreError> {
                sqlx::query("SELECT digest FROM authorization_codes WHERE sid = $1")
                    .bind(sid)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|row| digest_of("authorization_codes", &row.try_get::<Vec<u8>, _>("digest")?))
                    .collect()
            }

            async fn session_families(&self, sid: &str) -> Result<Vec<String>, StoreError> {
                sqlx::query("SELECT DISTINCT family FROM refresh_tokens WHERE sid = $1")
                    .bind(sid)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|row| Ok(row.try_get("family")?))
                    .collect()
            }

            async fn user_sessions(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
                sqlx::query("SELECT sid FROM sessions WHERE user_id = $1 AND ended_at IS NULL")
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|row| Ok(row.try_get("sid")?))
                    .collect()
            }

            async fn user_families(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
                sqlx::query(
                    "SELECT DISTINCT family, sid FROM refresh_tokens \
                     WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| Ok((row.try_get("family")?, row.try_get("sid")?)))
                .collect()
            }

            async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO authorization_codes (digest, client_id, user_id, username, sid, \
                     redirect_uri, scope, nonce, code_challenge, auth_time, expires_at, redeemed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(code.digest.as_slice())
                .bind(&code.client_id)
                .bind(&code.user_id)
                .bind(&code.username)
                .bind(&code.sid)
                .bind(&code.redirect_uri)
                .bind(&code.scope)
                .bind(&code.nonce)
                .bind(&code.code_challenge)
                .bind(to_i64(code.auth_time))
                .bind(to_i64(code.expires_at))
                .bind(code.redeemed_at.map(to_i64))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_code(&self, digest: &[u8; 32]) -> Result<Option<CodeRecord>, StoreError> {
                sqlx::query("SELECT * FROM authorization_codes WHERE digest = $1")
                    .bind(digest.as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(code_from_row)
                    .transpose()
            }

            async fn redeem_code(&self, digest: &[u8; 32], now: u64) -> Result<Redemption, StoreError> {
                // One statement: the database decides which of concurrent redemptions wins.
                let updated = sqlx::query(
                    "UPDATE authorization_codes SET redeemed_at = $1 \
                     WHERE digest = $2 AND redeemed_at IS NULL",
                )
                .bind(to_i64(now))
                .bind(digest.as_slice())
                .execute(&self.pool)
                .await?
                .rows_affected();
                if updated == 1 {
                    return Ok(Redemption::Redeemed);
                }
                Ok(if self.find_code(digest).await?.is_some() {
                    Redemption::AlreadyRedeemed
                } else {
                    Redemption::Unknown
                })
            }

            async fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (digest, family, client_id, user_id, username, sid, scope, \
                     auth_time, issued_at, expires_at, rotated_at, revoked_at, family_started_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(token.digest.as_slice())
                .bind(&token.family)
                .bind(&token.client_id)
                .bind(&token.user_id)
                .bind(&token.username)
                .bind(&token.sid)
                .bind(&token.scope)
                .bind(to_i64(token.auth_time))
                .bind(to_i64(token.issued_at))
                .bind(to_i64(token.expires_at))
                .bind(token.rotated_at.map(to_i64))
                .bind(token.revoked_at.map(to_i64))
                .bind(to_i64(token.family_started_at))
                .execute(&self.pool)
                .await?;
                // A replay that revoked the family while this token was being made: it shares
                // the family's fate (see `revoke_grant`).
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $1 \
                     WHERE digest = $2 AND revoked_at IS NULL AND EXISTS \
                     (SELECT 1 FROM grant_tokens WHERE grant_id = $3 AND jti = $4)",
                )
                .bind(to_i64(token.issued_at))
                .bind(token.digest.as_slice())
                .bind(&token.family)
                .bind(REVOKED_MARK)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_refresh(&self, digest: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError> {
                sqlx::query("SELECT * FROM refresh_tokens WHERE digest = $1")
                    .bind(digest.as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(refresh_from_row)
                    .transpose()
            }

            async fn rotate_refresh(&self, digest: &[u8; 32], now: u64) -> Result<bool, StoreError> {
                let updated = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = $1 \
                     WHERE digest = $2 AND rotated_at IS NULL AND revoked_at IS NULL",
                )
                .bind(to_i64(now))
                .bind(digest.as_slice())
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(updated == 1)
            }

            async fn record_grant_token(
                &self,
                grant_id: &str,
                jti: &str,
                client_id: &str,
                expires_at: u64,
            ) -> Result<bool, StoreError> {
                sqlx::query(
                    "INSERT INTO grant_tokens (grant_id, jti, client_id, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(grant_id)
                .bind(jti)
                .bind(client_id)
                .bind(to_i64(expires_at))
                .execute(&self.pool)
                .await?;
                Ok(
                    sqlx::query("SELECT 1 FROM grant_tokens WHERE grant_id = $1 AND jti = $2")
                        .bind(grant_id)
                        .bind(REVOKED_MARK)
                        .fetch_optional(&self.pool)
                        .await?
                        .is_some(),
                )
            }

            async fn revoke_grant(&self, grant_id: &str, now: u64) -> Result<u64, StoreError> {
                // The mark is committed before the revocations read anything: a token recorded
                // concurrently is either seen by the statements below or, recorded after they
                // read, sees the mark itself (`record_grant_token`, `insert_refresh`). This holds
                // under Postgres' READ COMMITTED as under SQLite's single writer.
                sqlx::query(
                    "INSERT INTO grant_tokens (grant_id, jti, client_id, expires_at) \
                     VALUES ($1, $2, '', $3) ON CONFLICT DO NOTHING",
                )
                .bind(grant_id)
                .bind(REVOKED_MARK)
                .bind(to_i64(now + 2 * 86400))
                .execute(&self.pool)
                .await?;
                let mut transaction = self.pool.begin().await?;
                let opaque = sqlx::query(
                    "UPDATE access_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND jti IN \
                     (SELECT jti FROM grant_tokens WHERE grant_id = $2)",
                )
                .bind(to_i64(now))
                .bind(grant_id)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
                // JWTs cannot be recalled; their jti goes on the revocation list (opaque ones too:
                // harmless, and it keeps the statement simple).
                let listed = sqlx::query(
                    "INSERT INTO revoked_jwts (jti, client_id, expires_at, revoked_at) \
                     SELECT jti, client_id, expires_at, $1 FROM grant_tokens \
                     WHERE grant_id = $2 AND jti <> $3 \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(to_i64(now))
                .bind(grant_id)
                .bind(REVOKED_MARK)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE family = $2",
                )
                .bind(to_i64(now))
                .bind(grant_id)
                .execute(&mut *transaction)
                .await?;
                transaction.commit().await?;
                Ok(opaque.max(listed))
            }

            async fn server_secret(&self, name: &str, now: u64) -> Result<Vec<u8>, StoreError> {
                let candidate = crate::secret::random_bytes();
                // Whoever inserts first wins; everyone reads the winner.
                sqlx::query(
                    "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(candidate.as_slice())
                .bind(to_i64(now))
                .execute(&self.pool)
                .await?;
                let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("value")?)
            }

            async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
                self.tokens.insert(token).await
            }

            async fn find_token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
                sqlx::query("SELECT * FROM access_tokens WHERE digest = $1")
                    .bind(digest.as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(token_from_row)
                    .transpose()
            }

            async fn revoke_token(
                &self,
                digest: &[u8; 32],
                client_id: &str,
                now: u64,
            ) -> Result<Revoked, StoreError> {
                // One statement: the check of ownership and the update cannot be separated.
                let updated = sqlx::query(
                    "UPDATE access_tokens SET revoked_at = COALESCE(revoked_at, $1) \
                     WHERE digest = $2 AND client_id = $3",
                )
                .bind(to_i64(now))
                .bind(digest.as_slice())
                .bind(client_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if updated > 0 {
                    return Ok(Revoked::Done);
                }
                let exists = sqlx::query("SELECT 1 FROM access_tokens WHERE digest = $1")
                    .bind(digest.as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                Ok(if exists {
                    Revoked::OtherClient
                } else {
                    Revoked::Unknown
                })
            }

            async fn revoke_jwt(
                &self,
                jti: &str,
                client_id: &str,
                expires_at: u64,
                now: u64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO revoked_jwts (jti, client_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(client_id)
                .bind(to_i64(expires_at))
                .bind(to_i64(now))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn is_jwt_revoked(&self, jti: &str) -> Result<bool, StoreError> {
                Ok(sqlx::query("SELECT 1 FROM revoked_jwts WHERE jti = $1")
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some())
            }

            async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, algorithm, private_key, created_at, activates_at, \
                     succeeds) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(key.private_pkcs8.as_slice())
                .bind(to_i64(key.created_at))
                .bind(to_i64(key.activates_at))
                .bind(&key.succeeds)
                .execute(&self.pool)
                .await
                .map_err(|error| duplicate_or(error, &key.kid))?;
                Ok(())
            }

            async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
                sqlx::query("SELECT * FROM signing_keys ORDER BY activates_at, created_at, kid")
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|row| {
                        Ok(StoredKey {
                            kid: row.try_get("kid")?,
                            algorithm: row.try_get("algorithm")?,
                            private_pkcs8: row.try_get("private_key")?,
                            created_at: to_u64(row.try_get("created_at")?),
                            activates_at: to_u64(row.try_get("activates_at")?),
                            succeeds: row.try_get("succeeds")?,
                        })
                    })
                    .collect()
            }

            async fn login_failures(&self, key: &[u8; 32], now: u64) -> Result<u64, StoreError> {
                let row = sqlx::query(
                    "SELECT failures FROM login_failures WHERE key = $1 AND window_ends > $2",
                )
                .bind(key.as_slice())
                .bind(to_i64(now))
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some(row) => to_u64(row.try_get("failures")?),
                    None => 0,
                })
            }

            async fn record_login_failure(
                &self,
                key: &[u8; 32],
                now: u64,
                window: u64,
            ) -> Result<(), StoreError> {
                // One statement: failures counted at every instance add up.
                sqlx::query(
                    "INSERT INTO login_failures (key, failures, window_ends) VALUES ($1, 1, $2) \
                     ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN login_failures.window_ends <= $3 THEN 1 \
                                ELSE login_failures.failures + 1 END, \
                     window_ends = CASE WHEN login_failures.window_ends <= $3 THEN $2 \
                                   ELSE login_failures.window_ends END",
                )
                .bind(key.as_slice())
                .bind(to_i64(now.saturating_add(window)))
                .bind(to_i64(now))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn sweep(&self, cutoff: u64) -> Result<Swept, StoreError> {
                let tokens = sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1")
                    .bind(to_i64(cutoff))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                let revoked_jwts = sqlx::query("DELETE FROM revoked_jwts WHERE expires_at < $1")
                    .bind(to_i64(cutoff))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                for statement in [
                    "DELETE FROM sessions WHERE expires_at < $1",
                    "DELETE FROM login_failures WHERE window_ends < $1",
                    "DELETE FROM grant_tokens WHERE expires_at < $1",
                    "DELETE FROM refresh_tokens WHERE expires_at < $1",
                    // Redeemed codes are kept a day past expiry, so that a late replay is still
                    // recognised as one.
                    "DELETE FROM authorization_codes WHERE expires_at + 86400 < $1",
                ] {
                    sqlx::query(statement)
                        .bind(to_i64(cutoff))
                        .execute(&self.pool)
                        .await?;
                }
                Ok(Swept {
                    tokens,
                    revoked_jwts,
                })
            }
        }
    };
}
pub(super) use sql_store;
