//! The layout holds: the domain knows no HTTP. Outside `src/http/` (and `src/main.rs`, the
//! binary that wires everything), no module names axum, http, tower, tower-http or
//! tower-scopegate — so grants and domain commands can be called, and tested, without them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The line without its string literals and its comment.
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut in_string = false;
    let mut previous = ' ';
    for character in line.chars() {
        if character == '"' && previous != '\\' {
            in_string = !in_string;
        } else if !in_string {
            if character == '/' && previous == '/' {
                code.pop();
                break;
            }
            code.push(character);
        }
        previous = character;
    }
    code
}

/// Whether a line of code (not a comment or a string) names an HTTP crate as a path.
fn names_http(line: &str) -> bool {
    let code = code_of(line);
    ["axum", "http", "tower", "tower_http", "tower_scopegate"]
        .iter()
        .any(|krate| {
            code.match_indices(&format!("{krate}::")).any(|(at, _)| {
                // A path of its own, not the end of another name (`my_http::`).
                code[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|before| !before.is_alphanumeric() && before != '_')
            }) || code.trim_start().starts_with(&format!("use {krate}"))
        })
}

#[test]
fn the_domain_names_no_http_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let domain: Vec<&PathBuf> = files
        .iter()
        .filter(|path| !path.starts_with(src.join("http")) && **path != src.join("main.rs"))
        .collect();
    assert!(
        domain.len() > 20,
        "the domain's files were found: {domain:?}"
    );
    let mut offending = Vec::new();
    for path in domain {
        let text = std::fs::read_to_string(path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let is_doc = line.trim_start().starts_with("//");
            if !is_doc && names_http(line) {
                offending.push(format!(
                    "{}:{}: {}",
                    path.strip_prefix(&src).unwrap().display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "domain code names an HTTP crate:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_check_finds_what_it_looks_for() {
    assert!(names_http("use axum::Router;"));
    assert!(names_http("use http::{HeaderMap, header};"));
    assert!(names_http(
        "    let layer = tower_scopegate::ScopeLayer::new(v, r);"
    ));
    assert!(names_http("fn f(h: &http::HeaderMap) {}"));
    assert!(!names_http("// axum::serve in a comment"));
    assert!(!names_http("let url = \"https://example.test\";"));
    assert!(!names_http(
        "\"must use https (http is allowed only on loopback)\","
    ));
    assert!(!names_http("let x = my_http::thing();"));
    assert!(names_http("use tower::Layer;"));
}

/// The length in lines of each `macro_rules!` in `text` (by its braces).
fn macro_lengths(text: &str) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        if !line.trim_start().starts_with("macro_rules!") {
            continue;
        }
        let mut depth = 0i32;
        for (offset, body) in lines[start..].iter().enumerate() {
            depth += code_of(body).matches('{').count() as i32;
            depth -= code_of(body).matches('}').count() as i32;
            if depth == 0 && offset > 0 {
                found.push((start + 1, offset + 1));
                break;
            }
        }
    }
    found
}

#[test]
fn no_macro_hides_code_from_rustfmt() {
    // Shared SQL is plain code that rustfmt and IDEs read: no macro body past ~50 lines.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for (line, length) in macro_lengths(&text) {
            if length > 50 {
                long.push(format!("{}:{line}: {length} lines", path.display()));
            }
        }
    }
    assert!(long.is_empty(), "macros too long:\n{}", long.join("\n"));
    let sample = "macro_rules! m {\n    () => {\n        1\n    };\n}\n";
    assert_eq!(macro_lengths(sample), [(1, 5)]);
}
