//! Rooms made with `POST /rooms`: their names, owners, members and
//! privacy, and the REST API over them.
//!
//! A room that was never created has no entry here: it is public, has no
//! owner, and opens on first join (the tutorial's behaviour). A private
//! room admits its owner, its members and admins only.

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
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
///
/// Changes are saved off the workers: a change marks the registry dirty
/// and wakes one writer task, which waits [`SAVE_DEBOUNCE`] (so a burst of
/// changes is one write), then writes the whole registry on a blocking
/// thread to a temporary file and renames it over `rooms.json` (a crash
/// leaves the old file or the new one, never half of one). Dropping the
/// registry (the hub stopping) writes what is still unsaved.
#[derive(Debug, Default)]
pub struct Registry {
    rooms: Arc<RwLock<FxHashMap<String, Room>>>,
    /// Where the registry is saved; set by the first [`Registry::load`].
    file: OnceLock<PathBuf>,
    /// Shared with the writer task.
    saver: Arc<Saver>,
}

/// The writer task's side of the registry.
#[derive(Debug, Default)]
struct Saver {
    /// Wakes the writer (a wake-up while it writes is kept for the next round).
    wake: tokio::sync::Notify,
    /// Changed since the last write began.
    dirty: std::sync::atomic::AtomicBool,
    /// One write at a time.
    writing: Mutex<()>,
    /// Writes done (for tests and logs).
    writes: std::sync::atomic::AtomicU64,
}

/// How long a change waits for more before the registry is written.
pub const SAVE_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(100);

impl Saver {
    /// Writes the registry as it is now, if it changed (blocking).
    fn write(&self, rooms: &RwLock<FxHashMap<String, Room>>, path: &FsPath) {
        use std::sync::atomic::Ordering;
        let _one = self.writing.lock();
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut list: Vec<Room> = rooms.read().values().cloned().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        let result = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&list).unwrap_or_default())?;
            std::fs::rename(&tmp, path)
        })();
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            // Try again with the next change.
            self.dirty.store(true, Ordering::SeqCst);
            tracing::error!(error = %e, path = %path.display(), "could not save rooms");
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(path) = self.file.get() {
            self.saver.write(&self.rooms, path);
        }
    }
}

impl Registry {
    /// Reads the saved registry from `data_dir` the first time it is
    /// called (and starts the writer task); later calls do nothing.
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
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (rooms, saver, file) = (self.rooms.clone(), self.saver.clone(), path.clone());
                runtime.spawn(async move {
                    loop {
                        saver.wake.notified().await;
                        tokio::time::sleep(SAVE_DEBOUNCE).await;
                        let (rooms, writer, file) = (rooms.clone(), saver.clone(), file.clone());
                        let _ = tokio::task::spawn_blocking(move || writer.write(&rooms, &file))
                            .await;
                        if Arc::strong_count(&saver) == 1 {
                            // The registry is gone (it wrote the rest).
                            return;
                        }
                    }
                });
            }
            path
        });
    }

    /// Marks the registry changed: the writer task saves it soon, off the
    /// workers (see [`Registry`]).
    fn save(&self) {
        self.saver
            .dirty
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.saver.wake.notify_one();
    }

    /// Times the registry was written to its file.
    pub fn writes(&self) -> u64 {
        self.saver.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Rooms `sub` owns.
    pub fn owned_by(&self, sub: &str) -> usize {
        self.rooms
            .read()
            .values()
            .filter(|r| r.owner == sub)
            .count()
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
    /// it belongs to (admins see all); at most `limit` with an id after
    /// `after`, and whether more follow.
    pub fn visible(&self, claims: &Claims, after: &str, limit: usize) -> (Vec<Room>, bool) {
        let rooms = self.rooms.read();
        let mut ids: Vec<&String> = rooms
            .iter()
            .filter(|(id, r)| id.as_str() > after && r.admits(claims))
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        let more = ids.len() > limit;
        let page = ids
            .into_iter()
            .take(limit)
            .filter_map(|id| rooms.get(id).cloned())
            .collect();
        (page, more)
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

fn check_members(list: &[String], max: usize) -> Result<(), Refusal> {
    if list.len() > max {
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
    let max_members = state.config.max_room_members;
    if let Err(e) = check_members(&request.members, max_members.saturating_sub(1)) {
        return refuse(e);
    }
    if !claims.is_admin()
        && registry(&state).owned_by(&claims.sub) >= state.config.max_rooms_per_user
    {
        return refuse((
            StatusCode::TOO_MANY_REQUESTS,
            "you own as many rooms as --max-rooms-per-user allows",
        ));
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

/// `GET /rooms?after=<id>&limit=<n>`: a page of the rooms the caller may
/// see, by id, at most `--rooms-page-max` rooms and about 1 MiB; when more
/// follow, the `x-next-after` header holds the `after` of the next page.
async fn list(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Query(page): Query<Page>,
) -> Response {
    let max = state.config.rooms_page_max.max(1);
    let limit = page.limit.unwrap_or(max).clamp(1, max);
    let after = page.after.as_deref().unwrap_or("");
    let (mut rooms, mut more) = registry(&state).visible(&claims, after, limit);
    // Member lists can be long: a page also stops at PAGE_MAX_BYTES (it
    // always holds one room, so paging moves on).
    let mut bytes = 0;
    if let Some(cut) = rooms.iter().position(|room| {
        bytes += serde_json::to_vec(room).map_or(0, |v| v.len() + 1);
        bytes > PAGE_MAX_BYTES
    }) {
        rooms.truncate(cut.max(1));
        more = true;
    }
    let next = rooms.last().map(|r| r.id.clone()).filter(|_| more);
    let mut response = Json(rooms).into_response();
    if let Some(next) = next.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert("x-next-after", next);
    }
    response
}

/// Most bytes of rooms one `GET /rooms` page holds (besides `?limit=`).
const PAGE_MAX_BYTES: usize = 1 << 20;

/// `GET /rooms`' paging parameters.
#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

async fn show(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<String>,
) -> Response {
    match registry(&state).get(&id) {
        // A private room is "no such room" to whoever it does not admit:
        // the answer never tells that it exists.
        None => refuse((StatusCode::NOT_FOUND, "no such room")),
        Some(room) if !room.admits(&claims) => refuse((StatusCode::NOT_FOUND, "no such room")),
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
    let max_members = state.config.max_room_members;
    if let Err(e) =
        check_members(&request.add, max_members).and(check_members(&request.remove, max_members))
    {
        return refuse(e);
    }
    let result = change(&state, &claims, &id, |room| {
        for sub in request.add {
            if room.members.len() < max_members {
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

/// Histories of rooms nobody created and of DM conversations, by when
/// they went idle (the last socket left the room; the last DM was sent),
/// so that `--idle-room-history-seconds` later they are flushed: a new
/// room id or DM target cannot keep up to `--history-max-bytes` forever.
/// Created rooms keep their history (their owner chose to keep them).
/// With `--redis-url` this is off (another hub may be using the room); the
/// core's `--history-ttl-seconds` bounds histories there.
#[derive(Debug, Default)]
pub struct IdleHistories {
    /// core group -> (room id for a room, idle since).
    idle: Mutex<FxHashMap<String, (Option<String>, std::time::Instant)>>,
    /// The sweeper task, started on first use.
    sweeper: OnceLock<()>,
}

impl IdleHistories {
    /// `group` went idle now (`room`: its room id, `None` for a DM pair).
    pub fn idle_since_now(&self, state: &Arc<AppState>, group: &str, room: Option<&str>) {
        let ttl = state.config.idle_room_history_seconds;
        // On a shared engine the room may be busy on another hub, which this
        // one cannot see: there `--history-ttl-seconds` bounds histories.
        if ttl == 0 || state.hub.config().engine == channelbox::EngineKind::Redis {
            return;
        }
        self.idle.lock().insert(
            group.to_owned(),
            (room.map(str::to_owned), std::time::Instant::now()),
        );
        self.sweeper.get_or_init(|| {
            let weak = Arc::downgrade(state);
            let every = std::time::Duration::from_secs((ttl / 4).clamp(1, 60));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(state) = weak.upgrade() else { return };
                    sweep(&state).await;
                }
            });
        });
    }

    /// `group` is in use again.
    pub fn active(&self, group: &str) {
        self.idle.lock().remove(group);
    }
}

/// Flushes the histories idle for `--idle-room-history-seconds`.
pub async fn sweep(state: &Arc<AppState>) {
    let ttl = std::time::Duration::from_secs(state.config.idle_room_history_seconds);
    let due: Vec<(String, Option<String>)> = {
        let mut idle = state.features.idle.idle.lock();
        let mut due = Vec::new();
        idle.retain(|group, (room, since)| {
            if since.elapsed() < ttl {
                return true;
            }
            due.push((group.clone(), room.clone()));
            false
        });
        due
    };
    for (group, room) in due {
        if let Some(room) = &room {
            let created = state.features.rooms.get(room).is_some();
            if created || !state.room_sessions(room).is_empty() {
                continue;
            }
        }
        let flushing = state.clone();
        let target = group.clone();
        let flush = tokio::task::spawn_blocking(move || flushing.hub.history_flush(Some(&target)));
        let _ = flush.await;
        if let Some(room) = &room {
            state.features.search.evict_before(room, u64::MAX);
            state.features.threads.forget_room(room);
            state.features.reads.forget_room(room);
            state.features.analytics.forget_room(room);
        }
        tracing::info!(group = %group, "idle history flushed");
    }
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
