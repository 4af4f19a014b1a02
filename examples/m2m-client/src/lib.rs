//! A service calling the example protected API as itself: client-credentials tokens from the
//! token service through [`scopegate_client`], one token shared by every call until shortly
//! before it expires, a refused one replaced once. See its README.
//!
//! Run with: `CLIENT_SECRET=svc-a-secret cargo run -p example-m2m-client -- --issuer
//! http://127.0.0.1:8080 --client-id svc-a`

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use scopegate_client::{AssertionAlgorithm, AssertionKey, BearerClient, TokenSource};
use tokio::task::JoinSet;

/// The settings, from arguments or the environment. The secret is never an argument (other
/// users of the machine could read it in the process list): `CLIENT_SECRET` or a file.
#[derive(Debug, Clone, Parser)]
#[command(about = "Call an API with client-credentials tokens from an OAuth2 token service")]
pub struct Config {
    /// The token service's issuer: its token endpoint is found by OpenID Connect discovery.
    #[arg(long, env = "ISSUER", required_unless_present = "token_endpoint")]
    pub issuer: Option<String>,
    /// The token endpoint, instead of discovering it from the issuer.
    #[arg(long, env = "TOKEN_ENDPOINT", conflicts_with = "issuer")]
    pub token_endpoint: Option<String>,
    /// The client's id.
    #[arg(long, env = "CLIENT_ID")]
    pub client_id: String,
    /// A file holding the client's secret (a final newline is ignored); else `CLIENT_SECRET`.
    #[arg(long, env = "CLIENT_SECRET_FILE", conflicts_with = "private_key_file")]
    pub client_secret_file: Option<PathBuf>,
    /// A PEM file holding the client's private key: authenticate with `private_key_jwt`
    /// (RFC 7523) instead of a secret.
    #[arg(long, env = "PRIVATE_KEY_FILE")]
    pub private_key_file: Option<PathBuf>,
    /// The private key's algorithm: ES256, ES384, RS256, PS256 or EdDSA.
    #[arg(long, env = "KEY_ALGORITHM", default_value = "ES256", value_parser = algorithm, requires = "private_key_file")]
    pub key_algorithm: AssertionAlgorithm,
    /// The `kid` of the key as the token service has it registered.
    #[arg(long, env = "KEY_ID", requires = "private_key_file")]
    pub key_id: Option<String>,
    /// Scopes to ask for, space-separated; none: the client's own.
    #[arg(long, env = "SCOPE")]
    pub scope: Option<String>,
    /// A resource (RFC 8707) the token is for, such as the API's identifier (repeatable).
    #[arg(long = "resource", env = "RESOURCE")]
    pub resources: Vec<String>,
    /// The API's URL to `GET`.
    #[arg(long, env = "API_URL", default_value = "http://127.0.0.1:3000/me")]
    pub api_url: String,
    /// How many calls to make in all; 0: until interrupted.
    #[arg(long, env = "CALLS", default_value_t = 10)]
    pub calls: u64,
    /// How many calls at once in each round.
    #[arg(long, env = "CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub concurrency: u64,
    /// The pause between rounds (`500ms`, `2s`, `1m`).
    #[arg(long, env = "INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

impl Config {
    /// The client secret: from [`client_secret_file`](Self::client_secret_file), else
    /// `CLIENT_SECRET` as `lookup` finds it (the environment, in `main`).
    ///
    /// # Errors
    /// A message naming the file that cannot be read, or the missing variable.
    pub fn client_secret(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let secret = match &self.client_secret_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|error| format!("CLIENT_SECRET_FILE {}: {error}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => lookup("CLIENT_SECRET").ok_or(
                "set CLIENT_SECRET, or CLIENT_SECRET_FILE (--client-secret-file) to a file holding it",
            )?,
        };
        if secret.is_empty() {
            return Err("the client secret is empty".to_owned());
        }
        Ok(secret)
    }

    /// How the client proves itself: its private key when
    /// [`private_key_file`](Self::private_key_file) is set, else its secret
    /// ([`client_secret`](Self::client_secret)).
    ///
    /// # Errors
    /// A message naming the key file that cannot be read or holds no usable key, or what
    /// [`client_secret`](Self::client_secret) says.
    pub fn credentials(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, String> {
        let Some(path) = &self.private_key_file else {
            return self.client_secret(lookup).map(Credentials::Secret);
        };
        let pem = std::fs::read(path)
            .map_err(|error| format!("PRIVATE_KEY_FILE {}: {error}", path.display()))?;
        let key = AssertionKey::from_pem(self.key_algorithm, &pem)
            .map_err(|error| format!("PRIVATE_KEY_FILE {}: {error}", path.display()))?;
        Ok(Credentials::PrivateKey(match &self.key_id {
            Some(kid) => key.with_kid(kid),
            None => key,
        }))
    }

    /// The token source these settings describe.
    ///
    /// # Errors
    /// The setting at fault, by name.
    pub fn token_source(&self, credentials: Credentials) -> Result<TokenSource, String> {
        let builder = TokenSource::builder().client_id(&self.client_id);
        let mut builder = match credentials {
            Credentials::Secret(secret) => builder.client_secret(secret),
            Credentials::PrivateKey(key) => builder.private_key_jwt(key),
        };
        if let Some(issuer) = &self.issuer {
            builder = builder.issuer(issuer);
        }
        if let Some(endpoint) = &self.token_endpoint {
            builder = builder.token_endpoint(endpoint);
        }
        if let Some(scope) = &self.scope {
            builder = builder.scope(scope);
        }
        for resource in &self.resources {
            builder = builder.resource(resource);
        }
        builder.build().map_err(|error| error.to_string())
    }
}

/// What the client proves itself with.
#[derive(Debug)]
pub enum Credentials {
    /// Its secret (`client_secret_basic`).
    Secret(String),
    /// Its private key (`private_key_jwt`).
    PrivateKey(AssertionKey),
}

/// `--key-algorithm`'s value.
fn algorithm(name: &str) -> Result<AssertionAlgorithm, String> {
    match name {
        "ES256" => Ok(AssertionAlgorithm::ES256),
        "ES384" => Ok(AssertionAlgorithm::ES384),
        "RS256" => Ok(AssertionAlgorithm::RS256),
        "PS256" => Ok(AssertionAlgorithm::PS256),
        "EdDSA" => Ok(AssertionAlgorithm::EdDSA),
        other => Err(format!(
            "{other:?}: one of ES256, ES384, RS256, PS256, EdDSA"
        )),
    }
}

/// How the calls went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Calls the API answered with a success.
    pub succeeded: u64,
    /// Calls the API refused or answered with an error.
    pub refused: u64,
    /// Calls that got no answer: no token could be obtained, or the API could not be reached.
    pub failed: u64,
}

impl Summary {
    /// Whether every call succeeded.
    #[must_use]
    pub fn all_succeeded(&self) -> bool {
        self.refused == 0 && self.failed == 0
    }
}

/// Makes the calls `config` asks for with tokens from `tokens`, logging each, until done or
/// until `stop` completes (between rounds).
///
/// # Errors
/// A message when the HTTP client cannot be built.
pub async fn run(
    config: &Config,
    tokens: TokenSource,
    stop: impl Future<Output = ()>,
) -> Result<Summary, String> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
    let api = BearerClient::new(http, tokens);
    tokio::pin!(stop);
    let mut summary = Summary::default();
    let mut made = 0;
    loop {
        let batch = match config.calls {
            0 => config.concurrency,
            total => config.concurrency.min(total - made),
        };
        let mut round = JoinSet::new();
        for n in made + 1..=made + batch {
            let (api, url) = (api.clone(), config.api_url.clone());
            round.spawn(async move { call(&api, &url, n).await });
        }
        made += batch;
        while let Some(outcome) = round.join_next().await {
            match outcome {
                Ok(Outcome::Succeeded) => summary.succeeded += 1,
                Ok(Outcome::Refused) => summary.refused += 1,
                Ok(Outcome::Failed) | Err(_) => summary.failed += 1,
            }
        }
        if config.calls != 0 && made >= config.calls {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = &mut stop => {
                tracing::info!("interrupted");
                break;
            }
        }
    }
    tracing::info!(
        succeeded = summary.succeeded,
        refused = summary.refused,
        failed = summary.failed,
        "done"
    );
    Ok(summary)
}

enum Outcome {
    Succeeded,
    Refused,
    Failed,
}

async fn call(api: &BearerClient, url: &str, n: u64) -> Outcome {
    match api.send(api.get(url)).await {
        Ok(response) => {
            let status = response.status();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = response.text().await.unwrap_or_default();
            if status.is_success() {
                tracing::info!(call = n, status = status.as_u16(), %body, "answered");
                Outcome::Succeeded
            } else {
                tracing::warn!(call = n, status = status.as_u16(), challenge, %body, "refused");
                Outcome::Refused
            }
        }
        Err(error) => {
            tracing::error!(call = n, error = %error.with_causes(), "no answer");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("m2m-client").chain(arguments.iter().copied()))
    }

    #[test]
    fn settings_come_from_arguments_with_defaults() {
        let config = parse(&["--issuer", "http://127.0.0.1:8080", "--client-id", "svc-a"]).unwrap();
        assert_eq!(config.api_url, "http://127.0.0.1:3000/me");
        assert_eq!((config.calls, config.concurrency), (10, 1));
        assert_eq!(config.interval, Duration::from_secs(1));
        let config = parse(&[
            "--token-endpoint",
            "http://127.0.0.1:8080/token",
            "--client-id",
            "svc-a",
            "--resource",
            "https://api.example.test",
            "--resource",
            "https://other.example.test",
            "--interval",
            "250ms",
        ])
        .unwrap();
        assert_eq!(config.resources.len(), 2);
        assert_eq!(config.interval, Duration::from_millis(250));
    }

    #[test]
    fn an_issuer_or_a_token_endpoint_is_required_not_both() {
        assert!(parse(&["--client-id", "svc-a"]).is_err());
        assert!(
            parse(&[
                "--issuer",
                "http://127.0.0.1:8080",
                "--token-endpoint",
                "http://127.0.0.1:8080/token",
                "--client-id",
                "svc-a",
            ])
            .is_err()
        );
        assert!(parse(&["--issuer", "x", "--client-id", "a", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn a_private_key_takes_the_secret_s_place_and_a_bad_one_is_named() {
        let base = ["--issuer", "http://127.0.0.1:8080", "--client-id", "svc-a"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert!(with(&["--client-secret-file", "s", "--private-key-file", "k"]).is_err());
        assert!(with(&["--private-key-file", "k", "--key-algorithm", "HS256"]).is_err());
        assert!(with(&["--key-id", "k1"]).is_err(), "a key id without a key");
        let config = with(&["--private-key-file", "k", "--key-algorithm", "EdDSA"]).unwrap();
        assert_eq!(config.key_algorithm, AssertionAlgorithm::EdDSA);

        let dir = std::env::temp_dir().join(format!("m2m-client-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key.pem");
        std::fs::write(&file, "not a key\n").unwrap();
        let config = Config {
            private_key_file: Some(file),
            ..config
        };
        // No secret is looked up once a key is given.
        let refused = config
            .credentials(|_| panic!("a secret looked up"))
            .unwrap_err();
        assert!(refused.contains("PRIVATE_KEY_FILE"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
        let unreadable = config.credentials(|_| None).unwrap_err();
        assert!(unreadable.contains("PRIVATE_KEY_FILE"), "{unreadable}");
    }

    #[test]
    fn the_secret_comes_from_a_file_or_the_environment() {
        let config = parse(&["--issuer", "http://127.0.0.1:8080", "--client-id", "svc-a"]).unwrap();
        assert_eq!(
            config.client_secret(|name| (name == "CLIENT_SECRET").then(|| "s".to_owned())),
            Ok("s".to_owned())
        );
        let missing = config.client_secret(|_| None).unwrap_err();
        assert!(missing.contains("CLIENT_SECRET"), "{missing}");
        let dir = std::env::temp_dir().join(format!("m2m-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let config = Config {
            client_secret_file: Some(file.clone()),
            ..config
        };
        assert_eq!(config.client_secret(|_| None), Ok("from-file".to_owned()));
        std::fs::remove_dir_all(&dir).unwrap();
        let unreadable = config.client_secret(|_| None).unwrap_err();
        assert!(unreadable.contains("CLIENT_SECRET_FILE"), "{unreadable}");
    }
}
