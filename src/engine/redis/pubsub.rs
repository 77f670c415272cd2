//! The subscription connection: one Redis pub/sub connection per node,
//! subscribed to exactly the channels local membership needs, read by one
//! task that hands every broadcast to the hub in the order Redis sent it.
//!
//! Pub/sub is at-most-once: while the connection is down, broadcasts are
//! lost. So when a session ends, every local connection that depended on it
//! is closed with `CloseReason::EngineLostSubscription` (its client reconnects and
//! recovers by offset), then the node reconnects with back-off and
//! subscribes again to what is still wanted. A gap in a group's offsets
//! (which a healthy session never shows) is handled the same way.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use rustc_hash::{FxHashMap, FxHashSet};

use super::wire::{self, Channel};
use super::Shared;
use crate::close::CloseReason;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often an idle subscription connection is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(2);

/// Which channels are wanted and which Redis confirmed.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// Channels local membership needs.
    pub(crate) desired: FxHashSet<String>,
    /// Channels confirmed subscribed in the current session.
    pub(crate) active: FxHashSet<String>,
    /// Channels whose wanted state changed since the last reconcile: only
    /// these are compared, so a join costs O(1) however many channels a
    /// node holds (every user has one; comparing the whole sets made N
    /// joins cost N²).
    pub(crate) changed: FxHashSet<String>,
    /// A session is up.
    pub(crate) connected: bool,
}

impl Subscriptions {
    /// Channels to subscribe and to unsubscribe, from those that changed;
    /// those to unsubscribe are no longer active when this returns.
    pub(crate) fn take_changes(&mut self) -> (Vec<String>, Vec<String>) {
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for channel in std::mem::take(&mut self.changed) {
            match (
                self.desired.contains(&channel),
                self.active.contains(&channel),
            ) {
                (true, false) => add.push(channel),
                (false, true) => remove.push(channel),
                _ => {}
            }
        }
        // No longer active before the UNSUBSCRIBE is sent: a join that
        // wants the channel again meanwhile waits for the SUBSCRIBE that
        // follows, instead of trusting a subscription about to go.
        for channel in &remove {
            self.active.remove(channel);
        }
        (add, remove)
    }
}

/// Runs sessions forever (until the runtime stops).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = FIRST_BACKOFF;
    let mut sessions = 0u64;
    loop {
        let attempt = tokio::time::timeout(shared.timeout, shared.client.get_async_pubsub()).await;
        match attempt {
            Ok(Ok(pubsub)) => {
                backoff = FIRST_BACKOFF;
                if sessions > 0 {
                    shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                sessions += 1;
                session(&shared, pubsub).await;
                lose(&shared, CloseReason::EngineLostSubscription);
            }
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Marks the session down and closes whatever depended on it.
fn lose(shared: &Shared, reason: CloseReason) {
    let lost: Vec<String> = {
        let mut s = shared.subs.lock();
        s.connected = false;
        s.active.drain().collect()
    };
    shared.connected.store(false, Ordering::Relaxed);
    shared.subs_cond.notify_all();
    if lost.is_empty() {
        return;
    }
    let (mut groups, mut users) = (Vec::new(), Vec::new());
    for channel in &lost {
        match shared.keys.parse_channel(channel) {
            Some(Channel::Group(g)) => groups.push(g.to_owned()),
            Some(Channel::User(u)) => users.push(u.to_owned()),
            None => {}
        }
    }
    shared
        .counters
        .lost_subscriptions
        .fetch_add(1, Ordering::Relaxed);
    let closed = shared.sink.lost(&groups, &users, reason);
    shared
        .counters
        .lost_closes
        .fetch_add(closed, Ordering::Relaxed);
}

async fn session(shared: &Arc<Shared>, pubsub: redis::aio::PubSub) {
    let (mut sink, mut stream) = pubsub.split();
    {
        let mut s = shared.subs.lock();
        s.connected = true;
        // A new session has nothing subscribed: every wanted channel.
        let wanted: Vec<String> = s.desired.iter().cloned().collect();
        s.changed.extend(wanted);
        drop(s);
        shared.connected.store(true, Ordering::Relaxed);
    }
    shared.subs_cond.notify_all();
    shared.heartbeat_now.notify_one();
    // Per group: (epoch, last offset seen), to notice a gap.
    let mut seen: FxHashMap<String, (u64, u64)> = FxHashMap::default();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut dirty = true;
    loop {
        if dirty {
            dirty = false;
            if !reconcile(shared, &mut sink, &mut seen).await {
                return;
            }
        }
        tokio::select! {
            message = stream.next() => match message {
                Some(m) => dispatch(shared, &m, &mut seen),
                None => return,
            },
            _ = shared.subs_changed.notified() => dirty = true,
            _ = ping.tick() => {
                let pong = tokio::time::timeout(shared.timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// Brings Redis' subscriptions to the wanted set; false when the session
/// broke.
async fn reconcile(
    shared: &Shared,
    sink: &mut PubSubSink,
    seen: &mut FxHashMap<String, (u64, u64)>,
) -> bool {
    loop {
        let (add, remove) = shared.subs.lock().take_changes();
        if add.is_empty() && remove.is_empty() {
            return true;
        }
        for channel in &remove {
            let r = tokio::time::timeout(shared.timeout, sink.unsubscribe(channel)).await;
            if !matches!(r, Ok(Ok(()))) {
                return false;
            }
            if let Some(Channel::Group(g)) = shared.keys.parse_channel(channel) {
                seen.remove(g);
            }
        }
        // One channel a SUBSCRIBE: the client pairs one reply to one request.
        let subscribes = add.iter().map(|channel| {
            let mut sink = sink.clone();
            async move { sink.subscribe(channel).await }
        });
        let done =
            tokio::time::timeout(shared.timeout, futures_util::future::join_all(subscribes)).await;
        let Ok(results) = done else { return false };
        if results.iter().any(|r| r.is_err()) {
            return false;
        }
        let mut s = shared.subs.lock();
        for channel in add {
            // Unwanted while its SUBSCRIBE was out: look at it again.
            if !s.desired.contains(&channel) {
                s.changed.insert(channel.clone());
            }
            s.active.insert(channel);
        }
        drop(s);
        shared.subs_cond.notify_all();
    }
}

fn dispatch(shared: &Shared, m: &redis::Msg, seen: &mut FxHashMap<String, (u64, u64)>) {
    let malformed = || {
        shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
    };
    let Some(b) = wire::decode(Bytes::copy_from_slice(m.get_payload_bytes())) else {
        return malformed();
    };
    // Anyone can PUBLISH on Redis: a payload is checked against its kind
    // again (once per node, not per member) before a client sees it.
    if b.kind.validate(&b.payload).is_err() {
        return malformed();
    }
    shared.counters.received.fetch_add(1, Ordering::Relaxed);
    match shared.keys.parse_channel(m.get_channel_name()) {
        Some(Channel::Group(group)) => {
            if b.offset > 0 {
                let gap = match seen.get_mut(group) {
                    Some((epoch, last)) if *epoch == b.epoch => {
                        let gap = b.offset != *last + 1;
                        *last = b.offset;
                        gap
                    }
                    Some(entry) => {
                        *entry = (b.epoch, b.offset);
                        false
                    }
                    None => {
                        seen.insert(group.to_owned(), (b.epoch, b.offset));
                        false
                    }
                };
                if gap {
                    shared
                        .counters
                        .lost_subscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    let closed = shared.sink.lost(
                        &[group.to_owned()],
                        &[],
                        CloseReason::EngineMissedMessages,
                    );
                    shared
                        .counters
                        .lost_closes
                        .fetch_add(closed, Ordering::Relaxed);
                }
            }
            shared
                .sink
                .deliver_group(group, b.kind, b.payload, b.offset, b.ts_ms);
        }
        Some(Channel::User(user)) => shared.sink.deliver_user(user, b.kind, b.payload, b.ts_ms),
        None => malformed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> FxHashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_changed_channels_are_compared() {
        let mut s = Subscriptions {
            desired: set(&["a", "b", "c"]),
            active: set(&["a", "old"]),
            changed: set(&["b", "old"]),
            ..Default::default()
        };
        let (add, remove) = s.take_changes();
        // "c" is wanted but did not change since the last look: left alone.
        assert_eq!(
            (add, remove),
            (vec!["b".to_string()], vec!["old".to_string()])
        );
        assert!(s.changed.is_empty());
        assert_eq!(s.active, set(&["a"]), "unsubscribed channels leave at once");
        // A channel wanted and unwanted again in between needs nothing.
        s.changed = set(&["a", "zz"]);
        assert_eq!(s.take_changes(), (vec![], vec![]));
    }
}
