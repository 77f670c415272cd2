//! A publisher: one per room; on each round's command it sends `--messages` marked messages,
//! back to back or at `--rate`, and says when it is done.

use super::Member;
use crate::cli::Protocol;
use crate::clock::now_ns;
use crate::wire;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

/// What the run tells a publisher.
pub enum PubCmd {
    /// Publish round N's messages.
    Round(usize),
}

/// A publisher's report that it finished a round: the round, and its send error if any.
pub type RoundDone = (usize, Result<(), String>);

/// How a publisher sends: `--rate` (none: back to back) and `--payload-bytes`.
#[derive(Clone, Copy)]
pub struct Pace {
    pub rate: Option<f64>,
    pub payload_bytes: usize,
}

/// Join, report on `ready`, then publish a round per command until the commands end or the
/// stop signal; each round's outcome goes to `done`.
pub async fn publisher(
    member: Member,
    ready: oneshot::Sender<Result<(), String>>,
    mut cmds: mpsc::Receiver<PubCmd>,
    done: mpsc::Sender<RoundDone>,
    pace: Pace,
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
    let pad = "x".repeat(pace.payload_bytes);
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
            if let Some(r) = pace.rate {
                sleep_until(start + Duration::from_secs_f64(seq as f64 / r)).await;
            }
            let t = now_ns();
            rs.first_send_ns.fetch_min(t, Ordering::Relaxed);
            let body = wire::body(shared.run_id, round, seq, t, &pad);
            let frame = wire::publish_frame(target.protocol, body);
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
