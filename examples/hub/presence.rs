//! `/presence`: who is online, counted by user (`sub`), not by socket.
//!
//! A user's first socket broadcasts `online` to everyone on `/presence`
//! (itself included); more sockets of the same user do not; `offline` goes
//! out when the last one closes. Changes are broadcast under the registry
//! lock, so a quick reconnect can never be seen as online-then-offline.

use std::collections::BTreeMap;

use channelbox::Kind;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use crate::chat::frame_type;
use crate::features;
use crate::frames::{self, PRESENCE_GROUP};
use crate::server::{AppState, Session};
use crate::socket::{serve_frames, Socket};

/// Statuses a client may set (only the hub says `offline`).
const CLIENT_STATUSES: [&str; 3] = ["online", "away", "busy"];

/// Users with at least one `/presence` socket.
#[derive(Debug, Default)]
pub struct Registry {
    users: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    username: String,
    status: &'static str,
    /// Open `/presence` sockets of this user.
    sockets: usize,
}

/// One entry of the `users` frame.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UserStatus {
    pub id: String,
    pub username: String,
    pub status: &'static str,
}

impl Registry {
    /// Users online now, by id.
    pub fn users(&self) -> Vec<UserStatus> {
        self.users
            .lock()
            .iter()
            .map(|(id, e)| UserStatus {
                id: id.clone(),
                username: e.username.clone(),
                status: e.status,
            })
            .collect()
    }

    /// Distinct users online.
    pub fn count(&self) -> usize {
        self.users.lock().len()
    }

    /// The status of `sub`, if online.
    pub fn status_of(&self, sub: &str) -> Option<&'static str> {
        self.users.lock().get(sub).map(|e| e.status)
    }
}

fn status_frame(sub: &str, username: &str, status: &str) -> bytes::Bytes {
    frames::encode(&serde_json::json!({
        "type": "status",
        "user": username,
        "user_id": sub,
        "status": status,
        "timestamp": frames::timestamp(frames::now_ms()),
    }))
}

fn broadcast(state: &AppState, frame: bytes::Bytes) {
    let _ = state
        .hub
        .group_send(PRESENCE_GROUP, Kind::Json, frame, false);
}

/// Serves one `/presence` socket until it closes.
pub async fn serve(session: &Session, socket: &mut Socket) {
    // Boxed: the join's state (the users frame) is gone once it is sent.
    let joining = Box::pin(join(session, socket));
    if joining.await {
        let end = serve_frames(session, socket, |text| {
            Box::pin(async move { handle_text(session, text.as_str()).await })
        })
        .await;
        disconnect(session);
        socket.finish(&end).await;
    } else {
        disconnect(session);
    }
}

/// Joins `/presence` (`online` for a user's first socket) and sends the
/// `users` frame; false when the socket is gone.
async fn join(session: &Session, socket: &mut Socket) -> bool {
    let state = &session.state;
    let claims = &session.claims;
    if session.conn.join(PRESENCE_GROUP).is_err()
        || session
            .conn
            .join(&frames::notify_group(&claims.sub))
            .is_err()
    {
        return false;
    }
    let users = {
        let mut users = state.presence.users.lock();
        let entry = users.entry(claims.sub.clone()).or_insert_with(|| Entry {
            username: claims.username.clone(),
            status: "online",
            sockets: 0,
        });
        entry.sockets += 1;
        if entry.sockets == 1 {
            broadcast(state, status_frame(&claims.sub, &claims.username, "online"));
        }
        users
            .iter()
            .map(|(id, e)| UserStatus {
                id: id.clone(),
                username: e.username.clone(),
                status: e.status,
            })
            .collect::<Vec<_>>()
    };
    let frame = frames::encode(&serde_json::json!({
        "type": "users", "count": users.len(), "users": users,
    }));
    socket.send_now(&frame).await.is_ok()
}

/// Forgets one socket; the user's last one makes them `offline`.
fn disconnect(session: &Session) {
    let state = &session.state;
    let claims = &session.claims;
    let _ = session.conn.leave(PRESENCE_GROUP);
    let mut users = state.presence.users.lock();
    let Some(entry) = users.get_mut(&claims.sub) else {
        return;
    };
    entry.sockets -= 1;
    if entry.sockets == 0 {
        let username = entry.username.clone();
        users.remove(&claims.sub);
        if !state
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            broadcast(state, status_frame(&claims.sub, &username, "offline"));
        }
    }
}

async fn handle_text(session: &Session, text: &str) {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return session.send_error("bad_request", "not JSON"),
    };
    let ty = match frame_type(&value) {
        Ok(ty) => ty,
        Err(r) => return session.send_error(r.code, &r.detail),
    };
    if ty != "status" {
        return Box::pin(features::handle_frame(session, ty, &value)).await;
    }
    let Some(status) = value.get("status").and_then(Value::as_str) else {
        return session.send_error("bad_request", "missing field: status");
    };
    let Some(status) = CLIENT_STATUSES.iter().copied().find(|s| *s == status) else {
        return session.send_error("bad_request", "status must be online, away or busy");
    };
    let state = &session.state;
    let claims = &session.claims;
    let mut users = state.presence.users.lock();
    if let Some(entry) = users.get_mut(&claims.sub) {
        entry.status = status;
        broadcast(state, status_frame(&claims.sub, &entry.username, status));
    }
}
