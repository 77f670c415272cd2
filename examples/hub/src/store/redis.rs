//! The Redis backend: the hub's state under `<prefix>:hub:` (the core's
//! keys are `<prefix>:g:` and its channels `<prefix>:c:`, so they never
//! meet).
//!
//! - `<p>:hub:<table>:<group>`: a hash, field -> value (rooms, owners,
//!   bans, mutes, read receipts).
//! - `<p>:hub:rooms-by-id`: a sorted set of room ids (score 0), so
//!   `GET /rooms` pages by id without reading every room.
//! - `<p>:hub:cid:<key>`: one string per client id, `0` while being saved,
//!   then the message id; they expire (`PX`/`EX`).
//! - `<p>:hub:thread:<room>:<root>`: a sorted set of reply ids; and
//!   `<p>:hub:threads:<room>`: the roots, so old threads can be dropped.
//! - Channel `<p>:hub:close`: [`CloseEvent`]s, JSON.
//!
//! Nothing is cached: every call asks Redis, so what one hub changes the
//! next call on any hub sees. Calls go through one `ConnectionManager`
//! (reconnects by itself), each bounded by the engine's timeout. The
//! manager and the close-event subscription live on the store's own
//! single-thread runtime, which also runs the `_blocking` calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;

use super::{Claim, CloseEvent, CloseHandler, StoreError, Table};

/// Sets a field only if it is missing, and indexes a room id.
const PUT_NEW: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if KEYS[2] then redis.call('ZADD', KEYS[2], 0, ARGV[1]) end
return 1";

/// Compare and swap one field (`ARGV[3]` absent: remove it).
const SWAP: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[1]) end
end
return 1";

/// Moves a numeric field up; a value that is not a number is replaced.
const ADVANCE: &str = r"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
if cur and cur >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1";

/// Frees a lease only if it is still the caller's (`ARGV[1]`, its token).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Sets a sanction (`ARGV[1]` -> `ARGV[2]`, both `until_ms,set_us`) and,
/// when the hash then holds more than `ARGV[3]`, evicts in one step:
/// expired and damaged entries first, then the soonest ending, permanent
/// ones (`until_ms` 0) last and the oldest of them first; never the one
/// just set. Returns how many were evicted. The same order as
/// `features::moderation` keeps in embedded mode.
const PUT_CAPPED: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local max = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[1]) <= max then return 0 end
local now = tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
local kept = {}
local evicted = 0
for i = 1, #all, 2 do
  local user = all[i]
  if user ~= ARGV[1] then
    local u, s = string.match(all[i + 1], '^(%d+),(%d+)$')
    u = tonumber(u)
    s = tonumber(s)
    if u == nil or s == nil or (u ~= 0 and u <= now) then
      redis.call('HDEL', KEYS[1], user)
      evicted = evicted + 1
    else
      kept[#kept + 1] = {user, u, s}
    end
  end
end
local excess = #kept - (max - 1)
if excess > 0 then
  table.sort(kept, function(a, b)
    local pa, pb = a[2] == 0, b[2] == 0
    if pa ~= pb then return pb end
    if a[2] ~= b[2] then return a[2] < b[2] end
    if a[3] ~= b[3] then return a[3] < b[3] end
    return a[1] < b[1]
  end)
  for i = 1, excess do
    redis.call('HDEL', KEYS[1], kept[i][1])
    evicted = evicted + 1
  end
end
return evicted";

/// Deletes a client id that still holds its claim (`0`) or `ARGV[1]`.
const RELEASE_CLIENT_ID: &str = r"
local v = redis.call('GET', KEYS[1])
if v == '0' or v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// A lease held in Redis (see [`Inner::lease`]); given back when dropped.
pub struct Held {
    inner: Arc<Inner>,
    key: String,
    token: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        let (key, token) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        // On the store's runtime: a drop cannot wait, and the caller's
        // runtime may be stopping. A lease not given back expires.
        self.inner.runtime.spawn(async move {
            let mut call = inner.release.prepare_invoke();
            call.key(&key).arg(&token);
            if let Err(e) = inner.run::<i64>(Query::Script(&call)).await {
                tracing::warn!(error = %e, key, "could not give a lease back; it expires by itself");
            }
        });
    }
}

/// The Redis store.
pub struct RedisStore {
    inner: Arc<Inner>,
    /// Dropping it stops the store's runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What every call needs.
pub struct Inner {
    conn: ConnectionManager,
    client: redis::Client,
    /// `<prefix>:hub:`.
    keys: String,
    timeout: Duration,
    /// The store's own runtime (the manager's driver runs there).
    runtime: tokio::runtime::Handle,
    put_new: redis::Script,
    swap: redis::Script,
    advance: redis::Script,
    release: redis::Script,
    put_capped: redis::Script,
    release_cid: redis::Script,
}

/// One query, sent again as it is if the first try lost the link.
#[derive(Clone, Copy)]
enum Query<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects (bounded by `timeout`) on a new runtime thread.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<RedisStore> {
        let client = redis::Client::open(url)?;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("hub-state-redis".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })?;
        let runtime = handle_rx.recv()??;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(timeout)
            .set_connection_timeout(timeout)
            .set_number_of_retries(2)
            .set_max_delay(500);
        let connecting = client.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let attempt = tokio::time::timeout(
                timeout,
                ConnectionManager::new_with_config(connecting, config),
            )
            .await;
            let _ = tx.send(attempt);
        });
        let conn = match rx.recv()? {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => anyhow::bail!("cannot reach Redis for the hub's state: {e}"),
            Err(_) => anyhow::bail!("cannot reach Redis for the hub's state: timed out"),
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                client,
                keys: format!("{prefix}:hub:"),
                timeout,
                runtime,
                put_new: redis::Script::new(PUT_NEW),
                swap: redis::Script::new(SWAP),
                advance: redis::Script::new(ADVANCE),
                release: redis::Script::new(RELEASE),
                put_capped: redis::Script::new(PUT_CAPPED),
                release_cid: redis::Script::new(RELEASE_CLIENT_ID),
            }),
            _stop: stop,
        })
    }

    /// Runs `call` on the store's runtime and waits for it (bounded).
    pub fn blocking<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let timeout = inner.timeout;
        self.inner.runtime.spawn(async move {
            let _ = tx.send(call(inner).await);
        });
        super::off_worker(
            || match rx.recv_timeout(timeout + Duration::from_millis(500)) {
                Ok(result) => result,
                Err(_) => Err(StoreError::Unavailable("timed out".into())),
            },
        )
    }

    /// The engine timeout every call is bounded by.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// [`Inner::lease`].
    pub async fn lease(
        &self,
        name: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Held>, StoreError> {
        Inner::lease(&self.inner, name, lease, wait).await
    }

    /// Starts the close-event subscription (renewed after a lost link);
    /// returns once it is in place (or the engine timeout passed), so a
    /// hub that answers requests also hears the other hubs' bans.
    pub fn subscribe_close(&self, handler: CloseHandler, node: String) {
        let weak = Arc::downgrade(&self.inner);
        let (subscribed, first) = std::sync::mpsc::sync_channel::<()>(1);
        self.inner.runtime.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let channel = format!("{}close", inner.keys);
                let client = inner.client.clone();
                let timeout = inner.timeout;
                drop(inner);
                match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
                    Ok(Ok(mut pubsub)) => {
                        if pubsub.subscribe(&channel).await.is_ok() {
                            let _ = subscribed.try_send(());
                            let mut messages = pubsub.into_on_message();
                            while let Some(msg) = messages.next().await {
                                let Ok(raw) = msg.get_payload::<Vec<u8>>() else {
                                    continue;
                                };
                                match serde_json::from_slice::<CloseEvent>(&raw) {
                                    Ok(event) if event.node != node => handler(event),
                                    Ok(_) => {}
                                    Err(e) => {
                                        tracing::warn!(error = %e, "a close event that does not decode; skipped")
                                    }
                                }
                            }
                        }
                        tracing::warn!("close-event subscription lost; renewing");
                    }
                    _ => tracing::warn!("cannot subscribe to close events; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        if first
            .recv_timeout(self.inner.timeout + Duration::from_millis(500))
            .is_err()
        {
            tracing::warn!("close events: not subscribed yet; bans on other hubs may not close sockets here until it is");
        }
    }
}

impl std::ops::Deref for RedisStore {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Inner {
    fn hash(&self, table: Table, group: &str) -> String {
        format!("{}{}:{group}", self.keys, table.name())
    }

    /// The id index of [`Table::Rooms`].
    fn index(&self, table: Table) -> Option<String> {
        (table == Table::Rooms).then(|| format!("{}rooms-by-id", self.keys))
    }

    /// Runs one query, bounded by the engine timeout. A query that finds
    /// the link gone (Redis restarted) is sent once more: the manager
    /// reconnects on the first failure, and the retry waits for it.
    async fn run<T: redis::FromRedisValue>(&self, query: Query<'_>) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut tries = 0;
        loop {
            let mut c = self.conn.clone();
            let call = async {
                match query {
                    Query::Cmd(cmd) => cmd.query_async::<T>(&mut c).await,
                    Query::Pipe(pipe) => pipe.query_async::<T>(&mut c).await,
                    Query::Script(script) => script.invoke_async::<T>(&mut c).await,
                }
            };
            match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e))
                    if tries == 0
                        && (e.is_connection_dropped()
                            || e.is_io_error()
                            || e.is_connection_refusal()) =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => return Err(StoreError::Unavailable("timed out".into())),
            }
        }
    }

    /// HGET.
    pub async fn get(
        &self,
        table: Table,
        group: &str,
        field: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.hash(table, group)).arg(field);
        self.run(Query::Cmd(&cmd)).await
    }

    /// HGETs in one pipeline (one round trip).
    pub async fn get_many(
        &self,
        keys: &[super::Key<'_>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut pipe = redis::pipe();
        for &(table, group, field) in keys {
            pipe.hget(self.hash(table, group), field);
        }
        self.run(Query::Pipe(&pipe)).await
    }

    /// HSET (and the id index).
    pub async fn put(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.hash(table, group), field, value)
            .ignore();
        if let Some(index) = self.index(table) {
            pipe.zadd(index, field, 0).ignore();
        }
        self.run(Query::Pipe(&pipe)).await
    }

    /// HSETNX (and the id index), atomically.
    pub async fn put_new(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut call = self.put_new.prepare_invoke();
        call.key(self.hash(table, group));
        if let Some(index) = self.index(table) {
            call.key(index);
        }
        call.arg(field).arg(value);
        let done: i64 = self.run(Query::Script(&call)).await?;
        Ok(done == 1)
    }

    /// Compare and swap, atomically.
    pub async fn swap(
        &self,
        table: Table,
        group: &str,
        field: &str,
        old: &[u8],
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let mut call = self.swap.prepare_invoke();
        call.key(self.hash(table, group));
        if let Some(index) = self.index(table) {
            call.key(index);
        }
        call.arg(field).arg(old);
        if let Some(new) = new {
            call.arg(new);
        }
        let done: i64 = self.run(Query::Script(&call)).await?;
        Ok(done == 1)
    }

    /// HDEL (and the id index).
    pub async fn remove(&self, table: Table, group: &str, field: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic().hdel(self.hash(table, group), field).ignore();
        if let Some(index) = self.index(table) {
            pipe.zrem(index, field).ignore();
        }
        self.run(Query::Pipe(&pipe)).await
    }

    /// HGETALL.
    pub async fn all(
        &self,
        table: Table,
        group: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.hash(table, group));
        let mut out: Vec<(String, Vec<u8>)> = self.run(Query::Cmd(&cmd)).await?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// HLEN.
    pub async fn count(&self, table: Table, group: &str) -> Result<usize, StoreError> {
        let mut cmd = redis::cmd("HLEN");
        cmd.arg(self.hash(table, group));
        self.run(Query::Cmd(&cmd)).await
    }

    /// DEL.
    pub async fn drop_group(&self, table: Table, group: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.hash(table, group));
        self.run(Query::Cmd(&cmd)).await
    }

    /// Room ids after `after` from the index, then their values; an id
    /// whose room is gone is skipped.
    pub async fn rooms_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let from = if after.is_empty() {
            "-".to_owned()
        } else {
            format!("({after}")
        };
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(format!("{}rooms-by-id", self.keys))
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let ids: Vec<String> = self.run(Query::Cmd(&cmd)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.hash(Table::Rooms, "")).arg(&ids);
        let values: Vec<Option<Vec<u8>>> = self.run(Query::Cmd(&cmd)).await?;
        Ok(ids
            .into_iter()
            .zip(values)
            .filter_map(|(id, v)| v.map(|v| (id, v)))
            .collect())
    }

    /// The [`ADVANCE`] script.
    pub async fn advance(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: u64,
    ) -> Result<bool, StoreError> {
        let mut call = self.advance.prepare_invoke();
        call.key(self.hash(table, group)).arg(field).arg(value);
        let done: i64 = self.run(Query::Script(&call)).await?;
        Ok(done == 1)
    }

    /// The [`PUT_CAPPED`] script: sets `field` and keeps the group at
    /// `max` fields at most, atomically; how many it evicted.
    pub async fn put_capped(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
        max: usize,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut call = self.put_capped.prepare_invoke();
        call.key(self.hash(table, group))
            .arg(field)
            .arg(value)
            .arg(max.max(1))
            .arg(now_ms);
        let evicted: i64 = self.run(Query::Script(&call)).await?;
        Ok(evicted.max(0) as usize)
    }

    /// Takes the lease `<p>:hub:lease:<name>` (`SET NX PX`, a random
    /// token), waiting while another holds it, at most `wait`; `None` when
    /// it stayed taken. It lapses after `lease` if never given back (a
    /// holder that died).
    pub async fn lease(
        self: &Arc<Self>,
        name: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Held>, StoreError> {
        let key = format!("{}lease:{name}", self.keys);
        let token = format!("{:016x}", rand::random::<u64>());
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        // Bounded by `wait`; the count bounds it too.
        for _ in 0..100_000 {
            let mut set = redis::cmd("SET");
            set.arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis().max(1) as u64);
            let taken: Option<String> = self.run(Query::Cmd(&set)).await?;
            if taken.is_some() {
                return Ok(Some(Held {
                    inner: self.clone(),
                    key,
                    token,
                }));
            }
            if tokio::time::Instant::now() + pause > deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(8));
        }
        Ok(None)
    }

    fn client_id_key(&self, key: &str) -> String {
        format!("{}cid:{key}", self.keys)
    }

    /// `SET NX PX`, else what is there; and whether that did not decode.
    pub async fn claim(&self, key: &str, pending: Duration) -> Result<(Claim, bool), StoreError> {
        let key = self.client_id_key(key);
        let ms = pending.as_millis().max(1) as u64;
        let mut set = redis::cmd("SET");
        set.arg(&key).arg("0").arg("NX").arg("PX").arg(ms);
        let set: Option<String> = self.run(Query::Cmd(&set)).await?;
        if set.is_some() {
            return Ok((Claim::Fresh, false));
        }
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let held: Option<Vec<u8>> = self.run(Query::Cmd(&get)).await?;
        match held.as_deref().map(super::parse_u64) {
            // Expired between the two calls.
            None => Ok((Claim::Fresh, false)),
            Some(Some(0)) => Ok((Claim::InFlight, false)),
            Some(Some(id)) => Ok((Claim::Saved(id), false)),
            Some(None) => {
                let mut reset = redis::cmd("SET");
                reset.arg(&key).arg("0").arg("PX").arg(ms);
                self.run::<()>(Query::Cmd(&reset)).await?;
                Ok((Claim::Fresh, true))
            }
        }
    }

    /// `SET EX`.
    pub async fn settle(&self, key: &str, id: u64, keep: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.client_id_key(key))
            .arg(id)
            .arg("EX")
            .arg(keep.as_secs().max(1));
        self.run(Query::Cmd(&cmd)).await
    }

    /// Forgets client id `key` if it still holds the claim (`0`) or `id`.
    pub async fn release(&self, key: &str, id: u64) -> Result<(), StoreError> {
        let mut call = self.release_cid.prepare_invoke();
        call.key(self.client_id_key(key)).arg(id);
        self.run::<i64>(Query::Script(&call)).await.map(|_| ())
    }

    fn thread_key(&self, room: &str, root: u64) -> String {
        format!("{}thread:{room}:{root}", self.keys)
    }

    fn roots_key(&self, room: &str) -> String {
        format!("{}threads:{room}", self.keys)
    }

    /// ZADD the reply and its root.
    pub async fn add_reply(&self, room: &str, root: u64, id: u64) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.zadd(self.thread_key(room, root), id, id as f64)
            .ignore()
            .zadd(self.roots_key(room), root, root as f64)
            .ignore();
        self.run(Query::Pipe(&pipe)).await
    }

    /// The newest `max` replies, ascending.
    pub async fn replies(&self, room: &str, root: u64, max: usize) -> Result<Vec<u64>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.thread_key(room, root))
            .arg(-(max as i64))
            .arg(-1);
        let raw: Vec<String> = self.run(Query::Cmd(&cmd)).await?;
        let mut ids: Vec<u64> = raw.iter().filter_map(|s| s.parse().ok()).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Drops the threads whose root is below `first_kept`.
    pub async fn evict_threads(&self, room: &str, first_kept: u64) -> Result<(), StoreError> {
        let roots_key = self.roots_key(room);
        let max = if first_kept == u64::MAX {
            "+inf".to_owned()
        } else {
            format!("({first_kept}")
        };
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&roots_key).arg("-inf").arg(&max);
        let roots: Vec<String> = self.run(Query::Cmd(&cmd)).await?;
        if roots.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for root in &roots {
            pipe.del(format!("{}thread:{room}:{root}", self.keys))
                .ignore();
        }
        pipe.zrembyscore(&roots_key, "-inf", max).ignore();
        self.run(Query::Pipe(&pipe)).await
    }

    /// PUBLISH a close event.
    pub async fn publish_close(&self, event: &CloseEvent) -> Result<(), StoreError> {
        let payload = serde_json::to_vec(event).map_err(unavailable)?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(format!("{}close", self.keys)).arg(payload);
        self.run(Query::Cmd(&cmd)).await
    }
}
