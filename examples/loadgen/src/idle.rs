//! `loadgen idle`: open N connections over R rooms, hold them, and report how much the
//! server's resident memory grew per connection.

use crate::cli::{IdleArgs, Protocol};
use crate::clock::deadlines;
use crate::connect::{connect_in_batches, Target};
use crate::procfs::{proc_rss_kb, self_rss_kb, RssWatch};
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
    let rss_before = c.server_pid.and_then(proc_rss_kb);
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
                user: format!("i{i}"),
                connect_timeout: Duration::from_millis(c.connect_timeout_ms),
                stop: stop_rx.clone(),
                closed: closed.clone(),
            };
            handles.push(tokio::spawn(idle_conn(conn, tx)));
            rx
        },
    )
    .await;
    let connect_s = t0.elapsed().as_secs_f64();
    // Hold; sample RSS every 250 ms, report the last sample (and the max).
    let hold_end = (Instant::now() + Duration::from_secs(a.hold_secs)).min(hard_deadline);
    let mut rss = RssWatch::new(c.server_pid);
    let mut rss_held = rss.first;
    while Instant::now() < hold_end {
        sleep(Duration::from_millis(250)).await;
        if let Some(v) = rss.sample() {
            rss_held = Some(v);
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
        self_before,
        self_after,
        errors,
    }
    .into_json()
}
