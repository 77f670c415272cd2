//! The server: one TCP listener for WebSockets and HTTP, the shared
//! [`AppState`], and [`run`], the entry that `main` and the tests call.
//!
//! Each accepted socket gets one task, which `upgrade` routes by its
//! request line: a WebSocket is upgraded right there by tokio-tungstenite
//! (small buffers, no HTTP server state kept per socket); anything else is
//! served by hyper on the same task with the axum router (`http.rs` and
//! `features::routes()`), under the header, body and idle timeouts.
//! Until its request headers are in, a socket counts as pending
//! ([`Pending`]): at most `--max-pending-connections`, the oldest cut
//! first, so stalled sockets cannot take every file descriptor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use channelbox::{CloseReason, Hub};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

use crate::auth::Auth;
use crate::config::Config;
use crate::session::{Endpoint, SessionInfo};
use crate::{features, http, presence, upgrade};

const REGISTRY_SHARDS: usize = 16;

/// Hub-wide counters the core does not keep.
#[derive(Debug, Default)]
pub struct Counters {
    /// Chat messages accepted.
    pub messages: AtomicU64,
    /// Direct messages accepted.
    pub direct_messages: AtomicU64,
    /// WebSocket sessions opened since start.
    pub sessions_opened: AtomicU64,
    /// Upgrades refused (bad token, forbidden room, bad path).
    pub upgrades_refused: AtomicU64,
    /// Sockets closed with 4008 for being too slow.
    pub slow_closes: AtomicU64,
    /// Sockets closed with 4008 for flooding.
    pub rate_limit_closes: AtomicU64,
    /// Pending sockets cut to make room (`--max-pending-connections`).
    pub pending_evictions: AtomicU64,
}

/// State shared by every task.
pub struct AppState {
    /// The channelbox core: groups, queues, history, presence.
    pub hub: Hub,
    /// Limits and history settings.
    pub config: Config,
    /// Token checks and guest tokens.
    pub auth: Auth,
    /// The hub's own state (rooms, bans, receipts, threads, client ids):
    /// `<data dir>/hub.redb`, or Redis with `--redis-url`.
    pub store: Arc<crate::store::Store>,
    /// State owned by the extensions (`features.rs`).
    pub features: features::FeatureState,
    /// Who is on `/presence`, with how many sockets and which status.
    pub presence: presence::Registry,
    /// Orders a DM pair's save and delivery against a joiner's replay.
    pub dm_locks: [tokio::sync::Mutex<()>; 16],
    /// Open WebSocket sessions by core connection id.
    registry: [Mutex<FxHashMap<u64, SessionInfo>>; REGISTRY_SHARDS],
    /// Counters for /stats and /metrics.
    pub counters: Counters,
    /// Set once shutdown began: new sessions close at once with 1001.
    pub shutting_down: AtomicBool,
    /// Sockets being served (handshake included), for a bounded drain.
    live: AtomicUsize,
    /// Signalled when `live` drops to 0.
    drained: Notify,
    /// When the server started, for uptime.
    pub started: std::time::Instant,
    /// The random secret of demo mode (logged once at start).
    pub demo_secret: Option<String>,
    /// Sockets still in their headers or handshake, oldest first.
    pub pending: Pending,
    /// Open WebSockets per user, for `--max-connections-per-user`.
    per_user: Mutex<FxHashMap<Arc<str>, usize>>,
    /// Chat rooms' ids and core group names, one `Arc<str>` each per room
    /// for all its sockets (see [`AppState::room_names`]).
    room_names: Mutex<RoomNames>,
    /// Uploads receiving now, at most `--max-uploads-in-flight`.
    pub uploads: Semaphore,
    /// Set to true when shutdown begins: HTTP connections finish their
    /// request and close.
    pub stop: watch::Sender<bool>,
    /// Signed webhooks to the application backend; `None` when off.
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// tungstenite's settings, shared by every socket (each makes its
    /// state from them whenever the client's bytes come).
    pub(crate) ws_config: Arc<tokio_tungstenite::tungstenite::protocol::WebSocketConfig>,
    /// Every socket's ping clock; `None` when pings are off.
    pub(crate) pings: Option<Arc<PingClock>>,
}

/// One clock for every socket's pings (`--ping-interval`), instead of a
/// timer per socket: a slot per registry shard, each ticking once an
/// interval, the slots spread evenly over it ([`ping_clock`]). A socket's
/// slot is its shard's (its connection id's); at each tick the clock wakes
/// the slot's sockets through their queues (`Hub::wake`), and each pings
/// (`socket::Socket`).
#[derive(Debug, Default)]
pub struct PingClock {
    ticks: [AtomicU32; REGISTRY_SHARDS],
}

impl PingClock {
    /// How many times the slot of connection `id` has ticked.
    pub fn tick(&self, id: u64) -> u32 {
        self.ticks[id as usize % REGISTRY_SHARDS].load(Ordering::Acquire)
    }
}

/// Ticks the ping clock's slots in turn, one every `every` /
/// [`REGISTRY_SHARDS`], and wakes each slot's sockets as it ticks. Ends
/// with the hub's state.
async fn ping_clock(state: Weak<AppState>, every: Duration) {
    let step = (every / REGISTRY_SHARDS as u32).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ids = Vec::new();
    for slot in (0..REGISTRY_SHARDS).cycle() {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let Some(clock) = &state.pings else {
            return;
        };
        clock.ticks[slot].fetch_add(1, Ordering::Release);
        ids.extend(state.registry[slot].lock().keys().copied());
        for id in ids.drain(..) {
            let _ = state.hub.wake(id);
        }
    }
}

impl AppState {
    /// Builds the state and the core hub from `config`.
    pub fn new(config: Config) -> anyhow::Result<Arc<AppState>> {
        // First: a key set or key file that cannot be used stops the start.
        let (auth, demo_secret) = Auth::from_config(&config)?;
        let hub = Hub::new(config.core())?;
        let store = Arc::new(match config.redis_url() {
            Some(url) => {
                let core = config.core();
                crate::store::Store::open_redis(
                    url,
                    &core.redis_key_prefix,
                    Duration::from_millis(core.redis_timeout_ms),
                )?
            }
            None => crate::store::Store::open_embedded(&config.data_dir)?,
        });
        let features = features::FeatureState::new(store.clone());
        let node = config.node_name.as_deref().unwrap_or(&store.node);
        let webhooks = crate::webhooks::Webhooks::from_config(&config, &hub, node)?.map(Arc::new);
        if !store.is_shared() {
            features.rooms.import_rooms_json(&config.data_dir);
        }
        let state = Arc::new(AppState {
            pending: Pending::new(config.max_pending_connections),
            per_user: Mutex::default(),
            room_names: Mutex::default(),
            uploads: Semaphore::new(config.max_uploads_in_flight),
            stop: watch::Sender::new(false),
            hub,
            auth,
            store,
            features,
            presence: presence::Registry::default(),
            dm_locks: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            registry: std::array::from_fn(|_| Mutex::default()),
            counters: Counters::default(),
            shutting_down: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            drained: Notify::new(),
            started: std::time::Instant::now(),
            demo_secret,
            ws_config: Arc::new(upgrade::ws_config(&config)),
            pings: config.ping_interval().map(|_| Arc::default()),
            config,
            webhooks,
        });
        // Sockets other hubs' bans and room changes shut out (Redis).
        let weak = Arc::downgrade(&state);
        state.store.on_close_events(Box::new(move |event| {
            if let Some(state) = weak.upgrade() {
                features::apply_close(&state, &event);
            }
        }));
        Ok(state)
    }

    /// Closes one WebSocket with `code` (4003 forbidden, 4008 too slow, ...).
    /// Its writer sends what was already queued, then the close frame.
    pub fn close_connection(&self, id: u64, code: u16, reason: &str) {
        let reason = CloseReason::Host {
            code: code.into(),
            text: reason.to_owned(),
        };
        let _ = self.hub.disconnect(id, reason);
    }

    /// Open sessions in `room`: (core connection id, user id).
    pub fn room_sessions(&self, room: &str) -> Vec<(u64, Arc<str>)> {
        let mut out = Vec::new();
        for shard in &self.registry {
            for (id, info) in shard.lock().iter() {
                if matches!(&info.endpoint, Endpoint::Chat { room: r, .. } if &**r == room) {
                    out.push((*id, info.sub.clone()));
                }
            }
        }
        out
    }

    /// Core connection ids of every open session of user `sub`, on any
    /// endpoint (the server API's `POST /api/disconnect`).
    pub fn user_sessions(&self, sub: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for shard in &self.registry {
            out.extend(
                shard
                    .lock()
                    .iter()
                    .filter(|(_, info)| &*info.sub == sub)
                    .map(|(id, _)| *id),
            );
        }
        out
    }

    /// True when the open session `id` was opened with an admin token.
    pub fn session_is_admin(&self, id: u64) -> bool {
        self.registry[id as usize % REGISTRY_SHARDS]
            .lock()
            .get(&id)
            .is_some_and(|info| info.admin)
    }

    /// Rooms with at least one open session, with their socket counts.
    pub fn rooms(&self) -> FxHashMap<Arc<str>, usize> {
        let mut out: FxHashMap<Arc<str>, usize> = FxHashMap::default();
        for shard in &self.registry {
            for info in shard.lock().values() {
                if let Endpoint::Chat { room, .. } = &info.endpoint {
                    *out.entry(room.clone()).or_default() += 1;
                }
            }
        }
        out
    }

    /// This node's `/presence` and `/dm` sessions: (core connection id,
    /// user id, opened with an admin token). For unread watchers (issue 15).
    pub fn sessions_outside_rooms(&self) -> Vec<(u64, Arc<str>, bool)> {
        let mut out = Vec::new();
        for shard in &self.registry {
            for (id, info) in shard.lock().iter() {
                if !matches!(info.endpoint, Endpoint::Chat { .. }) {
                    out.push((*id, info.sub.clone(), info.admin));
                }
            }
        }
        out
    }

    /// Core connection ids of this node's `/presence` sessions.
    pub fn presence_sessions(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for shard in &self.registry {
            for (id, info) in shard.lock().iter() {
                if matches!(info.endpoint, Endpoint::Presence) {
                    out.push(*id);
                }
            }
        }
        out
    }

    /// Open WebSocket sessions per endpoint: (chat, presence, dm).
    pub fn session_counts(&self) -> (usize, usize, usize) {
        let (mut c, mut p, mut d) = (0, 0, 0);
        for shard in &self.registry {
            for info in shard.lock().values() {
                match info.endpoint {
                    Endpoint::Chat { .. } => c += 1,
                    Endpoint::Presence => p += 1,
                    Endpoint::Dm { .. } => d += 1,
                }
            }
        }
        (c, p, d)
    }

    /// Remembers an open session (moderation finds sockets here).
    pub(crate) fn register(&self, id: u64, info: SessionInfo) {
        self.registry[id as usize % REGISTRY_SHARDS]
            .lock()
            .insert(id, info);
    }

    /// Forgets a closed session.
    pub(crate) fn unregister(&self, id: u64) {
        self.registry[id as usize % REGISTRY_SHARDS]
            .lock()
            .remove(&id);
    }

    /// Takes one of `sub`'s WebSocket slots; `None` when the user already
    /// holds `--max-connections-per-user`.
    pub(crate) fn user_slot(self: &Arc<Self>, sub: &str) -> Option<UserSlot> {
        let cap = self.config.max_connections_per_user;
        let mut per_user = self.per_user.lock();
        let key: Arc<str> = match per_user.get_key_value(sub) {
            Some((k, _)) => k.clone(),
            // The directory saw the user at the admission: its copy.
            None => match self.features.directory.shared_id(sub) {
                Some(id) => id,
                None => sub.into(),
            },
        };
        let n = per_user.entry(key.clone()).or_default();
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            state: self.clone(),
            sub: key,
        })
    }

    /// `room`'s id and core group name (`room:<id>`), the same `Arc<str>`s
    /// as every other socket of the room holds: two allocations a socket
    /// less (issue 14 item 3).
    pub(crate) fn room_names(&self, room: &str) -> (Arc<str>, Arc<str>) {
        self.room_names.lock().get(room)
    }

    pub(crate) fn live_guard(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self.clone())
    }

    /// Waits until every socket task has finished, at most `limit`.
    async fn wait_drained(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.drained.notified();
            if self.live.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.live.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// Rooms' ids and group names as sockets share them.
#[derive(Default)]
struct RoomNames {
    /// Room id -> core group name.
    by_id: FxHashMap<Arc<str>, Arc<str>>,
    /// Rooms kept after the last sweep: the next comes at twice as many
    /// (at least [`RoomNames::SWEEP_FROM`]), so sweeps cost O(1) a room.
    kept: usize,
}

impl RoomNames {
    const SWEEP_FROM: usize = 1024;

    /// `room`'s shared id and group name, made on first use.
    fn get(&mut self, room: &str) -> (Arc<str>, Arc<str>) {
        if let Some((id, group)) = self.by_id.get_key_value(room) {
            return (id.clone(), group.clone());
        }
        self.sweep();
        let id: Arc<str> = room.into();
        let group: Arc<str> = crate::frames::room_group(room).into();
        self.by_id.insert(id.clone(), group.clone());
        (id, group)
    }

    /// Forgets rooms no socket holds any more, when due.
    fn sweep(&mut self) {
        if self.by_id.len() < 2 * self.kept.max(Self::SWEEP_FROM / 2) {
            return;
        }
        // Held by the map alone: no socket has them, and none can take
        // one without this lock.
        self.by_id
            .retain(|id, group| Arc::strong_count(id) > 1 || Arc::strong_count(group) > 1);
        self.kept = self.by_id.len();
    }
}

/// One of a user's WebSocket slots, given back when dropped.
pub(crate) struct UserSlot {
    state: Arc<AppState>,
    sub: Arc<str>,
}

impl UserSlot {
    /// The user id this slot counts.
    pub(crate) fn sub(&self) -> &Arc<str> {
        &self.sub
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut per_user = self.state.per_user.lock();
        if let Some(n) = per_user.get_mut(&self.sub) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.sub);
            }
        }
    }
}

/// Sockets that have not finished their request headers (HTTP) or their
/// handshake (WebSocket), oldest first. Over the cap, a newcomer cuts the
/// oldest: a slow-loris holds at most `cap` descriptors, and fresh
/// requests (`/healthz`, a join) still get in.
pub struct Pending {
    /// `--max-pending-connections` (0 = no cap).
    cap: usize,
    /// Ids in arrival order.
    next: AtomicU64,
    /// Each pending socket's signal to give up.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

impl Pending {
    fn new(cap: usize) -> Pending {
        Pending {
            cap,
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
        }
    }

    /// Registers a socket as pending, cutting the oldest over the cap.
    pub(crate) fn enter(&self) -> PendingSlot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cut = Arc::new(Notify::new());
        let mut waiting = self.waiting.lock();
        if self.cap > 0 && waiting.len() >= self.cap {
            if let Some((_, oldest)) = waiting.pop_first() {
                oldest.notify_one();
            }
        }
        waiting.insert(id, cut.clone());
        PendingSlot { id, cut }
    }

    /// Cuts the oldest pending socket (accept ran out of descriptors).
    fn evict_oldest(&self) -> bool {
        match self.waiting.lock().pop_first() {
            Some((_, oldest)) => {
                oldest.notify_one();
                true
            }
            None => false,
        }
    }

    /// The socket `id` got its request in: it is no longer pending.
    pub(crate) fn admit(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    /// Sockets pending now.
    pub fn len(&self) -> usize {
        self.waiting.lock().len()
    }

    /// True when no socket is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pending socket's place in [`Pending`].
pub(crate) struct PendingSlot {
    pub id: u64,
    cut: Arc<Notify>,
}

impl PendingSlot {
    /// Resolves when a newer socket cut this one.
    pub async fn cut(&self) {
        self.cut.notified().await
    }

    /// Leaves the pending set (the request or handshake is in).
    pub fn admit(&self, state: &AppState) {
        state.pending.admit(self.id);
    }
}

/// Counts a socket task as live until dropped.
pub(crate) struct LiveGuard(Arc<AppState>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Sets `TCP_NODELAY` on the listening socket: on Linux every accepted
/// socket inherits it, so a join costs no `setsockopt` of its own (see
/// `upgrade::accept`, which sets it per socket elsewhere).
pub(crate) fn nodelay(listener: &TcpListener) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, an option of `c_int` size.
        let set = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "TCP_NODELAY on the listener");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = listener;
}

/// Serves on `listener` until `shutdown` resolves, then closes every
/// WebSocket with 1001 (going away) and returns once they are gone (at most
/// a few seconds).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::new(config)?;
    run_with_state(listener, state, shutdown).await
}

/// [`run`] with a state built by the caller (tests look inside it).
pub async fn run_with_state(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    nodelay(&listener);
    if let Some(secret) = &state.demo_secret {
        tracing::warn!(
            %secret,
            "demo mode: no --jwt-secret given, so tokens are signed with this random secret and POST /auth/guest is open"
        );
    }
    tracing::info!(%addr, "channelbox hub listening");

    let router = http::router(state.clone());
    if let Some(webhooks) = &state.webhooks {
        webhooks.start();
    }

    if let Some(every) = state.config.ping_interval() {
        tokio::spawn(ping_clock(Arc::downgrade(&state), every));
    }

    // With Redis: presence across hubs (see `presence::watch`).
    if state.hub.config().engine == channelbox::EngineKind::Redis {
        tokio::spawn(presence::watch(state.clone()));
    }

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let state = state.clone();
                    let router = router.clone();
                    let guard = state.live_guard();
                    // The task is `route`'s future itself, not an `async`
                    // block around it: a block would keep its captures
                    // (the stream, the peer's address, ...) beside the
                    // future they were moved into, for the socket's whole
                    // life (a 640-byte task instead of 512).
                    tokio::spawn(upgrade::route(state, stream, peer, router, guard));
                }
                Err(e) => {
                    // Out of file descriptors and the like: free one held
                    // by a stalled socket if there is one, else wait.
                    tracing::warn!(error = %e, "accept failed");
                    if state.pending.evict_oldest() {
                        state.counters.pending_evictions.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
            _ = &mut shutdown => break,
        }
    }

    tracing::info!("shutting down: closing every WebSocket with 1001");
    drop(listener);
    state.shutting_down.store(true, Ordering::SeqCst);
    state.stop.send_replace(true);
    // Sockets still in their headers or handshake have nothing to finish.
    while state.pending.evict_oldest() {}
    state.hub.close_all();
    let drained = state.wait_drained(Duration::from_secs(5)).await;
    if let Some(webhooks) = &state.webhooks {
        webhooks.shutdown(Duration::from_secs(2)).await;
    }
    tracing::info!(drained, "hub stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sockets of a room share its names; rooms no socket holds are
    /// forgotten once the map has doubled, those still held stay.
    #[test]
    fn room_names_are_shared_and_forgotten_once_no_socket_holds_them() {
        let mut names = RoomNames::default();
        let (id, group) = names.get("lobby");
        let (id2, group2) = names.get("lobby");
        assert!(Arc::ptr_eq(&id, &id2) && Arc::ptr_eq(&group, &group2));
        assert_eq!(&*group, crate::frames::room_group("lobby").as_str());
        for n in 0..RoomNames::SWEEP_FROM - 1 {
            drop(names.get(&format!("gone-{n}")));
        }
        // The next new room sweeps: only "lobby" (held here) and it stay.
        let _late = names.get("late");
        assert_eq!(names.by_id.len(), 2);
        assert!(names.by_id.contains_key("lobby"));
    }
}
