//! The `token-service` binary's commands, run as a user would run them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use scopegate_token_service::secret::SecretHash;
use scopegate_validator::MockClock;
use support::*;

struct Cli {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    storage: String,
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = format!("sqlite://{}/cli.db", dir.path().display());
        let config = dir.path().join("config.toml");
        let text = config_text("http://127.0.0.1:8080", "ES256").replace(
            "storage = \"sqlite::memory:\"",
            &format!("storage = \"{storage}\""),
        );
        // A claim source scopes defined here may read from.
        let text = format!(
            "{text}\n[[claim_sources]]\nname = \"hr-directory\"\nurl = \"https://hr.example.test/{{sub}}\"\n"
        );
        std::fs::write(&config, text).unwrap();
        Self {
            dir,
            config,
            storage,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_token-service"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn client_add_prints_the_secret_once_and_the_client_gets_tokens() {
    let cli = Cli::new();
    let output = cli.run(&[
        "client",
        "add",
        "--id",
        "batch-job",
        "--scope",
        "akamai:social_profile:read",
        "--format",
        "opaque",
        "--ttl",
        "5m",
        "--audience",
        API,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    let secret = text
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(secret.len(), 43);

    let listing = stdout(&cli.run(&["client", "list"]));
    assert!(listing.contains("batch-job"), "{listing}");
    assert!(listing.contains("svc-jwt"), "{listing}");
    assert!(!listing.contains(&secret), "never shows secrets");

    // The service knows the client from the store.
    let clock = Arc::new(MockClock::at_system_time());
    let config = std::fs::read_to_string(&cli.config).unwrap();
    let service = TestService {
        state: TestService::open(&config, &cli.storage, &clock).await,
        clock,
        url: cli.storage.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let token = service.token(("batch-job", &secret), "").await;
    assert_eq!(token["expires_in"], 300);
    assert_eq!(token["scope"], "akamai:social_profile:read");
    let answer = service
        .post(
            "/token",
            Some(("batch-job", "wrong")),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(answer.status, 401);

    // The same id again is refused, as is an id from the configuration.
    for id in ["batch-job", "svc-jwt"] {
        let output = cli.run(&["client", "add", "--id", id, "--scope", "a:b:read"]);
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("exists"),
            "{id}"
        );
    }
    drop(cli.dir);
}

#[tokio::test]
async fn api_add_registers_an_api_that_may_introspect_its_scopes() {
    let cli = Cli::new();
    let output = cli.run(&[
        "api",
        "add",
        "--id",
        "https://reports.example.test",
        "--scope",
        "other:report",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    let secret = text
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .unwrap()
        .trim()
        .to_owned();
    let listing = stdout(&cli.run(&["api", "list"]));
    assert!(
        listing.contains("https://reports.example.test"),
        "{listing}"
    );
    assert!(!listing.contains(&secret));

    let clock = Arc::new(MockClock::at_system_time());
    let config = std::fs::read_to_string(&cli.config).unwrap();
    let service = TestService {
        state: TestService::open(&config, &cli.storage, &clock).await,
        clock,
        url: cli.storage.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    // The client has no configured audience: the stored API owning other:report becomes one.
    let added = cli.run(&[
        "client",
        "add",
        "--id",
        "reporter",
        "--format",
        "opaque",
        "--scope",
        "other:report:read other:thing:read",
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let reporter_secret = stdout(&added)
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .unwrap()
        .trim()
        .to_owned();
    let token = service
        .token(
            ("reporter", &reporter_secret),
            "&scope=other:report:read other:thing:read",
        )
        .await;
    let token = token["access_token"].as_str().unwrap();
    let reports = ("https://reports.example.test", secret.as_str());
    let answer = service.introspect(reports, token).await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    assert_eq!(answer.json["scope"], "other:report:read");
    assert!(
        answer.json["aud"]
            .as_array()
            .unwrap()
            .iter()
            .any(|aud| aud == "https://reports.example.test")
    );
    let wrong = service
        .introspect(("https://reports.example.test", "wrong"), token)
        .await;
    assert_eq!(wrong.status, 401);
    let duplicate = cli.run(&[
        "api",
        "add",
        "--id",
        "https://reports.example.test",
        "--scope",
        "x:y",
    ]);
    assert!(!duplicate.status.success());
    // One owner per scope: another API's is refused, naming the flag.
    let overlapping = cli.run(&[
        "api",
        "add",
        "--id",
        "https://thief.example.test",
        "--scope",
        "other:thing:read",
    ]);
    assert!(!overlapping.status.success());
    let error = String::from_utf8_lossy(&overlapping.stderr);
    assert!(
        error.contains("--scope") && error.contains(OTHER_API),
        "{error}"
    );
}

#[test]
fn client_add_refuses_bad_input() {
    let cli = Cli::new();
    for (args, flag) in [
        (
            vec!["client", "add", "--id", "x", "--scope", "bad\"scope"],
            "--scope",
        ),
        (vec!["client", "add", "--id", "has space"], "--id"),
        (vec!["client", "add", "--id", "x", "--ttl", "3d"], "--ttl"),
        (vec!["client", "add", "--id", "x", "--public"], "--grant"),
        (
            vec!["client", "add", "--id", "x", "--grant", "implicit"],
            "--grant",
        ),
        (
            vec!["client", "add", "--id", "x", "--required-claim", "email"],
            "--required-claim",
        ),
        (
            vec![
                "client",
                "add",
                "--id",
                "x",
                "--scope",
                "a:b:read",
                "--default-scope",
                "c:d:read",
            ],
            "--default-scope",
        ),
    ] {
        let output = cli.run(&args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_default();
        assert!(
            error.contains(flag),
            "{args:?} should name {flag}: {stderr}"
        );
    }
    let listing = stdout(&cli.run(&["client", "list"]));
    assert!(
        !listing.lines().any(|line| line.starts_with("x ")),
        "a refused client was stored: {listing}"
    );
}

#[test]
fn keys_list_and_rotate() {
    let cli = Cli::new();
    let first = stdout(&cli.run(&["keys", "list"]));
    assert_eq!(first.lines().count(), 2, "{first}");
    assert!(
        first.contains("ES256") && first.contains("active"),
        "{first}"
    );
    let rotated = cli.run(&["keys", "rotate"]);
    assert!(rotated.status.success());
    assert!(stdout(&rotated).contains("published now, signs from"));
    let listing = stdout(&cli.run(&["keys", "list"]));
    assert_eq!(listing.lines().count(), 3, "{listing}");
    assert!(listing.contains("announced"), "{listing}");
    let now = cli.run(&["keys", "rotate", "--now"]);
    assert!(now.status.success());
    let listing = stdout(&cli.run(&["keys", "list"]));
    assert!(listing.contains("retiring"), "{listing}");
}

#[test]
fn hash_secret_reads_stdin_and_prints_an_argon2id_hash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_token-service"))
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret value\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = SecretHash::parse(stdout(&output).trim()).unwrap();
    assert!(hash.verify("s3cret value"));
    assert!(!hash.verify("s3cret value\n"));
}

#[test]
fn a_bad_config_fails_at_start_naming_the_field() {
    let cli = Cli::new();
    let text = std::fs::read_to_string(&cli.config)
        .unwrap()
        .replace("access_token_ttl = \"60m\"", "access_token_ttl = \"sixty\"");
    std::fs::write(&cli.config, text).unwrap();
    let output = cli.run(&["serve"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("defaults.access_token_ttl"), "{stderr}");
}

#[test]
fn environment_overrides_the_file() {
    let cli = Cli::new();
    let output = Command::new(env!("CARGO_BIN_EXE_token-service"))
        .arg("--config")
        .arg(&cli.config)
        .args(["keys", "rotate"])
        .env("SCOPEGATE_SIGNING__ALGORITHM", "EdDSA")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout(&output).contains("new EdDSA key"));
    let output = Command::new(env!("CARGO_BIN_EXE_token-service"))
        .arg("--config")
        .arg(&cli.config)
        .arg("serve")
        .env("SCOPEGATE_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`listen`"));
}

#[test]
fn help_names_every_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_token-service"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&output);
    for command in ["serve", "client", "keys", "hash-secret", "--config"] {
        assert!(help.contains(command), "{command}: {help}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_token-service"))
        .args(["client", "add", "--help"])
        .output()
        .unwrap();
    let help = stdout(&output);
    for option in ["--id", "--scope", "--format", "--ttl", "--audience"] {
        assert!(help.contains(option), "{option}: {help}");
    }
}

impl Cli {
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_token-service"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

#[tokio::test]
async fn user_add_and_set_password_store_argon2id_hashes_the_service_accepts() {
    let cli = Cli::new();
    let added = cli.run_with_stdin(
        &[
            "user",
            "add",
            "--username",
            "sam",
            "--attribute",
            "companyName=Bizcorp",
            "--attribute",
            "email_verified=true",
        ],
        "first password 1\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let listing = stdout(&cli.run(&["user", "list"]));
    assert!(
        listing.contains("sam") && listing.contains("companyName"),
        "{listing}"
    );
    assert!(!listing.contains("first password"), "{listing}");

    let clock = Arc::new(MockClock::at_system_time());
    let config = std::fs::read_to_string(&cli.config).unwrap();
    let state = TestService::open(&config, &cli.storage, &clock).await;
    let users = state.users();
    let sam = users
        .authenticate(state.secrets(), "sam", "first password 1")
        .await
        .unwrap()
        .expect("the right password signs in");
    assert_eq!(sam.attributes["companyName"], "Bizcorp");
    assert_eq!(sam.attributes["email_verified"], true);
    assert_ne!(sam.id, "sam", "stored users get a random sub");
    assert!(
        users
            .authenticate(state.secrets(), "sam", "wrong")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users
            .authenticate(state.secrets(), "nobody", "first password 1")
            .await
            .unwrap()
            .is_none()
    );

    let changed = cli.run_with_stdin(
        &["user", "set-password", "--username", "sam"],
        "second password 2\n",
    );
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    assert!(
        users
            .authenticate(state.secrets(), "sam", "first password 1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users
            .authenticate(state.secrets(), "sam", "second password 2")
            .await
            .unwrap()
            .is_some()
    );

    // Refusals: a short password, a duplicate, an unknown user, a configured user.
    for (args, stdin) in [
        (vec!["user", "add", "--username", "tom"], "short\n"),
        (
            vec!["user", "add", "--username", "sam"],
            "long enough password\n",
        ),
        (
            vec!["user", "set-password", "--username", "nobody"],
            "long enough password\n",
        ),
        (
            vec!["user", "add", "--username", "x", "--attribute", "=v"],
            "long enough password\n",
        ),
    ] {
        let output = cli.run_with_stdin(&args, stdin);
        assert!(!output.status.success(), "{args:?}");
    }
}

#[tokio::test]
async fn scope_add_list_show_update_and_remove_define_claim_scopes_the_service_follows() {
    let cli = Cli::new();
    let run = |args: &[&str]| {
        let output = cli.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout(&output)
    };
    let listing = run(&["scope", "list"]);
    let configured = listing
        .lines()
        .find(|line| line.starts_with("ad:user_custom:read "))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        configured.contains(" config ") && configured.ends_with("company_name=companyName"),
        "{configured}"
    );

    let added = run(&[
        "scope",
        "add",
        "--name",
        "hr:department:read",
        "--claim",
        "department=dept",
        "--claim",
        "cost_centre=costCentre",
        "--access-token",
    ]);
    assert!(
        added.contains("scope hr:department:read defined"),
        "{added}"
    );
    let shown = run(&["scope", "show", "--name", "hr:department:read"]);
    for line in [
        "name:         hr:department:read",
        "source:       store",
        "access_token: true",
        "claims:       cost_centre=costCentre,department=dept",
    ] {
        assert!(shown.contains(line), "{line}: {shown}");
    }
    let listing = run(&["scope", "list"]);
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with("hr:department:read ")
                && line.contains(" store ")
                && line.ends_with("cost_centre=costCentre,department=dept")),
        "{listing}"
    );

    // A service on the same store knows it; it learns of a change made elsewhere (here, by
    // another process) within the catalogue's lifetime.
    let clock = Arc::new(MockClock::at_system_time());
    let config = std::fs::read_to_string(&cli.config).unwrap();
    let service = TestService {
        state: TestService::open(&config, &cli.storage, &clock).await,
        clock,
        url: cli.storage.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let supported = |answer: Answer| answer.json["scopes_supported"].to_string();
    let discovery = supported(service.get("/.well-known/openid-configuration").await);
    assert!(discovery.contains("\"hr:department:read\""), "{discovery}");

    let updated = run(&[
        "scope",
        "update",
        "--name",
        "hr:department:read",
        "--claim",
        "division=dept",
        "--claim-source",
        "hr-directory",
    ]);
    assert!(
        updated.contains("scope hr:department:read changed"),
        "{updated}"
    );
    let shown = run(&["scope", "show", "--name", "hr:department:read"]);
    assert!(shown.contains("claims:       division=dept"), "{shown}");
    assert!(shown.contains("claim_source: hr-directory"), "{shown}");
    assert!(shown.contains("access_token: false"), "{shown}");

    let removed = run(&["scope", "remove", "--name", "hr:department:read"]);
    assert!(removed.contains("deleted"), "{removed}");
    let listing = run(&["scope", "list"]);
    assert!(!listing.contains("hr:department:read"), "{listing}");
    let discovery = supported(service.get("/.well-known/openid-configuration").await);
    assert!(
        discovery.contains("\"hr:department:read\""),
        "cached: {discovery}"
    );
    service.advance(scopegate_token_service::clients::STORED_TTL);
    let discovery = supported(service.get("/.well-known/openid-configuration").await);
    assert!(!discovery.contains("\"hr:department:read\""), "{discovery}");
}

#[test]
fn scope_commands_refuse_bad_input_naming_the_flag_and_leave_the_file_s_scopes_alone() {
    let cli = Cli::new();
    let before = stdout(&cli.run(&["scope", "list"]));
    for (args, expected) in [
        (vec!["scope", "add", "--name", "bad scope"], vec!["--name"]),
        (vec!["scope", "add", "--name", "openid"], vec!["--name"]),
        (vec!["scope", "add"], vec!["--name", "required"]),
        (
            vec![
                "scope",
                "add",
                "--name",
                "a:b:read",
                "--claim",
                "sub=employeeId",
                "--access-token",
            ],
            vec!["--claim", "`sub`"],
        ),
        (
            vec!["scope", "add", "--name", "a:b:read", "--claim", "nothing"],
            vec!["--claim", "CLAIM=ATTRIBUTE"],
        ),
        (
            vec!["scope", "add", "--name", "akamai:social_profile:read"],
            vec!["--name", API],
        ),
        (
            vec!["scope", "add", "--name", "ad:user_custom:read"],
            vec!["configuration file"],
        ),
        (
            vec!["scope", "update", "--name", "ad:user_custom:read"],
            vec!["configuration file"],
        ),
        (
            vec!["scope", "remove", "--name", "ad:user_custom:read"],
            vec!["configuration file"],
        ),
        (
            vec!["scope", "update", "--name", "hr:none:read"],
            vec!["no scope `hr:none:read`"],
        ),
        (
            vec!["scope", "remove", "--name", "hr:none:read"],
            vec!["no scope `hr:none:read`"],
        ),
        (
            vec!["scope", "show", "--name", "hr:none:read"],
            vec!["no scope `hr:none:read`"],
        ),
    ] {
        let output = cli.run(&args);
        assert!(!output.status.success(), "{args:?}");
        let error = String::from_utf8_lossy(&output.stderr);
        for part in expected {
            assert!(error.contains(part), "{args:?}: {part} not in {error}");
        }
    }
    assert_eq!(stdout(&cli.run(&["scope", "list"])), before);
}
