//! Every input kept under `fuzz/` — the seeds and each crash a fuzzer found
//! (`fuzz/regressions/<target>/`) — replayed through its target's entry point on every test
//! run, so that a fixed crash stays fixed without the nightly toolchain the fuzzers need.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn entry_point(target: &str) -> fn(&[u8]) {
    match target {
        "bearer_header" => tower_scopegate::fuzzing::bearer_header,
        "compact_jws" => scopegate_validator::fuzzing::compact_jws,
        "strict_json" => scopegate_validator::fuzzing::strict_json,
        "scope_strings" => scopegate_validator::fuzzing::scopes,
        "jwk_set" => scopegate_validator::fuzzing::jwk_set,
        "introspection_answer" => scopegate_validator::fuzzing::introspection_answer,
        "form_body" => scopegate_token_service::http::fuzzing::form_body,
        "basic_credentials" => scopegate_token_service::http::fuzzing::basic_credentials,
        "config_file" => scopegate_token_service::http::fuzzing::config_file,
        "event_poll" => scopegate_token_service::http::fuzzing::event_poll,
        "revocation_events" => scopegate_validator::fuzzing::revocation_events,
        other => panic!("fuzz target `{other}` has no entry point listed here"),
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The targets `fuzz/Cargo.toml` declares.
fn targets() -> Vec<String> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let targets: Vec<String> = manifest
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|name| *name != "scopegate-fuzz")
        .map(str::to_owned)
        .collect();
    assert!(targets.len() >= 9, "{targets:?}");
    targets
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    match std::fs::read_dir(fuzz_dir().join(kind).join(target)) {
        Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn every_target_has_seeds_and_replays_them_and_its_regressions() {
    for target in targets() {
        let run = entry_point(&target);
        let seeds = inputs("seeds", &target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} is empty");
        for input in seeds.iter().chain(&inputs("regressions", &target)) {
            let bytes = std::fs::read(input).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target} panics on {}", input.display());
        }
    }
}
