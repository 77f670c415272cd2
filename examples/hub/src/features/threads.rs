//! Threads: replies are messages with `thread_id` (a reply to a reply
//! joins the root's thread); `{"type":"thread","message_id"}` answers the
//! root and its newest replies.

use std::sync::Arc;

use serde_json::Value;

use super::{fields, saved, ChatRoom};
use crate::error::Refusal;
use crate::session::Session;
use crate::store::{Store, StoreError};

/// Most replies a `thread` answer carries (the newest).
const THREAD_MAX: usize = 500;

/// Reply ids by thread root, in the hub's state store (batched in
/// `hub.redb`; a sorted set per thread in Redis).
#[derive(Debug)]
pub struct Threads {
    store: Arc<Store>,
}

impl Threads {
    /// Threads kept in `store`.
    pub fn new(store: Arc<Store>) -> Threads {
        Threads { store }
    }

    /// Records reply `id` to `root`.
    pub async fn add_reply(&self, room: &str, root: u64, id: u64) {
        if let Err(e) = self.store.add_reply(room, root, id).await {
            tracing::error!(error = %e, room, root, id, "could not record a thread reply");
        }
    }

    /// The newest `max` replies to `root`.
    async fn replies(&self, room: &str, root: u64, max: usize) -> Result<Vec<u64>, StoreError> {
        self.store.replies(room, root, max).await
    }

    /// Forgets threads whose root history no longer keeps (it cannot be
    /// asked for).
    pub async fn evict_before(&self, room: &str, first_kept: u64) {
        if let Err(e) = self.store.evict_threads(room, first_kept).await {
            tracing::warn!(error = %e, room, "could not drop old threads");
        }
    }

    /// Forgets a deleted room's threads.
    pub async fn forget_room(&self, room: &str) {
        self.evict_before(room, u64::MAX).await;
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
    let replies = state
        .features
        .threads
        .replies(room.id, id, THREAD_MAX)
        .await?;
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
