//! What clients do to messages once sent: typing notices, reactions, edits,
//! deletes, read receipts, threads, history pages, search, mentions and
//! resends with the same `client_id`.
//!
//! Messages live in the core's history only. Edits, reactions and
//! tombstones rewrite the saved entry in place (`history_replace`, same id
//! and timestamp), under a per-room lock so that two reactions to one
//! message never lose each other. The hub keeps ids (threads, reads, client
//! ids, the search index), never a second copy of the text.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use bytes::Bytes;
use channelbox::{HistoryQuery, Kind};
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde_json::{json, Map, Value};

use super::Refusal;
use crate::frames;
use crate::server::{AppState, Session};

const SHARDS: usize = 64;
/// Typing notices accepted per connection per second.
const TYPING_PER_SECOND: u32 = 2;
/// Distinct emojis on one message.
const MAX_EMOJIS: usize = 32;
/// Longest emoji (a few code points with modifiers), in bytes.
const MAX_EMOJI_BYTES: usize = 32;
/// Client ids remembered for deduplication (oldest forgotten first).
const MAX_CLIENT_IDS: usize = 1 << 20;
/// Longest client id, in bytes.
const MAX_CLIENT_ID_BYTES: usize = 128;
/// A client id whose message was not saved within this long is free again.
const CLIENT_ID_PENDING: Duration = Duration::from_secs(10);
/// Most users one message notifies by mention.
const MAX_MENTIONS: usize = 20;
/// Most attachments on one message.
const MAX_ATTACHMENTS: usize = 10;
/// History page sizes.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 200;
/// Search result counts.
const SEARCH_DEFAULT: usize = 20;
const SEARCH_MAX: usize = 100;
/// Most replies a `thread` answer carries (the newest).
const THREAD_MAX: usize = 500;
/// Longest search query, in bytes.
const MAX_QUERY_BYTES: usize = 512;

fn shard_of<T: std::hash::Hash + ?Sized>(key: &T) -> usize {
    (FxBuildHasher.hash_one(key) as usize) % SHARDS
}

/// A user as the hub last saw their token.
#[derive(Debug, Clone)]
struct Known {
    username: String,
    admin: bool,
}

/// Who has been seen, for mentions by username and permission checks.
#[derive(Debug, Default)]
struct Directory {
    by_sub: FxHashMap<String, Known>,
    /// Lowercased username and sub -> subs.
    by_name: FxHashMap<String, FxHashSet<String>>,
}

/// Recent client ids of one shard of rooms, by a keyed hash of (room, sub,
/// client id): 64 bits a message instead of three strings, and SipHash with
/// a random key so nobody can aim a collision at another user's message.
#[derive(Debug, Default)]
struct ClientIds {
    /// Key hash -> saved id (0 while being saved) and when.
    ids: FxHashMap<u64, (u64, Instant)>,
    /// Oldest first, for forgetting.
    order: VecDeque<u64>,
    hasher: std::collections::hash_map::RandomState,
}

impl ClientIds {
    fn key(&self, room: &str, sub: &str, client_id: &str) -> u64 {
        self.hasher.hash_one((room, sub, client_id))
    }
}

/// (room, root id) -> reply ids, ascending.
type Threads = FxHashMap<(String, u64), Vec<u64>>;

/// The message features' state.
#[derive(Debug)]
pub struct MessageState {
    /// Serializes read-modify-write of one room's history entries.
    edit_locks: [Mutex<()>; SHARDS],
    /// room -> sub -> last message id read.
    reads: [Mutex<FxHashMap<String, FxHashMap<String, u64>>>; SHARDS],
    /// (room, root id) -> reply ids, ascending.
    threads: [Mutex<Threads>; SHARDS],
    client_ids: [Mutex<ClientIds>; SHARDS],
    /// connection id -> (window start, notices in it).
    typing: Mutex<FxHashMap<u64, (Instant, u32)>>,
    directory: Mutex<Directory>,
}

impl Default for MessageState {
    fn default() -> Self {
        MessageState {
            edit_locks: std::array::from_fn(|_| Mutex::new(())),
            reads: std::array::from_fn(|_| Mutex::default()),
            threads: std::array::from_fn(|_| Mutex::default()),
            client_ids: std::array::from_fn(|_| Mutex::default()),
            typing: Mutex::default(),
            directory: Mutex::default(),
        }
    }
}

impl MessageState {
    fn edit_lock(&self, room: &str) -> MutexGuard<'_, ()> {
        self.edit_locks[shard_of(room)].lock()
    }

    /// Remembers who `sub` is (from a verified token).
    pub fn saw(&self, sub: &str, username: &str, admin: bool) {
        let mut dir = self.directory.lock();
        if let Some(k) = dir.by_sub.get(sub) {
            if k.username == username && k.admin == admin {
                return;
            }
            let old = k.username.to_lowercase();
            if let Some(set) = dir.by_name.get_mut(&old) {
                set.remove(sub);
            }
        }
        dir.by_sub.insert(
            sub.to_owned(),
            Known {
                username: username.to_owned(),
                admin,
            },
        );
        for name in [username.to_lowercase(), sub.to_lowercase()] {
            dir.by_name.entry(name).or_default().insert(sub.to_owned());
        }
    }

    /// True when `sub` was last seen with the admin role.
    pub fn is_admin(&self, sub: &str) -> bool {
        self.directory
            .lock()
            .by_sub
            .get(sub)
            .is_some_and(|k| k.admin)
    }

    /// Forgets a deleted room's reads and threads.
    pub fn forget_room(&self, room: &str) {
        self.reads[shard_of(room)].lock().remove(room);
        for shard in &self.threads {
            shard.lock().retain(|(r, _), _| r != room);
        }
    }

    /// Drops a closed connection's typing window.
    pub fn forget_connection(&self, conn: u64) {
        self.typing.lock().remove(&conn);
    }
}

// ----- reading and rewriting saved messages ---------------------------------

/// The saved frame at `id` in `group`, as a JSON object.
pub fn saved(state: &AppState, group: &str, id: u64) -> Option<Map<String, Value>> {
    let message = state.hub.history_get(group, id).ok()?;
    match serde_json::from_slice::<Value>(message.data()).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A saved chat message (not a notice): the object, or `not_found`.
fn saved_message(state: &AppState, group: &str, id: u64) -> Result<Map<String, Value>, Refusal> {
    match saved(state, group, id) {
        Some(m) if m.get("type").and_then(Value::as_str) == Some("message") => Ok(m),
        _ => Err(Refusal::new(
            "not_found",
            format!("no message {id} in this room"),
        )),
    }
}

fn is_deleted(m: &Map<String, Value>) -> bool {
    m.get("deleted").and_then(Value::as_bool) == Some(true)
}

/// The author's user id: `user_id`, or `user` when they are the same.
fn author(m: &Map<String, Value>) -> Option<&str> {
    m.get("user_id")
        .or_else(|| m.get("user"))
        .and_then(Value::as_str)
}

fn replace(state: &AppState, group: &str, id: u64, m: &Map<String, Value>) -> Result<(), Refusal> {
    state
        .hub
        .history_replace(group, id, Kind::Json, frames::encode(m))
        .map(|_| ())
        .map_err(|e| match e {
            channelbox::Error::TooLarge(d) => Refusal::new("too_large", d),
            _ => Refusal::new("not_found", format!("message {id} is no longer kept")),
        })
}

/// Sends a frame to the room without saving it; counts the deliveries.
fn broadcast(session: &Session, frame: Bytes) {
    let (Some(room), Some(group)) = (session.room(), session.room_group()) else {
        return;
    };
    if let Ok(report) = session
        .state
        .hub
        .group_send(group, Kind::Json, frame, false)
    {
        session
            .state
            .features
            .analytics
            .record_broadcast(room, report.delivered);
    }
}

/// The room and group of a `/chat` session, or `bad_request`.
fn chat_room(session: &Session) -> Result<(&str, &str), Refusal> {
    match (session.room(), session.room_group()) {
        (Some(r), Some(g)) => Ok((r, g)),
        _ => Err(Refusal::new(
            "bad_request",
            "this frame is for /chat sockets",
        )),
    }
}

fn message_id(frame: &Value) -> Result<u64, Refusal> {
    frame
        .get("message_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| Refusal::new("bad_request", "message_id must be a message id"))
}

fn text_field<'a>(frame: &'a Value, name: &str, max: usize) -> Result<&'a str, Refusal> {
    match frame.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= max => Ok(s),
        Some(Value::String(s)) if s.len() > max => Err(Refusal::new(
            "too_large",
            format!("{name} is longer than {max} bytes"),
        )),
        _ => Err(Refusal::new(
            "bad_request",
            format!("{name} must be a non-empty string"),
        )),
    }
}

fn limit(frame: &Value, default: usize, max: usize) -> Result<usize, Refusal> {
    match frame.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok((n as usize).min(max)),
            _ => Err(Refusal::new(
                "bad_request",
                "limit must be a positive number",
            )),
        },
    }
}

/// True when `sub` may read `room`: admitted by the room and not banned.
pub fn may_read(state: &AppState, room: &str, sub: &str, admin: bool) -> bool {
    state.features.rooms.may_read(room, sub, admin)
        && !state.features.moderation.is_banned(room, sub)
}

// ----- frames ----------------------------------------------------------------

/// `{"type":"typing","state":bool}`: tells the room, saves nothing.
pub fn typing(session: &Session, frame: &Value) -> Result<(), Refusal> {
    chat_room(session)?;
    let state_flag = match frame.get("state") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Refusal::new("bad_request", "state must be true or false")),
    };
    {
        let mut typing = session.state.features.messages.typing.lock();
        let now = Instant::now();
        let entry = typing.entry(session.conn.id()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(1) {
            *entry = (now, 0);
        }
        if entry.1 >= TYPING_PER_SECOND {
            return Err(Refusal::new(
                "rate_limited",
                "typing notices are limited to 2 a second",
            ));
        }
        entry.1 += 1;
    }
    let claims = &session.claims;
    broadcast(
        session,
        frames::encode(&json!({
            "type": "typing",
            "user": claims.username,
            "user_id": claims.sub,
            "state": state_flag,
        })),
    );
    Ok(())
}

/// `{"type":"reaction","message_id","emoji","op":"add"|"remove"}`.
pub fn reaction(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let (_, group) = chat_room(session)?;
    let id = message_id(frame)?;
    let emoji = text_field(frame, "emoji", MAX_EMOJI_BYTES)?;
    if emoji.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Refusal::new("bad_request", "emoji must be one emoji"));
    }
    let add = match frame.get("op").and_then(Value::as_str) {
        None | Some("add") => true,
        Some("remove") => false,
        Some(_) => return Err(Refusal::new("bad_request", "op must be add or remove")),
    };
    let state = &session.state;
    let sub = session.claims.sub.as_str();
    let changed = {
        let _lock = state.features.messages.edit_lock(group);
        let mut m = saved_message(state, group, id)?;
        if is_deleted(&m) {
            return Err(Refusal::new(
                "not_found",
                format!("message {id} was deleted"),
            ));
        }
        let reactions = m
            .entry("reactions")
            .or_insert_with(|| Value::Object(Map::new()));
        if !reactions.is_object() {
            *reactions = Value::Object(Map::new());
        }
        let reactions = reactions.as_object_mut().expect("made an object above");
        if add && !reactions.contains_key(emoji) && reactions.len() >= MAX_EMOJIS {
            return Err(Refusal::new(
                "too_large",
                format!("a message takes at most {MAX_EMOJIS} different emojis"),
            ));
        }
        let users = reactions
            .entry(emoji)
            .or_insert_with(|| Value::Array(Vec::new()));
        if !users.is_array() {
            *users = Value::Array(Vec::new());
        }
        let users = users.as_array_mut().expect("made an array above");
        let had = users.iter().any(|u| u.as_str() == Some(sub));
        let changed = if add && !had {
            users.push(Value::String(sub.to_owned()));
            true
        } else if !add && had {
            users.retain(|u| u.as_str() != Some(sub));
            true
        } else {
            false
        };
        if users.is_empty() {
            reactions.remove(emoji);
        }
        if reactions.is_empty() {
            m.remove("reactions");
        }
        if changed {
            replace(state, group, id, &m)?;
        }
        changed
    };
    if changed {
        broadcast(
            session,
            frames::encode(&json!({
                "type": "reaction",
                "message_id": id,
                "emoji": emoji,
                "op": if add { "add" } else { "remove" },
                "user": sub,
                "username": session.claims.username,
            })),
        );
    }
    Ok(())
}

/// `{"type":"edit","message_id","content"}`: the author only.
pub fn edit(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let (room, group) = chat_room(session)?;
    let id = message_id(frame)?;
    let state = &session.state;
    let content = text_field(frame, "content", state.config.max_frame_bytes)?;
    let sub = session.claims.sub.as_str();
    if state.features.moderation.is_muted(room, sub) {
        return Err(Refusal::new("muted", "you are muted in this room"));
    }
    let (old, mentions, before) = {
        let _lock = state.features.messages.edit_lock(group);
        let mut m = saved_message(state, group, id)?;
        if is_deleted(&m) {
            return Err(Refusal::new(
                "not_found",
                format!("message {id} was deleted"),
            ));
        }
        if author(&m) != Some(sub) {
            return Err(Refusal::new(
                "forbidden",
                "only the author may edit a message",
            ));
        }
        let old = m
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mentions = resolve_mentions(state, content);
        let before: Vec<String> = m
            .get("mentions")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        m.insert("content".into(), Value::String(content.to_owned()));
        m.insert("edited".into(), Value::Bool(true));
        if mentions.is_empty() {
            m.remove("mentions");
        } else {
            m.insert("mentions".into(), json!(mentions));
        }
        replace(state, group, id, &m)?;
        (old, mentions, before)
    };
    state.features.search.update(room, id, &old, content);
    // Only users the edit newly mentions are told.
    let added: Vec<&str> = mentions
        .iter()
        .filter(|s| !before.contains(s))
        .map(String::as_str)
        .collect();
    notify_mentions(session, room, id, content, &added);
    let mut edited = json!({"type": "edited", "message_id": id, "content": content});
    if !mentions.is_empty() {
        edited["mentions"] = json!(mentions);
    }
    broadcast(session, frames::encode(&edited));
    Ok(())
}

/// `{"type":"delete","message_id"}`: the author, the room's owner or an admin.
pub fn delete(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let (room, group) = chat_room(session)?;
    let id = message_id(frame)?;
    let state = &session.state;
    let claims = &session.claims;
    {
        let _lock = state.features.messages.edit_lock(group);
        let m = saved_message(state, group, id)?;
        if is_deleted(&m) {
            return Ok(());
        }
        let allowed = author(&m) == Some(claims.sub.as_str())
            || claims.is_admin()
            || state.features.rooms.owner(room).as_deref() == Some(claims.sub.as_str());
        if !allowed {
            return Err(Refusal::new(
                "forbidden",
                "only the author, the room's owner or an admin may delete a message",
            ));
        }
        // The tombstone keeps who and when, never what.
        let mut tomb = Map::new();
        tomb.insert("id".into(), json!(id));
        tomb.insert("type".into(), json!("message"));
        for key in ["user", "user_id", "timestamp", "thread_id"] {
            if let Some(v) = m.get(key) {
                tomb.insert(key.into(), v.clone());
            }
        }
        tomb.insert("deleted".into(), Value::Bool(true));
        replace(state, group, id, &tomb)?;
    }
    state.features.search.remove(room, id);
    broadcast(
        session,
        frames::encode(&json!({"type": "deleted", "message_id": id})),
    );
    Ok(())
}

/// `{"type":"read","message_id"}`: remembers the user's last read message
/// and tells the room.
pub fn read(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let (room, group) = chat_room(session)?;
    let id = message_id(frame)?;
    let state = &session.state;
    let last = state
        .hub
        .history(
            group,
            HistoryQuery {
                since: u64::MAX,
                ..HistoryQuery::default()
            },
        )
        .map(|p| p.last_offset)
        .unwrap_or(0);
    if id == 0 || id > last {
        return Err(Refusal::new(
            "not_found",
            format!("no message {id} in this room"),
        ));
    }
    let sub = session.claims.sub.as_str();
    let moved = {
        let mut reads = state.features.messages.reads[shard_of(room)].lock();
        let users = reads.entry(room.to_owned()).or_default();
        match users.get(sub) {
            Some(&seen) if seen >= id => false,
            _ => {
                users.insert(sub.to_owned(), id);
                true
            }
        }
    };
    if moved {
        broadcast(
            session,
            frames::encode(&json!({"type": "read", "user": sub, "message_id": id})),
        );
    }
    Ok(())
}

/// After the joiner's `history` frame: everyone's last read message.
pub fn send_reads(session: &Session) {
    let Some(room) = session.room() else { return };
    let reads: Map<String, Value> = session.state.features.messages.reads[shard_of(room)]
        .lock()
        .get(room)
        .map(|users| {
            users
                .iter()
                .map(|(sub, id)| (sub.clone(), json!(id)))
                .collect()
        })
        .unwrap_or_default();
    session.send_json(&json!({"type": "reads", "reads": reads}));
}

/// `{"type":"history","before"?,"limit"?}`: a page of older messages.
pub fn history(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let (_, group) = chat_room(session)?;
    let before = match frame.get("before") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| Refusal::new("bad_request", "before must be a message id"))?,
    };
    let limit = limit(frame, PAGE_DEFAULT, PAGE_MAX)?;
    let page = session
        .state
        .hub
        .history(
            group,
            HistoryQuery {
                since: 0,
                before,
                limit,
            },
        )
        .map_err(|e| Refusal::new("bad_request", e.to_string()))?;
    session.send(frames::history(page.epoch, &page.messages, None));
    Ok(())
}

/// `{"type":"thread","message_id"}`: the root and its replies.
pub fn thread(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let (room, group) = chat_room(session)?;
    let id = message_id(frame)?;
    let state = &session.state;
    let root = saved_message(state, group, id)?;
    let replies: Vec<u64> = state.features.messages.threads[shard_of(room)]
        .lock()
        .get(&(room.to_owned(), id))
        .map(|r| r[r.len().saturating_sub(THREAD_MAX)..].to_vec())
        .unwrap_or_default();
    let mut messages = vec![Value::Object(root)];
    messages.extend(
        replies
            .into_iter()
            .filter_map(|r| saved(state, group, r).map(Value::Object)),
    );
    // The newest replies are kept when the whole thread does not fit.
    let frame = fit(
        state,
        messages,
        |messages| json!({"type": "thread", "message_id": id, "messages": messages}),
        |messages| {
            messages.remove(1.min(messages.len() - 1));
        },
    );
    session.send(frame);
    Ok(())
}

/// Encodes `build(messages)`, dropping messages with `shrink` until the
/// frame fits the hub's largest payload (else the send would be refused
/// and the client would get nothing).
fn fit(
    state: &AppState,
    mut messages: Vec<Value>,
    build: impl Fn(&[Value]) -> Value,
    shrink: impl Fn(&mut Vec<Value>),
) -> Bytes {
    let max = state.hub.config().max_payload_bytes;
    loop {
        let frame = frames::encode(&build(&messages));
        if frame.len() <= max || messages.len() <= 1 {
            return frame;
        }
        shrink(&mut messages);
    }
}

/// `{"type":"search","query","limit"?}`: messages from every room the
/// caller may read, newest first.
pub fn search(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let query = text_field(frame, "query", MAX_QUERY_BYTES)?;
    let limit = limit(frame, SEARCH_DEFAULT, SEARCH_MAX)?;
    let state = &session.state;
    let claims = &session.claims;
    let hits = state.features.search.search(
        query,
        limit,
        |room| may_read(state, room, &claims.sub, claims.is_admin()),
        |room, id| saved(state, &frames::room_group(room), id).map(Value::Object),
    );
    let messages: Vec<Value> = hits
        .into_iter()
        .map(|mut hit| {
            hit.message["room"] = Value::String(hit.room);
            hit.message
        })
        .collect();
    // The oldest hits go first when they do not all fit in one frame.
    let frame = fit(
        state,
        messages,
        |messages| json!({"type": "search_results", "query": query, "messages": messages}),
        |messages| {
            messages.pop();
        },
    );
    session.send(frame);
    Ok(())
}

// ----- the message path ------------------------------------------------------

/// `@name` tokens of a text (`[A-Za-z0-9_.-]+`), trailing punctuation
/// trimmed, lowercased, deduplicated.
pub fn mention_names(content: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = content;
    while let Some(at) = rest.find('@') {
        let after = &rest[at + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .unwrap_or(after.len());
        let name = after[..end].trim_end_matches(['.', '-']).to_lowercase();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
        rest = &after[end..];
    }
    out
}

/// The user ids a text mentions, among users the hub knows (seen on a
/// `/chat` socket, or online on `/presence`).
pub fn resolve_mentions(state: &AppState, content: &str) -> Vec<String> {
    let names = mention_names(content);
    if names.is_empty() {
        return Vec::new();
    }
    let mut subs: Vec<String> = Vec::new();
    let mut unresolved: Vec<&str> = Vec::new();
    {
        let dir = state.features.messages.directory.lock();
        for name in &names {
            match dir.by_name.get(name) {
                Some(set) if !set.is_empty() => {
                    let mut set: Vec<&String> = set.iter().collect();
                    set.sort();
                    subs.extend(set.into_iter().cloned());
                }
                _ => unresolved.push(name),
            }
        }
    }
    if !unresolved.is_empty() {
        for user in state.presence.users() {
            if unresolved
                .iter()
                .any(|n| *n == user.id.to_lowercase() || *n == user.username.to_lowercase())
            {
                subs.push(user.id);
            }
        }
    }
    let mut seen = FxHashSet::default();
    subs.retain(|s| seen.insert(s.clone()));
    subs.truncate(MAX_MENTIONS);
    subs
}

/// What to do with a chat message before it is saved.
pub enum Decision {
    /// Save and send it.
    Send,
    /// A resend of a message already saved with this id: ack, save nothing.
    Duplicate(u64),
    /// A resend of a message being saved right now: drop it.
    InFlight,
}

/// Checks and enriches a chat message: mutes, thread root, attachments,
/// mentions, and a resend's `client_id`.
pub fn before_message(
    session: &Session,
    content: &str,
    thread_id: &mut Option<u64>,
    attachments: Option<&Value>,
    client_id: Option<&str>,
    extra: &mut Map<String, Value>,
) -> Result<Decision, Refusal> {
    let (room, group) = chat_room(session)?;
    let state = &session.state;
    let claims = &session.claims;
    if state.features.moderation.is_muted(room, &claims.sub) {
        return Err(Refusal::new("muted", "you are muted in this room"));
    }
    if let Some(root) = *thread_id {
        let m = saved_message(state, group, root)
            .map_err(|_| Refusal::new("not_found", format!("no message {root} to reply to")))?;
        // A reply to a reply joins the root's thread.
        if let Some(top) = m.get("thread_id").and_then(Value::as_u64) {
            *thread_id = Some(top);
        }
    }
    if let Some(list) = attachments {
        let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
        if list.len() > MAX_ATTACHMENTS {
            return Err(Refusal::new(
                "too_large",
                format!("at most {MAX_ATTACHMENTS} attachments"),
            ));
        }
        for a in list {
            match a.as_str() {
                Some(id) if super::files::exists(state, id) => {}
                _ => {
                    return Err(Refusal::new(
                        "bad_request",
                        "attachments must be ids of uploaded files",
                    ))
                }
            }
        }
    }
    let mentions = resolve_mentions(state, content);
    if !mentions.is_empty() {
        extra.insert("mentions".into(), json!(mentions));
    }
    if let Some(client_id) = client_id {
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(Refusal::new("bad_request", "client_id must be 1-128 bytes"));
        }
        let mut ids = state.features.messages.client_ids[shard_of(room)].lock();
        let key = ids.key(room, &claims.sub, client_id);
        match ids.ids.get(&key) {
            Some(&(id, _)) if id > 0 => return Ok(Decision::Duplicate(id)),
            Some(&(_, at)) if at.elapsed() < CLIENT_ID_PENDING => return Ok(Decision::InFlight),
            _ => {}
        }
        ids.ids.insert(key, (0, Instant::now()));
        ids.order.push_back(key);
        while ids.order.len() > MAX_CLIENT_IDS / SHARDS {
            if let Some(old) = ids.order.pop_front() {
                ids.ids.remove(&old);
            }
        }
    }
    Ok(Decision::Send)
}

/// After a chat message was saved as `id`: remembers its client id and
/// thread, indexes it, and notifies the users it mentions.
#[allow(clippy::too_many_arguments)]
pub fn after_message(
    session: &Session,
    id: u64,
    content: &str,
    thread_id: Option<u64>,
    client_id: Option<&str>,
    extra: &Map<String, Value>,
    delivered: u64,
) {
    let Ok((room, group)) = chat_room(session) else {
        return;
    };
    let state = &session.state;
    let features = &state.features;
    let claims = &session.claims;
    features.analytics.record_message(room, delivered);
    if let Some(client_id) = client_id {
        let mut ids = features.messages.client_ids[shard_of(room)].lock();
        let key = ids.key(room, &claims.sub, client_id);
        if let Some(entry) = ids.ids.get_mut(&key) {
            entry.0 = id;
        }
    }
    if let Some(root) = thread_id {
        let mut threads = features.messages.threads[shard_of(room)].lock();
        let replies = threads.entry((room.to_owned(), root)).or_default();
        match replies.last() {
            Some(&last) if last > id => {
                let i = replies.partition_point(|&r| r < id);
                replies.insert(i, id);
            }
            _ => replies.push(id),
        }
    }
    if features.search.insert(room, id, content) {
        // Forget what history has evicted since the last check.
        if let Ok(page) = state.hub.history(
            group,
            HistoryQuery {
                since: u64::MAX,
                ..HistoryQuery::default()
            },
        ) {
            let first = if page.first_offset == 0 {
                u64::MAX
            } else {
                page.first_offset
            };
            features.search.evict_before(room, first);
            // Threads whose root history no longer keeps cannot be asked for.
            features.messages.threads[shard_of(room)]
                .lock()
                .retain(|(r, root), _| r != room || *root >= first);
        }
    }
    if let Some(Value::Array(mentioned)) = extra.get("mentions") {
        let subs: Vec<&str> = mentioned.iter().filter_map(Value::as_str).collect();
        notify_mentions(session, room, id, content, &subs);
    }
}

/// Tells each mentioned user who may read `room`, on their `/presence`
/// and `/dm` sockets, wherever they are.
fn notify_mentions(session: &Session, room: &str, id: u64, content: &str, subs: &[&str]) {
    let state = &session.state;
    let claims = &session.claims;
    let notice = frames::encode(&json!({
        "type": "mention",
        "room": room,
        "message_id": id,
        "from": claims.username,
        "from_id": claims.sub,
        "content": content,
    }));
    for &sub in subs {
        if sub == claims.sub {
            continue;
        }
        let admin = state.features.messages.is_admin(sub);
        if may_read(state, room, sub, admin) {
            let _ = state.hub.group_send(
                &frames::notify_group(sub),
                Kind::Json,
                notice.clone(),
                false,
            );
        }
    }
}
