//! Per-room moderation: kick, ban (for a while or for good), mute, unban.
//!
//! A room's owner or an admin moderates it. The target's sockets in the
//! room are closed (4000 kicked, 4003 banned), a banned user is refused at
//! the upgrade (403), a muted one gets `muted` errors for its messages, and
//! the room is told with a saved `system` frame carrying `action` and `user`.

use std::time::{Duration, Instant};

use channelbox::Kind;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use super::Refusal;
use crate::frames;
use crate::server::Session;

/// Close code for a kicked socket (4000-4999 is the application's range;
/// 4003 is taken by bans and other refusals).
pub const KICK_CLOSE_CODE: u16 = 4000;
/// Close code for a banned socket.
pub const BAN_CLOSE_CODE: u16 = 4003;
/// A mute without `duration_s` lasts this long.
const DEFAULT_MUTE: Duration = Duration::from_secs(10 * 60);
/// Longest ban or mute given in seconds (longer is refused as bad input).
const MAX_DURATION_S: u64 = 10 * 365 * 24 * 3600;

/// Until when a sanction holds (`None`: until lifted).
type Until = Option<Instant>;

/// Bans and mutes by (room, user id).
#[derive(Debug, Default)]
pub struct Moderation {
    bans: Mutex<FxHashMap<(String, String), Until>>,
    mutes: Mutex<FxHashMap<(String, String), Until>>,
}

fn active(map: &Mutex<FxHashMap<(String, String), Until>>, room: &str, sub: &str) -> bool {
    let mut map = map.lock();
    let key = (room.to_owned(), sub.to_owned());
    match map.get(&key) {
        None => false,
        Some(None) => true,
        Some(Some(until)) if *until > Instant::now() => true,
        Some(Some(_)) => {
            map.remove(&key);
            false
        }
    }
}

impl Moderation {
    /// True while `sub` is banned from `room`.
    pub fn is_banned(&self, room: &str, sub: &str) -> bool {
        active(&self.bans, room, sub)
    }

    /// True while `sub` is muted in `room`.
    pub fn is_muted(&self, room: &str, sub: &str) -> bool {
        active(&self.mutes, room, sub)
    }

    /// Forgets every sanction of a deleted room.
    pub fn forget_room(&self, room: &str) {
        self.bans.lock().retain(|(r, _), _| r != room);
        self.mutes.lock().retain(|(r, _), _| r != room);
    }
}

/// `{"type":"kick"|"ban"|"mute"|"unban","user":sub,"duration_s"?:n}` on a
/// `/chat/{room}` socket.
pub fn handle(session: &Session, action: &str, frame: &Value) -> Result<(), Refusal> {
    let state = &session.state;
    let (Some(room), Some(group)) = (session.room(), session.room_group()) else {
        return Err(Refusal::new(
            "bad_request",
            "moderation applies to the room of a /chat socket",
        ));
    };
    let target = match frame.get("user") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
        _ => {
            return Err(Refusal::new(
                "bad_request",
                "user must be the target's user id",
            ))
        }
    };
    let duration = match frame.get("duration_s") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(s) if s > 0 && s <= MAX_DURATION_S => Some(Duration::from_secs(s)),
            _ => {
                return Err(Refusal::new(
                    "bad_request",
                    "duration_s must be a positive number of seconds",
                ))
            }
        },
    };
    let claims = &session.claims;
    let owner = state.features.rooms.owner(room);
    if !claims.is_admin() && owner.as_deref() != Some(claims.sub.as_str()) {
        return Err(Refusal::new(
            "forbidden",
            "only the room's owner or an admin may moderate it",
        ));
    }
    let moderation = &state.features.moderation;
    let key = (room.to_owned(), target.clone());
    let until = |d: Option<Duration>| d.map(|d| Instant::now() + d);
    let (message, close) = match action {
        "kick" => (
            format!("{target} was kicked by {}", claims.username),
            Some((KICK_CLOSE_CODE, "kicked from the room")),
        ),
        "ban" => {
            moderation.bans.lock().insert(key, until(duration));
            let how_long = duration.map_or(String::new(), |d| format!(" for {}s", d.as_secs()));
            (
                format!("{target} was banned by {}{how_long}", claims.username),
                Some((BAN_CLOSE_CODE, "banned from the room")),
            )
        }
        "mute" => {
            let d = duration.unwrap_or(DEFAULT_MUTE);
            moderation.mutes.lock().insert(key, until(Some(d)));
            (
                format!(
                    "{target} was muted by {} for {}s",
                    claims.username,
                    d.as_secs()
                ),
                None,
            )
        }
        "unban" => {
            moderation.bans.lock().remove(&key);
            moderation.mutes.lock().remove(&key);
            (
                format!("{target} was unbanned by {}", claims.username),
                None,
            )
        }
        _ => return Err(Refusal::new("unknown_type", "unknown moderation action")),
    };
    let ts = frames::timestamp(frames::now_ms());
    let sent = state.hub.group_send_with(group, Kind::Json, true, |id| {
        frames::encode(&json!({
            "type": "system",
            "id": id,
            "action": action,
            "user": target,
            "by": claims.sub,
            "message": message,
            "timestamp": ts,
        }))
    });
    if let Ok(report) = sent {
        state
            .features
            .analytics
            .record_broadcast(room, report.delivered);
    }
    if let Some((code, reason)) = close {
        for (conn, sub) in state.room_sessions(room) {
            if *sub == *target {
                state.close_connection(conn, code, reason);
            }
        }
    }
    tracing::info!(room, action, target = %target, by = %claims.sub, "moderation");
    Ok(())
}
