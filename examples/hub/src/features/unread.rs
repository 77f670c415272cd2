//! Unread counts per user, room and DM conversation, derived from read
//! positions and history; live `activity` frames for sidebars.
//!
//! - **Read positions.** A room's are kept twice in the state store: by
//!   room ([`Table::Reads`], for `reads` frames) and by user
//!   ([`Table::UserReads`], to list a user's rooms). A DM conversation's
//!   are in [`Table::UserDms`] (group = user, field = peer); a DM sent
//!   lists the conversation for both parties (the recipient at 0: every
//!   message of the peer counts; the sender at the DM just sent).
//! - **Which rooms count.** A room is counted from the user's first visit:
//!   the first join records the room's last message id then, so a room
//!   never opened is not listed, and one opened late does not show its
//!   whole past as unread.
//! - **Counting.** Entries of the conversation's history after the read
//!   position, at most [`SCAN`] of them (the newest): chat messages (not
//!   notices, not update events, not deleted ones) by someone else. When
//!   more entries than that follow the read position, the count is a lower
//!   bound and the answer says so (`at_least`). A conversation read up to
//!   its last message costs one history call that returns nothing.
//! - **Live.** A `/presence` or `/dm` socket sends `{"type":"watch_unread",
//!   "rooms":[..]}` and joins the core group `unread:{room}` of each room it
//!   may read; every saved chat message sends one small frame
//!   `{"type":"activity","room","id","user"}` to that group (one send per
//!   message, whoever watches). A ban, a removal or a deletion that shuts
//!   a user out of a room also stops their sockets watching it, on every
//!   hub ([`stop_watching`], with the room's close event). A read position that moves is told to the
//!   user's own sockets (`notify:{sub}`) as `{"type":"read","room"|"dm",
//!   "message_id"}`, so a count goes down on every device.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use channelbox::{HistoryQuery, Kind};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{fields, saved, ChatRoom};
use crate::auth::Claims;
use crate::chat::SentMessage;
use crate::error::Refusal;
use crate::frames;
use crate::server::AppState;
use crate::session::Session;
use crate::store::{parse_u64, CloseEvent, StoreError, Table};

/// History entries read at most per conversation for one count.
pub const SCAN: usize = 1000;
/// Rooms, and DM conversations, listed at most in one `GET /unread`.
pub const MAX_LISTED: usize = 500;
/// Rooms one `watch_unread` frame may name.
pub const MAX_WATCHED: usize = 500;
/// Conversations counted at once (history reads in flight).
const PARALLEL: usize = 16;

/// The core group a room's `activity` frames go to.
pub fn activity_group(room: &str) -> String {
    [ACTIVITY_PREFIX, room].concat()
}

/// What [`activity_group`] puts before the room id.
const ACTIVITY_PREFIX: &str = "unread:";

/// `GET /unread`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/unread", get(unread))
}

/// What a count needs of a saved entry (other fields are skipped unread).
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    from_id: Option<Cow<'a, str>>,
    #[serde(default)]
    deleted: bool,
}

/// The kind of conversation counted: which entries are messages, and
/// where their author is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation {
    /// A room: `type: message`, author `user_id` or `user`.
    Room,
    /// A DM pair: `type: direct_message`, author `from_id`.
    Dm,
}

impl Entry<'_> {
    /// True for a message by someone other than `sub`.
    fn counts_for(&self, kind: Conversation, sub: &str) -> bool {
        let (ty, author) = match kind {
            Conversation::Room => ("message", self.user_id.as_ref().or(self.user.as_ref())),
            Conversation::Dm => ("direct_message", self.from_id.as_ref()),
        };
        self.ty == ty && !self.deleted && author.is_some_and(|a| a != sub)
    }
}

/// An unread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Messages by others after the read position, among those read.
    pub n: u64,
    /// More entries follow the read position than were read: `n` is a
    /// lower bound.
    pub at_least: bool,
}

/// Counts the messages of `group` after `after` by others than `sub`,
/// reading at most [`SCAN`] entries.
pub async fn count(
    state: &AppState,
    group: &str,
    kind: Conversation,
    sub: &str,
    after: u64,
) -> channelbox::Result<Count> {
    let query = HistoryQuery {
        since: after,
        before: 0,
        limit: SCAN,
    };
    let page = state.hub.history_async(group, query).await?;
    let n = page
        .messages
        .iter()
        .filter_map(|m| serde_json::from_slice::<Entry>(m.data()).ok())
        .filter(|e| e.counts_for(kind, sub))
        .count() as u64;
    // Entries after the read position that this page did not cover (the
    // page holds the newest; those before it were not read).
    let first_read = page.messages.first().map_or(u64::MAX, |m| m.offset());
    let first_unread = after.saturating_add(1).max(page.first_offset);
    Ok(Count {
        n,
        at_least: page.messages.len() >= SCAN && first_read > first_unread,
    })
}

/// A user's read positions in `table` (group = user): field -> id, at
/// most [`MAX_LISTED`], damaged entries skipped.
async fn positions(
    state: &AppState,
    table: Table,
    sub: &str,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    for (field, raw) in state.store.all(table, sub).await? {
        if out.len() >= MAX_LISTED {
            break;
        }
        match parse_u64(&raw) {
            Some(id) => out.push((field, id)),
            None => state
                .store
                .report_corrupt(table, sub, &field, "not a number"),
        }
    }
    Ok(out)
}

/// `GET /unread`: `{"rooms": {room: n}, "dms": {peer: n}, "at_least":
/// {"rooms": [..], "dms": [..]}, "scan": SCAN}` for the caller.
async fn unread(State(state): State<Arc<AppState>>, claims: Claims) -> Response {
    match answer(&state, &claims).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "unread counts: state store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "service_unavailable", "detail": e.to_string()})),
            )
                .into_response()
        }
    }
}

async fn answer(state: &AppState, claims: &Claims) -> Result<Value, StoreError> {
    let sub = claims.sub.as_str();
    let admin = claims.is_admin();
    let rooms = positions(state, Table::UserReads, sub).await?;
    let dms = positions(state, Table::UserDms, sub).await?;
    let room_counts: Vec<(String, Option<Count>)> = futures_util::stream::iter(rooms)
        .map(|(room, read)| async move {
            let group = frames::room_group(&room);
            let counted = count(state, &group, Conversation::Room, sub, read)
                .await
                .ok();
            // A room the user may no longer read (made private, banned,
            // removed) is left out; asked only when there is news.
            let listed = match counted {
                Some(c) if c.n > 0 => super::may_read_async(state, &room, sub, admin)
                    .await
                    .unwrap_or(false),
                _ => true,
            };
            (room, counted.filter(|_| listed))
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let dm_counts: Vec<(String, Option<Count>)> = futures_util::stream::iter(dms)
        .map(|(peer, read)| async move {
            let group = frames::dm_pair_group(sub, &peer);
            let counted = count(state, &group, Conversation::Dm, sub, read).await.ok();
            (peer, counted)
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let (mut out_rooms, mut out_dms) = (Map::new(), Map::new());
    let (mut more_rooms, mut more_dms) = (Vec::new(), Vec::new());
    for (room, c) in room_counts {
        let Some(c) = c else { continue };
        if c.at_least {
            more_rooms.push(json!(room));
        }
        out_rooms.insert(room, json!(c.n));
    }
    for (peer, c) in dm_counts {
        let Some(c) = c else { continue };
        if c.at_least {
            more_dms.push(json!(peer));
        }
        out_dms.insert(peer, json!(c.n));
    }
    Ok(json!({
        "rooms": out_rooms,
        "dms": out_dms,
        "at_least": {"rooms": more_rooms, "dms": more_dms},
        "scan": SCAN,
    }))
}

/// Tells the user's own sockets (every device, every hub) that a read
/// position moved: `{"type":"read", key: name, "message_id"}`.
async fn tell_own_sockets(state: &AppState, sub: &str, key: &str, name: &str, id: u64) {
    let frame = frames::encode(&json!({"type": "read", key: name, "message_id": id}));
    let send = state
        .hub
        .group_send_async(&frames::notify_group(sub), Kind::Json, frame, false);
    let _ = send.await;
}

/// A room read position moved to `id` (after the `read` frame's receipt):
/// keeps it by user and tells the user's other sockets.
pub async fn room_read(session: &Session, room: &str, id: u64) -> Result<(), Refusal> {
    let state = &session.state;
    let sub = session.claims.sub.as_str();
    if state.store.advance(Table::UserReads, sub, room, id).await? {
        tell_own_sockets(state, sub, "room", room, id).await;
    }
    Ok(())
}

/// A user joined `room` (after its `history` frame): a first visit starts
/// the room's count at its last message now. One batched set-if-absent
/// (a read of the batch and the file, no fsync), not a read then a write.
pub fn first_visit(session: &Session, room: ChatRoom<'_>) {
    let state = session.state.clone();
    let sub = session.user_slot.sub().clone();
    let room_id = room.id.to_owned();
    // Asked now: in memory the answer is the last id at this join.
    let last = state.hub.last_offset_async(room.group);
    tokio::spawn(async move {
        let room = room_id;
        let last = last.await.unwrap_or(0).to_string();
        let marked = state
            .store
            .put_new_batched(Table::UserReads, &sub, &room, last.as_bytes())
            .await;
        if let Err(e) = marked {
            tracing::warn!(error = %e, room, "could not record a first visit");
        }
    });
}

/// After a chat message was saved: one `activity` frame to the room's
/// watchers.
pub async fn after_message(session: &Session, room: ChatRoom<'_>, sent: &SentMessage<'_>) {
    send_activity(&session.state.hub, room.id, sent.id, &session.claims.sub).await;
}

/// `{"type":"activity","room","id","user"}` to `room`'s watchers: one
/// small frame, one core send (measured by `examples/bench_unread.rs`).
/// Most rooms have no watcher: then nothing is built or sent (a frame, a
/// group name and a send a message were ~6 % of the hub's CPU in the
/// referee's scenario d, where nobody watches).
pub async fn send_activity(hub: &channelbox::Hub, room: &str, id: u64, user: &str) {
    let send = with_activity_group(room, |group| {
        // `Text`: the same WebSocket text frame as `Json`, without the
        // core parsing again what was just written.
        hub.group_has_listeners(group)
            .then(|| hub.group_send_async(group, Kind::Text, activity_frame(room, id, user), false))
    });
    if let Some(send) = send {
        let _ = send.await;
    }
}

/// Calls `f` with `room`'s activity group name, written into this
/// thread's buffer instead of a new `String` a message.
fn with_activity_group<R>(room: &str, f: impl FnOnce(&str) -> R) -> R {
    thread_local!(static NAME: std::cell::RefCell<String> = const {
        std::cell::RefCell::new(String::new())
    });
    NAME.with_borrow_mut(|name| {
        name.clear();
        name.push_str(ACTIVITY_PREFIX);
        name.push_str(room);
        f(name)
    })
}

/// The `activity` frame, written directly: it comes with every message,
/// and a serde struct costs several times this (see `bench_unread`).
pub fn activity_frame(room: &str, id: u64, user: &str) -> bytes::Bytes {
    let mut out = Vec::with_capacity(48 + room.len() + user.len());
    out.extend_from_slice(br#"{"type":"activity","room":"#);
    frames::push_json_str(&mut out, room);
    out.extend_from_slice(br#","id":"#);
    frames::push_u64(&mut out, id);
    out.extend_from_slice(br#","user":"#);
    frames::push_json_str(&mut out, user);
    out.push(b'}');
    bytes::Bytes::from(out)
}

/// `{"type":"watch_unread","rooms":[..]}` on `/presence` or `/dm`: joins
/// the `activity` groups of the rooms named that the caller may read
/// (others are skipped); answers `{"type":"watching_unread","rooms":[..]}`
/// with those joined.
pub async fn watch(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let Some(list) = frame.get("rooms").and_then(Value::as_array) else {
        return Err(Refusal::bad_request("rooms must be a list of room ids"));
    };
    if list.len() > MAX_WATCHED {
        return Err(Refusal::too_large(format!(
            "at most {MAX_WATCHED} rooms a watch_unread"
        )));
    }
    let state = &session.state;
    let claims = &session.claims;
    let rooms: Vec<&str> = list
        .iter()
        .filter_map(Value::as_str)
        .filter(|r| !r.is_empty() && r.len() <= 200)
        .collect();
    // The admission checks [`PARALLEL`] at a time (each a store read;
    // with Redis a round trip), the joins in order.
    let mut joined = Vec::new();
    for chunk in rooms.chunks(PARALLEL) {
        let checks: Vec<_> = chunk
            .iter()
            .map(|room| super::may_read_async(state, room, &claims.sub, claims.is_admin()))
            .collect();
        let admitted = futures_util::future::join_all(checks).await;
        for (room, admitted) in chunk.iter().zip(admitted) {
            if admitted? && session.conn.join(&activity_group(room)).is_ok() {
                joined.push(*room);
            }
        }
    }
    session.send_json(&json!({"type": "watching_unread", "rooms": joined}));
    Ok(())
}

/// The `/presence` and `/dm` sockets of this hub that `event` shuts out of
/// its room (a ban or kick of their user, a room made private without
/// them or deleted: `room` is the room as it is now, `None` when gone)
/// stop watching it.
pub fn stop_watching(state: &AppState, event: &CloseEvent, room: Option<&super::rooms::Room>) {
    let group = activity_group(&event.room);
    for (conn, sub, admin) in state.sessions_outside_rooms() {
        let stop = match (&event.user, room) {
            (Some(user), _) => user.as_str() == &*sub,
            (None, Some(room)) => !room.admits_sub(&sub, admin),
            (None, None) => true,
        };
        if stop {
            let _ = state.hub.group_remove(conn, &group);
        }
    }
}

/// `{"type":"read","message_id"}` on `/dm/{peer}`: moves the caller's
/// read position in the conversation and tells their other sockets.
pub async fn dm_read(
    session: &Session,
    peer: &str,
    pair: &str,
    frame: &Value,
) -> Result<(), Refusal> {
    let id = fields::message_id(frame)?;
    let state = &session.state;
    let last = saved::last_id(state, pair).await.unwrap_or(0);
    if id == 0 || id > last {
        return Err(Refusal::not_found(format!(
            "no message {id} in this conversation"
        )));
    }
    let sub = session.claims.sub.as_str();
    if state.store.advance(Table::UserDms, sub, peer, id).await? {
        tell_own_sockets(state, sub, "dm", peer, id).await;
    }
    Ok(())
}

/// After DM `id` from `from` to `to` was saved: the conversation is listed
/// for both (the recipient from its start, the sender as read up to it).
pub async fn after_dm(state: &AppState, from: &str, to: &str, id: u64) {
    let store = &state.store;
    let (sender, recipient) =
        futures_util::join!(store.advance(Table::UserDms, from, to, id), async {
            if from == to {
                return Ok(false);
            }
            store.advance(Table::UserDms, to, from, 0).await
        });
    if let Err(e) = sender.and(recipient) {
        tracing::warn!(error = %e, "could not list a DM conversation for unread counts");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(raw: &str) -> Entry<'_> {
        serde_json::from_str(raw).unwrap()
    }

    #[test]
    fn the_activity_frame_is_json_with_any_ids() {
        for (room, user) in [("lobby", "bob"), ("a\"b", "c\\d\n"), ("é", "\u{7}")] {
            let frame = activity_frame(room, 42, user);
            let v: Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(
                v,
                json!({"type": "activity", "room": room, "id": 42, "user": user})
            );
        }
    }

    #[test]
    fn only_others_messages_count() {
        let room = Conversation::Room;
        assert!(entry(r#"{"type":"message","user":"bob","id":1}"#).counts_for(room, "ann"));
        assert!(!entry(r#"{"type":"message","user":"ann"}"#).counts_for(room, "ann"));
        assert!(
            !entry(r#"{"type":"message","user":"Ann","user_id":"ann"}"#).counts_for(room, "ann")
        );
        assert!(!entry(r#"{"type":"system","message":"bob joined"}"#).counts_for(room, "ann"));
        assert!(!entry(r#"{"type":"message","user":"bob","deleted":true}"#).counts_for(room, "ann"));
        assert!(!entry(r#"{"type":"edit","user":"bob"}"#).counts_for(room, "ann"));
        let dm = Conversation::Dm;
        assert!(entry(r#"{"type":"direct_message","from_id":"b\u006fb"}"#).counts_for(dm, "ann"));
        assert!(!entry(r#"{"type":"direct_message","from_id":"ann"}"#).counts_for(dm, "ann"));
    }
}
