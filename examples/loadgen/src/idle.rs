//! `loadgen idle`: open N connections over R rooms, hold them, and report how much the
//! server's resident memory grew per connection.

use crate::cli::{IdleArgs, Protocol};
use crate::clock::deadlines;
use crate::connect::{connect_in_batches, Target};
use crate::procfs::{proc_anon_kb, proc_rss_kb, self_rss_kb, RssWatch};
use crate::report::IdleResult;
use crate::wire;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

/// One idle connection: where it goes, and what it shares with the run.
struct IdleConn {
    target: Arc<Target>,
    room: String,
    user: String,
    connect_timeout: Duration,
    stop: watch::Receiver<bool>,
    /// Counts connections the server closed during the hold.
    closed: Arc<AtomicUsize>,
    /// Marked messages to expect (0: none looked for), and where they are counted.
    marked: Option<Arc<Marked>>,
}

/// Marked messages received by every connection of the run (`--expect-marked`).
pub struct Marked {
    /// How many each connection should receive.
    pub expect: usize,
    /// Connections that received all of them.
    pub complete: AtomicUsize,
    /// (seq, latency in µs) of every marked delivery.
    pub seen: std::sync::Mutex<Vec<(u32, u32)>>,
}

impl Marked {
    /// Takes one text frame; true when it was a marked message.
    fn take(&self, text: &[u8]) -> bool {
        if wire::is_history(text) {
            return false;
        }
        let Some(m) = wire::any_marker(text) else {
            return false;
        };
        let now = crate::clock::machine_ns();
        let us = (now.saturating_sub(m.sent_ns) / 1000).min(u32::MAX as u64) as u32;
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((m.seq as u32, us));
        }
        true
    }
}

/// Join, report on `ready`, then only answer Socket.IO pings until the stop signal.
async fn idle_conn(conn: IdleConn, ready: oneshot::Sender<Result<(), String>>) {
    let IdleConn {
        target,
        room,
        user,
        connect_timeout,
        mut stop,
        closed,
        marked,
    } = conn;
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
    let mut got = 0usize;
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            f = ws.next() => match f {
                Some(Ok(Message::Text(t))) if is_sio && t.as_str() == "2" => {
                    if ws.send(Message::text("3")).await.is_err() { closed.fetch_add(1, Ordering::Relaxed); return; }
                }
                Some(Ok(Message::Text(t))) => {
                    if let Some(m) = &marked {
                        if m.take(t.as_bytes()) {
                            got += 1;
                            if got == m.expect {
                                m.complete.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => { closed.fetch_add(1, Ordering::Relaxed); return; }
            }
        }
    }
    let _ = timeout(Duration::from_millis(100), ws.close(None)).await;
}

/// Run `loadgen idle` and return its JSON line.
pub async fn run_idle(a: IdleArgs) -> Value {
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let closed = Arc::new(AtomicUsize::new(0));
    let marked = (a.expect_marked > 0).then(|| {
        Arc::new(Marked {
            expect: a.expect_marked,
            complete: AtomicUsize::new(0),
            seen: std::sync::Mutex::new(Vec::new()),
        })
    });
    let rss_before = c.server_pid.and_then(proc_rss_kb);
    let anon_before = c.server_pid.and_then(proc_anon_kb);
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
            let conn = IdleConn {
                target: target.clone(),
                room: format!("{prefix}{}", i % rooms),
                user: format!("{}{i}", a.user_prefix),
                connect_timeout: Duration::from_millis(c.connect_timeout_ms),
                stop: stop_rx.clone(),
                closed: closed.clone(),
                marked: marked.clone(),
            };
            handles.push(tokio::spawn(idle_conn(conn, tx)));
            rx
        },
    )
    .await;
    let connect_s = t0.elapsed().as_secs_f64();
    // For scripts that start senders once every process has joined (stderr, not the JSON).
    eprintln!("idle: {ok} joined in {connect_s:.1} s");
    // Hold; sample RSS every 250 ms, report the last sample (and the max).
    let hold_end = (Instant::now() + Duration::from_secs(a.hold_secs)).min(hard_deadline);
    let mut rss = RssWatch::new(c.server_pid);
    let mut rss_held = rss.first;
    let mut anon_held = c.server_pid.and_then(proc_anon_kb);
    let mut said_complete = false;
    while Instant::now() < hold_end {
        sleep(Duration::from_millis(250)).await;
        if let Some(m) = &marked {
            // Every joined connection got every marked message: the hold is over (or, with
            // --stop-file, it is said on stderr and the hold lasts until the file exists).
            let still = ok.saturating_sub(closed.load(Ordering::Relaxed));
            if !said_complete && m.complete.load(Ordering::Relaxed) >= still {
                said_complete = true;
                eprintln!("idle: marked complete");
                if a.stop_file.is_none() {
                    break;
                }
            }
        }
        if a.stop_file.as_ref().is_some_and(|f| f.exists()) {
            break;
        }
        if let Some(v) = rss.sample() {
            rss_held = Some(v);
            anon_held = c.server_pid.and_then(proc_anon_kb).or(anon_held);
        }
    }
    let self_after = self_rss_kb();
    let still_open = ok.saturating_sub(closed.load(Ordering::Relaxed));
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = tokio::time::timeout_at(end_deadline.into(), h).await;
    }
    IdleResult {
        args: &a,
        conns: ok,
        still_open,
        rooms,
        connect_s,
        rss_before,
        rss_held,
        rss_max: rss.max,
        anon_before,
        anon_held,
        self_before,
        self_after,
        marked: marked.as_deref(),
        errors,
    }
    .into_json()
}
