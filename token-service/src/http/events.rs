//! The revocation event stream over HTTP (docs/revocation-events.md): SSF transmitter metadata,
//! each API's stream configuration, and RFC 8936 poll — adapters of [`crate::events`].

use axum::Json;
use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::no_store;
use super::form::{Form, has_media_type};
use super::introspect::authenticate_api;
use super::peer::Peer;
use crate::State;
use crate::events::{self, Poll, set};
use crate::telemetry::metrics;

/// RFC 8936's delivery method URN.
const POLL_DELIVERY: &str = "urn:ietf:rfc:8936";

/// `GET /.well-known/ssf-configuration` (SSF 1.0 §7.1).
pub(super) async fn configuration(Shared(state): Shared<State>) -> Response {
    let issuer = &state.config().issuer;
    let base = issuer.trim_end_matches('/');
    Json(json!({
        "spec_version": "1_0",
        "issuer": issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "delivery_methods_supported": [POLL_DELIVERY],
        "configuration_endpoint": format!("{base}/ssf/stream"),
        "default_subjects": "ALL",
    }))
    .into_response()
}

/// `GET /ssf/stream`: the calling API's one stream (SSF 1.0 §8.1.1.2), made by registering it.
pub(super) async fn stream(
    Shared(state): Shared<State>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    let api = match authenticate_api(&state, &peer, &headers, &Form::default()).await {
        Ok(api) => api,
        Err(error) => return error.into_response(),
    };
    let base = state.config().issuer.trim_end_matches('/').to_owned();
    let mut response = Json(json!({
        "stream_id": api.id,
        "iss": state.config().issuer,
        "aud": api.id,
        "delivery": {
            "method": POLL_DELIVERY,
            "endpoint_url": format!("{base}/ssf/poll"),
        },
        "events_supported": set::EVENT_TYPES,
        "events_requested": set::EVENT_TYPES,
        "events_delivered": set::EVENT_TYPES,
        "description": "Revocations at this token service",
    }))
    .into_response();
    no_store(&mut response);
    response
}

/// An RFC 8936 §2.4 poll request as sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollBody {
    #[serde(default)]
    ack: Vec<String>,
    /// Event ids the receiver could not process, with its reasons (only the ids matter here).
    #[serde(default)]
    set_errs: Map<String, Value>,
    max_events: Option<u64>,
    #[serde(default)]
    return_immediately: bool,
}

/// The longest list of acknowledgements read: more than any answer holds.
pub(super) const MAX_ACKNOWLEDGEMENTS: usize = 2 * events::MAX_EVENTS_PER_POLL as usize;

/// `POST /ssf/poll` (RFC 8936): the calling API's events, held open until there are some.
pub(super) async fn poll(
    Shared(state): Shared<State>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = match authenticate_api(&state, &peer, &headers, &Form::default()).await {
        Ok(api) => api,
        Err(error) => return error.into_response(),
    };
    let request = match read_poll(&headers, &body) {
        Ok(request) => request,
        Err(description) => {
            tracing::debug!(api = %api.id, %description, "malformed event poll");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "err": "invalid_request", "description": description })),
            )
                .into_response();
        }
    };
    let held = metrics::event_poll_held();
    let delivered = events::poll(&state, &api.id, &request).await;
    drop(held);
    match delivered {
        Ok(delivery) => {
            metrics::events_delivered(delivery.sets.len());
            let mut response = Json(PollAnswer {
                sets: InStreamOrder(&delivery.sets),
                more_available: delivery.more_available,
            })
            .into_response();
            no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// An RFC 8936 §2.5 answer.
#[derive(Serialize)]
struct PollAnswer<'a> {
    sets: InStreamOrder<'a>,
    #[serde(rename = "moreAvailable")]
    more_available: bool,
}

/// `sets` as a JSON object whose members come in stream order (a `serde_json::Map` would sort
/// them by id, and `…-10` sorts before `…-9`): receivers that read members in order see events
/// in the order they committed.
struct InStreamOrder<'a>(&'a [(String, String)]);

impl Serialize for InStreamOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sets = serializer.serialize_map(Some(self.0.len()))?;
        for (id, token) in self.0 {
            sets.serialize_entry(id, token)?;
        }
        sets.end()
    }
}

/// The poll in `body`: JSON (RFC 8936 §2.4), an object whose members have their types.
pub(super) fn read_poll(headers: &HeaderMap, body: &[u8]) -> Result<Poll, String> {
    if !has_media_type(headers, "application/json") {
        return Err("the body must be application/json".to_owned());
    }
    // JSON is UTF-8 (RFC 8259 §8.1), in members this service ignores too (serde skips
    // those without reading them).
    let body = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    // An object: serde would also fill the struct from an array, member by member in order.
    if !body.trim_start().starts_with('{') {
        return Err("the body must be a JSON object".to_owned());
    }
    let body: PollBody =
        serde_json::from_str(body).map_err(|error| format!("the body is not a poll: {error}"))?;
    if body.ack.len() + body.set_errs.len() > MAX_ACKNOWLEDGEMENTS {
        return Err(format!(
            "at most {MAX_ACKNOWLEDGEMENTS} events may be acknowledged at once"
        ));
    }
    if let Some((id, error)) = body.set_errs.iter().next() {
        // Once per poll, however many: a receiver's reports are not a reason to flood the log.
        tracing::warn!(
            events = body.set_errs.len(),
            first = %id,
            error = %error,
            "a receiver could not process events"
        );
    }
    let mut acknowledged = body.ack;
    acknowledged.extend(body.set_errs.into_iter().map(|(id, _)| id));
    Ok(Poll {
        acknowledged,
        max_events: body.max_events,
        return_immediately: body.return_immediately,
    })
}
