//! The server: one TCP listener for WebSockets and HTTP, the shared
//! [`AppState`], and [`run`], the entry that `main` and the tests call.
//!
//! Each accepted socket gets one task. It peeks at the request line: a
//! `GET` on `/chat/`, `/presence` or `/dm/` is upgraded right there by
//! tokio-tungstenite (small buffers, no HTTP server state kept per socket);
//! anything else is handed to the axum router (`http.rs` and
//! `features::routes()`), served by hyper.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use channelbox::{CloseReason, Connection, Hub};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::auth::{self, Auth, Claims};
use crate::{chat, dm, features, frames, http, presence};

/// Everything the hub is configured with (the CLI fills it; tests use
/// `Config::default()` and change what they test).
#[derive(Debug, Clone)]
pub struct Config {
    /// HS256 secret; `None` = demo mode (random secret, guest login on).
    pub jwt_secret: Option<String>,
    /// Guest login with a configured secret.
    pub allow_guest: bool,
    /// Largest WebSocket message a client may send (close 1009 above).
    pub max_frame_bytes: usize,
    /// Inbound frames per second per connection (0 = no limit).
    pub messages_per_second: u32,
    /// Inbound burst allowed above the rate.
    pub burst: u32,
    /// Largest upload (`POST /files`, an extension).
    pub max_file_bytes: usize,
    /// A connection's outbound queue; a socket this far behind is closed 4008.
    pub queue_max_bytes: usize,
    /// Most messages queued per connection.
    pub queue_max_messages: usize,
    /// Messages kept per room (0 = no count bound).
    pub history_max_messages: usize,
    /// Bytes kept per room's history.
    pub history_max_bytes: usize,
    /// Age after which history is dropped (0 = never).
    pub history_ttl_seconds: u64,
    /// Messages in the `history` frame a joiner gets.
    pub history_replay: usize,
    /// Most messages a `?since=` recovery replays before giving up.
    pub recovery_max: usize,
    /// tungstenite's read buffer per socket: small, so idle sockets are cheap.
    pub read_buffer_bytes: usize,
    /// Most queued frames written per socket write.
    pub write_batch: usize,
    /// Where uploads (`POST /files`) are stored.
    pub data_dir: std::path::PathBuf,
    /// Redis shared with other hubs (the core's Redis engine); `None` = alone.
    pub redis_url: Option<String>,
    /// This hub's node name on Redis (`None` = generated).
    pub node_name: Option<String>,
    /// With Redis: users of a hub that dies go offline within this time.
    pub presence_ttl_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            jwt_secret: None,
            allow_guest: false,
            max_frame_bytes: 64 * 1024,
            messages_per_second: 50,
            burst: 100,
            max_file_bytes: 10 << 20,
            queue_max_bytes: 1 << 20,
            queue_max_messages: 10_000,
            history_max_messages: 10_000,
            history_max_bytes: 1 << 20,
            history_ttl_seconds: 0,
            history_replay: 50,
            recovery_max: 10_000,
            read_buffer_bytes: 256,
            write_batch: 256,
            data_dir: "channelbox-data".into(),
            redis_url: None,
            node_name: None,
            presence_ttl_seconds: channelbox::Config::default().presence_ttl_seconds,
        }
    }
}

/// Which endpoint a WebSocket session speaks.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `/chat/{room}`; `group` is the core group of the room.
    Chat { room: Arc<str>, group: Arc<str> },
    /// `/presence`.
    Presence,
    /// `/dm/{peer}`: sends go to `peer` (a user id).
    Dm { peer: Arc<str> },
}

/// One WebSocket session as handlers and extensions see it.
pub struct Session {
    /// The hub-wide state.
    pub state: Arc<AppState>,
    /// Who is connected (from the token).
    pub claims: Arc<Claims>,
    /// Which endpoint, with its room or peer.
    pub endpoint: Endpoint,
    /// The core connection: its queue is what this socket's writer drains.
    pub conn: Connection,
    /// `?since=`: the last message id the client has (recovery).
    pub since: Option<u64>,
    /// `?epoch=`: the history epoch `since` belongs to.
    pub epoch: Option<u64>,
}

impl Session {
    /// The room id, for `/chat/{room}` sessions.
    pub fn room(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Chat { room, .. } => Some(room),
            _ => None,
        }
    }

    /// The room's core group (`room:<id>`), for `/chat/{room}` sessions.
    pub fn room_group(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Chat { group, .. } => Some(group),
            _ => None,
        }
    }

    /// Sends a frame to this socket only (through its queue, so it keeps
    /// its place among room frames).
    pub fn send(&self, frame: bytes::Bytes) {
        let _ = self
            .state
            .hub
            .conn_send(self.conn.id(), channelbox::Kind::Json, frame);
    }

    /// Sends any serializable frame to this socket only.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, frame: &T) {
        self.send(frames::encode(frame));
    }

    /// Sends `{"type":"error","code","detail"}` to this socket.
    pub fn send_error(&self, code: &str, detail: &str) {
        self.send(frames::error(code, detail));
    }

    /// Closes this socket with a WebSocket close code (e.g. 4003).
    pub fn close(&self, code: u16, reason: &str) {
        self.state.close_connection(self.conn.id(), code, reason);
    }
}

/// What the registry keeps per open WebSocket, so moderation can find a
/// user's sockets.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub sub: Arc<str>,
    pub endpoint: Endpoint,
}

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
}

/// State shared by every task.
pub struct AppState {
    /// The channelbox core: groups, queues, history, presence.
    pub hub: Hub,
    /// Limits and history settings.
    pub config: Config,
    /// Token checks and guest tokens.
    pub auth: Auth,
    /// State owned by the extensions (`features.rs`).
    pub features: features::FeatureState,
    /// Who is on `/presence`, with how many sockets and which status.
    pub presence: presence::Registry,
    /// Orders a DM pair's save and delivery against a joiner's replay.
    pub dm_locks: [Mutex<()>; 16],
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
}

impl AppState {
    /// Builds the state and the core hub from `config`.
    pub fn new(config: Config) -> anyhow::Result<Arc<AppState>> {
        let mut core = channelbox::Config {
            history_max_messages: config.history_max_messages,
            history_max_bytes: config.history_max_bytes,
            history_ttl_seconds: config.history_ttl_seconds,
            queue_max_messages: config.queue_max_messages,
            queue_max_bytes: config.queue_max_bytes,
            slow_consumer: channelbox::SlowConsumer::Disconnect,
            // Frames the hub builds wrap client text (plus a history frame
            // of up to `recovery_max` entries, which is sent directly).
            max_payload_bytes: config.max_frame_bytes.saturating_mul(2).max(1 << 20),
            ..channelbox::Config::default()
        };
        if let Some(url) = &config.redis_url {
            core.engine = channelbox::EngineKind::Redis;
            core.redis_url = url.clone();
            core.node_name = config.node_name.clone().unwrap_or_default();
            core.presence_ttl_seconds = config.presence_ttl_seconds;
        }
        let hub = Hub::new(core)?;
        let demo_secret = config.jwt_secret.is_none().then(Auth::random_secret);
        let secret = config.jwt_secret.clone().or_else(|| demo_secret.clone());
        let allow_guest = config.allow_guest || demo_secret.is_some();
        let auth = Auth::new(secret.unwrap_or_default().as_bytes(), allow_guest);
        Ok(Arc::new(AppState {
            hub,
            auth,
            features: features::FeatureState::default(),
            presence: presence::Registry::default(),
            dm_locks: std::array::from_fn(|_| Mutex::new(())),
            registry: std::array::from_fn(|_| Mutex::default()),
            counters: Counters::default(),
            shutting_down: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            drained: Notify::new(),
            started: std::time::Instant::now(),
            demo_secret,
            config,
        }))
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

    /// Every open session of user `sub`: (core connection id, endpoint).
    pub fn sessions_of(&self, sub: &str) -> Vec<(u64, Endpoint)> {
        let mut out = Vec::new();
        for shard in &self.registry {
            for (id, info) in shard.lock().iter() {
                if &*info.sub == sub {
                    out.push((*id, info.endpoint.clone()));
                }
            }
        }
        out
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

    fn register(&self, id: u64, info: SessionInfo) {
        self.registry[id as usize % REGISTRY_SHARDS]
            .lock()
            .insert(id, info);
    }

    fn unregister(&self, id: u64) {
        self.registry[id as usize % REGISTRY_SHARDS]
            .lock()
            .remove(&id);
    }

    fn live_guard(self: &Arc<Self>) -> LiveGuard {
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

/// Counts a socket task as live until dropped.
struct LiveGuard(Arc<AppState>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
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
    if let Some(secret) = &state.demo_secret {
        tracing::warn!(
            %secret,
            "demo mode: no --jwt-secret given, so tokens are signed with this random secret and POST /auth/guest is open"
        );
    }
    tracing::info!(%addr, "channelbox hub listening");

    // HTTP requests go to axum through a channel-backed listener.
    let (http_tx, http_rx) = mpsc::channel::<(TcpStream, SocketAddr)>(1024);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let router = http::router(state.clone());
    let mut stop_http = stop_rx.clone();
    let http_task = tokio::spawn(async move {
        let serve = axum::serve(HandedOff { rx: http_rx, addr }, router).with_graceful_shutdown(
            async move {
                let _ = stop_http.wait_for(|s| *s).await;
            },
        );
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "http server failed");
        }
    });

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
                    let http_tx = http_tx.clone();
                    let guard = state.live_guard();
                    tokio::spawn(async move {
                        let _guard = guard;
                        route(state, stream, peer, http_tx).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }

    tracing::info!("shutting down: closing every WebSocket with 1001");
    drop(listener);
    state.shutting_down.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    state.hub.close_all();
    let drained = state.wait_drained(Duration::from_secs(5)).await;
    drop(http_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    tracing::info!(drained, "hub stopped");
    Ok(())
}

/// The listener axum serves: sockets the router task handed over.
struct HandedOff {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for HandedOff {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(pair) => pair,
            // Shutting down: graceful shutdown stops accepting first.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A WebSocket route, from the request line.
#[derive(Debug, PartialEq, Eq)]
enum WsKind {
    Chat,
    Presence,
    Dm,
}

/// Longest wait for a complete request line before giving the socket to
/// axum anyway.
const PEEK_TRIES: u32 = 50;

/// Sends a socket to the WebSocket path or to axum, by its request line.
async fn route(
    state: Arc<AppState>,
    stream: TcpStream,
    peer: SocketAddr,
    http_tx: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    let _ = stream.set_nodelay(true);
    // Every large, short-lived step is boxed and every temporary scoped, so
    // the task's future (held for the socket's whole life) is little more
    // than the session's.
    // Boxed futures are made in their own statement: a temporary of the
    // awaiting statement would keep its (unboxed) size in this future.
    let peek = Box::pin(peek_route(&stream));
    let kind = match peek.await {
        Some(kind) => kind,
        None => return,
    };
    let Some(kind) = kind else {
        let send = Box::pin(http_tx.send((stream, peer)));
        let _ = send.await;
        return;
    };
    drop(http_tx);
    let upgrade = Box::pin(handshake(&state, stream, kind));
    let opened = match upgrade.await {
        Some((ws, accepted)) => open_session(state, ws, accepted),
        None => None,
    };
    if let Some((session, socket)) = opened {
        serve_session(session, socket).await;
    }
}

/// Peeks at the request line: `Some(Some(kind))` for a WebSocket route,
/// `Some(None)` for HTTP, `None` when the socket closed or said nothing.
async fn peek_route(stream: &TcpStream) -> Option<Option<WsKind>> {
    let mut head = [0u8; 16];
    for _ in 0..PEEK_TRIES {
        let peeked = tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut head)).await;
        let n = match peeked {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        match ws_kind(&head[..n]) {
            Some(kind) => return Some(kind),
            // Not enough bytes yet to tell.
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    Some(None)
}

/// `Some(Some(kind))` for a WebSocket path, `Some(None)` for anything else,
/// `None` while the bytes so far could still be either.
fn ws_kind(head: &[u8]) -> Option<Option<WsKind>> {
    const ROUTES: [(&[u8], WsKind); 3] = [
        (b"GET /chat/", WsKind::Chat),
        (b"GET /presence", WsKind::Presence),
        (b"GET /dm/", WsKind::Dm),
    ];
    let mut undecided = false;
    for (prefix, kind) in ROUTES {
        let n = head.len().min(prefix.len());
        if head[..n] != prefix[..n] {
            continue;
        }
        if head.len() < prefix.len() {
            undecided = true;
            continue;
        }
        if kind == WsKind::Presence {
            // `/presence` exactly: then a space, `?` or `/`.
            return match head.get(prefix.len()) {
                None => None,
                Some(b' ' | b'?' | b'/') => Some(Some(kind)),
                Some(_) => Some(None),
            };
        }
        return Some(Some(kind));
    }
    if undecided {
        None
    } else {
        Some(None)
    }
}

/// What the handshake callback decided about an upgrade.
pub struct Accepted {
    pub endpoint: Endpoint,
    pub claims: Claims,
    /// `?since=`: the last message id the client has.
    pub since: Option<u64>,
    /// `?epoch=`: the history epoch `since` belongs to.
    pub epoch: Option<u64>,
}

/// The WebSocket settings every socket gets.
fn ws_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_bytes.max(256))
        // The hub writes data frames itself (one write per batch); only
        // control frames go through tungstenite, written at once.
        .write_buffer_size(0)
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes))
}

/// Checks the token and the path, then upgrades; 401/403/404 otherwise.
async fn handshake(
    state: &Arc<AppState>,
    stream: TcpStream,
    kind: WsKind,
) -> Option<(WebSocketStream<TcpStream>, Accepted)> {
    let mut accepted = None;
    // tungstenite's callback type: its error is the HTTP response itself.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match admit(state, request, kind) {
            Ok(a) => {
                accepted = Some(a);
                Ok(response)
            }
            Err((status, detail)) => {
                state
                    .counters
                    .upgrades_refused
                    .fetch_add(1, Ordering::Relaxed);
                let body =
                    serde_json::json!({"error": status.canonical_reason(), "detail": detail});
                let mut refusal = ErrorResponse::new(Some(body.to_string()));
                *refusal.status_mut() = status;
                refusal.headers_mut().insert(
                    "content-type",
                    axum::http::HeaderValue::from_static("application/json"),
                );
                Err(refusal)
            }
        }
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config(&state.config)),
    );
    match tokio::time::timeout(Duration::from_secs(10), upgrade).await {
        Ok(Ok(ws)) => accepted.map(|a| (ws, a)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "websocket handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// The route, the token and the room's admission, from the request.
fn admit(
    state: &AppState,
    request: &Request,
    kind: WsKind,
) -> Result<Accepted, (StatusCode, &'static str)> {
    let uri = request.uri();
    let query = uri.query();
    let claims = state
        .auth
        .verify_request(request.headers(), query)
        .map_err(|auth::Refused(why)| {
            tracing::debug!(%why, path = %uri.path(), "token refused");
            (StatusCode::UNAUTHORIZED, "a valid token is required")
        })?;
    let path = uri.path();
    let tail = |prefix: &str| -> Result<String, (StatusCode, &'static str)> {
        let raw = path.strip_prefix(prefix).unwrap_or("");
        let id = auth::percent_decode(raw).unwrap_or_default();
        if id.is_empty() || id.len() > 128 || id.contains('/') || id.chars().any(char::is_control) {
            return Err((StatusCode::NOT_FOUND, "bad room or user id in the path"));
        }
        Ok(id)
    };
    let endpoint = match kind {
        WsKind::Chat => {
            let room = tail("/chat/")?;
            features::admit(state, &claims, &room)
                .map_err(|status| (status, "you may not join this room"))?;
            Endpoint::Chat {
                group: frames::room_group(&room).into(),
                room: room.into(),
            }
        }
        WsKind::Presence => {
            if path != "/presence" && path != "/presence/" {
                return Err((StatusCode::NOT_FOUND, "no such endpoint"));
            }
            Endpoint::Presence
        }
        WsKind::Dm => Endpoint::Dm {
            peer: tail("/dm/")?.into(),
        },
    };
    let number = |name| {
        query
            .and_then(|q| auth::query_param(q, name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Ok(Accepted {
        endpoint,
        claims,
        since: number("since"),
        epoch: number("epoch"),
    })
}

/// Opens the core connection and registers the session. The socket goes
/// on the heap: the task's future then holds pointers, not the socket, so
/// it stays small for the socket's whole life.
fn open_session(
    state: Arc<AppState>,
    ws: WebSocketStream<TcpStream>,
    accepted: Accepted,
) -> Option<(Box<Session>, Box<crate::socket::Socket>)> {
    let Accepted {
        endpoint,
        claims,
        since,
        epoch,
    } = accepted;
    let conn = match state.hub.open(Some(&claims.sub), None) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not open a hub connection");
            return None;
        }
    };
    let id = conn.id();
    let claims = Arc::new(claims);
    state.register(
        id,
        SessionInfo {
            sub: claims.sub.as_str().into(),
            endpoint: endpoint.clone(),
        },
    );
    state
        .counters
        .sessions_opened
        .fetch_add(1, Ordering::Relaxed);
    let socket = Box::new(crate::socket::Socket::new(ws, conn.clone(), &state.config));
    let session = Box::new(Session {
        state,
        claims,
        endpoint,
        conn,
        since,
        epoch,
    });
    Some((session, socket))
}

/// Runs the session's endpoint, then forgets it.
async fn serve_session(session: Box<Session>, mut socket: Box<crate::socket::Socket>) {
    let session = &*session;
    let state = &session.state;
    tracing::debug!(conn = session.conn.id(), sub = %session.claims.sub, endpoint = ?session.endpoint, "session opened");
    if state.shutting_down.load(Ordering::SeqCst) {
        socket.close(1001, "server shutting down").await;
    } else {
        match session.endpoint {
            Endpoint::Chat { .. } => chat::serve(session, &mut socket).await,
            Endpoint::Presence => presence::serve(session, &mut socket).await,
            Endpoint::Dm { .. } => dm::serve(session, &mut socket).await,
        }
    }
    state.unregister(session.conn.id());
    let _ = session.conn.close();
    tracing::debug!(conn = session.conn.id(), sub = %session.claims.sub, "session closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket's task holds this future for its whole life: keep it
    /// small (idle connections are mostly this and tungstenite's buffers).
    #[tokio::test]
    async fn a_socket_task_is_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let state = AppState::new(Config::default()).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let task = route(state, stream, peer, tx);
        let size = std::mem::size_of_val(&task);
        println!("socket task future: {size} bytes");
        assert!(size <= 768, "socket task future is {size} bytes");
        drop(client);
    }

    #[test]
    fn request_lines_route() {
        assert_eq!(ws_kind(b"GET /chat/a HTTP"), Some(Some(WsKind::Chat)));
        assert_eq!(ws_kind(b"GET /presence HT"), Some(Some(WsKind::Presence)));
        assert_eq!(ws_kind(b"GET /presence?to"), Some(Some(WsKind::Presence)));
        assert_eq!(ws_kind(b"GET /presences H"), Some(None));
        assert_eq!(ws_kind(b"GET /dm/bob HTTP"), Some(Some(WsKind::Dm)));
        assert_eq!(ws_kind(b"GET / HTTP/1.1\r\n"), Some(None));
        assert_eq!(ws_kind(b"POST /auth/guest"), Some(None));
        assert_eq!(ws_kind(b"GET /ch"), None);
        assert_eq!(ws_kind(b"GET /presence"), None);
    }
}
