//! Where this instance learns that events were committed: one task per instance follows the
//! newest position, woken by the store (its own commits, and on Postgres every instance's
//! `NOTIFY`) and, should an announcement be missed, by a timer. Held polls wait on it instead
//! of asking the database each.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Store, StoreError};

/// The longest an event can go unnoticed when its announcement was lost (the Postgres
/// listener reconnecting, say).
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// SETs signed lately, by receiver and position: replicas of one API polling alike cost one
/// signature per event, not one each.
const SIGNED_SETS_KEPT: u64 = 20_000;
const SIGNED_SETS_FOR: Duration = Duration::from_secs(60);

/// The newest event position this instance knows of, the stream's epoch, and the SETs signed
/// lately.
#[derive(Debug)]
pub struct EventFeed {
    epoch: String,
    latest: watch::Receiver<u64>,
    signed: moka::sync::Cache<(Arc<str>, u64), Arc<str>>,
}

impl EventFeed {
    /// Reads the epoch and newest position, and starts following; the follower ends when the
    /// feed is dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store cannot be read.
    pub async fn start(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let epoch = store.event_epoch().await?;
        let (sender, latest) = watch::channel(store.last_event_position().await?);
        let commits = store.event_commits();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = commits.notified() => {}
                    () = tokio::time::sleep(RECHECK_EVERY) => {}
                }
                if sender.is_closed() {
                    return;
                }
                match store.last_event_position().await {
                    Ok(last) => {
                        sender.send_if_modified(|known| {
                            let newer = last > *known;
                            if newer {
                                *known = last;
                            }
                            newer
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read the newest event position")
                    }
                }
            }
        });
        Ok(Self {
            epoch,
            latest,
            signed: moka::sync::Cache::builder()
                .max_capacity(SIGNED_SETS_KEPT)
                .time_to_live(SIGNED_SETS_FOR)
                .build(),
        })
    }

    /// The stream's epoch (see [`crate::store::EventStore::event_epoch`]).
    #[must_use]
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The SET for `audience` of the event at `position`, signed by `sign` unless it was lately.
    ///
    /// # Errors
    ///
    /// What `sign` returns.
    pub fn signed<E>(
        &self,
        audience: &str,
        position: u64,
        sign: impl FnOnce() -> Result<String, E>,
    ) -> Result<Arc<str>, E> {
        let key = (Arc::<str>::from(audience), position);
        if let Some(set) = self.signed.get(&key) {
            return Ok(set);
        }
        let set: Arc<str> = sign()?.into();
        self.signed.insert(key, Arc::clone(&set));
        Ok(set)
    }

    /// A view of the newest known position, to wait on.
    #[must_use]
    pub fn latest(&self) -> watch::Receiver<u64> {
        self.latest.clone()
    }
}
