//! The claim scopes the service defines now — the configuration file's, read-only, and those
//! defined at run time in the store — as one catalogue that every consumer asks: the claims of
//! id_tokens, `/userinfo`, access tokens and introspection, the required claims of a client,
//! the owners of scopes, discovery's `scopes_supported`, and which scopes may be granted.
//!
//! Precedence: the configuration file's definition of a name is the one used; a stored row of
//! the same name (defined before the file named it) is ignored.
//!
//! A deleted scope is **withdrawn**: a client that still lists it is not granted it — nor a
//! scope that releases its claims only through it (`p:n:*` for a deleted `p:n:read`) — until
//! something defines it again: the catalogue, or an API that comes to own it. Scopes nobody ever
//! defined are granted as before (an API that verifies JWTs itself need not be registered).
//!
//! Each instance reads the store's definitions at most every [`STORED_TTL`] (by the injected
//! clock), so a change made at another instance is seen within it; a change made here is seen
//! here at once ([`ScopeCatalogue::forget`]). When the store cannot be read, the definitions
//! read last are kept (no definition can change while the store is down), so that issuing
//! tokens does not depend on the database more than it did.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use scopegate_validator::{Clock, Scope, ScopeSet};

use crate::clients::STORED_TTL;
use crate::config::{self, Api, Config, CustomScope};
use crate::store::{Store, StoreError, StoredScope};

/// Where a definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeSource {
    /// The configuration file: read-only at run time.
    Configuration,
    /// The store: defined with `scope add` or the admin API.
    Store,
}

impl ScopeSource {
    /// `configuration` or `store`, as the admin API and the command line show it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Configuration => "configuration",
            Self::Store => "store",
        }
    }
}

/// One definition and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The definition.
    pub scope: &'a CustomScope,
    /// Where it comes from.
    pub source: ScopeSource,
    /// When a stored one was defined (seconds since the epoch).
    pub created_at: Option<u64>,
    /// When a stored one was last changed.
    pub updated_at: Option<u64>,
}

/// The definitions at one moment: the configuration file's, then the store's.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    /// The configuration file's, then the store's (those the file does not define).
    scopes: Vec<CustomScope>,
    /// How many of `scopes` are the configuration file's.
    configured: usize,
    /// `(created_at, updated_at)` of each stored one, in the order of `scopes[configured..]`.
    stored_times: Vec<(u64, u64)>,
    /// The names the store holds deleted and the file does not define.
    deleted: Vec<Scope>,
}

impl Definitions {
    /// The configuration file's definitions and the store's rows, the file's taking precedence.
    #[must_use]
    pub fn merge(configured: &[CustomScope], stored: Vec<StoredScope>) -> Self {
        let in_file = |name: &Scope| configured.iter().any(|scope| &scope.name == name);
        let mut scopes = configured.to_vec();
        let mut stored_times = Vec::new();
        let mut deleted = Vec::new();
        for row in stored {
            if in_file(&row.scope.name) {
                continue;
            }
            if row.deleted_at.is_some() {
                deleted.push(row.scope.name);
            } else {
                stored_times.push((row.created_at, row.updated_at));
                scopes.push(row.scope);
            }
        }
        Self {
            scopes,
            configured: configured.len(),
            stored_times,
            deleted,
        }
    }

    /// Every definition: the configuration file's, then the store's.
    #[must_use]
    pub fn all(&self) -> &[CustomScope] {
        &self.scopes
    }

    /// Every definition with where it comes from.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.scopes.iter().enumerate().map(|(index, scope)| {
            let times = index
                .checked_sub(self.configured)
                .and_then(|stored| self.stored_times.get(stored));
            Entry {
                scope,
                source: if times.is_some() {
                    ScopeSource::Store
                } else {
                    ScopeSource::Configuration
                },
                created_at: times.map(|(created, _)| *created),
                updated_at: times.map(|(_, updated)| *updated),
            }
        })
    }

    /// The definition named `name`.
    #[must_use]
    pub fn find(&self, name: &str) -> Option<Entry<'_>> {
        self.entries()
            .find(|entry| entry.scope.name.as_str() == name)
    }

    /// The configuration file's definitions.
    #[must_use]
    pub fn configured(&self) -> &[CustomScope] {
        &self.scopes[..self.configured]
    }

    /// The store's definitions (those in force).
    #[must_use]
    pub fn stored(&self) -> &[CustomScope] {
        &self.scopes[self.configured..]
    }

    /// Whether the service owns `granted` through a definition (as an API owns its scopes):
    /// tokens granted it are addressed to the service.
    #[must_use]
    pub fn owns(&self, granted: &Scope) -> bool {
        self.scopes
            .iter()
            .any(|scope| config::owns(&scope.name, granted))
    }

    /// The definition overlapping `scope` (`p:n` overlaps `p:n:read`), if any: the service is
    /// its owner, so no API may own `scope`.
    #[must_use]
    pub fn overlapping(&self, scope: &Scope) -> Option<&CustomScope> {
        self.scopes
            .iter()
            .find(|defined| config::scopes_overlap(&defined.name, scope))
    }

    /// Whether `scope` is withdrawn unless an API owns it: it releases the claims of a deleted
    /// definition, and of no definition there is.
    #[must_use]
    pub fn withdrawn_unless_owned(&self, scope: &Scope) -> bool {
        self.deleted.iter().any(|deleted| scope.covers(deleted))
            && !self.scopes.iter().any(|defined| defined.released_by(scope))
    }
}

/// The scopes no grant gives now: those that release a deleted definition's claims and that
/// nothing defines now — no definition they release, no API owning them.
#[derive(Debug, Clone)]
pub struct Withdrawn {
    definitions: Arc<Definitions>,
    /// The APIs, when one may own a scope that would be withdrawn otherwise (else empty).
    apis: Vec<Arc<Api>>,
}

impl Withdrawn {
    /// Over `definitions` and the APIs that may own a scope that would be withdrawn otherwise:
    /// every API (configured and stored), or none when no scope asked about could be withdrawn.
    #[must_use]
    pub fn new(definitions: Arc<Definitions>, apis: Vec<Arc<Api>>) -> Self {
        Self { definitions, apis }
    }

    /// Whether `scope` is withdrawn.
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.definitions.withdrawn_unless_owned(scope)
            && !self.apis.iter().any(|api| api.owns(scope))
    }

    /// `scopes` without the withdrawn ones.
    #[must_use]
    pub fn remove_from(&self, scopes: &ScopeSet) -> ScopeSet {
        if self.definitions.deleted.is_empty() {
            return scopes.clone();
        }
        scopes
            .iter()
            .filter(|scope| !self.contains(scope))
            .cloned()
            .collect()
    }
}

/// The definitions as last read, and until when they are used.
#[derive(Debug)]
struct Snapshot {
    definitions: Arc<Definitions>,
    /// Clock time until which they are used without reading the store.
    fresh_until: Duration,
    /// Whether they were read from the store (and may stand in while it cannot be read).
    read: bool,
}

/// The catalogue: the configuration file's definitions and the store's, read through a
/// snapshot (no lock on the way), re-read by one caller at a time when it is older than
/// [`STORED_TTL`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct ScopeCatalogue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    configured: Vec<CustomScope>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    current: ArcSwap<Snapshot>,
    /// Held by the one caller reading the store; the others wait and take what it read.
    reading: tokio::sync::Mutex<()>,
    /// Counts changes made here, so that a read begun before one is not kept as fresh.
    changes: AtomicU64,
}

impl ScopeCatalogue {
    /// The configuration file's definitions and the store's; nothing is read until first
    /// asked.
    #[must_use]
    pub fn new(config: &Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let definitions = Definitions::merge(&config.scopes, Vec::new());
        Self {
            inner: Arc::new(Inner {
                configured: config.scopes.clone(),
                store,
                clock,
                current: ArcSwap::from_pointee(Snapshot {
                    definitions: Arc::new(definitions),
                    fresh_until: Duration::ZERO,
                    read: false,
                }),
                reading: tokio::sync::Mutex::new(()),
                changes: AtomicU64::new(0),
            }),
        }
    }

    /// The definitions now (at most [`STORED_TTL`] old for changes made elsewhere).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store cannot be read and nothing was read before (or a change was
    /// made here since), or holds a definition this version cannot read.
    pub async fn definitions(&self) -> Result<Arc<Definitions>, StoreError> {
        let inner = &self.inner;
        let current = inner.current.load_full();
        if inner.clock.now() < current.fresh_until {
            return Ok(Arc::clone(&current.definitions));
        }
        let _reading = inner.reading.lock().await;
        // Another caller may have read them while this one waited.
        let current = inner.current.load_full();
        let now = inner.clock.now();
        if now < current.fresh_until {
            return Ok(Arc::clone(&current.definitions));
        }
        let changes = inner.changes.load(Ordering::SeqCst);
        match inner.store.list_scopes().await {
            Ok(rows) => {
                let definitions = Arc::new(Definitions::merge(&inner.configured, rows));
                // A change made here while reading: what was read may predate it.
                let fresh_until = if inner.changes.load(Ordering::SeqCst) == changes {
                    now + STORED_TTL
                } else {
                    Duration::ZERO
                };
                inner.current.store(Arc::new(Snapshot {
                    definitions: Arc::clone(&definitions),
                    fresh_until,
                    read: true,
                }));
                Ok(definitions)
            }
            Err(error) if current.read => {
                tracing::warn!(
                    %error,
                    "claim scopes: the store cannot be read; using the definitions read last"
                );
                inner.current.store(Arc::new(Snapshot {
                    definitions: Arc::clone(&current.definitions),
                    fresh_until: now + STORED_TTL,
                    read: true,
                }));
                Ok(Arc::clone(&current.definitions))
            }
            Err(error) => Err(error),
        }
    }

    /// Forgets what was read, after a definition was changed here: the next question reads the
    /// store (other instances see the change within [`STORED_TTL`]).
    pub fn forget(&self) {
        let inner = &self.inner;
        inner.changes.fetch_add(1, Ordering::SeqCst);
        let current = inner.current.load_full();
        inner.current.store(Arc::new(Snapshot {
            definitions: Arc::clone(&current.definitions),
            fresh_until: Duration::ZERO,
            read: false,
        }));
    }
}

#[cfg(test)]
mod tests {
    use scopegate_validator::MockClock;

    use super::*;
    use crate::store::{ScopeStore, SqlStore};

    const CONFIG: &str = "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:8080\"\nstorage = \"sqlite::memory:\"\n[[scopes]]\nname = \"a:file:read\"\n";

    async fn catalogue_over(store: &Arc<SqlStore>, clock: &Arc<MockClock>) -> ScopeCatalogue {
        let config = Config::from_toml(CONFIG).unwrap();
        ScopeCatalogue::new(
            &config,
            Arc::clone(store) as Arc<dyn Store>,
            Arc::clone(clock) as Arc<dyn Clock>,
        )
    }

    fn names(definitions: &Definitions) -> Vec<&str> {
        definitions
            .all()
            .iter()
            .map(|scope| scope.name.as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_change_made_here_is_seen_at_once_and_one_made_elsewhere_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/store.db", dir.path().display());
        let store = Arc::new(SqlStore::sqlite(&url).await.unwrap());
        let clock = Arc::new(MockClock::at_system_time());
        let here = catalogue_over(&store, &clock).await;
        let elsewhere = catalogue_over(&store, &clock).await;
        assert_eq!(names(&here.definitions().await.unwrap()), ["a:file:read"]);
        assert_eq!(
            names(&elsewhere.definitions().await.unwrap()),
            ["a:file:read"]
        );

        store.insert_scope(&scope("a:new:read"), 1).await.unwrap();
        here.forget();
        assert_eq!(
            names(&here.definitions().await.unwrap()),
            ["a:file:read", "a:new:read"]
        );
        clock.advance(STORED_TTL - Duration::from_secs(1));
        assert_eq!(
            names(&elsewhere.definitions().await.unwrap()),
            ["a:file:read"]
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            names(&elsewhere.definitions().await.unwrap()),
            ["a:file:read", "a:new:read"]
        );
        store.close().await;
    }

    #[tokio::test]
    async fn the_definitions_read_last_stand_in_while_the_store_cannot_be_read() {
        let store = Arc::new(SqlStore::sqlite("sqlite::memory:").await.unwrap());
        store
            .insert_scope(&scope("a:stored:read"), 1)
            .await
            .unwrap();
        let clock = Arc::new(MockClock::at_system_time());
        let read = catalogue_over(&store, &clock).await;
        let never_read = catalogue_over(&store, &clock).await;
        let changed_here = catalogue_over(&store, &clock).await;
        read.definitions().await.unwrap();
        changed_here.definitions().await.unwrap();
        store.close().await;
        clock.advance(STORED_TTL * 3);
        assert_eq!(
            names(&read.definitions().await.unwrap()),
            ["a:file:read", "a:stored:read"]
        );
        assert!(never_read.definitions().await.is_err());
        // After a change made here, what was read before is no answer.
        changed_here.forget();
        assert!(changed_here.definitions().await.is_err());
    }

    fn scope(name: &str) -> CustomScope {
        CustomScope {
            name: Scope::parse(name).unwrap(),
            claims: std::collections::BTreeMap::new(),
            access_token: false,
            source: crate::config::claim_source::ATTRIBUTES.to_owned(),
        }
    }

    fn stored(name: &str, deleted: bool) -> StoredScope {
        StoredScope {
            scope: scope(name),
            created_at: 1,
            updated_at: 2,
            deleted_at: deleted.then_some(3),
        }
    }

    fn set(text: &str) -> ScopeSet {
        ScopeSet::parse_space_separated(text).unwrap()
    }

    #[test]
    fn the_file_takes_precedence_and_deleted_rows_are_kept_apart() {
        let definitions = Definitions::merge(
            &[scope("a:file:read")],
            vec![
                stored("a:file:read", false),
                stored("a:gone:read", true),
                stored("a:kept:read", false),
            ],
        );
        let names: Vec<&str> = definitions
            .all()
            .iter()
            .map(|scope| scope.name.as_str())
            .collect();
        assert_eq!(names, ["a:file:read", "a:kept:read"]);
        let file = definitions.find("a:file:read").unwrap();
        assert_eq!(
            (file.source, file.created_at),
            (ScopeSource::Configuration, None)
        );
        let kept = definitions.find("a:kept:read").unwrap();
        assert_eq!(
            (kept.source, kept.created_at),
            (ScopeSource::Store, Some(1))
        );
        assert!(definitions.find("a:gone:read").is_none());
    }

    #[test]
    fn a_deleted_scope_and_what_released_it_alone_are_withdrawn_until_defined_again() {
        let definitions = Arc::new(Definitions::merge(
            &[],
            vec![
                stored("ad:gone:read", true),
                stored("ad:half:read", true),
                stored("ad:half:write", false),
            ],
        ));
        let withdrawn = Withdrawn::new(Arc::clone(&definitions), Vec::new());
        let allowed =
            set("ad:gone:read ad:gone:* ad:gone ad:half:* ad:half:read never:defined:read");
        // `ad:gone` releases no claim of `ad:gone:read`: it never depended on it.
        assert_eq!(
            withdrawn.remove_from(&allowed),
            set("ad:gone ad:half:* never:defined:read")
        );
        // An API that comes to own it defines it again.
        let api = Api {
            id: "https://gone.example.test".into(),
            secret: None,
            keys: None,
            scopes: vec![Scope::parse("ad:gone").unwrap()],
            registered_at: None,
            rate_limit: None,
        };
        let withdrawn = Withdrawn::new(definitions, vec![Arc::new(api)]);
        assert_eq!(
            withdrawn.remove_from(&allowed),
            set("ad:gone:read ad:gone:* ad:gone ad:half:* never:defined:read")
        );
    }
}
