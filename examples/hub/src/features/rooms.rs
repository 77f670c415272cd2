//! Rooms made with `POST /rooms`: their names, owners, members and
//! privacy, and the REST API over them.
//!
//! A room that was never created has no entry here: it is public, has no
//! owner, and opens on first join (the tutorial's behaviour). A private
//! room admits its owner, its members and admins only.

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::auth::Claims;
use crate::frames;
use crate::server::AppState;

/// Longest room name, in characters.
const MAX_NAME_CHARS: usize = 80;
/// Most members a room lists.
const MAX_MEMBERS: usize = 10_000;
/// Longest user id in a member list (the token's limit).
const MAX_SUB_BYTES: usize = 128;

/// One created room.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Room {
    /// What `/chat/{room_id}` takes.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Members only (plus owner and admins).
    pub private: bool,
    /// The creator's `sub`: may change and moderate the room.
    pub owner: String,
    /// User ids admitted to a private room (the owner included).
    pub members: BTreeSet<String>,
}

impl Room {
    /// True when `claims` may join and read this room (bans aside).
    pub fn admits(&self, claims: &Claims) -> bool {
        self.admits_sub(&claims.sub, claims.is_admin())
    }

    /// [`Room::admits`] for a user known by id and admin flag.
    pub fn admits_sub(&self, sub: &str, admin: bool) -> bool {
        !self.private || admin || self.owner == sub || self.members.contains(sub)
    }

    /// True when `claims` may change the room and moderate it.
    pub fn is_managed_by(&self, claims: &Claims) -> bool {
        claims.is_admin() || self.owner == claims.sub
    }
}

/// Every created room, by id; kept in `<data dir>/rooms.json` so that a
/// private room stays private across restarts (its history may outlive
/// the process in a durable engine, and its members rejoin it by id).
#[derive(Debug, Default)]
pub struct Registry {
    rooms: RwLock<FxHashMap<String, Room>>,
    /// Where the registry is saved; set by the first [`Registry::load`].
    file: OnceLock<PathBuf>,
    /// One save at a time, each writing the registry as it is then.
    saving: Mutex<()>,
}

impl Registry {
    /// Reads the saved registry from `data_dir` the first time it is
    /// called; later calls do nothing.
    pub fn load(&self, data_dir: &FsPath) {
        self.file.get_or_init(|| {
            let path = data_dir.join("rooms.json");
            match std::fs::read(&path) {
                Ok(raw) => match serde_json::from_slice::<Vec<Room>>(&raw) {
                    Ok(list) => {
                        let mut rooms = self.rooms.write();
                        for room in list {
                            rooms.entry(room.id.clone()).or_insert(room);
                        }
                        tracing::info!(rooms = rooms.len(), path = %path.display(), "rooms loaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, path = %path.display(), "rooms file unreadable; starting without it")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!(error = %e, path = %path.display(), "could not read the rooms file"),
            }
            path
        });
    }

    /// Writes the registry to its file (after every change; changes are
    /// rare). A failure is logged: the hub keeps serving from memory.
    fn save(&self) {
        let Some(path) = self.file.get() else { return };
        let _one = self.saving.lock();
        let mut list: Vec<Room> = self.rooms.read().values().cloned().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        let result = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&list).unwrap_or_default())?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, path = %path.display(), "could not save rooms");
        }
    }

    /// The room `id`, if it was created.
    pub fn get(&self, id: &str) -> Option<Room> {
        self.rooms.read().get(id).cloned()
    }

    /// True when `sub` (an admin or not) may read room `id`.
    pub fn may_read(&self, id: &str, sub: &str, admin: bool) -> bool {
        self.rooms
            .read()
            .get(id)
            .map_or(true, |r| r.admits_sub(sub, admin))
    }

    /// The owner of room `id` (None for rooms never created).
    pub fn owner(&self, id: &str) -> Option<String> {
        self.rooms.read().get(id).map(|r| r.owner.clone())
    }

    /// Rooms `claims` may see, sorted by id: public ones and private ones
    /// it belongs to (admins see all).
    pub fn visible(&self, claims: &Claims) -> Vec<Room> {
        let mut out: Vec<Room> = self
            .rooms
            .read()
            .values()
            .filter(|r| r.admits(claims))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// The registry, loaded from the data directory on first use.
fn registry(state: &AppState) -> &Registry {
    let registry = &state.features.rooms;
    registry.load(&state.config.data_dir);
    registry
}

/// Why a REST call failed: status and a short reason.
type Refusal = (StatusCode, &'static str);

fn refuse((status, detail): Refusal) -> Response {
    let error = status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "_");
    (
        status,
        Json(serde_json::json!({"error": error, "detail": detail})),
    )
        .into_response()
}

/// An id from a name: lowercase letters, digits and dashes.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "room".into()
    } else {
        out
    }
}

fn check_name(name: &str) -> Result<String, Refusal> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "name must be 1-80 printable characters",
        ));
    }
    Ok(name.to_owned())
}

fn check_members(list: &[String]) -> Result<(), Refusal> {
    if list.len() > MAX_MEMBERS {
        return Err((StatusCode::BAD_REQUEST, "too many members"));
    }
    if list
        .iter()
        .any(|m| m.is_empty() || m.len() > MAX_SUB_BYTES || m.chars().any(char::is_control))
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "members are user ids (1-128 bytes)",
        ));
    }
    Ok(())
}

/// Parses a JSON body, answering 400 on anything else.
fn body<T: serde::de::DeserializeOwned>(
    raw: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Refusal> {
    let Ok(Json(value)) = raw else {
        return Err((StatusCode::BAD_REQUEST, "expected a JSON object"));
    };
    serde_json::from_value(value).map_err(|_| (StatusCode::BAD_REQUEST, "bad or missing field"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    name: Option<String>,
    private: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

type JsonBody = Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>;

/// `/rooms` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rooms", post(create).get(list))
        .route("/rooms/{id}", get(show).patch(update).delete(remove))
        .route("/rooms/{id}/members", post(members))
}

async fn create(State(state): State<Arc<AppState>>, claims: Claims, raw: JsonBody) -> Response {
    let request: Create = match body(raw) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    let name = match check_name(&request.name) {
        Ok(n) => n,
        Err(e) => return refuse(e),
    };
    if let Err(e) = check_members(&request.members) {
        return refuse(e);
    }
    let base = slug(&name);
    let mut members: BTreeSet<String> = request.members.into_iter().collect();
    members.insert(claims.sub.clone());
    let registry = registry(&state);
    // A room id already in use (created, or an open room with history or
    // people in it) gets a random suffix: creating never takes over a room.
    // The core is asked without the registry's lock; the registry is
    // checked again, and the room put in, under it.
    let mut id = base.clone();
    let mut tries = 0;
    let mut rooms = loop {
        if !in_use(&state, &id).await {
            let rooms = registry.rooms.write();
            if !rooms.contains_key(&id) {
                break rooms;
            }
        }
        tries += 1;
        if tries > 16 {
            return refuse((StatusCode::CONFLICT, "could not find a free room id"));
        }
        let tag: u32 = rand::thread_rng().gen();
        id = format!("{base}-{tag:08x}");
    };
    let room = Room {
        id: id.clone(),
        name,
        private: request.private,
        owner: claims.sub.clone(),
        members,
    };
    rooms.insert(id.clone(), room.clone());
    drop(rooms);
    registry.save();
    tracing::info!(room = %id, owner = %claims.sub, private = room.private, "room created");
    (StatusCode::CREATED, Json(room)).into_response()
}

/// True when room `id` already saved a message or has people in it (or
/// the engine cannot say: then it is not taken over either).
async fn in_use(state: &AppState, id: &str) -> bool {
    let group = frames::room_group(id);
    let saved = state.hub.last_offset_async(&group).await;
    !matches!(saved, Ok(0)) || !state.hub.presence_async(&group).await.is_empty()
}

async fn list(State(state): State<Arc<AppState>>, claims: Claims) -> Response {
    Json(registry(&state).visible(&claims)).into_response()
}

async fn show(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<String>,
) -> Response {
    match registry(&state).get(&id) {
        None => refuse((StatusCode::NOT_FOUND, "no such room")),
        Some(room) if !room.admits(&claims) => {
            refuse((StatusCode::FORBIDDEN, "this room is private"))
        }
        Some(_) if state.features.moderation.is_banned(&id, &claims.sub) => {
            refuse((StatusCode::FORBIDDEN, "you are banned from this room"))
        }
        Some(room) => Json(room).into_response(),
    }
}

/// Runs `change` on room `id` if `claims` manages it; then closes the
/// sockets of users the room no longer admits.
fn change(
    state: &AppState,
    claims: &Claims,
    id: &str,
    change: impl FnOnce(&mut Room),
) -> Result<Room, Refusal> {
    let registry = registry(state);
    let room = {
        let mut rooms = registry.rooms.write();
        let room = rooms
            .get_mut(id)
            .ok_or((StatusCode::NOT_FOUND, "no such room"))?;
        if !room.is_managed_by(claims) {
            return Err((
                StatusCode::FORBIDDEN,
                "only the room's owner or an admin may change it",
            ));
        }
        change(room);
        room.clone()
    };
    registry.save();
    if room.private {
        for (conn, sub) in state.room_sessions(id) {
            // The rights of this socket's own token, not the user's last.
            let admin = state.session_is_admin(conn);
            if !room.admits_sub(&sub, admin) {
                state.close_connection(conn, 4003, "you are no longer a member of this room");
            }
        }
    }
    Ok(room)
}

async fn update(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<String>,
    raw: JsonBody,
) -> Response {
    let request: Patch = match body(raw) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    let name = match request.name.as_deref().map(check_name).transpose() {
        Ok(n) => n,
        Err(e) => return refuse(e),
    };
    let result = change(&state, &claims, &id, |room| {
        if let Some(name) = name {
            room.name = name;
        }
        if let Some(private) = request.private {
            room.private = private;
        }
    });
    match result {
        Ok(room) => Json(room).into_response(),
        Err(e) => refuse(e),
    }
}

async fn members(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<String>,
    raw: JsonBody,
) -> Response {
    let request: Members = match body(raw) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    if let Err(e) = check_members(&request.add).and(check_members(&request.remove)) {
        return refuse(e);
    }
    let result = change(&state, &claims, &id, |room| {
        for sub in request.add {
            if room.members.len() < MAX_MEMBERS {
                room.members.insert(sub);
            }
        }
        for sub in &request.remove {
            room.members.remove(sub);
        }
    });
    match result {
        Ok(room) => Json(room).into_response(),
        Err(e) => refuse(e),
    }
}

async fn remove(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<String>,
) -> Response {
    let registry = registry(&state);
    {
        let mut rooms = registry.rooms.write();
        match rooms.get(&id) {
            None => return refuse((StatusCode::NOT_FOUND, "no such room")),
            Some(room) if !room.is_managed_by(&claims) => {
                return refuse((
                    StatusCode::FORBIDDEN,
                    "only the room's owner or an admin may delete it",
                ))
            }
            Some(_) => {
                rooms.remove(&id);
            }
        }
    }
    registry.save();
    // The id becomes an open room again: what was said in it must not be
    // readable by whoever joins it next.
    // The core has no async flush: it waits for Redis off the workers.
    let flushing = state.clone();
    let group = frames::room_group(&id);
    let flush = tokio::task::spawn_blocking(move || flushing.hub.history_flush(Some(&group)));
    let _ = flush.await;
    state.features.forget_room(&id);
    for (conn, _) in state.room_sessions(&id) {
        state.close_connection(conn, 4003, "this room was deleted");
    }
    tracing::info!(room = %id, by = %claims.sub, "room deleted");
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Design Review!"), "design-review");
        assert_eq!(slug("  ¿¿ "), "room");
        assert_eq!(slug("a--b"), "a-b");
    }
}
