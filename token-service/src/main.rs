//! The `token-service` command line: run the service and manage its clients and keys.
//!
//! Run with: `cargo run --release -p scopegate-token-service -- serve`

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use scopegate_token_service::config::{
    self, ApiSettings, ClientSettings, Config, ConfigError, ScopeSettings, Source,
};
use scopegate_token_service::directory::{Directory, DirectoryError};
use scopegate_token_service::http::observe;
use scopegate_token_service::keys::KeyRing;
use scopegate_token_service::scope_catalogue::Entry;
use scopegate_token_service::secret::SecretHash;
use scopegate_token_service::store;
use scopegate_token_service::telemetry::traces;
use scopegate_token_service::{State, rotation, users};

#[global_allocator]
static ALLOCATOR: scopegate_token_service::Allocator = scopegate_token_service::Allocator;

/// A compact OAuth2 / OpenID Connect authorization server.
///
/// Without --config it runs on the demo configuration built into the binary
/// (token-service/demo.toml in the repository).
#[derive(Debug, Parser)]
#[command(name = "token-service", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). Fields can be overridden with SCOPEGATE_ variables
    /// (SCOPEGATE_LISTEN=127.0.0.1:9000), nested ones with a double underscore
    /// (SCOPEGATE_SIGNING__ALGORITHM=ES256).
    #[arg(
        long,
        short,
        global = true,
        env = "SCOPEGATE_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Log format.
    #[arg(
        long,
        global = true,
        env = "SCOPEGATE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (stops gracefully on Ctrl-C or SIGTERM).
    Serve,
    /// Manage clients added at run time (configured clients live in the config file).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users added at run time (configured users live in the config file).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage APIs (resource servers that may introspect) added at run time.
    #[command(subcommand)]
    Api(ApiCommand),
    /// Manage claim scopes defined at run time (configured ones live in the config file).
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// Inspect and rotate signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read a secret from standard input and print its Argon2id hash, for `secret_hash` or
    /// `password_hash` in the config file.
    HashSecret,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Add a client; prints its generated secret once (only the hash is stored).
    Add(Box<ClientSettings>),
    /// List configured and stored clients (never their secrets).
    List,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; reads the password from standard input.
    Add {
        /// Login name.
        #[arg(long)]
        username: String,
        /// A claim or custom attribute, NAME=VALUE (repeatable); VALUE is read as JSON when it
        /// is JSON (true, 42, "x"), else as text: --attribute companyName=Bizcorp.
        #[arg(long = "attribute", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
    /// Change a stored user's password; reads the new password from standard input.
    SetPassword {
        /// Login name.
        #[arg(long)]
        username: String,
    },
    /// List configured and stored users (never their passwords).
    List,
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Register an API; prints its generated introspection secret once.
    Add(ApiSettings),
    /// List configured and stored APIs (never their secrets).
    List,
}

#[derive(Debug, Subcommand)]
enum ScopeCommand {
    /// Define a claim scope: the claims it releases and the user attributes they are read
    /// from. Clients that list it are granted it from their next token on.
    Add(ScopeSettings),
    /// List configured and stored claim scopes.
    List,
    /// Show one claim scope.
    Show {
        /// The scope.
        #[arg(long)]
        name: String,
    },
    /// Replace a stored claim scope's claims and --access-token (a scope is not renamed).
    Update(ScopeSettings),
    /// Delete a stored claim scope: no grant gives it any more, even to clients that still
    /// list it, and it releases no claim; tokens already issued stay valid until they expire.
    Remove {
        /// The scope.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List signing keys with their state (announced, active, retiring, retired).
    List,
    /// Add a new key: published at once, signing after the announce period, while the current
    /// key stays published until every token it signed has expired.
    Rotate {
        /// Sign with the new key at once (a compromised key); validators that cached the old
        /// key set refetch it when they meet the new kid.
        #[arg(long)]
        now: bool,
    },
}

/// An error for the user: printed as one line, exit code 1 (2 for configuration errors).
struct Failure {
    message: String,
    code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            message: error.to_string(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info,sqlx=warn`); with
/// `telemetry`'s OTLP endpoint, spans are exported as traces too (their own filter: every span
/// of the service, whatever `RUST_LOG` says). The returned exporter must be shut down at exit
/// to send the last spans.
fn init_logging(
    format: LogFormat,
    telemetry: Option<&config::Telemetry>,
) -> Result<Option<traces::Exporting>, Failure> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    let (spans, exporting) = match telemetry.map(traces::layer).transpose()?.flatten() {
        Some((layer, exporting)) => (Some(layer), Some(exporting)),
        None => (None, None),
    };
    tracing_subscriber::registry().with(logs).with(spans).init();
    Ok(exporting)
}

/// The configuration, and where it came from (for [`announce`]).
fn load_config(path: Option<&PathBuf>) -> Result<(Config, String), Failure> {
    let source = path.map_or(Source::Demo, |path| Source::File(path.clone()));
    let config = Config::load(&source).map_err(|error| Failure {
        message: format!("configuration ({}): {error}", config::describe(&source)),
        code: 2,
    })?;
    Ok((config, config::describe(&source)))
}

/// Says where the configuration came from, and warns of secrets written in clear.
fn announce(config: &Config, source: &str) {
    tracing::info!(source, "configuration loaded");
    for field in &config.plain_secret_fields {
        tracing::warn!(field = %field, "plain secret in the configuration; prefer `{field}_hash` from `token-service hash-secret`");
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let format = cli.log_format;
    let load = |path: Option<&PathBuf>| -> Result<Config, Failure> {
        let (config, source) = load_config(path)?;
        init_logging(format, None)?;
        announce(&config, &source);
        Ok(config)
    };
    match cli.command {
        Command::HashSecret => {
            init_logging(format, None)?;
            hash_secret()
        }
        Command::Serve => {
            let (config, source) = load_config(cli.config.as_ref())?;
            let exporting = init_logging(format, Some(&config.telemetry))?;
            announce(&config, &source);
            let served = serve(config).await;
            if let Some(exporting) = exporting {
                exporting.shutdown();
            }
            served
        }
        Command::Client(command) => {
            let config = load(cli.config.as_ref())?;
            match command {
                ClientCommand::Add(add) => add_client(&config, *add).await,
                ClientCommand::List => list_clients(&config).await,
            }
        }
        Command::User(command) => {
            let config = load(cli.config.as_ref())?;
            match command {
                UserCommand::Add {
                    username,
                    attributes,
                } => add_user(&config, &username, &attributes).await,
                UserCommand::SetPassword { username } => set_password(&config, &username).await,
                UserCommand::List => list_users(&config).await,
            }
        }
        Command::Api(command) => {
            let config = load(cli.config.as_ref())?;
            match command {
                ApiCommand::Add(settings) => add_api(&config, settings).await,
                ApiCommand::List => list_apis(&config).await,
            }
        }
        Command::Scope(command) => {
            let config = load(cli.config.as_ref())?;
            match command {
                ScopeCommand::Add(settings) => add_scope(&config, settings).await,
                ScopeCommand::List => list_scopes(&config).await,
                ScopeCommand::Show { name } => show_scope(&config, &name).await,
                ScopeCommand::Update(settings) => update_scope(&config, settings).await,
                ScopeCommand::Remove { name } => remove_scope(&config, &name).await,
            }
        }
        Command::Keys(command) => {
            let config = load(cli.config.as_ref())?;
            match command {
                KeysCommand::List => list_keys(&config).await,
                KeysCommand::Rotate { now } => rotate_keys(&config, now).await,
            }
        }
    }
}

async fn serve(config: Config) -> Result<(), Failure> {
    let listen = config.listen;
    let issuer = config.issuer.clone();
    // Before anything records: a metric recorded earlier would be lost.
    observe::start_metrics(&config.telemetry).await?;
    let state = State::start(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    tracing::info!(%listen, %issuer, "token service ready");
    scopegate_token_service::http::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// One line from standard input (prompting when it is a terminal), without its line end.
fn read_secret(prompt: &str) -> Result<String, Failure> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt} (input is shown): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(format!("no {prompt} on standard input").into());
    }
    Ok(secret)
}

fn hash_secret() -> Result<(), Failure> {
    let secret = read_secret("secret")?;
    println!("{}", SecretHash::hash(&secret).as_str());
    Ok(())
}

async fn add_user(config: &Config, username: &str, attributes: &[String]) -> Result<(), Failure> {
    // The name is checked before a password is asked for; `create_user` checks it again.
    users::check_new_username(username).map_err(|reason| format!("--username: {reason}"))?;
    let mut claims = serde_json::Map::new();
    for attribute in attributes {
        let Some((name, value)) = attribute
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
        else {
            return Err(format!("--attribute `{attribute}`: write NAME=VALUE").into());
        };
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        claims.insert(name.to_owned(), value);
    }
    let password = read_secret("password")?;
    let record = directory(config)
        .await?
        .create_user(username, &password, claims, now())
        .await
        .map_err(directory_error(&["user", "add"]))?;
    println!("user {username} added (sub {})", record.id);
    Ok(())
}

/// The users, clients and APIs of `config` and its store.
async fn directory(config: &Config) -> Result<Directory, Failure> {
    let store = store::open(&config.storage).await?;
    Ok(Directory::new(std::sync::Arc::new(config.clone()), store))
}

/// A use case's refusal, with the command-line flag for a field at fault.
/// A use case's refusal from the command `token-service {command}`, naming the flag its field
/// came from.
fn directory_error(command: &'static [&'static str]) -> impl Fn(DirectoryError) -> Failure {
    move |error| match error {
        DirectoryError::Invalid(error) => flag_error(command, error),
        DirectoryError::Clash { field, reason } => {
            flag_error(command, ConfigError::Invalid { field, reason })
        }
        other => other.into(),
    }
}

async fn set_password(config: &Config, username: &str) -> Result<(), Failure> {
    let directory = directory(config).await?;
    let users = directory.users();
    // Refused before a password is asked for that could not be used.
    match users.find(username).await? {
        None => return Err(users::PasswordError::Unknown(username.to_owned()).into()),
        Some(user) if user.configured => {
            return Err(users::PasswordError::Configured(username.to_owned()).into());
        }
        Some(_) => {}
    }
    let password = read_secret("new password")?;
    users.set_password(username, &password, None, now()).await?;
    println!("password of {username} changed; their sessions are ended");
    Ok(())
}

async fn list_users(config: &Config) -> Result<(), Failure> {
    let store = store::open(&config.storage).await?;
    println!(
        "{:<24} {:<24} {:<7} attributes",
        "username", "sub", "source"
    );
    for user in &config.users {
        let names: Vec<&str> = user.attributes.keys().map(String::as_str).collect();
        println!(
            "{:<24} {:<24} {:<7} {}",
            user.username,
            user.username,
            "config",
            names.join(",")
        );
    }
    for record in store.list_users().await? {
        let names: Vec<&str> = record.attributes.keys().map(String::as_str).collect();
        println!(
            "{:<24} {:<24} {:<7} {}",
            record.username,
            record.id,
            "store",
            names.join(",")
        );
    }
    Ok(())
}

/// `client add`: its flags are the members of [`ClientSettings`] (a `[[clients]]` entry).
async fn add_client(config: &Config, new: ClientSettings) -> Result<(), Failure> {
    let (record, secret) = directory(config)
        .await?
        .register_client(new, now())
        .await
        .map_err(directory_error(&["client", "add"]))?;
    println!("client_id:     {}", record.id());
    match secret {
        Some(secret) => {
            println!("client_secret: {}", secret.expose());
            println!("(shown once: only its hash is stored)");
        }
        None if record.keys.is_some() => {
            println!("authenticates with its keys (private_key_jwt): no secret");
        }
        None => println!("public client: no secret"),
    }
    Ok(())
}

async fn list_clients(config: &Config) -> Result<(), Failure> {
    let store = store::open(&config.storage).await?;
    println!(
        "{:<24} {:<7} {:<7} {:<40} scopes",
        "client_id", "source", "format", "grants"
    );
    let stored = store.list_clients().await?;
    for (client, source) in config
        .clients
        .iter()
        .map(|client| (client, "config"))
        .chain(stored.iter().map(|client| (client, "store")))
    {
        let grants: Vec<&str> = client
            .settings
            .grants
            .iter()
            .map(|grant| grant.as_str())
            .collect();
        println!(
            "{:<24} {:<7} {:<7} {:<40} {}",
            client.id(),
            source,
            client.settings.token_format.as_str(),
            grants.join(","),
            client.allowed
        );
    }
    Ok(())
}

/// `api add`: its flags are the members of [`ApiSettings`] (an `[[apis]]` entry).
async fn add_api(config: &Config, settings: ApiSettings) -> Result<(), Failure> {
    let (api, secret) = directory(config)
        .await?
        .register_api(settings, now())
        .await
        .map_err(directory_error(&["api", "add"]))?;
    println!("api id:        {}", api.id);
    match secret {
        Some(secret) => {
            println!("client_secret: {}", secret.expose());
            println!(
                "(shown once: only its hash is stored; use it to authenticate at /introspect)"
            );
        }
        None => println!("authenticates with its keys (private_key_jwt): no secret"),
    }
    Ok(())
}

async fn list_apis(config: &Config) -> Result<(), Failure> {
    let store = store::open(&config.storage).await?;
    println!("{:<40} {:<7} scopes", "id", "source");
    let stored = store.list_apis().await?;
    for (api, source) in config
        .apis
        .iter()
        .map(|api| (api, "config"))
        .chain(stored.iter().map(|api| (api, "store")))
    {
        let scopes: Vec<&str> = api.scopes.iter().map(|scope| scope.as_str()).collect();
        println!("{:<40} {:<7} {}", api.id, source, scopes.join(" "));
    }
    Ok(())
}

/// `scope add`: its flags are the members of [`ScopeSettings`] (a `[[scopes]]` entry).
async fn add_scope(config: &Config, settings: ScopeSettings) -> Result<(), Failure> {
    let stored = directory(config)
        .await?
        .create_scope(settings, now())
        .await
        .map_err(directory_error(&["scope", "add"]))?;
    println!("scope {} defined", stored.scope.name);
    print_stored_scope(&stored);
    Ok(())
}

/// `scope update`: the same flags as `scope add`; they replace the definition.
async fn update_scope(config: &Config, settings: ScopeSettings) -> Result<(), Failure> {
    let name = settings.name.clone();
    let stored = directory(config)
        .await?
        .update_scope(&name, settings, now())
        .await
        .map_err(directory_error(&["scope", "update"]))?;
    println!("scope {name} changed");
    print_stored_scope(&stored);
    Ok(())
}

async fn remove_scope(config: &Config, name: &str) -> Result<(), Failure> {
    directory(config)
        .await?
        .delete_scope(name, now())
        .await
        .map_err(directory_error(&["scope", "remove"]))?;
    println!("scope {name} deleted: no client is granted it any more");
    Ok(())
}

/// `claim=attribute,…`
fn claims_text(entry: &Entry<'_>) -> String {
    let pairs: Vec<String> = entry
        .scope
        .claims
        .iter()
        .map(|(claim, attribute)| format!("{claim}={attribute}"))
        .collect();
    pairs.join(",")
}

async fn list_scopes(config: &Config) -> Result<(), Failure> {
    let definitions = directory(config).await?.scopes().await?;
    println!(
        "{:<32} {:<7} {:<12} claims",
        "scope", "source", "access_token"
    );
    for entry in definitions.entries() {
        let source = match entry.source {
            scopegate_token_service::scope_catalogue::ScopeSource::Configuration => "config",
            scopegate_token_service::scope_catalogue::ScopeSource::Store => "store",
        };
        println!(
            "{:<32} {:<7} {:<12} {}",
            entry.scope.name,
            source,
            entry.scope.access_token,
            claims_text(&entry)
        );
    }
    Ok(())
}

async fn show_scope(config: &Config, name: &str) -> Result<(), Failure> {
    let definitions = directory(config).await?.scopes().await?;
    let entry = definitions
        .find(name)
        .ok_or_else(|| format!("no scope `{name}`"))?;
    print_scope(&entry);
    Ok(())
}

/// A scope the store holds, as `scope add` and `scope update` leave it.
fn print_stored_scope(stored: &scopegate_token_service::store::StoredScope) {
    print_scope(&Entry {
        scope: &stored.scope,
        source: scopegate_token_service::scope_catalogue::ScopeSource::Store,
        created_at: Some(stored.created_at),
        updated_at: Some(stored.updated_at),
    });
}

fn print_scope(entry: &Entry<'_>) {
    println!("name:         {}", entry.scope.name);
    println!("source:       {}", entry.source.as_str());
    println!("access_token: {}", entry.scope.access_token);
    println!("claims:       {}", claims_text(entry));
    if !entry.scope.reads_attributes() {
        println!("claim_source: {}", entry.scope.source);
    }
    if let (Some(created), Some(updated)) = (entry.created_at, entry.updated_at) {
        println!("created:      {}", format_time(created));
        println!("updated:      {}", format_time(updated));
    }
}

/// A registration error with the command-line flag for its field (`scopes[1]` → `--scope`).
/// A rule broken by a flag of `token-service {command}`: `--scope: …` for field `scopes[1]`
/// (clap names each flag's argument after the field it fills).
fn flag_error(command: &[&str], error: ConfigError) -> Failure {
    use clap::CommandFactory;
    match error {
        ConfigError::Invalid { field, reason } => {
            let member = field.split(['[', '.']).next().unwrap_or_default();
            let arguments = command.iter().try_fold(Cli::command(), |parent, name| {
                parent.find_subcommand(name).cloned()
            });
            let flag = arguments
                .as_ref()
                .and_then(|arguments| {
                    arguments
                        .get_arguments()
                        .find(|argument| argument.get_id() == member)
                })
                .and_then(|argument| argument.get_long())
                .map_or_else(|| member.to_owned(), |long| format!("--{long}"));
            format!("{flag}: {reason}").into()
        }
        other => other.into(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn format_time(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
        .to_string()
}

async fn list_keys(config: &Config) -> Result<(), Failure> {
    let state = State::start(config.clone()).await?;
    let ring: std::sync::Arc<KeyRing> = state.keys().clone();
    let at = now();
    println!(
        "{:<24} {:<6} {:<10} {:<22} signs from",
        "kid", "alg", "state", "created"
    );
    let stored = state.store().list_keys().await?;
    for key in ring.all() {
        let created = stored
            .iter()
            .find(|stored| stored.kid == key.key.kid())
            .map_or(0, |stored| stored.created_at);
        println!(
            "{:<24} {:<6} {:<10} {:<22} {}",
            key.key.kid(),
            key.key.algorithm().as_str(),
            ring.state(key, at).as_str(),
            format_time(created),
            format_time(key.activates_at)
        );
    }
    Ok(())
}

async fn rotate_keys(config: &Config, immediately: bool) -> Result<(), Failure> {
    // Through the state: it refuses to start without the keys the stored ones need.
    let state = State::start(config.clone()).await?;
    let store = state.store();
    let newest = store.list_keys().await?.last().map(|key| key.kid.clone());
    let created_at = now();
    let activates_at = if immediately {
        created_at
    } else {
        created_at + config.signing.announce_period.as_secs()
    };
    let Some(added) = rotation::add_key(
        &**store,
        &config.encryption,
        config.signing.algorithm,
        newest.as_deref(),
        created_at,
        activates_at,
    )
    .await?
    else {
        return Err(Failure::from(
            "another rotation added a key at the same moment; run `keys list` and try again",
        ));
    };
    println!(
        "new {} key {}: published now, signs from {}",
        config.signing.algorithm.as_str(),
        added.kid,
        format_time(activates_at)
    );
    println!(
        "running instances pick it up within {}; the current key stays published until its tokens expire",
        humantime::format_duration(config.signing.key_reload_interval)
    );
    Ok(())
}
