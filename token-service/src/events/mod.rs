//! The revocation event stream that registered APIs read (docs/revocation-events.md): events
//! written by every revocation (`store::events`), delivered as signed SETs by RFC 8936 poll, held
//! open until one commits. The service keeps no state per receiver: a poll continues after the
//! newest event it acknowledges.

mod feed;
pub mod set;

pub use feed::EventFeed;

use crate::State;
use crate::error::OAuthError;

/// The most events one answer carries.
pub const MAX_EVENTS_PER_POLL: u64 = 1000;
/// How many events an answer carries when the poll does not say (RFC 8936 leaves it to the
/// transmitter).
pub const DEFAULT_EVENTS_PER_POLL: u64 = 100;

/// An RFC 8936 poll, checked.
#[derive(Debug, Clone, Default)]
pub struct Poll {
    /// The event ids the receiver acknowledges (`ack`, and the keys of `setErrs`: an event it
    /// could not process is not sent again either).
    pub acknowledged: Vec<String>,
    /// `maxEvents`: at most this many events (0 only acknowledges).
    pub max_events: Option<u64>,
    /// `returnImmediately`: answer at once even with nothing to deliver.
    pub return_immediately: bool,
}

/// What a poll is answered.
#[derive(Debug, Default)]
pub struct Delivery {
    /// `(jti, SET)` in stream order.
    pub sets: Vec<(String, String)>,
    /// More events were waiting than were sent.
    pub more_available: bool,
}

/// Answers `poll` from the API `audience`: the events after the newest it acknowledges (from
/// the oldest kept if it acknowledges none of this stream's), each signed for it; with nothing
/// to deliver and `returnImmediately` false, waits up to `events.long_poll` for an event to
/// commit (here or at another instance), or until the service shuts down.
///
/// # Errors
///
/// `temporarily_unavailable` if the store fails or no signing key is active.
pub async fn poll(state: &State, audience: &str, poll: &Poll) -> Result<Delivery, OAuthError> {
    let feed = state.event_feed().await?;
    let epoch = feed.epoch();
    let mut after = poll
        .acknowledged
        .iter()
        .filter_map(|id| set::position_of(epoch, id))
        .max();
    let mut latest = feed.latest();
    if let Some(position) = after
        && position > *latest.borrow()
        && position > state.store().last_event_position().await?
    {
        // Beyond the newest event: not this database's history (a restored backup, or a
        // made-up id). Starting over costs the receiver repeats, never a missed event.
        after = None;
    }
    let limit = poll
        .max_events
        .unwrap_or(DEFAULT_EVENTS_PER_POLL)
        .min(MAX_EVENTS_PER_POLL);
    if limit == 0 {
        return Ok(Delivery::default());
    }
    let deadline = tokio::time::Instant::now() + state.config().events.long_poll;
    let mut closing = state.closing();
    loop {
        // Taken before reading: an event committed after this has a higher position.
        let known = *latest.borrow();
        let mut events = state.store().events_after(after, limit + 1).await?;
        if !events.is_empty() || poll.return_immediately {
            let more_available = events.len() as u64 > limit;
            events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            let now = state.now();
            let issuer = &state.config().issuer;
            let sets = events
                .iter()
                .map(|event| {
                    let token = feed.signed(audience, event.position, || {
                        let claims = set::claims(issuer, audience, epoch, event, now);
                        crate::tokens::sign_jws(state, "secevent+jwt", &claims, now)
                            .map(|(token, _)| token)
                    })?;
                    Ok((set::event_id(epoch, event.position), token.to_string()))
                })
                .collect::<Result<_, OAuthError>>()?;
            return Ok(Delivery {
                sets,
                more_available,
            });
        }
        // Nothing after `after` up to `known`: those events were swept (a receiver away for
        // longer than the retention, or a new one on a quiet stream). Waiting only for a
        // position past `after` would read the empty range again at once, in a loop until the
        // hold ends.
        let seen = after.unwrap_or(0).max(known);
        tokio::select! {
            changed = latest.wait_for(|&newest| newest > seen) => {
                if changed.is_err() {
                    return Ok(Delivery::default());
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok(Delivery::default()),
            _ = closing.wait_for(|&closing| closing) => return Ok(Delivery::default()),
        }
    }
}
