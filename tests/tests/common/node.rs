//! A `scopegate-e2e-node` process of an end-to-end test: the token service or the example API,
//! on a port the test chose, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for a process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `scopegate-e2e-node` process, killed when dropped.
pub struct Node {
    child: Option<Child>,
    arguments: Vec<String>,
    environment: Vec<(String, String)>,
    log: PathBuf,
    pub url: String,
}

impl Node {
    pub async fn start(
        arguments: &[&str],
        environment: &[(&str, &str)],
        log: PathBuf,
        url: String,
    ) -> Self {
        let mut node = Self {
            child: None,
            arguments: arguments.iter().map(|&a| a.to_owned()).collect(),
            environment: environment
                .iter()
                .map(|&(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            log,
            url,
        };
        node.spawn();
        node.wait_until_ready().await;
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_scopegate-e2e-node"))
            .args(&self.arguments)
            .envs(self.environment.iter().map(|(n, v)| (n, v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn wait_until_ready(&mut self) {
        let probe = format!("{}/{}", self.url, self.ready_path());
        let child = self.child.as_mut().expect("spawned");
        wait_until_ready(child, &probe, &self.log).await;
    }

    fn ready_path(&self) -> &'static str {
        if self.arguments[0] == "token-service" {
            "readyz"
        } else {
            "public"
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_until_ready().await;
    }

    pub fn log_text(&self) -> String {
        log_text(&self.log)
    }
}

/// Waits (at most a minute) until `probe` answers a success; panics with the process's log
/// if it exits first or is not ready in time.
pub async fn wait_until_ready(child: &mut Child, probe: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = reqwest::get(probe).await
            && answer.status().is_success()
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{probe}: the process exited ({status}): {}", log_text(log));
        }
        assert!(
            Instant::now() < deadline,
            "{probe} not ready: {}",
            log_text(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A process's log file, as text.
pub fn log_text(log: &Path) -> String {
    match std::fs::read(log) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => format!("(no log at {}: {error})", log.display()),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
