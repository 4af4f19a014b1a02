//! Who exists, judged alike on every path: the configuration file, `token-service user add` /
//! `client add` / `api add`, the admin API and the sign-up page all take and refuse the same
//! usernames, never let a client and a user share a subject, and give each scope one owner.
//! The database itself holds usernames unique without regard to case.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode, header};
use scopegate_token_service::config::Config;
use scopegate_token_service::directory::{Directory, DirectoryError};
use scopegate_token_service::grant::authorization_code::s256;
use scopegate_token_service::store;
use support::postgres::TestDatabase;
use support::*;

const SIGNUP_REDIRECT: &str = "http://127.0.0.1:3000/join-cb";
const PASSWORD: &str = "a long enough password";

/// The shared configuration, the admin clients, and a public client offering sign-up (no
/// required claims, so its form is a name and a password).
fn config_at(storage: &str) -> String {
    format!(
        r#"{}{ADMIN_CLIENTS}
[[clients]]
id = "join"
public = true
grants = ["authorization_code"]
redirect_uris = ["{SIGNUP_REDIRECT}"]
scopes = ["openid"]
self_signup = true
"#,
        config_text("http://127.0.0.1:8080", "ES256")
    )
    .replace(
        "storage = \"sqlite::memory:\"",
        &format!("storage = \"{storage}\""),
    )
}

struct Paths {
    service: TestService,
    config_file: std::path::PathBuf,
    admin_token: String,
}

impl Paths {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = format!("sqlite://{}/store.db", dir.path().display());
        let config = config_at(&storage);
        let config_file = dir.path().join("config.toml");
        std::fs::write(&config_file, &config).unwrap();
        let clock = Arc::new(scopegate_validator::MockClock::at_system_time());
        let state = TestService::open(&config, &storage, &clock).await;
        let service = TestService {
            state,
            clock,
            dir,
            url: storage,
        };
        let admin_token = service.access_token(ADMIN).await;
        Self {
            service,
            config_file,
            admin_token,
        }
    }

    fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_token-service"))
            .arg("--config")
            .arg(&self.config_file)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    async fn admin(&self, method: &str, path: &str, body: &serde_json::Value) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.admin_token),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.service.call(request).await
    }

    // One way each to create a user; `true` if it was created.

    fn by_cli(&self, username: &str) -> bool {
        self.cli(
            &["user", "add", "--username", username],
            &format!("{PASSWORD}\n"),
        )
        .status
        .success()
    }

    async fn by_admin(&self, username: &str) -> bool {
        let answer = self
            .admin(
                "POST",
                "/admin/users",
                &serde_json::json!({ "username": username, "password": PASSWORD }),
            )
            .await;
        match answer.status {
            StatusCode::CREATED => true,
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT => false,
            other => panic!("{username}: {other} {}", answer.text),
        }
    }

    async fn by_signup(&self, username: &str) -> bool {
        let query = format!(
            "response_type=code&client_id=join&redirect_uri={}&scope=openid&state=s&code_challenge={}&code_challenge_method=S256",
            form_encode(SIGNUP_REDIRECT),
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        );
        let page = get_with_cookies(&self.service, &format!("/signup?{query}"), &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let body = format!(
            "csrf={}&request={}&username={}&password={}&confirm={}",
            form_encode(&hidden(&page.text, "csrf")),
            form_encode(&hidden(&page.text, "request")),
            form_encode(username),
            form_encode(PASSWORD),
            form_encode(PASSWORD)
        );
        let request = Request::post("/signup")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie(&page, "scopegate_login").unwrap())
            .body(Body::from(body))
            .unwrap();
        let answer = self.service.call(request).await;
        match answer.status {
            StatusCode::SEE_OTHER => true,
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT => false,
            other => panic!("{username}: {other} {}", answer.text),
        }
    }

    fn by_config(username: &str) -> bool {
        let config = format!(
            "{}\n[[users]]\nusername = \"{}\"\npassword = \"whatever-password\"\n",
            config_at("sqlite::memory:"),
            username.replace('\\', "\\\\").replace('"', "\\\"")
        );
        Config::from_toml(&config).is_ok()
    }
}

/// Names every path must take, and names every path must refuse (by the rule alone).
const GOOD_NAMES: [&str; 4] = ["kim", "Lee.Smith", "ann-b_c", "zoe+tag@example.test"];
const BAD_NAMES: [&str; 7] = [
    "x",
    "ab",
    "has space",
    "ümlaut",
    "semi;colon",
    "quote\"d",
    "a-name-that-is-far-too-long-for-anyone-to-type-at-a-sign-in-prompt-ok",
];

#[tokio::test]
async fn usernames_are_taken_and_refused_alike_on_every_path() {
    for name in GOOD_NAMES {
        assert!(Paths::by_config(name), "config refused {name}");
    }
    for name in BAD_NAMES {
        assert!(!Paths::by_config(name), "config took {name}");
    }
    // Each path in a fresh service, so a name taken by one path does not decide the next.
    for path in ["cli", "admin", "signup"] {
        let paths = Paths::start().await;
        for name in GOOD_NAMES.iter().chain(BAD_NAMES.iter()) {
            let created = match path {
                "cli" => paths.by_cli(name),
                "admin" => paths.by_admin(name).await,
                _ => paths.by_signup(name).await,
            };
            assert_eq!(created, GOOD_NAMES.contains(name), "{path}: {name}");
        }
        let stored: Vec<String> = paths
            .service
            .state
            .store()
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|user| user.username)
            .collect();
        let mut expected: Vec<String> = GOOD_NAMES.iter().map(|name| (*name).to_owned()).collect();
        expected.sort();
        let mut stored_sorted = stored.clone();
        stored_sorted.sort();
        assert_eq!(stored_sorted, expected, "{path}");
    }
}

#[tokio::test]
async fn names_differing_by_case_alone_are_one_name_on_every_path() {
    let paths = Paths::start().await;
    // `jane` is configured; `kim` is created here first.
    assert!(paths.by_admin("kim").await);
    for taken in ["Jane", "JANE", "Kim", "KIM"] {
        assert!(!paths.by_cli(taken), "cli: {taken}");
        assert!(!paths.by_admin(taken).await, "admin: {taken}");
        assert!(!paths.by_signup(taken).await, "signup: {taken}");
    }
    // The configuration file: two users differing by case.
    let config = format!(
        "{}\n[[users]]\nusername = \"JANE\"\npassword = \"whatever-password\"\n",
        config_at("sqlite::memory:")
    );
    let error = Config::from_toml(&config).unwrap_err().to_string();
    assert!(error.contains("used twice"), "{error}");
}

#[tokio::test]
async fn clients_and_users_never_share_a_subject_on_any_path() {
    let paths = Paths::start().await;
    assert!(paths.by_admin("sam").await);
    let sam_sub = paths
        .service
        .state
        .store()
        .find_user_by_name("sam")
        .await
        .unwrap()
        .unwrap()
        .id;
    // A client may not take a user's name (configured or stored, any case) or `sub`.
    for id in ["jane", "Jane", "sam", "SAM", sam_sub.as_str()] {
        let answer = paths
            .admin(
                "POST",
                "/admin/clients",
                &serde_json::json!({ "id": id, "grants": ["client_credentials"], "scopes": ["akamai:social_profile:read"] }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CONFLICT, "{id}: {}", answer.text);
        assert_eq!(answer.json["field"], "id", "{}", answer.text);
        let cli = paths.cli(
            &[
                "client",
                "add",
                "--id",
                id,
                "--scope",
                "akamai:social_profile:read",
            ],
            "",
        );
        assert!(!cli.status.success(), "cli took client {id}");
        assert!(
            String::from_utf8_lossy(&cli.stderr).contains("--id"),
            "{cli:?}"
        );
    }
    // A user may not take a client's id.
    for id in ["svc-jwt", "admin", "join"] {
        assert!(!paths.by_cli(id), "cli: {id}");
        assert!(!paths.by_admin(id).await, "admin: {id}");
        assert!(!paths.by_signup(id).await, "signup: {id}");
    }
    // The configuration file: a user named like a client.
    let config = format!(
        "{}\n[[users]]\nusername = \"svc-jwt\"\npassword = \"whatever-password\"\n",
        config_at("sqlite::memory:")
    );
    let error = Config::from_toml(&config).unwrap_err().to_string();
    assert!(error.contains("share a subject"), "{error}");
    // So no client-credentials token carries a user's `sub`.
    let token = paths.service.token(JWT_CLIENT, "").await;
    let (_, claims) = jwt_parts(token["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "svc-jwt");
}

#[test]
fn the_configuration_gives_each_scope_one_owner() {
    for (api_scopes, owner) in [
        (
            "[\"akamai:social_profile:read\"]",
            "https://api.example.test",
        ),
        ("[\"other\"]", "none: plain"),
        ("[\"openid\"]", "token service"),
        ("[\"scopegate:clients:read\"]", "token service"),
        ("[\"ad:user_custom\"]", "token service"),
    ] {
        let config = format!(
            "{}\n[[apis]]\nid = \"https://third.example.test\"\nsecret = \"s\"\nscopes = {api_scopes}\n",
            config_at("sqlite::memory:")
        );
        let result = Config::from_toml(&config);
        if owner.starts_with("none") {
            assert!(result.is_ok(), "{api_scopes}: {:?}", result.err());
        } else {
            let error = result.unwrap_err().to_string();
            assert!(error.contains("apis[2].scopes[0]"), "{error}");
            assert!(error.contains(owner), "{error}");
        }
    }
}

// ---- the database: unique without regard to case -----------------------------------------

#[tokio::test]
async fn concurrent_creations_of_one_name_in_different_cases_make_one_user_on_every_backend() {
    for (backend, store, _keep) in backends().await {
        let config = Arc::new(Config::from_toml(&config_at("sqlite::memory:")).unwrap());
        let directory = Directory::new(config, Arc::clone(&store));
        let names = ["Robin", "robin", "ROBIN", "rObIn", "RoBiN", "robiN"];
        let mut creations = tokio::task::JoinSet::new();
        for name in names {
            let directory = directory.clone();
            creations.spawn(async move {
                directory
                    .create_user(name, PASSWORD, serde_json::Map::new(), 1)
                    .await
            });
        }
        let outcomes = creations.join_all().await;
        let created = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(created, 1, "{backend}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, Ok(_) | Err(DirectoryError::Taken { .. }))),
            "{backend}: {outcomes:?}"
        );
        assert_eq!(store.list_users().await.unwrap().len(), 1, "{backend}");
    }
}

#[tokio::test]
async fn the_store_itself_refuses_a_name_differing_by_case_on_every_backend() {
    for (backend, store, _keep) in backends().await {
        let first =
            scopegate_token_service::users::new_account("Robin", PASSWORD, Default::default(), 1)
                .await
                .unwrap();
        let second =
            scopegate_token_service::users::new_account("robin", PASSWORD, Default::default(), 1)
                .await
                .unwrap();
        store.insert_user(&first).await.unwrap();
        let refused = store.insert_user(&second).await;
        assert!(
            matches!(refused, Err(store::StoreError::Duplicate(_))),
            "{backend}: {refused:?}"
        );
    }
}

/// A database from before usernames ignored case, holding two that differ by case alone: the
/// index migration is undone and the pair written, as an older version could have.
async fn older_database_with_a_case_pair(url: &str) {
    let store = store::open(url).await.unwrap();
    drop(store);
    let hash = scopegate_token_service::secret::SecretHash::hash("a password");
    let pair_rows = format!(
        "INSERT INTO users (id, username, password_hash, attributes, created_at, updated_at) VALUES \
         ('s1', 'Jane', '{hash}', '{{}}', 1, 1), ('s2', 'jane', '{hash}', '{{}}', 1, 1), \
         ('s3', 'BOB', '{hash}', '{{}}', 1, 1), ('s4', 'bob', '{hash}', '{{}}', 1, 1)",
        hash = hash.as_str()
    );
    execute_all(
        url,
        &[
            "DROP INDEX users_by_lower_username",
            "DELETE FROM _sqlx_migrations WHERE version = 9",
            &pair_rows,
        ],
    )
    .await;
}

/// Runs `statements` on the SQLite or Postgres database at `url`, as an older version could have.
async fn execute_all(url: &str, statements: &[&str]) {
    use sqlx::Connection;
    if url.starts_with("sqlite") {
        let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap();
        }
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn an_older_database_with_names_differing_by_case_stops_the_upgrade_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!("sqlite://{}/store.db", dir.path().display());
    let database = TestDatabase::create().await;
    for url in [file.as_str(), database.url.as_str()] {
        older_database_with_a_case_pair(url).await;
        let error = store::open(url).await.unwrap_err().to_string();
        assert!(
            error.contains("`BOB` and `bob`") && error.contains("`Jane` and `jane`"),
            "{url}: {error}"
        );
        // Once one of each pair is renamed, it starts and holds the rule from then on.
        rename(url, &[("s2", "jane2"), ("s4", "bob2")]).await;
        let store = store::open(url).await.unwrap();
        assert_eq!(store.list_users().await.unwrap().len(), 4, "{url}");
        assert!(store.username_taken("JANE2").await.unwrap());
    }
}

async fn rename(url: &str, renames: &[(&str, &str)]) {
    let statements: Vec<String> = renames
        .iter()
        .map(|(id, name)| format!("UPDATE users SET username = '{name}' WHERE id = '{id}'"))
        .collect();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    execute_all(url, &statements).await;
}
