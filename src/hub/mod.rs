//! The hub: connections, groups, users and the operations over them.
//!
//! Maps are sharded behind `RwLock`s so that sends to different groups never
//! share a lock; a send takes one shard read lock to find its group, then
//! that group's lock to append to history and push to every member.
//!
//! One concern a file, all of them `impl Hub`:
//!
//! - this file: the hub's state, construction, lookups and stats;
//! - `backend`: the seam to a shared engine (the one place that knows
//!   there are two); `sink`: the engine's way back in;
//! - `connections`: open, close, disconnect, join, leave, TTL expiry;
//! - `send`: group, user and connection sends, and delivery to queues;
//! - `history`: reads and edits of group history;
//! - `presence`: who is where (groups, presence, users).

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::conn::{ConnId, ConnState, Limits};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::history::Bounds;
use crate::message::{Kind, Message};
use crate::ready::Ready;
use crate::reaper::Reaper;
use crate::stats::{Counters, Stats};

mod backend;
mod connections;
mod history;
mod presence;
mod send;
#[cfg(feature = "redis")]
mod sink;

use self::backend::Backend;

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

/// What [`Hub::group_send_with_staged`] returns.
pub enum Staged {
    /// Sent on this node: the report now (offset, deliveries), and a
    /// future that resolves once the saved message is durable (at once
    /// when nothing went to disk), with [`Error::Storage`] if its commit
    /// failed.
    Sent(SendReport, HubFuture<Result<()>>),
    /// Handed to the shared engine: the report once it answered, as
    /// [`Hub::group_send_with_async`] gives it.
    Engine(SendFuture),
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staged::Sent(report, _) => f.debug_tuple("Sent").field(report).finish(),
            Staged::Engine(_) => f.write_str("Engine"),
        }
    }
}

/// The commit of the durable store that holds a saved send (see
/// [`Hub::group_send_built_saved`]): a number, copied freely; commits
/// complete in order. The default (0) is "nothing to wait for" (history in
/// memory, or the send was not saved).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitSeq(u64);

impl CommitSeq {
    /// The commit's number (0: nothing to wait for).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What [`Hub::group_send_built_saved`] returns: [`Staged`] with the
/// commit as a [`CommitSeq`] instead of a boxed future, so a host that
/// sends many messages checks them with [`Hub::commit_outcome`] (atomic
/// loads) and waits once per commit ([`Hub::commit_wait`]) for all of
/// them.
pub enum Saved {
    /// Sent on this node: the report now (offset, deliveries), and the
    /// commit that makes the saved message durable.
    Sent(SendReport, CommitSeq),
    /// Handed to the shared engine: the report once it answered, as
    /// [`Hub::group_send_with_async`] gives it.
    Engine(SendFuture),
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Saved::Sent(report, seq) => f.debug_tuple("Sent").field(report).field(seq).finish(),
            Saved::Engine(_) => f.write_str("Engine"),
        }
    }
}

/// Resolves once a commit is done (see [`Hub::commit_wait`]): `Ok` when
/// what it holds is durable, [`Error::Storage`] if it failed. Owns what
/// it needs; any number of them wait on one wake-up per commit.
pub struct CommitWait(Option<crate::store::Done>);

impl Future for CommitWait {
    type Output = Result<()>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        match &mut self.0 {
            None => std::task::Poll::Ready(Ok(())),
            Some(done) => Pin::new(done).poll(cx),
        }
    }
}

impl Hub {
    /// The outcome of commit `seq` of the durable store: `None` while it is
    /// under way, `Some(Ok(()))` once what it holds is on disk (at once
    /// for [`CommitSeq::default`] and without a durable store), `Some(Err)`
    /// ([`Error::Storage`]) if it failed. Never blocks; two atomic loads
    /// unless a commit failed.
    pub fn commit_outcome(&self, seq: CommitSeq) -> Option<Result<()>> {
        match &self.inner.store {
            Some(store) if seq.0 > 0 => store.outcome(seq.0),
            _ => Some(Ok(())),
        }
    }

    /// Waits for commit `seq` (see [`Hub::commit_outcome`]) without
    /// blocking the thread.
    pub fn commit_wait(&self, seq: CommitSeq) -> CommitWait {
        CommitWait(match &self.inner.store {
            Some(store) if seq.0 > 0 => Some(store.done(seq.0)),
            _ => None,
        })
    }

    /// The newest commit whose outcome is known (0 without a durable
    /// store): every [`CommitSeq`] up to it has one.
    pub fn commits_done(&self) -> CommitSeq {
        CommitSeq(self.inner.store.as_ref().map_or(0, |s| s.done_up_to()))
    }
}

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
type UserConns = FxHashMap<Arc<str>, ConnList>;

/// One user's open connections: nearly always one, kept inline (a vector
/// of its own was an allocation a user).
#[derive(Default)]
pub(crate) enum ConnList {
    #[default]
    None,
    One(Arc<ConnState>),
    Many(Vec<Arc<ConnState>>),
}

impl ConnList {
    pub(crate) fn push(&mut self, conn: Arc<ConnState>) {
        *self = match std::mem::take(self) {
            ConnList::None => ConnList::One(conn),
            ConnList::One(one) => ConnList::Many(vec![one, conn]),
            ConnList::Many(mut many) => {
                many.push(conn);
                ConnList::Many(many)
            }
        };
    }

    /// Forgets connection `id`.
    pub(crate) fn remove(&mut self, id: ConnId) {
        match self {
            ConnList::One(one) if one.id == id => *self = ConnList::None,
            ConnList::Many(many) => many.retain(|c| c.id != id),
            _ => {}
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            ConnList::None => 0,
            ConnList::One(_) => 1,
            ConnList::Many(many) => many.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn to_vec(&self) -> Vec<Arc<ConnState>> {
        match self {
            ConnList::None => Vec::new(),
            ConnList::One(one) => vec![one.clone()],
            ConnList::Many(many) => many.clone(),
        }
    }
}

pub(crate) struct HubInner {
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
    /// Closes connections whose TTL ran out.
    reaper: Arc<Reaper>,
    /// This node's memory, or a shared engine.
    backend: Backend,
    /// The durable history store (`history_dir` with the memory engine).
    store: Option<crate::store::Store>,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        self.reaper.shutdown();
        if let Backend::Shared(engine) = &self.backend {
            engine.goodbye(&presence::local_presence(self));
        }
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
        let (store, restored) = if config.history_dir.is_empty()
            || config.engine != crate::config::EngineKind::Memory
        {
            (None, Vec::new())
        } else {
            let (store, restored) = crate::store::Store::open(&config, bounds, clock.now_ms())?;
            (Some(store), restored)
        };
        let groups: [RwLock<FxHashMap<Arc<str>, Arc<Group>>>; GROUP_SHARDS] =
            std::array::from_fn(|_| RwLock::default());
        for r in restored {
            let group = Arc::new(Group::restored(r.name.clone(), r.history));
            groups[shard(&*r.name, GROUP_SHARDS)]
                .write()
                .insert(r.name, group);
        }
        let mut failed = None;
        let inner = Arc::new_cyclic(|weak: &Weak<HubInner>| {
            let backend = Backend::start(&config, weak.clone()).unwrap_or_else(|e| {
                failed = Some(e);
                Backend::Local
            });
            HubInner {
                config,
                limits,
                bounds,
                clock,
                next_id: AtomicU64::new(1),
                conns: std::array::from_fn(|_| RwLock::default()),
                groups,
                users: std::array::from_fn(|_| Mutex::default()),
                ready: Ready::default(),
                counters: Counters::default(),
                reaper: Arc::default(),
                backend,
                store,
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

    // ----- checks ------------------------------------------------------

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

    fn check_user(&self, user: &str) -> Result<()> {
        self.check_name("user id", user, self.inner.config.max_user_bytes)
    }

    fn check_payload(&self, kind: Kind, data: &[u8]) -> Result<()> {
        self.check_size(data)?;
        kind.validate(data)
    }

    /// Refuses a payload over `max_payload_bytes`.
    fn check_size(&self, data: &[u8]) -> Result<()> {
        let max = self.inner.config.max_payload_bytes;
        if data.len() > max {
            return Err(Error::TooLarge(format!(
                "payload is {} bytes, the limit is {max}",
                data.len()
            )));
        }
        Ok(())
    }

    // ----- lookups -----------------------------------------------------

    fn conn(&self, id: ConnId) -> Result<Arc<ConnState>> {
        self.inner.conns[shard(&id, CONN_SHARDS)]
            .read()
            .get(&id)
            .cloned()
            .ok_or(Error::NoSuchConnection(id))
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

    /// The open connections of a user on this node.
    fn user_conns(&self, user: &str) -> Vec<Arc<ConnState>> {
        self.inner.users[shard(user, USER_SHARDS)]
            .lock()
            .get(user)
            .map(ConnList::to_vec)
            .unwrap_or_default()
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

    // ----- readiness ---------------------------------------------------

    /// The hub's readiness fd (an eventfd): readable while some connection
    /// has messages pending or was closed. Created on first call, which
    /// lists every connection that already has messages queued or was
    /// closed by the hub (as epoll reports an fd that is ready when added).
    pub fn ready_fd(&self) -> Result<RawFd> {
        self.inner.ready.fd(|| self.all_conns())
    }

    /// Takes the ids of connections that became ready since the last call:
    /// those that held messages or were closed when [`Hub::ready_fd`] was
    /// first called, then those that went from empty to non-empty (or
    /// closed) after it; drain each one until it is empty.
    pub fn take_ready(&self, out: &mut [ConnId]) -> usize {
        self.inner.ready.take(out)
    }

    /// Receives from every connection that is ready, in one call: moves
    /// up to `max` messages into `out` as `(id, Some(message))`, taking
    /// the ready connections in the order they became ready and each one's
    /// messages oldest first, and adds `(id, None)` for a connection the
    /// hub closed once everything queued on it is in `out` (its
    /// [`crate::Connection::close_reason`] says why; it is said once).
    /// A connection drained here comes off the ready list, as
    /// [`Hub::take_ready`] takes it off; one `max` left no room for stays
    /// first in line. Returns how many entries it added (0: none ready).
    ///
    /// The first call turns readiness on as [`Hub::ready_fd`] does (and
    /// lists the connections that already hold messages); call that first
    /// to have the sends list their connections from the start.
    pub fn recv_ready(
        &self,
        out: &mut Vec<(ConnId, Option<Message>)>,
        max: usize,
    ) -> Result<usize> {
        self.recv_ready_each(max, |id, m| out.push((id, m)))
    }

    /// [`Hub::recv_ready`] handing each entry to `each` (the C ABI writes
    /// them straight into the host's arrays).
    pub(crate) fn recv_ready_each(
        &self,
        max: usize,
        each: impl FnMut(ConnId, Option<Message>),
    ) -> Result<usize> {
        self.ready_fd()?;
        let open = |id| self.conn(id).is_ok();
        Ok(self.inner.ready.recv(max, open, each))
    }

    // ----- counters ----------------------------------------------------

    /// Stops the shared engine without a goodbye, as a node that dies does:
    /// its presence entries stay in Redis until they expire. For tests of
    /// node failure; a no-op with the in-memory engine.
    #[doc(hidden)]
    pub fn engine_halt(&self) {
        if let Backend::Shared(engine) = &self.inner.backend {
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
        if let Backend::Shared(engine) = &self.inner.backend {
            engine.fill_stats(&mut s);
        }
        if let Some(store) = &self.inner.store {
            let st = store.stats();
            s.history_store_commits = st.commits;
            s.history_store_failed_commits = st.failed_commits;
            s.history_store_failing = u64::from(st.failing);
            s.history_store_skipped_rows = st.skipped_rows;
        }
        s
    }
}
