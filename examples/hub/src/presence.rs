//! `/presence`: who is online, counted by user (`sub`), not by socket.
//!
//! A user's first socket broadcasts `online` to everyone on `/presence`
//! (itself included); more sockets of the same user do not; `offline` goes
//! out when the last one closes. Changes are started under the registry
//! lock (the sends are async: the lock is never held while Redis answers),
//! so a quick reconnect can never be seen as online-then-offline.
//!
//! With several hubs on one Redis ("shared" mode) "first" and "last" mean
//! anywhere: every `/presence` socket is in the core group [`PRESENCE_GROUP`]
//! with its user, so `Hub::is_present_async` answers for every node. Status frames
//! are group sends, so they reach every node; each node learns the names and
//! statuses of other nodes' users from them (a watcher connection in the
//! group), and keeps each user's last status frame in a history-only group
//! ([`record_group`]) for hubs that start later. A node that dies (SIGKILL)
//! sends nothing: its users drop out of core presence within the presence
//! TTL, and every node's sweep tells its own sockets they went `offline`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use channelbox::{HistoryQuery, Kind};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use crate::chat::frame_type;
use crate::error::Refusal;
use crate::features;
use crate::frames::{self, PRESENCE_GROUP};
use crate::server::AppState;
use crate::session::Session;
use crate::socket::{serve_frames, Socket};

/// Statuses a client may set (only the hub says `offline`).
const CLIENT_STATUSES: [&str; 3] = ["online", "away", "busy"];

/// Users with at least one `/presence` socket.
#[derive(Debug, Default)]
pub struct Registry {
    /// This node's users (every user, when the hub runs alone).
    users: Mutex<BTreeMap<String, Entry>>,
    /// Shared mode: users online on any node, as this node learned them
    /// (status frames, its own users, records), and those the sweep saw
    /// missing from core presence once (offline at the next sweep).
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    users: BTreeMap<String, Shown>,
    missing: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Shown {
    username: String,
    status: &'static str,
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
    /// The user id (`sub`).
    pub id: String,
    /// The name to show.
    pub username: String,
    /// `online`, `away` or `busy`.
    pub status: &'static str,
}

impl Registry {
    /// Users online now, by id (shared mode: on every node, as far as this
    /// node knows without asking Redis).
    pub fn users(&self) -> Vec<UserStatus> {
        // Lock order: `users`, then `known`.
        let users = self.users.lock();
        let mut out: BTreeMap<String, (String, &'static str)> = self
            .known
            .lock()
            .users
            .iter()
            .map(|(id, s)| (id.clone(), (s.username.clone(), s.status)))
            .collect();
        for (id, e) in users.iter() {
            out.insert(id.clone(), (e.username.clone(), e.status));
        }
        out.into_iter()
            .map(|(id, (username, status))| UserStatus {
                id,
                username,
                status,
            })
            .collect()
    }

    /// Distinct users online.
    pub fn count(&self) -> usize {
        // Lock order: `users`, then `known`.
        let users = self.users.lock();
        let known = self.known.lock();
        known.users.len()
            + users
                .keys()
                .filter(|u| !known.users.contains_key(*u))
                .count()
    }

    /// The status of `sub`, if online.
    pub fn status_of(&self, sub: &str) -> Option<&'static str> {
        if let Some(e) = self.users.lock().get(sub) {
            return Some(e.status);
        }
        self.known.lock().users.get(sub).map(|s| s.status)
    }

    /// Shared mode: remembers what a status frame says.
    fn learn(&self, sub: &str, username: &str, status: &str) {
        let mut known = self.known.lock();
        known.missing.remove(sub);
        if status == "offline" {
            known.users.remove(sub);
        } else if let Some(status) = CLIENT_STATUSES.iter().copied().find(|s| *s == status) {
            known.users.insert(
                sub.to_owned(),
                Shown {
                    username: username.to_owned(),
                    status,
                },
            );
        }
    }
}

/// True when hubs share presence through Redis.
fn shared(state: &AppState) -> bool {
    state.hub.config().engine == channelbox::EngineKind::Redis
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

/// The history-only group that keeps a user's last status frame (shared
/// mode), so a hub that starts later knows their name and status.
pub fn record_group(sub: &str) -> String {
    format!("presence-user:{sub}")
}

/// Starts a broadcast to everyone on `/presence` (every node) and returns
/// what is left to await; call it under the registry lock, await after. In
/// shared mode the frame is also kept as the user's record.
fn broadcast(state: &AppState, sub: &str, frame: bytes::Bytes) -> channelbox::SendFuture {
    if shared(state) {
        // Not awaited: best effort, and Redis runs it before the broadcast
        // (both go out in this order on the engine's connection).
        drop(
            state
                .hub
                .group_send_async(&record_group(sub), Kind::Json, frame.clone(), true),
        );
    }
    state
        .hub
        .group_send_async(PRESENCE_GROUP, Kind::Json, frame, false)
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
        Box::pin(disconnect(session)).await;
        socket.finish(&end).await;
    } else {
        Box::pin(disconnect(session)).await;
    }
}

/// Joins `/presence` (`online` for a user's first socket) and sends the
/// `users` frame; false when the socket is gone.
async fn join(session: &Session, socket: &mut Socket) -> bool {
    let state = &session.state;
    let claims = &session.claims;
    let shared = shared(state);
    // Shared mode: online anywhere already? (Asked before joining, which
    // makes this socket count.)
    let elsewhere = shared
        && state
            .hub
            .is_present_async(PRESENCE_GROUP, &claims.sub)
            .await;
    if session.conn.join(PRESENCE_GROUP).is_err()
        || session
            .conn
            .join(&frames::notify_group(&claims.sub))
            .is_err()
    {
        return false;
    }
    let (users, send) = {
        let mut users = state.presence.users.lock();
        let status = if elsewhere {
            let known = state.presence.known.lock();
            known.users.get(&claims.sub).map_or("online", |s| s.status)
        } else {
            "online"
        };
        let entry = users.entry(claims.sub.clone()).or_insert_with(|| Entry {
            username: claims.username.clone(),
            status,
            sockets: 0,
        });
        entry.sockets += 1;
        let send = (entry.sockets == 1 && !elsewhere).then(|| {
            let frame = status_frame(&claims.sub, &claims.username, "online");
            broadcast(state, &claims.sub, frame)
        });
        let list = if shared {
            Vec::new()
        } else {
            users
                .iter()
                .map(|(id, e)| UserStatus {
                    id: id.clone(),
                    username: e.username.clone(),
                    status: e.status,
                })
                .collect::<Vec<_>>()
        };
        (list, send)
    };
    if shared {
        let status = state.presence.status_of(&claims.sub).unwrap_or("online");
        state.presence.learn(&claims.sub, &claims.username, status);
    }
    if let Some(send) = send {
        let _ = send.await;
    }
    let users = if shared { everyone(state).await } else { users };
    let frame = frames::encode(&serde_json::json!({
        "type": "users", "count": users.len(), "users": users,
    }));
    socket.send_now(&frame).await.is_ok()
}

/// Shared mode: the users online on any node (core presence), with the
/// names and statuses this node knows (its own users, frames it saw, or
/// the user's record).
async fn everyone(state: &AppState) -> Vec<UserStatus> {
    let ids = state.hub.presence_async(PRESENCE_GROUP).await;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let local = state
            .presence
            .users
            .lock()
            .get(&id)
            .map(|e| (e.username.clone(), e.status));
        let known = local.or_else(|| {
            state
                .presence
                .known
                .lock()
                .users
                .get(&id)
                .map(|s| (s.username.clone(), s.status))
        });
        let (username, status) = match known {
            Some(k) => k,
            None => match record(state, &id).await {
                Some((username, status)) => {
                    state.presence.learn(&id, &username, status);
                    (username, status)
                }
                None => (id.clone(), "online"),
            },
        };
        out.push(UserStatus {
            id,
            username,
            status,
        });
    }
    out
}

/// Shared mode: a user's last status frame, from their record.
async fn record(state: &AppState, sub: &str) -> Option<(String, &'static str)> {
    let query = HistoryQuery {
        limit: 1,
        ..HistoryQuery::default()
    };
    let page = state
        .hub
        .history_async(&record_group(sub), query)
        .await
        .ok()?;
    let (_, username, status) = parse_status(page.messages.last()?.data())?;
    let status = CLIENT_STATUSES.iter().copied().find(|s| *s == status)?;
    Some((username, status))
}

/// (sub, username, status) of a status frame.
fn parse_status(data: &[u8]) -> Option<(String, String, String)> {
    let v: Value = serde_json::from_slice(data).ok()?;
    if v.get("type")?.as_str()? != "status" {
        return None;
    }
    Some((
        v.get("user_id")?.as_str()?.to_owned(),
        v.get("user")?.as_str()?.to_owned(),
        v.get("status")?.as_str()?.to_owned(),
    ))
}

/// Forgets one socket; the user's last one (anywhere, in shared mode) makes
/// them `offline`.
async fn disconnect(session: &Session) {
    let state = &session.state;
    let claims = &session.claims;
    let _ = session.conn.leave(PRESENCE_GROUP);
    let shutting_down = state
        .shutting_down
        .load(std::sync::atomic::Ordering::SeqCst);
    if !shared(state) {
        // Alone: decided and sent under the lock, as a join is.
        let send = {
            let mut users = state.presence.users.lock();
            let Some(username) = forget_socket(&mut users, &claims.sub) else {
                return;
            };
            if shutting_down {
                return;
            }
            broadcast(
                state,
                &claims.sub,
                status_frame(&claims.sub, &username, "offline"),
            )
        };
        let _ = send.await;
        return;
    }
    let Some(username) = forget_socket(&mut state.presence.users.lock(), &claims.sub) else {
        return;
    };
    // Still on another node? Asked without the lock (a Redis round trip);
    // core presence no longer counts this node: the leave above removed it.
    if shutting_down
        || state
            .hub
            .is_present_async(PRESENCE_GROUP, &claims.sub)
            .await
    {
        return;
    }
    let send = {
        let users = state.presence.users.lock();
        if users.contains_key(&claims.sub) {
            // A new socket of the user came meanwhile: still online.
            return;
        }
        state.presence.learn(&claims.sub, &username, "offline");
        broadcast(
            state,
            &claims.sub,
            status_frame(&claims.sub, &username, "offline"),
        )
    };
    let _ = send.await;
}

/// Counts one socket of `sub` fewer; its username when it was the last.
fn forget_socket(users: &mut BTreeMap<String, Entry>, sub: &str) -> Option<String> {
    let entry = users.get_mut(sub)?;
    entry.sockets -= 1;
    if entry.sockets > 0 {
        return None;
    }
    users.remove(sub).map(|e| e.username)
}

/// Shared mode: follows the status frames every node sends (a connection of
/// this node in [`PRESENCE_GROUP`] with no user, so it is not counted), and
/// every third of the presence TTL tells this node's sockets which users
/// vanished from core presence without an `offline` (their node died).
pub async fn watch(state: Arc<AppState>) {
    let ttl = Duration::from_secs(state.hub.config().presence_ttl_seconds.max(1));
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut sweep = tokio::time::interval(every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    'reopen: loop {
        if state
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let conn = match state.hub.open(None, None) {
            Ok(c) if c.join(PRESENCE_GROUP).is_ok() => c,
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                got = conn.recv_batch_async(&mut batch, 256) => {
                    if got.is_err() {
                        // Closed (a lost Redis subscription): start over.
                        let _ = conn.close();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue 'reopen;
                    }
                    for m in batch.drain(..) {
                        if let Some((sub, username, status)) = parse_status(m.data()) {
                            state.presence.learn(&sub, &username, &status);
                            if status == "offline" {
                                correct_offline(&state, &sub).await;
                            }
                        }
                    }
                }
                _ = sweep.tick() => sweep_vanished(&state).await,
            }
        }
    }
}

/// An `offline` for a user who has a socket here (their last tab on
/// another node closed while one opened here, and the two checks crossed):
/// this node says they are online after all.
async fn correct_offline(state: &AppState, sub: &str) {
    let send = {
        let users = state.presence.users.lock();
        let Some(entry) = users.get(sub) else {
            return;
        };
        state.presence.learn(sub, &entry.username, entry.status);
        broadcast(state, sub, status_frame(sub, &entry.username, entry.status))
    };
    let _ = send.await;
}

/// Users this node believes online that core presence has missed twice in a
/// row (so an `offline` frame still on its way wins) go `offline` for this
/// node's sockets only: every node tells its own, so nobody hears it twice.
async fn sweep_vanished(state: &AppState) {
    // `Hub::presence` falls back to this node's view while Redis is down:
    // no sweep then (sockets that lost Redis are closed with 1012 anyway).
    let connected = || state.hub.stats().engine_connected == 1;
    if !connected() {
        return;
    }
    let present = state.hub.presence_async(PRESENCE_GROUP).await;
    let present: BTreeSet<String> = present.into_iter().collect();
    if !connected() {
        return;
    }
    let local: BTreeSet<String> = state.presence.users.lock().keys().cloned().collect();
    let mut gone = Vec::new();
    {
        let mut known = state.presence.known.lock();
        let Known { users, missing } = &mut *known;
        let vanished: BTreeSet<String> = users
            .keys()
            .filter(|u| !present.contains(*u) && !local.contains(*u))
            .cloned()
            .collect();
        missing.retain(|u| vanished.contains(u));
        for sub in vanished {
            if missing.remove(&sub) {
                if let Some(s) = users.remove(&sub) {
                    gone.push((sub, s.username));
                }
            } else {
                missing.insert(sub);
            }
        }
    }
    if gone.is_empty() {
        return;
    }
    let sockets = state.presence_sessions();
    for (sub, username) in gone {
        tracing::info!(user = %sub, "presence: gone without offline (its hub died?)");
        let frame = status_frame(&sub, &username, "offline");
        for id in &sockets {
            let _ = state.hub.conn_send(*id, Kind::Json, frame.clone());
        }
    }
}

pub(crate) async fn handle_text(session: &Session, text: &str) {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return session.refuse(&Refusal::bad_request("not JSON")),
    };
    let ty = match frame_type(&value) {
        Ok(ty) => ty,
        Err(r) => return session.refuse(&r),
    };
    if ty != "status" {
        return Box::pin(features::handle_frame(session, ty, &value)).await;
    }
    let Some(status) = value.get("status").and_then(Value::as_str) else {
        return session.refuse(&Refusal::bad_request("missing field: status"));
    };
    let Some(status) = CLIENT_STATUSES.iter().copied().find(|s| *s == status) else {
        return session.refuse(&Refusal::bad_request("status must be online, away or busy"));
    };
    let state = &session.state;
    let claims = &session.claims;
    let send = {
        let mut users = state.presence.users.lock();
        let Some(entry) = users.get_mut(&claims.sub) else {
            return;
        };
        if entry.status == status {
            // Nothing changed: a repeated status is not news to anyone.
            return;
        }
        entry.status = status;
        if shared(state) {
            state.presence.learn(&claims.sub, &entry.username, status);
        }
        broadcast(
            state,
            &claims.sub,
            status_frame(&claims.sub, &entry.username, status),
        )
    };
    let _ = send.await;
}
