//! What an operator sees (issue 20): the token service and the example API, each a process with
//! its metrics listener on, scraped by a real Prometheus server; every query of the dashboard in
//! `docs/dashboards/scopegate.json` and every alert of `docs/metrics.md` is run against it, and
//! the panels this traffic feeds must show data.
//!
//! Needs Prometheus (Debian's `prometheus` package): `SCOPEGATE_TEST_PROMETHEUS` names its
//! binary (`.ci/run` installs it and sets it). Ignored by a plain `cargo test`; run without it,
//! the test fails rather than pretending to pass.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::node::{self, Node, free_port};
use serde_json::Value;

const API_ID: &str = "https://api.example.test";
const API_SECRET: &str = "api-secret-for-metrics";
const CLIENT: (&str, &str) = ("svc", "svc-secret");
const OPAQUE_CLIENT: (&str, &str) = ("svc-opaque", "svc-opaque-secret");

/// The panels this test's traffic must fill (the others may rightly be empty: errors, stale
/// key sets, a revocation stream the API does not read, …).
const PANELS_WITH_DATA: [&str; 14] = [
    "Requests by outcome",
    "Refusals by requirement",
    "Invalid tokens by reason",
    "Key-set fetches by result",
    "Key set served stale",
    "Time since the key set was refreshed",
    "Verified-token cache hit ratio",
    "Verified-token cache entries",
    "Introspection calls by result",
    "Tokens issued by grant",
    "/token refusals by error",
    "Request latency p99 by route",
    "Credential checks by result",
    "Store latency p99 by operation",
];

fn token_service_config(port: u16, metrics_port: u16, storage: &str) -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
storage = "{storage}"

[signing]
algorithm = "ES256"

[telemetry]
metrics_listen = "127.0.0.1:{metrics_port}"

[[clients]]
id = "{svc}"
secret = "{svc_secret}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "jwt"
audience = ["{API_ID}"]

[[clients]]
id = "{opaque}"
secret = "{opaque_secret}"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]
token_format = "opaque"
audience = ["{API_ID}"]

[[apis]]
id = "{API_ID}"
secret = "{API_SECRET}"
scopes = ["akamai:social_profile"]
"#,
        svc = CLIENT.0,
        svc_secret = CLIENT.1,
        opaque = OPAQUE_CLIENT.0,
        opaque_secret = OPAQUE_CLIENT.1,
    )
}

/// A Prometheus server scraping `targets` (job name, `host:port`) every second.
struct Prometheus {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Prometheus {
    async fn start(dir: &Path, targets: &[(&str, String)]) -> Self {
        let binary = std::env::var("SCOPEGATE_TEST_PROMETHEUS").expect(
            "SCOPEGATE_TEST_PROMETHEUS is not set: this test needs Prometheus (Debian's `prometheus`; .ci/run installs it)",
        );
        let jobs: String = targets
            .iter()
            .map(|(job, target)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n")
            })
            .collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        node::wait_until_ready(&mut prometheus.child, &ready, &prometheus.log).await;
        prometheus
    }

    /// An instant query's answer (`status`, `data.result`).
    async fn query(&self, expression: &str) -> Value {
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            [("query", expression)],
        )
        .unwrap();
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    /// Waits (bounded) until `expression` has a sample of at least `at_least`.
    async fn wait_for(&self, expression: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.query(expression).await;
            let reached = answer["data"]["result"].as_array().is_some_and(|series| {
                series.iter().any(|sample| {
                    sample["value"][1]
                        .as_str()
                        .and_then(|value| value.parse::<f64>().ok())
                        .is_some_and(|value| value >= at_least)
                })
            });
            if reached {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expression} never reached {at_least}: {answer}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        node::log_text(&self.log)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token(issuer: &str, client: (&str, &str)) -> String {
    let answer = common::client_credentials(&format!("{issuer}/token"), client, "").await;
    answer["access_token"].as_str().unwrap().to_owned()
}

async fn call(api: &str, method: reqwest::Method, path: &str, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().request(method, format!("{api}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Every Prometheus expression of the dashboard: (panel title, expression with Grafana's
/// variables given values).
fn dashboard_queries() -> Vec<(String, String)> {
    let text = include_str!("../../docs/dashboards/scopegate.json");
    let dashboard: Value = serde_json::from_str(text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expression = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$api_job", ".*")
                .replace("$issuer_job", ".*");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expression));
        }
    }
    queries
}

/// The PromQL of `docs/metrics.md`: the lines of its `promql` blocks and the `expr:` of its
/// `yaml` alert rules (on one line, or a block scalar — `|` — on the lines indented below).
fn documented_alerts() -> Vec<String> {
    let text = include_str!("../../docs/metrics.md");
    let mut alerts = Vec::new();
    let mut block = None;
    // A block scalar being read: its `expr:` line's indentation, and the text so far.
    let mut scalar: Option<(usize, String)> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some((expr_indent, expression)) = &mut scalar {
            if indent > *expr_indent && !line.trim().is_empty() {
                expression.push(' ');
                expression.push_str(line.trim());
                continue;
            }
            alerts.push(std::mem::take(expression));
            scalar = None;
        }
        match (block, line.trim()) {
            (None, "```promql") => block = Some("promql"),
            (None, "```yaml") => block = Some("yaml"),
            (Some(_), "```") => block = None,
            (Some("promql"), expression)
                if !expression.is_empty() && !expression.starts_with('#') =>
            {
                alerts.push(expression.to_owned());
            }
            (Some("yaml"), rule) => match rule.strip_prefix("expr:").map(str::trim) {
                Some("|" | ">") => scalar = Some((indent, String::new())),
                Some(expression) => alerts.push(expression.to_owned()),
                None => {}
            },
            _ => {}
        }
    }
    alerts
}

#[tokio::test]
#[ignore = "needs Prometheus: set SCOPEGATE_TEST_PROMETHEUS (.ci/run does)"]
async fn prometheus_scrapes_both_and_every_dashboard_query_and_alert_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (port, service_metrics) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("token-service.toml");
    let storage = format!("sqlite://{}/store.db", dir.path().display());
    std::fs::write(
        &config,
        token_service_config(port, service_metrics, &storage),
    )
    .unwrap();
    let _service = Node::start(
        &["token-service", config.to_str().unwrap()],
        &[],
        dir.path().join("token-service.log"),
        issuer.clone(),
    )
    .await;
    let (api_port, api_metrics) = (free_port(), free_port());
    let api = format!("http://127.0.0.1:{api_port}");
    let _api = Node::start(
        &["protected-api"],
        &[
            ("ISSUER", issuer.as_str()),
            ("AUDIENCE", API_ID),
            ("LISTEN", &format!("127.0.0.1:{api_port}")),
            ("INTROSPECTION_CLIENT_ID", API_ID),
            ("INTROSPECTION_CLIENT_SECRET", API_SECRET),
            ("METRICS_LISTEN", &format!("127.0.0.1:{api_metrics}")),
        ],
        dir.path().join("protected-api.log"),
        api.clone(),
    )
    .await;
    let prometheus = Prometheus::start(
        dir.path(),
        &[
            (
                "scopegate-token-service",
                format!("127.0.0.1:{service_metrics}"),
            ),
            ("example-api", format!("127.0.0.1:{api_metrics}")),
        ],
    )
    .await;

    // A short load: accepted, refused for scope, forged, absent, opaque; and a wrong secret.
    let jwt = token(&issuer, CLIENT).await;
    let opaque = token(&issuer, OPAQUE_CLIENT).await;
    for _ in 0..50 {
        assert_eq!(
            call(&api, reqwest::Method::GET, "/me", Some(&jwt)).await,
            200
        );
    }
    assert_eq!(
        call(&api, reqwest::Method::GET, "/profile", Some(&opaque)).await,
        200
    );
    assert_eq!(
        call(&api, reqwest::Method::DELETE, "/profile", Some(&jwt)).await,
        403
    );
    let forged = format!("{}x", &jwt[..jwt.len() - 1]);
    assert_eq!(
        call(&api, reqwest::Method::GET, "/me", Some(&forged)).await,
        401
    );
    assert_eq!(call(&api, reqwest::Method::GET, "/me", None).await, 401);
    let wrong =
        common::client_credentials(&format!("{issuer}/token"), (CLIENT.0, "wrong"), "").await;
    assert_eq!(wrong["error"], "invalid_client");

    // Scraped: the API's count of accepted requests and the service's issuance are in.
    prometheus
        .wait_for(
            r#"sum(scopegate_auth_requests_total{job="example-api",outcome="accepted"})"#,
            51.0,
        )
        .await;
    prometheus
        .wait_for(
            r#"sum(scopegate_tokens_issued_total{job="scopegate-token-service"})"#,
            2.0,
        )
        .await;
    prometheus
        .wait_for(
            r#"sum(scopegate_token_errors_total{error="invalid_client"})"#,
            1.0,
        )
        .await;
    // Rates need two samples in their window after the load: a few more scrapes.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let queries = dashboard_queries();
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let mut empty = Vec::new();
    for (panel, expression) in &queries {
        let answer = prometheus.query(expression).await;
        assert_eq!(
            answer["status"], "success",
            "{panel}: {expression}: {answer}"
        );
        if answer["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            empty.push(panel.clone());
        }
    }
    for panel in PANELS_WITH_DATA {
        assert!(
            queries.iter().any(|(title, _)| title == panel),
            "no panel {panel:?} in the dashboard"
        );
        assert!(!empty.contains(&panel.to_owned()), "{panel}: no data");
    }

    let alerts = documented_alerts();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in &alerts {
        let answer = prometheus.query(alert).await;
        assert_eq!(answer["status"], "success", "{alert}: {answer}");
    }
}

/// The metric names a text mentions: `scopegate_…`, and the OpenTelemetry-named
/// `http_server_…` and `db_client_…`, without the `_bucket`/`_count`/`_sum` of a histogram's
/// series.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["scopegate_", "http_server_", "db_client_"] {
        for (start, _) in text.match_indices(prefix) {
            let preceded_by_word = text[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if preceded_by_word {
                continue;
            }
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_owned();
            names.insert(name);
        }
    }
    names
}

/// The metrics `docs/metrics.md` documents: the first column of its tables.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    include_str!("../../docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Names the dashboard, the alerts and the code use are the documented ones: a misspelt name in a
/// panel would show nothing, and an undocumented metric would be one nobody can read.
#[test]
fn the_dashboard_the_alerts_and_the_code_name_only_documented_metrics() {
    let documented = documented_metrics();
    assert!(documented.len() >= 35, "{documented:?}");
    let dashboard = include_str!("../../docs/dashboards/scopegate.json");
    let alerts = documented_alerts().join("\n");
    for (source, text) in [
        ("the dashboard", dashboard),
        ("the alerts", alerts.as_str()),
    ] {
        for name in metric_names(text) {
            assert!(
                documented.contains(&name),
                "{source} names `{name}`, which docs/metrics.md does not document"
            );
        }
    }
    let code = [
        include_str!("../../token-service/src/telemetry/metrics.rs"),
        include_str!("../../validator/src/metrics.rs"),
        include_str!("../../tower-layer/src/metrics.rs"),
    ]
    .join("\n");
    let in_code: std::collections::BTreeSet<String> = code
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| {
            metric_names(literal).len() == 1 && metric_names(literal).contains(*literal)
        })
        .map(str::to_owned)
        .collect();
    assert!(in_code.len() >= 35, "{in_code:?}");
    assert_eq!(
        in_code, documented,
        "the metrics the code names and those docs/metrics.md documents differ"
    );
    // Every documented metric has a panel.
    let on_dashboard = metric_names(dashboard);
    let missing: Vec<&String> = documented.difference(&on_dashboard).collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}
