//! Outbound JSON frames: built once, shared by every recipient.
//!
//! Room frames are encoded straight into one buffer with `serde_json` (no
//! intermediate `Value`), and the `history` frame splices the saved frames'
//! bytes in as they are, so a join never re-encodes what history holds.
//!
//! Message frames name their author twice only when it matters: `user` is
//! the display name, and `user_id` (the token's `sub`) is added when it
//! differs from `user` (`user_id` defaults to `user`). That keeps the frame
//! every member receives as short as the tutorial's.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use channelbox::Message;
use serde::Serialize;

/// The hub group behind `/chat/{room}` (rooms share the core's group space
/// with presence and DMs, so each kind has its own prefix).
pub fn room_group(room: &str) -> String {
    format!("room:{room}")
}

/// The group every `/presence` connection joins.
pub const PRESENCE_GROUP: &str = "presence";

/// The group joined by a user's `/dm` connections: what they receive.
pub fn dm_inbox_group(sub: &str) -> String {
    format!("dm-inbox:{sub}")
}

/// The group joined by a user's `/presence` and `/dm` connections, for
/// notices that follow a user outside rooms (mentions).
pub fn notify_group(sub: &str) -> String {
    format!("notify:{sub}")
}

/// The history-only group that keeps the conversation of two users. Length
/// prefixed, so no pair of ids can collide with another.
pub fn dm_pair_group(a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("dm:{}:{lo}|{hi}", lo.len())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `2026-11-26T04:50:01.123Z` for a time in ms since the Unix epoch.
pub fn timestamp(ms: u64) -> String {
    thread_local! {
        /// The formatted second of the last call: every message stamps one.
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = ms / 1000;
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, m, d) = civil_from_days(days as i64);
            cached.1 = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            cached.0 = secs;
        }
        let mut out = String::with_capacity(cached.1.len() + 4);
        out.push_str(&cached.1);
        let ms = (ms % 1000) as u32;
        for digit in [ms / 100, ms / 10 % 10, ms % 10] {
            out.push(char::from(b'0' + digit as u8));
        }
        out.push('Z');
        out
    })
}

/// Howard Hinnant's days-to-civil conversion (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Encodes any serializable frame.
pub fn encode<T: Serialize + ?Sized>(frame: &T) -> Bytes {
    // Serializing plain structs and `Value`s to a Vec cannot fail. Exact
    // size: history keeps frames for long, and a Vec with spare capacity
    // would also make `Bytes` allocate a separate shared header.
    let vec = serde_json::to_vec(frame).unwrap_or_else(|_| b"{}".to_vec());
    Bytes::from(vec.into_boxed_slice())
}

/// A chat message as the room sees it (and history keeps it).
#[derive(Serialize)]
pub struct ChatMessage<'a> {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub id: u64,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    pub content: &'a str,
    pub timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<&'a serde_json::Value>,
    /// Fields added by extensions (mentions, ...), flattened into the frame.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: &'a serde_json::Map<String, serde_json::Value>,
}

/// `{"type":"system","id":..,"message":"alice joined the chat","timestamp":..}`.
pub fn system(id: u64, message: &str, ts: &str) -> Bytes {
    #[derive(Serialize)]
    struct System<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        id: u64,
        message: &'a str,
        timestamp: &'a str,
    }
    encode(&System {
        ty: "system",
        id,
        message,
        timestamp: ts,
    })
}

/// The `type`s of update events: an edit, a delete or a reaction, saved to
/// the room's history with an id of its own (and sent live as saved), so a
/// client that recovers with `?since=` learns of changes to messages it
/// already holds. Each carries the message's resulting state, not only the
/// change, so applying one twice, or an older one after a newer one's
/// message was re-read, is harmless.
pub const UPDATE_TYPES: [&str; 3] = ["edited", "deleted", "reaction"];

/// True for a saved update event. The hub writes every one through the
/// builders below, `type` first, so its opening bytes say what it is and a
/// page of history is sorted without parsing each entry.
pub fn is_update(data: &[u8]) -> bool {
    const OPENINGS: [&[u8]; 3] = [
        b"{\"type\":\"edited\",",
        b"{\"type\":\"deleted\",",
        b"{\"type\":\"reaction\",",
    ];
    OPENINGS.iter().any(|opening| data.starts_with(opening))
}

/// `{"type":"edited","id","message_id","content","mentions"?}`: message
/// `message_id` now reads `content` (and mentions exactly `mentions`).
pub fn edited(id: u64, message_id: u64, content: &str, mentions: &[String]) -> Bytes {
    #[derive(Serialize)]
    struct Edited<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        // `id` right after `type`: with Redis its digits are the
        // placeholder the engine replaces (the first occurrence).
        id: u64,
        message_id: u64,
        content: &'a str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        mentions: &'a [String],
    }
    encode(&Edited {
        ty: "edited",
        id,
        message_id,
        content,
        mentions,
    })
}

/// `{"type":"deleted","id","message_id"}`: message `message_id` is a
/// tombstone now.
pub fn deleted(id: u64, message_id: u64) -> Bytes {
    #[derive(Serialize)]
    struct Deleted {
        #[serde(rename = "type")]
        ty: &'static str,
        id: u64,
        message_id: u64,
    }
    encode(&Deleted {
        ty: "deleted",
        id,
        message_id,
    })
}

/// One reaction added or removed.
pub struct Reaction<'a> {
    /// The message reacted to.
    pub message_id: u64,
    /// The emoji.
    pub emoji: &'a str,
    /// `add` or `remove`.
    pub op: &'static str,
    /// Who reacted (their `sub`).
    pub user: &'a str,
    /// Their display name.
    pub username: &'a str,
}

/// `{"type":"reaction","id","message_id","emoji","op","user","username"}`:
/// the resulting state of one (user, emoji) pair, so the event has a fixed
/// size whatever the message's reaction count, and replaying events in id
/// order over any earlier state ends in the current one.
pub fn reaction(id: u64, r: &Reaction<'_>) -> Bytes {
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        id: u64,
        message_id: u64,
        emoji: &'a str,
        op: &'static str,
        user: &'a str,
        username: &'a str,
    }
    encode(&Frame {
        ty: "reaction",
        id,
        message_id: r.message_id,
        emoji: r.emoji,
        op: r.op,
        user: r.user,
        username: r.username,
    })
}

/// `{"type":"error","code":..,"detail":..}`.
pub fn error(code: &str, detail: &str) -> Bytes {
    #[derive(Serialize)]
    struct Error<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        code: &'a str,
        detail: &'a str,
    }
    encode(&Error {
        ty: "error",
        code,
        detail,
    })
}

/// `{"type":"history","epoch":"..","messages":[...]}` (+ `"recovered"` on
/// a reconnect with `?since=`), splicing the saved frames in unchanged.
pub fn history(epoch: u64, messages: &[Message], recovered: Option<bool>) -> Bytes {
    let body: usize = messages.iter().map(|m| m.len() + 1).sum();
    let mut out = Vec::with_capacity(body + 80);
    out.extend_from_slice(b"{\"type\":\"history\",\"epoch\":\"");
    out.extend_from_slice(epoch.to_string().as_bytes());
    out.extend_from_slice(b"\"");
    if let Some(recovered) = recovered {
        out.extend_from_slice(if recovered {
            b",\"recovered\":true"
        } else {
            b",\"recovered\":false"
        });
    }
    out.extend_from_slice(b",\"messages\":[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m.data());
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// Appends `n` in decimal.
pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Appends `s` as a JSON string: as is between quotes when nothing in it
/// needs an escape (the common case), else escaped by serde_json.
pub fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Cannot fail: a string into a Vec.
        let _ = serde_json::to_writer(&mut *buf, s);
        return;
    }
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
}

/// Whether a JSON string of these bytes needs an escape: a control
/// character, `"` or `\\` in it. Eight bytes at a time (the usual
/// word-at-a-time tests for a zero byte and for a byte below 0x20; bytes
/// of 0x80 and above, UTF-8's, never match).
pub fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if x.wrapping_sub(0x20 * ONES) & !x & HIGH != 0
            || has_zero(x ^ (u64::from(b'"') * ONES))
            || has_zero(x ^ (u64::from(b'\\') * ONES))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_events_are_known_by_their_opening_and_nothing_else_is() {
        let r = Reaction {
            message_id: 3,
            emoji: "👍",
            op: "add",
            user: "bob",
            username: "Bob",
        };
        let updates = [
            edited(9, 3, "new", &["carol".into()]),
            edited(9, 3, "new", &[]),
            deleted(10, 3),
            reaction(11, &r),
        ];
        for frame in &updates {
            assert!(is_update(frame), "{}", String::from_utf8_lossy(frame));
            let v: serde_json::Value = serde_json::from_slice(frame).unwrap();
            assert!(UPDATE_TYPES.contains(&v["type"].as_str().unwrap()));
            assert_eq!(v["message_id"], 3);
        }
        // With Redis the id is the engine's placeholder, replaced at its
        // first occurrence: it must come before any client text.
        let placeholder = edited(u64::MAX, 3, "18446744073709551615", &[]);
        let text = String::from_utf8_lossy(&placeholder);
        assert!(text.starts_with("{\"type\":\"edited\",\"id\":18446744073709551615,"));
        let message = ChatMessage {
            ty: "message",
            id: 1,
            user: "edited",
            user_id: None,
            content: "{\"type\":\"edited\",",
            timestamp: "t",
            thread_id: None,
            attachments: None,
            extra: &serde_json::Map::new(),
        };
        assert!(!is_update(&encode(&message)));
        assert!(!is_update(&system(2, "{\"type\":\"deleted\",", "t")));
        assert!(!is_update(br#"{"id":1,"type":"edited"}"#));
    }

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_795_669_801_123), "2026-11-26T05:10:01.123Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
