//! Per-room moderation: kick, ban (for a while or for good), mute, unban.
//!
//! A room's owner or an admin moderates it. The target's sockets in the
//! room are closed (4000 kicked, 4003 banned), a banned user is refused at
//! the upgrade (403), a muted one gets `muted` errors for its messages, and
//! the room is told with a saved `system` frame carrying `action` and `user`.

use std::sync::Arc;
use std::time::Duration;

use channelbox::Kind;
use serde_json::{json, Value};

use super::ChatRoom;
use crate::chat::Author;
use crate::error::Refusal;
use crate::frames;
use crate::server::AppState;
use crate::session::Session;
use crate::store::{now_ms, CloseEvent, Store, StoreError, Table};

/// Close code for a kicked socket (4000-4999 is the application's range;
/// 4003 is taken by bans and other refusals).
pub const KICK_CLOSE_CODE: u16 = 4000;
/// Close code for a banned socket.
pub const BAN_CLOSE_CODE: u16 = 4003;
/// A mute without `duration_s` lasts this long.
const DEFAULT_MUTE: Duration = Duration::from_secs(10 * 60);
/// Longest ban or mute given in seconds (longer is refused as bad input).
const MAX_DURATION_S: u64 = 10 * 365 * 24 * 3600;

/// One ban or mute as the store keeps it: `until_ms,set_us` (`until_ms`
/// 0: until lifted; `set_us` orders sanctions by when they were set, to
/// evict the oldest permanent one first). A deadline is checked on read,
/// so an expired sanction stops holding at once on every hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sanction {
    until_ms: Option<u64>,
    set_us: u64,
}

impl Sanction {
    fn encode(self) -> Vec<u8> {
        format!("{},{}", self.until_ms.unwrap_or(0), self.set_us).into_bytes()
    }

    fn decode(raw: &[u8]) -> Option<Sanction> {
        let (until, set) = std::str::from_utf8(raw).ok()?.split_once(',')?;
        let until: u64 = until.parse().ok()?;
        Some(Sanction {
            until_ms: (until != 0).then_some(until),
            set_us: set.parse().ok()?,
        })
    }

    fn holds(self, now_ms: u64) -> bool {
        self.until_ms.map_or(true, |t| t > now_ms)
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Bans or mutes: room -> user id -> [`Sanction`], in one store table.
#[derive(Debug)]
struct Sanctions {
    store: Arc<Store>,
    table: Table,
}

impl Sanctions {
    fn decode(&self, room: &str, sub: &str, raw: &[u8]) -> Option<Sanction> {
        let s = Sanction::decode(raw);
        if s.is_none() {
            self.store
                .report_corrupt(self.table, room, sub, "not until,set");
        }
        s
    }

    async fn active(&self, room: &str, sub: &str) -> Result<bool, StoreError> {
        let raw = self.store.get(self.table, room, sub).await?;
        Ok(raw
            .and_then(|raw| self.decode(room, sub, &raw))
            .is_some_and(|s| s.holds(now_ms())))
    }

    /// Sets a sanction (durable when this returns); a room holds at most
    /// `max` (`--max-bans-per-room`): over it, expired and damaged entries
    /// go first, then the one that ends first, permanent ones last and the
    /// oldest of them first. One atomic step in the store, so two hubs
    /// setting at once never leave more than `max` (see
    /// [`Store::put_capped`]).
    async fn set(
        &self,
        room: &str,
        sub: &str,
        until_ms: Option<u64>,
        max: usize,
    ) -> Result<(), StoreError> {
        let sanction = Sanction {
            until_ms,
            set_us: now_us(),
        };
        self.store
            .put_capped(self.table, room, sub, &sanction.encode(), max)
            .await?;
        Ok(())
    }

    async fn len(&self, room: &str) -> Result<usize, StoreError> {
        self.store.count(self.table, room).await
    }

    async fn lift(&self, room: &str, sub: &str) -> Result<(), StoreError> {
        self.store.remove(self.table, room, sub).await
    }

    async fn forget_room(&self, room: &str) -> Result<(), StoreError> {
        self.store.drop_group(self.table, room).await
    }
}

/// Bans and mutes by room and user id, in the hub's state store.
#[derive(Debug)]
pub struct Moderation {
    bans: Sanctions,
    mutes: Sanctions,
}

impl Moderation {
    /// Bans and mutes kept in `store`.
    pub fn new(store: Arc<Store>) -> Moderation {
        Moderation {
            bans: Sanctions {
                store: store.clone(),
                table: Table::Bans,
            },
            mutes: Sanctions {
                store,
                table: Table::Mutes,
            },
        }
    }

    /// True while `sub` is banned from `room`.
    pub async fn banned(&self, room: &str, sub: &str) -> Result<bool, StoreError> {
        self.bans.active(room, sub).await
    }

    /// True while `sub` is muted in `room`.
    pub async fn muted(&self, room: &str, sub: &str) -> Result<bool, StoreError> {
        self.mutes.active(room, sub).await
    }

    /// `muted` when `sub` is muted in `room`; `unavailable` when the store
    /// cannot say.
    pub async fn check_not_muted(&self, room: &str, sub: &str) -> Result<(), Refusal> {
        if self.muted(room, sub).await? {
            return Err(Refusal::muted());
        }
        Ok(())
    }

    /// True when the stored ban `raw` of `sub` in `room` holds now.
    pub fn ban_holds(&self, room: &str, sub: &str, raw: Option<&[u8]>) -> bool {
        raw.and_then(|raw| self.bans.decode(room, sub, raw))
            .is_some_and(|s| s.holds(now_ms()))
    }

    /// Bans kept for `room` (expired ones included until the next ban).
    pub async fn bans_kept(&self, room: &str) -> Result<usize, StoreError> {
        self.bans.len(room).await
    }

    /// Forgets every sanction of a deleted room.
    pub async fn forget_room(&self, room: &str) -> Result<(), StoreError> {
        self.bans.forget_room(room).await?;
        self.mutes.forget_room(room).await
    }
}

/// The `user` and `duration_s` of a moderation frame (or of the server
/// API's ban).
pub fn target_of(frame: &Value) -> Result<(String, Option<Duration>), Refusal> {
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
    Ok((target, duration))
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
    let (target, duration) = target_of(frame)?;
    let claims = &session.claims;
    let owner = state.features.rooms.owner_async(room).await?;
    if !claims.is_admin() && owner.as_deref() != Some(claims.sub.as_str()) {
        return Err(Refusal::forbidden(
            "only the room's owner or an admin may moderate it",
        ));
    }
    let by = Author {
        sub: &claims.sub,
        username: &claims.username,
    };
    apply(
        state,
        ChatRoom { id: room, group },
        action,
        &target,
        duration,
        by,
    )
    .await
}

/// Carries out a moderation `action` on `target` in `room`, by `by` (a
/// room's owner or an admin, or the server API's `POST
/// /api/rooms/{id}/ban`): sets the sanction, tells the room, closes the
/// target's sockets here and on every other hub.
pub async fn apply(
    state: &AppState,
    room: ChatRoom<'_>,
    action: &str,
    target: &str,
    duration: Option<Duration>,
    by: Author<'_>,
) -> Result<(), Refusal> {
    let ChatRoom { id: room, group } = room;
    let moderation = &state.features.moderation;
    let until = |d: Option<Duration>| d.map(|d| now_ms() + d.as_millis() as u64);
    // How long the sanction lasts, for programs (the client's countdown).
    let lasts = match action {
        "ban" => duration,
        "mute" => Some(duration.unwrap_or(DEFAULT_MUTE)),
        _ => None,
    };
    let (message, close) = match action {
        "kick" => (
            format!("{target} was kicked by {}", by.username),
            Some((KICK_CLOSE_CODE, "kicked from the room")),
        ),
        "ban" => {
            moderation
                .bans
                .set(
                    room,
                    target,
                    until(duration),
                    state.config.max_bans_per_room,
                )
                .await?;
            crate::webhooks::user_banned(state, room, target, by.sub, duration);
            let how_long = duration.map_or(String::new(), |d| format!(" for {}s", d.as_secs()));
            (
                format!("{target} was banned by {}{how_long}", by.username),
                Some((BAN_CLOSE_CODE, "banned from the room")),
            )
        }
        "mute" => {
            let d = duration.unwrap_or(DEFAULT_MUTE);
            moderation
                .mutes
                .set(room, target, until(Some(d)), state.config.max_bans_per_room)
                .await?;
            (
                format!("{target} was muted by {} for {}s", by.username, d.as_secs()),
                None,
            )
        }
        "unban" => {
            moderation.bans.lift(room, target).await?;
            moderation.mutes.lift(room, target).await?;
            (format!("{target} was unbanned by {}", by.username), None)
        }
        _ => return Err(Refusal::unknown_type("unknown moderation action")),
    };
    let ts = frames::timestamp(frames::now_ms());
    let send = state
        .hub
        .group_send_with_async(group, Kind::Json, true, |id| {
            let mut frame = json!({
                "type": "system",
                "id": id,
                "action": action,
                "user": target,
                "by": by.sub,
                "message": message,
                "timestamp": ts,
            });
            if let Some(d) = lasts {
                frame["duration_s"] = json!(d.as_secs());
            }
            frames::encode(&frame)
        });
    if let Ok(report) = send.await {
        state
            .features
            .analytics
            .record_broadcast(room, report.delivered);
    }
    if let Some((code, reason)) = close {
        // A kick or a ban ends the membership (the line above says why).
        super::membership::end(state, room, target).await;
        // Here and on every other hub.
        let event = CloseEvent {
            room: room.to_owned(),
            user: Some(target.to_owned()),
            admitted: None,
            code,
            reason: reason.into(),
            node: state.store.node.clone(),
        };
        super::close_sockets(state, event).await;
    }
    tracing::info!(room, action, target, by = %by.sub, "moderation");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_room_evicts_the_soonest_ending_then_the_oldest_permanent() {
        let dir = tempfile::tempdir().unwrap();
        evicts_in_order(Arc::new(Store::open_embedded(dir.path()).unwrap())).await;
    }

    /// The Lua script keeps the same order as the embedded transaction.
    #[tokio::test]
    async fn the_redis_cap_evicts_in_the_same_order() {
        let redis = channelbox_test_support::RedisServer::start();
        let store = Store::open_redis(&redis.url(), "t", Duration::from_secs(2)).unwrap();
        evicts_in_order(Arc::new(store)).await;
    }

    async fn evicts_in_order(store: Arc<Store>) {
        let s = Sanctions {
            store,
            table: Table::Bans,
        };
        let later = Some(now_ms() + 3_600_000);
        let sooner = Some(now_ms() + 60_000);
        s.set("r", "perm1", None, 3).await.unwrap();
        s.set("r", "long", later, 3).await.unwrap();
        s.set("r", "short", sooner, 3).await.unwrap();
        s.set("r", "perm2", None, 3).await.unwrap();
        assert!(!s.active("r", "short").await.unwrap() && s.active("r", "long").await.unwrap());
        s.set("r", "perm3", None, 3).await.unwrap();
        assert!(!s.active("r", "long").await.unwrap());
        s.set("r", "perm4", None, 3).await.unwrap();
        assert!(!s.active("r", "perm1").await.unwrap());
        for u in ["perm2", "perm3", "perm4"] {
            assert!(s.active("r", u).await.unwrap(), "{u}");
        }
        assert_eq!(s.len("r").await.unwrap(), 3);
        // Setting one already there never evicts another.
        s.set("r", "perm4", None, 3).await.unwrap();
        assert!(s.active("r", "perm2").await.unwrap());
        // An expired or damaged entry goes before any that holds.
        s.store.put(Table::Bans, "r", "old", b"1,1").await.unwrap();
        s.store.put(Table::Bans, "r", "bad", b"junk").await.unwrap();
        s.set("r", "perm5", None, 3).await.unwrap();
        assert_eq!(s.len("r").await.unwrap(), 3);
        for u in ["perm3", "perm4", "perm5"] {
            assert!(s.active("r", u).await.unwrap(), "{u}");
        }
    }

    #[test]
    fn an_expired_sanction_no_longer_holds() {
        let s = Sanction {
            until_ms: Some(1_000),
            set_us: 0,
        };
        assert!(s.holds(999) && !s.holds(1_000));
        assert_eq!(Sanction::decode(&s.encode()), Some(s));
        assert_eq!(Sanction::decode(b"nonsense"), None);
    }
}
