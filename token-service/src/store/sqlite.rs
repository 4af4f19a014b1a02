//! The SQLite store: one file, WAL journal, migrations embedded in the binary.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::db::Db;
use super::group_commit::{Checkpoints, SpendWriter, TokenWriter};
use super::inline_reads::InlineReads;
use super::sql::refuse_usernames_differing_by_case;
use super::sqlite_writer::SqliteWriter;
use super::{SqlStore, StoreError};

impl SqlStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path`, `sqlite::memory:`)
    /// and applies the embedded migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the file cannot be created or opened, or migrations fail.
    pub async fn sqlite(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // WAL: readers never wait for the writer. `synchronous = NORMAL` in WAL mode survives a
        // killed process without losing a committed transaction; only a power cut can lose the
        // last few.
        let options = if memory {
            options
        } else {
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        };
        let file = options.get_filename().to_path_buf();
        if !memory && let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| StoreError::Database(sqlx::Error::Io(error)))?;
        }
        // An in-memory database exists per connection: one connection, kept open.
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .min_connections(u32::from(memory))
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .connect_with(options.clone())
            .await?;
        if !memory {
            restrict_permissions(&file);
        }
        refuse_usernames_differing_by_case(&Db::Sqlite(pool.clone())).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // The token writer's own connection, written through on the runtime's thread
        // (`sqlite_writer`): its page cache stays valid between batches (a pooled one would
        // have been invalidated by other connections' writes meanwhile). SQLite's own
        // checkpoints are off on it (they would run inside a commit, every 1000 pages); a
        // background task checkpoints once a second, the bulk beside the writer and the tail
        // on its connection between two batches (`group_commit::Checkpoints`).
        let (tokens, spends) = if memory {
            (
                TokenWriter::start(Db::Sqlite(pool.clone()), 1, None),
                SpendWriter::start(Db::Sqlite(pool.clone()), 1),
            )
        } else {
            let writer = SqliteWriter::open(&file)?;
            // The single-use ids share that connection: SQLite has one writer anyway, and
            // they wait for it here rather than in SQLite's busy handler.
            (
                TokenWriter::start(
                    writer.clone(),
                    1,
                    Some(Checkpoints {
                        bulk: pool.clone(),
                        tail: writer.clone(),
                    }),
                ),
                SpendWriter::start(writer, 1),
            )
        };
        // An in-memory database is its one connection's: nothing else can read it.
        let inline_reads =
            (!memory).then(|| Arc::new(InlineReads::new(file, Db::Sqlite(pool.clone()))));
        Ok(Self {
            db: Db::Sqlite(pool),
            inline_reads,
            tokens,
            spends,
            // One process writes this database: its own commits are all there is to hear.
            event_commits: std::sync::Arc::default(),
        })
    }
}

/// The database holds private keys: readable by its owner only.
fn restrict_permissions(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(error) = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(file = %file.display(), %error, "could not restrict the database file to its owner");
        }
    }
    #[cfg(not(unix))]
    let _ = file;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::prelude::*;
    use super::super::{Revoked, Swept, TokenKey, TokenRecord};
    use super::*;
    use crate::config::Client;
    use crate::secret::SecretHash;
    use crate::users::Account;

    fn token(digest: u8, client: &str, expires_at: u64) -> TokenRecord {
        TokenRecord {
            client_id: client.to_owned(),
            subject: client.to_owned(),
            expires_at,
            ..TokenRecord::sample(digest)
        }
    }

    #[tokio::test]
    async fn tokens_round_trip_and_revoke_only_for_their_client() {
        let store = SqlStore::sqlite("sqlite::memory:").await.unwrap();
        let record = token(1, "svc-a", 1000);
        store.insert_token(record.clone()).await.unwrap();
        assert_eq!(
            store
                .find_token(&TokenKey::from_digest([1; 32]))
                .await
                .unwrap(),
            Some(record)
        );
        assert_eq!(
            store
                .find_token(&TokenKey::from_digest([2; 32]))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .revoke_token(&TokenKey::from_digest([1; 32]), "svc-b", 200)
                .await
                .unwrap(),
            Revoked::OtherClient
        );
        assert_eq!(
            store
                .find_token(&TokenKey::from_digest([1; 32]))
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            None
        );
        assert_eq!(
            store
                .revoke_token(&TokenKey::from_digest([1; 32]), "svc-a", 200)
                .await
                .unwrap(),
            Revoked::Done
        );
        // A second revocation keeps the first time.
        store
            .revoke_token(&TokenKey::from_digest([1; 32]), "svc-a", 300)
            .await
            .unwrap();
        assert_eq!(
            store
                .find_token(&TokenKey::from_digest([1; 32]))
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(200)
        );
        assert_eq!(
            store
                .revoke_token(&TokenKey::from_digest([9; 32]), "svc-a", 200)
                .await
                .unwrap(),
            Revoked::Unknown
        );
    }

    #[tokio::test]
    async fn duplicate_client_is_reported() {
        let store = SqlStore::sqlite("sqlite::memory:").await.unwrap();
        let settings = crate::config::ClientSettings {
            id: "c".into(),
            public: false,
            grants: vec![crate::config::GrantType::ClientCredentials],
            scopes: vec![scopegate_validator::Scope::parse("x:y:read").unwrap()],
            default_scopes: None,
            token_format: crate::config::TokenFormat::Jwt,
            access_token_ttl: Some(Duration::from_secs(60)),
            audience: vec![],
            exchange_from: vec![],
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            required_claims: vec![],
            self_signup: false,
            dpop_bound_access_tokens: false,
            jwks: None,
            jwks_uri: None,
            rate_limit: None,
            secret: None,
            secret_hash: None,
        };
        let client = Client::new(
            settings,
            Some(crate::secret::SecretHash::hash("s")),
            Some(1),
        )
        .unwrap();
        store.insert_client(&client).await.unwrap();
        assert!(matches!(
            store.insert_client(&client).await,
            Err(StoreError::Duplicate(id)) if id == "c"
        ));
        let found = store.find_client("c").await.unwrap().unwrap();
        assert_eq!(found.settings, client.settings);
        assert_eq!(found.registered_at, Some(1));
    }

    #[tokio::test]
    async fn users_round_trip_and_change_passwords() {
        let store = SqlStore::sqlite("sqlite::memory:").await.unwrap();
        let mut attributes = serde_json::Map::new();
        attributes.insert("companyName".into(), "Bizcorp".into());
        let user = Account {
            id: "u1".into(),
            username: "jane".into(),
            password: SecretHash::hash("first password"),
            attributes,
            configured: false,
            created_at: Some(1),
            updated_at: Some(1),
        };
        store.insert_user(&user).await.unwrap();
        let found = store.find_user_by_name("jane").await.unwrap().unwrap();
        assert_eq!(found.attributes["companyName"], "Bizcorp");
        assert!(matches!(
            store.insert_user(&Account { id: "u2".into(), ..user }).await,
            Err(StoreError::Duplicate(name)) if name == "jane"
        ));
        let second = SecretHash::hash("second password");
        assert!(
            store
                .set_password("jane", second.as_str(), 5)
                .await
                .unwrap()
        );
        assert!(
            !store
                .set_password("nobody", second.as_str(), 5)
                .await
                .unwrap()
        );
        let found = store.find_user_by_name("jane").await.unwrap().unwrap();
        assert!(found.password.verify("second password") && !found.configured);
        assert_eq!(found.updated_at, Some(5));
        assert_eq!(store.list_users().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn sweep_removes_only_expired_rows() {
        let store = SqlStore::sqlite("sqlite::memory:").await.unwrap();
        store.insert_token(token(1, "a", 100)).await.unwrap();
        store.insert_token(token(2, "a", 300)).await.unwrap();
        store.revoke_jwt("old", "a", 100, 50).await.unwrap();
        store.revoke_jwt("new", "a", 300, 50).await.unwrap();
        let swept = store.sweep(200).await.unwrap();
        assert_eq!(
            swept,
            Swept {
                tokens: 1,
                revoked_jwts: 1
            }
        );
        assert!(
            store
                .find_token(&TokenKey::from_digest([1; 32]))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .find_token(&TokenKey::from_digest([2; 32]))
                .await
                .unwrap()
                .is_some()
        );
        assert!(!store.is_jwt_revoked("old").await.unwrap());
        assert!(store.is_jwt_revoked("new").await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_token_inserts_are_all_committed_and_a_duplicate_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/db.sqlite", dir.path().display());
        let store = SqlStore::sqlite(&url).await.unwrap();
        // 200 distinct tokens and, among them at the same moment, 20 whose digest repeats one
        // of the first 20: they land in the same batches as the rows they collide with.
        let inserts = (0..220u16).map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut record = token(0, "svc", 1000);
                let distinct = index % 200;
                let mut digest = [0; 32];
                digest[..2].copy_from_slice(&distinct.to_le_bytes());
                record.key = TokenKey::from_digest(digest);
                record.jti = format!("jti-{index}");
                (distinct, store.insert_token(record).await)
            })
        });
        let mut written = std::collections::HashMap::<u16, usize>::new();
        for insert in inserts.collect::<Vec<_>>() {
            let (distinct, outcome) = insert.await.unwrap();
            match outcome {
                Ok(()) => *written.entry(distinct).or_default() += 1,
                Err(StoreError::Duplicate(_)) => assert!(distinct < 20, "{distinct} failed"),
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(written.len(), 200);
        assert!(written.values().all(|count| *count == 1), "{written:?}");
        for distinct in 0..200u16 {
            let mut digest = [0; 32];
            digest[..2].copy_from_slice(&distinct.to_le_bytes());
            let key = TokenKey::from_digest(digest);
            assert!(store.find_token(&key).await.unwrap().is_some());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_reach_the_database_file_through_background_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        let store = SqlStore::sqlite(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = std::fs::metadata(&file).unwrap().len();
        for index in 0..2000u16 {
            let mut record = token(0, "svc", 1000);
            let mut digest = [0; 32];
            digest[..2].copy_from_slice(&index.to_le_bytes());
            record.key = TokenKey::from_digest(digest);
            record.jti = format!("jti-{index}");
            store.insert_token(record).await.unwrap();
        }
        // The writer never checkpoints itself: only the background task moves the rows from
        // the WAL into the database file.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after = std::fs::metadata(&file).unwrap().len();
        assert!(
            after >= before + 2000 * 64,
            "database file {before} → {after} bytes: the WAL was not checkpointed"
        );
    }

    /// The checkpoint sequence number of the WAL's header (big-endian, bytes 12..16), which
    /// SQLite increments each time the WAL starts over from its beginning.
    fn wal_restarts(database: &Path) -> u32 {
        use std::io::Read as _;
        let mut wal = std::fs::File::open(database.with_extension("sqlite-wal")).unwrap();
        let mut header = [0u8; 16];
        wal.read_exact(&mut header).unwrap();
        u32::from_be_bytes([header[12], header[13], header[14], header[15]])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_tokens_are_written_without_pause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        let store = std::sync::Arc::new(
            SqlStore::sqlite(&format!("sqlite://{}", file.display()))
                .await
                .unwrap(),
        );
        store.insert_token(token(255, "svc", 1000)).await.unwrap();
        let before = wal_restarts(&file);
        // Writers that never pause for longer than a batch: the checkpoint must still catch up.
        let until = std::time::Instant::now() + Duration::from_millis(3500);
        let writers: Vec<_> = (0..16u8)
            .map(|writer| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    let mut count = 0u64;
                    while std::time::Instant::now() < until {
                        let mut record = token(writer, "svc", 1000);
                        let mut digest = [writer; 32];
                        digest[1..9].copy_from_slice(&count.to_le_bytes());
                        record.key = TokenKey::from_digest(digest);
                        record.jti = format!("jti-{writer}-{count}");
                        store.insert_token(record).await.unwrap();
                        count += 1;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(
            wal_restarts(&file) > before,
            "the WAL never started over: it grows for as long as tokens are issued"
        );
    }

    #[tokio::test]
    async fn file_database_is_created_with_its_directory_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/db.sqlite", dir.path().display());
        {
            let store = SqlStore::sqlite(&url).await.unwrap();
            store.insert_token(token(7, "a", 1000)).await.unwrap();
            store.close().await;
        }
        let reopened = SqlStore::sqlite(&url).await.unwrap();
        assert!(
            reopened
                .find_token(&TokenKey::from_digest([7; 32]))
                .await
                .unwrap()
                .is_some()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("nested/db.sqlite"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
