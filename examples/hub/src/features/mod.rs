//! Extensions (issue 6): typing, reactions, edits, deletes, read receipts,
//! threads, mentions, search, rooms REST, files, moderation, analytics.
//!
//! This file belongs to the extensions. The base server calls into it at
//! these points and nowhere else:
//!
//! - [`FeatureState`]: kept in `AppState::features`, for the extensions' state.
//! - [`routes`]: merged into the HTTP router (`/rooms`, `/files`).
//! - [`STATIC`]: more static files, `(path, content type, body)`.
//! - [`admit`]: before upgrading `/chat/{room}` (awaited before the
//!   handshake's callback); 403 for a private room the caller is not a
//!   member of, or a ban.
//! - [`handle_frame`]: every client frame whose `type` the base does not
//!   handle, on `/chat`, `/presence` and `/dm` (see `Session::endpoint`).
//! - [`on_message`]: before a chat message is built (mutes, thread roots,
//!   attachments, `mentions`, resends by `client_id`); [`after_message`]:
//!   after it was sent, with its id (search index, threads, mentions,
//!   analytics).
//! - [`on_join`]: after the joiner got its `history` frame (read receipts);
//!   [`on_leave`].
//! - [`extend_stats`], [`extend_metrics`]: per-room traffic for `/stats`
//!   and `/metrics`.
//!
//! Close codes the extensions use: 4000 kicked; 4003 banned, removed from
//! a private room (or the room made private without you), room deleted;
//! 1000 with `membership::LEFT_REASON` after the user left the room.
//! Defaults: a ban without `duration_s` lasts until `unban`; a mute without
//! it lasts 10 minutes; `unban` lifts both. Typing: 2 notices a second per
//! socket. Reactions: 32 distinct emojis a message. Attachments: 10 a
//! message, ids of uploaded files only. `history` pages: 50, at most 200.
//! `search`: 20, at most 100, newest first; `thread`: the newest 500
//! replies. Replies that would not fit one frame drop their oldest entries.
//!
//! The modules, one concern each. Room frames: `typing`, `edits`
//! (reactions, edits, deletes), `reads` (receipts), `threads`, `history`
//! (older pages), `search` (the index and its frame), `moderation`. The
//! message path: `messages` (the hooks around a send), `client_ids`
//! (resends), `mentions`, `directory` (users seen). HTTP: `rooms` (registry
//! and REST), `files` (uploads). Joins: `joins` (rates), `membership` (who
//! joined which room: which join and leave notices are saved, the `leave`
//! frame and `POST /rooms/{id}/leave`). Shared: `saved` (messages as history keeps
//! them), `fields` (frame fields), `analytics` (per-room counters).

use std::hash::BuildHasher;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use bytes::Bytes;
use channelbox::Kind;
use serde_json::Value;

use crate::auth::Claims;
use crate::chat::{MessageDraft, SentMessage};
use crate::error::Refusal;
use crate::server::AppState;
use crate::session::Session;
use crate::store::{CloseEvent, Store, StoreError};

pub mod analytics;
pub mod client_ids;
pub mod directory;
pub mod edits;
pub mod fields;
pub mod files;
pub mod history;
pub mod joins;
// Issue 16: membership-based join and leave notices.
pub mod membership;
pub mod mentions;
pub mod messages;
pub mod moderation;
pub mod names;
pub mod occupancy;
pub mod reads;
pub mod rooms;
pub mod saved;
pub mod search;
pub mod threads;
pub mod typing;
// Issue 15 item 4: unread counts.
pub mod unread;

/// Shards of the per-room maps: two busy rooms rarely share a lock.
const SHARDS: usize = 64;

fn shard_of<T: std::hash::Hash + ?Sized>(key: &T) -> usize {
    (rustc_hash::FxBuildHasher.hash_one(key) as usize) % SHARDS
}

/// The extensions' state. What must survive a restart and be the same on
/// every hub (rooms, bans and mutes, read receipts, threads, client ids)
/// lives in the hub's state store ([`crate::store`]); these hold a handle
/// to it. The rest is per process by nature (typing allowances, sockets,
/// traffic counters) or belongs to other modules (search, directory).
#[derive(Debug)]
pub struct FeatureState {
    /// Rooms made with `POST /rooms`: owners, members, privacy.
    pub rooms: rooms::Registry,
    /// Bans and mutes per room.
    pub moderation: moderation::Moderation,
    /// Word -> message ids, for `search`.
    pub search: search::SearchIndex,
    /// Users seen, for mentions and admin checks.
    pub directory: directory::Directory,
    /// Everyone's last read message per room.
    pub reads: reads::Reads,
    /// Reply ids per thread root.
    pub threads: threads::Threads,
    /// Recent client ids, so a resend is saved once.
    pub client_ids: client_ids::ClientIds,
    /// Each socket's typing allowance.
    pub typing: typing::Typing,
    /// One room's saved messages are rewritten one at a time.
    pub edit_locks: edits::EditLocks,
    /// Per-room traffic counters.
    pub analytics: analytics::Analytics,
    /// Join rates per user and the join/leave notices saved lately.
    pub joins: joins::Joins,
    /// Who is a member of which room (join and leave notices).
    pub members: membership::Members,
    /// Open sockets by user and room, for the join caps.
    pub occupancy: occupancy::Occupancy,
    /// Ad-hoc rooms and DM conversations by when they went idle, so their
    /// history can expire.
    pub idle: rooms::IdleHistories,
}

impl FeatureState {
    /// The extensions' state over the hub's state `store`.
    pub fn new(store: Arc<Store>) -> FeatureState {
        FeatureState {
            rooms: rooms::Registry::new(store.clone()),
            moderation: moderation::Moderation::new(store.clone()),
            reads: reads::Reads::new(store.clone()),
            threads: threads::Threads::new(store.clone()),
            members: membership::Members::new(store.clone()),
            client_ids: client_ids::ClientIds::new(store),
            search: Default::default(),
            directory: Default::default(),
            typing: Default::default(),
            edit_locks: Default::default(),
            analytics: Default::default(),
            joins: Default::default(),
            occupancy: Default::default(),
            idle: Default::default(),
        }
    }

    /// True when `sub` was last seen with the admin role.
    pub fn is_admin(&self, sub: &str) -> bool {
        self.directory.is_admin(sub)
    }

    /// Forgets what the extensions keep about a deleted room.
    pub async fn forget_room(&self, room: &str) {
        if let Err(e) = self.moderation.forget_room(room).await {
            tracing::error!(error = %e, room, "could not forget a deleted room's bans");
        }
        self.reads.forget_room(room).await;
        self.threads.forget_room(room).await;
        self.members.forget_room(room).await;
        self.search.evict_before(room, u64::MAX);
        self.analytics.forget_room(room);
    }
}

/// The room a `/chat` socket's frames act on.
#[derive(Debug, Clone, Copy)]
pub struct ChatRoom<'a> {
    /// The room id, as `/chat/{room}` names it.
    pub id: &'a str,
    /// Its core group (`room:<id>`).
    pub group: &'a str,
}

impl ChatRoom<'_> {
    /// The room of a `/chat` session; `None` on `/presence` and `/dm`.
    pub fn of(session: &Session) -> Option<ChatRoom<'_>> {
        match &session.endpoint {
            crate::session::Endpoint::Chat { room, group } => Some(ChatRoom { id: room, group }),
            _ => None,
        }
    }

    /// Sends a frame to the room without saving it; counts the deliveries.
    pub async fn broadcast(self, session: &Session, frame: Bytes) {
        let state = &session.state;
        let send = state
            .hub
            .group_send_async(self.group, Kind::Json, frame, false);
        if let Ok(report) = send.await {
            state
                .features
                .analytics
                .record_broadcast(self.id, report.delivered);
        }
    }
}

/// What the state store says of a user and a room.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// A private room the user is not in.
    NotAMember,
    Banned,
}

/// The room's row and the user's ban: read together, in one transaction
/// or one Redis round trip.
fn admission_keys<'a>(room: &'a str, sub: &'a str) -> [crate::store::Key<'a>; 2] {
    use crate::store::Table;
    [(Table::Rooms, "", room), (Table::Bans, room, sub)]
}

fn admission(
    state: &AppState,
    room: &str,
    sub: &str,
    admin: bool,
    stored: &[Option<Vec<u8>>],
) -> Admission {
    let features = &state.features;
    let (row, ban) = match stored {
        [row, ban] => (row.as_deref(), ban.as_deref()),
        _ => return Admission::NotAMember,
    };
    if !features.rooms.admits_stored(room, row, sub, admin) {
        Admission::NotAMember
    } else if features.moderation.ban_holds(room, sub, ban) {
        Admission::Banned
    } else {
        Admission::Admitted
    }
}

/// True when `sub` may read `room`: admitted by the room and not banned
/// (one read of the state store: one Redis round trip).
pub async fn may_read_async(
    state: &AppState,
    room: &str,
    sub: &str,
    admin: bool,
) -> Result<bool, StoreError> {
    let stored = state.store.get_many(&admission_keys(room, sub)).await?;
    Ok(admission(state, room, sub, admin, &stored) == Admission::Admitted)
}

/// Closes the sockets `event` names here, then tells the other hubs (with
/// Redis) to close theirs.
pub async fn close_sockets(state: &AppState, event: CloseEvent) {
    apply_close(state, &event);
    if let Err(e) = state.store.publish_close(&event).await {
        tracing::error!(error = %e, room = %event.room, "could not tell the other hubs to close sockets");
    }
}

/// Closes this hub's sockets that `event` names: one user's in the room,
/// the ones the room (as `event.admitted` has it) no longer admits, or
/// all of them.
pub fn apply_close(state: &AppState, event: &CloseEvent) {
    if crate::api::apply_disconnect(state, event) {
        return;
    }
    let admitted = match (&event.user, &event.admitted) {
        (None, Some(json)) => match serde_json::from_str::<rooms::Room>(json) {
            Ok(room) => Some(room),
            Err(e) => {
                tracing::warn!(error = %e, "a close event with a bad room; skipped");
                return;
            }
        },
        _ => None,
    };
    for (conn, sub) in state.room_sessions(&event.room) {
        let close = match (&event.user, &admitted) {
            (Some(user), _) => **user == *sub,
            // The rights of this socket's own token, not the user's last.
            (None, Some(room)) => !room.admits_sub(&sub, state.session_is_admin(conn)),
            (None, None) => true,
        };
        if close {
            state.close_connection(conn, event.code, &event.reason);
        }
    }
    unread::stop_watching(state, event, admitted.as_ref());
}

/// Static files served besides the browser client: `(path, content type, body)`.
pub const STATIC: &[(&str, &str, &str)] = &[];

/// HTTP routes of the extensions.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(rooms::routes())
        .merge(files::routes())
        .merge(unread::routes())
        .merge(membership::routes())
}

/// May `claims` join `room`? 403 for a private room the caller is not a
/// member of, and for a banned user; 429 over `--joins-per-minute`, for a
/// user already in `--max-rooms-joined-per-user` rooms, and for a room
/// with `--max-room-members` users connected (admins pass both caps); 503
/// when the state store (Redis) cannot answer. Called by the upgrade
/// before the handshake's synchronous callback (one read of the store,
/// awaited: no worker waits on Redis).
pub async fn admit(state: &AppState, claims: &Claims, room: &str) -> Result<(), StatusCode> {
    let features = &state.features;
    features.search.start(state);
    let unavailable = |e: StoreError| {
        tracing::warn!(error = %e, room, "admission: state store unavailable");
        StatusCode::SERVICE_UNAVAILABLE
    };
    features.directory.saw(
        &claims.sub,
        &claims.username,
        claims.is_admin(),
        state.config.max_remembered_users,
    );
    let stored = state
        .store
        .get_many(&admission_keys(room, &claims.sub))
        .await
        .map_err(unavailable)?;
    if admission(state, room, &claims.sub, claims.is_admin(), &stored) != Admission::Admitted {
        return Err(StatusCode::FORBIDDEN);
    }
    let config = &state.config;
    if !features.joins.allow(&claims.sub, config.joins_per_minute) {
        return Err(StatusCode::TOO_MANY_REQUESTS);
    }
    let (max_rooms, max_users) = if claims.is_admin() {
        (usize::MAX, usize::MAX)
    } else {
        (config.max_rooms_joined_per_user, config.max_room_members)
    };
    if features
        .occupancy
        .check(room, &claims.sub, max_rooms, max_users)
        .is_err()
    {
        return Err(StatusCode::TOO_MANY_REQUESTS);
    }
    Ok(())
}

/// Frame types that act on the room of a `/chat` socket.
const ROOM_FRAMES: [&str; 13] = [
    "typing", "reaction", "edit", "delete", "read", "history", "thread", "search", "kick", "ban",
    "mute", "unban", "leave",
];

/// A client frame of a type the base does not handle.
pub async fn handle_frame(session: &Session, ty: &str, frame: &Value) {
    let result = match ChatRoom::of(session) {
        Some(room) => room_frame(session, room, ty, frame).await,
        None if ty == "watch_unread" => unread::watch(session, frame).await,
        None if ROOM_FRAMES.contains(&ty) => Err(Refusal::unknown_type(format!(
            "{ty:?} frames are for /chat sockets"
        ))),
        None => Err(unknown_type(ty)),
    };
    if let Err(r) = result {
        session.refuse(&r);
    }
}

/// A frame on a `/chat` socket, by type.
async fn room_frame(
    session: &Session,
    room: ChatRoom<'_>,
    ty: &str,
    frame: &Value,
) -> Result<(), Refusal> {
    match ty {
        "typing" => typing::typing(session, room, frame).await,
        "reaction" => edits::reaction(session, room, frame).await,
        "edit" => edits::edit(session, room, frame).await,
        "delete" => edits::delete(session, room, frame).await,
        "read" => reads::read(session, room, frame).await,
        "history" => history::page(session, room, frame).await,
        "thread" => threads::thread(session, room, frame).await,
        "search" => search::frame(session, frame).await,
        "kick" | "ban" | "mute" | "unban" => moderation::handle(session, room, ty, frame).await,
        "leave" => membership::frame(session, room).await,
        _ => Err(unknown_type(ty)),
    }
}

fn unknown_type(ty: &str) -> Refusal {
    Refusal::unknown_type(format!("unknown frame type {:?}", truncate(ty, 40)))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Before a chat message is built (it may be refused, enriched, or found
/// to be a resend).
pub async fn on_message(
    session: &Session,
    room: ChatRoom<'_>,
    draft: &mut MessageDraft,
) -> Result<(), Refusal> {
    messages::before(session, room, draft).await
}

/// After a chat message was sent.
pub async fn after_message(session: &Session, room: ChatRoom<'_>, sent: &SentMessage<'_>) {
    messages::after(session, room, sent).await;
    unread::after_message(session, room, sent).await;
}

/// The frame a joiner gets right after its `history` frame, in the same
/// write (one `sendto` for both; issue 14): everyone's last read message.
pub async fn join_frame(session: &Session, room: ChatRoom<'_>) -> Bytes {
    reads::reads_frame(session, room.id).await
}

/// After a joiner got its `history` frame: unread counts' first visit.
pub fn on_join(session: &Session, room: ChatRoom<'_>) {
    unread::first_visit(session, room);
}

/// A `/chat` socket joined `room` (counted for the join caps).
pub fn joined(session: &Session, room: &std::sync::Arc<str>) {
    let features = &session.state.features;
    // The user's slot holds the user id interned (one `Arc<str>` a user).
    features.occupancy.joined(room, session.user_slot.sub());
    features.idle.active(&crate::frames::room_group(room));
}

/// A `/chat` socket left `room`; the last one out starts the room's idle
/// clock (see [`rooms::IdleHistories`]).
pub fn left(session: &Session, room: &str) {
    let features = &session.state.features;
    // Idle histories are off with Redis (see `rooms::IdleHistories`), so
    // the store is asked only when they may apply.
    let shared = session.state.store.is_shared();
    if features.occupancy.left(room, &session.claims.sub)
        && !shared
        && matches!(features.rooms.exists_blocking(room), Ok(false))
    {
        let group = crate::frames::room_group(room);
        features
            .idle
            .idle_since_now(&session.state, &group, Some(room));
    }
}

/// When a socket leaves its room.
pub fn on_leave(session: &Session) {
    session
        .state
        .features
        .typing
        .forget_connection(session.conn.id());
}

/// Adds per-room messages and deliveries, per-minute rates over the last
/// hour and the busiest rooms to the `GET /stats` object.
pub async fn extend_stats(state: &AppState, caller: &Claims, stats: &mut Value) {
    let mut names = state.features.analytics.rooms();
    if let Some(per_room) = stats.get("per_room").and_then(Value::as_object) {
        names.extend(per_room.keys().cloned());
    }
    let readable = readable_rooms(state, caller, names).await;
    let visible = |room: &str| readable.contains(room);
    let top_n = state.config.stats_top_rooms;
    let Value::Object(traffic) = state.features.analytics.snapshot(&visible, top_n) else {
        return;
    };
    let Some(out) = stats.as_object_mut() else {
        return;
    };
    let mut omitted = 0;
    for (key, value) in traffic {
        if key == "rooms" {
            // Merged into the base's `per_room` (connections per room).
            let per_room = out
                .entry("per_room")
                .or_insert_with(|| Value::Object(Default::default()));
            if let (Some(per_room), Value::Object(rooms)) = (per_room.as_object_mut(), value) {
                // The base lists every room with connections: keep only
                // the ones the caller may read.
                per_room.retain(|room, _| visible(room));
                for (room, counters) in rooms {
                    let entry = per_room
                        .entry(room)
                        .or_insert_with(|| serde_json::json!({"connections": 0}));
                    if let (Some(entry), Value::Object(counters)) =
                        (entry.as_object_mut(), counters)
                    {
                        entry.extend(counters);
                    }
                }
                omitted = bound_per_room(per_room, top_n);
            }
        } else {
            out.insert(key, value);
        }
    }
    out.insert("per_room_omitted".into(), Value::from(omitted));
    out.insert("state_corrupt".into(), Value::from(state.store.corrupt()));
    out.insert(
        "search_index_dropped".into(),
        Value::from(state.features.search.dropped()),
    );
}

/// Adds the per-room counters to the `GET /metrics` text.
pub async fn extend_metrics(state: &AppState, caller: &Claims, out: &mut String) {
    let names = state.features.analytics.rooms();
    let readable = readable_rooms(state, caller, names).await;
    let visible = |room: &str| readable.contains(room);
    let top_n = state.config.stats_top_rooms;
    state.features.analytics.metrics(out, &visible, top_n);
    out.push_str(
        "# HELP channelbox_hub_state_corrupt_total Values in the hub's state store that did not decode (skipped).\n\
         # TYPE channelbox_hub_state_corrupt_total counter\n",
    );
    out.push_str(&format!(
        "channelbox_hub_state_corrupt_total {}\n",
        state.store.corrupt()
    ));
    out.push_str(
        "# HELP channelbox_hub_search_index_dropped_total Index changes dropped (queue to Redis full, Redis failing, or too many during a rebuild): those messages are not found by search.\n\
         # TYPE channelbox_hub_search_index_dropped_total counter\n",
    );
    out.push_str(&format!(
        "channelbox_hub_search_index_dropped_total {}\n",
        state.features.search.dropped()
    ));
}

/// The rooms among `names` that `caller` may read (bans aside), asked of
/// the state store a chunk at a time (one Redis round trip per chunk); none
/// of a chunk the store cannot answer for.
async fn readable_rooms(
    state: &AppState,
    caller: &Claims,
    mut names: Vec<String>,
) -> rustc_hash::FxHashSet<String> {
    use crate::store::Table;
    const CHUNK: usize = 512;
    names.sort_unstable();
    names.dedup();
    let admin = caller.is_admin();
    let mut out = rustc_hash::FxHashSet::default();
    for chunk in names.chunks(CHUNK) {
        let keys: Vec<crate::store::Key<'_>> = chunk
            .iter()
            .map(|n| (Table::Rooms, "", n.as_str()))
            .collect();
        match state.store.get_many(&keys).await {
            Ok(rows) => {
                for (name, row) in chunk.iter().zip(rows) {
                    let rooms = &state.features.rooms;
                    if rooms.admits_stored(name, row.as_deref(), &caller.sub, admin) {
                        out.insert(name.clone());
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "stats: room checks failed; rooms left out"),
        }
    }
    out
}

/// Keeps the `top_n` busiest entries of `/stats`' `per_room` (by messages
/// in the last hour, then connections, then id) and counts the rest in
/// `/stats`' `per_room_omitted`; returns how many.
fn bound_per_room(per_room: &mut serde_json::Map<String, Value>, top_n: usize) -> usize {
    if per_room.len() <= top_n {
        return 0;
    }
    let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut ranked: Vec<(u64, u64, String)> = per_room
        .iter()
        .map(|(room, v)| {
            (
                number(v, "messages_last_hour"),
                number(v, "connections"),
                room.clone(),
            )
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let keep: std::collections::HashSet<String> = ranked
        .into_iter()
        .take(top_n)
        .map(|(_, _, room)| room)
        .collect();
    let before = per_room.len();
    per_room.retain(|room, _| keep.contains(room));
    before - per_room.len()
}
