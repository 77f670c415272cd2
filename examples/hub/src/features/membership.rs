//! Who is a member of which room (issue 16, "join/leave noise"): a user's
//! membership changes when they join or leave a room, not when they open
//! another one, reload, or lose the connection.
//!
//! - **Kept** in the hub's state store, [`Table::Members`] (group = room,
//!   field = user id, value = when they joined, ms): `hub.redb` (batched,
//!   like unread's first-visit mark) or Redis, so it holds across
//!   restarts and is the same on every hub.
//! - **Joining.** A `/chat/{room}` connection of a user who is not a
//!   member makes them one, and the room gets the saved "X joined the
//!   chat" (within `--join-notices-per-minute`). A member's connection
//!   saves nothing: the room gets the same text live only, without an
//!   `id` (who came online here), which history never keeps.
//! - **Closing a socket is not leaving**: its "X left the chat" is live
//!   only. An explicit leave ([`leave`]: `{"type":"leave"}` on `/chat`, or
//!   `POST /rooms/{id}/leave`) ends the membership, saves one "X left the
//!   chat", forgets the room's unread position (it is no longer counted)
//!   and closes the user's sockets in the room on every hub with 1000
//!   ([`LEFT_REASON`]).
//! - **Leaving a private room** drops the user from its `members` (someone
//!   who manages the room must add them again); its owner stays owner and
//!   may come back. See `rooms::leave_members`.
//! - **Other ends**: a kick or a ban ends the membership (the moderation
//!   line says why; no "left" line), and so do being removed from a
//!   private room (or the room made private without you) and the room's
//!   deletion.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::ChatRoom;
use crate::auth::Claims;
use crate::error::Refusal;
use crate::server::AppState;
use crate::session::Session;
use crate::store::{CloseEvent, Store, StoreError, Table};

/// The close reason of the sockets an explicit leave closes (code 1000).
pub const LEFT_REASON: &str = "you left this room";

/// Memberships in the state store.
#[derive(Debug)]
pub struct Members {
    store: Arc<Store>,
}

impl Members {
    /// Memberships kept in `store`.
    pub fn new(store: Arc<Store>) -> Members {
        Members { store }
    }

    /// Makes `sub` a member of `room`; true when they were not one.
    pub async fn join(&self, room: &str, sub: &str) -> Result<bool, StoreError> {
        let now = crate::store::now_ms().to_string();
        self.store
            .put_new_batched(Table::Members, room, sub, now.as_bytes())
            .await
    }

    /// True when `sub` is a member of `room`.
    pub async fn is_member(&self, room: &str, sub: &str) -> Result<bool, StoreError> {
        Ok(self.store.get(Table::Members, room, sub).await?.is_some())
    }

    /// Ends `sub`'s membership of `room`; true when this call ended it
    /// (two leaves at once: one of them).
    pub async fn end(&self, room: &str, sub: &str) -> Result<bool, StoreError> {
        let Some(old) = self.store.get(Table::Members, room, sub).await? else {
            return Ok(false);
        };
        // The mark may still be in the embedded batch: committed first, so
        // the removal below is the last word.
        self.store.flush_async().await?;
        self.store.swap(Table::Members, room, sub, &old, None).await
    }

    /// The members of `room` (user ids).
    pub async fn of_room(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let all = self.store.all(Table::Members, room).await?;
        Ok(all.into_iter().map(|(sub, _)| sub).collect())
    }

    /// Forgets every membership of a deleted room.
    pub async fn forget_room(&self, room: &str) {
        if let Err(e) = self.store.drop_group(Table::Members, room).await {
            tracing::error!(error = %e, room, "could not forget a deleted room's members");
        }
    }
}

/// A `/chat/{room}` connection of `sub`: true when it made them a member
/// (their join notice is then saved). A store that cannot answer counts
/// as "already a member": the notice goes live only rather than into
/// history twice.
pub async fn on_connect(state: &AppState, room: &str, sub: &str) -> bool {
    match state.features.members.join(room, sub).await {
        Ok(first) => first,
        Err(e) => {
            tracing::warn!(error = %e, room, "membership: state store unavailable");
            false
        }
    }
}

/// Ends `sub`'s membership of `room` without a notice (a kick, a ban).
pub async fn end(state: &AppState, room: &str, sub: &str) {
    if let Err(e) = state.features.members.end(room, sub).await {
        tracing::warn!(error = %e, room, "could not end a membership");
    }
}

/// After a private room's members changed: ends the memberships of users
/// it no longer admits.
pub async fn keep_admitted(state: &AppState, room: &super::rooms::Room) {
    let members = match state.features.members.of_room(&room.id).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, room = %room.id, "could not list a room's members");
            return;
        }
    };
    for sub in members {
        if !room.admits_sub(&sub, state.features.is_admin(&sub)) {
            end(state, &room.id, &sub).await;
        }
    }
}

/// `claims` leaves room `room` of their own accord: out of a private
/// room's members list, membership ended with one saved "X left the chat"
/// (when they were a member), unread position forgotten, their sockets in
/// the room closed with 1000 on every hub. `answer` goes to the socket
/// that asked, before it closes. True when they were a member.
pub async fn leave(
    state: &AppState,
    room: ChatRoom<'_>,
    claims: &Claims,
    answer: impl FnOnce(bool),
) -> Result<bool, Refusal> {
    let sub = claims.sub.as_str();
    super::rooms::leave_members(state, room.id, sub).await?;
    let was_member = state.features.members.end(room.id, sub).await?;
    if was_member {
        let left = format!("{} left the chat", claims.username);
        crate::chat::send_notice(state, room.id, room.group, sub, false, true, &left).await;
    }
    if let Err(e) = state.store.remove(Table::UserReads, sub, room.id).await {
        tracing::warn!(error = %e, room = room.id, "could not forget a left room's read position");
    }
    answer(was_member);
    let event = CloseEvent {
        room: room.id.to_owned(),
        user: Some(sub.to_owned()),
        admitted: None,
        code: 1000,
        reason: LEFT_REASON.into(),
        node: state.store.node.clone(),
    };
    super::close_sockets(state, event).await;
    tracing::info!(room = room.id, user = sub, was_member, "left a room");
    Ok(was_member)
}

/// `{"type":"leave"}` on `/chat/{room}`: answered with
/// `{"type":"left","room","was_member"}`, then the socket closes with
/// 1000 (see [`leave`]).
pub async fn frame(session: &Session, room: ChatRoom<'_>) -> Result<(), Refusal> {
    let answer = |was_member: bool| {
        session.send_json(&json!({"type": "left", "room": room.id, "was_member": was_member}));
    };
    leave(&session.state, room, &session.claims, answer).await?;
    Ok(())
}

/// `POST /rooms/{id}/leave`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/rooms/{id}/leave", post(leave_route))
}

/// `POST /rooms/{id}/leave`: [`leave`] without a socket in the room;
/// answers `{"room","was_member"}`.
async fn leave_route(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<String>,
) -> Response {
    let group = crate::frames::room_group(&id);
    let room = ChatRoom {
        id: &id,
        group: &group,
    };
    match leave(&state, room, &claims, |_| {}).await {
        Ok(was_member) => Json(json!({"room": id, "was_member": was_member})).into_response(),
        Err(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": r.code.as_str(), "detail": r.detail})),
        )
            .into_response(),
    }
}
