//! node-oidc-provider as the peer of `PEER=node-oidc-provider`: installed from the lock file
//! in `benchmarks/node-oidc-provider/` when missing, started on 127.0.0.1 (a free port), and
//! stopped when dropped. It inherits this process' CPU affinity, so with `LAYOUT=one-core` it
//! runs on the service's core.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long node may take to start before the bench gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct NodeOidcProvider {
    child: Child,
    /// Its issuer URL (`http://127.0.0.1:<port>`): `/token`, `/token/introspection`.
    pub(crate) url: String,
}

fn directory() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benchmarks/node-oidc-provider")
}

fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "PEER=node-oidc-provider needs `{tool}` (Node.js 20 or later) on the PATH; install Node.js \
         or run without PEER"
    );
}

impl NodeOidcProvider {
    pub(crate) fn start() -> Self {
        require("node");
        require("npm");
        let dir = directory();
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            // Exactly the versions of package-lock.json, nothing else.
            let installed = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .is_ok_and(|status| status.success());
            assert!(installed, "`npm ci` failed in {}", dir.display());
        }
        let mut child = Command::new("node")
            .arg("server.js")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("node's stdout is piped");
        let (listening, url) = mpsc::channel();
        // Reads its first line, then drains the rest so that node never blocks on the pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = listening.send(first);
            for _ in lines {}
        });
        let first = url.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let Some(url) = first.strip_prefix("listening ") else {
            let _ = child.kill();
            panic!("node-oidc-provider did not start (its first line: {first:?})");
        };
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self {
            url: url.to_owned(),
            child,
        }
    }

    /// `oidc-provider <version> on node <version>`.
    pub(crate) fn describe(&self) -> String {
        let manifest =
            std::fs::read_to_string(directory().join("node_modules/oidc-provider/package.json"))
                .unwrap_or_default();
        let version = serde_json::from_str::<serde_json::Value>(&manifest)
            .ok()
            .and_then(|manifest| manifest["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
        let node = Command::new("node")
            .arg("--version")
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default();
        format!("oidc-provider {version} on node {node}")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeOidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
