//! Several issuers behind one validator (issue 17, item 1): each issuer's tokens accepted, a
//! token routed by its `iss` and verified with that issuer's keys only, strangers refused
//! without a network call, one issuer's outage leaving the others unaffected, and opaque tokens
//! introspected at each issuer in order.

#![allow(clippy::unwrap_used)]

mod support;

use scopegate_validator::{Error, InvalidToken, MockClock, Validator};
use serde_json::json;
use support::{FakeIdp, Mode, SigningKey};

struct Two {
    a: FakeIdp,
    b: FakeIdp,
    key_a: SigningKey,
    key_b: SigningKey,
    clock: MockClock,
}

async fn two() -> Two {
    let (key_a, key_b) = (SigningKey::es256("a1"), SigningKey::rs256("b1"));
    Two {
        a: FakeIdp::start(&[&key_a]).await,
        b: FakeIdp::start(&[&key_b]).await,
        key_a,
        key_b,
        clock: MockClock::at_system_time(),
    }
}

fn invalid(result: Result<std::sync::Arc<scopegate_validator::Principal>, Error>) -> InvalidToken {
    match result {
        Err(Error::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn each_issuers_tokens_are_verified_with_that_issuers_keys_only() {
    let two = two().await;
    let validator =
        Validator::for_issuers([two.a.validator(&two.clock), two.b.validator(&two.clock)]).unwrap();
    assert_eq!(
        validator.issuers(),
        [two.a.issuer.as_str(), two.b.issuer.as_str()]
    );

    let from_a = two.key_a.sign(&two.a.claims(&two.clock));
    let from_b = two.key_b.sign(&two.b.claims(&two.clock));
    assert_eq!(
        validator.validate(&from_a).await.unwrap().issuer(),
        two.a.issuer
    );
    assert_eq!(
        validator.validate(&from_b).await.unwrap().issuer(),
        two.b.issuer
    );
    // Warm: both answered from their issuer's cache.
    assert!(validator.cached(&from_a).is_some() && validator.cached(&from_b).is_some());

    // Signed by A, claiming B: routed to B, whose keys do not verify it.
    let forged = two.key_a.sign(&two.b.claims(&two.clock));
    assert!(matches!(
        invalid(validator.validate(&forged).await),
        InvalidToken::UnknownKey(_)
            | InvalidToken::BadSignature
            | InvalidToken::KeyAlgorithmMismatch { .. }
    ));
    assert!(validator.cached(&forged).is_none());
}

#[tokio::test]
async fn a_stranger_is_refused_without_any_network_call() {
    let two = two().await;
    let validator =
        Validator::for_issuers([two.a.validator(&two.clock), two.b.validator(&two.clock)]).unwrap();
    let mut claims = two.a.claims(&two.clock);
    claims["iss"] = json!("https://stranger.example.com");
    let stranger = two.key_a.sign(&claims);
    assert!(matches!(
        invalid(validator.validate(&stranger).await),
        InvalidToken::WrongIssuer
    ));
    let mut claims = two.a.claims(&two.clock);
    claims.as_object_mut().unwrap().remove("iss");
    let nameless = two.key_a.sign(&claims);
    assert!(matches!(
        invalid(validator.validate(&nameless).await),
        InvalidToken::Claim { name: "iss", .. }
    ));
    for idp in [&two.a, &two.b] {
        assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (0, 0));
    }
}

#[tokio::test]
async fn one_issuers_outage_leaves_the_others_unaffected() {
    let two = two().await;
    two.b.set_mode(Mode::Status(503));
    let validator =
        Validator::for_issuers([two.a.validator(&two.clock), two.b.validator(&two.clock)]).unwrap();
    let from_a = two.key_a.sign(&two.a.claims(&two.clock));
    let from_b = two.key_b.sign(&two.b.claims(&two.clock));
    assert!(validator.validate(&from_a).await.is_ok());
    assert!(matches!(
        validator.validate(&from_b).await,
        Err(Error::Unavailable(_))
    ));
    assert!(validator.validate(&from_a).await.is_ok());
    assert!(
        validator.refresh_keys().await.is_err(),
        "B's failure is reported"
    );
}

#[tokio::test]
async fn each_issuer_reads_scopes_from_its_own_claim() {
    let two = two().await;
    let validator = Validator::for_issuers([
        two.a.validator(&two.clock),
        two.b
            .validator_builder(&two.clock)
            .scope_claim("realm_access.roles")
            .build()
            .unwrap(),
    ])
    .unwrap();
    let mut claims = two.b.claims(&two.clock);
    claims["realm_access"] = json!({ "roles": ["orders:all:read", "offline_access"] });
    let from_b = two.key_b.sign(&claims);
    assert_eq!(
        validator
            .validate(&from_b)
            .await
            .unwrap()
            .scopes()
            .to_string(),
        "offline_access orders:all:read"
    );
    let from_a = two.key_a.sign(&two.a.claims(&two.clock));
    assert_eq!(
        validator
            .validate(&from_a)
            .await
            .unwrap()
            .scopes()
            .to_string(),
        "akamai:social_profile:read openid"
    );
}

#[tokio::test]
async fn opaque_tokens_are_introspected_at_each_issuer_in_order() {
    let two = two().await;
    let validator = Validator::for_issuers([
        two.a.introspecting_validator(&two.clock).build().unwrap(),
        two.b.introspecting_validator(&two.clock).build().unwrap(),
    ])
    .unwrap();
    two.b
        .set_answer("token-of-b", two.b.active_answer(&two.clock, 300));
    let principal = validator.validate("token-of-b").await.unwrap();
    assert_eq!(principal.issuer(), two.b.issuer);
    assert_eq!(
        (two.a.introspection_calls(), two.b.introspection_calls()),
        (1, 1),
        "A said inactive first, then B"
    );
    assert!(validator.cached("token-of-b").is_some());

    assert!(matches!(
        invalid(validator.validate("nobodys-token").await),
        InvalidToken::Inactive
    ));
    // An issuer that cannot be asked makes the answer unavailable, never invalid.
    two.a.set_introspection_mode(Mode::Status(503));
    assert!(matches!(
        validator.validate("another-unknown-token").await,
        Err(Error::Unavailable(_))
    ));
}

#[test]
fn a_set_needs_distinct_issuers() {
    assert!(Validator::for_issuers([]).is_err());
    let one = || {
        Validator::builder()
            .issuer("https://idp.example.com")
            .audience("api")
            .algorithms([scopegate_validator::Algorithm::ES256])
            .build()
            .unwrap()
    };
    let twice = Validator::for_issuers([one(), one()]).unwrap_err();
    assert!(twice.to_string().contains("listed twice"), "{twice}");
    let nested = Validator::for_issuers([Validator::for_issuers([one()]).unwrap()]).unwrap_err();
    assert!(nested.to_string().contains("not a set"), "{nested}");
}
