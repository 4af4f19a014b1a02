//! A flood of wrong client secrets at `/token` (issue 16), against one or more `token-service`
//! binaries in one run: how the service serves a client whose secret it has seen match, and a
//! browser sign-in, while the flood runs, and how much memory the flood costs it.
//!
//! Each binary runs as its own process (so that its resident memory is its own) on a file
//! SQLite store. First a quiet phase: `/token` latencies of the remembered client (sequential,
//! one connection), one browser sign-in, the resident memory. Then the flood: `RATE` requests a
//! second for `SECONDS`, open-loop, each a wrong secret for the real client or for an unknown
//! id, spread over `NETWORKS` source addresses on loopback (127.0.0.2, 127.0.0.3, …: a
//! distributed attacker, so that per-network limits alone do not stop it), while the same
//! probes run again and the memory is sampled every 100 ms.
//!
//! Run with: `cargo bench -p scopegate-token-service --bench flood`. Settings (environment):
//! - `BINARIES`: `name=path` pairs, comma-separated (default: this build's binary as `after`);
//!   to compare with an older commit, build its binary in its own worktree and target
//!   directory and pass `before=/path/to/token-service,after=target/release/token-service`;
//! - `RATE` (500), `SECONDS` (10), `NETWORKS` (200), `IN_FLIGHT` (4000: the flood's most
//!   outstanding requests; more are counted as not sent).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scopegate_token_service::grant::authorization_code::s256;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://127.0.0.1:3001/callback";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn config(port: u16, dir: &Path) -> String {
    format!(
        r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
storage = "sqlite://{}/store.db?mode=rwc"

[limits]
client_rate_limit = "1000000/s"

[[clients]]
id = "svc"
secret = "svc-secret"
grants = ["client_credentials"]
scopes = ["akamai:social_profile:read"]

[[clients]]
id = "web"
public = true
grants = ["authorization_code"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid"]

[[users]]
username = "jane"
password = "jane-password-1"
"#,
        dir.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(binary: &str, dir: &Path) -> Service {
    let port = free_port();
    let path = dir.join("service.toml");
    std::fs::write(&path, config(port, dir)).unwrap();
    let child = Command::new(binary)
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("{binary}: {error}"));
    let service = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let probe = client_from(Ipv4Addr::LOCALHOST);
    for _ in 0..300 {
        if probe
            .get(format!("{}/healthz", service.base))
            .send()
            .await
            .is_ok_and(|answer| answer.status().is_success())
        {
            return service;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{binary} did not start");
}

/// One `/token` request of the remembered client; its latency.
async fn cached_token(client: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    let answer = client
        .post(format!("{base}/token"))
        .basic_auth("svc", Some("svc-secret"))
        .header("content-type", FORM)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the remembered client was refused");
    started.elapsed()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).map(|at| at + marker.len()).unwrap();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].replace("&amp;", "&")
}

/// A whole browser sign-in (the sign-in page, then the password): its time, and whether it
/// ended in the redirect back to the app.
async fn sign_in(client: &reqwest::Client, base: &str) -> (Duration, bool) {
    let started = Instant::now();
    let query = encoded(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "s"),
        ("code_challenge", &s256(VERIFIER)),
        ("code_challenge_method", "S256"),
    ]);
    let page = client
        .get(format!("{base}/authorize?{query}"))
        .send()
        .await
        .unwrap();
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.contains("scopegate_login="))
        .map(|value| value.split(';').next().unwrap().to_owned())
        .unwrap();
    let html = page.text().await.unwrap();
    let answer = client
        .post(format!("{base}/login"))
        .header("cookie", cookie)
        .header("content-type", FORM)
        .body(encoded(&[
            ("csrf", hidden(&html, "csrf").as_str()),
            ("request", hidden(&html, "request").as_str()),
            ("username", "jane"),
            ("password", "jane-password-1"),
        ]))
        .send()
        .await
        .unwrap();
    (started.elapsed(), answer.status() == 303)
}

#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    sign_in: Option<(Duration, bool)>,
    peak_rss: f64,
}

/// Probes while `running`: the remembered client's `/token` one after another, one sign-in
/// after `sign_in_after`, the memory every 100 ms.
async fn probe(base: &str, pid: u32, running: Arc<AtomicBool>, sign_in_after: Duration) -> Phase {
    let client = client_from(Ipv4Addr::LOCALHOST);
    let sampler = {
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut peak = rss_mib(pid);
            while running.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak.max(rss_mib(pid))
        })
    };
    let browser = {
        let base = base.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(sign_in_after).await;
            sign_in(&client_from(Ipv4Addr::LOCALHOST), &base).await
        })
    };
    let mut phase = Phase::default();
    while running.load(Ordering::Relaxed) {
        phase.latencies.push(cached_token(&client, base).await);
    }
    phase.sign_in = Some(browser.await.unwrap());
    phase.peak_rss = sampler.await.unwrap();
    phase.latencies.sort();
    phase
}

struct Flood {
    statuses: BTreeMap<String, u64>,
    not_sent: u64,
}

/// `rate` wrong-secret requests a second for `seconds`, from `networks` loopback addresses.
async fn flood(base: &str, rate: u64, seconds: u64, networks: u64, in_flight: u64) -> Flood {
    let clients: Vec<reqwest::Client> = (0..networks)
        .map(|index| {
            let index = u8::try_from(index % 250).unwrap();
            client_from(Ipv4Addr::new(127, 0, 0, 2 + index))
        })
        .collect();
    let outstanding = Arc::new(tokio::sync::Semaphore::new(in_flight as usize));
    let not_sent = Arc::new(AtomicU64::new(0));
    let mut sent = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    let total = rate * seconds;
    for index in 0..total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(index as f64 / rate as f64))
            .await;
        let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
            not_sent.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let client = clients[(index % networks) as usize].clone();
        let url = format!("{base}/token");
        let id = if index % 2 == 0 {
            "svc".to_owned()
        } else {
            format!("guess-{index}")
        };
        sent.spawn(async move {
            let answer = client
                .post(url)
                .basic_auth(id, Some(format!("wrong-{index}")))
                .header("content-type", FORM)
                .body("grant_type=client_credentials")
                .send()
                .await;
            drop(permit);
            match answer {
                Ok(answer) => answer.status().as_u16().to_string(),
                Err(error) if error.is_timeout() => "timeout".to_owned(),
                Err(_) => "connection error".to_owned(),
            }
        });
    }
    let mut statuses = BTreeMap::new();
    while let Some(status) = sent.join_next().await {
        *statuses.entry(status.unwrap()).or_default() += 1;
    }
    Flood {
        statuses,
        not_sent: not_sent.load(Ordering::Relaxed),
    }
}

/// `application/x-www-form-urlencoded` of `pairs` (a request body or a query).
fn encoded(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

const FORM: &str = "application/x-www-form-urlencoded";

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn run(name: &str, binary: &str) {
    let (rate, seconds) = (setting("RATE", 500), setting("SECONDS", 10));
    let (networks, in_flight) = (setting("NETWORKS", 200), setting("IN_FLIGHT", 4000));
    let dir = tempfile::tempdir().unwrap();
    let service = start(binary, dir.path()).await;
    let pid = service.child.id();
    let warm = client_from(Ipv4Addr::LOCALHOST);
    for _ in 0..50 {
        cached_token(&warm, &service.base).await;
    }
    sign_in(&warm, &service.base).await;
    let quiet_rss = rss_mib(pid);

    let running = Arc::new(AtomicBool::new(true));
    let quiet = {
        let probes = tokio::spawn({
            let (base, running) = (service.base.clone(), Arc::clone(&running));
            async move { probe(&base, pid, running, Duration::from_millis(500)).await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        running.store(false, Ordering::Relaxed);
        probes.await.unwrap()
    };

    let running = Arc::new(AtomicBool::new(true));
    let probes = tokio::spawn({
        let (base, running) = (service.base.clone(), Arc::clone(&running));
        async move { probe(&base, pid, running, Duration::from_secs(seconds / 2)).await }
    });
    let flood = flood(&service.base, rate, seconds, networks, in_flight).await;
    running.store(false, Ordering::Relaxed);
    let loud = probes.await.unwrap();

    let (quiet_p99, loud_p99) = (
        percentile(&quiet.latencies, 0.99),
        percentile(&loud.latencies, 0.99),
    );
    let (quiet_sign_in, loud_sign_in) = (quiet.sign_in.unwrap(), loud.sign_in.unwrap());
    println!(
        "\n{name} ({binary}): {rate}/s wrong secrets for {seconds} s from {networks} addresses"
    );
    println!(
        "  remembered client /token p50 {:.1} → {:.1} ms, p99 {:.1} → {:.1} ms ({:.2}×), {} → {} requests",
        millis(percentile(&quiet.latencies, 0.5)),
        millis(percentile(&loud.latencies, 0.5)),
        millis(quiet_p99),
        millis(loud_p99),
        loud_p99.as_secs_f64() / quiet_p99.as_secs_f64().max(1e-9),
        quiet.latencies.len(),
        loud.latencies.len(),
    );
    println!(
        "  browser sign-in {:.0} → {:.0} ms (signed in: {} → {})",
        millis(quiet_sign_in.0),
        millis(loud_sign_in.0),
        quiet_sign_in.1,
        loud_sign_in.1
    );
    println!(
        "  resident memory {quiet_rss:.0} MiB quiet, {:.0} MiB peak in the flood (+{:.0} MiB)",
        loud.peak_rss,
        loud.peak_rss - quiet_rss
    );
    println!(
        "  flood answers: {:?}, not sent (over {in_flight} outstanding): {}",
        flood.statuses, flood.not_sent
    );
}

fn main() {
    let binaries = std::env::var("BINARIES")
        .unwrap_or_else(|_| format!("after={}", env!("CARGO_BIN_EXE_token-service")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for pair in binaries.split(',') {
        let (name, binary) = pair.split_once('=').unwrap_or(("binary", pair));
        runtime.block_on(run(name, binary));
    }
}
