//! `loadgen send`: one user joins a room and sends marked messages stamped with the machine's
//! monotonic clock ([`clock::machine_ns`]); `loadgen idle --expect-marked` connections in other
//! processes (on other hubs of one Redis, say) time each delivery against it.

use crate::cli::SendArgs;
use crate::clock::{self, deadlines};
use crate::connect::Target;
use crate::wire;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::time::{sleep, timeout_at};
use tokio_tungstenite::tungstenite::Message;

/// Run `loadgen send` and return its JSON line.
pub async fn run_send(a: SendArgs) -> Value {
    let c = &a.c;
    let target = match Target::new(c) {
        Ok(t) => t,
        Err(e) => return json!({ "mode": "send", "error": e }),
    };
    let (work_deadline, _) = deadlines(c.timeout);
    let run_id = wire::random_u32();
    let prefix = wire::marker_prefix(run_id);
    let pad = "x".repeat(a.payload_bytes);
    let mut ws = match tokio::time::timeout(
        Duration::from_millis(c.connect_timeout_ms),
        target.connect(&a.room, &a.user),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return json!({ "mode": "send", "error": e }),
        Err(_) => return json!({ "mode": "send", "error": "connect/join timed out" }),
    };
    let mut sent_at = Vec::with_capacity(a.messages);
    let mut echoed = 0usize;
    let mut errors = Vec::new();
    let start = Instant::now();
    for seq in 0..a.messages {
        if seq > 0 {
            // Read (and count our own echoes) until the next send is due: message `seq` goes
            // at start + seq x interval, so the rate holds whatever a send took.
            let next = start + Duration::from_millis(a.interval_ms * seq as u64);
            while let Ok(Some(Ok(m))) = timeout_at(next.into(), ws.next()).await {
                echoed += own_echo(&m, &prefix);
            }
        }
        if Instant::now() >= work_deadline {
            errors.push(format!("deadline before message {seq}"));
            break;
        }
        let sent_ns = clock::machine_ns();
        let frame = wire::publish_frame(c.protocol, wire::body(run_id, 0, seq, sent_ns, &pad));
        if let Err(e) = ws.send(Message::text(frame)).await {
            errors.push(format!("send {seq}: {e}"));
            break;
        }
        sent_at.push(sent_ns);
    }
    // Our own copies come back through the room too: wait for them (bounded).
    let end = (Instant::now() + Duration::from_secs(10)).min(work_deadline);
    while echoed < sent_at.len() {
        match timeout_at(end.into(), ws.next()).await {
            Ok(Some(Ok(m))) => echoed += own_echo(&m, &prefix),
            _ => break,
        }
    }
    sleep(Duration::from_millis(50)).await;
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    json!({
        "mode": "send",
        "label": c.label,
        "url": c.url,
        "room": a.room,
        "run_id": format!("{run_id:08x}"),
        "sent": sent_at.len(),
        "sent_machine_ns": sent_at,
        "echoed": echoed,
        "errors": errors,
    })
}

/// 1 when `m` is a chat message carrying one of this run's markers.
fn own_echo(m: &Message, prefix: &str) -> usize {
    match m {
        Message::Text(t) if !wire::is_history(t.as_bytes()) => {
            usize::from(wire::find(t.as_bytes(), prefix.as_bytes()).is_some())
        }
        _ => 0,
    }
}
