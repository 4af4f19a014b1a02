//! Google's Wycheproof JWS and JWK vectors, run against the key-set reader and the JWS
//! verifier. Every vector is classified; a `valid` vector we reject must be listed below with
//! the rule that rejects it, and an `invalid` vector we accept always fails the test.
//!
//! The vectors are read at test time from `shared/testdata/wycheproof` next to the workspace,
//! or from the directory named by `SCOPEGATE_WYCHEPROOF_DIR`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::algorithm::Algorithm;
use crate::error::InvalidToken;
use crate::jwk::KeySet;
use crate::jws::{self, TokenShape, UntrustedJws};

const DEFAULT_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/wycheproof"
);
const DIR_VARIABLE: &str = "SCOPEGATE_WYCHEPROOF_DIR";
const MAX_KEYS: usize = 16;

/// Why a vector Wycheproof labels `valid` is rejected by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Exception {
    /// HS256/HS384/HS512: a validator that verifies with published keys must never hold a
    /// shared secret. `oct` keys are skipped when the set is read and HMAC `alg` values are
    /// not representable (RFC 8725 §2.1 and §3.1, algorithm confusion).
    Hmac,
    /// The key declares `"alg":"PS256"` but the token says PS384. A key's `alg` binds it to
    /// that one algorithm (RFC 7517 §4.4, RFC 8725 §3.1) — the same rule that makes
    /// Wycheproof's own WrongPrimitive vectors 331-340 invalid. The RFC 7520 key these vectors
    /// come from has no `alg`; Wycheproof added a mismatching one.
    KeyAlgBinding,
}

impl Exception {
    fn explanation(self) -> &'static str {
        match self {
            Self::Hmac => "HMAC (HS*) is never accepted: no shared secrets, RFC 8725 §2.1/§3.1",
            Self::KeyAlgBinding => "key declares alg PS256, token uses PS384: the key's alg binds",
        }
    }

    /// Whether `rejection` is the one this exception promises, so that an exception never
    /// hides a rejection for another reason.
    fn explains(self, rejection: &Rejection) -> bool {
        match (self, rejection) {
            (Self::Hmac, Rejection::KeySet(problem)) => problem.contains("(`k`)"),
            (Self::Hmac, Rejection::Parse(InvalidToken::AlgorithmNotAllowed(alg))) => {
                alg.starts_with("HS")
            }
            (Self::KeyAlgBinding, Rejection::Verify(InvalidToken::KeyAlgorithmMismatch { .. })) => {
                true
            }
            _ => false,
        }
    }
}

/// `json_web_signature_test.json`: valid vectors rejected by design.
const SIGNATURE_EXCEPTIONS: &[(u64, Exception)] = &[
    (1, Exception::Hmac),
    (346, Exception::KeyAlgBinding),
    (348, Exception::Hmac),
    (350, Exception::KeyAlgBinding),
    (352, Exception::Hmac),
    (357, Exception::Hmac),
    (358, Exception::Hmac),
    (359, Exception::Hmac),
    (372, Exception::Hmac),
    (373, Exception::Hmac),
    (376, Exception::Hmac),
    (377, Exception::Hmac),
];

/// `json_web_key_test.json`: valid vectors rejected by design (key sets of `oct` keys).
const KEY_EXCEPTIONS: &[(u64, Exception)] = &[
    (2, Exception::Hmac),
    (13, Exception::Hmac),
    (14, Exception::Hmac),
    (15, Exception::Hmac),
];

/// Where a vector stopped.
enum Rejection {
    /// The group's key material yields no usable key.
    KeySet(String),
    /// Not a compact JWS (or not even a string).
    Shape(String),
    Parse(InvalidToken),
    Verify(InvalidToken),
}

impl fmt::Display for Rejection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeySet(problem) | Self::Shape(problem) => {
                write!(formatter, "{}: {problem}", self.stage())
            }
            Self::Parse(error) | Self::Verify(error) => {
                write!(formatter, "{}: {error} ({error:?})", self.stage())
            }
        }
    }
}

impl Rejection {
    fn stage(&self) -> &'static str {
        match self {
            Self::KeySet(_) => "key set refused",
            Self::Shape(_) => "not a compact JWS",
            Self::Parse(_) => "header refused",
            Self::Verify(_) => "verification failed",
        }
    }
}

/// Runs one vector the way the validator would: read the key set, check the token's shape,
/// parse its header with every supported algorithm allowed, verify.
fn run(key_material: &Value, token: &Value) -> Result<(), Rejection> {
    let set = if key_material.get("keys").is_some() {
        key_material.clone()
    } else {
        json!({ "keys": [key_material] })
    };
    let document = serde_json::to_vec(&set).unwrap();
    let (keys, _skipped) =
        KeySet::from_jwks(&document, &Algorithm::ALL, MAX_KEYS).map_err(Rejection::KeySet)?;
    let Some(token) = token.as_str() else {
        return Err(Rejection::Shape(format!("not a string: {token}")));
    };
    let shape = jws::shape(token);
    if shape != TokenShape::Jws {
        return Err(Rejection::Shape(format!("{shape:?}")));
    }
    let parsed = UntrustedJws::parse(token, &Algorithm::ALL).map_err(Rejection::Parse)?;
    parsed.verify(&keys).map_err(Rejection::Verify)?;
    Ok(())
}

fn vectors_dir() -> PathBuf {
    std::env::var_os(DIR_VARIABLE).map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

fn load(file: &str) -> Value {
    let path = vectors_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "Wycheproof vectors not found: looked for {} ({error}); set {DIR_VARIABLE} to the \
             directory holding {file}",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

#[derive(Default)]
struct Tally {
    total: usize,
    valid_accepted: usize,
    invalid_rejected: usize,
    invalid_rejected_by_stage: BTreeMap<&'static str, usize>,
    valid_rejected_by_exception: BTreeMap<Exception, Vec<u64>>,
    acceptable: Vec<(u64, bool)>,
}

/// Classifies every vector of `file` and fails on any disagreement with its label that the
/// exception table does not explain.
fn check_file(file: &str, exceptions: &[(u64, Exception)]) {
    let document = load(file);
    let expected_count = document["numberOfTests"].as_u64().unwrap();
    let exception_for: BTreeMap<u64, Exception> = exceptions.iter().copied().collect();
    assert_eq!(
        exception_for.len(),
        exceptions.len(),
        "{file}: a tcId is listed twice"
    );

    let mut tally = Tally::default();
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    let mut valid_ids = BTreeSet::new();

    for group in document["testGroups"].as_array().unwrap() {
        // Groups with only `private` are tested with it: a secret or private key must not be
        // usable for verification.
        let key_material = group.get("public").unwrap_or(&group["private"]);
        assert!(
            !key_material.is_null(),
            "{file}: a group has neither `public` nor `private`"
        );
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_u64().unwrap();
            assert!(seen.insert(id), "{file}: tcId {id} appears twice");
            tally.total += 1;
            let comment = test["comment"].as_str().unwrap_or_default();
            let result = test["result"].as_str().unwrap();
            let outcome = run(key_material, &test["jws"]);
            let exception = exception_for.get(&id).copied();
            match (result, outcome) {
                ("valid", Ok(())) => {
                    valid_ids.insert(id);
                    match exception {
                        None => tally.valid_accepted += 1,
                        Some(exception) => failures.push(format!(
                            "tcId {id} ({comment}): stale exception {exception:?}, the vector \
                             is accepted"
                        )),
                    }
                }
                ("valid", Err(rejection)) => {
                    valid_ids.insert(id);
                    match exception {
                        Some(exception) if exception.explains(&rejection) => tally
                            .valid_rejected_by_exception
                            .entry(exception)
                            .or_default()
                            .push(id),
                        Some(exception) => failures.push(format!(
                            "tcId {id} ({comment}): listed as {exception:?} but rejected for \
                             another reason: {rejection}"
                        )),
                        None => failures.push(format!(
                            "tcId {id} ({comment}): valid vector rejected: {rejection}"
                        )),
                    }
                }
                ("invalid", Ok(())) => failures.push(format!(
                    "tcId {id} ({comment}, flags {}): INVALID VECTOR ACCEPTED",
                    test["flags"]
                )),
                ("invalid", Err(rejection)) => {
                    tally.invalid_rejected += 1;
                    *tally
                        .invalid_rejected_by_stage
                        .entry(rejection.stage())
                        .or_default() += 1;
                }
                ("acceptable", outcome) => tally.acceptable.push((id, outcome.is_ok())),
                (other, _) => failures.push(format!("tcId {id}: unknown result {other:?}")),
            }
        }
    }

    for (id, exception) in exceptions {
        if !valid_ids.contains(id) {
            failures.push(format!(
                "exception {exception:?} lists tcId {id}, which is not a valid vector of {file}"
            ));
        }
    }

    let mut report = format!("Wycheproof {file}: {} vectors\n", tally.total);
    let _ = writeln!(report, "  valid accepted:   {}", tally.valid_accepted);
    let _ = writeln!(report, "  invalid rejected: {}", tally.invalid_rejected);
    for (stage, count) in &tally.invalid_rejected_by_stage {
        let _ = writeln!(report, "    {stage}: {count}");
    }
    let listed: usize = tally
        .valid_rejected_by_exception
        .values()
        .map(Vec::len)
        .sum();
    let _ = writeln!(report, "  valid rejected as listed exceptions: {listed}");
    for (exception, ids) in &tally.valid_rejected_by_exception {
        let _ = writeln!(
            report,
            "    {} ({}): tcId {ids:?}",
            ids.len(),
            exception.explanation()
        );
    }
    if !tally.acceptable.is_empty() {
        let _ = writeln!(
            report,
            "  acceptable (tcId, accepted): {:?}",
            tally.acceptable
        );
    }
    println!("{report}");

    assert_eq!(
        u64::try_from(tally.total).unwrap(),
        expected_count,
        "{file}: read {} vectors, numberOfTests says {expected_count}",
        tally.total
    );
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[test]
fn every_signature_vector_is_classified_as_labelled() {
    check_file("json_web_signature_test.json", SIGNATURE_EXCEPTIONS);
}

#[test]
fn every_key_vector_is_classified_as_labelled() {
    check_file("json_web_key_test.json", KEY_EXCEPTIONS);
}
