//! `loadgen soak`: the hub under steady, mixed load for a long time (10 minutes by default),
//! to show that nothing grows and nothing is lost.
//!
//! * `--readers` connections stay in their room for the whole run; each must receive every
//!   saved frame's `id` of its room exactly once and in order (chat messages and the join and
//!   leave notices alike): a gap is a message lost, an id at or below the last one a duplicate.
//!   At the end every reader of a room must have reached the same last id.
//! * `--churners` connections keep leaving and rejoining (staying `--stay-min-s`..`--stay-max-s`,
//!   away `--away-min-ms`..`--away-max-ms`), each rejoin with `?since=<last id>&epoch=<epoch>`:
//!   the `history` frame must say `"recovered": true` and replay exactly the ids after `since`,
//!   and the live frames must follow on without a gap.
//! * One publisher a room sends `--rate` chat messages a second over all rooms, each carrying
//!   its send time, so every delivery to a reader or churner gives a latency.
//! * Every `--sample-secs` the hub's RSS (`/proc/PID/status`) and open fds (`/proc/PID/fd`)
//!   are sampled (`--server-pid`); every `--interval-secs` the delivery latency p50/p99/max of
//!   that interval is recorded.
//!
//! Output: one JSON line (`mode: "soak"`) with the samples, the intervals and the loss
//! counters; progress lines on stderr as it runs.

use crate::cli::{Common, Ready};
use crate::connect::{connect_in_batches, Target, Ws};
use crate::{clock, procfs, stats, wire};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, timeout_at, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    #[command(flatten)]
    pub c: Common,
    /// How long the load runs (s); `--timeout` must leave a minute more.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Rooms (one publisher each).
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Connections that stay for the whole run (spread over the rooms).
    #[arg(long, default_value_t = 1000)]
    pub readers: usize,
    /// Connections that keep leaving and rejoining with `?since=`.
    #[arg(long, default_value_t = 1000)]
    pub churners: usize,
    /// Chat messages a second, over all rooms.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Shortest stay of a churner (s).
    #[arg(long, default_value_t = 5)]
    pub stay_min_s: u64,
    /// Longest stay of a churner (s).
    #[arg(long, default_value_t = 30)]
    pub stay_max_s: u64,
    /// Shortest time a churner is away (ms).
    #[arg(long, default_value_t = 500)]
    pub away_min_ms: u64,
    /// Longest time a churner is away (ms).
    #[arg(long, default_value_t = 3000)]
    pub away_max_ms: u64,
    /// How often the server's RSS and fds are sampled (s).
    #[arg(long, default_value_t = 10)]
    pub sample_secs: u64,
    /// Latency percentiles are taken over intervals of this length (s).
    #[arg(long, default_value_t = 60)]
    pub interval_secs: u64,
}

/// Counters every task adds to.
#[derive(Default)]
struct Counters {
    published: AtomicU64,
    publish_errors: AtomicU64,
    /// Ids a reader never got (gaps in its stream).
    lost_connected: AtomicU64,
    /// Ids a reader got twice or out of order.
    dup_connected: AtomicU64,
    /// Readers whose socket ended before the run did.
    reader_drops: AtomicU64,
    /// Rejoins with `?since=`.
    rejoins: AtomicU64,
    /// Rejoins whose `history` frame said `"recovered": false`.
    not_recovered: AtomicU64,
    /// Ids a churner missed across a rejoin or while connected.
    lost_rejoining: AtomicU64,
    dup_rejoining: AtomicU64,
    /// Churner connections the hub ended while they were in the room.
    churner_drops: AtomicU64,
    connect_errors: AtomicU64,
    /// Frames the checks could not read (no history frame first, bad JSON).
    protocol_errors: AtomicU64,
    deliveries: AtomicU64,
    /// Churners connected right now.
    churners_in: AtomicU64,
}

struct Shared {
    prefix: Vec<u8>,
    counters: Counters,
    /// Latencies (µs) of the current interval.
    latencies: Mutex<Vec<u32>>,
    /// First few error texts.
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(e);
        }
    }
}

/// Where one connection is in its room's sequence of ids.
#[derive(Default, Clone)]
struct Position {
    last: Option<u64>,
    epoch: Option<String>,
}

/// What one frame did to a connection's position.
#[derive(Default, Debug, PartialEq)]
struct Seen {
    missing: u64,
    repeated: u64,
}

impl Position {
    /// One live frame's `id`.
    fn live(&mut self, id: u64) -> Seen {
        let mut seen = Seen::default();
        match self.last {
            Some(last) if id == last + 1 => self.last = Some(id),
            Some(last) if id > last + 1 => {
                seen.missing = id - last - 1;
                self.last = Some(id);
            }
            Some(_) => seen.repeated = 1,
            None => self.last = Some(id),
        }
        seen
    }

    /// The `history` frame of a join; `since` is what the join asked for. `Err` when the
    /// replay was not a recovery (for a rejoin).
    fn history(&mut self, frame: &Value, since: Option<u64>) -> Result<Seen, String> {
        if let Some(e) = frame.get("epoch").and_then(Value::as_str) {
            self.epoch = Some(e.to_owned());
        }
        let ids: Vec<u64> = frame["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["id"].as_u64()).collect())
            .unwrap_or_default();
        let Some(since) = since else {
            self.last = ids.last().copied();
            return Ok(Seen::default());
        };
        if frame.get("recovered") != Some(&Value::Bool(true)) {
            self.last = ids.last().copied();
            return Err(format!(
                "since={since}: not recovered ({} messages)",
                ids.len()
            ));
        }
        self.last = Some(since);
        let mut seen = Seen::default();
        for id in ids {
            let s = self.live(id);
            seen.missing += s.missing;
            seen.repeated += s.repeated;
        }
        Ok(seen)
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Reads frames until `stop` turns true or the socket ends; true when the socket ended.
async fn follow(
    ws: &mut Ws,
    pos: &mut Position,
    sh: &Shared,
    reader: bool,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let c = &sh.counters;
    loop {
        let frame = tokio::select! {
            _ = stopped(stop) => return false,
            f = ws.next() => f,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
            Some(Ok(_)) => continue,
        };
        let bytes = text.as_bytes();
        if let Some(at) = wire::find(bytes, &sh.prefix) {
            if let Some(m) = wire::parse_marker(&bytes[at + sh.prefix.len()..]) {
                let us = (clock::now_ns().saturating_sub(m.sent_ns) / 1000) as u32;
                sh.latencies.lock().unwrap().push(us);
            }
        }
        let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
            c.protocol_errors.fetch_add(1, Relaxed);
            continue;
        };
        let Some(id) = v.get("id").and_then(Value::as_u64) else {
            continue;
        };
        if !matches!(v["type"].as_str(), Some("message" | "system")) {
            continue;
        }
        c.deliveries.fetch_add(1, Relaxed);
        let s = pos.live(id);
        let (lost, dup) = if reader {
            (&c.lost_connected, &c.dup_connected)
        } else {
            (&c.lost_rejoining, &c.dup_rejoining)
        };
        lost.fetch_add(s.missing, Relaxed);
        dup.fetch_add(s.repeated, Relaxed);
        if s.missing > 0 && reader {
            sh.error(format!("reader missed {} ids before {id}", s.missing));
        }
    }
}

/// Connects and reads the `history` frame, which comes first.
async fn join(
    base: &Common,
    room: &str,
    user: &str,
    pos: &mut Position,
    sh: &Shared,
    reader: bool,
) -> Result<Ws, String> {
    let since = pos.last;
    let mut c = base.clone();
    c.ready = Ready::Connect;
    if let Some(since) = since {
        let epoch = pos.epoch.as_deref().unwrap_or("");
        c.path = Some(format!("/chat/{{room}}?since={since}&epoch={epoch}"));
    }
    let mut ws = Target::new(&c)?.connect(room, user).await?;
    let first = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Close(f))) => return Err(format!("closed during join: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("join: {e}")),
            None => return Err("ended during join".into()),
        }
    };
    let frame: Value = serde_json::from_str(first.as_str()).unwrap_or(Value::Null);
    if frame["type"] != "history" {
        sh.counters.protocol_errors.fetch_add(1, Relaxed);
        return Err(format!("first frame is not history: {}", first.as_str()));
    }
    let c = &sh.counters;
    match pos.history(&frame, since) {
        Ok(s) => {
            let (lost, dup) = if reader {
                (&c.lost_connected, &c.dup_connected)
            } else {
                (&c.lost_rejoining, &c.dup_rejoining)
            };
            lost.fetch_add(s.missing, Relaxed);
            dup.fetch_add(s.repeated, Relaxed);
        }
        Err(e) => {
            c.not_recovered.fetch_add(1, Relaxed);
            sh.error(e);
        }
    }
    if since.is_some() {
        c.rejoins.fetch_add(1, Relaxed);
    }
    Ok(ws)
}

/// A reader: joins once, follows until `stop`; returns its room, last id and socket (still
/// open, so no reader's leave notice reaches the others before all have stopped).
async fn reader(
    c: Common,
    room: String,
    user: String,
    sh: Arc<Shared>,
    joined: oneshot::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
    publish: Option<(f64, Instant, u32)>,
) -> Option<(String, u64, Ws)> {
    let mut pos = Position::default();
    let mut ws = match join(&c, &room, &user, &mut pos, &sh, true).await {
        Ok(ws) => {
            let _ = joined.send(Ok(()));
            ws
        }
        Err(e) => {
            let _ = joined.send(Err(format!("{user}: {e}")));
            return None;
        }
    };
    let ended = match publish {
        None => follow(&mut ws, &mut pos, &sh, true, &mut stop).await,
        Some((per_s, start_at, run_id)) => {
            publish_and_follow(&mut ws, &mut pos, &sh, &mut stop, per_s, start_at, run_id).await
        }
    };
    if ended {
        sh.counters.reader_drops.fetch_add(1, Relaxed);
        sh.error(format!("{user}: the hub ended a reader's socket"));
        return None;
    }
    pos.last.map(|last| (room, last, ws))
}

/// A room's publisher: sends `per_s` messages a second (from `start_at` until `stop`, then
/// keeps reading) and checks its own stream like a reader.
async fn publish_and_follow(
    ws: &mut Ws,
    pos: &mut Position,
    sh: &Shared,
    stop: &mut watch::Receiver<bool>,
    per_s: f64,
    start_at: Instant,
    run_id: u32,
) -> bool {
    let c = &sh.counters;
    let mut tick = tokio::time::interval_at(start_at.into(), Duration::from_secs_f64(1.0 / per_s));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0usize;
    loop {
        let frame = tokio::select! {
            _ = stopped(stop) => return false,
            _ = tick.tick() => None,
            f = ws.next() => Some(f),
        };
        let Some(frame) = frame else {
            let body = wire::body(run_id, 0, seq, clock::now_ns(), "");
            seq += 1;
            let frame = wire::publish_frame(crate::cli::Protocol::Seed, body);
            if ws.send(Message::text(frame)).await.is_err() {
                c.publish_errors.fetch_add(1, Relaxed);
                return true;
            }
            c.published.fetch_add(1, Relaxed);
            continue;
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
            Some(Ok(_)) => continue,
        };
        let Ok(v) = serde_json::from_slice::<Value>(text.as_bytes()) else {
            c.protocol_errors.fetch_add(1, Relaxed);
            continue;
        };
        if let (Some(id), Some("message" | "system")) = (v["id"].as_u64(), v["type"].as_str()) {
            let s = pos.live(id);
            c.lost_connected.fetch_add(s.missing, Relaxed);
            c.dup_connected.fetch_add(s.repeated, Relaxed);
        } else if v["type"] == "error" {
            c.publish_errors.fetch_add(1, Relaxed);
            sh.error(format!("publisher got {v}"));
        }
    }
}

/// A churner: joins, stays a while, leaves, is away a while, rejoins with `?since=`.
async fn churner(
    a: Arc<SoakArgs>,
    room: String,
    user: String,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let c = &sh.counters;
    let mut pos = Position::default();
    let mut first = true;
    while !*stop.borrow() {
        let away = if first {
            // Spread the first joins over the first few seconds.
            rand::thread_rng().gen_range(0..5000)
        } else {
            rand::thread_rng().gen_range(a.away_min_ms..=a.away_max_ms.max(a.away_min_ms))
        };
        first = false;
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = sleep(Duration::from_millis(away)) => {}
        }
        let mut ws = match join(&a.c, &room, &user, &mut pos, &sh, false).await {
            Ok(ws) => ws,
            Err(e) => {
                c.connect_errors.fetch_add(1, Relaxed);
                sh.error(format!("{user}: {e}"));
                continue;
            }
        };
        c.churners_in.fetch_add(1, Relaxed);
        let stay_ms = rand::thread_rng()
            .gen_range(a.stay_min_s * 1000..=(a.stay_max_s.max(a.stay_min_s) * 1000));
        let until = Instant::now() + Duration::from_millis(stay_ms);
        let mut leave = stop.clone();
        let followed = timeout_at(
            until.into(),
            follow(&mut ws, &mut pos, &sh, false, &mut leave),
        );
        match followed.await {
            Ok(true) => {
                c.churner_drops.fetch_add(1, Relaxed);
                sh.error(format!("{user}: the hub ended a churner's socket"));
            }
            Ok(false) | Err(_) => {
                let _ = ws.close(None).await;
            }
        }
        c.churners_in.fetch_sub(1, Relaxed);
    }
}

/// The hub's own gauges from `GET /stats` (connections, history kept, queued), to tell a
/// leak from history filling up to its bound; `None` when it does not answer in 2 s.
async fn hub_stats(c: &Common) -> Option<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = c.url.strip_prefix("ws://")?.split('/').next()?.to_owned();
    let token = wire::mint_jwt(c.jwt_secret.as_deref()?, "soak-stats");
    let get = async {
        let mut s = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .ok()?;
        let req = format!(
            "GET /stats HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.take(1 << 20).read_to_end(&mut buf).await.ok()?;
        let at = wire::find(&buf, b"\r\n\r\n")?;
        let v: Value = serde_json::from_slice(&buf[at + 4..]).ok()?;
        Some(json!({
            "connections": v["connections"],
            "history_messages": v["history_messages"],
            "history_bytes": v["history_bytes"],
            "queued_bytes": v["queued_bytes"],
        }))
    };
    tokio::time::timeout(Duration::from_secs(2), get)
        .await
        .ok()
        .flatten()
}

/// Open fds of process `pid`.
fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

async fn sample(c: &Common, t0: Instant, sh: &Shared, label: &str) -> Value {
    let pid = c.server_pid;
    let hub = hub_stats(c).await;
    let c = &sh.counters;
    json!({
        "hub": hub,
        "t_s": t0.elapsed().as_secs(),
        "at": label,
        "server_rss_kb": pid.and_then(procfs::proc_rss_kb),
        "server_fds": pid.and_then(fd_count),
        "churners_in": c.churners_in.load(Relaxed),
        "published": c.published.load(Relaxed),
        "deliveries": c.deliveries.load(Relaxed),
    })
}

fn interval(t0: Instant, sh: &Shared) -> Value {
    let mut lat = std::mem::take(&mut *sh.latencies.lock().unwrap());
    lat.sort_unstable();
    json!({
        "t_s": t0.elapsed().as_secs(),
        "deliveries": lat.len(),
        "p50_ms": stats::percentile_ms(&lat, 0.50),
        "p99_ms": stats::percentile_ms(&lat, 0.99),
        "max_ms": stats::percentile_ms(&lat, 1.0),
    })
}

pub async fn run_soak(a: SoakArgs) -> Value {
    if a.c.timeout < a.duration + 60 {
        return json!({ "error": format!(
            "--timeout {} must be at least --duration + 60 ({})", a.c.timeout, a.duration + 60) });
    }
    if a.rooms == 0
        || !a.rate.is_finite()
        || a.rate <= 0.0
        || a.sample_secs == 0
        || a.interval_secs == 0
    {
        return json!({ "error": "--rooms, --rate, --sample-secs and --interval-secs must be > 0" });
    }
    if let Err(e) = Target::new(&a.c) {
        return json!({ "error": e });
    }
    let run_id = wire::random_u32();
    let prefix =
        a.c.room_prefix
            .clone()
            .unwrap_or_else(|| format!("soak-{run_id:08x}-"));
    let room = |i: usize| format!("{prefix}{}", i % a.rooms);
    let sh = Arc::new(Shared {
        prefix: wire::marker_prefix(run_id).into_bytes(),
        counters: Counters::default(),
        latencies: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    });
    let t0 = Instant::now();
    let mut samples = vec![sample(&a.c, t0, &sh, "before connecting").await];
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_readers_tx, stop_readers_rx) = watch::channel(false);

    // Readers first, then one publisher a room (publishing starts when all are in).
    let mut readers = Vec::new();
    let (ok, errors) = connect_in_batches(
        a.readers,
        a.c.connect_batch,
        Duration::from_millis(a.c.connect_pause_ms),
        Instant::now() + Duration::from_secs(120),
        |i| {
            let (tx, rx) = oneshot::channel();
            readers.push(tokio::spawn(reader(
                a.c.clone(),
                room(i),
                format!("soak-r{i}"),
                sh.clone(),
                tx,
                stop_readers_rx.clone(),
                None,
            )));
            rx
        },
    )
    .await;
    for e in errors {
        sh.error(e);
    }
    let per_room = a.rate / a.rooms as f64;
    let start_at = Instant::now() + Duration::from_secs(2);
    let mut publishers = Vec::new();
    for r in 0..a.rooms {
        let (tx, rx) = oneshot::channel();
        publishers.push(tokio::spawn(reader(
            a.c.clone(),
            room(r),
            format!("soak-p{r}"),
            sh.clone(),
            tx,
            stop_rx.clone(),
            Some((per_room, start_at, run_id)),
        )));
        if let Ok(Err(e)) = rx.await {
            sh.error(e);
        }
    }
    eprintln!(
        "soak: {ok}/{} readers and {} publishers in; churners joining",
        a.readers, a.rooms
    );
    let args = Arc::new(a.clone());
    let churners: Vec<_> = (0..a.churners)
        .map(|i| {
            tokio::spawn(churner(
                args.clone(),
                room(i),
                format!("soak-c{i}"),
                sh.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    // The run: samples and intervals until `--duration` is up.
    sleep(Duration::from_secs(2)).await;
    let _ = interval(t0, &sh); // connecting's latencies are not the run's
    let run_start = Instant::now();
    let end = run_start + Duration::from_secs(a.duration);
    samples.push(sample(&a.c, t0, &sh, "start").await);
    let mut intervals = Vec::new();
    let mut next_sample = run_start + Duration::from_secs(a.sample_secs);
    let mut next_interval = run_start + Duration::from_secs(a.interval_secs);
    while Instant::now() < end {
        let wake = next_sample.min(next_interval).min(end);
        tokio::time::sleep_until(wake.into()).await;
        if Instant::now() >= next_interval || Instant::now() >= end {
            let iv = interval(t0, &sh);
            eprintln!("soak: {iv}");
            intervals.push(iv);
            next_interval += Duration::from_secs(a.interval_secs);
        }
        if Instant::now() >= next_sample || Instant::now() >= end {
            let at = if Instant::now() >= end { "end" } else { "run" };
            let s = sample(&a.c, t0, &sh, at).await;
            eprintln!("soak: {s}");
            samples.push(s);
            next_sample += Duration::from_secs(a.sample_secs);
        }
    }

    // Wind down: churners leave and publishers stop; readers read what is still on its way.
    let _ = stop_tx.send(true);
    for c in churners {
        let _ = c.await;
    }
    // Publishers stop reading here: their last ids are not the room's end.
    for p in publishers {
        let _ = p.await;
    }
    let mut last_by_room: Vec<(String, u64)> = Vec::new();
    let mut sockets = Vec::new();
    sleep(Duration::from_secs(3)).await;
    let _ = stop_readers_tx.send(true);
    for r in readers {
        if let Ok(Some((room, last, ws))) = r.await {
            last_by_room.push((room, last));
            sockets.push(ws);
        }
    }
    // Every reader of a room must have reached the room's last id.
    let mut tail_lost = 0u64;
    let mut highest: std::collections::HashMap<&str, u64> = Default::default();
    for (room, last) in &last_by_room {
        let h = highest.entry(room.as_str()).or_default();
        *h = (*h).max(*last);
    }
    for (room, last) in &last_by_room {
        tail_lost += highest[room.as_str()] - last;
    }
    for mut ws in sockets {
        let _ = ws.close(None).await;
    }
    sleep(Duration::from_secs(2)).await;
    samples.push(sample(&a.c, t0, &sh, "after closing").await);

    let c = &sh.counters;
    let g = |x: &AtomicU64| x.load(Relaxed);
    let lost_connected = g(&c.lost_connected) + tail_lost;
    json!({
        "mode": "soak",
        "label": a.c.label,
        "duration_s": a.duration,
        "rooms": a.rooms,
        "readers": a.readers,
        "readers_joined": ok,
        "churners": a.churners,
        "rate": a.rate,
        "published": g(&c.published),
        "publish_errors": g(&c.publish_errors),
        "deliveries": g(&c.deliveries),
        "lost_connected": lost_connected,
        "lost_connected_at_end": tail_lost,
        "dup_connected": g(&c.dup_connected),
        "reader_drops": g(&c.reader_drops),
        "rejoins": g(&c.rejoins),
        "not_recovered": g(&c.not_recovered),
        "lost_rejoining": g(&c.lost_rejoining),
        "dup_rejoining": g(&c.dup_rejoining),
        "churner_drops": g(&c.churner_drops),
        "connect_errors": g(&c.connect_errors),
        "protocol_errors": g(&c.protocol_errors),
        "samples": samples,
        "intervals": intervals,
        "errors": *sh.errors.lock().unwrap(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_stream_counts_gaps_and_repeats() {
        let mut p = Position::default();
        assert_eq!(p.live(5), Seen::default());
        assert_eq!(p.live(6), Seen::default());
        assert_eq!(
            p.live(9),
            Seen {
                missing: 2,
                repeated: 0
            }
        );
        assert_eq!(
            p.live(9),
            Seen {
                missing: 0,
                repeated: 1
            }
        );
        assert_eq!(
            p.live(3),
            Seen {
                missing: 0,
                repeated: 1
            }
        );
        assert_eq!(p.last, Some(9));
    }

    #[test]
    fn a_first_join_starts_at_the_last_replayed_id() {
        let mut p = Position::default();
        let frame = json!({"type":"history","epoch":"7","messages":[{"id":3},{"id":4}]});
        assert_eq!(p.history(&frame, None), Ok(Seen::default()));
        assert_eq!((p.last, p.epoch.as_deref()), (Some(4), Some("7")));
    }

    #[test]
    fn a_rejoin_must_replay_exactly_the_ids_after_since() {
        let mut p = Position::default();
        let whole = json!({"type":"history","epoch":"7","recovered":true,
            "messages":[{"id":11},{"id":12},{"id":13}]});
        assert_eq!(p.history(&whole, Some(10)), Ok(Seen::default()));
        assert_eq!(p.last, Some(13));
        let gap = json!({"type":"history","recovered":true,"messages":[{"id":15}]});
        assert_eq!(
            p.history(&gap, Some(13)),
            Ok(Seen {
                missing: 1,
                repeated: 0
            })
        );
        let lost = json!({"type":"history","recovered":false,"messages":[{"id":40}]});
        assert!(p.history(&lost, Some(15)).is_err());
        assert_eq!(p.last, Some(40));
    }
}
