//! Extensions (issue 6): typing, reactions, edits, deletes, read receipts,
//! threads, mentions, search, rooms REST, files, moderation, analytics.
//!
//! This file belongs to the extensions. The base server calls into it at
//! these points and nowhere else:
//!
//! - [`FeatureState`]: kept in `AppState::features`, for the extensions' state.
//! - [`routes`]: merged into the HTTP router (`/rooms`, `/files`).
//! - [`STATIC`]: more static files, `(path, content type, body)`.
//! - [`admit`]: before upgrading `/chat/{room}`; 403 for a private room the
//!   caller is not a member of, or a ban.
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
//! a private room (or the room made private without you), room deleted.
//! Defaults: a ban without `duration_s` lasts until `unban`; a mute without
//! it lasts 10 minutes; `unban` lifts both. Typing: 2 notices a second per
//! socket. Reactions: 32 distinct emojis a message. Attachments: 10 a
//! message, ids of uploaded files only. `history` pages: 50, at most 200.
//! `search`: 20, at most 100, newest first; `thread`: the newest 500
//! replies. Replies that would not fit one frame drop their oldest entries.
//!
//! The modules, one concern each: `messages` (what clients do to messages),
//! `search` (the inverted index), `rooms` (registry and REST), `moderation`,
//! `files` (uploads), `analytics` (per-room counters).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use serde_json::Value;

use crate::auth::Claims;
pub use crate::chat::Refusal;
use crate::chat::{MessageDraft, SentMessage};
use crate::server::{AppState, Session};

pub mod analytics;
pub mod files;
pub mod messages;
pub mod moderation;
pub mod rooms;
pub mod search;

/// The extensions' state.
#[derive(Debug, Default)]
pub struct FeatureState {
    /// Rooms made with `POST /rooms`: owners, members, privacy.
    pub rooms: rooms::Registry,
    /// Bans and mutes per room.
    pub moderation: moderation::Moderation,
    /// Word -> message ids, for `search`.
    pub search: search::SearchIndex,
    /// Reads, threads, client ids, typing windows, known users.
    pub messages: messages::MessageState,
    /// Per-room traffic counters.
    pub analytics: analytics::Analytics,
}

impl FeatureState {
    /// True when `sub` was last seen with the admin role.
    pub fn is_admin(&self, sub: &str) -> bool {
        self.messages.is_admin(sub)
    }

    /// Forgets what the extensions keep about a deleted room.
    pub fn forget_room(&self, room: &str) {
        self.moderation.forget_room(room);
        self.messages.forget_room(room);
        self.search.evict_before(room, u64::MAX);
        self.analytics.forget_room(room);
    }
}

/// Static files served besides the browser client: `(path, content type, body)`.
pub const STATIC: &[(&str, &str, &str)] = &[];

/// HTTP routes of the extensions.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().merge(rooms::routes()).merge(files::routes())
}

/// May `claims` join `room`? 403 for a private room the caller is not a
/// member of, and for a banned user.
pub fn admit(state: &AppState, claims: &Claims, room: &str) -> Result<(), StatusCode> {
    let features = &state.features;
    features.rooms.load(&state.config.data_dir);
    features
        .messages
        .saw(&claims.sub, &claims.username, claims.is_admin());
    if !features
        .rooms
        .may_read(room, &claims.sub, claims.is_admin())
    {
        return Err(StatusCode::FORBIDDEN);
    }
    if features.moderation.is_banned(room, &claims.sub) {
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(())
}

/// A client frame of a type the base does not handle.
pub async fn handle_frame(ctx: &Session, ty: &str, frame: &Value) {
    let chat_only = |f: fn(&Session, &Value) -> Result<(), Refusal>| {
        if ctx.room().is_none() {
            return Err(Refusal::new(
                "unknown_type",
                format!("{ty:?} frames are for /chat sockets"),
            ));
        }
        f(ctx, frame)
    };
    let result = match ty {
        "typing" => chat_only(messages::typing),
        "reaction" => chat_only(messages::reaction),
        "edit" => chat_only(messages::edit),
        "delete" => chat_only(messages::delete),
        "read" => chat_only(messages::read),
        "history" => chat_only(messages::history),
        "thread" => chat_only(messages::thread),
        "search" => chat_only(messages::search),
        "kick" | "ban" | "mute" | "unban" => {
            if ctx.room().is_none() {
                Err(Refusal::new(
                    "unknown_type",
                    "moderation frames are for /chat sockets",
                ))
            } else {
                moderation::handle(ctx, ty, frame)
            }
        }
        _ => Err(Refusal::new(
            "unknown_type",
            format!("unknown frame type {:?}", truncate(ty, 40)),
        )),
    };
    if let Err(r) = result {
        ctx.send_error(r.code, &r.detail);
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Before a chat message is built.
pub fn on_message(ctx: &Session, draft: &mut MessageDraft) -> Result<(), Refusal> {
    let decision = messages::before_message(
        ctx,
        &draft.content,
        &mut draft.thread_id,
        draft.attachments.as_ref(),
        draft.client_id.as_deref(),
        &mut draft.extra,
    )?;
    match decision {
        messages::Decision::Send => {}
        messages::Decision::Duplicate(id) => draft.duplicate_of = Some(id),
        // Acked when the first copy is saved.
        messages::Decision::InFlight => draft.duplicate_of = Some(0),
    }
    Ok(())
}

/// After a chat message was sent.
pub fn after_message(ctx: &Session, sent: &SentMessage<'_>) {
    let draft = sent.draft;
    messages::after_message(
        ctx,
        sent.id,
        &draft.content,
        draft.thread_id,
        draft.client_id.as_deref(),
        &draft.extra,
        sent.delivered,
    );
}

/// After a joiner got its `history` frame: everyone's last read message.
pub fn on_join(ctx: &Session) {
    messages::send_reads(ctx);
}

/// When a socket leaves its room.
pub fn on_leave(ctx: &Session) {
    ctx.state.features.messages.forget_connection(ctx.conn.id());
}

/// Adds per-room messages and deliveries, per-minute rates over the last
/// hour and the busiest rooms to the `GET /stats` object.
pub fn extend_stats(state: &AppState, caller: &Claims, stats: &mut Value) {
    let visible = |room: &str| {
        state
            .features
            .rooms
            .may_read(room, &caller.sub, caller.is_admin())
    };
    let Value::Object(traffic) = state.features.analytics.snapshot(&visible) else {
        return;
    };
    let Some(out) = stats.as_object_mut() else {
        return;
    };
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
            }
        } else {
            out.insert(key, value);
        }
    }
}

/// Adds the per-room counters to the `GET /metrics` text.
pub fn extend_metrics(state: &AppState, caller: &Claims, out: &mut String) {
    let visible = |room: &str| {
        state
            .features
            .rooms
            .may_read(room, &caller.sub, caller.is_admin())
    };
    state.features.analytics.metrics(out, &visible);
}
