//! JWT verification per RFC 8725 and the validator's rules: what passes, and every way a
//! token must fail.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use scopegate_validator::{Algorithm, Error, InvalidToken, MockClock, Requirement, Validator};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{AUDIENCE, FakeIdp, SigningKey, b64};

struct Setup {
    idp: FakeIdp,
    clock: MockClock,
    validator: Validator,
    key: SigningKey,
}

async fn setup(key: SigningKey) -> Setup {
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .without_verified_token_cache()
        .build()
        .unwrap();
    Setup {
        idp,
        clock,
        validator,
        key,
    }
}

impl Setup {
    fn claims(&self) -> Value {
        self.idp.claims(&self.clock)
    }

    fn header(&self) -> Value {
        json!({ "alg": self.key.alg, "kid": self.key.kid, "typ": "at+jwt" })
    }

    fn sign_with(&self, header: Value, claims: Value) -> String {
        self.key.sign_raw(&header.to_string(), &claims.to_string())
    }

    async fn invalid(&self, token: &str) -> InvalidToken {
        match self.validator.validate(token).await {
            Err(Error::InvalidToken(reason)) => reason,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_supported_algorithm_verifies() {
    for key in [
        SigningKey::rs256("rs"),
        SigningKey::ps256("ps"),
        SigningKey::es256("es"),
        SigningKey::es384("es384"),
        SigningKey::es512("es512"),
        SigningKey::eddsa("ed"),
    ] {
        let setup = setup(key).await;
        let principal = setup
            .validator
            .validate(&setup.key.sign(&setup.claims()))
            .await
            .unwrap();
        assert_eq!(principal.subject(), Some("user-1"), "{}", setup.key.alg);
    }
}

#[tokio::test]
async fn the_principal_carries_every_claim() {
    let setup = setup(SigningKey::es256("k")).await;
    let mut claims = setup.claims();
    claims["companyName"] = json!("Bizcorp");
    claims["roles"] = json!(["admin", "auditor"]);
    claims["aud"] = json!(["https://other.test", AUDIENCE]);
    let principal = setup
        .validator
        .validate(&setup.key.sign(&claims))
        .await
        .unwrap();
    assert_eq!(principal.subject(), Some("user-1"));
    assert_eq!(principal.client_id(), Some("client-1"));
    assert_eq!(principal.issuer(), setup.idp.issuer);
    assert_eq!(principal.audiences(), ["https://other.test", AUDIENCE]);
    assert_eq!(principal.token_id(), Some("token-1"));
    assert_eq!(
        principal.scopes().to_string(),
        "akamai:social_profile:read openid"
    );
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(
        principal.expires_at(),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(exp))
    );
    assert_eq!(principal.claim("companyName"), Some(json!("Bizcorp")));

    #[derive(Deserialize)]
    struct AppClaims {
        #[serde(rename = "companyName")]
        company_name: String,
        roles: Vec<String>,
    }
    let typed: AppClaims = principal.deserialize_claims().unwrap();
    assert_eq!(typed.company_name, "Bizcorp");
    assert_eq!(typed.roles, ["admin", "auditor"]);

    let read = Requirement::all_of(["akamai:social_profile:read"]).unwrap();
    principal.check(&read, "GET").unwrap();
    let write = Requirement::method_derived("akamai:social_profile").unwrap();
    let error = principal.check(&write, "PUT").unwrap_err();
    assert_eq!(error.rfc6750_code(), Some("insufficient_scope"));
}

/// The principal keeps its claim set as received and its identifiers decoded: escaped strings
/// read the same from a fresh verification and from the verified-token cache.
#[tokio::test]
async fn escaped_identifiers_and_claims_read_the_same_cold_and_warm() {
    let setup = setup(SigningKey::es256("k")).await;
    let claims = setup.claims();
    let mut members = claims.as_object().unwrap().clone();
    members.remove("sub");
    members.remove("jti");
    members.remove("client_id");
    let rest = serde_json::to_string(&members).unwrap();
    let raw = format!(
        r#"{{"sub":"us\u0065r-\u00e9","jti":"t\"1","azp":"cl\/ient","sid":"s\u002d1","nested":{{"a":[1,{{"b":null}}]}},{}"#,
        &rest[1..]
    );
    let token = setup.key.sign_raw(&setup.header().to_string(), &raw);
    let expected: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&raw).unwrap();
    // This file's validators verify every time: this one remembers.
    let caching = setup.idp.validator_builder(&setup.clock).build().unwrap();
    for pass in ["cold", "warm"] {
        let principal = caching.validate(&token).await.unwrap();
        assert_eq!(principal.subject(), Some("user-\u{e9}"), "{pass}");
        assert_eq!(principal.token_id(), Some("t\"1"), "{pass}");
        assert_eq!(principal.client_id(), Some("cl/ient"), "{pass}");
        assert_eq!(principal.session_id(), Some("s-1"), "{pass}");
        assert_eq!(principal.issuer(), setup.idp.issuer, "{pass}");
        assert_eq!(principal.bound_key_thumbprint(), None, "{pass}");
        assert_eq!(principal.claims(), expected, "{pass}");
        assert_eq!(
            principal.claim("nested"),
            Some(json!({"a": [1, {"b": null}]})),
            "{pass}"
        );
        assert_eq!(principal.claim("absent"), None, "{pass}");
        let typed: serde_json::Value = principal.deserialize_claims().unwrap();
        assert_eq!(typed, serde_json::Value::Object(expected.clone()), "{pass}");
    }
    assert_eq!(
        caching.cached(&token).unwrap().subject(),
        Some("user-\u{e9}")
    );
}

#[tokio::test]
async fn scopes_are_read_as_a_string_or_an_array_from_scope_or_scp() {
    let setup = setup(SigningKey::es256("k")).await;
    for (name, value) in [
        ("scope", json!(["openid", "akamai:social_profile:*"])),
        ("scp", json!("openid akamai:social_profile:*")),
        ("scp", json!(["openid", "akamai:social_profile:*"])),
    ] {
        let mut claims = setup.claims();
        claims.as_object_mut().unwrap().remove("scope");
        claims[name] = value;
        let principal = setup
            .validator
            .validate(&setup.key.sign(&claims))
            .await
            .unwrap();
        assert_eq!(principal.scopes().len(), 2, "{name}");
    }
}

#[tokio::test]
async fn the_actors_of_an_exchanged_token_are_read_current_first() {
    let setup = setup(SigningKey::es256("k")).await;
    let principal = |act: Option<serde_json::Value>| {
        let mut claims = setup.claims();
        if let Some(act) = act {
            claims["act"] = act;
        }
        setup.key.sign(&claims)
    };
    for (act, expected) in [
        (None, vec![]),
        (Some(json!({ "sub": "api-a" })), vec!["api-a"]),
        (
            Some(json!({ "sub": "api-b", "act": { "sub": "api-a" } })),
            vec!["api-b", "api-a"],
        ),
        // An actor without a string `sub` ends the chain.
        (
            Some(json!({ "sub": "api-b", "act": { "sub": 7 } })),
            vec!["api-b"],
        ),
        (Some(json!("api-a")), vec![]),
    ] {
        let token = principal(act.clone());
        let validated = setup.validator.validate(&token).await.unwrap();
        assert_eq!(validated.actors(), expected, "{act:?}");
    }
}

#[tokio::test]
async fn client_id_falls_back_to_azp() {
    let setup = setup(SigningKey::es256("k")).await;
    let mut claims = setup.claims();
    claims.as_object_mut().unwrap().remove("client_id");
    claims["azp"] = json!("spa");
    let principal = setup
        .validator
        .validate(&setup.key.sign(&claims))
        .await
        .unwrap();
    assert_eq!(principal.client_id(), Some("spa"));
}

#[tokio::test]
async fn float_numeric_dates_are_accepted() {
    let setup = setup(SigningKey::es256("k")).await;
    let mut claims = setup.claims();
    let now = claims["iat"].as_f64().unwrap();
    claims["iat"] = json!(now - 0.5);
    claims["nbf"] = json!(now - 0.25);
    claims["exp"] = json!(now + 600.75);
    setup
        .validator
        .validate(&setup.key.sign(&claims))
        .await
        .unwrap();
}

#[tokio::test]
async fn alg_none_fails() {
    let setup = setup(SigningKey::rs256("k")).await;
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(json!({"alg": alg, "kid": "k"}).to_string()),
            b64(setup.claims().to_string())
        );
        let reason = setup.invalid(&token).await;
        assert!(
            matches!(
                reason,
                InvalidToken::Malformed(_) | InvalidToken::AlgorithmNotAllowed(_)
            ),
            "{alg}: {reason:?}"
        );
        let token = format!("{token}c2ln");
        assert!(matches!(
            setup.invalid(&token).await,
            InvalidToken::AlgorithmNotAllowed(_)
        ));
    }
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_fails() {
    // The classic confusion: sign HS256 with the RSA public key as the secret.
    let setup = setup(SigningKey::rs256("k")).await;
    let jwk = setup.key.jwk();
    for secret in [jwk.to_string(), jwk["n"].as_str().unwrap().to_owned()] {
        let signing_input = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "kid": "k"}).to_string()),
            b64(setup.claims().to_string())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            signing_input.as_bytes(),
        );
        let token = format!("{signing_input}.{}", b64(tag.as_ref()));
        assert_eq!(
            setup.invalid(&token).await,
            InvalidToken::AlgorithmNotAllowed("HS256".into())
        );
    }
}

#[tokio::test]
async fn key_selecting_headers_fail_even_when_they_name_the_right_key() {
    let setup = setup(SigningKey::es256("k")).await;
    let attacker = SigningKey::es256("k");
    for (name, value) in [
        ("jwk", attacker.jwk()),
        ("jku", json!(format!("{}/jwks", setup.idp.issuer))),
        ("x5u", json!("https://evil.test/cert.pem")),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut header = setup.header();
        header[name] = value;
        // Signed with the real key: the header alone must reject it.
        let token = setup.sign_with(header.clone(), setup.claims());
        assert_eq!(
            setup.invalid(&token).await,
            InvalidToken::ForbiddenHeader(name),
            "{name}"
        );
        let forged = attacker.sign_raw(&header.to_string(), &setup.claims().to_string());
        assert!(setup.validator.validate(&forged).await.is_err(), "{name}");
    }
}

#[tokio::test]
async fn unknown_crit_fails() {
    let setup = setup(SigningKey::es256("k")).await;
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let mut header = setup.header();
        header["crit"] = crit;
        header["exp"] = json!(1);
        let token = setup.sign_with(header, setup.claims());
        assert_eq!(setup.invalid(&token).await, InvalidToken::UnknownCritical);
    }
}

#[tokio::test]
async fn duplicate_json_members_fail() {
    let setup = setup(SigningKey::es256("k")).await;
    let claims = setup.claims().to_string();
    let evil_claims = format!(r#"{{"sub":"admin",{}"#, &claims[1..]);
    let token = setup
        .key
        .sign_raw(&setup.header().to_string(), &evil_claims);
    assert!(matches!(
        setup.invalid(&token).await,
        InvalidToken::Json { part: "claims", .. }
    ));

    let header = r#"{"alg":"ES256","kid":"k","alg":"ES256"}"#;
    let token = setup.key.sign_raw(header, &claims);
    assert!(matches!(
        setup.invalid(&token).await,
        InvalidToken::Json { part: "header", .. }
    ));
}

#[tokio::test]
async fn wrongly_typed_claims_fail() {
    let setup = setup(SigningKey::es256("k")).await;
    for (name, value) in [
        ("exp", json!("123")),
        ("exp", json!(null)),
        ("exp", json!(-1)),
        ("nbf", json!("9999999999")),
        ("iat", json!(true)),
        ("iss", json!(1)),
        ("aud", json!(5)),
        ("aud", json!([AUDIENCE, 5])),
        ("aud", json!([])),
        ("sub", json!(5)),
        ("client_id", json!({"id": 1})),
        ("jti", json!(1)),
        ("scope", json!(5)),
        ("scope", json!(["openid", "has space"])),
        ("scope", json!("bad\"quote")),
    ] {
        let mut claims = setup.claims();
        claims[name] = value.clone();
        let reason = setup.invalid(&setup.key.sign(&claims)).await;
        assert!(
            matches!(reason, InvalidToken::Claim { .. }),
            "{name}={value}: {reason:?}"
        );
    }
    let mut claims = setup.claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        setup.invalid(&setup.key.sign(&claims)).await,
        InvalidToken::Claim { name: "exp", .. }
    ));
}

#[tokio::test]
async fn the_issuer_must_match_exactly() {
    let setup = setup(SigningKey::es256("k")).await;
    let issuer = setup.idp.issuer.clone();
    for wrong in [
        format!("{issuer}/"),
        format!("{issuer}/tenant"),
        issuer[..issuer.len() - 1].to_owned(),
        issuer.to_uppercase(),
        issuer.replace("http://", "https://"),
        format!(" {issuer}"),
    ] {
        let mut claims = setup.claims();
        claims["iss"] = json!(wrong);
        assert_eq!(
            setup.invalid(&setup.key.sign(&claims)).await,
            InvalidToken::WrongIssuer,
            "{wrong}"
        );
    }
}

#[tokio::test]
async fn the_audience_must_contain_a_configured_one() {
    let setup = setup(SigningKey::es256("k")).await;
    for wrong in [
        json!("https://api.example.test/"),
        json!(["https://other.test"]),
        json!(""),
    ] {
        let mut claims = setup.claims();
        claims["aud"] = wrong.clone();
        assert_eq!(
            setup.invalid(&setup.key.sign(&claims)).await,
            InvalidToken::WrongAudience,
            "{wrong}"
        );
    }
}

#[tokio::test]
async fn time_claims_are_checked_with_the_leeway() {
    let setup = setup(SigningKey::es256("k")).await;
    let now = setup.claims()["iat"].as_f64().unwrap();
    let leeway = setup.validator.leeway().as_secs_f64();
    let cases = [
        ("exp", now - leeway - 1.0, Some(InvalidToken::Expired)),
        ("exp", now - leeway + 1.0, None),
        ("nbf", now + leeway + 1.0, Some(InvalidToken::NotYetValid)),
        ("nbf", now + leeway - 1.0, None),
        (
            "iat",
            now + leeway + 1.0,
            Some(InvalidToken::IssuedInFuture),
        ),
        ("iat", now + leeway - 1.0, None),
    ];
    for (name, value, expected) in cases {
        let mut claims = setup.claims();
        claims[name] = json!(value);
        let result = setup.validator.validate(&setup.key.sign(&claims)).await;
        match expected {
            Some(reason) => assert_eq!(
                setup.invalid(&setup.key.sign(&claims)).await,
                reason,
                "{name}"
            ),
            None => assert!(result.is_ok(), "{name}={value}: {result:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_shapes_fail() {
    let setup = setup(SigningKey::es256("k")).await;
    let token = setup.key.sign(&setup.claims());
    let segments: Vec<&str> = token.split('.').collect();
    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
    let json_serialization = format!(
        r#"{{"payload":"{}","protected":"{}","signature":"{}"}}"#,
        segments[1], segments[0], segments[2]
    );
    let cases: Vec<(String, InvalidToken)> = vec![
        (jwe.to_owned(), InvalidToken::Encrypted),
        // Braces and quotes: not even bearer-token syntax.
        (json_serialization, InvalidToken::NotBearerSyntax),
        (
            format!("{}.{}", segments[0], segments[1]),
            InvalidToken::NotAJwt,
        ),
        (format!("{token}.x"), InvalidToken::NotAJwt),
        (
            format!("{}..{}", segments[0], segments[2]),
            InvalidToken::Malformed(""),
        ),
        (
            format!(".{}.{}", segments[1], segments[2]),
            InvalidToken::Malformed(""),
        ),
        (
            format!("{}=.{}.{}", segments[0], segments[1], segments[2]),
            InvalidToken::NotBearerSyntax,
        ),
        (
            format!("{}.{}.{}=", segments[0], segments[1], segments[2]),
            InvalidToken::Malformed(""),
        ),
        (
            format!("{}.{}+.{}", segments[0], segments[1], segments[2]),
            InvalidToken::Malformed(""),
        ),
        ("a.b.c".to_owned(), InvalidToken::Malformed("")),
        ("opaque-token-value".to_owned(), InvalidToken::NotAJwt),
    ];
    for (token, expected) in cases {
        let reason = setup.invalid(&token).await;
        let same_kind = std::mem::discriminant(&reason) == std::mem::discriminant(&expected)
            || matches!(
                reason,
                InvalidToken::Json { .. } | InvalidToken::BadSignature
            ) && matches!(expected, InvalidToken::Malformed(_));
        assert!(same_kind, "{token}: {reason:?}, expected {expected:?}");
    }
    assert!(matches!(
        setup.validator.validate("").await,
        Err(Error::NoToken)
    ));
}

#[tokio::test]
async fn a_tampered_signature_or_payload_fails() {
    let setup = setup(SigningKey::es256("k")).await;
    let token = setup.key.sign(&setup.claims());
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut flipped = signature.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{signing_input}.{}", String::from_utf8(flipped).unwrap());
    assert_eq!(setup.invalid(&tampered).await, InvalidToken::BadSignature);

    let mut claims = setup.claims();
    claims["scope"] = json!("akamai:social_profile:*");
    let other_payload = b64(claims.to_string());
    let (header, _) = signing_input.split_once('.').unwrap();
    let swapped = format!("{header}.{other_payload}.{signature}");
    assert_eq!(setup.invalid(&swapped).await, InvalidToken::BadSignature);
}

#[tokio::test]
async fn a_cached_tokens_signature_on_another_payload_never_hits_the_cache() {
    // The verified-token cache is keyed by the signature segment: a token that reuses a
    // verified token's signature with another payload (or header) must be verified in full,
    // and fail, rather than borrow the cached principal.
    let setup = setup(SigningKey::es256("k")).await;
    let warm = setup.idp.validator(&setup.clock);
    let token = setup.key.sign(&setup.claims());
    let principal = warm.validate(&token).await.unwrap();
    assert!(warm.cached(&token).is_some(), "the genuine token is cached");
    assert!(Arc::ptr_eq(
        &warm.validate(&token).await.unwrap(),
        &principal
    ));

    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let (header, _) = signing_input.split_once('.').unwrap();
    let mut claims = setup.claims();
    claims["scope"] = json!("akamai:social_profile:*");
    let forgeries = [
        format!("{header}.{}.{signature}", b64(claims.to_string())),
        format!(
            "{}.{}.{signature}",
            b64(json!({"alg": "ES256", "kid": "k"}).to_string()),
            signing_input.split_once('.').unwrap().1
        ),
        format!("{signing_input}x.{signature}"),
    ];
    for forged in &forgeries {
        assert!(warm.cached(forged).is_none(), "{forged}");
        match warm.validate(forged).await {
            Err(Error::InvalidToken(_)) => {}
            other => panic!("a forged token was not refused: {other:?}"),
        }
    }
    // The genuine token is still served from the cache.
    assert!(warm.cached(&token).is_some());
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_decoding() {
    let setup = setup(SigningKey::es256("k")).await;
    let huge = "a".repeat(9000);
    assert_eq!(
        setup.invalid(&huge).await,
        InvalidToken::TooLarge {
            size: 9000,
            max: 8192
        }
    );
    assert_eq!(setup.idp.jwks_hits(), 0, "rejected before any key lookup");
}

#[tokio::test]
async fn the_algorithm_must_be_allowed_by_configuration_and_by_the_key() {
    let es = SigningKey::es256("es");
    let rs = SigningKey::rs256("rs");
    let idp = FakeIdp::start(&[&es, &rs]).await;
    let clock = MockClock::at_system_time();
    let only_rs256 = Validator::builder()
        .issuer(&idp.issuer)
        .audience(AUDIENCE)
        .algorithms([Algorithm::RS256])
        .clock(clock.clone())
        .build()
        .unwrap();
    let claims = idp.claims(&clock);
    only_rs256.validate(&rs.sign(&claims)).await.unwrap();
    let error = only_rs256.validate(&es.sign(&claims)).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidToken(InvalidToken::AlgorithmNotAllowed(_))
        ),
        "{error:?}"
    );

    // The RS256 key (JWK alg RS256) used with PS256: the key does not allow it.
    let all = idp.validator(&clock);
    let ps = SigningKey::ps256("rs");
    let error = all.validate(&ps.sign(&claims)).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidToken(InvalidToken::KeyAlgorithmMismatch { .. })
        ),
        "{error:?}"
    );
    // An ES256 header on the RSA key's kid.
    let token = es.sign_raw(
        &json!({"alg": "ES256", "kid": "rs"}).to_string(),
        &claims.to_string(),
    );
    let error = all.validate(&token).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidToken(InvalidToken::KeyAlgorithmMismatch { .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_token_without_kid_needs_exactly_one_candidate_key() {
    let es = SigningKey::es256("es");
    let idp = FakeIdp::start(&[&es]).await;
    let clock = MockClock::at_system_time();
    let validator = idp.validator(&clock);
    let claims = idp.claims(&clock).to_string();
    validator
        .validate(&es.sign_raw(r#"{"alg":"ES256"}"#, &claims))
        .await
        .unwrap();

    let second = SigningKey::es256("es2");
    idp.set_keys(&[&es, &second]);
    validator.refresh_keys().await.unwrap();
    let error = validator
        .validate(&es.sign_raw(r#"{"alg":"ES256"}"#, &claims))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidToken(InvalidToken::AmbiguousKey(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_typ_header_is_checked_when_required() {
    let key = SigningKey::es256("k");
    let idp = FakeIdp::start(&[&key]).await;
    let clock = MockClock::at_system_time();
    let validator = idp
        .validator_builder(&clock)
        .required_typ("at+jwt")
        .build()
        .unwrap();
    let claims = idp.claims(&clock).to_string();
    for (typ, accepted) in [
        (Some("at+jwt"), true),
        (Some("application/at+jwt"), true),
        (Some("AT+JWT"), true),
        (Some("JWT"), false),
        (Some("id_token+jwt"), false),
        (None, false),
    ] {
        let mut header = json!({"alg": "ES256", "kid": "k"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        let result = validator
            .validate(&key.sign_raw(&header.to_string(), &claims))
            .await;
        assert_eq!(result.is_ok(), accepted, "{typ:?}: {result:?}");
        if !accepted {
            assert!(matches!(
                result,
                Err(Error::InvalidToken(InvalidToken::WrongType { .. }))
            ));
        }
    }
}

/// Claim sets shaped like those Keycloak, Entra ID (v2), Auth0 and the bundled token service
/// issue (member names and kinds from their documentation; values made up), each given the
/// test issuer, this API's audience (as if the API's id were also an OpenID client's) and a
/// live `exp`. The `typ` header is each issuer's: `JWT`, except RFC 9068 access tokens.
fn real_shaped(setup: &Setup, shape: Value) -> Value {
    let mut claims = shape;
    let now = scopegate_validator::Clock::now(&setup.clock).as_secs();
    claims["iss"] = json!(setup.idp.issuer);
    claims["aud"] = json!(AUDIENCE);
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 300);
    claims
}

#[tokio::test]
async fn id_tokens_are_never_access_tokens_whatever_their_audience() {
    let setup = setup(SigningKey::es256("k")).await;
    let access_tokens = [
        (
            "Keycloak access token",
            "JWT",
            json!({
            "jti": "4f0e", "sub": "8c1b", "typ": "Bearer", "azp": "web", "session_state": "a1",
            "acr": "1", "auth_time": 1, "realm_access": {"roles": ["user"]},
            "scope": "openid profile email", "sid": "a1", "preferred_username": "jane"}),
        ),
        (
            "Entra ID access token (delegated)",
            "JWT",
            json!({
            "aio": "x", "azp": "6e74", "azpacr": "0", "name": "Jane", "oid": "690a",
            "preferred_username": "jane@contoso.test", "rh": "0.A", "scp": "access_as_user",
            "sub": "AAAA", "tid": "9188", "uti": "fqiB", "ver": "2.0", "nbf": 1}),
        ),
        (
            "Entra ID access token (app-only)",
            "JWT",
            json!({
            "aio": "x", "azp": "6e74", "azpacr": "1", "oid": "1a2b", "rh": "0.A",
            "roles": ["Orders.Read"], "sub": "1a2b", "tid": "9188", "uti": "q", "ver": "2.0"}),
        ),
        (
            "Auth0 access token",
            "JWT",
            json!({
            "sub": "auth0|64f1", "azp": "Xy1", "scope": "openid profile read:orders"}),
        ),
        (
            "Auth0 machine-to-machine token",
            "JWT",
            json!({
            "sub": "Xy1@clients", "azp": "Xy1", "scope": "read:orders",
            "gty": "client-credentials"}),
        ),
        (
            "RFC 9068 access token",
            "at+jwt",
            json!({
            "sub": "u", "client_id": "c", "jti": "j", "scope": "openid"}),
        ),
    ];
    for (name, typ, shape) in access_tokens {
        let header = json!({ "alg": "ES256", "kid": "k", "typ": typ });
        let token = setup.sign_with(header, real_shaped(&setup, shape));
        assert!(
            setup.validator.validate(&token).await.is_ok(),
            "{name} refused"
        );
    }

    let id_tokens = [
        (
            "Keycloak id_token",
            json!({
            "jti": "77aa", "sub": "8c1b", "typ": "ID", "azp": "web", "nonce": "n-0S6",
            "session_state": "a1", "at_hash": "lXXQ", "acr": "1", "sid": "a1",
            "email_verified": true, "preferred_username": "jane"}),
        ),
        (
            "Entra ID id_token (no nonce requested)",
            json!({
            "aio": "x", "name": "Jane", "oid": "690a", "preferred_username": "jane@contoso.test",
            "rh": "0.A", "sub": "AAAA", "tid": "9188", "uti": "fqiB", "ver": "2.0", "nbf": 1}),
        ),
        (
            "Auth0 id_token",
            json!({
            "nickname": "jane", "name": "jane@example.test", "picture": "https://s.test/p.png",
            "updated_at": "2026-11-30T10:00:00.000Z", "email": "jane@example.test",
            "email_verified": true, "sub": "auth0|64f1", "sid": "Hk3", "nonce": "n-0S6"}),
        ),
        (
            "Auth0 id_token (no nonce)",
            json!({
            "nickname": "jane", "name": "jane@example.test", "sub": "auth0|64f1", "sid": "Hk3"}),
        ),
        (
            "token service id_token",
            json!({
            "sub": "jane", "azp": "web", "auth_time": 1, "sid": "s", "nonce": "n",
            "at_hash": "77QmUPtjPfzWtF2AnpK9RQ", "email": "jane@example.test"}),
        ),
    ];
    for (name, shape) in id_tokens {
        let header = json!({ "alg": "ES256", "kid": "k", "typ": "JWT" });
        let token = setup.sign_with(header, real_shaped(&setup, shape));
        match setup.validator.validate(&token).await {
            Err(Error::InvalidToken(InvalidToken::NotAnAccessToken(_))) => {}
            other => panic!("{name}: {other:?}"),
        }
    }

    // Another explicit type is refused before any key is used.
    let logout = setup.sign_with(
        json!({ "alg": "ES256", "kid": "k", "typ": "logout+jwt" }),
        real_shaped(&setup, json!({ "sub": "u", "scope": "openid" })),
    );
    assert!(matches!(
        setup.validator.validate(&logout).await,
        Err(Error::InvalidToken(InvalidToken::NotAnAccessToken(_)))
    ));

    // The named opt-out takes them all, as before.
    let any = setup
        .idp
        .validator_builder(&setup.clock)
        .dangerous_accept_any_token_type()
        .build()
        .unwrap();
    let id_token = setup.sign_with(
        json!({ "alg": "ES256", "kid": "k", "typ": "JWT" }),
        real_shaped(&setup, json!({ "sub": "jane", "nonce": "n" })),
    );
    assert!(any.validate(&id_token).await.is_ok());
}

const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

#[tokio::test]
async fn a_bound_tokens_key_thumbprint_is_read_from_cnf() {
    let setup = setup(SigningKey::es256("k")).await;
    let mut claims = setup.claims();
    claims["cnf"] = json!({ "jkt": JKT });
    let principal = setup
        .validator
        .validate(&setup.key.sign(&claims))
        .await
        .unwrap();
    assert_eq!(principal.bound_key_thumbprint(), Some(JKT));
    let unbound = setup
        .validator
        .validate(&setup.key.sign(&setup.claims()))
        .await
        .unwrap();
    assert_eq!(unbound.bound_key_thumbprint(), None);
    // Another confirmation method only: no DPoP key, but the claim stays for the bearer rule.
    claims["cnf"] = json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" });
    let mtls = setup
        .validator
        .validate(&setup.key.sign(&claims))
        .await
        .unwrap();
    assert_eq!(mtls.bound_key_thumbprint(), None);
    assert!(mtls.claim("cnf").is_some());
}

#[tokio::test]
async fn a_malformed_cnf_is_an_invalid_token_not_an_unbound_one() {
    let setup = setup(SigningKey::es256("k")).await;
    for cnf in [
        json!("jkt"),
        json!([JKT]),
        json!(null),
        json!({ "jkt": 5 }),
        json!({ "jkt": { "value": JKT } }),
        json!({ "jkt": "" }),
        json!({ "jkt": "short" }),
        json!({ "jkt": format!("{}=", &JKT[..42]) }),
    ] {
        let mut claims = setup.claims();
        claims["cnf"] = cnf.clone();
        let reason = setup.invalid(&setup.key.sign(&claims)).await;
        assert!(
            matches!(reason, InvalidToken::Claim { name: "cnf", .. }),
            "{cnf}: {reason:?}"
        );
    }
}
