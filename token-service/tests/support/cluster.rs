//! Token-service processes (the real binary) sharing one store, reached over loopback: what
//! several instances behind a load balancer are.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the instance to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `token-service serve` process.
pub struct Instance {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Instance {
    /// Starts an instance of `config` listening on `port`, and waits until it is ready.
    pub async fn start(config: &Path, port: u16) -> Self {
        let log = config.with_file_name(format!("instance-{port}.log"));
        let mut instance = Self {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            config: config.to_owned(),
            log,
        };
        instance.spawn();
        instance.wait_ready(Duration::from_secs(60)).await;
        instance
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_token-service"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("SCOPEGATE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&mut self, within: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "instance on {} exited ({status}): {}",
                    self.port,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "instance on {} not ready: {}",
                self.port,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, nothing flushed by the process.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the process again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill_9();
        self.spawn();
        self.wait_ready(Duration::from_secs(60)).await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_9();
    }
}
