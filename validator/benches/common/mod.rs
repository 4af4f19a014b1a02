//! Shared by the validator's benchmarks.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::support::SigningKey;

/// Runs a future that must not wait (keys are already cached): no executor in the measurement.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the measured path awaited"),
    }
}

/// The key parsed the way the validator parses it, for the bare signature check.
pub(crate) fn bare_verifier(key: &SigningKey) -> ParsedPublicKey {
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
