//! The hub's own state in one place: rooms (owner, privacy, members), bans
//! and mutes, read receipts, thread replies, client ids and who joined
//! which room.
//!
//! Two backends, one per mode, behind the same calls:
//!
//! - **Embedded** (no `--redis-url`): a redb database, `<data dir>/hub.redb`
//!   ([`embedded`]). A change the hub acknowledges (a room created, a ban)
//!   is committed with `Durability::Immediate` before the call returns,
//!   on tokio's blocking pool ([`off_runtime`]): no socket task waits for
//!   that fsync.
//!   Frequent small writes (read receipts, client ids, thread replies) go
//!   through [`embedded::Batcher`]: visible at once to readers of this
//!   process, committed by one writer thread in one transaction every
//!   [`embedded::BATCH_WINDOW`] (one fsync for the lot, off the workers).
//! - **Redis** (`--redis-url`): the same state under `<prefix>:hub:`
//!   ([`redis`]), read from Redis on every call, so every hub sees one
//!   truth at once. Sockets a ban or a room change shuts out are closed on
//!   every hub through one pub/sub channel ([`CloseEvent`]).
//!
//! The store knows tables, groups and fields and keeps bytes; each feature
//! keeps its own encoding, rules and limits. A value that does not decode
//! is logged, counted in [`Store::corrupt`] (`/stats`, `/metrics`) and
//! skipped by the feature; it never stops the hub.
//!
//! Every call has an async form, and the hub's async paths (the upgrade's
//! admission check, frames, searches, `/stats`) use it: no worker waits
//! on Redis. A few also have a `_blocking` form, for start-up (importing
//! `rooms.json`) and for embedded-only checks (`features::left`). With
//! Redis those run on the store's own runtime thread and the caller waits
//! (bounded by the engine timeout).

pub mod embedded;
pub mod redis;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The store's tables. Each holds `(group, field) -> bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// group "" : room id -> room (JSON).
    Rooms,
    /// group owner : room id -> "" (rooms per owner, for the cap).
    Owned,
    /// group room : user id -> sanction (see `moderation`).
    Bans,
    /// group room : user id -> sanction.
    Mutes,
    /// group room : user id -> last read message id (decimal).
    Reads,
    /// group user id : room -> last read message id (decimal): the rooms
    /// a user has read in, for unread counts (`features::unread`).
    UserReads,
    /// group user id : peer's user id -> last read DM id (decimal, "0"
    /// for a conversation not read yet): the user's DM conversations.
    UserDms,
    /// group "" : key -> state (see `client_ids`).
    ClientIds,
    /// group "" : name -> value (migrations done).
    Meta,
    /// group room : user id -> when they joined (ms, decimal): the room's
    /// members (`features::membership`).
    Members,
}

impl Table {
    /// Its name in redb and in Redis keys.
    pub fn name(self) -> &'static str {
        match self {
            Table::Rooms => "rooms",
            Table::Owned => "owned",
            Table::Bans => "bans",
            Table::Mutes => "mutes",
            Table::Reads => "reads",
            Table::UserReads => "user_reads",
            Table::UserDms => "user_dms",
            Table::ClientIds => "client_ids",
            Table::Meta => "meta",
            Table::Members => "members",
        }
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer in time or refused: the caller answers 503 or
    /// an `error` frame.
    #[error("the shared state is unavailable: {0}")]
    Unavailable(String),
    /// The embedded database failed (disk full, I/O error).
    #[error("the hub's database failed: {0}")]
    Database(String),
}

/// One value's address: table, group, field.
pub type Key<'a> = (Table, &'a str, &'a str);

/// What a `client_id` is to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen lately: now marked as being saved by the caller.
    Fresh,
    /// Saved already, with this message id.
    Saved(u64),
    /// Being saved by another call right now.
    InFlight,
}

/// Sockets to close on every hub (a ban, a room made private, members
/// removed, a room deleted).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CloseEvent {
    /// The room whose sockets are concerned; empty: every socket of
    /// `user`, on every endpoint (the server API's `POST /api/disconnect`).
    pub room: String,
    /// Only this user's sockets; `None`: every socket the room no longer
    /// admits (see `admitted`).
    pub user: Option<String>,
    /// With `user: None`: the room as it is now (JSON); `None` closes every
    /// socket in the room (it was deleted).
    pub admitted: Option<String>,
    /// The WebSocket close code and reason.
    pub code: u16,
    /// Shown to the closed client.
    pub reason: String,
    /// The hub that sent it (it already closed its own sockets).
    pub node: String,
}

/// The hub's state store: one backend, chosen by the mode.
pub struct Store {
    backend: Backend,
    /// Values that did not decode (skipped), for `/stats` and `/metrics`.
    corrupt: AtomicU64,
    /// This hub's name in [`CloseEvent`]s.
    pub node: String,
}

enum Backend {
    /// Shared with the blocking pool's threads that run its commits.
    Embedded(std::sync::Arc<embedded::Embedded>),
    Redis(redis::RedisStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Embedded(_) => "Store(redb)",
            Backend::Redis(_) => "Store(redis)",
        })
    }
}

/// A synchronous handler for the [`CloseEvent`]s other hubs publish.
pub type CloseHandler = Box<dyn Fn(CloseEvent) + Send + Sync>;

impl Store {
    /// Opens `<data_dir>/hub.redb` (created when missing). A file that is
    /// not a redb database, or one redb cannot repair, is an error naming
    /// the file: the hub refuses to start rather than drop its rooms and
    /// bans silently.
    pub fn open_embedded(data_dir: &Path) -> anyhow::Result<Store> {
        Ok(Store::with(Backend::Embedded(std::sync::Arc::new(
            embedded::Embedded::open(data_dir)?,
        ))))
    }

    /// Connects to Redis at `url`; keys under `<prefix>:hub:`; every call
    /// gives up after `timeout`.
    pub fn open_redis(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Store> {
        Ok(Store::with(Backend::Redis(redis::RedisStore::open(
            url, prefix, timeout,
        )?)))
    }

    fn with(backend: Backend) -> Store {
        let node = format!("{:016x}", rand::random::<u64>());
        Store {
            backend,
            corrupt: AtomicU64::new(0),
            node,
        }
    }

    /// True with Redis: the state is shared with other hubs.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Values skipped because they did not decode.
    pub fn corrupt(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// Logs and counts a value that did not decode; the caller skips it.
    pub fn report_corrupt(&self, table: Table, group: &str, field: &str, why: &str) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            table = table.name(),
            group,
            field,
            why,
            "corrupt value in the hub's state; skipped"
        );
    }

    /// The value under `(group, field)`.
    pub async fn get(
        &self,
        table: Table,
        group: &str,
        field: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.get(table, group, field),
            Backend::Redis(r) => r.get(table, group, field).await,
        }
    }

    /// [`Store::get`] from synchronous code.
    pub fn get_blocking(
        &self,
        table: Table,
        group: &str,
        field: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.get(table, group, field),
            Backend::Redis(r) => {
                let (group, field) = (group.to_owned(), field.to_owned());
                r.blocking(move |r| async move { r.get(table, &group, &field).await })
            }
        }
    }

    /// Several values in one read (one transaction, or one pipeline: one
    /// round trip), in the order asked.
    pub async fn get_many(&self, keys: &[Key<'_>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.get_many(keys),
            Backend::Redis(r) => r.get_many(keys).await,
        }
    }

    /// Sets `(group, field)`; durable when it returns.
    pub async fn put(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (group, field, value) = (group.to_owned(), field.to_owned(), value.to_vec());
                off_runtime(db, move |db| db.put(table, &group, &field, &value)).await
            }
            Backend::Redis(r) => r.put(table, group, field, value).await,
        }
    }

    /// [`Store::put`] from synchronous code.
    pub fn put_blocking(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.put(table, group, field, value),
            Backend::Redis(r) => {
                let (group, field, value) = (group.to_owned(), field.to_owned(), value.to_vec());
                r.blocking(move |r| async move { r.put(table, &group, &field, &value).await })
            }
        }
    }

    /// [`Store::put_new`] from synchronous code.
    pub fn put_new_blocking(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.put_new(table, group, field, value),
            Backend::Redis(r) => {
                let (group, field, value) = (group.to_owned(), field.to_owned(), value.to_vec());
                r.blocking(move |r| async move { r.put_new(table, &group, &field, &value).await })
            }
        }
    }

    /// Sets `(group, field)` only if it holds nothing; true when it did.
    pub async fn put_new(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (group, field, value) = (group.to_owned(), field.to_owned(), value.to_vec());
                off_runtime(db, move |db| db.put_new(table, &group, &field, &value)).await
            }
            Backend::Redis(r) => r.put_new(table, group, field, value).await,
        }
    }

    /// [`Store::put_new`], batched (see [`embedded::Batcher`]): one look
    /// at the batch and the file, no fsync of its own (issue 14: the
    /// first-visit mark of a join).
    pub async fn put_new_batched(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.update_batched(table, group, field, |old| match old {
                None => (Some(value.to_vec()), true),
                Some(_) => (None, false),
            }),
            Backend::Redis(r) => r.put_new(table, group, field, value).await,
        }
    }

    /// Replaces `old` with `new` (`None` removes) only if `(group, field)`
    /// still holds `old`; true when it did.
    pub async fn swap(
        &self,
        table: Table,
        group: &str,
        field: &str,
        old: &[u8],
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (group, field, old) = (group.to_owned(), field.to_owned(), old.to_vec());
                let new = new.map(<[u8]>::to_vec);
                off_runtime(db, move |db| {
                    db.swap(table, &group, &field, &old, new.as_deref())
                })
                .await
            }
            Backend::Redis(r) => r.swap(table, group, field, old, new).await,
        }
    }

    /// Sets the sanction `(group, field)` (values are `until_ms,set_us`,
    /// `until_ms` 0 for "until lifted") and keeps `group` at `max` fields
    /// at most, in one atomic step on either backend (a Lua script in
    /// Redis, one transaction in redb), so hubs setting at once never
    /// leave more than `max`. Evicted first: expired and damaged values,
    /// then the soonest ending, permanent ones last and the oldest of
    /// them first; never `field`. Returns how many were evicted.
    pub async fn put_capped(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
        max: usize,
    ) -> Result<usize, StoreError> {
        let max = max.max(1);
        let now = now_ms();
        match &self.backend {
            Backend::Embedded(db) => {
                let (group, field, value) = (group.to_owned(), field.to_owned(), value.to_vec());
                off_runtime(db, move |db| {
                    db.put_then_evict(table, &group, &field, &value, |all| {
                        capped_evictions(all, &field, max, now)
                    })
                })
                .await
            }
            Backend::Redis(r) => r.put_capped(table, group, field, value, max, now).await,
        }
    }

    /// Takes the lease `name` for a read-modify-write that must not
    /// interleave with the same one on another hub (Redis: `SET NX PX`
    /// with a random token, waited for a bounded time, given back when the
    /// [`Lease`] drops, lapsing by itself after [`LEASE`] if its holder
    /// died). Embedded: nothing to take (one process; the caller's own
    /// lock serializes). `Unavailable` when another holder kept it past
    /// the wait.
    pub async fn lease(&self, name: &str) -> Result<Lease, StoreError> {
        match &self.backend {
            Backend::Embedded(_) => Ok(Lease { _held: None }),
            Backend::Redis(r) => {
                // Past a dead holder's lease, plus one engine timeout.
                let wait = LEASE + r.timeout();
                match r.lease(name, LEASE, wait).await? {
                    Some(held) => Ok(Lease { _held: Some(held) }),
                    None => Err(StoreError::Unavailable(format!(
                        "the shared lock {name:?} stayed taken"
                    ))),
                }
            }
        }
    }

    /// Removes `(group, field)`.
    pub async fn remove(&self, table: Table, group: &str, field: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (group, field) = (group.to_owned(), field.to_owned());
                off_runtime(db, move |db| db.remove(table, &group, &field)).await
            }
            Backend::Redis(r) => r.remove(table, group, field).await,
        }
    }

    /// Every field of `group` with its value.
    pub async fn all(
        &self,
        table: Table,
        group: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.all(table, group),
            Backend::Redis(r) => r.all(table, group).await,
        }
    }

    /// How many fields `group` holds.
    pub async fn count(&self, table: Table, group: &str) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.count(table, group),
            Backend::Redis(r) => r.count(table, group).await,
        }
    }

    /// Removes every field of `group`.
    pub async fn drop_group(&self, table: Table, group: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let group = group.to_owned();
                off_runtime(db, move |db| db.drop_group(table, &group)).await
            }
            Backend::Redis(r) => r.drop_group(table, group).await,
        }
    }

    /// At most `limit` fields of [`Table::Rooms`] after `after`, in order.
    pub async fn rooms_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.page(Table::Rooms, "", after, limit),
            Backend::Redis(r) => r.rooms_after(after, limit).await,
        }
    }

    /// Moves `(group, field)`, a number, up to `value`; false when it was
    /// already there or higher. Batched (see [`embedded::Batcher`]).
    pub async fn advance(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: u64,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let mut bad = false;
                let moved = db.update_batched(table, group, field, |old| {
                    let current = old.map(|v| match parse_u64(v) {
                        Some(n) => n,
                        None => {
                            bad = true;
                            0
                        }
                    });
                    match current {
                        Some(n) if n >= value => (None, false),
                        _ => (Some(value.to_string().into_bytes()), true),
                    }
                })?;
                if bad {
                    self.report_corrupt(table, group, field, "not a number");
                }
                Ok(moved)
            }
            Backend::Redis(r) => r.advance(table, group, field, value).await,
        }
    }

    /// Claims client id `key` for a save, unless it was saved (or is being
    /// saved, for less than `pending`) already.
    pub async fn claim(&self, key: &str, pending: Duration) -> Result<Claim, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let now = now_ms();
                let mut bad = false;
                let claim = db.update_batched(Table::ClientIds, "", key, |old| {
                    let decoded = old.map(|v| {
                        let d = decode_client_id(v);
                        bad |= d.is_none();
                        d
                    });
                    match decoded.flatten() {
                        Some((id, _)) if id > 0 => (None, Claim::Saved(id)),
                        Some((_, at)) if now.saturating_sub(at) < pending.as_millis() as u64 => {
                            (None, Claim::InFlight)
                        }
                        _ => (Some(encode_client_id(0, now)), Claim::Fresh),
                    }
                })?;
                if bad {
                    self.report_corrupt(Table::ClientIds, "", key, "not id,time");
                }
                Ok(claim)
            }
            Backend::Redis(r) => {
                let (claim, bad) = r.claim(key, pending).await?;
                if bad {
                    self.report_corrupt(Table::ClientIds, "", key, "not a number");
                }
                Ok(claim)
            }
        }
    }

    /// Client id `key`'s message was saved as `id`; remembered for `keep`.
    /// Not when its commit failed already ([`Store::release`] came first).
    pub async fn settle(&self, key: &str, id: u64, keep: Duration) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.update_batched(Table::ClientIds, "", key, |old| match old
                .and_then(decode_client_id)
            {
                Some(RELEASED) => (None, ()),
                _ => (Some(encode_client_id(id, now_ms())), ()),
            }),
            Backend::Redis(r) => r.settle(key, id, keep).await,
        }
    }

    /// Client id `key`'s message (`id`) was not saved after all (its
    /// commit failed): the id is free again, so a resend is saved anew
    /// rather than acked with the id of a message that is not on disk.
    /// Only while `key` still holds that claim or that id.
    pub async fn release(&self, key: &str, id: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.update_batched(Table::ClientIds, "", key, |old| match old
                .and_then(decode_client_id)
            {
                Some((held, _)) if held == 0 || held == id => {
                    (Some(encode_client_id(RELEASED.0, RELEASED.1)), ())
                }
                _ => (None, ()),
            }),
            Backend::Redis(r) => r.release(key, id).await,
        }
    }

    /// Forgets client ids older than `keep` (embedded; Redis expires them).
    pub fn sweep_client_ids(&self, keep: Duration) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
                db.retain_group(Table::ClientIds, "", |v| {
                    decode_client_id(v).is_some_and(|(_, at)| at >= cutoff)
                })
            }
            Backend::Redis(_) => Ok(0),
        }
    }

    /// Records reply `id` to thread `root` in `room` (batched).
    pub async fn add_reply(&self, room: &str, root: u64, id: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.add_reply(room, root, id),
            Backend::Redis(r) => r.add_reply(room, root, id).await,
        }
    }

    /// The newest `max` replies to `root`, ascending.
    pub async fn replies(&self, room: &str, root: u64, max: usize) -> Result<Vec<u64>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.replies(room, root, max),
            Backend::Redis(r) => r.replies(room, root, max).await,
        }
    }

    /// Forgets the threads of `room` whose root is below `first_kept`.
    pub async fn evict_threads(&self, room: &str, first_kept: u64) -> Result<(), StoreError> {
        match &self.backend {
            // A deleted room's threads (`u64::MAX`) go in a commit of
            // their own; other evictions join the batch (no disk here).
            Backend::Embedded(db) if first_kept == u64::MAX => {
                let room = room.to_owned();
                off_runtime(db, move |db| db.evict_threads(&room, first_kept)).await
            }
            Backend::Embedded(db) => db.evict_threads(room, first_kept),
            Backend::Redis(r) => r.evict_threads(room, first_kept).await,
        }
    }

    /// Tells every other hub to close sockets (Redis); nothing to do alone.
    pub async fn publish_close(&self, event: &CloseEvent) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(_) => Ok(()),
            Backend::Redis(r) => r.publish_close(event).await,
        }
    }

    /// Calls `handler` for each [`CloseEvent`] another hub publishes
    /// (Redis; the subscription is renewed when Redis comes back).
    pub fn on_close_events(&self, handler: CloseHandler) {
        if let Backend::Redis(r) = &self.backend {
            r.subscribe_close(handler, self.node.clone());
        }
    }

    /// Flushes what is batched (embedded), for a clean stop and tests.
    pub fn flush(&self) {
        if let Backend::Embedded(db) = &self.backend {
            db.flush();
        }
    }

    /// [`Store::flush`] from async code: waits for the batch writer's
    /// commit on the blocking pool, not on the socket tasks' thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                off_runtime(db, |db| {
                    db.flush();
                    Ok(())
                })
                .await
            }
            Backend::Redis(_) => Ok(()),
        }
    }
}

/// How long a [`Store::lease`] lasts when its holder never gives it back.
/// Longer than any read-modify-write under it takes while Redis answers
/// (a few round trips, each bounded by the engine timeout).
pub const LEASE: Duration = Duration::from_secs(10);

/// A lease taken with [`Store::lease`]; given back when dropped.
#[must_use = "the lease is given back when this drops"]
pub struct Lease {
    _held: Option<redis::Held>,
}

/// The fields [`Store::put_capped`] evicts from `all` (the new `field`
/// included) to keep at most `max`; the same order as the Lua script.
fn capped_evictions(all: &[(String, Vec<u8>)], field: &str, max: usize, now: u64) -> Vec<String> {
    if all.len() <= max {
        return Vec::new();
    }
    let mut gone = Vec::new();
    let mut kept: Vec<(u64, u64, &str)> = Vec::new();
    for (f, v) in all {
        if f == field {
            continue;
        }
        match decode_sanction(v) {
            Some((until, set)) if until == 0 || until > now => kept.push((until, set, f)),
            _ => gone.push(f.clone()),
        }
    }
    // Soonest ending first, permanent ones (0) after, oldest first.
    kept.sort_by_key(|&(until, set, f)| (until == 0, until, set, f));
    let excess = kept.len().saturating_sub(max - 1);
    gone.extend(kept.iter().take(excess).map(|(_, _, f)| (*f).to_owned()));
    gone
}

/// `until_ms,set_us`.
fn decode_sanction(raw: &[u8]) -> Option<(u64, u64)> {
    let (until, set) = std::str::from_utf8(raw).ok()?.split_once(',')?;
    Some((until.parse().ok()?, set.parse().ok()?))
}

impl From<StoreError> for crate::error::Refusal {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "state store call failed");
        crate::error::Refusal::new(crate::error::Code::Unavailable, e.to_string())
    }
}

/// Runs embedded work that waits for the disk (a redb commit and its
/// fsync, or the batch writer's) on tokio's blocking pool, so the socket
/// tasks go on meanwhile: on the default runtime of one thread (two CPUs)
/// such a commit run inline stopped every socket of the hub for its
/// duration (the fdatasync alone ~0.5 ms on the development machine's
/// virtio disk, by strace; more on a busy disk) per room made, ban or
/// mute. Inline outside a runtime.
pub async fn off_runtime<T: Send + 'static>(
    db: &std::sync::Arc<embedded::Embedded>,
    work: impl FnOnce(&embedded::Embedded) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return work(db);
    }
    let db = db.clone();
    tokio::task::spawn_blocking(move || work(&db))
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Database(format!(
                "a write to the hub's state did not finish: {e}"
            )))
        })
}

/// Runs blocking work from synchronous code (the `_blocking` calls of
/// the Redis backend) so that other tasks move to another worker
/// meanwhile; inline on a current-thread runtime or outside one.
pub fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A decimal number, as the store keeps counters and ids.
pub fn parse_u64(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// A client id released after a failed commit: free to claim (its time
/// is long past), and never settled over.
const RELEASED: (u64, u64) = (0, 0);

/// `id,at_ms` (id 0 while being saved).
fn encode_client_id(id: u64, at_ms: u64) -> Vec<u8> {
    format!("{id},{at_ms}").into_bytes()
}

fn decode_client_id(raw: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(raw).ok()?;
    let (id, at) = s.split_once(',')?;
    Some((id.parse().ok()?, at.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table that never held a row answers reads without the file; the
    /// first write of any kind makes reads go to the file again, and a
    /// reopened file with rows is read from the start.
    #[tokio::test]
    async fn reads_of_empty_tables_see_every_later_write_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open_embedded(dir.path()).unwrap();
            assert_eq!(store.get(Table::Mutes, "room", "bob").await.unwrap(), None);
            assert_eq!(store.get(Table::Bans, "room", "bob").await.unwrap(), None);
            store.put(Table::Mutes, "room", "bob", b"m").await.unwrap();
            assert_eq!(
                store
                    .get(Table::Mutes, "room", "bob")
                    .await
                    .unwrap()
                    .as_deref(),
                Some(&b"m"[..])
            );
            assert!(store
                .put_new(Table::Bans, "room", "eve", b"b")
                .await
                .unwrap());
            let many = store
                .get_many(&[(Table::Bans, "room", "eve"), (Table::Owned, "o", "r")])
                .await
                .unwrap();
            assert_eq!(many, vec![Some(b"b".to_vec()), None]);
            assert!(store
                .put_new_batched(Table::Reads, "room", "bob", b"4")
                .await
                .unwrap());
        }
        let store = Store::open_embedded(dir.path()).unwrap();
        assert_eq!(
            store
                .get(Table::Mutes, "room", "bob")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"m"[..])
        );
        assert_eq!(
            store
                .get(Table::Bans, "room", "eve")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"b"[..])
        );
        assert_eq!(
            store
                .get(Table::Reads, "room", "bob")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"4"[..])
        );
        assert_eq!(store.get(Table::Owned, "o", "r").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_batched_put_new_sets_only_an_absent_value_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open_embedded(dir.path()).unwrap();
            let put = |v: &'static [u8]| store.put_new_batched(Table::UserReads, "u", "r", v);
            assert!(put(b"7").await.unwrap());
            assert!(!put(b"9").await.unwrap());
            assert_eq!(
                store
                    .get(Table::UserReads, "u", "r")
                    .await
                    .unwrap()
                    .as_deref(),
                Some(&b"7"[..])
            );
            // An existing value, even a lower one, is left as it is.
            assert!(store.advance(Table::UserReads, "v", "r", 3).await.unwrap());
            assert!(!store
                .put_new_batched(Table::UserReads, "v", "r", b"8")
                .await
                .unwrap());
        }
        let store = Store::open_embedded(dir.path()).unwrap();
        assert_eq!(
            store
                .get(Table::UserReads, "u", "r")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"7"[..])
        );
        assert_eq!(
            store
                .get(Table::UserReads, "v", "r")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"3"[..])
        );
    }

    #[tokio::test]
    async fn embedded_values_survive_a_reopen_and_batched_ones_are_visible_at_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open_embedded(dir.path()).unwrap();
            assert!(store.put_new(Table::Rooms, "", "a", b"1").await.unwrap());
            assert!(!store.put_new(Table::Rooms, "", "a", b"2").await.unwrap());
            assert!(store.advance(Table::Reads, "r", "u", 5).await.unwrap());
            assert!(!store.advance(Table::Reads, "r", "u", 4).await.unwrap());
            assert_eq!(
                store.get(Table::Reads, "r", "u").await.unwrap().as_deref(),
                Some(&b"5"[..])
            );
            store.add_reply("r", 3, 9).await.unwrap();
            store.add_reply("r", 3, 7).await.unwrap();
            assert_eq!(
                store.claim("k", Duration::from_secs(10)).await.unwrap(),
                Claim::Fresh
            );
            store
                .settle("k", 42, Duration::from_secs(60))
                .await
                .unwrap();
        }
        let store = Store::open_embedded(dir.path()).unwrap();
        assert_eq!(
            store.get(Table::Rooms, "", "a").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            store.get(Table::Reads, "r", "u").await.unwrap().as_deref(),
            Some(&b"5"[..])
        );
        assert_eq!(store.replies("r", 3, 10).await.unwrap(), vec![7, 9]);
        assert_eq!(store.replies("r", 3, 1).await.unwrap(), vec![9]);
        store.evict_threads("r", 4).await.unwrap();
        assert!(store.replies("r", 3, 10).await.unwrap().is_empty());
        assert_eq!(
            store.claim("k", Duration::from_secs(10)).await.unwrap(),
            Claim::Saved(42)
        );
    }

    #[tokio::test]
    async fn a_corrupt_number_is_counted_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path()).unwrap();
        store.put(Table::Reads, "r", "u", b"garbage").await.unwrap();
        assert!(store.advance(Table::Reads, "r", "u", 3).await.unwrap());
        assert_eq!(store.corrupt(), 1);
        store.put(Table::ClientIds, "", "k", b"\xff").await.unwrap();
        assert_eq!(
            store.claim("k", Duration::from_secs(1)).await.unwrap(),
            Claim::Fresh
        );
        assert_eq!(store.corrupt(), 2);
    }

    /// Every async embedded call that waits for the disk (its own commit,
    /// or the batch writer's) does so on the blocking pool, never on the
    /// runtime's thread, where it would stop every socket task of a hub
    /// of one worker.
    #[tokio::test(flavor = "current_thread")]
    async fn embedded_commits_wait_off_the_runtime_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path()).unwrap();
        let Backend::Embedded(db) = &store.backend else {
            unreachable!()
        };
        let here = std::thread::current().id();
        let mut seen = 0;
        let mut check = |what: &str| {
            let waited = db.waited_on.lock().clone();
            assert!(waited.len() > seen, "{what} did not wait for the disk");
            assert!(
                waited[seen..].iter().all(|t| *t != here),
                "{what} waited for the disk on the runtime's thread"
            );
            seen = waited.len();
        };
        store.put(Table::Rooms, "", "a", b"1").await.unwrap();
        check("put");
        assert!(store.put_new(Table::Rooms, "", "b", b"1").await.unwrap());
        check("put_new");
        assert!(store
            .swap(Table::Rooms, "", "b", b"1", Some(b"2"))
            .await
            .unwrap());
        check("swap");
        store
            .put_capped(Table::Bans, "r", "u", b"0,1", 10)
            .await
            .unwrap();
        check("put_capped");
        store.remove(Table::Rooms, "", "a").await.unwrap();
        check("remove");
        store.drop_group(Table::Bans, "r").await.unwrap();
        check("drop_group");
        store.add_reply("r", 3, 7).await.unwrap();
        store.evict_threads("r", u64::MAX).await.unwrap();
        check("evict_threads of a deleted room");
        assert!(store.advance(Table::Reads, "r", "u", 5).await.unwrap());
        store.flush_async().await.unwrap();
        check("flush_async");
        // What they wrote is there.
        assert_eq!(store.get(Table::Rooms, "", "a").await.unwrap(), None);
        assert_eq!(
            store.get(Table::Rooms, "", "b").await.unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(store.count(Table::Bans, "r").await.unwrap(), 0);
        assert!(store.replies("r", 3, 10).await.unwrap().is_empty());
    }
}
