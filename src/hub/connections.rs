//! Connections and membership: open, close, disconnect, join, leave, and
//! expiry by TTL. Each change is told to the backend (a no-op locally).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{shard, Hub, HubInner, CONN_SHARDS, GROUP_SHARDS, USER_SHARDS};
use crate::close::CloseReason;
use crate::conn::{ConnId, ConnState};
use crate::connection::Connection;
use crate::engine::Topic;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::reaper::Sweeper;
use crate::stats::Counters;

impl Hub {
    /// Opens a connection, optionally carrying a user id (for presence and
    /// user sends) and a time to live after which the hub closes it.
    pub fn open(&self, user: Option<&str>, ttl: Option<Duration>) -> Result<Connection> {
        self.open_shared(user.map(Arc::from), ttl)
    }

    /// [`Hub::open`] with the caller's own `Arc` of the user id, which the
    /// connection and the hub's user map then share (a host that keeps one
    /// per user saves a copy a connection).
    pub fn open_shared(&self, user: Option<Arc<str>>, ttl: Option<Duration>) -> Result<Connection> {
        if let Some(u) = &user {
            self.check_user(u)?;
        }
        let ttl_ms = ttl.map(|t| t.as_millis().min(u64::MAX as u128) as u64);
        let expires_at_ms = ttl_ms.map(|t| self.now_ms().saturating_add(t));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new(
            id,
            user.clone(),
            expires_at_ms,
            self.inner.limits,
        ));
        self.inner.conns[shard(&id, CONN_SHARDS)]
            .write()
            .insert(id, state.clone());
        if let Some(user) = &user {
            let backend = &self.inner.backend;
            {
                let mut users = self.inner.users[shard(&**user, USER_SHARDS)].lock();
                let list = users.entry(user.clone()).or_default();
                if list.is_empty() {
                    backend.want(Topic::User(user));
                }
                list.push(state.clone());
            }
            // Only once the user's channel is confirmed can no user send
            // from another node miss this connection.
            if let Err(e) = backend.wait_subscribed(Topic::User(user)) {
                let _ = self.close(id);
                return Err(e);
            }
            backend.user_online(user);
        }
        if let Some(at) = expires_at_ms {
            let inner = &self.inner;
            inner
                .reaper
                .schedule(id, at, || -> Weak<HubInner> { Arc::downgrade(inner) });
        }
        Ok(Connection::new(self.clone(), state))
    }

    /// Wakes the task waiting on connection `id`'s queue
    /// ([`Connection::recv_batch_async`]) without a message: the task runs,
    /// finds the queue as it was and waits again, and looks at whatever
    /// else it waits on meanwhile. A host can then drive every
    /// connection's periodic work (pings) from one clock instead of a
    /// timer per connection.
    pub fn wake(&self, id: ConnId) -> Result<()> {
        self.conn(id)?.wake_task();
        Ok(())
    }

    /// A handle on an open connection.
    pub fn connection(&self, id: ConnId) -> Result<Connection> {
        Ok(Connection::new(self.clone(), self.conn(id)?))
    }

    /// Closes a connection and releases its id: it leaves every group, its
    /// queue is dropped, and the id is never valid again.
    pub fn close(&self, id: ConnId) -> Result<()> {
        let state = self.inner.conns[shard(&id, CONN_SHARDS)]
            .write()
            .remove(&id)
            .ok_or(Error::NoSuchConnection(id))?;
        state.close(CloseReason::ClosedByHost);
        if state.release() {
            // Still on the ready list, which points to it without a
            // reference: it keeps the map's until it comes off.
            self.inner.ready.retire(state.clone());
        }
        self.detach(&state);
        self.forget_user(&state);
        let mut sink = Vec::new();
        let _ = state.try_recv_batch(&mut sink, usize::MAX);
        Ok(())
    }

    /// Closes a connection on the hub's side with `reason` (a host's own is
    /// [`CloseReason::Host`]): it leaves every group; its receiver drains
    /// what was queued, then sees it closed with that reason. The id stays
    /// valid until [`Hub::close`]. A connection closed already keeps its
    /// first reason.
    pub fn disconnect(&self, id: ConnId, reason: CloseReason) -> Result<()> {
        let state = self.conn(id)?;
        self.shut(&state, reason);
        Ok(())
    }

    /// Ends the TTL thread and waits for it, from the caller's thread: the
    /// thread may be holding the hub for a moment (its clock, a sweep), and
    /// if that were the last handle the hub would end on the thread itself,
    /// which cannot wait for itself. `cbx_hub_free` calls it first, so no
    /// thread of the hub outlives the free.
    pub(crate) fn stop_reaper(&self) {
        self.inner.reaper.shutdown();
    }

    /// Closes every connection on the hub's side (receivers drain, then see
    /// it closed) and empties every group.
    pub fn close_all(&self) {
        for conn in self.all_conns() {
            self.shut(&conn, CloseReason::HubClosed);
        }
    }

    /// Closes the local connections in `groups` and of `users`, whose
    /// messages the shared engine may have missed; returns how many.
    #[cfg(feature = "redis")]
    pub(super) fn close_lost(
        &self,
        groups: &[String],
        users: &[String],
        reason: CloseReason,
    ) -> u64 {
        let mut victims: Vec<Arc<ConnState>> = Vec::new();
        for name in groups {
            if let Some(g) = self.group(name) {
                victims.extend(g.state.lock().members.iter().cloned());
            }
        }
        for user in users {
            victims.extend(self.user_conns(user));
        }
        let mut closed = 0;
        for conn in &victims {
            if self.shut(conn, reason.clone()) {
                closed += 1;
            }
        }
        closed
    }

    /// Closes a connection on the hub's side and takes it out of its
    /// groups; false when it was closed already (it leaves them anyway).
    fn shut(&self, conn: &Arc<ConnState>, reason: CloseReason) -> bool {
        let closed = conn.close(reason);
        if closed && conn.mark_if_pending(&self.inner.ready) {
            self.inner.ready.list(conn);
        }
        self.detach(conn);
        closed
    }

    /// Closes every connection whose TTL has run out; returns how many.
    /// A background thread calls this on time; tests with a manual clock call
    /// it themselves.
    pub fn sweep_expired(&self) -> usize {
        let due = self.inner.reaper.take_due(self.now_ms());
        let mut closed = 0;
        for id in due {
            if let Ok(state) = self.conn(id) {
                if state.close(CloseReason::Expired) {
                    if state.mark_if_pending(&self.inner.ready) {
                        self.inner.ready.list(&state);
                    }
                    self.detach(&state);
                    closed += 1;
                }
            }
        }
        Counters::add(&self.inner.counters.expired_connections, closed as u64);
        closed
    }

    /// Adds a connection to a group (created on first use). Idempotent.
    pub fn group_add(&self, id: ConnId, group: &str) -> Result<()> {
        self.check_group(group)?;
        let conn = self.conn(id)?;
        let backend = &self.inner.backend;
        let mut groups = conn.groups.lock();
        if let Some(reason) = conn.close_reason() {
            return Err(Error::Closed(reason));
        }
        let user_new = loop {
            let g = self.group_or_create(group);
            let mut st = g.state.lock();
            if st.dead {
                continue;
            }
            // Only a shared engine needs to know (presence across nodes).
            let user_new =
                backend.is_shared() && conn.user.as_ref().is_some_and(|u| !st.presence.contains(u));
            if st.join(&conn) && st.members.len() == 1 {
                // Under the group's lock, so the wanted set follows
                // membership exactly.
                backend.want(Topic::Group(group));
            }
            drop(st);
            if !groups.contains(group) {
                groups.insert(g.name.clone());
            }
            break user_new;
        };
        drop(groups);
        // Joined once the group's channel is confirmed: nothing sent after
        // this returns is missed.
        if let Err(e) = backend.wait_subscribed(Topic::Group(group)) {
            let _ = self.group_remove(id, group);
            return Err(e);
        }
        if let (true, Some(user)) = (user_new, &conn.user) {
            backend.presence_join(group, user);
        }
        Ok(())
    }

    /// Removes a connection from a group. Removing a non-member is not an
    /// error (nothing changes).
    pub fn group_remove(&self, id: ConnId, group: &str) -> Result<()> {
        self.check_group(group)?;
        let conn = self.conn(id)?;
        let mut groups = conn.groups.lock();
        groups.remove(group);
        self.leave_group(&conn, group);
        Ok(())
    }

    /// Empties every group (connections stay open), as Nexios'
    /// `flush_groups` does. History is kept.
    pub fn groups_flush(&self) {
        for conn in self.all_conns() {
            self.detach(&conn);
        }
    }

    /// Removes a connection from every group it is in.
    pub(super) fn detach(&self, conn: &Arc<ConnState>) {
        let names: Vec<Arc<str>> = conn.groups.lock().take_all();
        for name in names {
            self.leave_group(conn, &name);
        }
    }

    fn forget_user(&self, conn: &ConnState) {
        let Some(user) = &conn.user else { return };
        let backend = &self.inner.backend;
        let gone = {
            let mut users = self.inner.users[shard(&**user, USER_SHARDS)].lock();
            let Some(list) = users.get_mut(user) else {
                return;
            };
            list.remove(conn.id);
            let gone = list.is_empty();
            if gone {
                users.remove(user);
                backend.unwant(Topic::User(user));
            }
            gone
        };
        if gone {
            backend.user_offline(user);
        }
    }

    fn leave_group(&self, conn: &ConnState, name: &str) -> bool {
        let Some(group) = self.group(name) else {
            return false;
        };
        let backend = &self.inner.backend;
        let (left, disposable, user_gone) = {
            let mut st = group.state.lock();
            let left = st.leave(conn.id);
            let mut user_gone = false;
            if left && backend.is_shared() {
                // Under the group's lock, so the wanted set follows
                // membership exactly.
                if st.members.is_empty() {
                    backend.unwant(Topic::Group(name));
                }
                user_gone = conn.user.as_ref().is_some_and(|u| !st.presence.contains(u));
            }
            (left, st.is_disposable(), user_gone)
        };
        if disposable {
            self.drop_group_if_disposable(name);
        }
        if let (true, Some(user)) = (user_gone, &conn.user) {
            backend.presence_leave(name, user);
        }
        left
    }

    fn drop_group_if_disposable(&self, name: &str) {
        let mut shard = self.inner.groups[shard(name, GROUP_SHARDS)].write();
        if let Some(group) = shard.get(name) {
            let mut st = group.state.lock();
            if st.is_disposable() {
                st.dead = true;
                drop(st);
                shard.remove(name);
            }
        }
    }

    // ----- receiving (by id; a Connection handle skips the lookup) ------

    /// Waits up to `timeout` (None = forever) for one message.
    /// `Err(Empty)` on timeout, `Err(Closed)` once closed and drained.
    pub fn recv(&self, id: ConnId, timeout: Option<Duration>) -> Result<Message> {
        self.connection(id)?.recv(timeout)
    }

    /// Moves up to `max` pending messages into `out` without waiting.
    /// `Ok(0)` when none is pending, `Err(Closed)` once closed and drained.
    pub fn try_recv_batch(&self, id: ConnId, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        self.conn(id)?.try_recv_batch(out, max)
    }
}

/// The reaper's thread holds the hub weakly: it never keeps it alive.
impl Sweeper for Weak<HubInner> {
    fn now_ms(&self) -> Option<u64> {
        self.upgrade().map(|inner| inner.clock.now_ms())
    }

    fn sweep(&self) -> Option<()> {
        let inner = self.upgrade()?;
        Hub { inner }.sweep_expired();
        Some(())
    }
}
