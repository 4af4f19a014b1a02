//! DPoP's cost on a warm route: the same route, the same layer (`DpopMode::Allowed`), one
//! request with a cached bearer token, one with a cached DPoP-bound token and a fresh proof —
//! alternating in short rounds, the ratio taken per round so a noisy neighbour slows both
//! sides alike. Then what the DPoP side is made of: the bare signature check of the proof,
//! `verify_proof` (parsing, thumbprint, key import, signature, claims), and the replay-cache
//! insert. ES256, EdDSA and RS256 proofs.
//!
//! Run with: `cargo bench -p tower-scopegate --bench dpop` (`ROUNDS` overrides 21 rounds;
//! `ONLY=EdDSA` runs one algorithm, for profiling).

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../validator/tests/support/mod.rs"]
mod support;

#[path = "../tests/support/dpop_client.rs"]
mod dpop_client;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents,
};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dpop_client::DpopClient;
use scopegate_validator::dpop::{DpopRequest, ReplayCache, verify_proof};
use scopegate_validator::{Algorithm, Clock as _, MockClock};
use serde_json::json;
use support::{FakeIdp, SigningKey};
use tower::{ServiceBuilder, ServiceExt};
use tower_scopegate::{DpopSettings, ScopeLayer};

const ORIGIN: &str = "https://api.example.test";
const URL: &str = "https://api.example.test/r";
/// DPoP requests per round (each needs a proof made beforehand, outside the timing).
const PROOFS_PER_ROUND: usize = 200;
const BEARER_PER_ROUND: usize = 4000;

/// Runs a future that must not wait (the token is cached): no executor in the measurement.
fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the measured path awaited"),
    }
}

/// Nanoseconds per item of `items`, each handed to `f`: timed in chunks of about 0.5 ms and
/// the median chunk taken, so that a chunk during which a neighbour held the core (this machine
/// is shared) does not count.
fn time_each<T>(items: Vec<T>, mut f: impl FnMut(T)) -> f64 {
    let mut items = items.into_iter().peekable();
    let mut per_item = Vec::new();
    let mut chunk = 1;
    while items.peek().is_some() {
        let started = Instant::now();
        let mut done = 0;
        for item in items.by_ref().take(chunk) {
            f(item);
            done += 1;
        }
        let elapsed = started.elapsed();
        per_item.push(elapsed.as_nanos() as f64 / f64::from(done));
        // Aim at 0.5 ms per chunk from what the first items cost.
        if per_item.len() == 1 {
            let nanos = per_item[0].max(1.0);
            chunk = ((500_000.0 / nanos) as usize).clamp(1, 1000);
        }
    }
    median(&mut per_item)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 4], values[values.len() * 3 / 4])
}

/// The proof key parsed once, for the bare signature check: the floor of any DPoP verifier on
/// this backend.
fn bare_verifier(key: &SigningKey) -> ParsedPublicKey {
    let jwk = key.bare_jwk();
    let bytes = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    match key.alg {
        "RS256" => RsaPublicKeyComponents {
            n: bytes("n"),
            e: bytes("e"),
        }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .unwrap(),
        "ES256" => {
            let mut point = vec![4];
            point.extend(bytes("x"));
            point.extend(bytes("y"));
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        _ => ParsedPublicKey::new(&ED25519, bytes("x")).unwrap(),
    }
}

fn bearer_request(token: &str) -> Request<Body> {
    Request::get("/r")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn dpop_request(token: &str, proof: String) -> Request<Body> {
    Request::get("/r")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Body::empty())
        .unwrap()
}

fn main() {
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(21);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let issuer_key = SigningKey::es256("bench");
    let clock = MockClock::at_system_time();
    let (idp, validator) = runtime.block_on(async {
        let idp = FakeIdp::start(&[&issuer_key]).await;
        let validator = idp.validator(&clock);
        validator.refresh_keys().await.unwrap();
        (idp, validator)
    });
    let echo = |_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::from("ok"))) };
    let requirement = ["akamai:social_profile:read"];
    let plain = ServiceBuilder::new()
        .layer(ScopeLayer::all_of(&validator, requirement).unwrap())
        .service_fn(echo);

    println!(
        "{rounds} alternating rounds per proof algorithm (in-process, service_fn + ScopeLayer, futures polled once); medians"
    );
    println!(
        "{:6} {:>13} {:>13} {:>10} {:>17} {:>11} {:>13} {:>11}",
        "alg", "bearer", "DPoP", "DPoP/bearer", "IQR", "bare sig", "verify_proof", "replay insert"
    );
    let mut bearer_only = Vec::new();
    let only = std::env::var("ONLY").ok();
    let clients = [
        DpopClient::es256(),
        DpopClient::eddsa(),
        DpopClient::rs256(),
    ];
    for client in clients
        .into_iter()
        .filter(|client| only.as_ref().is_none_or(|only| client.key.alg == only))
    {
        let settings = DpopSettings::new(ORIGIN).unwrap();
        let layered = ServiceBuilder::new()
            .layer(
                ScopeLayer::all_of(&validator, requirement)
                    .unwrap()
                    .dpop(settings),
            )
            .service_fn(echo);
        let unbound = issuer_key.sign(&idp.claims(&clock));
        let mut claims = idp.claims(&clock);
        claims["cnf"] = json!({ "jkt": client.jkt() });
        let bound = issuer_key.sign(&claims);
        // Both tokens cached, both paths answering 200 before anything is timed.
        ready(validator.validate(&unbound)).unwrap();
        ready(validator.validate(&bound)).unwrap();
        let proof = client.proof(&clock, "GET", URL, &bound);
        let response = ready(layered.clone().oneshot(dpop_request(&bound, proof))).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = ready(layered.clone().oneshot(bearer_request(&unbound))).unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let bare = bare_verifier(&client.key);
        let sample = client.proof(&clock, "GET", URL, &bound);
        let (signing_input, signature) = sample.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let checks = DpopRequest {
            method: "GET",
            url: URL,
            access_token: Some(bound.as_str()),
            nonce: None,
            now: clock.now(),
            window: Duration::from_secs(60),
            algorithms: &Algorithm::ALL,
        };

        let (mut bearers, mut dpops, mut ratios) = (vec![], vec![], vec![]);
        let (mut bares, mut parses, mut inserts) = (vec![], vec![], vec![]);
        let (mut plains, mut plain_ratios) = (vec![], vec![]);
        // Every round's proofs made first: signing (an RSA signature costs ~1 ms) between the
        // timed runs would leave them on a busier, colder machine than the runs before it.
        let mut all_proofs: Vec<Vec<String>> = (0..rounds)
            .map(|_| {
                (0..PROOFS_PER_ROUND)
                    .map(|_| client.proof(&clock, "GET", URL, &bound))
                    .collect()
            })
            .collect();
        for round in 0..rounds {
            let proofs = all_proofs.pop().unwrap();
            let dpop_requests: Vec<Request<Body>> = proofs
                .iter()
                .map(|proof| dpop_request(&bound, proof.clone()))
                .collect();
            let bearer_requests: Vec<Request<Body>> = (0..BEARER_PER_ROUND)
                .map(|_| bearer_request(&unbound))
                .collect();
            let plain_requests: Vec<Request<Body>> = (0..BEARER_PER_ROUND)
                .map(|_| bearer_request(&unbound))
                .collect();

            let mut bearer_run = Some(bearer_requests);
            let mut plain_run = Some(plain_requests);
            let (mut bearer_ns, mut plain_ns) = (0.0, 0.0);
            // The two bearer variants take turns going first: neither always follows the DPoP
            // run (whose proofs leave the caches cold).
            let mut bearer_variants = |first: bool| {
                if let Some(requests) = bearer_run.take_if(|_| first == (round % 2 == 0)) {
                    bearer_ns = time_each(requests, |request| {
                        let response = ready(layered.clone().oneshot(request)).unwrap();
                        debug_assert_eq!(response.status(), StatusCode::OK);
                        black_box(response);
                    });
                }
                if let Some(requests) = plain_run.take_if(|_| first == (round % 2 == 1)) {
                    plain_ns = time_each(requests, |request| {
                        black_box(ready(plain.clone().oneshot(request)).unwrap());
                    });
                }
            };
            bearer_variants(true);
            let dpop_ns = time_each(dpop_requests, |request| {
                let response = ready(layered.clone().oneshot(request)).unwrap();
                debug_assert_eq!(response.status(), StatusCode::OK);
                black_box(response);
            });
            bearer_variants(false);
            let bare_ns = time_each(vec![(); PROOFS_PER_ROUND], |()| {
                bare.verify_sig(black_box(signing_input.as_bytes()), black_box(&signature))
                    .unwrap();
            });
            // The proofs of this round again: verify_proof alone keeps no state.
            let verified: Vec<_> = proofs.iter().map(|proof| proof.as_str()).collect();
            let mut accepted = Vec::with_capacity(PROOFS_PER_ROUND);
            let parse_ns = time_each(verified, |proof| {
                accepted.push(verify_proof(black_box(proof), &checks).unwrap());
            });
            let replay = ReplayCache::new(100_000, Duration::from_secs(60)).unwrap();
            let now = clock.now();
            let insert_ns = time_each(accepted, |proof| {
                replay.first_use(black_box(&proof), now).unwrap();
            });
            ratios.push(dpop_ns / bearer_ns);
            plain_ratios.push(bearer_ns / plain_ns);
            bearers.push(bearer_ns);
            dpops.push(dpop_ns);
            plains.push(plain_ns);
            bares.push(bare_ns);
            parses.push(parse_ns);
            inserts.push(insert_ns);
        }
        let (low, high) = quartiles(&mut ratios.clone());
        println!(
            "{:6} {:>11.0}ns {:>11.2}µs {:>10.1}× {:>8.1}–{:<7.1} {:>9.2}µs {:>11.2}µs {:>11.0}ns",
            client.key.alg,
            median(&mut bearers),
            median(&mut dpops) / 1000.0,
            median(&mut ratios),
            low,
            high,
            median(&mut bares) / 1000.0,
            median(&mut parses) / 1000.0,
            median(&mut inserts),
        );
        bearer_only.push((median(&mut plains), median(&mut plain_ratios)));
    }
    println!();
    for (plain_ns, ratio) in bearer_only {
        println!(
            "bearer on a route without DPoP settings: {plain_ns:.0}ns; with DPoP allowed ÷ without: {ratio:.3}×"
        );
    }
    drop(idp);
}
