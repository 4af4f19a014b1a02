//! Entry points for the fuzz targets in the repository's `fuzz/` folder (feature `fuzzing`):
//! each hands untrusted bytes to one parser a remote party can reach. Not part of the API.
//!
//! Besides "never panics", each checks a property the parser promises, so a fuzzer finds wrong
//! answers as well as crashes.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::algorithm::Algorithm;
use crate::claims::{self, ClaimRules};
use crate::events::set::{self as security_event, SetRules};
use crate::events::subscriber;
use crate::introspect;
use crate::json;
use crate::jwk::KeySet;
use crate::jws::{self, TokenShape, UntrustedJws};
use crate::scope::{Requirement, Scope, ScopeSet};

const NOW: Duration = Duration::from_secs(1_700_000_000);

static RULES: LazyLock<ClaimRules> = LazyLock::new(|| ClaimRules {
    issuer: Arc::new("https://issuer.example".to_owned()),
    audiences: vec!["api".to_owned()],
    leeway: Duration::from_secs(30),
    any_audience: false,
    accept_expired: false,
    scope_claim: None,
    interned: std::sync::Arc::default(),
});

/// Public example keys of RFC 7517 (A.1, P-256) and RFC 8037 (A.2, Ed25519).
static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let document = br#"{"keys":[
        {"kty":"EC","crv":"P-256","kid":"1","use":"sig","alg":"ES256",
         "x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
         "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
        {"kty":"OKP","crv":"Ed25519","kid":"2","alg":"EdDSA",
         "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    match KeySet::from_jwks(document, &Algorithm::ALL, 16) {
        Ok((keys, _)) => keys,
        Err(problem) => panic!("the fuzzing key set is itself refused: {problem}"),
    }
});

/// A compact JWS: split and header read, signature checked against fixed keys (a fuzzer cannot
/// forge one, so the claims are then read as if it had passed). A forged signature must never
/// verify.
pub fn compact_jws(input: &[u8]) {
    let Ok(token) = std::str::from_utf8(input) else {
        return;
    };
    if jws::shape(token) != TokenShape::Jws {
        assert!(UntrustedJws::parse(token, &Algorithm::ALL).is_err());
        return;
    }
    let Ok(untrusted) = UntrustedJws::parse(token, &Algorithm::ALL) else {
        return;
    };
    assert!(
        untrusted.verify(&KEYS).is_err(),
        "a signature made without the private key verified"
    );
    let signed = untrusted.signing_input();
    if let Ok((principal, _)) = claims::check_jwt(signed, &untrusted.into_payload(), &RULES, NOW) {
        assert!(
            principal.claims.is_signed_part(signed),
            "a principal's kept claim set does not encode back to its token's payload"
        );
    }
}

/// The strict JSON reader: whatever it accepts is an object `serde_json` also reads, with the
/// same members (it only refuses more: duplicate names).
pub fn strict_json(input: &[u8]) {
    if let Ok(object) = json::parse_object(input) {
        let lenient: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(input).expect("strict accepted what serde_json refuses");
        assert_eq!(object, lenient, "strict and lenient readings differ");
    }
}

/// A JWK Set document as fetched from an issuer's `jwks_uri`.
pub fn jwk_set(input: &[u8]) {
    if let Ok((keys, skipped)) = KeySet::from_jwks(input, &Algorithm::ALL, 16) {
        assert!(keys.len() + skipped.len() <= 16);
    }
}

/// An RFC 7662 introspection answer.
pub fn introspection_answer(input: &[u8]) {
    if let Ok(answer) = json::parse_object(input) {
        let active = answer.get("active") == Some(&serde_json::Value::Bool(true));
        if let Ok(Ok(_principal)) = introspect::verdict(answer, &RULES, NOW) {
            assert!(active, "a principal from an answer that is not active");
        }
    }
}

/// Scope strings: the first line is the granted `scope` claim, the rest required scopes.
pub fn scopes(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let (granted, required) = text.split_once('\n').unwrap_or((text, ""));
    for candidate in granted.split(' ').chain(required.split(' ')) {
        if let Ok(scope) = Scope::parse(candidate) {
            assert_eq!(scope.as_str(), candidate);
            assert!(scope.covers(&scope), "a scope does not cover itself");
            if scope.suffix().is_some() {
                assert!(scope.prefix().is_some() && scope.name().is_some());
            }
        }
    }
    let Ok(granted) = ScopeSet::parse_space_separated(granted) else {
        return;
    };
    for scope in granted.iter() {
        assert!(granted.covers(scope), "a set does not cover its member");
    }
    if let Ok(requirement) = Requirement::any_of(required.split(' ')) {
        for method in ["GET", "POST", "DELETE", "BREW"] {
            let _ = requirement.check(&granted, method);
        }
    }
    if let Ok(requirement) = Requirement::method_derived(required) {
        let _ = requirement.check(&granted, "PUT");
    }
    if let Ok(requested) = ScopeSet::parse_space_separated(required)
        && let Ok(given) = crate::scope::grant(&requested, &granted)
    {
        for scope in given.iter() {
            assert!(
                granted.covers(scope),
                "granted a scope that was not allowed"
            );
        }
    }
}

static SET_RULES: LazyLock<SetRules> = LazyLock::new(|| SetRules {
    issuer: "https://issuer.example".into(),
    audience: "api".to_owned(),
    algorithms: Algorithm::ALL.to_vec(),
    default_hold: Duration::from_secs(86_400),
});

/// A revocation event stream's bytes, both ways the validator reads them: as an RFC 8936 poll
/// answer (SETs by id, no id twice), and as a SET's claims, as if its signature had passed. A
/// SET read is one this issuer addressed to this API.
pub fn revocation_events(input: &[u8]) {
    if let Some((sets, _)) = subscriber::read_answer(input) {
        let mut ids: Vec<&str> = sets.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), sets.len(), "an id was read twice");
    }
    if security_event::read(input, &SET_RULES).is_ok() {
        let claims: serde_json::Value = serde_json::from_slice(input).expect("a SET read is JSON");
        assert_eq!(claims["iss"], "https://issuer.example");
        let addressed = match &claims["aud"] {
            serde_json::Value::String(audience) => audience == "api",
            serde_json::Value::Array(audiences) => audiences.iter().any(|a| a == "api"),
            _ => false,
        };
        assert!(addressed, "a SET for another audience was read");
    }
}
