//! Rooms made with `POST /rooms`: their names, owners, members and
//! privacy, and the REST API over them.
//!
//! A room that was never created has no entry here: it is public, has no
//! owner, and opens on first join (the tutorial's behaviour). A private
//! room admits its owner, its members and admins only.

use std::collections::BTreeSet;
use std::path::Path as FsPath;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use rand::Rng;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::auth::Claims;
use crate::frames;
use crate::server::AppState;
use crate::store::{CloseEvent, Store, StoreError, Table};

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

/// Every created room, by id, in the hub's state store ([`Store`]):
/// `hub.redb` alone, Redis with `--redis-url`. So a private room stays
/// private across restarts and on every hub, and a room id once created
/// cannot be taken by someone else (creating asks the store to insert
/// only if the id is free).
///
/// A room that does not decode is logged, counted (`/stats`'
/// `state_corrupt`) and treated as absent for listing, but as private and
/// owned by nobody for admission: a damaged row never opens a room.
#[derive(Debug)]
pub struct Registry {
    /// Where the rooms are kept.
    store: Arc<Store>,
}

/// A room as stored, or a row that does not decode.
enum Stored {
    Room(Room),
    Corrupt,
}

impl Registry {
    /// The registry over `store`.
    pub fn new(store: Arc<Store>) -> Registry {
        Registry { store }
    }

    fn decode(&self, id: &str, raw: &[u8]) -> Stored {
        match serde_json::from_slice::<Room>(raw) {
            Ok(room) if room.id == id => Stored::Room(room),
            Ok(_) => {
                self.store
                    .report_corrupt(Table::Rooms, "", id, "room under another id");
                Stored::Corrupt
            }
            Err(e) => {
                self.store
                    .report_corrupt(Table::Rooms, "", id, &e.to_string());
                Stored::Corrupt
            }
        }
    }

    /// The room `id` as stored (`Some(Corrupt)` for a damaged row).
    async fn stored(&self, id: &str) -> Result<Option<(Stored, Vec<u8>)>, StoreError> {
        let raw = self.store.get(Table::Rooms, "", id).await?;
        Ok(raw.map(|raw| (self.decode(id, &raw), raw)))
    }

    fn stored_blocking(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let raw = self.store.get_blocking(Table::Rooms, "", id)?;
        Ok(raw.map(|raw| self.decode(id, &raw)))
    }

    /// The room `id`, if it was created (a damaged row reads as none).
    pub async fn room(&self, id: &str) -> Result<Option<Room>, StoreError> {
        Ok(match self.stored(id).await? {
            Some((Stored::Room(room), _)) => Some(room),
            _ => None,
        })
    }

    /// True when room `id` exists in the store (damaged or not). Blocks
    /// for a Redis round trip with Redis: for the embedded store only
    /// (`features::left` asks it only then).
    pub fn exists_blocking(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.stored_blocking(id)?.is_some())
    }

    /// True when `sub` may read room `id` as its stored row `raw` says
    /// (`None`: never created, open to all; damaged: admins only).
    pub fn admits_stored(&self, id: &str, raw: Option<&[u8]>, sub: &str, admin: bool) -> bool {
        match raw.map(|raw| self.decode(id, raw)) {
            None => true,
            Some(Stored::Room(r)) => r.admits_sub(sub, admin),
            Some(Stored::Corrupt) => admin,
        }
    }

    /// The owner of room `id` (None for rooms never created and damaged
    /// ones).
    pub async fn owner_async(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.room(id).await?.map(|r| r.owner))
    }

    /// Rooms `sub` owns.
    pub async fn owned_by(&self, sub: &str) -> Result<usize, StoreError> {
        self.store.count(Table::Owned, sub).await
    }

    /// Rooms `claims` may see, sorted by id: public ones and private ones
    /// it belongs to (admins see all); at most `limit` with an id after
    /// `after`, and whether more follow. At most [`SCAN_MAX`] rooms are
    /// read for one page: past that the page ends early (and says more
    /// follow), so a caller who sees few of many rooms still gets quick
    /// answers.
    pub async fn visible(
        &self,
        claims: &Claims,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<Room>, bool, Option<String>), StoreError> {
        let mut page = Vec::new();
        let mut cursor = after.to_owned();
        let mut scanned = 0;
        loop {
            let chunk = self.store.rooms_after(&cursor, SCAN_CHUNK).await?;
            let Some((last, _)) = chunk.last() else {
                return Ok((page, false, None));
            };
            let exhausted = chunk.len() < SCAN_CHUNK;
            cursor = last.clone();
            for (id, raw) in chunk {
                scanned += 1;
                if let Stored::Room(room) = self.decode(&id, &raw) {
                    if room.admits(claims) {
                        if page.len() == limit {
                            let next = page.last().map(|r: &Room| r.id.clone());
                            return Ok((page, true, next));
                        }
                        page.push(room);
                    }
                }
            }
            if exhausted {
                return Ok((page, false, None));
            }
            if scanned >= SCAN_MAX {
                return Ok((page, true, Some(cursor)));
            }
        }
    }

    /// Imports `<data_dir>/rooms.json` (the registry before the store) once:
    /// rooms not in the store yet are added, and the file is renamed to
    /// `rooms.json.imported` so it is never read again.
    pub fn import_rooms_json(&self, data_dir: &FsPath) {
        let path = data_dir.join("rooms.json");
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "could not read the old rooms file");
                return;
            }
        };
        let list = match serde_json::from_slice::<Vec<Room>>(&raw) {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "old rooms file unreadable; not imported");
                return;
            }
        };
        let mut imported = 0;
        for room in &list {
            let Ok(value) = serde_json::to_vec(room) else {
                continue;
            };
            match self
                .store
                .put_new_blocking(Table::Rooms, "", &room.id, &value)
            {
                Ok(true) => {
                    imported += 1;
                    if let Err(e) =
                        self.store
                            .put_blocking(Table::Owned, &room.owner, &room.id, b"")
                    {
                        tracing::error!(error = %e, "could not import a room's owner");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, path = %path.display(), "rooms import failed; will retry at next start");
                    return;
                }
            }
        }
        let done = path.with_extension("json.imported");
        if let Err(e) = std::fs::rename(&path, &done) {
            tracing::error!(error = %e, path = %path.display(), "could not rename the imported rooms file");
        }
        tracing::info!(imported, of = list.len(), path = %done.display(), "rooms.json imported into the hub's state");
    }
}

/// Rooms read from the store at a time while paging.
const SCAN_CHUNK: usize = 256;
/// Most rooms read for one `GET /rooms` page.
pub const SCAN_MAX: usize = 8192;

/// A store error as a REST answer: 503.
fn unavailable(e: StoreError) -> Response {
    tracing::warn!(error = %e, "rooms: state store unavailable");
    refuse((
        StatusCode::SERVICE_UNAVAILABLE,
        "the hub's state is unavailable; try again",
    ))
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
    let registry = &state.features.rooms;
    if !claims.is_admin() {
        match registry.owned_by(&claims.sub).await {
            Ok(n) if n >= state.config.max_rooms_per_user => {
                return refuse((
                    StatusCode::TOO_MANY_REQUESTS,
                    "you own as many rooms as --max-rooms-per-user allows",
                ))
            }
            Ok(_) => {}
            Err(e) => return unavailable(e),
        }
    }
    let base = slug(&name);
    let mut members: BTreeSet<String> = request.members.into_iter().collect();
    members.insert(claims.sub.clone());
    let mut room = Room {
        id: base.clone(),
        name,
        private: request.private,
        owner: claims.sub.clone(),
        members,
    };
    // A room id already in use (created, or an open room with history or
    // people in it) gets a random suffix: creating never takes over a room.
    // The store inserts only if the id is free, so two hubs (or two
    // requests) racing for one id get one each.
    let mut tries = 0;
    loop {
        let Some(busy) = in_use(&state, &room.id).await else {
            return refuse((
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub cannot tell whether this room id is in use; try again",
            ));
        };
        if !busy {
            let value = match serde_json::to_vec(&room) {
                Ok(v) => v,
                Err(_) => return refuse((StatusCode::INTERNAL_SERVER_ERROR, "room not encodable")),
            };
            match state
                .store
                .put_new(Table::Rooms, "", &room.id, &value)
                .await
            {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return unavailable(e),
            }
        }
        tries += 1;
        if tries > 16 {
            return refuse((StatusCode::CONFLICT, "could not find a free room id"));
        }
        let tag: u32 = rand::thread_rng().gen();
        room.id = format!("{base}-{tag:08x}");
    }
    if let Err(e) = state
        .store
        .put(Table::Owned, &claims.sub, &room.id, b"")
        .await
    {
        // The room stands; only the owner's count for the cap is short.
        tracing::error!(error = %e, room = %room.id, "could not count the room for its owner");
    }
    tracing::info!(room = %room.id, owner = %claims.sub, private = room.private, "room created");
    crate::webhooks::room_created(&state, &room);
    (StatusCode::CREATED, Json(room)).into_response()
}

/// True when room `id` already saved a message or has people in it;
/// `None` when the engine cannot say (then it is not taken over either:
/// the caller answers 503).
async fn in_use(state: &AppState, id: &str) -> Option<bool> {
    let group = frames::room_group(id);
    match state.hub.last_offset_async(&group).await {
        Ok(0) => Some(!state.hub.presence_async(&group).await.is_empty()),
        Ok(_) => Some(true),
        Err(e) => {
            tracing::warn!(error = %e, room = id, "cannot tell whether a room id is in use");
            None
        }
    }
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
    let (mut rooms, mut more, mut next) =
        match state.features.rooms.visible(&claims, after, limit).await {
            Ok(page) => page,
            Err(e) => return unavailable(e),
        };
    // Member lists can be long: a page also stops at PAGE_MAX_BYTES (it
    // always holds one room, so paging moves on).
    let mut bytes = 0;
    if let Some(cut) = rooms.iter().position(|room| {
        bytes += serde_json::to_vec(room).map_or(0, |v| v.len() + 1);
        bytes > PAGE_MAX_BYTES
    }) {
        rooms.truncate(cut.max(1));
        more = true;
        next = rooms.last().map(|r| r.id.clone());
    }
    let next = next.filter(|_| more);
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
    let room = match state.features.rooms.room(&id).await {
        Ok(room) => room,
        Err(e) => return unavailable(e),
    };
    match room {
        // A private room is "no such room" to whoever it does not admit:
        // the answer never tells that it exists.
        None => refuse((StatusCode::NOT_FOUND, "no such room")),
        Some(room) if !room.admits(&claims) => refuse((StatusCode::NOT_FOUND, "no such room")),
        Some(room) => match state.features.moderation.banned(&id, &claims.sub).await {
            Ok(true) => refuse((StatusCode::FORBIDDEN, "you are banned from this room")),
            Ok(false) => Json(room).into_response(),
            Err(e) => unavailable(e),
        },
    }
}

/// Why a change failed: a refusal, or the store.
enum ChangeError {
    Refused(Refusal),
    Store(StoreError),
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        ChangeError::Store(e)
    }
}

fn answer(result: Result<Room, ChangeError>) -> Response {
    match result {
        Ok(room) => Json(room).into_response(),
        Err(ChangeError::Refused(e)) => refuse(e),
        Err(ChangeError::Store(e)) => unavailable(e),
    }
}

/// Most times a change is retried when another one got in first.
const CHANGE_TRIES: usize = 16;

/// Runs `change` on room `id` if `claims` manages it (compare and swap in
/// the store, so concurrent changes on any hub all apply); then closes the
/// sockets of users the room no longer admits, on every hub.
async fn change(
    state: &AppState,
    claims: &Claims,
    id: &str,
    change: impl Fn(&mut Room),
) -> Result<Room, ChangeError> {
    let registry = &state.features.rooms;
    let mut tries = 0;
    let room = loop {
        let (mut room, old) = match registry.stored(id).await? {
            None => {
                return Err(ChangeError::Refused((
                    StatusCode::NOT_FOUND,
                    "no such room",
                )))
            }
            Some((Stored::Corrupt, _)) => {
                return Err(ChangeError::Refused((
                    StatusCode::CONFLICT,
                    "this room's record is damaged; an admin must delete it",
                )))
            }
            Some((Stored::Room(room), old)) => (room, old),
        };
        if !room.is_managed_by(claims) {
            return Err(ChangeError::Refused((
                StatusCode::FORBIDDEN,
                "only the room's owner or an admin may change it",
            )));
        }
        change(&mut room);
        let new = serde_json::to_vec(&room)
            .map_err(|e| ChangeError::Store(StoreError::Database(e.to_string())))?;
        if state
            .store
            .swap(Table::Rooms, "", id, &old, Some(&new))
            .await?
        {
            break room;
        }
        tries += 1;
        if tries >= CHANGE_TRIES {
            return Err(ChangeError::Refused((
                StatusCode::CONFLICT,
                "the room changed too often meanwhile; try again",
            )));
        }
    };
    if room.private {
        let event = CloseEvent {
            room: id.to_owned(),
            user: None,
            admitted: serde_json::to_string(&room).ok(),
            code: 4003,
            reason: "you are no longer a member of this room".into(),
            node: state.store.node.clone(),
        };
        super::close_sockets(state, event).await;
        super::membership::keep_admitted(state, &room).await;
    }
    Ok(room)
}

/// `sub` leaves room `id` of their own accord (`membership::leave`): a
/// private room they do not own drops them from its `members` (someone who
/// manages it must add them again), by compare and swap as [`change`]
/// does. The owner stays owner; a public or never-created room has no list
/// to change. True when the list changed.
pub async fn leave_members(state: &AppState, id: &str, sub: &str) -> Result<bool, StoreError> {
    for _ in 0..CHANGE_TRIES {
        let Some((Stored::Room(mut room), old)) = state.features.rooms.stored(id).await? else {
            return Ok(false);
        };
        if !room.private || room.owner == sub || !room.members.remove(sub) {
            return Ok(false);
        }
        let new = serde_json::to_vec(&room).map_err(|e| StoreError::Database(e.to_string()))?;
        if state
            .store
            .swap(Table::Rooms, "", id, &old, Some(&new))
            .await?
        {
            return Ok(true);
        }
    }
    Err(StoreError::Unavailable(
        "the room changed too often meanwhile".into(),
    ))
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
    answer(
        change(&state, &claims, &id, |room| {
            if let Some(name) = &name {
                room.name = name.clone();
            }
            if let Some(private) = request.private {
                room.private = private;
            }
        })
        .await,
    )
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
    answer(
        change(&state, &claims, &id, |room| {
            for sub in &request.add {
                if room.members.len() < max_members {
                    room.members.insert(sub.clone());
                }
            }
            for sub in &request.remove {
                room.members.remove(sub);
            }
        })
        .await,
    )
}

async fn remove(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<String>,
) -> Response {
    let stored = match state.features.rooms.stored(&id).await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let (owner, old) = match stored {
        None => return refuse((StatusCode::NOT_FOUND, "no such room")),
        // A damaged row: only an admin may clear it.
        Some((Stored::Corrupt, _)) if !claims.is_admin() => {
            return refuse((StatusCode::FORBIDDEN, "only an admin may delete this room"))
        }
        Some((Stored::Corrupt, old)) => (None, old),
        Some((Stored::Room(room), _)) if !room.is_managed_by(&claims) => {
            return refuse((
                StatusCode::FORBIDDEN,
                "only the room's owner or an admin may delete it",
            ))
        }
        Some((Stored::Room(room), old)) => (Some(room.owner), old),
    };
    match state.store.swap(Table::Rooms, "", &id, &old, None).await {
        Ok(true) => {}
        Ok(false) => {
            return refuse((
                StatusCode::CONFLICT,
                "the room changed meanwhile; try again",
            ))
        }
        Err(e) => return unavailable(e),
    }
    if let Some(owner) = owner {
        if let Err(e) = state.store.remove(Table::Owned, &owner, &id).await {
            tracing::error!(error = %e, room = %id, "could not uncount a deleted room");
        }
    }
    // The id becomes an open room again: what was said in it must not be
    // readable by whoever joins it next.
    // The core has no async flush: it waits for Redis off the workers.
    let flushing = state.clone();
    let group = frames::room_group(&id);
    let flush = tokio::task::spawn_blocking(move || flushing.hub.history_flush(Some(&group)));
    let _ = flush.await;
    state.features.forget_room(&id).await;
    let event = CloseEvent {
        room: id.clone(),
        user: None,
        admitted: None,
        code: 4003,
        reason: "this room was deleted".into(),
        node: state.store.node.clone(),
    };
    super::close_sockets(&state, event).await;
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
            // A created room keeps its history; so does one the store
            // cannot answer for now.
            let created = state
                .features
                .rooms
                .room(room)
                .await
                .map_or(true, |r| r.is_some());
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
            state.features.threads.forget_room(room).await;
            state.features.reads.forget_room(room).await;
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
