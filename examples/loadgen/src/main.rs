//! channelbox's own loopback WebSocket fan-out load generator.
//!
//! Based on the company's shared benchmark load generator (same flags, same JSON output, same
//! measurement rules), ported to tokio-tungstenite 0.28 and the crate's dev-dependencies, with
//! the BENCHMARKS.md scenarios as presets (`loadgen scenario a|b|c|d|e`) and a markdown
//! `report` of result files. Run it with `cargo run --release --example loadgen -- --help`,
//! or everything against a fresh hub with `scripts/bench-hub.sh`.
//!
//! Modes:
//! * `fanout`: R rooms x N subscribers, one publisher per room sends M messages
//!   (fixed `--rate` or saturation), subscribers count deliveries, detect loss,
//!   duplicates and reordering, and record publisher-send -> subscriber-receive latency.
//! * `idle`: open N idle connections, hold them, report the server's RSS delta per connection.
//!
//! Protocol adapters (`--protocol`): `seed` (the JSON chat protocol), `socketio`
//! (Engine.IO v4 / Socket.IO v5 over a raw websocket), `rawws` (plain text broadcast).
//!
//! Output: exactly one JSON line on stdout; a human-readable table on stderr.
//!
//! Safety rails: only loopback hosts are accepted, every loop is bounded by a count and by
//! the hard `--timeout` (the process exits at `--timeout` + 3 s whatever happens).

mod stats;
mod wire;

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use stats::{cpu_self_s, proc_cpu_split, proc_rss_kb, self_rss_kb, Summary};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

static T0: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since process start (monotonic; shared by publishers and subscribers).
fn now_ns() -> u64 {
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Loopback WebSocket fan-out benchmark for the channelbox hub"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Fan-out: rooms x subscribers, one publisher per room.
    Fanout(FanoutArgs),
    /// Hold N idle connections and measure the server's RSS per connection.
    Idle(IdleArgs),
    /// One of the BENCHMARKS.md scenarios with its preset sizes (a, b, c, d, e).
    Scenario(ScenarioArgs),
    /// Print a markdown table from result files (one JSON line each, as printed on stdout).
    Report(ReportArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ScenarioName {
    /// 1 room x 1000 subscribers, 1 publisher sends 200 messages back to back (saturation).
    A,
    /// 1 room x 1000 subscribers, 100 msg/s for 10 s (1000 messages): latency p50/p99.
    B,
    /// 5000 idle connections in 500 rooms of 10, held 5 s: server RSS per connection.
    C,
    /// 100 rooms x 10 subscribers, 100 publishers at once, 200 messages each (saturation).
    D,
    /// 1 room x 100 subscribers of which the first never reads; a busy room: 250 msg/s of 4 KiB
    /// for 8 s (1 MB/s to each reader, 8 MB offered to the stuck one): every other reader must
    /// get 100%, and the server's RSS must stay bounded.
    E,
}

impl ScenarioName {
    fn letter(self) -> &'static str {
        match self {
            ScenarioName::A => "a",
            ScenarioName::B => "b",
            ScenarioName::C => "c",
            ScenarioName::D => "d",
            ScenarioName::E => "e",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ScenarioName::A => "1 room x 1000 subs, 200 msgs saturated",
            ScenarioName::B => "1 room x 1000 subs, 100 msg/s for 10 s",
            ScenarioName::C => "5000 idle conns in 500 rooms",
            ScenarioName::D => "100 rooms x 10 subs, 100 publishers x 200 msgs",
            ScenarioName::E => "1 room x 100 subs (1 never reads), 250 msg/s x 4 KiB for 8 s",
        }
    }
}

#[derive(Args, Debug, Clone)]
struct ScenarioArgs {
    #[arg(value_enum)]
    name: ScenarioName,
    #[command(flatten)]
    c: Common,
    /// Rounds on the same connections for the fan-out scenarios (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

#[derive(Args, Debug, Clone)]
struct ReportArgs {
    /// Result files (JSON, as printed by fanout/idle/scenario on stdout).
    files: Vec<std::path::PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// JSON chat protocol: /chat/{room}, {"message":..} in, {"type":"message","content":..} out.
    Seed,
    /// Engine.IO v4 / Socket.IO v5 over websocket; room from the handshake query; "chat" events.
    Socketio,
    /// Plain text: every text frame is broadcast as-is to the room.
    Rawws,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    /// `Authorization: Bearer <jwt>` header.
    Header,
    /// `?token=<jwt>` query parameter.
    Query,
    /// Both header and query parameter.
    Both,
    /// No token at all.
    None,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Ready {
    /// seed: history frame; socketio: Socket.IO CONNECT ack; rawws: first frame.
    Auto,
    /// As soon as the websocket upgrade completes (and, for socketio, the CONNECT ack).
    Connect,
    /// First frame of any kind.
    FirstFrame,
    /// A frame whose "type" is "history".
    History,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Base URL, e.g. ws://127.0.0.1:8000 (loopback hosts only).
    #[arg(long, default_value = "ws://127.0.0.1:8000")]
    url: String,
    #[arg(long, value_enum, default_value_t = Protocol::Seed)]
    protocol: Protocol,
    /// Path+query template appended to --url; {room} and {user} are substituted.
    /// Defaults: seed "/chat/{room}", socketio
    /// "/socket.io/?EIO=4&transport=websocket&room={room}&user={user}", rawws "/raw/{room}?user={user}".
    #[arg(long)]
    path: Option<String>,
    /// Fixed JWT sent by every connection.
    #[arg(long)]
    token: Option<String>,
    /// HS256 secret: mint a JWT per user (claims sub, username, exp=now+1h).
    #[arg(long)]
    jwt_secret: Option<String>,
    /// How the token is sent (ignored when no token/secret is given).
    #[arg(long, value_enum, default_value_t = AuthMode::Header)]
    auth: AuthMode,
    /// When a connection counts as joined.
    #[arg(long, value_enum, default_value_t = Ready::Auto)]
    ready: Ready,
    /// Connections opened concurrently per batch.
    #[arg(long, default_value_t = 100)]
    connect_batch: usize,
    /// Pause between connect batches (ms).
    #[arg(long, default_value_t = 20)]
    connect_pause_ms: u64,
    /// Per-connection limit for connect + join (ms).
    #[arg(long, default_value_t = 15000)]
    connect_timeout_ms: u64,
    /// Hard limit for the whole run (s); the process exits after it no matter what.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Server PID: its CPU time and VmRSS are sampled from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Free-form label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
    /// Room name prefix (default: "bench-<runid>-").
    #[arg(long)]
    room_prefix: Option<String>,
    /// Only print the JSON line (no table on stderr).
    #[arg(long)]
    quiet: bool,
    /// Tokio worker threads (the load generator shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args, Debug, Clone)]
struct FanoutArgs {
    #[command(flatten)]
    c: Common,
    /// Number of rooms (one publisher each).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Subscribers per room.
    #[arg(long, default_value_t = 100)]
    subs: usize,
    /// Messages per publisher per round.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Publish rate per publisher (msg/s); omit for saturation.
    #[arg(long)]
    rate: Option<f64>,
    /// Rounds on the same connections (median reported).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Extra bytes of padding in each message body.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// Pause after everyone joined, and between rounds (ms).
    #[arg(long, default_value_t = 500)]
    settle_ms: u64,
    /// End a round early when no delivery arrived for this long after publishing ended (ms).
    #[arg(long, default_value_t = 3000)]
    quiet_ms: u64,
    /// Subscribers that join and then never read (the first K of each room): a slow-consumer
    /// test. They are not counted in `expected`; the others show whether the server lets one
    /// stuck socket hold up the room.
    #[arg(long, default_value_t = 0)]
    slow_subs: usize,
    /// End a round at the latest this long after its publishers finished (ms); whatever has not
    /// arrived by then counts as lost ("undelivered within the drain window").
    #[arg(long, default_value_t = 20000)]
    drain_ms: u64,
}

#[derive(Args, Debug, Clone)]
struct IdleArgs {
    #[command(flatten)]
    c: Common,
    /// Number of idle connections.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Spread connections over this many rooms (round-robin).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Hold time after all connections joined (s).
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
}

// ---------------------------------------------------------------- connections

struct Target {
    base: String,
    path: String,
    protocol: Protocol,
    token: Option<String>,
    jwt_secret: Option<String>,
    auth: AuthMode,
    ready: Ready,
}

impl Target {
    fn new(c: &Common) -> Result<Target, String> {
        check_loopback(&c.url)?;
        let path = c.path.clone().unwrap_or_else(|| {
            match c.protocol {
                Protocol::Seed => "/chat/{room}",
                Protocol::Socketio => {
                    "/socket.io/?EIO=4&transport=websocket&room={room}&user={user}"
                }
                Protocol::Rawws => "/raw/{room}?user={user}",
            }
            .to_string()
        });
        Ok(Target {
            base: c.url.trim_end_matches('/').to_string(),
            path,
            protocol: c.protocol,
            token: c.token.clone(),
            jwt_secret: c.jwt_secret.clone(),
            auth: c.auth,
            ready: c.ready,
        })
    }

    fn token_for(&self, user: &str) -> Option<String> {
        if let Some(t) = &self.token {
            return Some(t.clone());
        }
        self.jwt_secret.as_ref().map(|s| wire::mint_jwt(s, user))
    }

    async fn connect(&self, room: &str, user: &str) -> Result<Ws, String> {
        let mut url = format!(
            "{}{}",
            self.base,
            self.path.replace("{room}", room).replace("{user}", user)
        );
        let token = if self.auth == AuthMode::None {
            None
        } else {
            self.token_for(user)
        };
        if let (Some(t), AuthMode::Query | AuthMode::Both) = (&token, self.auth) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("token=");
            url.push_str(t);
        }
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad url {url}: {e}"))?;
        if let (Some(t), AuthMode::Header | AuthMode::Both) = (&token, self.auth) {
            let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())?;
            req.headers_mut().insert("Authorization", v);
        }
        // Small read buffer: tungstenite zero-fills it on every read (the 128 KiB default costs CPU per frame) and it dominates client memory at 5000 conns.
        let cfg = WebSocketConfig::default()
            .read_buffer_size(4 << 10)
            .write_buffer_size(0);
        let (mut ws, _resp) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        self.join(&mut ws).await?;
        Ok(ws)
    }

    /// Protocol handshake plus the readiness condition: on return the connection is in its room.
    async fn join(&self, ws: &mut Ws) -> Result<(), String> {
        let mut sio_connected = self.protocol != Protocol::Socketio;
        if sio_connected && self.effective_ready() == Ready::Connect {
            return Ok(());
        }
        while let Some(frame) = ws.next().await {
            let frame = frame.map_err(|e| format!("join: {e}"))?;
            let text = match &frame {
                Message::Text(t) => t.as_str(),
                Message::Close(c) => return Err(format!("closed during join: {c:?}")),
                _ => continue,
            };
            if self.protocol == Protocol::Socketio {
                if text.starts_with('0') {
                    ws.send(Message::text("40"))
                        .await
                        .map_err(|e| format!("sio connect: {e}"))?;
                    continue;
                }
                if text == "2" {
                    ws.send(Message::text("3"))
                        .await
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                if text.starts_with("44") {
                    return Err(format!("socket.io connect refused: {text}"));
                }
                if text.starts_with("40") {
                    sio_connected = true;
                    if matches!(self.effective_ready(), Ready::Connect) {
                        return Ok(());
                    }
                    continue;
                }
            }
            if !sio_connected {
                continue;
            }
            match self.effective_ready() {
                Ready::FirstFrame | Ready::Connect | Ready::Auto => return Ok(()),
                Ready::History => {
                    if wire::is_history(text.as_bytes()) {
                        return Ok(());
                    }
                }
            }
        }
        Err("connection ended during join".into())
    }

    fn effective_ready(&self) -> Ready {
        match (self.ready, self.protocol) {
            (Ready::Auto, Protocol::Seed) => Ready::History,
            (Ready::Auto, Protocol::Socketio) => Ready::Connect,
            (Ready::Auto, Protocol::Rawws) => Ready::FirstFrame,
            (r, _) => r,
        }
    }
}

fn check_loopback(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("refusing a URL with user info: {url}"));
    }
    let host = if authority.starts_with('[') {
        authority
            .split(']')
            .next()
            .unwrap_or("")
            .trim_start_matches('[')
            .to_string()
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    let ok = host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.is_loopback())
            .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "refusing non-loopback host {host:?}: this harness targets 127.0.0.0/8 / ::1 only"
        ))
    }
}

/// Open `jobs` connections in batches of `batch`, pausing between batches.
/// `spawn` is called with the job index and must report (via the returned oneshot) when joined.
async fn connect_in_batches<F>(
    jobs: usize,
    batch: usize,
    pause: Duration,
    deadline: Instant,
    mut spawn: F,
) -> (usize, Vec<String>)
where
    F: FnMut(usize) -> oneshot::Receiver<Result<(), String>>,
{
    let mut ok = 0usize;
    let mut errors: Vec<String> = Vec::new();
    let mut i = 0usize;
    while i < jobs {
        if Instant::now() >= deadline {
            errors.push(format!(
                "connect phase hit the deadline after {i} of {jobs}"
            ));
            break;
        }
        let end = (i + batch.max(1)).min(jobs);
        let waits: Vec<_> = (i..end).map(&mut spawn).collect();
        for w in waits {
            match w.await {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push("connection task died".into()),
            }
        }
        i = end;
        if i < jobs && !pause.is_zero() {
            sleep(pause).await;
        }
    }
    (ok, errors)
}

// ---------------------------------------------------------------- fanout

#[derive(Clone, Copy)]
struct RoundMeta {
    wall_s: f64,
    round_s: f64,
    publish_s: f64,
    loadgen_cpu: f64,
    drained_out: bool,
    server_cpu: Option<f64>,
    server_sys: Option<f64>,
    timed_out: bool,
    delivered_at_end: u64,
}

struct RoundShared {
    delivered: AtomicU64,
    last_recv_ns: AtomicU64,
    first_send_ns: AtomicU64,
    last_send_ns: AtomicU64,
}

struct Shared {
    run_id: u32,
    messages: usize,
    rounds: Vec<RoundShared>,
    errors: Mutex<Vec<String>>,
    alive_subs: AtomicUsize,
    /// How each stuck reader ended: "closed 4008 ...", "still open", ...
    slow_outcomes: Mutex<Vec<String>>,
    /// Joined subscribers per room, and whether the room's publisher joined.
    room_subs: Vec<AtomicUsize>,
    room_pub: Vec<AtomicUsize>,
}

/// Per-subscriber, per-round bookkeeping.
#[derive(Default, Clone)]
struct SubRound {
    seen: Vec<u64>, // bitset over seq
    distinct: u64,
    dup: u64,
    ooo: u64,
    max_seq: i64,
    lat_us: Vec<u32>,
}

impl SubRound {
    fn new(m: usize) -> Self {
        SubRound {
            seen: vec![0; m.div_ceil(64)],
            max_seq: -1,
            lat_us: Vec::with_capacity(m),
            ..Default::default()
        }
    }
}

/// One connection of a fan-out run: where it connects, as whom, and what stops it.
struct Member {
    target: Arc<Target>,
    shared: Arc<Shared>,
    room_idx: usize,
    room: String,
    user: String,
    connect_timeout: Duration,
    stop: watch::Receiver<bool>,
}

impl Member {
    /// Connect and join within the connect timeout; a failure names the user.
    async fn open(&self) -> Result<Ws, String> {
        match timeout(
            self.connect_timeout,
            self.target.connect(&self.room, &self.user),
        )
        .await
        {
            Ok(Ok(ws)) => Ok(ws),
            Ok(Err(e)) => Err(format!("{}: {e}", self.user)),
            Err(_) => Err(format!("{}: connect/join timed out", self.user)),
        }
    }
}

async fn subscriber(
    member: Member,
    ready: oneshot::Sender<Result<(), String>>,
    slow: bool,
) -> Option<Vec<SubRound>> {
    let ws = match member.open().await {
        Ok(ws) => ws,
        Err(e) => {
            let _ = ready.send(Err(e));
            return None;
        }
    };
    let Member {
        target,
        shared,
        room_idx,
        user,
        mut stop,
        ..
    } = member;
    shared.alive_subs.fetch_add(1, Ordering::Relaxed);
    if slow {
        // Joined, then never read again: the server's writes to it back up.
        let _ = ready.send(Ok(()));
        let _ = stop.changed().await;
        // Now read what the server left for it (bounded: 2 s) to see how the server treated it:
        // closed it (and with which code), reset it, or kept it open (everything buffered).
        let mut ws = ws;
        let t_end = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut frames = 0u64;
        let mut bytes = 0u64;
        let outcome = loop {
            match tokio::time::timeout_at(t_end, ws.next()).await {
                Err(_) => break "still open".to_string(),
                Ok(None) => break "closed without a close frame".to_string(),
                Ok(Some(Err(e))) => break describe_ws_error(&e),
                Ok(Some(Ok(Message::Close(c)))) => break describe_close(c.as_ref()),
                Ok(Some(Ok(m))) => {
                    frames += 1;
                    bytes += m.len() as u64;
                }
            }
        };
        shared.slow_outcomes.lock().unwrap().push(format!(
            "{outcome} (after {frames} frames, {bytes} bytes left for it to read)"
        ));
        let _ = timeout(Duration::from_millis(100), ws.close(None)).await;
        return None;
    }
    shared.room_subs[room_idx].fetch_add(1, Ordering::Relaxed);
    let _ = ready.send(Ok(()));
    let m = shared.messages;
    let mut rounds: Vec<SubRound> = (0..shared.rounds.len()).map(|_| SubRound::new(m)).collect();
    let marker = wire::marker_prefix(shared.run_id);
    let marker = marker.as_bytes();
    let is_sio = target.protocol == Protocol::Socketio;
    let mut ws = ws;
    // One stop future for the whole loop: re-creating it per frame costs a Notify registration.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            frame = ws.next() => {
                let now = now_ns();
                let frame = match frame {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => { shared.errors.lock().unwrap().push(format!("{user}: {}", describe_ws_error(&e))); break; }
                    None => { shared.errors.lock().unwrap().push(format!("{user}: server closed")); break; }
                };
                let bytes: &[u8] = match &frame {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    Message::Close(c) => { shared.errors.lock().unwrap().push(format!("{user}: {}", describe_close(c.as_ref()))); break; }
                    _ => continue,
                };
                if is_sio && bytes == b"2" {
                    if ws.send(Message::text("3")).await.is_err() { break; }
                    continue;
                }
                let Some(pos) = wire::find(bytes, marker) else { continue };
                if wire::is_history(bytes) { continue; }
                let Some(mk) = wire::parse_marker(&bytes[pos + marker.len()..]) else { continue };
                if mk.round >= rounds.len() || mk.seq >= m { continue; }
                let r = &mut rounds[mk.round];
                let (w, b) = (mk.seq / 64, mk.seq % 64);
                if r.seen[w] & (1 << b) != 0 { r.dup += 1; continue; }
                r.seen[w] |= 1 << b;
                r.distinct += 1;
                if (mk.seq as i64) < r.max_seq { r.ooo += 1; } else { r.max_seq = mk.seq as i64; }
                r.lat_us.push((now.saturating_sub(mk.sent_ns) / 1000).min(u32::MAX as u64) as u32);
                let rs = &shared.rounds[mk.round];
                rs.delivered.fetch_add(1, Ordering::Relaxed);
                rs.last_recv_ns.fetch_max(now, Ordering::Relaxed);
            }
            _ = &mut stopped => break,
        }
    }
    let _ = timeout(Duration::from_millis(200), ws.close(None)).await;
    Some(rounds)
}

enum PubCmd {
    Round(usize),
}

async fn publisher(
    member: Member,
    ready: oneshot::Sender<Result<(), String>>,
    mut cmds: mpsc::Receiver<PubCmd>,
    done: mpsc::Sender<(usize, Result<(), String>)>,
    rate: Option<f64>,
    payload_bytes: usize,
) {
    let ws = match member.open().await {
        Ok(ws) => ws,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let Member {
        target,
        shared,
        room_idx,
        user,
        mut stop,
        ..
    } = member;
    shared.room_pub[room_idx].store(1, Ordering::Relaxed);
    let _ = ready.send(Ok(()));
    let (sink, mut stream) = ws.split();
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    // Drain everything the server sends back to the publisher (its own broadcasts, pings).
    let drain_sink = sink.clone();
    let is_sio = target.protocol == Protocol::Socketio;
    let drain = tokio::spawn(async move {
        while let Some(Ok(f)) = stream.next().await {
            if is_sio {
                if let Message::Text(t) = &f {
                    if t.as_str() == "2" {
                        let _ = drain_sink.lock().await.send(Message::text("3")).await;
                    }
                }
            }
        }
    });
    let pad = "x".repeat(payload_bytes);
    let m = shared.messages;
    loop {
        let cmd = tokio::select! {
            c = cmds.recv() => c,
            _ = stop.changed() => None,
        };
        let Some(PubCmd::Round(round)) = cmd else {
            break;
        };
        let rs = &shared.rounds[round];
        let start = tokio::time::Instant::now();
        let mut result = Ok(());
        for seq in 0..m {
            if let Some(r) = rate {
                sleep_until(start + Duration::from_secs_f64(seq as f64 / r)).await;
            }
            let t = now_ns();
            rs.first_send_ns.fetch_min(t, Ordering::Relaxed);
            let body = wire::body(shared.run_id, round, seq, t, &pad);
            let frame = match target.protocol {
                Protocol::Seed => json!({ "message": body }).to_string(),
                Protocol::Socketio => format!("42{}", json!(["chat", { "message": body }])),
                Protocol::Rawws => body,
            };
            if let Err(e) = sink.lock().await.send(Message::text(frame)).await {
                result = Err(format!("{user}: send seq {seq}: {e}"));
                break;
            }
        }
        rs.last_send_ns.fetch_max(now_ns(), Ordering::Relaxed);
        let _ = done.send((round, result)).await;
    }
    let _ = timeout(Duration::from_millis(200), async {
        sink.lock().await.close().await
    })
    .await;
    drain.abort();
}

async fn run_fanout(a: FanoutArgs) -> Value {
    let c = &a.c;
    let threads = c.threads.max(1);
    let target = match Target::new(c) {
        Ok(t) => Arc::new(t),
        Err(e) => return json!({ "mode": "fanout", "error": e }),
    };
    let (hard_deadline, end_deadline) = deadlines(c.timeout);
    let run_id: u32 = wire::random_u32();
    let prefix = c
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{run_id:08x}-"));
    let repeat = a.repeat.max(1);
    let shared = Arc::new(Shared {
        run_id,
        messages: a.messages,
        rounds: (0..repeat)
            .map(|_| RoundShared {
                delivered: AtomicU64::new(0),
                last_recv_ns: AtomicU64::new(0),
                first_send_ns: AtomicU64::new(u64::MAX),
                last_send_ns: AtomicU64::new(0),
            })
            .collect(),
        errors: Mutex::new(Vec::new()),
        alive_subs: AtomicUsize::new(0),
        slow_outcomes: Mutex::new(Vec::new()),
        room_subs: (0..a.rooms).map(|_| AtomicUsize::new(0)).collect(),
        room_pub: (0..a.rooms).map(|_| AtomicUsize::new(0)).collect(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let connect_timeout = Duration::from_millis(c.connect_timeout_ms);
    let pid = c.server_pid;
    let rss_before = pid.and_then(proc_rss_kb);
    let mut rss_max = rss_before;
    let mut rss_round_end: Option<u64> = None;

    // 1. subscribers
    let t_conn = Instant::now();
    let n_subs = a.rooms * a.subs;
    let mut sub_handles = Vec::with_capacity(n_subs);
    let (subs_ok, mut conn_errors) = connect_in_batches(
        n_subs,
        c.connect_batch,
        Duration::from_millis(c.connect_pause_ms),
        hard_deadline,
        |i| {
            let (tx, rx) = oneshot::channel();
            let room = format!("{prefix}{}", i % a.rooms);
            let user = format!("s{i}");
            let member = Member {
                target: target.clone(),
                shared: shared.clone(),
                room_idx: i % a.rooms,
                room,
                user,
                connect_timeout,
                stop: stop_rx.clone(),
            };
            sub_handles.push(tokio::spawn(subscriber(
                member,
                tx,
                i / a.rooms < a.slow_subs,
            )));
            rx
        },
    )
    .await;
    let sub_connect_s = t_conn.elapsed().as_secs_f64();

    // 2. publishers
    let (done_tx, mut done_rx) = mpsc::channel(a.rooms.max(1) * repeat + 8);
    let mut pub_cmds: Vec<mpsc::Sender<PubCmd>> = Vec::new();
    let mut pub_handles = Vec::new();
    let (pubs_ok, pub_errors) = connect_in_batches(
        a.rooms,
        c.connect_batch,
        Duration::from_millis(c.connect_pause_ms),
        hard_deadline,
        |i| {
            let (tx, rx) = oneshot::channel();
            let (ctx, crx) = mpsc::channel(repeat + 1);
            pub_cmds.push(ctx);
            let member = Member {
                target: target.clone(),
                shared: shared.clone(),
                room_idx: i,
                room: format!("{prefix}{i}"),
                user: format!("p{i}"),
                connect_timeout,
                stop: stop_rx.clone(),
            };
            pub_handles.push(tokio::spawn(publisher(
                member,
                tx,
                crx,
                done_tx.clone(),
                a.rate,
                a.payload_bytes,
            )));
            rx
        },
    )
    .await;
    conn_errors.extend(pub_errors);
    let connect_s = t_conn.elapsed().as_secs_f64();
    // Expected deliveries per round: joined subscribers of rooms whose publisher joined, times M.
    let expected_per_round: u64 = (0..a.rooms)
        .filter(|&r| shared.room_pub[r].load(Ordering::Relaxed) > 0)
        .map(|r| shared.room_subs[r].load(Ordering::Relaxed) as u64 * a.messages as u64)
        .sum();

    // 3. rounds
    let mut round_out: Vec<Value> = Vec::new();
    let mut round_meta: Vec<RoundMeta> = Vec::new();
    if pubs_ok > 0 && subs_ok > 0 {
        for round in 0..repeat {
            sleep(Duration::from_millis(a.settle_ms)).await;
            if Instant::now() >= hard_deadline {
                break;
            }
            let cpu0 = cpu_self_s();
            let scpu0 = pid.and_then(proc_cpu_split);
            let round_t0 = Instant::now();
            for tx in &pub_cmds {
                let _ = tx.send(PubCmd::Round(round)).await;
            }
            let rs = &shared.rounds[round];
            let mut pubs_done = 0usize;
            let mut last_count = 0u64;
            let mut last_change = Instant::now();
            let mut timed_out = false;
            let mut drained_out = false;
            let mut pubs_done_at: Option<Instant> = None;
            let mut last_rss_sample = Instant::now();
            loop {
                if pid.is_some() && last_rss_sample.elapsed() >= Duration::from_millis(100) {
                    last_rss_sample = Instant::now();
                    if let Some(v) = pid.and_then(proc_rss_kb) {
                        rss_max = Some(rss_max.map_or(v, |m| m.max(v)));
                    }
                }
                while let Ok((_r, res)) = done_rx.try_recv() {
                    pubs_done += 1;
                    if let Err(e) = res {
                        shared.errors.lock().unwrap().push(e);
                    }
                }
                if pubs_done >= pubs_ok && pubs_done_at.is_none() {
                    pubs_done_at = Some(Instant::now());
                }
                let d = rs.delivered.load(Ordering::Relaxed);
                if d >= expected_per_round && pubs_done >= pubs_ok {
                    break;
                }
                if pubs_done_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(a.drain_ms)) {
                    drained_out = true;
                    break;
                }
                if d != last_count {
                    last_count = d;
                    last_change = Instant::now();
                }
                if pubs_done >= pubs_ok
                    && last_change.elapsed() >= Duration::from_millis(a.quiet_ms)
                {
                    break;
                }
                if Instant::now() >= hard_deadline {
                    timed_out = true;
                    break;
                }
                sleep(Duration::from_millis(2)).await;
            }
            let cpu1 = cpu_self_s();
            let scpu1 = pid.and_then(proc_cpu_split);
            rss_round_end = pid.and_then(proc_rss_kb);
            if let Some(v) = rss_round_end {
                rss_max = Some(rss_max.map_or(v, |m| m.max(v)));
            }
            let round_s = round_t0.elapsed().as_secs_f64();
            let first = rs.first_send_ns.load(Ordering::Relaxed);
            let last_recv = rs.last_recv_ns.load(Ordering::Relaxed);
            let last_send = rs.last_send_ns.load(Ordering::Relaxed);
            let wall_s = if last_recv > first && first != u64::MAX {
                (last_recv - first) as f64 / 1e9
            } else {
                0.0
            };
            let publish_s = if last_send > first && first != u64::MAX {
                (last_send - first) as f64 / 1e9
            } else {
                0.0
            };
            let (server_cpu, server_sys) = match (scpu0, scpu1) {
                (Some((u0, s0)), Some((u1, s1))) => (Some((u1 + s1) - (u0 + s0)), Some(s1 - s0)),
                _ => (None, None),
            };
            round_meta.push(RoundMeta {
                wall_s,
                round_s,
                publish_s,
                loadgen_cpu: cpu1 - cpu0,
                drained_out,
                server_cpu,
                server_sys,
                timed_out,
                delivered_at_end: rs.delivered.load(Ordering::Relaxed),
            });
        }
    }

    // 4. stop everyone and collect per-subscriber stats
    let _ = stop_tx.send(true);
    let mut per_round: Vec<(Summary, Vec<u32>)> = (0..repeat)
        .map(|_| (Summary::default(), Vec::new()))
        .collect();
    // Readers (subscribers that read) that got every message of every round that ran, once.
    let mut readers = 0u64;
    let mut readers_complete = 0u64;
    let mut readers_min_frac: Option<f64> = None;
    let rounds_ran = round_meta.len();
    let mut collect_timed_out = 0usize;
    for h in sub_handles {
        let res = tokio::time::timeout_at(end_deadline.into(), h).await;
        if res.is_err() {
            collect_timed_out += 1;
        }
        if let Ok(Ok(Some(rounds))) = res {
            readers += 1;
            if rounds_ran > 0 && a.messages > 0 {
                let got: u64 = rounds.iter().take(rounds_ran).map(|r| r.distinct).sum();
                let want = (rounds_ran * a.messages) as u64;
                let dups: u64 = rounds.iter().map(|r| r.dup).sum();
                if got == want && dups == 0 {
                    readers_complete += 1;
                }
                let f = got as f64 / want as f64;
                readers_min_frac = Some(readers_min_frac.map_or(f, |m: f64| m.min(f)));
            }
            for (i, r) in rounds.into_iter().enumerate() {
                let s = &mut per_round[i].0;
                s.subs += 1;
                s.distinct += r.distinct;
                s.dup += r.dup;
                s.ooo += r.ooo;
                s.lost += (a.messages as u64).saturating_sub(r.distinct);
                per_round[i].1.extend_from_slice(&r.lat_us);
            }
        }
    }
    for h in pub_handles {
        if tokio::time::timeout_at(end_deadline.into(), h)
            .await
            .is_err()
        {
            collect_timed_out += 1;
        }
    }
    let rss_after = pid.and_then(proc_rss_kb);
    if collect_timed_out > 0 {
        shared.errors.lock().unwrap().push(format!(
            "{collect_timed_out} connection task(s) did not finish before the deadline"
        ));
    }

    for (i, meta) in round_meta.iter().enumerate() {
        let RoundMeta {
            wall_s,
            round_s,
            publish_s,
            loadgen_cpu: lg_cpu,
            drained_out,
            server_cpu,
            server_sys,
            timed_out,
            delivered_at_end,
        } = *meta;
        let (s, lat) = &mut per_round[i];
        lat.sort_unstable();
        let pct = |p: f64| -> Option<f64> {
            if lat.is_empty() {
                None
            } else {
                let idx = ((lat.len() - 1) as f64 * p).round() as usize;
                Some(lat[idx] as f64 / 1000.0)
            }
        };
        // Deliveries counted when the round ended; anything of this round that arrived later
        // (during the next round or the shutdown) is reported as "late", and still counts as lost.
        let delivered = delivered_at_end.min(s.distinct);
        round_out.push(json!({
            "round": i,
            "expected": expected_per_round,
            "delivered": delivered,
            "lost": expected_per_round.saturating_sub(delivered),
            "late": s.distinct.saturating_sub(delivered),
            "dup": s.dup,
            "out_of_order": s.ooo,
            "wall_s": round3(wall_s),
            "publish_s": round3(publish_s),
            "deliveries_per_s": if wall_s > 0.0 { (delivered as f64 / wall_s).round() } else { 0.0 },
            "publish_rate": if publish_s > 0.0 { ((a.messages * pubs_ok) as f64 / publish_s).round() } else { 0.0 },
            "lat_p50_ms": pct(0.50).map(round3),
            "lat_p99_ms": pct(0.99).map(round3),
            "lat_max_ms": pct(1.0).map(round3),
            "loadgen_cpu_s": round3(lg_cpu),
            "server_cpu_s": server_cpu.map(round3),
            // Share of the server's CPU time spent in the kernel (mostly socket writes).
            "server_sys_frac": match (server_cpu, server_sys) {
                (Some(c), Some(s)) if c > 0.0 => Some(round3(s / c)),
                _ => None,
            },
            // CPU per delivery: robust to the two processes sharing 2 cores.
            "server_us_per_delivery": server_cpu.filter(|_| delivered > 0).map(|c| round3(c * 1e6 / delivered as f64)),
            "loadgen_us_per_delivery": if delivered > 0 { Some(round3(lg_cpu * 1e6 / delivered as f64)) } else { None },
            // Fraction of its threads' time the load generator was on CPU during the round
            // (close to 1.0: the numbers are bounded by the load generator, not the server).
            "loadgen_busy": if round_s > 0.0 { Some(round3(lg_cpu / (round_s * threads as f64))) } else { None },
            "timed_out": timed_out,
            "drain_limited": drained_out,
        }));
    }
    let median = median_rounds(&round_out);
    let mut errors = conn_errors;
    errors.extend(shared.errors.lock().unwrap().drain(..));
    let n_err = errors.len();
    let kinds = error_kinds(&errors);
    errors.truncate(10);
    json!({
        "mode": "fanout",
        "label": c.label,
        "protocol": format!("{:?}", c.protocol).to_lowercase(),
        "url": c.url,
        "rooms": a.rooms,
        "subs_per_room": a.subs,
        "subscribers": subs_ok,
        "subscribers_wanted": n_subs,
        "slow_subscribers_per_room": a.slow_subs,
        "publishers": pubs_ok,
        "messages": a.messages,
        "rate": a.rate,
        "saturation": a.rate.is_none(),
        "loadgen_threads": threads,
        "repeat": repeat,
        "sub_connect_s": round3(sub_connect_s),
        "connect_s": round3(connect_s),
        "server_pid": pid,
        "server_rss_kb_before": rss_before,
        "server_rss_kb_round_end": rss_round_end,
        "server_rss_kb_max": rss_max,
        "server_rss_kb_after": rss_after,
        "readers": readers,
        "readers_complete": readers_complete,
        "readers_min_pct": readers_min_frac.map(|f| round3(f * 100.0)),
        "stuck_readers": shared.slow_outcomes.lock().unwrap().clone(),
        "loadgen_cpu_s_total": round3(cpu_self_s()),
        "loadgen_rss_kb": self_rss_kb(),
        "rounds": round_out,
        "median": median,
        "errors_total": n_err,
        "error_kinds": kinds,
        "errors": errors,
    })
}

/// (work deadline, end deadline) for a run limited to `timeout_s` seconds since process start:
/// connecting, publishing and draining stop at the first; collecting results and closing
/// sockets must be over by the second, which leaves a few seconds before `--timeout` itself.
fn deadlines(timeout_s: u64) -> (Instant, Instant) {
    let t0 = *T0.get_or_init(Instant::now);
    let total = Duration::from_secs(timeout_s.max(1));
    let end = total.saturating_sub(Duration::from_millis(500));
    let reserve = (total / 5).min(Duration::from_secs(5));
    (t0 + total.saturating_sub(reserve), t0 + end)
}

/// "closed by the server: 4008 too slow: ...": a close frame as the report shows it.
fn describe_close(c: Option<&CloseFrame>) -> String {
    match c {
        Some(f) => format!(
            "closed by the server: {} {}",
            u16::from(f.code),
            f.reason.as_str()
        ),
        None => "closed by the server (no code)".to_string(),
    }
}

/// A read error as the report shows it; a reset is what a server does to a socket it gave up on.
fn describe_ws_error(e: &WsError) -> String {
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "reset by the server (no close frame)".to_string()
        }
        WsError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset => {
            "reset by the server (no close frame)".to_string()
        }
        e => format!("read: {e}"),
    }
}

/// Errors grouped by what happened (the user name in front is dropped), most frequent first:
/// `[["closed by the server: 4008 too slow", 4], ...]`.
fn error_kinds(errors: &[String]) -> Value {
    let mut kinds: Vec<(String, u64)> = Vec::new();
    for e in errors {
        let kind = match e.split_once(": ") {
            Some((who, rest))
                if who.len() > 1
                    && who[1..].bytes().all(|b| b.is_ascii_digit())
                    && matches!(who.as_bytes()[0], b's' | b'p' | b'i') =>
            {
                rest
            }
            _ => e.as_str(),
        };
        match kinds.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind.to_string(), 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    json!(kinds
        .into_iter()
        .map(|(k, n)| json!([k, n]))
        .collect::<Vec<_>>())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Median of each numeric field across rounds.
fn median_rounds(rounds: &[Value]) -> Value {
    let keys = [
        "delivered",
        "lost",
        "late",
        "dup",
        "out_of_order",
        "wall_s",
        "publish_s",
        "deliveries_per_s",
        "publish_rate",
        "lat_p50_ms",
        "lat_p99_ms",
        "lat_max_ms",
        "loadgen_cpu_s",
        "server_cpu_s",
        "server_us_per_delivery",
        "loadgen_us_per_delivery",
        "loadgen_busy",
        "server_sys_frac",
    ];
    let mut out = serde_json::Map::new();
    for k in keys {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.get(k).and_then(|x| x.as_f64()))
            .collect();
        if v.is_empty() {
            out.insert(k.into(), Value::Null);
            continue;
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let m = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        out.insert(k.into(), json!(round3(m)));
    }
    Value::Object(out)
}

// ---------------------------------------------------------------- idle

async fn idle_conn(
    target: Arc<Target>,
    room: String,
    user: String,
    ready: oneshot::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
    connect_timeout: Duration,
    closed: Arc<AtomicUsize>,
) {
    let mut ws = match timeout(connect_timeout, target.connect(&room, &user)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            let _ = ready.send(Err(format!("{user}: {e}")));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(format!("{user}: connect/join timed out")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let is_sio = target.protocol == Protocol::Socketio;
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            f = ws.next() => match f {
                Some(Ok(Message::Text(t))) if is_sio && t.as_str() == "2" => {
                    if ws.send(Message::text("3")).await.is_err() { closed.fetch_add(1, Ordering::Relaxed); return; }
                }
                Some(Ok(_)) => {}
                _ => { closed.fetch_add(1, Ordering::Relaxed); return; }
            }
        }
    }
    let _ = timeout(Duration::from_millis(100), ws.close(None)).await;
}

async fn run_idle(a: IdleArgs) -> Value {
    let c = &a.c;
    let target = match Target::new(c) {
        Ok(t) => Arc::new(t),
        Err(e) => return json!({ "mode": "idle", "error": e }),
    };
    let (hard_deadline, end_deadline) = deadlines(c.timeout);
    let run_id = wire::random_u32();
    let prefix = c
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("idle-{run_id:08x}-"));
    let pid = c.server_pid;
    let (stop_tx, stop_rx) = watch::channel(false);
    let closed = Arc::new(AtomicUsize::new(0));
    let rss_before = pid.and_then(proc_rss_kb);
    let self_before = self_rss_kb();
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(a.conns);
    let rooms = a.rooms.max(1);
    let (ok, errors) = connect_in_batches(
        a.conns,
        c.connect_batch,
        Duration::from_millis(c.connect_pause_ms),
        hard_deadline,
        |i| {
            let (tx, rx) = oneshot::channel();
            handles.push(tokio::spawn(idle_conn(
                target.clone(),
                format!("{prefix}{}", i % rooms),
                format!("i{i}"),
                tx,
                stop_rx.clone(),
                Duration::from_millis(c.connect_timeout_ms),
                closed.clone(),
            )));
            rx
        },
    )
    .await;
    let connect_s = t0.elapsed().as_secs_f64();
    // Hold; sample RSS every 250 ms, report the last sample (and the max).
    let hold_end = (Instant::now() + Duration::from_secs(a.hold_secs)).min(hard_deadline);
    let mut rss_last = pid.and_then(proc_rss_kb);
    let mut rss_max = rss_last;
    while Instant::now() < hold_end {
        sleep(Duration::from_millis(250)).await;
        if let Some(v) = pid.and_then(proc_rss_kb) {
            rss_last = Some(v);
            rss_max = Some(rss_max.map_or(v, |m| m.max(v)));
        }
    }
    let self_after = self_rss_kb();
    let still_open = ok.saturating_sub(closed.load(Ordering::Relaxed));
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = tokio::time::timeout_at(end_deadline.into(), h).await;
    }
    let per_conn = match (rss_before, rss_last) {
        (Some(b), Some(l)) if ok > 0 => Some(((l as f64 - b as f64) * 1024.0 / ok as f64).round()),
        _ => None,
    };
    let lg_per_conn = match (self_before, self_after) {
        (Some(b), Some(l)) if ok > 0 => Some(((l as f64 - b as f64) * 1024.0 / ok as f64).round()),
        _ => None,
    };
    let n_err = errors.len();
    let kinds = error_kinds(&errors);
    let mut errors = errors;
    errors.truncate(10);
    json!({
        "mode": "idle",
        "label": c.label,
        "protocol": format!("{:?}", c.protocol).to_lowercase(),
        "url": c.url,
        "conns_wanted": a.conns,
        "conns": ok,
        "still_open_at_end": still_open,
        "rooms": rooms,
        "connect_s": round3(connect_s),
        "hold_s": a.hold_secs,
        "server_pid": pid,
        "server_rss_kb_before": rss_before,
        "server_rss_kb_held": rss_last,
        "server_rss_kb_max": rss_max,
        "server_rss_bytes_per_conn": per_conn,
        "loadgen_rss_bytes_per_conn": lg_per_conn,
        "loadgen_cpu_s_total": round3(cpu_self_s()),
        "errors_total": n_err,
        "error_kinds": kinds,
        "errors": errors,
    })
}

// ---------------------------------------------------------------- main

fn print_table(v: &Value) {
    let g = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
    eprintln!(
        "---- loadgen {} {} {} ----",
        g("mode"),
        g("protocol"),
        g("label")
    );
    if let Some(e) = v.get("error") {
        eprintln!("error: {e}");
        return;
    }
    if g("mode") == "\"fanout\"" {
        eprintln!(
            "subscribers {} / {} in {} room(s), publishers {}, messages {} per publisher, rate {}, connect {} s",
            g("subscribers"), g("subscribers_wanted"), g("rooms"), g("publishers"), g("messages"), g("rate"), g("connect_s")
        );
        eprintln!(
            "readers with 100% of every round: {} / {} (min {}%), stuck readers per room {}; server RSS kB before {} round end {} max {} after {}",
            g("readers_complete"), g("readers"), g("readers_min_pct"), g("slow_subscribers_per_room"),
            g("server_rss_kb_before"), g("server_rss_kb_round_end"), g("server_rss_kb_max"), g("server_rss_kb_after")
        );
        if v["slow_subscribers_per_room"].as_u64().unwrap_or(0) > 0 {
            eprintln!("stuck readers: {}", v["stuck_readers"]);
        }
        eprintln!(
            "{:>5} {:>10} {:>10} {:>7} {:>5} {:>5} {:>8} {:>12} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7}",
            "round", "expected", "delivered", "lost", "dup", "ooo", "wall_s", "deliv/s", "p50_ms", "p99_ms", "max_ms", "lg_cpu", "srv_cpu", "srv_us/d", "lg_busy"
        );
        let rows: Vec<Value> = v["rounds"].as_array().cloned().unwrap_or_default();
        let mut all = rows.clone();
        let mut med = v["median"].clone();
        if let Some(o) = med.as_object_mut() {
            o.insert("round".into(), json!("med"));
            o.insert(
                "expected".into(),
                rows.first()
                    .map(|r| r["expected"].clone())
                    .unwrap_or(Value::Null),
            );
        }
        if rows.len() > 1 {
            all.push(med);
        }
        for r in all {
            let f = |k: &str| match &r[k] {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            eprintln!(
                "{:>5} {:>10} {:>10} {:>7} {:>5} {:>5} {:>8} {:>12} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7}",
                f("round"), f("expected"), f("delivered"), f("lost"), f("dup"), f("out_of_order"), f("wall_s"),
                f("deliveries_per_s"), f("lat_p50_ms"), f("lat_p99_ms"), f("lat_max_ms"), f("loadgen_cpu_s"), f("server_cpu_s"),
                f("server_us_per_delivery"), f("loadgen_busy")
            );
        }
    } else {
        eprintln!(
            "conns {} / {} (open at end {}), rooms {}, connect {} s, server RSS kB before {} held {} max {} -> {} B/conn; loadgen {} B/conn",
            g("conns"), g("conns_wanted"), g("still_open_at_end"), g("rooms"), g("connect_s"),
            g("server_rss_kb_before"), g("server_rss_kb_held"), g("server_rss_kb_max"),
            g("server_rss_bytes_per_conn"), g("loadgen_rss_bytes_per_conn")
        );
    }
    if let Some(n) = v.get("errors_total").and_then(|x| x.as_u64()) {
        if n > 0 {
            eprintln!("errors: {n}, first: {}", v["errors"]);
        }
    }
}

// ---------------------------------------------------------------- scenarios and report

fn scenario_fanout(
    c: Common,
    repeat: usize,
    rooms: usize,
    subs: usize,
    messages: usize,
) -> FanoutArgs {
    FanoutArgs {
        c,
        rooms,
        subs,
        messages,
        rate: None,
        repeat,
        payload_bytes: 0,
        settle_ms: 500,
        quiet_ms: 3000,
        slow_subs: 0,
        drain_ms: 20000,
    }
}

async fn run_scenario(s: ScenarioArgs) -> Value {
    let mut c = s.c.clone();
    if c.label.is_empty() {
        c.label = format!("scenario {}", s.name.letter());
    }
    let repeat = s.repeat.max(1);
    let mut out = match s.name {
        ScenarioName::A => run_fanout(scenario_fanout(c, repeat, 1, 1000, 200)).await,
        ScenarioName::B => {
            let mut f = scenario_fanout(c, repeat, 1, 1000, 1000);
            f.rate = Some(100.0);
            f.drain_ms = 10000;
            run_fanout(f).await
        }
        ScenarioName::C => {
            run_idle(IdleArgs {
                c,
                conns: 5000,
                rooms: 500,
                hold_secs: 5,
            })
            .await
        }
        ScenarioName::D => run_fanout(scenario_fanout(c, repeat, 100, 10, 200)).await,
        ScenarioName::E => {
            // A fixed rate, not saturation: back to back, a single-threaded load generator
            // reading 99 sockets of 4 KiB frames falls behind by itself, and a hub that
            // bounds its queues then rightly closes the readers too.
            let mut f = scenario_fanout(c, repeat, 1, 100, 2000);
            f.slow_subs = 1;
            f.payload_bytes = 4096;
            f.rate = Some(250.0);
            f.drain_ms = 10000;
            run_fanout(f).await
        }
    };
    if let Some(o) = out.as_object_mut() {
        o.insert("scenario".into(), json!(s.name.letter()));
        o.insert("scenario_desc".into(), json!(s.name.describe()));
    }
    out
}

/// Markdown table over result files; unreadable files become a row that says so.
fn report(files: &[std::path::PathBuf]) -> String {
    let mut t = String::new();
    t.push_str("| scenario | what | conns | delivered / expected | lost | dup | ooo | deliveries/s | latency p50 / p99 / max ms | server µs/delivery | server RSS MiB (max) | RSS/conn | notes |\n");
    t.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let num = |v: &Value| -> String {
        match v {
            Value::Null => "—".into(),
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if f.abs() >= 1000.0 {
                    group_thousands(f.round() as i64)
                } else if f.fract() == 0.0 {
                    format!("{}", f as i64)
                } else if f.abs() >= 100.0 {
                    format!("{f:.0}")
                } else if f.abs() >= 10.0 {
                    format!("{f:.1}")
                } else {
                    format!("{f:.2}")
                }
            }
            x => x.to_string(),
        }
    };
    let mib = |v: &Value| {
        v.as_f64()
            .map(|kb| format!("{:.1}", kb / 1024.0))
            .unwrap_or_else(|| "—".into())
    };
    for f in files {
        let name = f.display().to_string();
        let v: Value = match std::fs::read_to_string(f).ok().and_then(|s| {
            s.lines()
                .rev()
                .find(|l| l.trim_start().starts_with('{'))
                .and_then(|l| serde_json::from_str(l).ok())
        }) {
            Some(v) => v,
            None => {
                t.push_str(&format!(
                    "| {name} | no result | | | | | | | | | | | unreadable or empty |\n"
                ));
                continue;
            }
        };
        let sc = v
            .get("scenario")
            .and_then(|x| x.as_str())
            .map(String::from)
            .unwrap_or_else(|| {
                v.get("label")
                    .and_then(|x| x.as_str())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(&name)
                    .to_string()
            });
        let desc = v
            .get("scenario_desc")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        let mut notes: Vec<String> = Vec::new();
        if let Some(e) = v.get("error") {
            notes.push(format!(
                "error: {}",
                e.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| e.to_string())
            ));
        }
        let errs = v.get("errors_total").and_then(|x| x.as_u64()).unwrap_or(0);
        if errs > 0 {
            let kinds: Vec<String> = v["error_kinds"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or(&[])
                .iter()
                .take(3)
                .map(|k| {
                    let text: String = k[0].as_str().unwrap_or("").chars().take(70).collect();
                    format!("{} x {}", text.replace('|', "/"), k[1])
                })
                .collect();
            notes.push(format!("{errs} errors: {}", kinds.join(", ")));
        }
        match v.get("mode").and_then(|x| x.as_str()) {
            Some("fanout") => {
                let m = &v["median"];
                let rounds = v["rounds"].as_array().map(|r| r.len()).unwrap_or(0);
                let expected = v["rounds"]
                    .get(0)
                    .map(|r| r["expected"].clone())
                    .unwrap_or(Value::Null);
                let conns =
                    v["subscribers"].as_u64().unwrap_or(0) + v["publishers"].as_u64().unwrap_or(0);
                if rounds > 1 {
                    notes.push(format!("median of {rounds} rounds"));
                }
                if rounds == 0 {
                    notes.push("no round ran".into());
                }
                if v["rounds"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|x| x["drain_limited"] == json!(true) || x["timed_out"] == json!(true))
                }) {
                    notes.push("a round hit the drain window / timeout".into());
                }
                if let Some(b) = m["loadgen_busy"].as_f64() {
                    if b > 0.9 {
                        notes.push(format!("loadgen busy {:.0}%", b * 100.0));
                    }
                }
                let slow = v["slow_subscribers_per_room"].as_u64().unwrap_or(0);
                if slow > 0 {
                    notes.push(format!(
                        "{} stuck reader(s) per room: {}; readers with 100%: {} / {} (min {}%); server RSS before {} MiB, at round end {} MiB, after close {} MiB",
                        slow,
                        stuck_summary(&v["stuck_readers"]),
                        num(&v["readers_complete"]),
                        num(&v["readers"]),
                        num(&v["readers_min_pct"]),
                        mib(&v["server_rss_kb_before"]),
                        mib(&v["server_rss_kb_round_end"]),
                        mib(&v["server_rss_kb_after"]),
                    ));
                }
                t.push_str(&format!(
                    "| {sc} | {desc} | {} | {} / {} | {} | {} | {} | {} | {} / {} / {} | {} | {} ({}) | — | {} |\n",
                    group_thousands(conns as i64),
                    num(&m["delivered"]),
                    num(&expected),
                    num(&m["lost"]),
                    num(&m["dup"]),
                    num(&m["out_of_order"]),
                    num(&m["deliveries_per_s"]),
                    num(&m["lat_p50_ms"]),
                    num(&m["lat_p99_ms"]),
                    num(&m["lat_max_ms"]),
                    num(&m["server_us_per_delivery"]),
                    mib(&v["server_rss_kb_round_end"]),
                    mib(&v["server_rss_kb_max"]),
                    notes.join("; "),
                ));
            }
            Some("idle") => {
                let per = v["server_rss_bytes_per_conn"]
                    .as_f64()
                    .map(|b| format!("{:.1} KiB", b / 1024.0))
                    .unwrap_or_else(|| "—".into());
                let open = v["still_open_at_end"].as_u64().unwrap_or(0);
                let conns = v["conns"].as_u64().unwrap_or(0);
                if open < conns {
                    notes.push(format!("{} closed during the hold", conns - open));
                }
                t.push_str(&format!(
                    "| {sc} | {desc} | {} / {} | — | — | — | — | — | — | — | {} ({}) | {} | {} |\n",
                    num(&v["conns"]),
                    num(&v["conns_wanted"]),
                    mib(&v["server_rss_kb_held"]),
                    mib(&v["server_rss_kb_max"]),
                    per,
                    notes.join("; "),
                ));
            }
            _ => {
                t.push_str(&format!(
                    "| {sc} | {desc} | | | | | | | | | | | {} |\n",
                    notes.join("; ")
                ));
            }
        }
    }
    t
}

/// "closed 4008 too slow x 3, still open x 1": stuck-reader outcomes grouped by kind.
fn stuck_summary(v: &Value) -> String {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for o in v.as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
        let o = o.as_str().unwrap_or("");
        let kind = if kinds.is_empty() && v.as_array().map_or(0, |a| a.len()) == 1 {
            o.to_string()
        } else {
            o.split(" (after").next().unwrap_or(o).to_string()
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let s = kinds
        .iter()
        .map(|(k, n)| {
            if *n > 1 {
                format!("{k} x {n}")
            } else {
                k.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    s.replace('|', "/")
}

fn group_thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        let digits_left = s.len() - i;
        if i > 0 && digits_left % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn main() {
    let _ = T0.get_or_init(Instant::now);
    let cli = Cli::parse();
    let (limit, quiet, threads) = match &cli.cmd {
        Cmd::Fanout(a) => (a.c.timeout, a.c.quiet, a.c.threads),
        Cmd::Idle(a) => (a.c.timeout, a.c.quiet, a.c.threads),
        Cmd::Scenario(a) => (a.c.timeout, a.c.quiet, a.c.threads),
        Cmd::Report(r) => {
            print!("{}", report(&r.files));
            return;
        }
    };
    stats::raise_nofile();
    let limit = limit.max(1);
    // Watchdog outside the runtime: even if a task never yields, the process ends at
    // --timeout + 3 s.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(limit + 3));
        println!(
            "{}",
            json!({ "error": format!("watchdog: still running {}s after start, exiting", limit + 3) })
        );
        std::process::exit(3);
    });
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let out = rt.block_on(async move {
        let fut = async move {
            match cli.cmd {
                Cmd::Fanout(a) => run_fanout(a).await,
                Cmd::Idle(a) => run_idle(a).await,
                Cmd::Scenario(a) => run_scenario(a).await,
                Cmd::Report(_) => unreachable!("handled above"),
            }
        };
        // Hard limit, counted from process start; the run's own deadlines end it earlier.
        let t0 = *T0.get_or_init(Instant::now);
        match tokio::time::timeout_at((t0 + Duration::from_secs(limit)).into(), fut).await {
            Ok(v) => v,
            Err(_) => json!({ "error": format!("hard timeout after {limit}s") }),
        }
    });
    println!("{}", out);
    if !quiet {
        print_table(&out);
    }
    let failed = out.get("error").is_some();
    rt.shutdown_timeout(Duration::from_millis(500));
    std::process::exit(if failed { 2 } else { 0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_accepted() {
        for ok in [
            "ws://127.0.0.1:8000",
            "ws://127.1.2.3/",
            "ws://localhost:1",
            "ws://[::1]:8000/x",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ws://10.0.0.1:8000",
            "ws://192.168.1.2",
            "ws://example.com",
            "ws://127.0.0.1.example.com:80",
            "ws://user@10.0.0.1:80",
            "ws://[::1]@10.0.0.1/",
            "ws://10.0.0.1?x=127.0.0.1",
            "wss://127.0.0.1:443",
            "http://127.0.0.1",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_grouped_by_kind_without_the_user() {
        let errors: Vec<String> = [
            "s1: closed by the server: 4008 too slow",
            "s22: closed by the server: 4008 too slow",
            "p0: send seq 3: broken pipe",
            "connect phase hit the deadline after 5 of 10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let k = error_kinds(&errors);
        assert_eq!(k[0], json!(["closed by the server: 4008 too slow", 2]));
        assert_eq!(k.as_array().unwrap().len(), 3);
    }

    #[test]
    fn report_has_a_row_per_file() {
        let dir = std::env::temp_dir().join(format!("loadgen-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fan = dir.join("a.json");
        std::fs::write(
            &fan,
            json!({"mode":"fanout","scenario":"a","scenario_desc":"d","subscribers":10,"publishers":1,
                   "rounds":[{"expected":100}],"median":{"delivered":100,"lost":0,"dup":0,"out_of_order":0,
                   "deliveries_per_s":12345.0,"lat_p50_ms":1.5,"lat_p99_ms":2.5,"lat_max_ms":3.0,
                   "server_us_per_delivery":0.2},"server_rss_kb_round_end":2048,"server_rss_kb_max":4096,
                   "errors_total":0})
            .to_string(),
        )
        .unwrap();
        let missing = dir.join("missing.json");
        let t = report(&[fan, missing]);
        std::fs::remove_dir_all(&dir).ok();
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 4, "{t}");
        assert!(rows[2].starts_with("| a | d | 11 | 100 / 100 | 0 | 0 | 0 | 12,345 | 1.50 / 2.50 / 3 | 0.20 | 2.0 (4.0) |"), "{}", rows[2]);
        assert!(rows[3].contains("unreadable"));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(-1234567), "-1,234,567");
    }
}
