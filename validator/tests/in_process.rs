//! Keys and introspection answers handed over in-process (an authorization server guarding its
//! own routes), and the two options such a server needs: any audience, expired tokens. No HTTP
//! server is involved: a request to one would fail, so these tests show none is made.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use scopegate_validator::{
    Algorithm, BoxFuture, Clock as _, Error, FetchError, IntrospectionSource, InvalidToken,
    KeySource, MockClock, Validator,
};
use serde_json::{Map, Value, json};
use support::{SigningKey, jwks_of};

/// An issuer URL where nothing listens (port 9 is discard): any HTTP attempt would fail.
const ISSUER: &str = "http://127.0.0.1:9";

#[derive(Debug, Default)]
struct Keys {
    document: Mutex<Value>,
    reads: AtomicUsize,
    failing: Mutex<bool>,
}

#[derive(Debug, Clone, Default)]
struct SharedKeys(Arc<Keys>);

impl KeySource for SharedKeys {
    fn jwks(&self) -> Result<Vec<u8>, FetchError> {
        self.0.reads.fetch_add(1, Ordering::SeqCst);
        if *self.0.failing.lock().unwrap() {
            return Err(FetchError::InProcess {
                what: "key source",
                message: "the store is down".to_owned(),
            });
        }
        Ok(self.0.document.lock().unwrap().to_string().into_bytes())
    }
}

fn keys_of(keys: &[&SigningKey]) -> SharedKeys {
    let shared = SharedKeys::default();
    *shared.0.document.lock().unwrap() = jwks_of(keys);
    shared
}

fn claims(clock: &MockClock, audience: &str) -> Value {
    let now = clock.now().as_secs();
    json!({
        "iss": ISSUER, "sub": "user-1", "aud": audience, "client_id": "client-1",
        "iat": now, "exp": now + 600, "jti": "t-1", "scope": "openid",
    })
}

fn builder(clock: &MockClock, keys: &SharedKeys) -> scopegate_validator::ValidatorBuilder {
    Validator::builder()
        .issuer(ISSUER)
        .audience("api")
        .algorithms(Algorithm::ALL)
        .clock(clock.clone())
        .key_source(keys.clone())
}

fn invalid(result: Result<Arc<scopegate_validator::Principal>, Error>) -> InvalidToken {
    match result {
        Err(Error::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn keys_from_a_key_source_verify_without_any_fetch() {
    let key = SigningKey::es256("k1");
    let keys = keys_of(&[&key]);
    let clock = MockClock::at_system_time();
    let validator = builder(&clock, &keys).build().unwrap();
    let principal = validator
        .validate(&key.sign(&claims(&clock, "api")))
        .await
        .unwrap();
    assert_eq!(principal.subject(), Some("user-1"));
    assert_eq!(keys.0.reads.load(Ordering::SeqCst), 1);
    // A key it does not hold is still refused, and a forged signature too.
    let stranger = SigningKey::es256("k2");
    assert_eq!(
        invalid(
            validator
                .validate(&stranger.sign(&claims(&clock, "api")))
                .await
        ),
        InvalidToken::UnknownKey("k2".to_owned())
    );
    let impostor = SigningKey::es256("k1");
    assert!(matches!(
        invalid(
            validator
                .validate(&impostor.sign(&claims(&clock, "api")))
                .await
        ),
        InvalidToken::BadSignature
    ));
}

#[tokio::test]
async fn refresh_keys_rereads_the_source_and_drops_withdrawn_keys() {
    let (old, new) = (SigningKey::es256("old"), SigningKey::es256("new"));
    let keys = keys_of(&[&old]);
    let clock = MockClock::at_system_time();
    let validator = builder(&clock, &keys).build().unwrap();
    let signed_by_old = old.sign(&claims(&clock, "api"));
    validator.validate(&signed_by_old).await.unwrap();

    *keys.0.document.lock().unwrap() = jwks_of(&[&new]);
    assert_eq!(validator.refresh_keys().await.unwrap(), 1);
    validator
        .validate(&new.sign(&claims(&clock, "api")))
        .await
        .unwrap();
    // The verified-token cache holds the old token no longer: its key left the set.
    assert!(validator.cached(&signed_by_old).is_none());
    assert!(validator.validate(&signed_by_old).await.is_err());
}

#[tokio::test]
async fn a_failing_key_source_is_unavailable_not_invalid() {
    let key = SigningKey::es256("k1");
    let keys = keys_of(&[&key]);
    *keys.0.failing.lock().unwrap() = true;
    let clock = MockClock::at_system_time();
    let validator = builder(&clock, &keys).build().unwrap();
    let result = validator.validate(&key.sign(&claims(&clock, "api"))).await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn a_key_source_and_a_jwks_url_are_not_both_accepted() {
    let clock = MockClock::at_system_time();
    let error = builder(&clock, &SharedKeys::default())
        .jwks_url("http://127.0.0.1:9/jwks")
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "key_source");
}

#[tokio::test]
async fn any_audience_must_be_asked_for_and_still_needs_a_well_formed_aud() {
    let key = SigningKey::es256("k1");
    let keys = keys_of(&[&key]);
    let clock = MockClock::at_system_time();
    // Without it, no audience configured is a build error, and another audience is refused.
    let error = Validator::builder()
        .issuer(ISSUER)
        .algorithms(Algorithm::ALL)
        .key_source(keys.clone())
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "audience");
    let strict = builder(&clock, &keys).build().unwrap();
    assert_eq!(
        invalid(strict.validate(&key.sign(&claims(&clock, "other"))).await),
        InvalidToken::WrongAudience
    );

    let any = Validator::builder()
        .issuer(ISSUER)
        .algorithms(Algorithm::ALL)
        .clock(clock.clone())
        .key_source(keys.clone())
        .dangerous_accept_any_audience()
        .build()
        .unwrap();
    let principal = any
        .validate(&key.sign(&claims(&clock, "other")))
        .await
        .unwrap();
    assert_eq!(principal.audiences(), ["other".to_owned()]);
    let mut no_aud = claims(&clock, "x");
    no_aud.as_object_mut().unwrap().remove("aud");
    assert!(matches!(
        invalid(any.validate(&key.sign(&no_aud)).await),
        InvalidToken::Claim { name: "aud", .. }
    ));
}

#[tokio::test]
async fn expired_tokens_pass_only_with_the_named_option_and_exp_stays_required() {
    let key = SigningKey::es256("k1");
    let keys = keys_of(&[&key]);
    let clock = MockClock::at_system_time();
    let token = key.sign(&claims(&clock, "api"));
    let strict = builder(&clock, &keys).build().unwrap();
    let lenient = builder(&clock, &keys)
        .dangerous_accept_expired()
        .build()
        .unwrap();
    clock.advance(std::time::Duration::from_secs(3600));
    assert_eq!(
        invalid(strict.validate(&token).await),
        InvalidToken::Expired
    );
    lenient.validate(&token).await.unwrap();
    // Nothing expired is ever answered from a cache.
    assert!(lenient.cached(&token).is_none());
    let mut no_exp = claims(&clock, "api");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        invalid(lenient.validate(&key.sign(&no_exp)).await),
        InvalidToken::Claim { name: "exp", .. }
    ));
    // The signature is still checked.
    let forged = SigningKey::es256("k1").sign(&claims(&clock, "api"));
    assert!(lenient.validate(&forged).await.is_err());
}

/// Answers from a map of token → answer; counts the calls; fails while `down`.
#[derive(Debug, Default)]
struct AnswerBook {
    answers: Mutex<Map<String, Value>>,
    calls: AtomicUsize,
    down: Mutex<bool>,
}

#[derive(Debug, Clone, Default)]
struct Answers(Arc<AnswerBook>);

impl IntrospectionSource for Answers {
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Map<String, Value>, FetchError>> {
        Box::pin(async move {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            if *self.0.down.lock().unwrap() {
                return Err(FetchError::InProcess {
                    what: "introspection source",
                    message: "the store is down".to_owned(),
                });
            }
            let answers = self.0.answers.lock().unwrap();
            Ok(match answers.get(token) {
                Some(Value::Object(answer)) => answer.clone(),
                _ => json!({ "active": false }).as_object().unwrap().clone(),
            })
        })
    }
}

#[tokio::test]
async fn an_introspection_source_is_asked_every_time_so_a_revocation_is_seen_at_once() {
    let key = SigningKey::es256("k1");
    let keys = keys_of(&[&key]);
    let clock = MockClock::at_system_time();
    let answers = Answers::default();
    let validator = builder(&clock, &keys)
        .introspection_source(answers.clone())
        .introspect_jwts(true)
        .build()
        .unwrap();
    let jwt = key.sign(&claims(&clock, "api"));
    let mut active = claims(&clock, "api");
    active["active"] = json!(true);
    answers
        .0
        .answers
        .lock()
        .unwrap()
        .insert("opaque-1".to_owned(), active.clone());
    answers
        .0
        .answers
        .lock()
        .unwrap()
        .insert(jwt.clone(), active);

    for _ in 0..3 {
        validator.validate("opaque-1").await.unwrap();
        validator.validate(&jwt).await.unwrap();
    }
    assert_eq!(answers.0.calls.load(Ordering::SeqCst), 6, "never cached");
    assert!(validator.cached("opaque-1").is_none());
    assert!(validator.cached(&jwt).is_none());

    answers.0.answers.lock().unwrap().clear();
    assert_eq!(
        invalid(validator.validate("opaque-1").await),
        InvalidToken::Inactive
    );
    assert_eq!(
        invalid(validator.validate(&jwt).await),
        InvalidToken::Inactive
    );
}

#[tokio::test]
async fn an_introspection_source_answer_is_checked_like_any_other() {
    let clock = MockClock::at_system_time();
    let answers = Answers::default();
    let validator = builder(&clock, &SharedKeys::default())
        .introspection_source(answers.clone())
        .build()
        .unwrap();
    let mut other_audience = claims(&clock, "other");
    other_audience["active"] = json!(true);
    let mut not_boolean = claims(&clock, "api");
    not_boolean["active"] = json!("yes");
    {
        let mut map = answers.0.answers.lock().unwrap();
        map.insert("for-another-api".to_owned(), other_audience);
        map.insert("odd-answer".to_owned(), not_boolean);
    }
    assert_eq!(
        invalid(validator.validate("for-another-api").await),
        InvalidToken::WrongAudience
    );
    let odd = validator.validate("odd-answer").await;
    assert!(matches!(odd, Err(Error::Unavailable(_))), "{odd:?}");
    *answers.0.down.lock().unwrap() = true;
    let down = validator.validate("for-another-api").await;
    assert!(matches!(down, Err(Error::Unavailable(_))), "{down:?}");
}

#[tokio::test]
async fn an_introspection_source_takes_no_credentials_or_endpoint() {
    let clock = MockClock::at_system_time();
    let with_credentials = builder(&clock, &SharedKeys::default())
        .introspection_source(Answers::default())
        .introspection("api", "secret")
        .build()
        .unwrap_err();
    assert_eq!(with_credentials.field(), "introspection_source");
    let with_endpoint = builder(&clock, &SharedKeys::default())
        .introspection_source(Answers::default())
        .introspection_endpoint("http://127.0.0.1:9/introspect")
        .build()
        .unwrap_err();
    assert_eq!(with_endpoint.field(), "introspection_source");
}
