//! Per-room moderation: kick, ban (for a while or for good), mute, unban.
//!
//! A room's owner or an admin moderates it. The target's sockets in the
//! room are closed (4000 kicked, 4003 banned), a banned user is refused at
//! the upgrade (403), a muted one gets `muted` errors for its messages, and
//! the room is told with a saved `system` frame carrying `action` and `user`.

use std::time::{Duration, Instant};

use channelbox::Kind;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use super::ChatRoom;
use crate::error::Refusal;
use crate::frames;
use crate::session::Session;

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

/// room -> user id -> (until when, order set). Read on every join and
/// message, so lookups borrow `&str` keys and take a read lock only.
#[derive(Debug, Default)]
struct Sanctions(RwLock<FxHashMap<String, RoomSanctions>>);

/// One room's sanctions: user id -> (until when, order set).
type RoomSanctions = FxHashMap<String, (Until, u64)>;

/// Orders sanctions by when they were set (to evict the oldest first).
static SET_ORDER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Sanctions {
    fn active(&self, room: &str, sub: &str) -> bool {
        match self.0.read().get(room).and_then(|users| users.get(sub)) {
            None => false,
            Some((None, _)) => true,
            Some((Some(until), _)) => *until > Instant::now(),
        }
    }

    /// Sets a sanction; a room holds at most `max` (`--max-bans-per-room`):
    /// over it the one that ends first goes, permanent ones last and the
    /// oldest of them first.
    fn set(&self, room: &str, sub: &str, until: Until, max: usize) {
        let now = Instant::now();
        let order = SET_ORDER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.0.write();
        let users = map.entry(room.to_owned()).or_default();
        // Expired entries go whenever the room's list changes.
        users.retain(|_, (u, _)| u.map_or(true, |t| t > now));
        if !users.contains_key(sub) {
            while users.len() >= max.max(1) {
                let first = users
                    .iter()
                    .min_by_key(|(_, (u, order))| (u.is_none(), *u, *order))
                    .map(|(s, _)| s.clone());
                match first {
                    Some(s) => users.remove(&s),
                    None => break,
                };
            }
        }
        users.insert(sub.to_owned(), (until, order));
    }

    /// Sanctions kept for `room` (expired ones included until the next set).
    fn len(&self, room: &str) -> usize {
        self.0.read().get(room).map_or(0, |u| u.len())
    }

    fn lift(&self, room: &str, sub: &str) {
        let mut map = self.0.write();
        if let Some(users) = map.get_mut(room) {
            users.remove(sub);
            if users.is_empty() {
                map.remove(room);
            }
        }
    }

    fn forget_room(&self, room: &str) {
        self.0.write().remove(room);
    }
}

/// Bans and mutes by room and user id.
#[derive(Debug, Default)]
pub struct Moderation {
    bans: Sanctions,
    mutes: Sanctions,
}

impl Moderation {
    /// True while `sub` is banned from `room`.
    pub fn is_banned(&self, room: &str, sub: &str) -> bool {
        self.bans.active(room, sub)
    }

    /// True while `sub` is muted in `room`.
    pub fn is_muted(&self, room: &str, sub: &str) -> bool {
        self.mutes.active(room, sub)
    }

    /// Bans kept for `room`.
    pub fn bans_kept(&self, room: &str) -> usize {
        self.bans.len(room)
    }

    /// Forgets every sanction of a deleted room.
    pub fn forget_room(&self, room: &str) {
        self.bans.forget_room(room);
        self.mutes.forget_room(room);
    }
}

/// `{"type":"kick"|"ban"|"mute"|"unban","user":sub,"duration_s"?:n}` on a
/// `/chat/{room}` socket.
pub async fn handle(
    session: &Session,
    room: ChatRoom<'_>,
    action: &str,
    frame: &Value,
) -> Result<(), Refusal> {
    let state = &session.state;
    let ChatRoom { id: room, group } = room;
    let target = match frame.get("user") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
        _ => return Err(Refusal::bad_request("user must be the target's user id")),
    };
    let duration = match frame.get("duration_s") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(s) if s > 0 && s <= MAX_DURATION_S => Some(Duration::from_secs(s)),
            _ => {
                return Err(Refusal::bad_request(
                    "duration_s must be a positive number of seconds",
                ))
            }
        },
    };
    let claims = &session.claims;
    let owner = state.features.rooms.owner(room);
    if !claims.is_admin() && owner.as_deref() != Some(claims.sub.as_str()) {
        return Err(Refusal::forbidden(
            "only the room's owner or an admin may moderate it",
        ));
    }
    let moderation = &state.features.moderation;
    let until = |d: Option<Duration>| d.map(|d| Instant::now() + d);
    let (message, close) = match action {
        "kick" => (
            format!("{target} was kicked by {}", claims.username),
            Some((KICK_CLOSE_CODE, "kicked from the room")),
        ),
        "ban" => {
            moderation.bans.set(
                room,
                &target,
                until(duration),
                state.config.max_bans_per_room,
            );
            let how_long = duration.map_or(String::new(), |d| format!(" for {}s", d.as_secs()));
            (
                format!("{target} was banned by {}{how_long}", claims.username),
                Some((BAN_CLOSE_CODE, "banned from the room")),
            )
        }
        "mute" => {
            let d = duration.unwrap_or(DEFAULT_MUTE);
            moderation.mutes.set(
                room,
                &target,
                until(Some(d)),
                state.config.max_bans_per_room,
            );
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
            moderation.bans.lift(room, &target);
            moderation.mutes.lift(room, &target);
            (
                format!("{target} was unbanned by {}", claims.username),
                None,
            )
        }
        _ => return Err(Refusal::unknown_type("unknown moderation action")),
    };
    let ts = frames::timestamp(frames::now_ms());
    let send = state
        .hub
        .group_send_with_async(group, Kind::Json, true, |id| {
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
    if let Ok(report) = send.await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_room_evicts_the_soonest_ending_then_the_oldest_permanent() {
        let s = Sanctions::default();
        let later = Some(Instant::now() + Duration::from_secs(3600));
        let sooner = Some(Instant::now() + Duration::from_secs(60));
        s.set("r", "perm1", None, 3);
        s.set("r", "long", later, 3);
        s.set("r", "short", sooner, 3);
        s.set("r", "perm2", None, 3);
        assert!(!s.active("r", "short") && s.active("r", "long"));
        s.set("r", "perm3", None, 3);
        assert!(!s.active("r", "long"));
        s.set("r", "perm4", None, 3);
        assert!(!s.active("r", "perm1"));
        assert!(s.active("r", "perm2") && s.active("r", "perm3") && s.active("r", "perm4"));
        assert_eq!(s.len("r"), 3);
        // Setting one already there never evicts another.
        s.set("r", "perm4", None, 3);
        assert!(s.active("r", "perm2"));
    }
}
