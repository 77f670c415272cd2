//! Per-room traffic: messages and deliveries in total and per minute over
//! the last hour, for `GET /stats` and `GET /metrics`.
//!
//! Counters are sharded by room so that two rooms never share a lock; the
//! hub-wide per-minute series is summed from the rooms when asked.

use std::fmt::Write;
use std::hash::BuildHasher;

use parking_lot::Mutex;
use rustc_hash::{FxBuildHasher, FxHashMap};
use serde_json::{json, Value};

const SHARDS: usize = 16;
/// Minutes kept in the per-minute series.
pub const MINUTES: usize = 60;
/// Rooms listed under `top_rooms`.
const TOP: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    /// Minutes since the Unix epoch this slot counts (slots are reused).
    at: u64,
    messages: u64,
    deliveries: u64,
}

#[derive(Debug)]
struct RoomCounters {
    messages: u64,
    deliveries: u64,
    minutes: [Minute; MINUTES],
}

impl Default for RoomCounters {
    fn default() -> Self {
        RoomCounters {
            messages: 0,
            deliveries: 0,
            minutes: [Minute::default(); MINUTES],
        }
    }
}

impl RoomCounters {
    fn slot(&mut self, minute: u64) -> &mut Minute {
        let slot = &mut self.minutes[(minute % MINUTES as u64) as usize];
        if slot.at != minute {
            *slot = Minute {
                at: minute,
                ..Minute::default()
            };
        }
        slot
    }

    /// Messages in the last hour.
    fn recent_messages(&self, now_minute: u64) -> u64 {
        self.minutes
            .iter()
            .filter(|m| now_minute.saturating_sub(m.at) < MINUTES as u64)
            .map(|m| m.messages)
            .sum()
    }
}

/// Traffic counters by room.
#[derive(Debug, Default)]
pub struct Analytics {
    shards: [Mutex<FxHashMap<String, RoomCounters>>; SHARDS],
}

fn now_minute() -> u64 {
    crate::frames::now_ms() / 60_000
}

impl Analytics {
    fn with_room(&self, room: &str, f: impl FnOnce(&mut RoomCounters)) {
        let shard = (FxBuildHasher.hash_one(room) as usize) % SHARDS;
        let mut map = self.shards[shard].lock();
        match map.get_mut(room) {
            Some(c) => f(c),
            None => f(map.entry(room.to_owned()).or_default()),
        }
    }

    /// A chat message sent to `room`, delivered to `delivered` sockets.
    pub fn record_message(&self, room: &str, delivered: u64) {
        let minute = now_minute();
        self.with_room(room, |c| {
            c.messages += 1;
            c.deliveries += delivered;
            let slot = c.slot(minute);
            slot.messages += 1;
            slot.deliveries += delivered;
        });
    }

    /// Any other room frame (reaction, edit, typing, notice) delivered to
    /// `delivered` sockets.
    pub fn record_broadcast(&self, room: &str, delivered: u64) {
        let minute = now_minute();
        self.with_room(room, |c| {
            c.deliveries += delivered;
            c.slot(minute).deliveries += delivered;
        });
    }

    /// Every room with counters.
    pub fn rooms(&self) -> Vec<String> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(shard.lock().keys().cloned());
        }
        out
    }

    /// Forgets a deleted room's counters.
    pub fn forget_room(&self, room: &str) {
        let shard = (FxBuildHasher.hash_one(room) as usize) % SHARDS;
        self.shards[shard].lock().remove(room);
    }

    /// `{"rooms": {room: {messages, deliveries, messages_last_hour}},
    /// "per_minute": [{minute, messages, deliveries}] (oldest first, 60),
    /// "top_rooms": [{room, messages_last_hour, messages}]}`. Only rooms
    /// for which `visible` is true are named (a private room's traffic is
    /// no business of a non-member); the per-minute totals count them all.
    ///
    /// `rooms` names the `top` busiest visible rooms only (by messages in
    /// the last hour, then in total), so the answer stays small however
    /// many rooms exist; `rooms_total` counts them all.
    pub fn snapshot(&self, visible: &dyn Fn(&str) -> bool, top_n: usize) -> Value {
        let now = now_minute();
        let mut series = [(0u64, 0u64); MINUTES];
        let mut rooms = serde_json::Map::new();
        let mut top: Vec<(u64, u64, u64, String)> = Vec::new();
        for shard in &self.shards {
            for (room, c) in shard.lock().iter() {
                for m in &c.minutes {
                    let age = now.saturating_sub(m.at);
                    if m.at <= now && age < MINUTES as u64 {
                        let i = MINUTES - 1 - age as usize;
                        series[i].0 += m.messages;
                        series[i].1 += m.deliveries;
                    }
                }
                if !visible(room) {
                    continue;
                }
                let recent = c.recent_messages(now);
                top.push((recent, c.messages, c.deliveries, room.clone()));
            }
        }
        let rooms_total = top.len();
        top.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.3.cmp(&b.3)));
        top.truncate(top_n);
        for (recent, messages, deliveries, room) in &top {
            rooms.insert(
                room.clone(),
                json!({
                    "messages": messages,
                    "deliveries": deliveries,
                    "messages_last_hour": recent,
                }),
            );
        }
        top.truncate(TOP.min(top_n));
        let per_minute: Vec<Value> = series
            .iter()
            .enumerate()
            .map(|(i, (messages, deliveries))| {
                let minute = now + 1 + i as u64 - MINUTES as u64;
                json!({
                    "minute": crate::frames::timestamp(minute * 60_000),
                    "messages": messages,
                    "deliveries": deliveries,
                })
            })
            .collect();
        let last_hour: (u64, u64) = series
            .iter()
            .fold((0, 0), |acc, s| (acc.0 + s.0, acc.1 + s.1));
        json!({
            "rooms": rooms,
            "rooms_total": rooms_total,
            "per_minute": per_minute,
            "messages_last_hour": last_hour.0,
            "deliveries_last_hour": last_hour.1,
            "top_rooms": top
                .into_iter()
                .map(|(recent, total, _, room)| json!({
                    "room": room,
                    "messages_last_hour": recent,
                    "messages": total,
                }))
                .collect::<Vec<_>>(),
        })
    }

    /// Prometheus lines: per-room totals and the last full minute's rates.
    /// Rooms for which `visible` is false are left out of the per-room
    /// series (the last-minute totals count them).
    /// Only the `top_n` rooms with the most messages get per-room series.
    pub fn metrics(&self, out: &mut String, visible: &dyn Fn(&str) -> bool, top_n: usize) {
        let now = now_minute();
        let mut rows: Vec<(String, u64, u64)> = Vec::new();
        let (mut last_m, mut last_d) = (0u64, 0u64);
        for shard in &self.shards {
            for (room, c) in shard.lock().iter() {
                if visible(room) {
                    rows.push((room.clone(), c.messages, c.deliveries));
                }
                let prev = &c.minutes[((now + MINUTES as u64 - 1) % MINUTES as u64) as usize];
                if prev.at + 1 == now {
                    last_m += prev.messages;
                    last_d += prev.deliveries;
                }
            }
        }
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        rows.truncate(top_n);
        rows.sort();
        let _ = writeln!(
            out,
            "# HELP channelbox_room_messages_total Chat messages sent to a room."
        );
        let _ = writeln!(out, "# TYPE channelbox_room_messages_total counter");
        for (room, messages, _) in &rows {
            let _ = writeln!(
                out,
                "channelbox_room_messages_total{{room=\"{}\"}} {messages}",
                label(room)
            );
        }
        let _ = writeln!(
            out,
            "# HELP channelbox_room_deliveries_total Frames delivered to sockets of a room."
        );
        let _ = writeln!(out, "# TYPE channelbox_room_deliveries_total counter");
        for (room, _, deliveries) in &rows {
            let _ = writeln!(
                out,
                "channelbox_room_deliveries_total{{room=\"{}\"}} {deliveries}",
                label(room)
            );
        }
        let _ = writeln!(
            out,
            "# HELP channelbox_messages_last_minute Chat messages in the last full minute."
        );
        let _ = writeln!(out, "# TYPE channelbox_messages_last_minute gauge");
        let _ = writeln!(out, "channelbox_messages_last_minute {last_m}");
        let _ = writeln!(
            out,
            "# HELP channelbox_deliveries_last_minute Room deliveries in the last full minute."
        );
        let _ = writeln!(out, "# TYPE channelbox_deliveries_last_minute gauge");
        let _ = writeln!(out, "channelbox_deliveries_last_minute {last_d}");
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
