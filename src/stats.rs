//! Hub-wide counters, kept as atomics and read as a [`Stats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of the hub's counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Connections open now (including closed ones not yet released).
    pub connections: u64,
    /// Distinct users with at least one open connection.
    pub users: u64,
    /// Groups with at least one member.
    pub groups: u64,
    /// Group sends accepted since start.
    pub group_sends: u64,
    /// User and direct sends accepted since start.
    pub direct_sends: u64,
    /// Messages put in a receiver's queue since start.
    pub deliveries: u64,
    /// Messages a full queue refused or evicted since start.
    pub dropped: u64,
    /// Connections closed for being too slow since start.
    pub slow_consumer_disconnects: u64,
    /// Connections closed because their TTL ran out since start.
    pub expired_connections: u64,
    /// Messages kept in all histories now.
    pub history_messages: u64,
    /// Payload bytes kept in all histories now.
    pub history_bytes: u64,
    /// Messages waiting in all outbound queues now.
    pub queued_messages: u64,
    /// Payload bytes waiting in all outbound queues now.
    pub queued_bytes: u64,
    /// 1 while the Redis engine is connected (always 0 for the in-memory
    /// engine, which needs no connection).
    pub engine_connected: u64,
    /// Messages this node published through the engine since start.
    pub engine_published: u64,
    /// Broadcasts this node received from the engine since start.
    pub engine_received: u64,
    /// Times the engine's subscription connection came back after a loss.
    pub engine_reconnects: u64,
    /// Operations refused with `EngineUnavailable` (Redis down or slow).
    pub engine_unavailable: u64,
    /// Subscription sessions lost (or gaps seen), so messages may have
    /// been missed.
    pub engine_lost_subscriptions: u64,
    /// Connections closed because their messages may have been missed.
    pub engine_lost_subscription_closes: u64,
    /// Malformed entries found in the engine's store, skipped.
    pub engine_malformed: u64,
    /// Transactions the durable history store committed since start (0
    /// without `history_dir`).
    pub history_store_commits: u64,
    /// Commits of the durable history store that failed (disk full, I/O
    /// error) since start; each is retried.
    pub history_store_failed_commits: u64,
    /// 1 while the durable history store cannot write (saved sends are
    /// refused with `Storage`), else 0.
    pub history_store_failing: u64,
    /// Rows of the durable history store that did not decode at start,
    /// skipped.
    pub history_store_skipped_rows: u64,
}

/// The monotonic counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) group_sends: AtomicU64,
    pub(crate) direct_sends: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) slow_consumer_disconnects: AtomicU64,
    pub(crate) expired_connections: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
