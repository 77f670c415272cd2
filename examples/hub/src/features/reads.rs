//! Read receipts: `{"type":"read","message_id"}` remembers a user's last
//! read message and tells the room; a joiner gets everyone's after its
//! `history` frame.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde_json::{json, Map, Value};

use super::{fields, saved, shard_of, ChatRoom, SHARDS};
use crate::error::Refusal;
use crate::frames;
use crate::session::Session;

/// room -> sub -> last message id read, sharded by room.
#[derive(Debug)]
pub struct Reads {
    shards: [Mutex<FxHashMap<String, FxHashMap<String, u64>>>; SHARDS],
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl Reads {
    /// Moves `sub`'s last read message in `room` forward to `id`; false
    /// when it already was there or further.
    fn advance(&self, room: &str, sub: &str, id: u64) -> bool {
        let mut reads = self.shards[shard_of(room)].lock();
        let users = reads.entry(room.to_owned()).or_default();
        match users.get(sub) {
            Some(&seen) if seen >= id => false,
            _ => {
                users.insert(sub.to_owned(), id);
                true
            }
        }
    }

    /// Everyone's last read message in `room`.
    fn of_room(&self, room: &str) -> Map<String, Value> {
        self.shards[shard_of(room)]
            .lock()
            .get(room)
            .map(|users| {
                users
                    .iter()
                    .map(|(sub, id)| (sub.clone(), json!(id)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets a deleted room's reads.
    pub fn forget_room(&self, room: &str) {
        self.shards[shard_of(room)].lock().remove(room);
    }
}

/// `{"type":"read","message_id"}`: remembers the user's last read message
/// and tells the room.
pub async fn read(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let id = fields::message_id(frame)?;
    let state = &session.state;
    let last = saved::last_id(state, room.group).await.unwrap_or(0);
    if id == 0 || id > last {
        return Err(Refusal::not_found(format!("no message {id} in this room")));
    }
    let sub = session.claims.sub.as_str();
    if state.features.reads.advance(room.id, sub, id) {
        let receipt = json!({"type": "read", "user": sub, "message_id": id});
        room.broadcast(session, frames::encode(&receipt)).await;
    }
    Ok(())
}

/// After the joiner's `history` frame: everyone's last read message.
pub fn send_reads(session: &Session, room: &str) {
    let reads = session.state.features.reads.of_room(room);
    session.send_json(&json!({"type": "reads", "reads": reads}));
}
