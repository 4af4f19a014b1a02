//! Two token-service processes sharing one Postgres database (a fresh one per test), reached
//! over loopback: whatever one instance issues or decides, the other honours, and every
//! one-time rule holds across them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::cluster::*;
use support::postgres::TestDatabase;
use support::*;

/// Two instances, A and B, of one configuration on one fresh database. The issuer is A's URL
/// (what a load balancer's would be): both sign and check tokens as that issuer.
pub struct Pair {
    pub a: Instance,
    pub b: Instance,
    _dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl Pair {
    async fn start() -> Self {
        Self::start_with(|config| config).await
    }

    async fn start_with(adjust: impl Fn(String) -> String) -> Self {
        let database = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let (port_a, port_b) = (free_port(), free_port());
        let issuer = format!("http://127.0.0.1:{port_a}");
        let config = config_text(&issuer, "ES256").replace(
            "storage = \"sqlite::memory:\"",
            &format!("storage = \"{}\"", database.url),
        );
        let path: PathBuf = dir.path().join("config.toml");
        std::fs::write(&path, adjust(config)).unwrap();
        // Started together, as a deployment would: they race to migrate and to create the
        // first key, and must agree.
        let (a, b) = tokio::join!(
            Instance::start(&path, port_a),
            Instance::start(&path, port_b)
        );
        Self {
            a,
            b,
            _dir: dir,
            _database: database,
        }
    }
}

#[tokio::test]
async fn a_token_issued_by_one_instance_introspects_and_revokes_at_the_other() {
    let pair = Pair::start().await;
    // Both instances publish the same keys and agree on the signing key.
    let jwks_a: Value = http()
        .get(format!("{}/.well-known/jwks.json", pair.a.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_b: Value = http()
        .get(format!("{}/.well-known/jwks.json", pair.b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_a, jwks_b);
    assert_eq!(
        jwks_a["keys"].as_array().unwrap().len(),
        1,
        "one first key for both"
    );

    for client in [OPAQUE_CLIENT, JWT_CLIENT] {
        let token = client_token(&pair.a, client).await;
        assert_eq!(
            introspect(&pair.b, &token).await["active"],
            true,
            "{}",
            client.0
        );
        let (status, _) = post(
            &format!("{}/revoke", pair.b.url),
            Some(client),
            format!("token={}", form_encode(&token)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            introspect(&pair.a, &token).await,
            serde_json::json!({"active": false})
        );
        assert_eq!(
            introspect(&pair.b, &token).await,
            serde_json::json!({"active": false})
        );
    }
}

#[tokio::test]
async fn a_session_and_a_code_from_one_instance_are_honoured_by_the_other() {
    let pair = Pair::start().await;
    let (code, session) = sign_in(&pair.a).await;
    let (status, tokens) = redeem(&pair.b, &code).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a code issued by A is redeemed at B: {tokens}"
    );
    assert!(tokens["id_token"].is_string());
    // The session made at A gives a code at B without signing in again.
    let second = code_with_session(&pair.b, &session).await;
    let (status, _) = redeem(&pair.a, &second).await;
    assert_eq!(status, StatusCode::OK);
    // A refresh token from B works at A.
    let (status, refreshed) = refresh(&pair.a, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
}

#[tokio::test]
async fn of_twenty_concurrent_redemptions_over_both_instances_exactly_one_succeeds() {
    let pair = Pair::start().await;
    let (code, _) = sign_in(&pair.a).await;
    let urls = [pair.a.url.clone(), pair.b.url.clone()];
    let mut attempts = tokio::task::JoinSet::new();
    for index in 0..20 {
        let (url, code) = (urls[index % 2].clone(), code.clone());
        attempts.spawn(async move {
            post(
                &format!("{url}/token"),
                None,
                format!(
                    "grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                    form_encode(REDIRECT)
                ),
            )
            .await
        });
    }
    let answers = attempts.join_all().await;
    let successes: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, json)| json)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, json)| {
            *status == StatusCode::BAD_REQUEST && json["error"] == "invalid_grant"
        })
        .count();
    println!(
        "20 concurrent redemptions over 2 instances: {} succeeded, {refused} invalid_grant",
        successes.len()
    );
    assert_eq!((successes.len(), refused), (1, 19));
    // The replays revoked what the one success issued.
    let (status, json) = refresh(&pair.b, successes[0]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn of_twenty_concurrent_refreshes_over_both_instances_exactly_one_succeeds_and_reuse_revokes_the_family()
 {
    let pair = Pair::start().await;
    let (code, _) = sign_in(&pair.a).await;
    let (status, tokens) = redeem(&pair.a, &code).await;
    assert_eq!(status, StatusCode::OK);
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let urls = [pair.a.url.clone(), pair.b.url.clone()];
    let mut attempts = tokio::task::JoinSet::new();
    for index in 0..20 {
        let (url, token) = (urls[index % 2].clone(), refresh_token.clone());
        attempts.spawn(async move {
            post(
                &format!("{url}/token"),
                None,
                format!("grant_type=refresh_token&client_id=web-app&refresh_token={token}"),
            )
            .await
        });
    }
    let answers = attempts.join_all().await;
    let successes: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, json)| json)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, json)| {
            *status == StatusCode::BAD_REQUEST && json["error"] == "invalid_grant"
        })
        .count();
    println!(
        "20 concurrent refreshes over 2 instances: {} succeeded, {refused} invalid_grant",
        successes.len()
    );
    assert_eq!((successes.len(), refused), (1, 19));
    // The 19 reuses revoked the family: the one successor is dead too, at either instance.
    let successor = successes[0]["refresh_token"].as_str().unwrap();
    for instance in [&pair.a, &pair.b] {
        let (status, json) = refresh(instance, successor).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }
}

#[tokio::test]
async fn failed_sign_ins_at_both_instances_add_up_to_one_limit() {
    let pair = Pair::start().await;
    // Five failures, spread over the two instances: the limit for one user.
    for attempt in 0..5 {
        let instance = if attempt % 2 == 0 { &pair.a } else { &pair.b };
        let answer = submit_password(instance, "wrong-password").await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused, at either instance.
    for instance in [&pair.a, &pair.b] {
        let answer = submit_password(instance, "jane-password-1").await;
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        // Until the window opened by the first failure closes (15 minutes at most).
        let retry_after: u64 = answer.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
    }
}

fn header_kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The `kid`s an instance's JWKS publishes.
async fn published_kids(client: &reqwest::Client, url: &str) -> Vec<String> {
    let jwks: Value = client
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Automatic rotation every 3 s (announced 2 s ahead; JWKS max-age 1 s; instances re-read
/// keys every 250 ms) while both instances issue JWTs under load and a validator checks every
/// token with the key set it has cached — it is never allowed to refetch for an unknown key.
#[tokio::test]
async fn keys_rotate_on_schedule_under_load_and_no_valid_token_is_rejected() {
    let pair = Pair::start_with(|config| {
        config.replace(
            "announce_period = \"10m\"",
            "announce_period = \"2s\"\njwks_max_age = \"1s\"\nrotation_period = \"3s\"\nkey_reload_interval = \"250ms\"",
        )
    })
    .await;
    let validator = scopegate_validator::Validator::builder()
        .issuer(&pair.a.url)
        .audience(API)
        .algorithms([scopegate_validator::Algorithm::ES256])
        // The set follows the JWKS max-age (1 s); an unknown kid never triggers a fetch (the
        // cooldown outlasts the test), so a token signed by a key the cache does not hold yet
        // is rejected.
        .jwks_ttl(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .jwks_refetch_cooldown(Duration::from_secs(3600))
        .build()
        .unwrap();
    // When each kid was first published by each instance; the keys published before the
    // clock starts count as published at zero.
    let first_seen: Arc<Mutex<BTreeMap<(u16, String), Duration>>> = Arc::default();
    for instance in [&pair.a, &pair.b] {
        for kid in published_kids(&http(), &instance.url).await {
            first_seen
                .lock()
                .unwrap()
                .insert((instance.port, kid), Duration::ZERO);
        }
    }
    let started = Instant::now();
    // The load is a count of requests, not a time window: workers go on until enough tokens
    // were checked *and* enough scheduled rotations (every 3 s) happened, however slow the
    // machine. The ceiling only stops a service that never rotates.
    const TOKENS: usize = 200;
    const SIGNING_KEYS: usize = 3;
    let ceiling = Duration::from_secs(180);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress: Arc<Mutex<(usize, BTreeSet<String>)>> = Arc::default();

    let monitor = {
        let (first_seen, done) = (Arc::clone(&first_seen), Arc::clone(&done));
        let instances = [
            (pair.a.port, pair.a.url.clone()),
            (pair.b.port, pair.b.url.clone()),
        ];
        tokio::spawn(async move {
            let client = http();
            // One more round after the load stops, so every signing key's publication is seen.
            let mut last_rounds = 2;
            while last_rounds > 0 {
                if done.load(std::sync::atomic::Ordering::Acquire) {
                    last_rounds -= 1;
                }
                for (port, url) in &instances {
                    let kids = published_kids(&client, url).await;
                    let at = started.elapsed();
                    let mut seen = first_seen.lock().unwrap();
                    for kid in kids {
                        seen.entry((*port, kid)).or_insert(at);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let (validator, urls) = (validator.clone(), [pair.a.url.clone(), pair.b.url.clone()]);
        let (done, progress) = (Arc::clone(&done), Arc::clone(&progress));
        workers.spawn(async move {
            let mut results = Vec::new();
            let mut round = worker;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                assert!(
                    started.elapsed() < ceiling,
                    "no {SIGNING_KEYS} signing keys within {ceiling:?}: {:?}",
                    progress.lock().unwrap()
                );
                let url = &urls[round % 2];
                round += 1;
                let (status, json) = post(
                    &format!("{url}/token"),
                    Some(JWT_CLIENT),
                    "grant_type=client_credentials".to_owned(),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{json}");
                let received = started.elapsed();
                let token = json["access_token"].as_str().unwrap().to_owned();
                let outcome = validator
                    .validate(&token)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let kid = header_kid(&token);
                {
                    let mut progress = progress.lock().unwrap();
                    progress.0 += 1;
                    progress.1.insert(kid.clone());
                    if progress.0 >= TOKENS && progress.1.len() >= SIGNING_KEYS {
                        done.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
                results.push((kid, received, outcome));
            }
            results
        });
    }
    let results: Vec<_> = workers.join_all().await.into_iter().flatten().collect();
    monitor.await.unwrap();

    let rejected: Vec<_> = results
        .iter()
        .filter(|(_, _, outcome)| outcome.is_err())
        .collect();
    let signing: BTreeSet<&String> = results.iter().map(|(kid, _, _)| kid).collect();
    let seen = first_seen.lock().unwrap();
    let published: BTreeSet<&String> = seen.keys().map(|(_, kid)| kid).collect();
    println!(
        "rotation under load: {} tokens over {:?}, {} signing keys, {} published, {} rejected",
        results.len(),
        started.elapsed(),
        signing.len(),
        published.len(),
        rejected.len()
    );
    assert!(
        rejected.is_empty(),
        "valid tokens rejected: {:?}",
        &rejected[..rejected.len().min(5)]
    );
    assert!(results.len() >= TOKENS, "{} tokens", results.len());
    assert!(signing.len() >= SIGNING_KEYS, "{signing:?}");
    // The instances added one key per rotation between them, never one each: every published
    // key signed, except at most the one announced at the end.
    assert!(
        published.len() <= signing.len() + 1,
        "{published:?} vs {signing:?}"
    );
    // No token was signed by a key before both instances had published it for at least the
    // JWKS max-age (1 s); the polling makes the first-seen times late, never early.
    for (kid, received, _) in &results {
        for port in [pair.a.port, pair.b.port] {
            let Some(published_at) = seen.get(&(port, kid.clone())) else {
                panic!("{kid} signed a token but instance {port} never published it");
            };
            // (A key already published when the clock started — the first key, which had no
            // predecessor to be announced after — is exempt.)
            if *published_at > Duration::ZERO {
                assert!(
                    *received >= *published_at + Duration::from_secs(1),
                    "{kid}: token at {received:?}, published by {port} at {published_at:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_dpop_proof_and_a_client_assertion_are_each_accepted_once_across_instances() {
    let key = support::jose::EcKey::generate();
    let jwks = support::jose::toml_inline(&key.jwks("k1"));
    let pair = Pair::start_with(|config| {
        format!(
            "{config}\n[[clients]]\nid = \"signer\"\ngrants = [\"client_credentials\"]\nscopes = [\"akamai:social_profile:read\"]\njwks = {jwks}\n"
        )
    })
    .await;
    // Both instances answer as the issuer (A's URL): a proof or assertion for it is good at
    // either — once.
    let token_url = format!("{}/token", pair.a.url);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let proof = key.proof(&token_url, now);
    let with_proof = |instance: &Instance| {
        http()
            .post(format!("{}/token", instance.url))
            .header("authorization", basic_header(JWT_CLIENT.0, JWT_CLIENT.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("DPoP", proof.clone())
            .body("grant_type=client_credentials")
            .send()
    };
    let first = with_proof(&pair.a).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["token_type"], "DPoP");
    let replay = with_proof(&pair.b).await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["error"], "invalid_dpop_proof", "{replay}");

    let claims = support::jose::assertion_claims("signer", &token_url, now);
    let body = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
        key.assertion("k1", &claims)
    );
    let (status, answer) = post(&token_url, None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = post(&format!("{}/token", pair.b.url), None, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], "invalid_client");
}

/// One RFC 8936 poll of the API's event stream at `instance`, acknowledging `ack`; the answer's
/// event ids and `sub_id.id`s, in stream order.
async fn poll_events(
    client: &reqwest::Client,
    instance_url: &str,
    ack: &[String],
    return_immediately: bool,
) -> Result<Vec<(String, String)>, reqwest::Error> {
    let answer: Value = client
        .post(format!("{instance_url}/ssf/poll"))
        // RFC 6749 §2.3.1 Basic: id and secret form-encoded first (the secret has a `+`).
        .header(
            reqwest::header::AUTHORIZATION,
            basic_header(API_CREDENTIALS.0, API_CREDENTIALS.1),
        )
        .json(&serde_json::json!({ "ack": ack, "returnImmediately": return_immediately }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut events: Vec<(String, String)> = answer["sets"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, set)| {
            let claims = claims_of(set.as_str().unwrap());
            (
                id.clone(),
                claims["sub_id"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.sort_by_key(|(id, _)| id.rsplit_once('-').unwrap().1.parse::<u64>().unwrap());
    Ok(events)
}

/// The claims of a compact JWS (a JWT or a SET), unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap()
}

fn jti_of(token: &str) -> String {
    claims_of(token)["jti"].as_str().unwrap().to_owned()
}

/// A poll held at instance A is answered by a revocation committed at instance B, even when B
/// is killed the moment it answered: the event was committed with the revocation, and A hears
/// of it through the database.
#[tokio::test]
async fn an_event_committed_at_one_instance_reaches_a_poll_held_at_the_other_though_it_dies() {
    let mut pair = Pair::start().await;
    let client = http();
    assert!(
        poll_events(&client, &pair.a.url, &[], true)
            .await
            .unwrap()
            .is_empty()
    );
    let token = client_token(&pair.a, JWT_CLIENT).await;
    let held = {
        let (client, url) = (client.clone(), pair.a.url.clone());
        tokio::spawn(async move { poll_events(&client, &url, &[], false).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "answered with nothing to deliver");
    let (status, _) = post(
        &format!("{}/revoke", pair.b.url),
        Some(JWT_CLIENT),
        format!("token={}", form_encode(&token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    pair.b.kill_9();
    // The hold is 25 s: an answer with the event within 20 s was woken by B's commit.
    let events = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the poll held at A never heard of B's revocation")
        .unwrap();
    assert_eq!(
        events
            .iter()
            .map(|(_, subject)| subject.as_str())
            .collect::<Vec<_>>(),
        [jti_of(&token)]
    );
}

/// A receiver whose instance went away resumes at the other from its last acknowledgement and
/// misses nothing revoked meanwhile, at either instance.
#[tokio::test]
async fn a_stream_interrupted_and_resumed_at_the_other_instance_misses_nothing() {
    let mut pair = Pair::start().await;
    let client = http();
    let mut revoked = Vec::new();
    for _ in 0..3 {
        let token = client_token(&pair.a, JWT_CLIENT).await;
        revoke_at(&pair.a, &token).await;
        revoked.push(jti_of(&token));
    }
    let first = poll_events(&client, &pair.a.url, &[], true).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|(_, subject)| subject.clone())
            .collect::<Vec<_>>(),
        revoked
    );
    let acknowledged: Vec<String> = first.iter().map(|(id, _)| id.clone()).collect();

    // A goes away while B goes on revoking.
    pair.a.kill_9();
    assert!(
        poll_events(&client, &pair.a.url, &acknowledged, true)
            .await
            .is_err()
    );
    let mut meanwhile = Vec::new();
    for _ in 0..3 {
        let token = client_token(&pair.b, JWT_CLIENT).await;
        revoke_at(&pair.b, &token).await;
        meanwhile.push(jti_of(&token));
    }
    let resumed = poll_events(&client, &pair.b.url, &acknowledged, true)
        .await
        .unwrap();
    assert_eq!(
        resumed
            .iter()
            .map(|(_, subject)| subject.clone())
            .collect::<Vec<_>>(),
        meanwhile,
        "exactly the events after the acknowledgement"
    );
    // And A, back, continues from the same place.
    pair.a.restart().await;
    let again = poll_events(&client, &pair.a.url, &acknowledged, true)
        .await
        .unwrap();
    assert_eq!(again, resumed);
}

async fn revoke_at(instance: &Instance, token: &str) {
    let (status, _) = post(
        &format!("{}/revoke", instance.url),
        Some(JWT_CLIENT),
        format!("token={}", form_encode(token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// Whether `instance`'s discovery document lists `scope`.
async fn lists_scope(instance: &Instance, scope: &str) -> bool {
    let discovery: Value = http()
        .get(format!("{}/.well-known/openid-configuration", instance.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    discovery["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|listed| listed == scope)
}

/// Asks `instance` until `done` holds of its answer, for at most three times the lifetime of
/// what an instance remembers of the store (generous: it is a deadline, not a wait).
async fn eventually<F, Fut>(what: &str, mut ask: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + 3 * scopegate_token_service::clients::STORED_TTL;
    while !ask().await {
        assert!(Instant::now() < deadline, "{what}: not within the deadline");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_claim_scope_defined_or_deleted_at_one_instance_is_followed_by_the_other() {
    let scope = "hr:department:read";
    let pair = Pair::start_with(|config| {
        format!(
            "{config}{ADMIN_CLIENTS}\n[[clients]]\nid = \"hr-batch\"\nsecret = \"hr-batch-secret\"\ngrants = [\"client_credentials\"]\nscopes = [\"{scope}\", \"akamai:social_profile:read\"]\n"
        )
    })
    .await;
    let admin = client_token(&pair.a, ADMIN).await;
    let send = |request: reqwest::RequestBuilder| async {
        request.bearer_auth(&admin).send().await.unwrap().status()
    };
    assert!(!lists_scope(&pair.b, scope).await);
    let created = send(
        http()
            .post(format!("{}/admin/scopes", pair.a.url))
            .json(&serde_json::json!({ "name": scope, "claims": { "department": "dept" } })),
    )
    .await;
    assert_eq!(created, StatusCode::CREATED);
    // At once where it was defined; at the other within its lifetime.
    assert!(lists_scope(&pair.a, scope).await);
    eventually("B lists the new scope", || lists_scope(&pair.b, scope)).await;

    let deleted = send(http().delete(format!("{}/admin/scopes/{scope}", pair.a.url))).await;
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    let asks_for_it = |instance: &Instance| {
        let url = format!("{}/token", instance.url);
        async move {
            post(
                &url,
                Some(("hr-batch", "hr-batch-secret")),
                format!("grant_type=client_credentials&scope={scope}"),
            )
            .await
        }
    };
    let (status, answer) = asks_for_it(&pair.a).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    eventually("B refuses the deleted scope", || async {
        let (status, answer) = asks_for_it(&pair.b).await;
        status == StatusCode::BAD_REQUEST && answer["error"] == "invalid_scope"
    })
    .await;
    assert!(!lists_scope(&pair.b, scope).await);
}
