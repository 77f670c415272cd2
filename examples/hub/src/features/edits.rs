//! What clients do to a saved message: reactions, edits (the author) and
//! deletes (the author, the room's owner or an admin).
//!
//! Each rewrites the saved entry in place (same id and timestamp), so a
//! joiner's `history` frame shows the current state, then saves an update
//! event with an id of its own (`edited`, `deleted`, `reaction`: see
//! `frames::UPDATE_TYPES`) that the room gets live and a client recovering
//! with `?since=` gets in its replay. Both happen under a per-room lock
//! (this process's, and with Redis a lease in Redis every hub takes: see
//! [`Store::lease`](crate::store::Store::lease)), so two reactions to one
//! message, through one hub or two, never lose each other and the events
//! keep the order of the rewrites they describe.

use bytes::Bytes;
use channelbox::Kind;
use serde_json::{json, Map, Value};
use tokio::sync::{Mutex, MutexGuard};

use super::saved::{author, is_deleted, replace, saved_message};
use super::{fields, mentions, shard_of, ChatRoom, SHARDS};
use crate::error::Refusal;
use crate::frames;
use crate::server::AppState;
use crate::session::Session;
use crate::store::Lease;

/// Distinct emojis on one message.
const MAX_EMOJIS: usize = 32;
/// Longest emoji (a few code points with modifiers), in bytes.
const MAX_EMOJI_BYTES: usize = 32;

/// Serializes read-modify-write of one room's saved messages (held while
/// the engine answers, hence an async lock).
#[derive(Debug)]
pub struct EditLocks {
    shards: [Mutex<()>; SHARDS],
}

impl Default for EditLocks {
    fn default() -> Self {
        EditLocks {
            shards: std::array::from_fn(|_| Mutex::new(())),
        }
    }
}

impl EditLocks {
    async fn lock(&self, group: &str) -> MutexGuard<'_, ()> {
        self.shards[shard_of(group)].lock().await
    }
}

/// Holds `group`'s edits here and, with Redis, on every hub.
struct RoomLock<'a> {
    _local: MutexGuard<'a, ()>,
    _shared: Lease,
}

/// Takes `group`'s edit lock: this process's first (so one task per hub
/// waits for the shared one), then the shared lease.
async fn lock_room<'a>(state: &'a AppState, group: &str) -> Result<RoomLock<'a>, Refusal> {
    let local = state.features.edit_locks.lock(group).await;
    let shared = state.store.lease(&format!("edit:{group}")).await?;
    Ok(RoomLock {
        _local: local,
        _shared: shared,
    })
}

/// `{"type":"reaction","message_id","emoji","op":"add"|"remove"}`.
pub async fn reaction(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let id = fields::message_id(frame)?;
    let emoji = fields::text(frame, "emoji", MAX_EMOJI_BYTES)?;
    if emoji.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Refusal::bad_request("emoji must be one emoji"));
    }
    let add = match frame.get("op").and_then(Value::as_str) {
        None | Some("add") => true,
        Some("remove") => false,
        Some(_) => return Err(Refusal::bad_request("op must be add or remove")),
    };
    let state = &session.state;
    let sub = session.claims.sub.as_str();
    // A mute silences everything a user adds to the room, reactions too.
    state
        .features
        .moderation
        .check_not_muted(room.id, sub)
        .await?;
    let _lock = lock_room(state, room.group).await?;
    let mut m = saved_message(state, room.group, id).await?;
    if is_deleted(&m) {
        return Err(Refusal::not_found(format!("message {id} was deleted")));
    }
    if !react(&mut m, emoji, sub, add)? {
        return Ok(());
    }
    replace(state, room.group, id, &m).await?;
    let reaction = frames::Reaction {
        message_id: id,
        emoji,
        op: if add { "add" } else { "remove" },
        user: sub,
        username: &session.claims.username,
    };
    save_update(session, room, |event| frames::reaction(event, &reaction)).await?;
    Ok(())
}

/// Saves an update event to the room's history and sends it to the room
/// (the saved bytes, its id inside); returns the id. Called under the
/// room's edit lock, after the rewrite it describes.
async fn save_update(
    session: &Session,
    room: ChatRoom<'_>,
    build: impl FnOnce(u64) -> Bytes,
) -> Result<u64, Refusal> {
    let state = &session.state;
    let send = state
        .hub
        .group_send_with_async(room.group, Kind::Json, true, build);
    let report = send.await?;
    state
        .features
        .analytics
        .record_broadcast(room.id, report.delivered);
    Ok(report.offset)
}

/// Adds or removes `sub`'s `emoji` on message `m`; true when it changed.
fn react(m: &mut Map<String, Value>, emoji: &str, sub: &str, add: bool) -> Result<bool, Refusal> {
    let reactions = m
        .entry("reactions")
        .or_insert_with(|| Value::Object(Map::new()));
    if !reactions.is_object() {
        *reactions = Value::Object(Map::new());
    }
    let Value::Object(reactions) = reactions else {
        unreachable!("made an object above");
    };
    if add && !reactions.contains_key(emoji) && reactions.len() >= MAX_EMOJIS {
        return Err(Refusal::too_large(format!(
            "a message takes at most {MAX_EMOJIS} different emojis"
        )));
    }
    let users = reactions
        .entry(emoji)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !users.is_array() {
        *users = Value::Array(Vec::new());
    }
    let Value::Array(users) = users else {
        unreachable!("made an array above");
    };
    let had = users.iter().any(|u| u.as_str() == Some(sub));
    let changed = if add && !had {
        users.push(Value::String(sub.to_owned()));
        true
    } else if !add && had {
        users.retain(|u| u.as_str() != Some(sub));
        true
    } else {
        false
    };
    if users.is_empty() {
        reactions.remove(emoji);
    }
    if reactions.is_empty() {
        m.remove("reactions");
    }
    Ok(changed)
}

/// `{"type":"edit","message_id","content"}`: the author only.
pub async fn edit(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let id = fields::message_id(frame)?;
    let state = &session.state;
    let content = fields::text(frame, "content", state.config.max_frame_bytes)?;
    let sub = session.claims.sub.as_str();
    state
        .features
        .moderation
        .check_not_muted(room.id, sub)
        .await?;
    let (old, mentioned, before, saved) = {
        let _lock = lock_room(state, room.group).await?;
        let mut m = saved_message(state, room.group, id).await?;
        if is_deleted(&m) {
            return Err(Refusal::not_found(format!("message {id} was deleted")));
        }
        if author(&m) != Some(sub) {
            return Err(Refusal::forbidden("only the author may edit a message"));
        }
        let old = m
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mentioned = mentions::resolve(state, content);
        let before: Vec<String> = m
            .get("mentions")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        m.insert("content".into(), Value::String(content.to_owned()));
        m.insert("edited".into(), Value::Bool(true));
        if mentioned.is_empty() {
            m.remove("mentions");
        } else {
            m.insert("mentions".into(), json!(mentioned));
        }
        replace(state, room.group, id, &m).await?;
        let saved = save_update(session, room, |event| {
            frames::edited(event, id, content, &mentioned)
        })
        .await;
        (old, mentioned, before, saved)
    };
    // The message changed even when its event could not be saved (the
    // engine is down): the index follows the text, then the error goes out.
    state
        .features
        .search
        .update(state, room.id, id, &old, content);
    saved?;
    // Only users the edit newly mentions are told.
    let added: Vec<&str> = mentioned
        .iter()
        .filter(|s| !before.contains(s))
        .map(String::as_str)
        .collect();
    mentions::notify(session, room.id, id, content, &added).await;
    Ok(())
}

/// `{"type":"delete","message_id"}`: the author, the room's owner or an admin.
pub async fn delete(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let id = fields::message_id(frame)?;
    let state = &session.state;
    let claims = &session.claims;
    {
        let _lock = lock_room(state, room.group).await?;
        let m = saved_message(state, room.group, id).await?;
        if is_deleted(&m) {
            return Ok(());
        }
        let allowed = author(&m) == Some(claims.sub.as_str())
            || claims.is_admin()
            || state.features.rooms.owner_async(room.id).await?.as_deref()
                == Some(claims.sub.as_str());
        if !allowed {
            return Err(Refusal::forbidden(
                "only the author, the room's owner or an admin may delete a message",
            ));
        }
        // The tombstone keeps who and when, never what.
        let mut tomb = Map::new();
        tomb.insert("id".into(), json!(id));
        tomb.insert("type".into(), json!("message"));
        for key in ["user", "user_id", "timestamp", "thread_id"] {
            if let Some(v) = m.get(key) {
                tomb.insert(key.into(), v.clone());
            }
        }
        tomb.insert("deleted".into(), Value::Bool(true));
        replace(state, room.group, id, &tomb).await?;
        state.features.search.remove(state, room.id, id);
        save_update(session, room, |event| frames::deleted(event, id)).await?;
    }
    Ok(())
}
