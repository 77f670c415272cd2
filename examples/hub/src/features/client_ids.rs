//! Resends: a message sent again with the same `client_id` (a client that
//! lost its socket before the `ack`) is acked with the first copy's id and
//! saved once.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::{shard_of, SHARDS};
use crate::error::Refusal;

/// Client ids remembered for deduplication (oldest forgotten first).
const MAX_CLIENT_IDS: usize = 1 << 20;
/// Longest client id, in bytes.
const MAX_CLIENT_ID_BYTES: usize = 128;
/// A client id whose message was not saved within this long is free again.
const PENDING: Duration = Duration::from_secs(10);

/// What to do with a chat message that carries a `client_id`.
pub enum Decision {
    /// Save and send it.
    Send,
    /// A resend of a message already saved with this id: ack, save nothing.
    Duplicate(u64),
    /// A resend of a message being saved right now: drop it.
    InFlight,
}

/// Recent client ids of one shard of rooms, by a keyed hash of (room, sub,
/// client id): 64 bits a message instead of three strings, and SipHash with
/// a random key so nobody can aim a collision at another user's message.
#[derive(Debug, Default)]
struct Shard {
    /// Key hash -> saved id (0 while being saved) and when.
    ids: FxHashMap<u64, (u64, Instant)>,
    /// Oldest first, for forgetting.
    order: VecDeque<u64>,
    hasher: std::collections::hash_map::RandomState,
}

impl Shard {
    fn key(&self, room: &str, sub: &str, client_id: &str) -> u64 {
        self.hasher.hash_one((room, sub, client_id))
    }
}

/// Recent client ids, sharded by room.
#[derive(Debug)]
pub struct ClientIds {
    shards: [Mutex<Shard>; SHARDS],
}

impl Default for ClientIds {
    fn default() -> Self {
        ClientIds {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl ClientIds {
    /// Before saving: a new client id is marked as being saved.
    pub fn check(&self, room: &str, sub: &str, client_id: &str) -> Result<Decision, Refusal> {
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(Refusal::bad_request("client_id must be 1-128 bytes"));
        }
        let mut shard = self.shards[shard_of(room)].lock();
        let key = shard.key(room, sub, client_id);
        match shard.ids.get(&key) {
            Some(&(id, _)) if id > 0 => return Ok(Decision::Duplicate(id)),
            Some(&(_, at)) if at.elapsed() < PENDING => return Ok(Decision::InFlight),
            _ => {}
        }
        shard.ids.insert(key, (0, Instant::now()));
        shard.order.push_back(key);
        while shard.order.len() > MAX_CLIENT_IDS / SHARDS {
            if let Some(old) = shard.order.pop_front() {
                shard.ids.remove(&old);
            }
        }
        Ok(Decision::Send)
    }

    /// After saving: the client id's message is `id`.
    pub fn saved(&self, room: &str, sub: &str, client_id: &str, id: u64) {
        let mut shard = self.shards[shard_of(room)].lock();
        let key = shard.key(room, sub, client_id);
        if let Some(entry) = shard.ids.get_mut(&key) {
            entry.0 = id;
        }
    }
}
