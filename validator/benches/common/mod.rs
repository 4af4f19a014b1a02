//! Shared by the validator's benchmarks.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use scopegate_validator::{MockClock, Validator};

use crate::support::{FakeIdp, SigningKey};

/// Nanoseconds per call of `f`, over `iterations` calls.
pub(crate) fn time(iterations: u32, mut f: impl FnMut()) -> f64 {
    let started = std::time::Instant::now();
    for _ in 0..iterations {
        f();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// Runs a future that must not wait (keys are already cached): no executor in the measurement.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the measured path awaited"),
    }
}

/// The key parsed the way the validator parses it, for the bare signature check.
fn bare_verifier(key: &SigningKey) -> ParsedPublicKey {
    let jwk = key.jwk();
    let bytes = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    match key.alg {
        "RS256" => RsaPublicKeyComponents {
            n: bytes("n"),
            e: bytes("e"),
        }
        .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
        .unwrap(),
        "ES256" => {
            let mut point = vec![4];
            point.extend(bytes("x"));
            point.extend(bytes("y"));
            ParsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        _ => ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, bytes("x")).unwrap(),
    }
}

/// One algorithm's setup: a fake IdP publishing `key`, a validator with the verified-token cache
/// off (cold) and one with it on (warm), both holding the keys, and a token with its signing
/// input, decoded signature and bare verifier.
pub(crate) struct Fixture {
    pub(crate) key: SigningKey,
    pub(crate) cold: Validator,
    pub(crate) warm: Validator,
    pub(crate) token: String,
    pub(crate) signature: Vec<u8>,
    pub(crate) bare: ParsedPublicKey,
    _idp: FakeIdp,
}

impl Fixture {
    pub(crate) fn new(runtime: &tokio::runtime::Runtime, key: SigningKey) -> Self {
        let clock = MockClock::at_system_time();
        let (idp, cold, warm) = runtime.block_on(async {
            let idp = FakeIdp::start(&[&key]).await;
            let cold = idp
                .validator_builder(&clock)
                .without_verified_token_cache()
                .build()
                .unwrap();
            let warm = idp.validator(&clock);
            cold.refresh_keys().await.unwrap();
            warm.refresh_keys().await.unwrap();
            (idp, cold, warm)
        });
        let token = key.sign(&idp.claims(&clock));
        let signature = URL_SAFE_NO_PAD
            .decode(token.rsplit_once('.').unwrap().1)
            .unwrap();
        let bare = bare_verifier(&key);
        Self {
            key,
            cold,
            warm,
            token,
            signature,
            bare,
            _idp: idp,
        }
    }

    pub(crate) fn signing_input(&self) -> &str {
        self.token.rsplit_once('.').unwrap().0
    }

    /// The three algorithms the issue measures.
    pub(crate) fn keys() -> [SigningKey; 3] {
        [
            SigningKey::rs256("rs"),
            SigningKey::es256("es"),
            SigningKey::eddsa("ed"),
        ]
    }
}
