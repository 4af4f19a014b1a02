//! Secrets: plain values that never print, Argon2id hashes of them, and a verifier that pays
//! the Argon2id cost once per secret rather than once per request.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::{hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::telemetry::metrics;

/// A plain secret (client secret, password). `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    #[must_use]
    pub const fn new(value: String) -> Self {
        Self(value)
    }

    /// A fresh random secret: 256 bits, base64url.
    #[must_use]
    pub fn generate() -> Self {
        Self(random_token())
    }

    /// The value itself; use only where it must be compared or shown once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// 32 random bytes.
#[must_use]
pub fn random_bytes() -> [u8; 32] {
    random_array()
}

/// `N` random bytes. The system RNG's cost is mostly per call (each call mixes in the CPU's own
/// generator), not per byte: a caller needing several random values draws them at once.
#[must_use]
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // aws-lc's system RNG does not fail on supported platforms; an all-zero token would be
    // caught by no one, so a failure here must stop the process rather than continue.
    #[allow(clippy::expect_used)]
    rand::fill(&mut bytes).expect("the system random number generator works");
    bytes
}

/// 32 random bytes, base64url without padding (43 characters).
#[must_use]
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// The Argon2id parameters for new hashes: OWASP's recommended minimum (19 MiB, 2 passes).
fn argon2() -> Argon2<'static> {
    // The default parameters are valid by construction.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The most memory a hashing thread keeps for its checks (Argon2id's default is 19 MiB).
const MAX_KEPT_MEMORY: usize = 64 * 1024 * 1024;

/// An Argon2id hash in PHC string form (`$argon2id$v=19$m=…`). `Debug` shows only the
/// algorithm.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(Arc<str>);

impl SecretHash {
    /// Hashes a secret with a fresh random salt.
    #[must_use]
    pub fn hash(secret: &str) -> Self {
        let mut salt = [0u8; 16];
        #[allow(clippy::expect_used)]
        rand::fill(&mut salt).expect("the system random number generator works");
        #[allow(clippy::expect_used)]
        let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
        #[allow(clippy::expect_used)]
        let hash = argon2()
            .hash_password(secret.as_bytes(), &salt)
            .expect("default Argon2id parameters hash any input");
        Self(Arc::from(hash.to_string()))
    }

    /// Checks that `text` is an Argon2id PHC string.
    ///
    /// # Errors
    ///
    /// A sentence saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hash =
            PasswordHash::new(text).map_err(|error| format!("not a PHC hash string ({error})"))?;
        if hash.algorithm.as_str() != "argon2id" {
            return Err(format!(
                "`{}` hashes are not accepted; use Argon2id (`token-service hash-secret`)",
                hash.algorithm
            ));
        }
        if hash.hash.is_none() || hash.salt.is_none() {
            return Err("the hash string has no salt or no hash".to_owned());
        }
        Params::try_from(&hash).map_err(|error| format!("bad Argon2 parameters ({error})"))?;
        Ok(Self(Arc::from(text)))
    }

    /// The PHC string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Verifies `secret` against the hash (slow: Argon2id; constant-time comparison inside).
    #[must_use]
    pub fn verify(&self, secret: &str) -> bool {
        PasswordHash::new(&self.0)
            .is_ok_and(|hash| argon2().verify_password(secret.as_bytes(), &hash).is_ok())
    }

    /// As [`SecretHash::verify`], in `memory` (grown to the hash's memory cost and kept by the
    /// caller) instead of a buffer allocated and freed per check: a 19 MiB allocation freed on
    /// a thread stays with that thread's allocator arena, so checks that allocate leave the
    /// process growing by their buffers. A hash asking for more than [`MAX_KEPT_MEMORY`] is
    /// checked the allocating way.
    fn verify_in(&self, secret: &str, memory: &mut Vec<argon2::Block>) -> bool {
        let Ok(hash) = PasswordHash::new(&self.0) else {
            return false;
        };
        let Ok(params) = Params::try_from(&hash) else {
            return false;
        };
        if params.block_count() * argon2::Block::SIZE > MAX_KEPT_MEMORY {
            return self.verify(secret);
        }
        let version = hash
            .version
            .and_then(|version| Version::try_from(version).ok())
            .unwrap_or_default();
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let blocks = params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        let mut output = vec![0u8; expected.len()];
        Argon2::new(Algorithm::Argon2id, version, params)
            .hash_password_into_with_memory(
                secret.as_bytes(),
                salt,
                &mut output,
                &mut memory[..blocks],
            )
            .is_ok()
            && bool::from(output.as_slice().ct_eq(expected.as_bytes()))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretHash(argon2id)")
    }
}

/// Every hashing slot stayed taken for longer than a verifier waits: the caller answers "busy,
/// retry shortly" rather than queue without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every password-hashing slot stayed busy")]
pub struct Busy;

/// A credential that could be neither accepted nor refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No hashing slot freed up in time.
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// What a [`SecretVerifier`] checks: its metrics are labelled with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Client and API secrets.
    Secrets,
    /// Users' passwords.
    Passwords,
}

impl Checks {
    /// The metrics label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Secrets => "secret",
            Self::Passwords => "password",
        }
    }
}

/// Verifies presented secrets against their hashes, remembering (as a keyed MAC under a
/// per-process random key, never the secret itself) which secret last matched each hash, so
/// that a client presenting its right secret pays the Argon2id cost once, not per request.
///
/// Other secrets take the slow path: at most `max_concurrent` at once, on as many threads of
/// the verifier's own, and a check that cannot start within `max_wait` is [`Busy`] — a flood of
/// bad credentials is turned away instead of queueing without bound.
#[derive(Clone)]
pub struct SecretVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    key: hmac::Key,
    /// PHC string → MAC of the secret that matched it.
    matched: moka::sync::Cache<Arc<str>, [u8; 32]>,
    /// (PHC string, MAC of who presented a secret, from where, and the secret) → the outcome
    /// of checking them, while the check runs: concurrent requests presenting one secret share
    /// one check (one count, one hash); a later request is checked, and counted, anew. Who and where are in the key because the count depends on
    /// them, and so that unknown ids sharing the decoy hash are each checked.
    checks: moka::future::Cache<(Arc<str>, [u8; 32]), Checked>,
    slots: Semaphore,
    max_wait: std::time::Duration,
    /// What it checks, for its metrics.
    kind: Checks,
    threads: HashingThreads,
}

impl fmt::Debug for SecretVerifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SecretVerifier")
            .field("remembered", &self.inner.matched.entry_count())
            .finish_non_exhaustive()
    }
}

impl SecretVerifier {
    /// A verifier running at most `max_concurrent` Argon2id checks at once, each waiting at
    /// most `max_wait` to start.
    #[must_use]
    pub fn new(kind: Checks, max_concurrent: usize, max_wait: std::time::Duration) -> Self {
        let mut key = [0u8; 32];
        #[allow(clippy::expect_used)]
        rand::fill(&mut key).expect("the system random number generator works");
        let max_concurrent = max_concurrent.max(1);
        Self {
            inner: Arc::new(VerifierInner {
                key: hmac::Key::new(hmac::HMAC_SHA256, &key),
                matched: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_idle(std::time::Duration::from_secs(3600))
                    .build(),
                checks: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(std::time::Duration::from_secs(1))
                    .build(),
                slots: Semaphore::new(max_concurrent),
                max_wait,
                kind,
                threads: HashingThreads::start(max_concurrent),
            }),
        }
    }

    fn mac(&self, secret: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.inner.key, secret.as_bytes());
        let mut mac = [0u8; 32];
        mac.copy_from_slice(tag.as_ref());
        mac
    }

    /// Whether `secret` is the one that last matched `hash` (fast: no Argon2id).
    #[must_use]
    pub fn remembers(&self, hash: &SecretHash, secret: &str) -> bool {
        self.inner
            .matched
            .get(&hash.0)
            .is_some_and(|known| bool::from(known.ct_eq(&self.mac(secret))))
    }

    /// Whether `secret` matches `hash`.
    ///
    /// # Errors
    ///
    /// [`Busy`] when no hashing slot freed up within the verifier's wait.
    pub async fn verify(&self, hash: &SecretHash, secret: &str) -> Result<bool, Busy> {
        if self.remembers(hash, secret) {
            return Ok(true);
        }
        let queued = metrics::hash_queued(self.inner.kind.as_str());
        let slot = tokio::time::timeout(self.inner.max_wait, self.inner.slots.acquire()).await;
        queued.done(matches!(slot, Ok(Ok(_))));
        let Ok(Ok(_slot)) = slot else {
            return Err(Busy);
        };
        let (owned_hash, owned_secret) = (hash.clone(), Secret::new(secret.to_owned()));
        let matches = self
            .inner
            .threads
            .run(move || {
                THREAD_MEMORY.with(|memory| {
                    owned_hash.verify_in(owned_secret.expose(), &mut memory.borrow_mut())
                })
            })
            .await
            .unwrap_or(false);
        if matches {
            self.inner
                .matched
                .insert(Arc::clone(&hash.0), self.mac(secret));
        }
        Ok(matches)
    }
}

/// What checking a secret against a hash came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// It matches.
    Right,
    /// It does not.
    Wrong,
    /// The caller's count refused it: not hashed; try again after this long.
    Refused(std::time::Duration),
    /// No hashing slot freed up in time: not hashed.
    Busy,
}

/// Whether a check may go on to the hash: what the caller's counting said.
#[derive(Debug)]
pub enum Counted<A> {
    /// Go on to the hash; `A` (the counted attempt) is handed to `on_right` if it matches.
    Go(A),
    /// Refused: try again after this long.
    Refused(std::time::Duration),
}

impl SecretVerifier {
    /// Checks `secret`, presented by `caller` (an id and an address), against `hash` once for
    /// every request presenting the same at the same time: `count` runs (once), and if it lets
    /// the check go on, the secret is verified (remembered, or hashed) and
    /// `on_right` is called with what `count` gave if it matched. A request arriving after the
    /// check finished is checked anew.
    ///
    /// # Errors
    ///
    /// `E` if `count` fails (shared by the concurrent callers as text).
    pub async fn check<A, E, C, R>(
        &self,
        hash: &SecretHash,
        secret: &str,
        caller: &[&str],
        count: C,
        on_right: impl FnOnce(A) -> R,
    ) -> Result<Checked, Arc<E>>
    where
        C: Future<Output = Result<Counted<A>, E>>,
        R: Future<Output = ()>,
        E: Send + Sync + 'static,
    {
        let mut context = hmac::Context::with_key(&self.inner.key);
        for part in caller.iter().chain([&secret]) {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut presented = [0u8; 32];
        presented.copy_from_slice(context.sign().as_ref());
        let key = (Arc::clone(&hash.0), presented);
        let checked = self
            .inner
            .checks
            .try_get_with(key.clone(), async move {
                let attempt = match count.await? {
                    Counted::Go(attempt) => attempt,
                    Counted::Refused(retry_after) => return Ok(Checked::Refused(retry_after)),
                };
                Ok(match self.verify(hash, secret).await {
                    Ok(true) => {
                        on_right(attempt).await;
                        Checked::Right
                    }
                    Ok(false) => Checked::Wrong,
                    Err(Busy) => Checked::Busy,
                })
            })
            .await;
        // The outcome was for the requests that waited on it; the next one counts again.
        self.inner.checks.invalidate(&key).await;
        checked
    }
}

thread_local! {
    /// The Argon2id memory of the thread, kept between its checks (see `verify_in`).
    static THREAD_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Lowers the calling (hashing) thread to nice 9: under a flood of checks the request threads
/// still get most of the CPU (a nice-0 thread weighs about eight times more), so that callers
/// who need no hash — a client presenting its remembered secret — are served as before, while
/// the checks still progress when the request threads are busy too.
fn lower_priority() {
    let lowered = thread_priority::ThreadPriorityValue::try_from(23u8)
        .map_err(|error| error.to_string())
        .and_then(|value| {
            thread_priority::set_current_thread_priority(
                thread_priority::ThreadPriority::Crossplatform(value),
            )
            .map_err(|error| error.to_string())
        });
    if let Err(error) = lowered {
        tracing::debug!(%error, "could not lower a hashing thread's priority");
    }
}

/// A job for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// A few threads of the verifier's own that run the Argon2id checks. Each check takes 19 MiB;
/// run on tokio's blocking pool (hundreds of threads, each with its own allocator arena) the
/// freed buffers stayed with every thread that ever ran one, and a flood of wrong secrets grew
/// the process by a gigabyte. On a fixed few threads they are reused. The threads end when the
/// verifier is dropped.
struct HashingThreads {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

impl HashingThreads {
    fn start(count: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let mut started = 0;
        for index in 0..count {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2id-{index}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // One idle thread waits for the next job; the others wait for it.
                        let next = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(error) => tracing::error!(%error, "could not start a hashing thread"),
            }
        }
        // Without a thread of its own, hashing falls back to tokio's blocking pool.
        Self {
            jobs: (started > 0).then_some(jobs),
        }
    }

    /// Runs `work` on a hashing thread; `None` if it could not be run.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(work).await.ok();
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        jobs.send(Box::new(move || {
            let _ = reply.send(work());
        }))
        .ok()?;
        answer.await.ok()
    }
}

/// The hash an unknown id or username is checked against, so that it costs as much time as a
/// wrong secret and ids cannot be discovered by timing.
pub fn decoy_hash() -> &'static SecretHash {
    static DECOY: std::sync::OnceLock<SecretHash> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| SecretHash::hash(&random_token()))
}

/// SHA-256 of a token, the only form in which the store keeps it.
#[must_use]
pub fn token_digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let hash = SecretHash::hash("hunter2");
        assert!(!format!("{hash:?}").contains("argon2id$"));
    }

    #[test]
    fn hash_verifies_only_its_secret() {
        let hash = SecretHash::hash("right");
        assert!(hash.as_str().starts_with("$argon2id$v=19$"));
        assert!(hash.verify("right"));
        assert!(!hash.verify("wrong"));
        assert!(!hash.verify(""));
    }

    #[test]
    fn a_check_in_kept_memory_agrees_with_the_allocating_one() {
        let hash = SecretHash::hash("right");
        let mut memory = Vec::new();
        assert!(hash.verify_in("right", &mut memory));
        let kept = memory.len();
        assert!(kept > 0);
        assert!(!hash.verify_in("wrong", &mut memory));
        assert!(!hash.verify_in("", &mut memory));
        assert_eq!(memory.len(), kept, "the same memory serves every check");
        // Other parameters and versions, as an operator's `secret_hash` may have.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x10,
            Params::new(4096, 3, 1, Some(24)).unwrap(),
        )
        .hash_password(b"other", &SaltString::encode_b64(&[7; 16]).unwrap())
        .unwrap()
        .to_string();
        let small = SecretHash::parse(&small).unwrap();
        assert!(small.verify("other") && small.verify_in("other", &mut memory));
        assert!(!small.verify_in("others", &mut memory));
    }

    #[test]
    fn parse_accepts_only_argon2id() {
        let hash = SecretHash::hash("x");
        assert!(SecretHash::parse(hash.as_str()).is_ok());
        assert!(SecretHash::parse("plain").is_err());
        let argon2i = hash.as_str().replacen("argon2id", "argon2i", 1);
        assert!(SecretHash::parse(&argon2i).is_err());
    }

    #[test]
    fn generated_secrets_are_256_bit_and_distinct() {
        let (a, b) = (Secret::generate(), Secret::generate());
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn verifier_remembers_only_the_matching_secret() {
        let verifier = SecretVerifier::new(Checks::Secrets, 1, std::time::Duration::from_secs(60));
        let hash = SecretHash::hash("right");
        assert_eq!(verifier.verify(&hash, "wrong").await, Ok(false));
        assert_eq!(verifier.inner.matched.get(&hash.0), None);
        assert!(!verifier.remembers(&hash, "right"));
        assert_eq!(verifier.verify(&hash, "right").await, Ok(true));
        assert!(verifier.remembers(&hash, "right"));
        // The fast path still refuses a different secret.
        assert!(!verifier.remembers(&hash, "wrong"));
        assert_eq!(verifier.verify(&hash, "wrong").await, Ok(false));
        assert_eq!(verifier.verify(&hash, "right").await, Ok(true));
    }

    #[tokio::test]
    async fn a_check_that_cannot_start_in_time_is_busy_and_a_remembered_one_never_is() {
        let verifier = SecretVerifier::new(Checks::Secrets, 1, std::time::Duration::from_millis(1));
        let hash = SecretHash::hash("right");
        assert_eq!(verifier.verify(&hash, "right").await, Ok(true));
        // Every slot taken (as by a flood of wrong secrets): new checks are turned away …
        let _taken = verifier.inner.slots.acquire().await.unwrap();
        assert_eq!(verifier.verify(&hash, "wrong").await, Err(Busy));
        // … while the client whose secret is remembered is still served.
        assert_eq!(verifier.verify(&hash, "right").await, Ok(true));
    }

    #[tokio::test]
    async fn checks_run_on_the_verifiers_own_threads_at_a_lower_priority() {
        let verifier = SecretVerifier::new(Checks::Secrets, 2, std::time::Duration::from_secs(60));
        let (name, niceness) = verifier
            .inner
            .threads
            .run(|| {
                let status = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
                // Field 19 of stat is the nice value (after the parenthesised name).
                let niceness = status
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').nth(16))
                    .and_then(|value| value.parse::<i32>().ok());
                (std::thread::current().name().map(str::to_owned), niceness)
            })
            .await
            .unwrap();
        assert!(name.is_some_and(|name| name.starts_with("argon2id-")));
        if cfg!(target_os = "linux") {
            assert!(niceness.is_some_and(|nice| nice > 0), "{niceness:?}");
        }
    }
}
