//! The engine seam: where fan-out across nodes, history and presence live.
//!
//! The default engine is the hub's own memory: groups, history and presence
//! are the structures in `hub`, `group`, `history` and `presence`, and a send
//! pushes straight into the members' queues. That path has no engine object
//! at all (the hub's `Backend` is `Local`; `hub/backend.rs` is the one place
//! that matches on it), so the in-memory hub pays one branch per operation
//! and nothing per delivery.
//!
//! A shared engine (`redis`) implements the three traits below; the blocking
//! methods have `_async` twins for async hosts, which await the engine
//! instead of holding the calling thread. With one
//! configured, the hub still delivers to its local members itself, but only
//! what the engine hands back through [`EngineSink`]: a send goes out to the
//! engine, which orders it, gives it an offset and broadcasts it to every
//! node, the sending node included, so every node sees one order per group.
//!
//! Without the `redis` cargo feature no engine implements the seam; its
//! types stay, so the hub has one shape either way, and `Backend::Shared` is
//! never built.
//!
//! Engines do their I/O on their own background thread(s); the trait
//! methods block the caller for at most the engine's timeout and fail with
//! [`crate::Error::EngineUnavailable`], never buffering without bound.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::close::CloseReason;
use crate::error::Result;
use crate::history::{HistoryPage, HistoryQuery};
use crate::message::{Kind, Message};
use crate::stats::Stats;

#[cfg(feature = "redis")]
pub(crate) mod redis;

/// What the engine subscribes to on behalf of local connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic<'a> {
    /// A group with local members.
    Group(&'a str),
    /// A user with local connections (user sends).
    User(&'a str),
}

/// One group send handed to the engine.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct GroupPublish<'a> {
    pub(crate) group: &'a str,
    pub(crate) kind: Kind,
    /// Save to the shared history (and get an offset).
    pub(crate) save: bool,
    /// The payload, possibly carrying the offset placeholder.
    pub(crate) data: &'a [u8],
    /// Byte index of the placeholder `u64::MAX` digits the engine replaces
    /// with the real offset (see [`OFFSET_PLACEHOLDER`]).
    pub(crate) placeholder_at: Option<usize>,
    pub(crate) ts_ms: u64,
}

/// A boxed engine operation, awaitable from any executor.
pub(crate) type EngineFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// The digits a payload builder is given as its offset when the real one is
/// only known inside the engine; the engine replaces the first occurrence.
pub(crate) const OFFSET_PLACEHOLDER: u64 = u64::MAX;

/// Fan-out across nodes: publish, and keep subscriptions following local
/// membership.
pub(crate) trait Fanout: Send + Sync {
    /// Orders, saves (when asked) and broadcasts a group send; returns its
    /// offset (0 when not saved). Delivery, on every node, comes back
    /// through [`EngineSink::deliver_group`].
    fn publish_group(&self, publish: GroupPublish<'_>) -> Result<u64>;

    /// [`Fanout::publish_group`] without blocking the caller: the future
    /// resolves when the engine answered (within its timeout). It owns what
    /// it needs, so it can be awaited after `publish` is gone.
    fn publish_group_async(&self, publish: GroupPublish<'_>) -> EngineFuture<u64>;

    /// Broadcasts a user send to every node holding a connection of `user`.
    fn publish_user(&self, user: &str, kind: Kind, data: &[u8], ts_ms: u64) -> Result<()>;

    /// Marks a topic as needed (a first local member or connection). Never
    /// blocks: callers hold the lock that orders membership changes.
    fn want(&self, topic: Topic<'_>);

    /// Marks a topic as no longer needed. Never blocks.
    fn unwant(&self, topic: Topic<'_>);

    /// Waits until the engine confirms it receives the topic's messages.
    fn wait_subscribed(&self, topic: Topic<'_>) -> Result<()>;
}

/// Group history kept by the engine, shared by every node.
pub(crate) trait HistoryStore: Send + Sync {
    /// Reads part of one group's history.
    fn read(&self, group: &str, query: HistoryQuery, now_ms: u64) -> Result<HistoryPage>;
    /// [`HistoryStore::read`] without blocking the caller.
    fn read_async(
        &self,
        group: &str,
        query: HistoryQuery,
        now_ms: u64,
    ) -> EngineFuture<HistoryPage>;
    /// The newest offset the group ever assigned (0: none). Flushes and
    /// evictions do not lower it.
    fn last_offset(&self, group: &str) -> Result<u64>;
    /// [`HistoryStore::last_offset`] without blocking the caller.
    fn last_offset_async(&self, group: &str) -> EngineFuture<u64>;
    /// Groups that have saved history.
    fn groups_with_history(&self) -> Result<Vec<String>>;
    /// Replaces an entry in place; `None` when no entry has that offset.
    fn replace(&self, group: &str, offset: u64, kind: Kind, data: Bytes)
        -> Result<Option<Message>>;
    /// [`HistoryStore::replace`] without blocking the caller.
    fn replace_async(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: Bytes,
    ) -> EngineFuture<Option<Message>>;
    /// Forgets a group's history and gives it a new epoch.
    fn flush(&self, group: &str) -> Result<()>;
}

/// Presence by user across nodes.
pub(crate) trait PresenceStore: Send + Sync {
    /// `user` has a first local connection in `group` (best effort).
    fn presence_join(&self, group: &str, user: &str);
    /// `user`'s last local connection left `group` (best effort).
    fn presence_leave(&self, group: &str, user: &str);
    /// `user` opened a first local connection (best effort).
    fn user_online(&self, user: &str);
    /// `user` closed its last local connection (best effort).
    fn user_offline(&self, user: &str);
    /// Distinct users in `group` on every node, sorted.
    fn group_users(&self, group: &str) -> Result<Vec<String>>;
    /// [`PresenceStore::group_users`] without blocking the caller.
    fn group_users_async(&self, group: &str) -> EngineFuture<Vec<String>>;
    /// Distinct users connected to any node, sorted.
    fn users(&self) -> Result<Vec<String>>;
    /// [`PresenceStore::users`] without blocking the caller.
    fn users_async(&self) -> EngineFuture<Vec<String>>;
}

/// A shared engine.
pub(crate) trait Engine: Fanout + HistoryStore + PresenceStore {
    /// Adds the engine's counters to a stats snapshot.
    fn fill_stats(&self, stats: &mut Stats);
    /// Removes this node's presence and stops, as a node shutting down does.
    fn goodbye(&self, presence: &LocalPresence);
    /// Stops without a goodbye, as a node that dies does (tests).
    fn halt(&self);
}

/// This node's presence, as the heartbeat refreshes it.
#[derive(Debug, Default)]
pub(crate) struct LocalPresence {
    /// (group, users with a local connection in it).
    pub(crate) groups: Vec<(String, Vec<String>)>,
    /// Users with a local connection.
    pub(crate) users: Vec<String>,
}

/// The hub as the engine sees it: where broadcasts land.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait EngineSink: Send + Sync {
    /// A group message from any node, in the group's one order.
    fn deliver_group(&self, group: &str, kind: Kind, data: Bytes, offset: u64, ts_ms: u64);
    /// A user message from any node.
    fn deliver_user(&self, user: &str, kind: Kind, data: Bytes, ts_ms: u64);
    /// Messages for these topics may have been missed: close their local
    /// connections with `reason` so clients reconnect and recover by offset.
    fn lost(&self, groups: &[String], users: &[String], reason: CloseReason) -> u64;
    /// What this node holds now, for the presence heartbeat.
    fn local_presence(&self) -> LocalPresence;
}

/// Where the offset placeholder's digits start in a built payload.
pub(crate) fn placeholder_at(data: &[u8]) -> Option<usize> {
    let digits = OFFSET_PLACEHOLDER.to_string();
    data.windows(digits.len())
        .position(|w| w == digits.as_bytes())
}
