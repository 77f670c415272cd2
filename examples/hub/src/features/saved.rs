//! Messages as the core's history keeps them: read back, rewritten in
//! place (same id and timestamp), and fitted into one frame.
//!
//! The hub keeps ids (threads, reads, client ids, the search index), never
//! a second copy of the text: every feature reads it back from here.

use bytes::Bytes;
use channelbox::Kind;
use serde_json::{Map, Value};

use crate::error::Refusal;
use crate::frames;
use crate::server::AppState;

/// The saved frame at `id` in `group`, as a JSON object.
pub async fn saved(state: &AppState, group: &str, id: u64) -> Option<Map<String, Value>> {
    let message = state.hub.history_get_async(group, id).await.ok()?;
    match serde_json::from_slice::<Value>(message.data()).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A saved chat message (not a notice): the object, or `not_found`.
pub async fn saved_message(
    state: &AppState,
    group: &str,
    id: u64,
) -> Result<Map<String, Value>, Refusal> {
    match saved(state, group, id).await {
        Some(m) if m.get("type").and_then(Value::as_str) == Some("message") => Ok(m),
        _ => Err(Refusal::not_found(format!("no message {id} in this room"))),
    }
}

/// True for a deleted message's tombstone.
pub fn is_deleted(m: &Map<String, Value>) -> bool {
    m.get("deleted").and_then(Value::as_bool) == Some(true)
}

/// The author's user id: `user_id`, or `user` when they are the same.
pub fn author(m: &Map<String, Value>) -> Option<&str> {
    m.get("user_id")
        .or_else(|| m.get("user"))
        .and_then(Value::as_str)
}

/// Rewrites the saved message `id` in place.
pub async fn replace(
    state: &AppState,
    group: &str,
    id: u64,
    m: &Map<String, Value>,
) -> Result<(), Refusal> {
    let replace = state
        .hub
        .history_replace_async(group, id, Kind::Json, frames::encode(m));
    replace.await.map(|_| ()).map_err(|e| match e {
        channelbox::Error::NoSuchMessage { .. } => {
            Refusal::not_found(format!("message {id} is no longer kept"))
        }
        e => e.into(),
    })
}

/// The last message id `group` handed out (0 when none); `None` when
/// the engine cannot say now.
pub async fn last_id(state: &AppState, group: &str) -> Option<u64> {
    state.hub.last_offset_async(group).await.ok()
}

/// The first message id `group`'s history still keeps (`u64::MAX` when it
/// keeps none), or `None` when history cannot be asked now.
pub async fn first_kept(state: &AppState, group: &str) -> Option<u64> {
    // A page after the last offset: no messages, only the bounds.
    let query = channelbox::HistoryQuery {
        since: u64::MAX,
        ..channelbox::HistoryQuery::default()
    };
    let page = state.hub.history_async(group, query).await.ok()?;
    Some(match page.first_offset {
        0 => u64::MAX,
        first => first,
    })
}

/// Encodes `build(messages)`, dropping messages with `shrink` until the
/// frame fits the hub's largest payload (else the send would be refused
/// and the client would get nothing).
pub fn fit(
    state: &AppState,
    mut messages: Vec<Value>,
    build: impl Fn(&[Value]) -> Value,
    shrink: impl Fn(&mut Vec<Value>),
) -> Bytes {
    let max = state.hub.config().max_payload_bytes;
    loop {
        let frame = frames::encode(&build(&messages));
        if frame.len() <= max || messages.len() <= 1 {
            return frame;
        }
        shrink(&mut messages);
    }
}
