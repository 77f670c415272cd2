//! Messages as the core's history keeps them: read back, rewritten in
//! place (same id and timestamp), and fitted into one frame.
//!
//! The hub keeps ids (threads, reads, client ids, the search index), never
//! a second copy of the text: every feature reads it back from here.
//!
//! A room's history also holds update events (edits, deletes, reactions
//! saved with ids of their own, see `frames::UPDATE_TYPES`): a `?since=`
//! recovery replays them, [`messages_before`] (a join's last messages, a
//! `history` page) leaves them out.

use bytes::Bytes;
use channelbox::{HistoryQuery, Kind, Message};
use serde_json::value::RawValue;
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

/// Entries read at most per history read while a page is topped up past
/// update events (a first read asks for exactly the page).
const TOP_UP_MAX: usize = 1024;

/// The newest `limit` messages of `group` with an id below `before` (0:
/// no bound), oldest first, with the history's epoch; update events are
/// left out, and older entries read instead, so the page is full unless
/// history starts first. `limit` 0 means every kept message. Reads stop
/// at the start of history, so the work is bounded by the history's own
/// bounds; the worker yields between reads.
pub async fn messages_before(
    state: &AppState,
    group: &str,
    before: u64,
    limit: usize,
) -> channelbox::Result<(u64, Vec<Message>)> {
    let mut kept: Vec<Message> = Vec::new();
    let (mut bound, mut ask) = (before, limit);
    let mut epoch = None;
    loop {
        let query = HistoryQuery {
            since: 0,
            before: bound,
            limit: ask,
        };
        let page = state.hub.history_async(group, query).await?;
        if *epoch.get_or_insert(page.epoch) != page.epoch {
            // Flushed between two reads: what came first is all there is.
            break;
        }
        let read = page.messages.len();
        let oldest = page.messages.first().map(Message::offset);
        let mut found: Vec<Message> = page
            .messages
            .into_iter()
            .filter(|m| !frames::is_update(m.data()))
            .collect();
        if limit > 0 {
            let want = limit - kept.len();
            found.drain(..found.len().saturating_sub(want));
        }
        found.append(&mut kept);
        kept = found;
        let start_reached = match oldest {
            None => true,
            Some(oldest) => oldest <= page.first_offset || read < ask,
        };
        if limit == 0 || kept.len() >= limit || start_reached {
            break;
        }
        bound = oldest.unwrap_or(0);
        ask = ((limit - kept.len()) * 2).clamp(64, TOP_UP_MAX);
        tokio::task::yield_now().await;
    }
    Ok((epoch.unwrap_or(0), kept))
}

/// Which entries a reply gives up first when it does not fit one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// The last ones (a newest-first list drops its oldest).
    FromTheEnd,
    /// The ones after the first, in order (a thread keeps its root and
    /// drops its oldest replies).
    AfterTheFirst,
}

/// Encodes `messages` into the frame `build` makes of them, dropping
/// entries in `trim`'s order until it fits the hub's largest payload
/// (else the send would be refused and the client would get nothing).
///
/// Linear in the entries: each is encoded once, the frame's size is the
/// envelope's plus the entries' and their commas, and the frame is built
/// once from the entries kept. Meant for `spawn_blocking` when the entries
/// are large (see [`fit_off_worker`]).
pub fn fit(
    max: usize,
    messages: Vec<Value>,
    build: impl Fn(&[Box<RawValue>]) -> Bytes,
    trim: Trim,
) -> Bytes {
    let mut encoded: Vec<Box<RawValue>> = messages
        .iter()
        .filter_map(|m| serde_json::value::to_raw_value(m).ok())
        .collect();
    drop(messages);
    let envelope = build(&[]).len();
    let size = |entries: &[Box<RawValue>]| {
        envelope
            + entries.iter().map(|e| e.get().len()).sum::<usize>()
            + entries.len().saturating_sub(1)
    };
    let mut total = size(&encoded);
    if total > max && encoded.len() > 1 {
        // How many to drop, counted in trim order, without re-encoding.
        let order: Vec<usize> = match trim {
            Trim::FromTheEnd => (1..encoded.len()).rev().collect(),
            Trim::AfterTheFirst => (1..encoded.len()).collect(),
        };
        let mut dropped = 0;
        for &i in &order {
            if total <= max {
                break;
            }
            total -= encoded[i].get().len() + 1;
            dropped += 1;
        }
        match trim {
            Trim::FromTheEnd => encoded.truncate(encoded.len() - dropped),
            Trim::AfterTheFirst => {
                encoded.drain(1..1 + dropped);
            }
        }
    }
    build(&encoded)
}

/// Large replies encoded at once (the others wait their turn).
static FITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Entries read back from history between two yields to the worker:
/// reading and parsing hundreds of near-64 KiB messages never holds the
/// worker for long (the memory engine answers without ever yielding).
pub const READS_PER_YIELD: usize = 16;

/// [`fit`] on a blocking thread: encoding a large reply (a search or a
/// thread of near-64 KiB messages is megabytes of JSON) never holds the
/// worker that serves other sockets.
pub async fn fit_off_worker<B>(
    state: &AppState,
    messages: Vec<Value>,
    build: B,
    trim: Trim,
) -> Bytes
where
    B: Fn(&[Box<RawValue>]) -> Bytes + Send + 'static,
{
    let max = state.hub.config().max_payload_bytes;
    // Bounded: a burst of heavy searches queues here instead of taking
    // every blocking thread (and their memory) at once.
    let _turn = FITS.acquire().await;
    let job = tokio::task::spawn_blocking(move || fit(max, messages, build, trim));
    job.await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(entries: &[Box<RawValue>]) -> Bytes {
        frames::encode(&json!({"type": "t", "messages": entries}))
    }

    fn ids(frame: &Bytes) -> Vec<u64> {
        let v: Value = serde_json::from_slice(frame).unwrap();
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect()
    }

    fn entries(n: u64, text_bytes: usize) -> Vec<Value> {
        (1..=n)
            .map(|id| json!({"id": id, "content": "x".repeat(text_bytes)}))
            .collect()
    }

    #[test]
    fn a_reply_that_fits_is_whole_and_exactly_as_encoded() {
        let list = entries(5, 10);
        let out = fit(1 << 20, list.clone(), frame, Trim::FromTheEnd);
        assert_eq!(out, frames::encode(&json!({"type": "t", "messages": list})));
    }

    #[test]
    fn too_large_drops_in_trim_order_and_ends_within_the_bound() {
        // Each entry is about 1,010 bytes: 4 fit in 4 KiB, 5 do not.
        let max = 4096;
        let newest_first = fit(max, entries(10, 990), frame, Trim::FromTheEnd);
        assert!(newest_first.len() <= max);
        assert_eq!(ids(&newest_first), vec![1, 2, 3, 4]);
        let thread = fit(max, entries(10, 990), frame, Trim::AfterTheFirst);
        assert!(thread.len() <= max);
        assert_eq!(ids(&thread), vec![1, 8, 9, 10]);
        // The computed size is the real one: one more entry would not fit.
        let one_more = frames::encode(&json!({"type": "t", "messages": entries(5, 990)}));
        assert!(one_more.len() > max);
    }

    #[test]
    fn one_entry_is_kept_even_when_too_large() {
        let out = fit(100, entries(3, 1000), frame, Trim::FromTheEnd);
        assert_eq!(ids(&out), vec![1]);
    }
}
