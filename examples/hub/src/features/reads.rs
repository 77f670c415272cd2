//! Read receipts: `{"type":"read","message_id"}` remembers a user's last
//! read message and tells the room; a joiner gets everyone's after its
//! `history` frame.
//!
//! Kept in the hub's state store (table `reads`, group = room, field =
//! user id, value = the message id in decimal): batched in `hub.redb`
//! (they come often and a lost last one is harmless), in Redis moved up by
//! one atomic script so two hubs never move a receipt back. Each receipt
//! also moves the user's position in `unread` (counts, other devices).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{fields, saved, ChatRoom};
use crate::error::Refusal;
use crate::frames;
use crate::session::Session;
use crate::store::{parse_u64, Store, StoreError, Table};

/// Everyone's last read message per room, in the store.
#[derive(Debug)]
pub struct Reads {
    store: Arc<Store>,
}

impl Reads {
    /// Receipts kept in `store`.
    pub fn new(store: Arc<Store>) -> Reads {
        Reads { store }
    }

    /// Moves `sub`'s last read message in `room` forward to `id`; false
    /// when it already was there or further.
    async fn advance(&self, room: &str, sub: &str, id: u64) -> Result<bool, StoreError> {
        self.store.advance(Table::Reads, room, sub, id).await
    }

    /// Everyone's last read message in `room` (damaged entries skipped).
    pub async fn of_room(&self, room: &str) -> Result<Map<String, Value>, StoreError> {
        let mut out = Map::new();
        for (sub, raw) in self.store.all(Table::Reads, room).await? {
            match parse_u64(&raw) {
                Some(id) => {
                    out.insert(sub, json!(id));
                }
                None => self
                    .store
                    .report_corrupt(Table::Reads, room, &sub, "not a number"),
            }
        }
        Ok(out)
    }

    /// Forgets a deleted room's reads.
    pub async fn forget_room(&self, room: &str) {
        if let Err(e) = self.store.drop_group(Table::Reads, room).await {
            tracing::error!(error = %e, room, "could not forget a room's read receipts");
        }
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
    if state.features.reads.advance(room.id, sub, id).await? {
        let receipt = json!({"type": "read", "user": sub, "message_id": id});
        room.broadcast(session, frames::encode(&receipt)).await;
    }
    super::unread::room_read(session, room.id, id).await
}

/// What the joiner gets right after its `history` frame: everyone's last
/// read message (an `error` frame instead when the store cannot answer).
pub async fn reads_frame(session: &Session, room: &str) -> Bytes {
    match session.state.features.reads.of_room(room).await {
        Ok(reads) => frames::encode(&json!({"type": "reads", "reads": reads})),
        Err(e) => {
            let refusal = Refusal::from(e);
            frames::error(refusal.code.as_str(), &refusal.detail)
        }
    }
}
