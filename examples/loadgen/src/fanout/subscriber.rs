//! A subscriber: joins its room, then counts every marked message of this run per round
//! until told to stop. A stuck one (`--slow-subs`) joins and never reads; at the end it
//! reports how the server treated it.

use super::{Member, Shared};
use crate::cli::Protocol;
use crate::clock::now_ns;
use crate::connect::Ws;
use crate::stats::SubRound;
use crate::wire;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Join, report on `ready`, then read until the stop signal. Returns the per-round records,
/// or `None` for a stuck reader or a connection that never joined.
pub async fn subscriber(
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
        stop,
        ..
    } = member;
    if slow {
        let _ = ready.send(Ok(()));
        stuck(ws, &shared, stop).await;
        return None;
    }
    shared.room_subs[room_idx].fetch_add(1, Ordering::Relaxed);
    let _ = ready.send(Ok(()));
    let is_sio = target.protocol == Protocol::Socketio;
    Some(read(ws, &shared, &user, is_sio, stop).await)
}

/// Joined, then never read again: the server's writes to it back up. After the stop signal,
/// read what the server left for it (bounded: 2 s) to see how the server treated it: closed
/// it (and with which code), reset it, or kept it open (everything buffered).
async fn stuck(mut ws: Ws, shared: &Shared, mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
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
}

/// The reading loop: every frame carrying this run's marker is counted in its round, once.
async fn read(
    mut ws: Ws,
    shared: &Shared,
    user: &str,
    is_sio: bool,
    mut stop: watch::Receiver<bool>,
) -> Vec<SubRound> {
    let m = shared.messages;
    let mut rounds: Vec<SubRound> = (0..shared.rounds.len()).map(|_| SubRound::new(m)).collect();
    let marker = wire::marker_prefix(shared.run_id);
    let marker = marker.as_bytes();
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
                    Some(Err(e)) => { shared.error(format!("{user}: {}", describe_ws_error(&e))); break; }
                    None => { shared.error(format!("{user}: server closed")); break; }
                };
                let bytes: &[u8] = match &frame {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    Message::Close(c) => { shared.error(format!("{user}: {}", describe_close(c.as_ref()))); break; }
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
                if !rounds[mk.round].record(mk.seq, mk.sent_ns, now) { continue; }
                let rs = &shared.rounds[mk.round];
                rs.delivered.fetch_add(1, Ordering::Relaxed);
                rs.last_recv_ns.fetch_max(now, Ordering::Relaxed);
            }
            _ = &mut stopped => break,
        }
    }
    let _ = timeout(Duration::from_millis(200), ws.close(None)).await;
    rounds
}

/// "closed by the server: 4008 too slow: ...": a close frame as the report shows it.
pub fn describe_close(c: Option<&CloseFrame>) -> String {
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
pub fn describe_ws_error(e: &WsError) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn a_close_shows_its_code_and_reason() {
        let f = CloseFrame {
            code: CloseCode::Library(4008),
            reason: "too slow".into(),
        };
        assert_eq!(
            describe_close(Some(&f)),
            "closed by the server: 4008 too slow"
        );
        assert_eq!(describe_close(None), "closed by the server (no code)");
    }

    #[test]
    fn a_reset_reads_as_the_server_giving_up() {
        let reset = WsError::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(
            describe_ws_error(&reset),
            "reset by the server (no close frame)"
        );
        let no_close = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(
            describe_ws_error(&no_close),
            "reset by the server (no close frame)"
        );
        assert_eq!(
            describe_ws_error(&WsError::ConnectionClosed),
            "read: Connection closed normally"
        );
    }
}
