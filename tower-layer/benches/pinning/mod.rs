//! Pinning a benchmark's server to one core, for the `one-core` layout (wrk on core 0, the
//! server on core 1). Shared by the benches of tower-scopegate and the token service.

use std::process::Command;

/// Moves this process, and every thread it starts from now on, to core 1; `what` names the
/// server in the failure message.
pub(crate) fn pin_to_core_1(what: &str) {
    let pinned = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        pinned,
        "taskset (util-linux) could not pin {what} to core 1"
    );
}
