//! Threads: replies are messages with `thread_id` (a reply to a reply
//! joins the root's thread); `{"type":"thread","message_id"}` answers the
//! root and its newest replies.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde_json::Value;

use super::{fields, saved, shard_of, ChatRoom, SHARDS};
use crate::error::Refusal;
use crate::session::Session;

/// Most replies a `thread` answer carries (the newest).
const THREAD_MAX: usize = 500;

/// (room, root id) -> reply ids, ascending.
type Replies = FxHashMap<(String, u64), Vec<u64>>;

/// Reply ids by thread root, sharded by room.
#[derive(Debug)]
pub struct Threads {
    shards: [Mutex<Replies>; SHARDS],
}

impl Default for Threads {
    fn default() -> Self {
        Threads {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl Threads {
    /// Records reply `id` to `root` (ids mostly come in order).
    pub fn add_reply(&self, room: &str, root: u64, id: u64) {
        let mut threads = self.shards[shard_of(room)].lock();
        let replies = threads.entry((room.to_owned(), root)).or_default();
        match replies.last() {
            Some(&last) if last > id => {
                let i = replies.partition_point(|&r| r < id);
                replies.insert(i, id);
            }
            _ => replies.push(id),
        }
    }

    /// The newest `max` replies to `root`.
    fn replies(&self, room: &str, root: u64, max: usize) -> Vec<u64> {
        self.shards[shard_of(room)]
            .lock()
            .get(&(room.to_owned(), root))
            .map(|r| r[r.len().saturating_sub(max)..].to_vec())
            .unwrap_or_default()
    }

    /// Forgets threads whose root history no longer keeps (it cannot be
    /// asked for).
    pub fn evict_before(&self, room: &str, first_kept: u64) {
        self.shards[shard_of(room)]
            .lock()
            .retain(|(r, root), _| r != room || *root >= first_kept);
    }

    /// Forgets a deleted room's threads.
    pub fn forget_room(&self, room: &str) {
        for shard in &self.shards {
            shard.lock().retain(|(r, _), _| r != room);
        }
    }
}

/// The root a reply to `thread_id` belongs to: the message itself, or its
/// own root when it is a reply; `not_found` when it is not kept.
pub async fn root_of(
    session: &Session,
    room: ChatRoom<'_>,
    thread_id: u64,
) -> Result<u64, Refusal> {
    let m = saved::saved_message(&session.state, room.group, thread_id)
        .await
        .map_err(|_| Refusal::not_found(format!("no message {thread_id} to reply to")))?;
    Ok(m.get("thread_id")
        .and_then(Value::as_u64)
        .unwrap_or(thread_id))
}

/// `{"type":"thread","message_id"}`: the root and its replies.
pub async fn thread(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let id = fields::message_id(frame)?;
    let state = &session.state;
    let root = saved::saved_message(state, room.group, id).await?;
    let replies = state.features.threads.replies(room.id, id, THREAD_MAX);
    let mut messages = vec![Value::Object(root)];
    for (n, reply) in replies.into_iter().enumerate() {
        if n % saved::READS_PER_YIELD == saved::READS_PER_YIELD - 1 {
            tokio::task::yield_now().await;
        }
        if let Some(m) = saved::saved(state, room.group, reply).await {
            messages.push(Value::Object(m));
        }
    }
    // The newest replies are kept when the whole thread does not fit.
    let frame = saved::fit_off_worker(
        state,
        messages,
        move |messages| {
            crate::frames::encode(&ThreadFrame {
                ty: "thread",
                message_id: id,
                messages,
            })
        },
        saved::Trim::AfterTheFirst,
    )
    .await;
    session.send(frame);
    Ok(())
}

/// The `thread` frame.
#[derive(serde::Serialize)]
struct ThreadFrame<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    message_id: u64,
    messages: &'a [Box<serde_json::value::RawValue>],
}
