//! The Redis engine: several hubs (nodes) share groups, history and
//! presence through one Redis.
//!
//! - **Sends.** A group send runs one Lua script (`scripts::SEND`): INCR
//!   the group's offset, XADD the message to the group's stream (trimmed by
//!   count, bytes and age), PUBLISH it to the group's channel. Redis runs
//!   scripts one at a time, so offsets are unique and gap-free across nodes
//!   and every subscriber receives a group's messages in offset order. The
//!   sending node delivers from the PUBLISH like every other node, so all
//!   nodes see one order. A payload built by `group_send_with` is built once
//!   with the placeholder offset `u64::MAX`; the script puts the real offset
//!   in place of its first occurrence.
//! - **Subscriptions follow membership** (`pubsub`): a node subscribes to a
//!   group's channel while it has local members, to a user's channel while
//!   it has connections of that user. A join returns once Redis confirmed
//!   the subscription, so nothing sent after it is missed.
//! - **History** lives in the stream, read by a script that returns the
//!   epoch, the bounds and the entries in one atomic step. The epoch is a key
//!   of its own; when it is missing (flush, or Redis lost its data) a new one
//!   is made, so clients holding an old epoch are told to start over.
//! - **Presence** entries are `user\x1fnode` members of sorted sets scored
//!   with an expiry time; each node refreshes its own every third of
//!   `presence_ttl_seconds`, so a node that dies drops out within the TTL.
//! - **Faults**: see `pubsub` (lost subscriptions close the affected
//!   connections) and `commands` (back-off, fail fast while down).
//!
//! The engine's I/O runs on its own one-thread tokio runtime; the hub's
//! callers block on a result for at most `redis_timeout_ms`.

mod commands;
mod pubsub;
mod scripts;
mod wire;

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use redis::{Client, Value};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use self::commands::{unavailable, Commands};
use self::pubsub::Subscriptions;
use self::scripts::Scripts;
use self::wire::{kind_code, Keys, SEP};
use super::{
    Engine, EngineFuture, EngineSink, Fanout, GroupPublish, HistoryStore, LocalPresence,
    PresenceStore, Topic,
};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::history::{new_epoch, Bounds, HistoryPage, HistoryQuery};
use crate::message::{Kind, Message};
use crate::stats::Stats;

thread_local! {
    /// Set on the engine's own threads: a call that would wait for the
    /// engine must not be made from them (it would wait for itself).
    static ON_ENGINE_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn on_engine_thread() -> bool {
    ON_ENGINE_THREAD.with(Cell::get)
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    unavailable: AtomicU64,
    lost_subscriptions: AtomicU64,
    lost_closes: AtomicU64,
    malformed: AtomicU64,
}

/// State shared by the engine handle and its background tasks.
pub(crate) struct Shared {
    keys: Keys,
    node: String,
    presence_ttl_ms: u64,
    timeout: Duration,
    bounds: Bounds,
    client: Client,
    commands: Commands,
    scripts: Scripts,
    subs: Mutex<Subscriptions>,
    /// Wakes callers waiting for a subscription to be confirmed.
    subs_cond: Condvar,
    /// Wakes the subscription task when the wanted set changed.
    subs_changed: Notify,
    /// Asks the heartbeat to run now (after a reconnect).
    heartbeat_now: Notify,
    /// The subscription session is up (a gauge for stats).
    connected: AtomicBool,
    sink: Box<dyn EngineSink>,
    counters: Counters,
}

/// The engine handle the hub holds.
pub(crate) struct RedisEngine {
    shared: Arc<Shared>,
    handle: Handle,
    /// Ends the engine thread (its runtime and every task on it).
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl RedisEngine {
    /// Starts the engine's runtime and tasks. Unless `redis_lazy_connect`,
    /// waits until Redis answers and the subscription connection is up, and
    /// fails with `EngineUnavailable` when it does not in time.
    pub(crate) fn start(config: &Config, sink: Box<dyn EngineSink>) -> Result<RedisEngine> {
        let client = Client::open(config.redis_url.as_str())
            .map_err(|e| Error::InvalidArgument(format!("config: redis_url: {e}")))?;
        // A current-thread runtime driven by one thread of ours: fewer
        // hand-offs per message than a one-worker multi-thread runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start the engine runtime: {e}")))?;
        let node = if config.node_name.is_empty() {
            format!(
                "node-{}-{:06x}",
                std::process::id(),
                new_epoch() & 0xff_ffff
            )
        } else {
            config.node_name.clone()
        };
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.redis_key_prefix),
            node,
            presence_ttl_ms: config.presence_ttl_seconds.saturating_mul(1000),
            timeout,
            bounds: Bounds {
                max_messages: config.history_max_messages,
                max_bytes: config.history_max_bytes,
                ttl_ms: config.history_ttl_seconds.saturating_mul(1000),
            },
            commands: Commands::new(client.clone(), timeout),
            client,
            scripts: Scripts::new(),
            subs: Mutex::default(),
            subs_cond: Condvar::new(),
            subs_changed: Notify::new(),
            heartbeat_now: Notify::new(),
            connected: AtomicBool::new(false),
            sink,
            counters: Counters::default(),
        });
        let handle = runtime.handle().clone();
        handle.spawn(pubsub::run(shared.clone()));
        handle.spawn(heartbeat(shared.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("channelbox-redis".into())
            .spawn(move || {
                ON_ENGINE_THREAD.with(|f| f.set(true));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })
            .map_err(|e| unavailable(format!("cannot start the engine thread: {e}")))?;
        let engine = RedisEngine {
            shared,
            handle,
            stop: Mutex::new(Some(stop)),
        };
        if !config.redis_lazy_connect {
            let url = &config.redis_url;
            engine
                .block(|s| async move {
                    s.commands
                        .run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
                        .await
                })
                .map_err(|e| match e {
                    Error::EngineUnavailable(why) => {
                        Error::EngineUnavailable(format!("cannot reach {url}: {why}"))
                    }
                    other => other,
                })?;
            let s = &engine.shared;
            let mut subs = s.subs.lock();
            if !subs.connected {
                s.subs_cond.wait_for(&mut subs, timeout);
            }
            if !subs.connected {
                return Err(Error::EngineUnavailable(format!(
                    "cannot subscribe at {url}"
                )));
            }
        }
        Ok(engine)
    }

    /// Runs `op` on the engine's runtime and waits for its result.
    fn block<T, F, Fut>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let result = if on_engine_thread() {
            Err(unavailable("called from the engine thread"))
        } else {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let fut = op(self.shared.clone());
            self.handle.spawn(async move {
                let _ = tx.send(fut.await);
            });
            rx.recv_timeout(self.shared.timeout + Duration::from_millis(250))
                .unwrap_or_else(|_| {
                    Err(unavailable(
                        "no answer in time (the engine stopped, or Redis is slow: \
                         the operation may still have been applied)",
                    ))
                })
        };
        if matches!(result, Err(Error::EngineUnavailable(_))) {
            self.shared
                .counters
                .unavailable
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs `op` on the engine's runtime; the future resolves with its
    /// result without blocking the thread that awaits it. It owns what it
    /// needs and fails with `EngineUnavailable` if the engine stops first.
    fn spawn<T, F, Fut>(&self, op: F) -> EngineFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fut = op(self.shared.clone());
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let shared = self.shared.clone();
        Box::pin(async move {
            let result = rx
                .await
                .unwrap_or_else(|_| Err(unavailable("the engine stopped")));
            if matches!(result, Err(Error::EngineUnavailable(_))) {
                shared.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }

    /// Best-effort writes: waited for on host threads (so a caller reads
    /// its own write), spawned from the engine's thread.
    fn fire<F, Fut>(&self, op: F)
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        if on_engine_thread() {
            let fut = op(self.shared.clone());
            self.handle.spawn(async move {
                let _ = fut.await;
            });
        } else {
            let _ = self.block(op);
        }
    }

    fn channel(&self, topic: Topic<'_>) -> String {
        match topic {
            Topic::Group(g) => self.shared.keys.group_channel(g),
            Topic::User(u) => self.shared.keys.user_channel(u),
        }
    }

    fn member(&self, user: &str) -> String {
        format!("{user}{SEP}{}", self.shared.node)
    }

    fn presence_update(&self, key: String, member: String, add: bool) {
        let ttl = self.shared.presence_ttl_ms;
        self.fire(move |s| async move {
            s.commands
                .run(|mut c| async move {
                    let mut p = redis::pipe();
                    if add {
                        p.zadd(&key, &member, now_ms() + ttl)
                            .ignore()
                            .pexpire(&key, (ttl * 2) as i64)
                            .ignore();
                    } else {
                        p.zrem(&key, &member).ignore();
                    }
                    p.query_async::<()>(&mut c).await
                })
                .await
        });
    }
}

impl Shared {
    fn parse_page(&self, group: &str, raw: Vec<Value>) -> Result<HistoryPage> {
        let counters = &self.counters;
        let number = |v: &Value| -> Option<u64> {
            match v {
                Value::BulkString(b) => wire::parse_u64(b),
                Value::Int(i) => u64::try_from(*i).ok(),
                _ => None,
            }
        };
        let header = (
            raw.first().and_then(number),
            raw.get(1).and_then(number),
            raw.get(2).and_then(number),
        );
        let (Some(epoch), Some(first_offset), Some(last_offset)) = header else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return Err(unavailable(format!("malformed history header for {group}")));
        };
        let name: Arc<str> = group.into();
        let mut messages = Vec::with_capacity(raw.len().saturating_sub(3) / 4);
        for entry in raw[3..].chunks(4) {
            let parsed = match entry {
                [off, Value::BulkString(k), ts, Value::BulkString(d)] => {
                    match (number(off), wire::kind_from_code(k), number(ts)) {
                        (Some(off), Some(kind), Some(ts)) => {
                            // Whatever is in Redis is checked again: a bad
                            // entry is skipped, never handed out.
                            kind.validate(d).ok().map(|()| (off, kind, ts))
                        }
                        _ => None,
                    }
                    .map(|(off, kind, ts)| {
                        Message::new(kind, d.clone().into(), Some(name.clone()), off, ts)
                    })
                }
                _ => None,
            };
            match parsed {
                Some(m) => messages.push(m),
                None => {
                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(HistoryPage {
            group: group.to_owned(),
            epoch,
            first_offset,
            last_offset,
            messages,
        })
    }
}

/// An engine operation, ready to run on the engine's runtime: waited for by
/// the blocking trait methods, awaited by the `_async` ones.
trait Op<T>: FnOnce(Arc<Shared>) -> EngineFuture<T> + Send + 'static {}
impl<T, F: FnOnce(Arc<Shared>) -> EngineFuture<T> + Send + 'static> Op<T> for F {}

/// A history read (`scripts::READ`), parsed.
fn read_op(group: &str, query: HistoryQuery, now_ms: u64) -> impl Op<HistoryPage> {
    let low = query.since.saturating_add(1);
    let (high, empty) = match query.before {
        0 => ("+".to_owned(), false),
        b => ((b - 1).to_string(), b - 1 < low),
    };
    let group = group.to_owned();
    let limit = query.limit;
    move |s: Arc<Shared>| -> EngineFuture<HistoryPage> {
        Box::pin(async move {
            let k = |suffix| s.keys.group(&group, suffix);
            let b = s.bounds;
            let mut inv = s.scripts.read.prepare_invoke();
            inv.key(k("off"))
                .key(k("epoch"))
                .key(k("log"))
                .key(k("bytes"))
                .key(k("edits"))
                .arg(low.to_string())
                .arg(high)
                .arg(limit)
                .arg(b.max_messages)
                .arg(b.max_bytes)
                .arg(b.ttl_ms)
                .arg(now_ms)
                .arg(if empty { "1" } else { "0" })
                .arg(new_epoch().to_string());
            let raw: Vec<Value> = s
                .commands
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            s.parse_page(&group, raw)
        })
    }
}

/// The group's offset counter: the newest offset it assigned. The send
/// script keeps it, a flush leaves it alone.
fn last_offset_op(group: &str) -> impl Op<u64> {
    let group = group.to_owned();
    move |s: Arc<Shared>| -> EngineFuture<u64> {
        Box::pin(async move {
            let key = s.keys.group(&group, "off");
            let last: Option<u64> = s
                .commands
                .run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
                .await?;
            Ok(last.unwrap_or(0))
        })
    }
}

/// An in-place history edit (`scripts::REPLACE`); `None` when no entry has
/// that offset.
fn replace_op(group: &str, offset: u64, kind: Kind, data: Bytes) -> impl Op<Option<Message>> {
    let group = group.to_owned();
    move |s: Arc<Shared>| -> EngineFuture<Option<Message>> {
        Box::pin(async move {
            let b = s.bounds;
            let mut inv = s.scripts.replace.prepare_invoke();
            inv.key(s.keys.group(&group, "log"))
                .key(s.keys.group(&group, "bytes"))
                .key(s.keys.group(&group, "edits"))
                .arg(offset)
                .arg(kind_code(kind))
                .arg(&data[..])
                .arg(b.max_messages)
                .arg(b.max_bytes);
            let ts: Option<String> = s
                .commands
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            Ok(ts.map(|ts| {
                let ts = ts.parse().unwrap_or(0);
                Message::new(kind, data, Some(group.as_str().into()), offset, ts)
            }))
        })
    }
}

/// The live users of a presence set, sorted and distinct.
fn live_users_op(key: String) -> impl Op<Vec<String>> {
    move |s: Arc<Shared>| -> EngineFuture<Vec<String>> {
        Box::pin(async move {
            let raw: Vec<Vec<u8>> = s
                .commands
                .run(|mut c| async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg(now_ms())
                        .arg("+inf")
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let mut users = Vec::with_capacity(raw.len());
            for entry in &raw {
                match wire::presence_user(entry) {
                    Some(u) => users.push(u.to_owned()),
                    None => {
                        s.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            users.sort_unstable();
            users.dedup();
            Ok(users)
        })
    }
}

fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// The send script's call for one group send, ready to run on the engine's
/// runtime (waited for by `publish_group`, awaited by `publish_group_async`).
fn publish_op(
    p: GroupPublish<'_>,
) -> impl FnOnce(Arc<Shared>) -> EngineFuture<u64> + Send + 'static {
    let group = p.group.to_owned();
    let data = p.data.to_vec();
    let (save, kind, ts) = (p.save, p.kind, p.ts_ms);
    let at = p.placeholder_at.map_or(0, |i| i + 1);
    move |s: Arc<Shared>| -> EngineFuture<u64> {
        Box::pin(async move {
            let k = |suffix| s.keys.group(&group, suffix);
            let b = s.bounds;
            let mut inv = s.scripts.send.prepare_invoke();
            inv.key(k("off"))
                .key(k("epoch"))
                .key(k("log"))
                .key(k("bytes"))
                .key(k("edits"))
                .key(s.keys.global("groups"))
                .arg(s.keys.group_channel(&group))
                .arg(if save { "1" } else { "0" })
                .arg(kind_code(kind))
                .arg(ts)
                .arg(new_epoch().to_string())
                .arg(b.max_messages)
                .arg(b.max_bytes)
                .arg(b.ttl_ms)
                .arg(at)
                .arg(data)
                .arg(&group);
            let (offset, _epoch): (u64, String) = s
                .commands
                .run(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            Ok(offset)
        })
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Fanout for RedisEngine {
    fn publish_group(&self, p: GroupPublish<'_>) -> Result<u64> {
        let offset = self.block(publish_op(p))?;
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        Ok(offset)
    }

    fn publish_group_async(&self, p: GroupPublish<'_>) -> EngineFuture<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.shared.clone();
        let op = publish_op(p)(shared.clone());
        self.handle.spawn(async move {
            let _ = tx.send(op.await);
        });
        Box::pin(async move {
            let result = rx
                .await
                .unwrap_or_else(|_| Err(unavailable("the engine stopped")));
            let counter = match result {
                Ok(_) => &shared.counters.published,
                Err(_) => &shared.counters.unavailable,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            result
        })
    }

    fn publish_user(&self, user: &str, kind: Kind, data: &[u8], ts_ms: u64) -> Result<()> {
        let channel = self.shared.keys.user_channel(user);
        let body = wire::encode(kind, 0, ts_ms, 0, data);
        self.block(move |s| async move {
            s.commands
                .run(|mut c| async move {
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(body)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await
        })?;
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn want(&self, topic: Topic<'_>) {
        let channel = self.channel(topic);
        let mut s = self.shared.subs.lock();
        let active = s.active.contains(&channel);
        if !active {
            s.changed.insert(channel.clone());
        }
        s.desired.insert(channel);
        drop(s);
        if !active {
            self.shared.subs_changed.notify_one();
        }
    }

    fn unwant(&self, topic: Topic<'_>) {
        let channel = self.channel(topic);
        let mut s = self.shared.subs.lock();
        s.desired.remove(&channel);
        let active = s.active.contains(&channel);
        if active {
            s.changed.insert(channel);
        }
        drop(s);
        if active {
            self.shared.subs_changed.notify_one();
        }
    }

    fn wait_subscribed(&self, topic: Topic<'_>) -> Result<()> {
        let channel = self.channel(topic);
        let deadline = std::time::Instant::now() + self.shared.timeout;
        let mut s = self.shared.subs.lock();
        loop {
            if s.active.contains(&channel) {
                return Ok(());
            }
            if !s.connected || on_engine_thread() {
                break;
            }
            if self
                .shared
                .subs_cond
                .wait_until(&mut s, deadline)
                .timed_out()
            {
                break;
            }
        }
        drop(s);
        self.shared
            .counters
            .unavailable
            .fetch_add(1, Ordering::Relaxed);
        Err(unavailable(format!("not subscribed to {channel}")))
    }
}

impl HistoryStore for RedisEngine {
    fn read(&self, group: &str, query: HistoryQuery, now_ms: u64) -> Result<HistoryPage> {
        self.block(read_op(group, query, now_ms))
    }

    fn read_async(
        &self,
        group: &str,
        query: HistoryQuery,
        now_ms: u64,
    ) -> EngineFuture<HistoryPage> {
        self.spawn(read_op(group, query, now_ms))
    }

    fn last_offset(&self, group: &str) -> Result<u64> {
        self.block(last_offset_op(group))
    }

    fn last_offset_async(&self, group: &str) -> EngineFuture<u64> {
        self.spawn(last_offset_op(group))
    }

    fn groups_with_history(&self) -> Result<Vec<String>> {
        let key = self.shared.keys.global("groups");
        let mut groups: Vec<String> = self.block(move |s| async move {
            s.commands
                    .run(|mut c| async move {
                        redis::cmd("SMEMBERS").arg(&key).query_async(&mut c).await
                    })
                    .await
        })?;
        groups.sort_unstable();
        Ok(groups)
    }

    fn replace(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: Bytes,
    ) -> Result<Option<Message>> {
        self.block(replace_op(group, offset, kind, data))
    }

    fn replace_async(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: Bytes,
    ) -> EngineFuture<Option<Message>> {
        self.spawn(replace_op(group, offset, kind, data))
    }

    fn flush(&self, group: &str) -> Result<()> {
        let g = group.to_owned();
        self.block(move |s| async move {
            let mut p = redis::pipe();
            p.atomic()
                .del(&[
                    s.keys.group(&g, "log"),
                    s.keys.group(&g, "bytes"),
                    s.keys.group(&g, "edits"),
                ])
                .ignore()
                .set(s.keys.group(&g, "epoch"), new_epoch().to_string())
                .ignore();
            s.commands
                .run(|mut c| async move { p.query_async::<()>(&mut c).await })
                .await
        })
    }
}

impl PresenceStore for RedisEngine {
    fn presence_join(&self, group: &str, user: &str) {
        self.presence_update(
            self.shared.keys.group(group, "pres"),
            self.member(user),
            true,
        );
    }

    fn presence_leave(&self, group: &str, user: &str) {
        self.presence_update(
            self.shared.keys.group(group, "pres"),
            self.member(user),
            false,
        );
    }

    fn user_online(&self, user: &str) {
        self.presence_update(self.shared.keys.global("users"), self.member(user), true);
    }

    fn user_offline(&self, user: &str) {
        self.presence_update(self.shared.keys.global("users"), self.member(user), false);
    }

    fn group_users(&self, group: &str) -> Result<Vec<String>> {
        self.block(live_users_op(self.shared.keys.group(group, "pres")))
    }

    fn group_users_async(&self, group: &str) -> EngineFuture<Vec<String>> {
        self.spawn(live_users_op(self.shared.keys.group(group, "pres")))
    }

    fn users(&self) -> Result<Vec<String>> {
        self.block(live_users_op(self.shared.keys.global("users")))
    }

    fn users_async(&self) -> EngineFuture<Vec<String>> {
        self.spawn(live_users_op(self.shared.keys.global("users")))
    }
}

impl Engine for RedisEngine {
    fn fill_stats(&self, stats: &mut Stats) {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        stats.engine_connected = u64::from(
            self.shared.connected.load(Ordering::Relaxed) && self.shared.commands.is_connected(),
        );
        stats.engine_published = get(&c.published);
        stats.engine_received = get(&c.received);
        stats.engine_reconnects = get(&c.reconnects);
        stats.engine_unavailable = get(&c.unavailable);
        stats.engine_lost_subscriptions = get(&c.lost_subscriptions);
        stats.engine_lost_subscription_closes = get(&c.lost_closes);
        stats.engine_malformed = get(&c.malformed);
    }

    fn goodbye(&self, presence: &LocalPresence) {
        let node = self.shared.node.clone();
        let mut removals: Vec<(String, String)> = Vec::new();
        for (group, users) in &presence.groups {
            let key = self.shared.keys.group(group, "pres");
            removals.extend(users.iter().map(|u| (key.clone(), self.member(u))));
        }
        let users_key = self.shared.keys.global("users");
        removals.extend(
            presence
                .users
                .iter()
                .map(|u| (users_key.clone(), self.member(u))),
        );
        let nodes_key = self.shared.keys.global("nodes");
        let _ = self.block(move |s| async move {
            s.commands
                .run(|mut c| async move {
                    let mut p = redis::pipe();
                    for (key, member) in &removals {
                        p.zrem(key, member).ignore();
                    }
                    p.zrem(&nodes_key, &node).ignore();
                    p.query_async::<()>(&mut c).await
                })
                .await
        });
        self.halt();
    }

    fn halt(&self) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        self.shared.connected.store(false, Ordering::Relaxed);
        let mut s = self.shared.subs.lock();
        s.connected = false;
        s.active.clear();
        drop(s);
        self.shared.subs_cond.notify_all();
    }
}

/// Refreshes this node's presence entries every third of the TTL (and right
/// after a reconnect), and drops expired entries of the keys it touches.
async fn heartbeat(shared: Arc<Shared>) {
    let every = Duration::from_millis((shared.presence_ttl_ms / 3).max(100));
    loop {
        let _ = tokio::time::timeout(every, shared.heartbeat_now.notified()).await;
        let local = shared.sink.local_presence();
        let ttl = shared.presence_ttl_ms;
        let now = now_ms();
        let until = now + ttl;
        let mut p = redis::pipe();
        let mut touch = |key: String, users: &[String]| {
            for u in users {
                p.zadd(&key, format!("{u}{SEP}{}", shared.node), until)
                    .ignore();
            }
            p.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(now)
                .ignore();
            p.pexpire(&key, (ttl * 2) as i64).ignore();
        };
        for (group, users) in &local.groups {
            touch(shared.keys.group(group, "pres"), users);
        }
        touch(shared.keys.global("users"), &local.users);
        p.zadd(shared.keys.global("nodes"), &shared.node, now)
            .ignore();
        let _ = shared
            .commands
            .run(|mut c| async move { p.query_async::<()>(&mut c).await })
            .await;
    }
}
