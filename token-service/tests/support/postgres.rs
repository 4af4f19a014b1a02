//! A fresh Postgres database per test, on the server named by `SCOPEGATE_TEST_POSTGRES_URL`
//! (default: the local `postgres://postgres@127.0.0.1:5432/test`). Tests fail loudly when it
//! cannot be reached: `.ci/run` starts it.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

const PREFIX: &str = "scopegate_t_";

fn admin_url() -> String {
    std::env::var("SCOPEGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    // The path starts at the first `/` after `scheme://`.
    let authority_start = base.find("://").map_or(0, |scheme| scheme + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |slash| authority_start + slash);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

async fn admin() -> PgConnection {
    let url = admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|error| {
        panic!(
            "cannot reach Postgres at {url} ({error}); start it or set SCOPEGATE_TEST_POSTGRES_URL"
        )
    })
}

/// A database created for one test and dropped when this is dropped.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let mut admin = admin().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Databases left by a test run that was killed: dropped after an hour.
        let stale: Vec<(String,)> =
            sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'scopegate_t_%'")
                .fetch_all(&mut admin)
                .await
                .unwrap();
        for (name,) in stale {
            let created = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok());
            if created.is_some_and(|created| created + 3600 < now) {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
        let name = format!("{PREFIX}{now}_{:016x}", rand_u64());
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        Self {
            url: with_database(&admin_url(), &name),
            name,
        }
    }
}

fn rand_u64() -> u64 {
    let bytes = scopegate_token_service::secret::random_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: the clean-up gets a thread and runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = admin().await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            });
        })
        .join();
    }
}
