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

/// The newest event position this instance knows of, and the stream's epoch.
#[derive(Debug)]
pub struct EventFeed {
    epoch: String,
    latest: watch::Receiver<u64>,
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
        Ok(Self { epoch, latest })
    }

    /// The stream's epoch (see [`crate::store::EventStore::event_epoch`]).
    #[must_use]
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// A view of the newest known position, to wait on.
    #[must_use]
    pub fn latest(&self) -> watch::Receiver<u64> {
        self.latest.clone()
    }
}
