//! The deny set: what the issuer's revocation events refuse, as one immutable snapshot.
//!
//! Validation reads it on every request, so it is never locked: the subscriber builds a new
//! snapshot for each batch of events (or purge) and swaps it in, while readers keep the one
//! they loaded. Each snapshot has a version unique in the process; a principal remembers the
//! version that last found it not revoked, so a cached token is looked up once per change of
//! the set, not once per request.
//!
//! That look-up must not walk the principal's claims (a map of separately allocated strings,
//! cold in memory for most cached tokens): a principal's identifiers are hashed (once per
//! principal per change of the set), with a key random per process, and the tables are keyed
//! by those hashes. A claim is read only to
//! confirm a hash that matched. Held identifiers are `Arc<str>`, so copying a snapshot of
//! 100 000 entries costs reference-count increments, not allocations.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::introspect::TokenDigest;
use crate::principal::Principal;
use crate::verified::DigestHash;

/// What one event refuses, and until when that must be held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    pub(crate) target: Target,
    /// After this (and the validator's leeway) no token the event affects can be valid.
    pub(crate) until: Duration,
}

/// The tokens an event refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The JWT with this `jti`.
    TokenId(String),
    /// The opaque token with this SHA-256.
    TokenDigest(TokenDigest),
    /// Tokens of this session (`sid`) issued at or before `toe`.
    Session { sid: String, toe: Duration },
    /// Tokens of this user (`sub`) issued at or before `toe`.
    Subject { sub: String, toe: Duration },
    /// Tokens of this client (`client_id`) issued at or before `toe`.
    Client { client_id: String, toe: Duration },
}

/// A subject-wide refusal: tokens issued at or before `toe` (or without `iat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cutoff {
    toe: Duration,
    until: Duration,
}

impl Cutoff {
    fn refuses(self, principal: &Principal) -> bool {
        principal
            .issued_at
            .get()
            .is_none_or(|issued_at| issued_at <= self.toe)
    }

    /// Two events about one subject: the later `toe` refuses everything the earlier one did,
    /// and the later `until` covers both.
    fn merge(self, other: Self) -> Self {
        Self {
            toe: self.toe.max(other.toe),
            until: self.until.max(other.until),
        }
    }
}

/// The claims an event can name, in the order a principal's identifiers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TokenId = 0,
    Session = 1,
    Subject = 2,
    Client = 3,
}

impl Kind {
    /// The claim read from a principal (for `client_id`, also `azp`).
    fn claim(self, principal: &Principal) -> Option<&str> {
        match self {
            Self::TokenId => principal.token_id(),
            Self::Session => principal.session_id(),
            Self::Subject => principal.subject(),
            Self::Client => principal.client_id(),
        }
    }
}

/// The hash of an identifier of a kind: keyed with a key random per process, so that no one
/// can choose identifiers that collide, and including the kind, so that a `sub` never matches
/// a `sid`.
fn identifier_hash(kind: Kind, id: &str) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    hasher.write_u8(kind as u8);
    hasher.write(id.as_bytes());
    hasher.finish()
}

/// A principal's identifiers as the deny set looks them up: hashed on each check, that is
/// once per principal per change of the set (see [`DenySet::refuses`]).
fn identifiers(principal: &Principal) -> [Option<u64>; 4] {
    [Kind::TokenId, Kind::Session, Kind::Subject, Kind::Client]
        .map(|kind| kind.claim(principal).map(|id| identifier_hash(kind, id)))
}

/// The keys are hashes already.
#[derive(Clone, Copy, Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Identifiers of one kind, by hash. Two identifiers with one hash (never seen, but possible)
/// keep the second by name.
#[derive(Clone)]
struct Held<V> {
    by_hash: HashMap<u64, (Arc<str>, V), BuildHasherDefault<IdentityHasher>>,
    collided: HashMap<Arc<str>, V>,
}

impl<V: Copy> Held<V> {
    fn new() -> Self {
        Self {
            by_hash: HashMap::default(),
            collided: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.by_hash.len() + self.collided.len()
    }

    fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The entry for the identifier with this hash; `id` gives the identifier itself, read
    /// only to confirm a match.
    fn get<'a>(&self, hash: u64, id: impl FnOnce() -> Option<&'a str>) -> Option<V> {
        let (held, value) = self.by_hash.get(&hash)?;
        let id = id()?;
        if **held == *id {
            return Some(*value);
        }
        self.collided.get(id).copied()
    }

    fn insert(&mut self, kind: Kind, id: &str, value: V, merge: impl Fn(V, V) -> V) {
        self.insert_hashed(identifier_hash(kind, id), id, value, merge);
    }

    fn insert_hashed(&mut self, hash: u64, id: &str, value: V, merge: impl Fn(V, V) -> V) {
        match self.by_hash.entry(hash) {
            Entry::Vacant(entry) => {
                entry.insert((Arc::from(id), value));
            }
            Entry::Occupied(mut entry) if *entry.get().0 == *id => {
                let held = &mut entry.get_mut().1;
                *held = merge(*held, value);
            }
            Entry::Occupied(_) => {
                self.collided
                    .entry(Arc::from(id))
                    .and_modify(|held| *held = merge(*held, value))
                    .or_insert(value);
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(V) -> bool) {
        self.by_hash.retain(|_, (_, value)| keep(*value));
        self.collided.retain(|_, value| keep(*value));
    }

    fn values(&self) -> impl Iterator<Item = V> + '_ {
        self.by_hash
            .values()
            .map(|(_, value)| *value)
            .chain(self.collided.values().copied())
    }
}

/// One snapshot. Never changed once shared: [`with`](Self::with) and
/// [`without_expired`](Self::without_expired) make the next one.
#[derive(Clone)]
pub(crate) struct DenySet {
    version: u64,
    token_ids: Held<Duration>,
    digests: HashMap<TokenDigest, Duration, DigestHash>,
    sessions: Held<Cutoff>,
    subjects: Held<Cutoff>,
    clients: Held<Cutoff>,
    /// Entries held, all kinds together.
    held: usize,
    /// The earliest `until` held: nothing expires before it.
    next_expiry: Option<Duration>,
}

/// Counts only: the identifiers held can be many, and name people.
impl std::fmt::Debug for DenySet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DenySet")
            .field("version", &self.version)
            .field("held", &self.held)
            .finish()
    }
}

/// Versions unique across every deny set of the process, so that a principal's memo can never
/// match another set's version.
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl DenySet {
    pub(crate) fn empty() -> Self {
        Self {
            version: next_version(),
            token_ids: Held::new(),
            digests: HashMap::default(),
            sessions: Held::new(),
            subjects: Held::new(),
            clients: Held::new(),
            held: 0,
            next_expiry: None,
        }
    }

    /// This snapshot's version, unique in the process.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// How many identifiers are refused.
    pub(crate) fn len(&self) -> usize {
        self.held
    }

    /// Why `principal` is refused, if it is. Looks nothing up for a principal this very
    /// snapshot let through before.
    pub(crate) fn refuses(&self, principal: &Principal) -> Option<&'static str> {
        if self.held == 0 || principal.revocation_check.passed() == self.version {
            return None;
        }
        let [token_id, session, subject, client] = identifiers(principal);
        if let Some(hash) = token_id.filter(|_| !self.token_ids.is_empty())
            && self
                .token_ids
                .get(hash, || Kind::TokenId.claim(principal))
                .is_some()
        {
            return Some("its `jti` was revoked");
        }
        let cut_off = |held: &Held<Cutoff>, hash: Option<u64>, kind: Kind| {
            !held.is_empty()
                && hash
                    .and_then(|hash| held.get(hash, || kind.claim(principal)))
                    .is_some_and(|cutoff| cutoff.refuses(principal))
        };
        if cut_off(&self.sessions, session, Kind::Session) {
            return Some("its session was ended");
        }
        if cut_off(&self.subjects, subject, Kind::Subject) {
            return Some("its user was deleted");
        }
        if cut_off(&self.clients, client, Kind::Client) {
            return Some("its client was deleted");
        }
        principal.revocation_check.record_pass(self.version);
        None
    }

    /// Whether the opaque token with this digest is refused.
    pub(crate) fn refuses_digest(&self, digest: &TokenDigest) -> bool {
        !self.digests.is_empty() && self.digests.contains_key(digest)
    }

    /// A new snapshot holding these denials too. A denial already past `now` (with `leeway`,
    /// which keeps tokens valid that long past `exp`) is not added: it could refuse nothing.
    pub(crate) fn with(&self, denials: &[Denial], now: Duration, leeway: Duration) -> Self {
        let mut next = self.clone();
        next.version = next_version();
        for denial in denials {
            if denial.until.saturating_add(leeway) <= now {
                continue;
            }
            let until = denial.until;
            let cutoff = |toe: &Duration| Cutoff { toe: *toe, until };
            match &denial.target {
                Target::TokenId(jti) => {
                    next.token_ids
                        .insert(Kind::TokenId, jti, until, Duration::max);
                }
                Target::TokenDigest(digest) => {
                    let held = next.digests.entry(*digest).or_default();
                    *held = (*held).max(until);
                }
                Target::Session { sid, toe } => {
                    next.sessions
                        .insert(Kind::Session, sid, cutoff(toe), Cutoff::merge);
                }
                Target::Subject { sub, toe } => {
                    next.subjects
                        .insert(Kind::Subject, sub, cutoff(toe), Cutoff::merge);
                }
                Target::Client { client_id, toe } => {
                    next.clients
                        .insert(Kind::Client, client_id, cutoff(toe), Cutoff::merge);
                }
            }
            next.next_expiry = Some(next.next_expiry.map_or(until, |held| held.min(until)));
        }
        next.count();
        next
    }

    /// A new snapshot without the entries whose time has passed, or `None` when none has.
    pub(crate) fn without_expired(&self, now: Duration, leeway: Duration) -> Option<Self> {
        let expired = |until: Duration| until.saturating_add(leeway) <= now;
        if !self.next_expiry.is_some_and(expired) {
            return None;
        }
        let mut next = self.clone();
        next.version = next_version();
        next.token_ids.retain(|until| !expired(until));
        next.digests.retain(|_, until| !expired(*until));
        for held in [&mut next.sessions, &mut next.subjects, &mut next.clients] {
            held.retain(|cutoff| !expired(cutoff.until));
        }
        next.next_expiry = next
            .token_ids
            .values()
            .chain(next.digests.values().copied())
            .chain(
                [&next.sessions, &next.subjects, &next.clients]
                    .into_iter()
                    .flat_map(|held| held.values().map(|cutoff| cutoff.until)),
            )
            .min();
        next.count();
        Some(next)
    }

    fn count(&mut self) {
        self.held = self.token_ids.len()
            + self.digests.len()
            + self.sessions.len()
            + self.subjects.len()
            + self.clients.len();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: Duration = Duration::from_secs(1_000_000);
    const HOUR: Duration = Duration::from_secs(3600);
    const LEEWAY: Duration = Duration::from_secs(30);

    fn principal(claims: serde_json::Value) -> Principal {
        let serde_json::Value::Object(claims) = claims else {
            unreachable!()
        };
        let issued_at = claims
            .get("iat")
            .and_then(serde_json::Value::as_u64)
            .map(Duration::from_secs);
        Principal::for_tests(&claims, issued_at)
    }

    fn denial(target: Target) -> Denial {
        Denial {
            target,
            until: NOW + HOUR,
        }
    }

    fn set_of(targets: Vec<Target>) -> DenySet {
        let denials: Vec<Denial> = targets.into_iter().map(denial).collect();
        DenySet::empty().with(&denials, NOW, LEEWAY)
    }

    const TOE: u64 = 1_000_000;

    #[test]
    fn a_revoked_jti_refuses_that_token_only() {
        let set = set_of(vec![Target::TokenId("t-1".to_owned())]);
        assert!(set.refuses(&principal(json!({"jti": "t-1"}))).is_some());
        assert!(set.refuses(&principal(json!({"jti": "t-2"}))).is_none());
        assert!(set.refuses(&principal(json!({"sub": "t-1"}))).is_none());
    }

    #[test]
    fn subject_wide_events_refuse_tokens_issued_at_or_before_toe() {
        let toe = Duration::from_secs(TOE);
        let set = set_of(vec![
            Target::Session {
                sid: "s".to_owned(),
                toe,
            },
            Target::Subject {
                sub: "u".to_owned(),
                toe,
            },
            Target::Client {
                client_id: "c".to_owned(),
                toe,
            },
        ]);
        assert_eq!(set.len(), 3);
        for (name, value) in [("sid", "s"), ("sub", "u"), ("client_id", "c"), ("azp", "c")] {
            let before = principal(json!({ name: value, "iat": TOE - 1 }));
            let at = principal(json!({ name: value, "iat": TOE }));
            let after = principal(json!({ name: value, "iat": TOE + 1 }));
            let undated = principal(json!({ name: value }));
            let other = principal(json!({ name: "x", "iat": TOE - 1 }));
            assert!(set.refuses(&before).is_some(), "{name} before");
            assert!(set.refuses(&at).is_some(), "{name} at toe");
            assert!(set.refuses(&undated).is_some(), "{name} without iat");
            assert!(set.refuses(&after).is_none(), "{name} after");
            assert!(set.refuses(&other).is_none(), "{name} other");
        }
    }

    #[test]
    fn a_digest_refuses_that_opaque_token() {
        let digest = crate::introspect::token_digest("opaque");
        let set = set_of(vec![Target::TokenDigest(digest)]);
        assert!(set.refuses_digest(&digest));
        assert!(!set.refuses_digest(&crate::introspect::token_digest("other")));
    }

    #[test]
    fn two_events_about_one_subject_keep_the_later_cutoff() {
        let early = Duration::from_secs(TOE);
        let late = Duration::from_secs(TOE + 100);
        for order in [[early, late], [late, early]] {
            let denials: Vec<Denial> = order
                .iter()
                .map(|toe| {
                    denial(Target::Subject {
                        sub: "u".to_owned(),
                        toe: *toe,
                    })
                })
                .collect();
            let set = DenySet::empty().with(&denials, NOW, LEEWAY);
            assert_eq!(set.len(), 1);
            let between = principal(json!({"sub": "u", "iat": TOE + 50}));
            assert!(set.refuses(&between).is_some());
        }
    }

    #[test]
    fn entries_are_purged_once_their_time_and_the_leeway_have_passed() {
        let soon = Denial {
            target: Target::TokenId("soon".to_owned()),
            until: NOW + Duration::from_secs(60),
        };
        let later = denial(Target::TokenId("later".to_owned()));
        let set = DenySet::empty().with(&[soon, later], NOW, LEEWAY);
        assert_eq!(set.len(), 2);
        assert!(
            set.without_expired(NOW + Duration::from_secs(60), LEEWAY)
                .is_none()
        );
        let purged = set
            .without_expired(NOW + Duration::from_secs(90), LEEWAY)
            .unwrap();
        assert_eq!(purged.len(), 1);
        assert!(purged.refuses(&principal(json!({"jti": "soon"}))).is_none());
        assert!(
            purged
                .refuses(&principal(json!({"jti": "later"})))
                .is_some()
        );
        let empty = purged.without_expired(NOW + HOUR + LEEWAY, LEEWAY).unwrap();
        assert_eq!(empty.len(), 0);
        assert!(empty.without_expired(NOW + HOUR * 48, LEEWAY).is_none());
    }

    #[test]
    fn identifiers_sharing_a_hash_are_told_apart_by_name() {
        let mut held = Held::new();
        held.insert_hashed(7, "first", 1_u8, u8::max);
        held.insert_hashed(7, "second", 2, u8::max);
        held.insert_hashed(7, "second", 3, u8::max);
        assert_eq!(held.len(), 2);
        assert_eq!(held.get(7, || Some("first")), Some(1));
        assert_eq!(held.get(7, || Some("second")), Some(3));
        assert_eq!(held.get(7, || Some("third")), None);
        assert_eq!(held.get(8, || Some("first")), None);
        held.retain(|value| value > 1);
        assert_eq!(held.get(7, || Some("second")), None, "under another's hash");
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn the_kind_is_part_of_the_hash() {
        assert_ne!(
            identifier_hash(Kind::Subject, "x"),
            identifier_hash(Kind::Session, "x")
        );
        let set = set_of(vec![Target::Subject {
            sub: "x".to_owned(),
            toe: Duration::from_secs(TOE),
        }]);
        assert!(
            set.refuses(&principal(json!({"sid": "x", "iat": TOE})))
                .is_none()
        );
    }

    #[test]
    fn debug_output_shows_counts_not_identifiers() {
        let set = set_of(vec![Target::Subject {
            sub: "jane@example.test".to_owned(),
            toe: NOW,
        }]);
        let debug = format!("{set:?}");
        assert!(
            debug.contains("held: 1") && !debug.contains("jane"),
            "{debug}"
        );
    }

    #[test]
    fn a_denial_already_past_is_not_held() {
        let past = Denial {
            target: Target::TokenId("old".to_owned()),
            until: NOW - LEEWAY,
        };
        assert_eq!(DenySet::empty().with(&[past], NOW, LEEWAY).len(), 0);
    }

    #[test]
    fn a_pass_is_remembered_until_the_set_changes() {
        let set = set_of(vec![Target::TokenId("t-1".to_owned())]);
        let innocent = principal(json!({"jti": "t-2", "sub": "u", "iat": TOE}));
        assert!(set.refuses(&innocent).is_none());
        assert_eq!(innocent.revocation_check.passed(), set.version);
        // The next snapshot refuses it: the memo of the previous one does not stand in.
        let next = set.with(
            &[denial(Target::Subject {
                sub: "u".to_owned(),
                toe: Duration::from_secs(TOE),
            })],
            NOW,
            LEEWAY,
        );
        assert!(next.refuses(&innocent).is_some());
        assert!(set.refuses(&innocent).is_none());
    }
}
