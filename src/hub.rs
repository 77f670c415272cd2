//! The hub: connections, groups, users and the operations over them.
//!
//! Maps are sharded behind `RwLock`s so that sends to different groups never
//! share a lock; a send takes one shard read lock to find its group, then
//! that group's lock to append to history and push to every member.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::close::CloseReason;
use crate::config::{Config, EngineKind};
use crate::conn::{ConnId, ConnState, Limits, Push, RecvBatch};
use crate::engine::{self, Engine, EngineSink, GroupPublish, LocalPresence, Topic};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::history::{Bounds, HistoryPage, HistoryQuery};
use crate::message::{Kind, Message};
use crate::ready::Ready;
use crate::stats::{Counters, Stats};

const CONN_SHARDS: usize = 16;
const GROUP_SHARDS: usize = 64;
const USER_SHARDS: usize = 16;

/// What a send did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SendReport {
    /// Receivers whose queue took the message.
    pub delivered: u64,
    /// Messages refused or evicted by full queues (the new one under
    /// `drop_newest` and `disconnect`, old ones under `drop_oldest`).
    pub dropped: u64,
    /// Receivers closed by this send for being too slow.
    pub disconnected: u64,
    /// The message's history offset, 0 when it was not saved.
    pub offset: u64,
}

/// What the hub's async methods return: owns everything it needs (no
/// borrow of the hub), awaitable from any executor. With the in-memory
/// engine it is ready at once; with Redis it waits for Redis' answer
/// without holding the thread that awaits it.
pub type HubFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the async sends return (see [`HubFuture`]).
pub type SendFuture = HubFuture<Result<SendReport>>;

/// A future that is already done.
fn ready<T: Send + 'static>(value: T) -> HubFuture<T> {
    Box::pin(std::future::ready(value))
}

/// One group as the listing shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// Member connection ids, ascending.
    pub connections: Vec<ConnId>,
    /// Distinct users among the members, sorted (a user with several
    /// connections is listed once).
    pub users: Vec<String>,
}

/// The hub. Cheap to clone (a shared handle); every method may be called
/// from any thread.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Each user's open connections on this node.
type UserConns = FxHashMap<Arc<str>, Vec<Arc<ConnState>>>;

struct HubInner {
    config: Config,
    limits: Limits,
    bounds: Bounds,
    clock: Arc<dyn Clock>,
    /// Ids are handed out once: a stale id never names a newer connection.
    next_id: AtomicU64,
    conns: [RwLock<FxHashMap<ConnId, Arc<ConnState>>>; CONN_SHARDS],
    groups: [RwLock<FxHashMap<Arc<str>, Arc<Group>>>; GROUP_SHARDS],
    users: [Mutex<UserConns>; USER_SHARDS],
    ready: Ready,
    counters: Counters,
    reaper: Arc<Reaper>,
    /// A shared engine (Redis) when configured; `None` is the in-memory
    /// engine, whose paths never look further than this `Option`.
    engine: Option<Arc<dyn Engine>>,
}

/// Closes connections whose TTL ran out, on a thread started with the first
/// connection that has one.
#[derive(Default)]
struct Reaper {
    state: Mutex<ReaperState>,
    cond: Condvar,
}

#[derive(Default)]
struct ReaperState {
    deadlines: BinaryHeap<Reverse<(u64, ConnId)>>,
    started: bool,
    shutdown: bool,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        self.reaper.state.lock().shutdown = true;
        self.reaper.cond.notify_all();
        if let Some(engine) = &self.engine {
            engine.goodbye(&local_presence(self));
        }
    }
}

/// Who is connected to this node: users per group and users overall.
fn local_presence(inner: &HubInner) -> LocalPresence {
    let mut out = LocalPresence::default();
    for shard in &inner.groups {
        for (name, group) in shard.read().iter() {
            let users = group.state.lock().presence.users();
            if !users.is_empty() {
                out.groups.push((name.to_string(), users));
            }
        }
    }
    for shard in &inner.users {
        out.users.extend(shard.lock().keys().map(|u| u.to_string()));
    }
    out
}

/// The hub as its engine sees it. Weak, so the engine never keeps a
/// dropped hub alive.
struct HubSink(Weak<HubInner>);

impl HubSink {
    fn hub(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl EngineSink for HubSink {
    fn deliver_group(&self, group: &str, kind: Kind, data: Bytes, offset: u64, ts_ms: u64) {
        if let Some(hub) = self.hub() {
            hub.deliver_broadcast(group, kind, data, offset, ts_ms);
        }
    }

    fn deliver_user(&self, user: &str, kind: Kind, data: Bytes, ts_ms: u64) {
        let Some(hub) = self.hub() else { return };
        let message = Message::new(kind, data, None, 0, ts_ms);
        let conns = hub.user_conns(user);
        let mut report = SendReport::default();
        let mut slow = Vec::new();
        for conn in &conns {
            hub.deliver(conn, &message, &mut report, &mut slow);
        }
        hub.finish_delivery(&report, slow);
    }

    fn lost(&self, groups: &[String], users: &[String], reason: CloseReason) -> u64 {
        let Some(hub) = self.hub() else { return 0 };
        let mut victims: Vec<Arc<ConnState>> = Vec::new();
        for name in groups {
            if let Some(g) = hub.group(name) {
                victims.extend(g.state.lock().members.iter().cloned());
            }
        }
        for user in users {
            victims.extend(hub.user_conns(user));
        }
        let mut closed = 0;
        for conn in victims {
            if conn.close(reason.clone()) {
                hub.inner.ready.notify(&conn);
                closed += 1;
            }
            hub.detach(&conn);
        }
        closed
    }

    fn local_presence(&self) -> LocalPresence {
        self.0
            .upgrade()
            .map(|inner| local_presence(&inner))
            .unwrap_or_default()
    }
}

fn shard<K: Hash + ?Sized>(key: &K, n: usize) -> usize {
    (FxBuildHasher.hash_one(key) as usize) % n
}

impl Hub {
    /// A hub with `config` and the system clock.
    pub fn new(config: Config) -> Result<Hub> {
        Hub::with_clock(config, Arc::new(SystemClock))
    }

    /// A hub configured from a JSON object (see [`Config::from_json`]).
    pub fn from_json(config: &str) -> Result<Hub> {
        Hub::new(Config::from_json(config)?)
    }

    /// A hub that reads time from `clock` (tests inject a [`crate::ManualClock`]).
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Hub> {
        config.validate()?;
        let limits = Limits {
            max_messages: config.queue_max_messages,
            max_bytes: config.queue_max_bytes,
            policy: config.slow_consumer,
        };
        let bounds = Bounds {
            max_messages: config.history_max_messages,
            max_bytes: config.history_max_bytes,
            ttl_ms: config.history_ttl_seconds.saturating_mul(1000),
        };
        let mut failed = None;
        let inner = Arc::new_cyclic(|weak: &Weak<HubInner>| {
            let engine: Option<Arc<dyn Engine>> = match config.engine {
                EngineKind::Memory => None,
                EngineKind::Redis => {
                    let sink = Box::new(HubSink(weak.clone()));
                    match engine::redis::RedisEngine::start(&config, sink) {
                        Ok(e) => Some(Arc::new(e)),
                        Err(e) => {
                            failed = Some(e);
                            None
                        }
                    }
                }
            };
            HubInner {
                config,
                limits,
                bounds,
                clock,
                next_id: AtomicU64::new(1),
                conns: std::array::from_fn(|_| RwLock::default()),
                groups: std::array::from_fn(|_| RwLock::default()),
                users: std::array::from_fn(|_| Mutex::default()),
                ready: Ready::default(),
                counters: Counters::default(),
                reaper: Arc::default(),
                engine,
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(Hub { inner }),
        }
    }

    /// The settings this hub runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    // ----- connections -------------------------------------------------

    /// Opens a connection, optionally carrying a user id (for presence and
    /// user sends) and a time to live after which the hub closes it.
    pub fn open(&self, user: Option<&str>, ttl: Option<Duration>) -> Result<Connection> {
        let user: Option<Arc<str>> = match user {
            Some(u) => {
                self.check_name("user id", u, self.inner.config.max_user_bytes)?;
                Some(u.into())
            }
            None => None,
        };
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
            let mut users = self.inner.users[shard(&**user, USER_SHARDS)].lock();
            let list = users.entry(user.clone()).or_default();
            let first = list.is_empty();
            list.push(state.clone());
            if let (true, Some(engine)) = (first, &self.inner.engine) {
                engine.want(Topic::User(user));
            }
        }
        if let (Some(engine), Some(user)) = (&self.inner.engine, &user) {
            // Only once the user's channel is confirmed can no user send
            // from another node miss this connection.
            if let Err(e) = engine.wait_subscribed(Topic::User(user)) {
                let _ = self.close(id);
                return Err(e);
            }
            engine.user_online(user);
        }
        if let Some(at) = expires_at_ms {
            self.schedule_expiry(id, at);
        }
        Ok(Connection {
            hub: self.clone(),
            state,
        })
    }

    /// A handle on an open connection.
    pub fn connection(&self, id: ConnId) -> Result<Connection> {
        Ok(Connection {
            hub: self.clone(),
            state: self.conn(id)?,
        })
    }

    fn conn(&self, id: ConnId) -> Result<Arc<ConnState>> {
        self.inner.conns[shard(&id, CONN_SHARDS)]
            .read()
            .get(&id)
            .cloned()
            .ok_or(Error::NoSuchConnection(id))
    }

    /// Closes a connection and releases its id: it leaves every group, its
    /// queue is dropped, and the id is never valid again.
    pub fn close(&self, id: ConnId) -> Result<()> {
        let state = self.inner.conns[shard(&id, CONN_SHARDS)]
            .write()
            .remove(&id)
            .ok_or(Error::NoSuchConnection(id))?;
        state.close(CloseReason::ClosedByHost);
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
        if state.close(reason) {
            self.inner.ready.notify(&state);
        }
        self.detach(&state);
        Ok(())
    }

    /// Removes a connection from every group it is in.
    fn detach(&self, conn: &Arc<ConnState>) {
        let names: Vec<Arc<str>> = conn.groups.lock().drain().collect();
        for name in names {
            self.leave_group(conn, &name);
        }
    }

    fn forget_user(&self, conn: &ConnState) {
        let Some(user) = &conn.user else { return };
        let mut gone = false;
        {
            let mut users = self.inner.users[shard(&**user, USER_SHARDS)].lock();
            if let Some(list) = users.get_mut(user) {
                list.retain(|c| c.id != conn.id);
                if list.is_empty() {
                    users.remove(user);
                    gone = true;
                    if let Some(engine) = &self.inner.engine {
                        engine.unwant(Topic::User(user));
                    }
                }
            }
        }
        if let (true, Some(engine)) = (gone, &self.inner.engine) {
            engine.user_offline(user);
        }
    }

    /// The open connections of a user on this node.
    fn user_conns(&self, user: &str) -> Vec<Arc<ConnState>> {
        self.inner.users[shard(user, USER_SHARDS)]
            .lock()
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    fn leave_group(&self, conn: &ConnState, name: &str) -> bool {
        let Some(group) = self.group(name) else {
            return false;
        };
        let (left, disposable, user_gone) = {
            let mut st = group.state.lock();
            let left = st.leave(conn.id);
            let mut user_gone = false;
            if let (true, Some(engine)) = (left, &self.inner.engine) {
                // Under the group's lock, so the wanted set follows
                // membership exactly.
                if st.members.is_empty() {
                    engine.unwant(Topic::Group(name));
                }
                user_gone = conn.user.as_ref().is_some_and(|u| !st.presence.contains(u));
            }
            (left, st.is_disposable(), user_gone)
        };
        if disposable {
            self.drop_group_if_disposable(name);
        }
        if let (true, Some(engine), Some(user)) = (user_gone, &self.inner.engine, &conn.user) {
            engine.presence_leave(name, user);
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

    fn schedule_expiry(&self, id: ConnId, at_ms: u64) {
        let reaper = &self.inner.reaper;
        let mut st = reaper.state.lock();
        st.deadlines.push(Reverse((at_ms, id)));
        if !st.started {
            st.started = true;
            let weak = Arc::downgrade(&self.inner);
            let reaper = reaper.clone();
            let spawned = std::thread::Builder::new()
                .name("channelbox-ttl".into())
                .spawn(move || reap(weak, reaper));
            if spawned.is_err() {
                // Expiry still happens on explicit sweeps.
                st.started = false;
            }
        }
        drop(st);
        reaper.cond.notify_all();
    }

    /// Closes every connection whose TTL has run out; returns how many.
    /// A background thread calls this on time; tests with a manual clock call
    /// it themselves.
    pub fn sweep_expired(&self) -> usize {
        let now = self.now_ms();
        let mut due = Vec::new();
        {
            let mut st = self.inner.reaper.state.lock();
            while let Some(Reverse((at, id))) = st.deadlines.peek().copied() {
                if at > now {
                    break;
                }
                st.deadlines.pop();
                due.push(id);
            }
        }
        let mut closed = 0;
        for id in due {
            if let Ok(state) = self.conn(id) {
                if state.close(CloseReason::Expired) {
                    self.inner.ready.notify(&state);
                    self.detach(&state);
                    closed += 1;
                }
            }
        }
        Counters::add(&self.inner.counters.expired_connections, closed as u64);
        closed
    }

    // ----- groups ------------------------------------------------------

    fn check_name(&self, what: &str, name: &str, max: usize) -> Result<()> {
        if name.is_empty() {
            return Err(Error::InvalidArgument(format!("{what} is empty")));
        }
        if name.len() > max {
            return Err(Error::TooLarge(format!(
                "{what} is {} bytes, the limit is {max}",
                name.len()
            )));
        }
        Ok(())
    }

    fn check_group(&self, name: &str) -> Result<()> {
        self.check_name("group name", name, self.inner.config.max_group_name_bytes)
    }

    fn check_payload(&self, kind: Kind, data: &[u8]) -> Result<()> {
        let max = self.inner.config.max_payload_bytes;
        if data.len() > max {
            return Err(Error::TooLarge(format!(
                "payload is {} bytes, the limit is {max}",
                data.len()
            )));
        }
        kind.validate(data)
    }

    fn group(&self, name: &str) -> Option<Arc<Group>> {
        self.inner.groups[shard(name, GROUP_SHARDS)]
            .read()
            .get(name)
            .cloned()
    }

    fn group_or_create(&self, name: &str) -> Arc<Group> {
        if let Some(g) = self.group(name) {
            return g;
        }
        let mut shard = self.inner.groups[shard(name, GROUP_SHARDS)].write();
        shard
            .entry(name.into())
            .or_insert_with_key(|k| Arc::new(Group::new(k.clone())))
            .clone()
    }

    /// Adds a connection to a group (created on first use). Idempotent.
    pub fn group_add(&self, id: ConnId, group: &str) -> Result<()> {
        self.check_group(group)?;
        let conn = self.conn(id)?;
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
            // Only the shared engine needs to know (presence across nodes).
            let user_new = self.inner.engine.is_some()
                && conn.user.as_ref().is_some_and(|u| !st.presence.contains(u));
            let joined = st.join(&conn);
            if let (true, Some(engine)) = (joined, &self.inner.engine) {
                if st.members.len() == 1 {
                    engine.want(Topic::Group(group));
                }
            }
            drop(st);
            if !groups.contains(group) {
                groups.insert(g.name.clone());
            }
            break user_new;
        };
        drop(groups);
        if let Some(engine) = &self.inner.engine {
            // Joined once the group's channel is confirmed: nothing sent
            // after this returns is missed.
            if let Err(e) = engine.wait_subscribed(Topic::Group(group)) {
                let _ = self.group_remove(id, group);
                return Err(e);
            }
            if let (true, Some(user)) = (user_new, &conn.user) {
                engine.presence_join(group, user);
            }
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

    /// Sends a payload to every member of a group, optionally saving it to
    /// the group's history. The payload is checked against its kind first:
    /// a refused payload is neither delivered nor saved.
    ///
    /// With the Redis engine the group's members on every node receive it,
    /// in one order; the report's `delivered` is 0 (delivery happens when
    /// Redis hands the message back, on every node at once), and while
    /// Redis is unreachable the send fails with `EngineUnavailable`.
    pub fn group_send(
        &self,
        group: &str,
        kind: Kind,
        data: impl Into<Bytes>,
        save_history: bool,
    ) -> Result<SendReport> {
        let data = data.into();
        self.check_payload(kind, &data)?;
        if let Some(engine) = &self.inner.engine {
            return self.send_remote(&**engine, group, kind, save_history, false, |_| Ok(data));
        }
        self.send_inner(group, kind, save_history, |_| Ok(data))
    }

    /// Like [`Hub::group_send`], but builds the payload once the history
    /// offset is known, under the group's lock: a server can put the offset
    /// (its message id) inside the frame it sends. `build` gets 0 when
    /// `save_history` is false.
    ///
    /// With the Redis engine the offset is assigned inside Redis: `build`
    /// gets `u64::MAX` (digits `18446744073709551615`), and the first
    /// occurrence of those digits in the payload is replaced by the real
    /// offset before anyone receives or saves it. Put the offset early in
    /// the frame (the example hub's `"id"` comes first).
    pub fn group_send_with<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<SendReport>
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        if let Some(engine) = &self.inner.engine {
            return self.send_remote(&**engine, group, kind, save_history, true, build);
        }
        self.send_inner(group, kind, save_history, build)
    }

    /// A group send through the shared engine: it assigns the offset, saves
    /// and broadcasts; delivery to members (here too) comes back through
    /// [`HubSink::deliver_group`], so `delivered` is 0 in the report.
    fn send_remote<F>(
        &self,
        engine: &dyn Engine,
        group: &str,
        kind: Kind,
        save: bool,
        placeholder: bool,
        build: F,
    ) -> Result<SendReport>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        let (data, placeholder_at) = self.build_remote(group, save, placeholder, build)?;
        let offset = engine.publish_group(GroupPublish {
            group,
            kind,
            save,
            data: &data,
            placeholder_at,
            ts_ms: self.now_ms(),
        })?;
        Counters::add(&self.inner.counters.group_sends, 1);
        Ok(SendReport {
            offset,
            ..SendReport::default()
        })
    }

    /// Builds the payload of a send through the shared engine: with the
    /// placeholder offset when saved, and where the placeholder sits.
    fn build_remote<F>(
        &self,
        group: &str,
        save: bool,
        placeholder: bool,
        build: F,
    ) -> Result<(Bytes, Option<usize>)>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        self.check_group(group)?;
        let given = if save { engine::OFFSET_PLACEHOLDER } else { 0 };
        let data = build(given)?;
        let placeholder_at = if placeholder && save {
            engine::placeholder_at(&data)
        } else {
            None
        };
        Ok((data, placeholder_at))
    }

    /// [`Hub::group_send_with`] for async hosts: with the Redis engine it
    /// awaits Redis' answer instead of blocking the calling thread (an
    /// executor thread keeps serving other tasks meanwhile). With the
    /// in-memory engine it is the same as the blocking call, which never
    /// waits on I/O. The future does not borrow the hub.
    pub fn group_send_with_async<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> SendFuture
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        self.send_async(group, kind, save_history, true, build)
    }

    /// [`Hub::group_send`] for async hosts (see
    /// [`Hub::group_send_with_async`]).
    pub fn group_send_async(
        &self,
        group: &str,
        kind: Kind,
        data: impl Into<Bytes>,
        save_history: bool,
    ) -> SendFuture {
        let data = data.into();
        let build = |_| {
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        self.send_async(group, kind, save_history, false, build)
    }

    /// Starts a send now (builds, checks, hands it to the engine) and
    /// returns what is left to await.
    fn send_async<F>(
        &self,
        group: &str,
        kind: Kind,
        save: bool,
        placeholder: bool,
        build: F,
    ) -> SendFuture
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        let started = match &self.inner.engine {
            None => Err(self.send_inner(group, kind, save, build)),
            Some(engine) => match self.build_remote(group, save, placeholder, build) {
                Ok((data, placeholder_at)) => Ok(engine.publish_group_async(GroupPublish {
                    group,
                    kind,
                    save,
                    data: &data,
                    placeholder_at,
                    ts_ms: self.now_ms(),
                })),
                Err(e) => Err(Err(e)),
            },
        };
        let hub = self.clone();
        Box::pin(async move {
            let offset = match started {
                Ok(publish) => publish.await?,
                Err(done) => return done,
            };
            Counters::add(&hub.inner.counters.group_sends, 1);
            Ok(SendReport {
                offset,
                ..SendReport::default()
            })
        })
    }

    /// Delivers a broadcast from the engine to this node's members.
    fn deliver_broadcast(&self, group: &str, kind: Kind, data: Bytes, offset: u64, ts_ms: u64) {
        let Some(g) = self.group(group) else { return };
        let st = g.state.lock();
        if st.dead || st.members.is_empty() {
            return;
        }
        let message = Message::new(kind, data, Some(g.name.clone()), offset, ts_ms);
        let mut report = SendReport::default();
        let mut slow = Vec::new();
        self.fan_out(&st.members, &message, &mut report, &mut slow);
        drop(st);
        self.finish_delivery(&report, slow);
    }

    /// Counts a delivery that no send on this node accounts for.
    fn finish_delivery(&self, report: &SendReport, slow: Vec<Arc<ConnState>>) {
        let c = &self.inner.counters;
        Counters::add(&c.deliveries, report.delivered);
        Counters::add(&c.dropped, report.dropped);
        Counters::add(&c.slow_consumer_disconnects, report.disconnected);
        for conn in slow {
            self.detach(&conn);
        }
    }

    fn send_inner<F>(&self, group: &str, kind: Kind, save: bool, build: F) -> Result<SendReport>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        self.check_group(group)?;
        let now = self.now_ms();
        let mut build = Some(build);
        loop {
            let g = if save {
                self.group_or_create(group)
            } else {
                match self.group(group) {
                    Some(g) => g,
                    None => {
                        // Nobody to deliver to and nothing to save; still
                        // check the payload so bad input is always refused.
                        let build = build.take().expect("built once");
                        build(0)?;
                        Counters::add(&self.inner.counters.group_sends, 1);
                        return Ok(SendReport::default());
                    }
                }
            };
            let mut st = g.state.lock();
            if st.dead {
                continue;
            }
            let offset = if save { st.history.next_offset() } else { 0 };
            let build = build.take().expect("built once");
            let data = build(offset)?;
            let message = Message::new(kind, data, Some(g.name.clone()), offset, now);
            if save {
                st.history.push(message.clone(), self.inner.bounds, now);
            }
            let mut report = SendReport {
                offset,
                ..SendReport::default()
            };
            let mut slow = Vec::new();
            self.fan_out(&st.members, &message, &mut report, &mut slow);
            drop(st);
            self.finish_send(&report, slow, &self.inner.counters.group_sends);
            return Ok(report);
        }
    }

    /// Pushes one message to every member. The common case (queued, no
    /// wake-up needed, nothing evicted) only bumps a local counter: this
    /// loop is the cost of a delivery.
    #[inline]
    fn fan_out(
        &self,
        members: &[Arc<ConnState>],
        message: &Message,
        report: &mut SendReport,
        slow: &mut Vec<Arc<ConnState>>,
    ) {
        let len = message.len();
        let mut delivered = 0;
        for member in members {
            match member.push_len(message, len) {
                Push::Queued {
                    wake: false,
                    dropped_oldest: 0,
                } => delivered += 1,
                other => self.account(member, other, report, slow),
            }
        }
        report.delivered += delivered;
    }

    #[inline]
    fn deliver(
        &self,
        conn: &Arc<ConnState>,
        message: &Message,
        report: &mut SendReport,
        slow: &mut Vec<Arc<ConnState>>,
    ) {
        self.account(conn, conn.push(message), report, slow);
    }

    /// Records what one push did: counts, wake-ups, slow consumers.
    fn account(
        &self,
        conn: &Arc<ConnState>,
        push: Push,
        report: &mut SendReport,
        slow: &mut Vec<Arc<ConnState>>,
    ) {
        match push {
            Push::Queued {
                wake,
                dropped_oldest,
            } => {
                report.delivered += 1;
                report.dropped += dropped_oldest;
                if wake {
                    self.inner.ready.notify(conn);
                }
            }
            Push::Dropped => report.dropped += 1,
            Push::Disconnected => {
                report.dropped += 1;
                report.disconnected += 1;
                self.inner.ready.notify(conn);
                slow.push(conn.clone());
            }
            Push::Closed => {}
        }
    }

    fn finish_send(&self, report: &SendReport, slow: Vec<Arc<ConnState>>, kind: &AtomicU64) {
        let c = &self.inner.counters;
        Counters::add(kind, 1);
        Counters::add(&c.deliveries, report.delivered);
        Counters::add(&c.dropped, report.dropped);
        Counters::add(&c.slow_consumer_disconnects, report.disconnected);
        for conn in slow {
            self.detach(&conn);
        }
    }

    /// Sends to every connection of a user, wherever they are. Not saved.
    pub fn user_send(&self, user: &str, kind: Kind, data: impl Into<Bytes>) -> Result<SendReport> {
        self.check_name("user id", user, self.inner.config.max_user_bytes)?;
        let data = data.into();
        self.check_payload(kind, &data)?;
        if let Some(engine) = &self.inner.engine {
            engine.publish_user(user, kind, &data, self.now_ms())?;
            Counters::add(&self.inner.counters.direct_sends, 1);
            return Ok(SendReport::default());
        }
        let conns = self.user_conns(user);
        let message = Message::new(kind, data, None, 0, self.now_ms());
        let mut report = SendReport::default();
        let mut slow = Vec::new();
        for conn in &conns {
            self.deliver(conn, &message, &mut report, &mut slow);
        }
        self.finish_send(&report, slow, &self.inner.counters.direct_sends);
        Ok(report)
    }

    /// Sends to one connection. Not saved.
    pub fn conn_send(&self, id: ConnId, kind: Kind, data: impl Into<Bytes>) -> Result<SendReport> {
        let conn = self.conn(id)?;
        let data = data.into();
        self.check_payload(kind, &data)?;
        let message = Message::new(kind, data, None, 0, self.now_ms());
        let mut report = SendReport::default();
        let mut slow = Vec::new();
        self.deliver(&conn, &message, &mut report, &mut slow);
        if report.delivered == 0 && report.disconnected == 0 && report.dropped == 0 {
            // Nothing happened: it was closed before this send.
            if let Some(reason) = conn.close_reason() {
                return Err(Error::Closed(reason));
            }
        }
        self.finish_send(&report, slow, &self.inner.counters.direct_sends);
        Ok(report)
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

    // ----- readiness ---------------------------------------------------

    /// The hub's readiness fd (an eventfd): readable while some connection
    /// has messages pending or was closed. Created on first call.
    pub fn ready_fd(&self) -> Result<RawFd> {
        self.inner.ready.fd()
    }

    /// Takes the ids of connections that became ready since the last call.
    /// Only connections that went from empty to non-empty (or closed) after
    /// [`Hub::ready_fd`] was first called are listed; drain each one until
    /// it is empty.
    pub fn take_ready(&self, out: &mut [ConnId]) -> usize {
        self.inner.ready.take(out)
    }

    // ----- introspection -----------------------------------------------

    /// Every group with at least one member: its connections and users.
    pub fn groups(&self) -> BTreeMap<String, GroupInfo> {
        let mut out = BTreeMap::new();
        for shard in &self.inner.groups {
            for (name, group) in shard.read().iter() {
                let st = group.state.lock();
                if st.members.is_empty() {
                    continue;
                }
                let mut connections: Vec<ConnId> = st.members.iter().map(|c| c.id).collect();
                connections.sort_unstable();
                out.insert(
                    name.to_string(),
                    GroupInfo {
                        connections,
                        users: st.presence.users(),
                    },
                );
            }
        }
        out
    }

    /// The distinct users in a group (empty when it has no members). With
    /// the Redis engine: on every node (this node's view if Redis is down).
    pub fn presence(&self, group: &str) -> Vec<String> {
        if let Some(engine) = &self.inner.engine {
            if let Ok(users) = engine.group_users(group) {
                return users;
            }
        }
        self.local_presence_of(group)
    }

    /// True when `user` has a connection in `group` (with the Redis engine:
    /// on any node).
    pub fn is_present(&self, group: &str, user: &str) -> bool {
        let local = self
            .group(group)
            .is_some_and(|g| g.state.lock().presence.contains(user));
        match &self.inner.engine {
            Some(engine) if !local => engine
                .group_users(group)
                .is_ok_and(|users| users.iter().any(|u| u == user)),
            _ => local,
        }
    }

    /// [`Hub::presence`] for async hosts: with Redis it awaits the engine
    /// instead of blocking the calling thread.
    pub fn presence_async(&self, group: &str) -> HubFuture<Vec<String>> {
        let Some(engine) = &self.inner.engine else {
            return ready(self.local_presence_of(group));
        };
        let users = engine.group_users_async(group);
        let (hub, group) = (self.clone(), group.to_owned());
        Box::pin(async move {
            users
                .await
                .unwrap_or_else(|_| hub.local_presence_of(&group))
        })
    }

    fn local_presence_of(&self, group: &str) -> Vec<String> {
        self.group(group)
            .map(|g| g.state.lock().presence.users())
            .unwrap_or_default()
    }

    /// [`Hub::is_present`] for async hosts: with Redis it awaits the engine
    /// instead of blocking the calling thread.
    pub fn is_present_async(&self, group: &str, user: &str) -> HubFuture<bool> {
        let local = self
            .group(group)
            .is_some_and(|g| g.state.lock().presence.contains(user));
        match &self.inner.engine {
            Some(engine) if !local => {
                let users = engine.group_users_async(group);
                let user = user.to_owned();
                Box::pin(async move { users.await.is_ok_and(|users| users.contains(&user)) })
            }
            _ => ready(local),
        }
    }

    /// How many open connections carry `user`.
    pub fn user_connections(&self, user: &str) -> usize {
        self.inner.users[shard(user, USER_SHARDS)]
            .lock()
            .get(user)
            .map_or(0, Vec::len)
    }

    /// Distinct users with at least one open connection, sorted. With the
    /// Redis engine: on every node (this node's view if Redis is down).
    pub fn users(&self) -> Vec<String> {
        if let Some(engine) = &self.inner.engine {
            if let Ok(users) = engine.users() {
                return users;
            }
        }
        self.local_users()
    }

    /// [`Hub::users`] for async hosts: with Redis it awaits the engine
    /// instead of blocking the calling thread.
    pub fn users_async(&self) -> HubFuture<Vec<String>> {
        let Some(engine) = &self.inner.engine else {
            return ready(self.local_users());
        };
        let users = engine.users_async();
        let hub = self.clone();
        Box::pin(async move { users.await.unwrap_or_else(|_| hub.local_users()) })
    }

    fn local_users(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .inner
            .users
            .iter()
            .flat_map(|s| s.lock().keys().map(|u| u.to_string()).collect::<Vec<_>>())
            .collect();
        out.sort_unstable();
        out
    }

    /// Reads part of one group's history (see [`HistoryQuery`]). A group
    /// that never saved anything reads as empty.
    pub fn history(&self, group: &str, query: HistoryQuery) -> Result<HistoryPage> {
        self.check_group(group)?;
        match &self.inner.engine {
            Some(engine) => engine.read(group, query, self.now_ms()),
            None => Ok(self.local_history(group, query)),
        }
    }

    /// [`Hub::history`] for async hosts (see [`HubFuture`]).
    pub fn history_async(
        &self,
        group: &str,
        query: HistoryQuery,
    ) -> HubFuture<Result<HistoryPage>> {
        if let Err(e) = self.check_group(group) {
            return ready(Err(e));
        }
        match &self.inner.engine {
            Some(engine) => engine.read_async(group, query, self.now_ms()),
            None => ready(Ok(self.local_history(group, query))),
        }
    }

    fn local_history(&self, group: &str, query: HistoryQuery) -> HistoryPage {
        let Some(g) = self.group(group) else {
            return HistoryPage {
                group: group.to_owned(),
                epoch: 0,
                first_offset: 0,
                last_offset: 0,
                messages: Vec::new(),
            };
        };
        let mut st = g.state.lock();
        st.history.evict(self.inner.bounds, self.now_ms());
        st.history.read(group, query)
    }

    /// The newest offset `group` ever assigned to a saved message, 0 when it
    /// saved nothing: the `last_offset` of [`Hub::history`] without reading
    /// any message. Flushes and evictions do not lower it (offsets keep
    /// counting up), so an offset above it was never handed out.
    pub fn last_offset(&self, group: &str) -> Result<u64> {
        self.check_group(group)?;
        match &self.inner.engine {
            Some(engine) => engine.last_offset(group),
            None => Ok(self.local_last_offset(group)),
        }
    }

    /// [`Hub::last_offset`] for async hosts (see [`HubFuture`]).
    pub fn last_offset_async(&self, group: &str) -> HubFuture<Result<u64>> {
        if let Err(e) = self.check_group(group) {
            return ready(Err(e));
        }
        match &self.inner.engine {
            Some(engine) => engine.last_offset_async(group),
            None => ready(Ok(self.local_last_offset(group))),
        }
    }

    fn local_last_offset(&self, group: &str) -> u64 {
        self.group(group)
            .map_or(0, |g| g.state.lock().history.next_offset() - 1)
    }

    /// Every group's history that holds at least one message, by name.
    pub fn history_all(&self, query: HistoryQuery) -> BTreeMap<String, HistoryPage> {
        let now = self.now_ms();
        let mut out = BTreeMap::new();
        if let Some(engine) = &self.inner.engine {
            // Redis unreachable reads as empty, like a hub that saved nothing.
            for name in engine.groups_with_history().unwrap_or_default() {
                if let Ok(page) = engine.read(&name, query, now) {
                    if page.first_offset > 0 {
                        out.insert(name, page);
                    }
                }
            }
            return out;
        }
        for group in self.all_groups() {
            let mut st = group.state.lock();
            st.history.evict(self.inner.bounds, now);
            if st.history.len() > 0 {
                out.insert(group.name.to_string(), st.history.read(&group.name, query));
            }
        }
        out
    }

    /// The history entry saved at `offset`, if still kept.
    pub fn history_get(&self, group: &str, offset: u64) -> Result<Message> {
        self.check_group(group)?;
        match &self.inner.engine {
            Some(engine) => {
                let page = engine.read(group, entry_query(offset), self.now_ms())?;
                entry_in(page, offset)
            }
            None => self
                .group(group)
                .and_then(|g| g.state.lock().history.get(offset).cloned())
                .ok_or_else(|| no_such_message(group, offset)),
        }
    }

    /// [`Hub::history_get`] for async hosts (see [`HubFuture`]).
    pub fn history_get_async(&self, group: &str, offset: u64) -> HubFuture<Result<Message>> {
        match &self.inner.engine {
            Some(engine) if self.check_group(group).is_ok() => {
                let page = engine.read_async(group, entry_query(offset), self.now_ms());
                Box::pin(async move { entry_in(page.await?, offset) })
            }
            _ => ready(self.history_get(group, offset)),
        }
    }

    /// Replaces the history entry at `offset` in place (an edit, a
    /// tombstone, a reaction count). It keeps its offset and timestamp;
    /// nothing is delivered. Returns the new entry.
    pub fn history_replace(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: impl Into<Bytes>,
    ) -> Result<Message> {
        let data = data.into();
        self.check_group(group)?;
        self.check_payload(kind, &data)?;
        let Some(engine) = &self.inner.engine else {
            return self.local_history_replace(group, offset, kind, data);
        };
        engine
            .replace(group, offset, kind, data)?
            .ok_or_else(|| no_such_message(group, offset))
    }

    /// [`Hub::history_replace`] for async hosts (see [`HubFuture`]).
    pub fn history_replace_async(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: impl Into<Bytes>,
    ) -> HubFuture<Result<Message>> {
        let data = data.into();
        if let Err(e) = self
            .check_group(group)
            .and_then(|()| self.check_payload(kind, &data))
        {
            return ready(Err(e));
        }
        let Some(engine) = &self.inner.engine else {
            return ready(self.local_history_replace(group, offset, kind, data));
        };
        let replaced = engine.replace_async(group, offset, kind, data);
        let group = group.to_owned();
        Box::pin(async move {
            replaced
                .await?
                .ok_or_else(|| no_such_message(&group, offset))
        })
    }

    fn local_history_replace(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: Bytes,
    ) -> Result<Message> {
        let missing = || no_such_message(group, offset);
        let g = self.group(group).ok_or_else(missing)?;
        let mut st = g.state.lock();
        let ts = st.history.get(offset).ok_or_else(missing)?.ts_ms();
        let message = Message::new(kind, data, Some(g.name.clone()), offset, ts);
        st.history.replace(offset, message.clone());
        Ok(message)
    }

    /// Forgets one group's history (or every group's) and gives it a new
    /// epoch. Offsets keep counting up.
    pub fn history_flush(&self, group: Option<&str>) -> Result<()> {
        if let Some(engine) = &self.inner.engine {
            let names = match group {
                Some(name) => {
                    self.check_group(name)?;
                    vec![name.to_owned()]
                }
                None => engine.groups_with_history()?,
            };
            for name in names {
                engine.flush(&name)?;
            }
            return Ok(());
        }
        let groups = match group {
            Some(name) => {
                self.check_group(name)?;
                self.group(name).into_iter().collect()
            }
            None => self.all_groups(),
        };
        for g in groups {
            g.state.lock().history.flush();
        }
        Ok(())
    }

    /// Empties every group (connections stay open), as Nexios'
    /// `flush_groups` does. History is kept.
    pub fn groups_flush(&self) {
        for conn in self.all_conns() {
            self.detach(&conn);
        }
    }

    /// Closes every connection on the hub's side (receivers drain, then see
    /// it closed) and empties every group.
    pub fn close_all(&self) {
        for conn in self.all_conns() {
            if conn.close(CloseReason::HubClosed) {
                self.inner.ready.notify(&conn);
            }
            self.detach(&conn);
        }
    }

    fn all_conns(&self) -> Vec<Arc<ConnState>> {
        self.inner
            .conns
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn all_groups(&self) -> Vec<Arc<Group>> {
        self.inner
            .groups
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Stops the shared engine without a goodbye, as a node that dies does:
    /// its presence entries stay in Redis until they expire. For tests of
    /// node failure; a no-op with the in-memory engine.
    #[doc(hidden)]
    pub fn engine_halt(&self) {
        if let Some(engine) = &self.inner.engine {
            engine.halt();
        }
    }

    /// A snapshot of counters and gauges.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let mut s = Stats {
            group_sends: Counters::get(&c.group_sends),
            direct_sends: Counters::get(&c.direct_sends),
            deliveries: Counters::get(&c.deliveries),
            dropped: Counters::get(&c.dropped),
            slow_consumer_disconnects: Counters::get(&c.slow_consumer_disconnects),
            expired_connections: Counters::get(&c.expired_connections),
            ..Stats::default()
        };
        for conn in self.all_conns() {
            s.connections += 1;
            let (m, b) = conn.pending();
            s.queued_messages += m as u64;
            s.queued_bytes += b as u64;
        }
        s.users = self.inner.users.iter().map(|u| u.lock().len() as u64).sum();
        for g in self.all_groups() {
            let st = g.state.lock();
            if !st.members.is_empty() {
                s.groups += 1;
            }
            s.history_messages += st.history.len() as u64;
            s.history_bytes += st.history.bytes() as u64;
        }
        if let Some(engine) = &self.inner.engine {
            engine.fill_stats(&mut s);
        }
        s
    }
}

/// The query that reads the one entry at `offset`.
fn entry_query(offset: u64) -> HistoryQuery {
    HistoryQuery {
        since: offset.saturating_sub(1),
        before: offset.saturating_add(1),
        limit: 1,
    }
}

/// The entry at `offset` in a page read with [`entry_query`].
fn entry_in(page: HistoryPage, offset: u64) -> Result<Message> {
    let group = page.group;
    page.messages
        .into_iter()
        .find(|m| m.offset() == offset && offset > 0)
        .ok_or_else(|| no_such_message(&group, offset))
}

fn no_such_message(group: &str, offset: u64) -> Error {
    Error::NoSuchMessage {
        group: group.to_owned(),
        offset,
    }
}

fn reap(hub: Weak<HubInner>, reaper: Arc<Reaper>) {
    let mut st = reaper.state.lock();
    loop {
        if st.shutdown {
            return;
        }
        let next = st.deadlines.peek().map(|Reverse((at, _))| *at);
        match next {
            None => {
                reaper.cond.wait(&mut st);
            }
            Some(at) => {
                let Some(inner) = hub.upgrade() else { return };
                let now = inner.clock.now_ms();
                if at > now {
                    drop(inner);
                    // Capped so a manual clock moved by a test is noticed.
                    let wait = Duration::from_millis((at - now).min(1000));
                    reaper.cond.wait_for(&mut st, wait);
                } else {
                    drop(st);
                    Hub { inner }.sweep_expired();
                    st = reaper.state.lock();
                }
            }
        }
    }
}

/// A handle on one open connection: receive without a map lookup, and wait
/// on it synchronously or asynchronously.
#[derive(Clone)]
pub struct Connection {
    hub: Hub,
    state: Arc<ConnState>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.state.id)
            .field("user", &self.state.user)
            .finish()
    }
}

impl Connection {
    /// Its id, for the hub's by-id methods and the C API.
    pub fn id(&self) -> ConnId {
        self.state.id
    }

    /// The user it carries, if any.
    pub fn user(&self) -> Option<&str> {
        self.state.user.as_deref()
    }

    /// When its TTL runs out, in ms since the Unix epoch (None: never).
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.state.expires_at_ms
    }

    /// The hub it belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Waits up to `timeout` (None = forever) for one message.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Message> {
        let mut out = Vec::with_capacity(1);
        self.state.recv_batch_timeout(&mut out, 1, timeout)?;
        out.pop().ok_or(Error::Empty)
    }

    /// Waits up to `timeout` for at least one message, then moves up to
    /// `max` into `out`.
    pub fn recv_batch(
        &self,
        out: &mut Vec<Message>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        self.state.recv_batch_timeout(out, max, timeout)
    }

    /// Moves up to `max` pending messages into `out` without waiting.
    pub fn try_recv_batch(&self, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        self.state.try_recv_batch(out, max)
    }

    /// Resolves when at least one message is pending (moving up to `max`
    /// into `out`) or the connection is closed and drained. Waker-based:
    /// works in any executor, no polling, no thread.
    pub fn recv_batch_async<'a>(&'a self, out: &'a mut Vec<Message>, max: usize) -> RecvBatch<'a> {
        RecvBatch {
            conn: &self.state,
            out,
            max,
        }
    }

    /// One message, asynchronously.
    pub async fn recv_async(&self) -> Result<Message> {
        let mut out = Vec::with_capacity(1);
        self.recv_batch_async(&mut out, 1).await?;
        out.pop().ok_or(Error::Empty)
    }

    /// True once the hub or the host closed it.
    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Why it was closed (None while it is open).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.close_reason()
    }

    /// Messages and payload bytes waiting in its queue.
    pub fn pending(&self) -> (usize, usize) {
        self.state.pending()
    }

    /// Joins a group.
    pub fn join(&self, group: &str) -> Result<()> {
        self.hub.group_add(self.state.id, group)
    }

    /// Leaves a group.
    pub fn leave(&self, group: &str) -> Result<()> {
        self.hub.group_remove(self.state.id, group)
    }

    /// Closes and releases it (see [`Hub::close`]).
    pub fn close(&self) -> Result<()> {
        self.hub.close(self.state.id)
    }
}
