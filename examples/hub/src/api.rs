//! The server API (issue 15): what an application backend beside the hub
//! calls over HTTP to act on it: publish to a room, send a DM, disconnect
//! a user, ban from a room, read a room's history, list who is online.
//!
//! It exists only with `--api-key KEY` (env `CHANNELBOX_API_KEY`): without
//! a key none of its routes is mounted, so every `/api/*` path answers 404
//! like any unknown path. Every call carries `Authorization: apikey KEY`,
//! compared in constant time; anything else is 401. Errors are the hub's
//! usual HTTP shape with a `code` added: `{"error": code, "code": code,
//! "detail": "for people"}`, the codes those of `error` frames
//! (`bad_request`, `not_found`, `too_large`, `unavailable`, ...) plus
//! `unauthorized`.
//!
//! Each call goes through the same path as its WebSocket counterpart, so
//! the effect is the same: a published message is saved, indexed,
//! mentions notified and counted like a chat message (`chat::publish`); a
//! DM is saved in the pair's history and delivered like one
//! (`dm::deliver`); a ban is a moderator's ban (`moderation::apply`).
//! With `--redis-url` they reach every hub: messages and DMs through the
//! engine, disconnects and bans through the store's close events.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::chat::{self, Author};
use crate::config::Config;
use crate::error::{Code, Refusal};
use crate::features::{self, moderation, ChatRoom};
use crate::frames;
use crate::server::AppState;
use crate::store::{CloseEvent, StoreError};

/// Who a message, DM or ban is from when the call names no one.
pub const DEFAULT_AUTHOR: &str = "system";
/// Longest user or room id the API takes (the WebSocket paths' bound).
const MAX_ID_BYTES: usize = 128;

/// The server API's routes; none without `--api-key` (then `/api/*` is
/// the router's 404 like any unknown path).
pub fn routes(config: &Config) -> Router<Arc<AppState>> {
    if api_key(config).is_none() {
        return Router::new();
    }
    Router::new()
        .route("/api/publish", post(publish))
        .route("/api/dm", post(dm))
        .route("/api/disconnect", post(disconnect))
        .route("/api/rooms/{id}/ban", post(ban))
        .route("/api/rooms/{id}/history", get(history))
        .route("/api/presence", get(presence))
}

/// The configured key; an empty one (`CHANNELBOX_API_KEY=`) is none.
fn api_key(config: &Config) -> Option<&str> {
    config.api_key.as_deref().filter(|k| !k.is_empty())
}

/// A failed call: its status and the hub's error body with a `code`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }

    fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    fn no_such_room() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such room (a room id is 1-128 bytes, no '/' or control characters)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code, "code": self.code, "detail": self.detail}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("apikey"));
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = match refusal.code {
            Code::BadRequest | Code::UnknownType => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Forbidden | Code::Muted => StatusCode::FORBIDDEN,
            Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, refusal.code.as_str(), refusal.detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::warn!(error = %e, "server API: state store unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the hub's state is unavailable; try again",
        )
    }
}

impl From<channelbox::Error> for ApiError {
    fn from(e: channelbox::Error) -> ApiError {
        Refusal::from(e).into()
    }
}

/// A caller that sent the right `Authorization: apikey KEY`. Taken first
/// by every handler, so nothing is read or parsed for anyone else.
pub struct ApiCaller;

impl FromRequestParts<Arc<AppState>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let refused =
            |detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        // Routes exist only with a key; this is a second lock on the door.
        let Some(key) = api_key(&state.config) else {
            return Err(refused("the server API is off (no --api-key)"));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("apikey"))
            .map(|(_, given)| given.trim());
        match given {
            Some(given) if bool::from(given.as_bytes().ct_eq(key.as_bytes())) => Ok(ApiCaller),
            Some(_) => Err(refused("wrong API key")),
            None => Err(refused("expected Authorization: apikey <key>")),
        }
    }
}

/// A request body as `T`: JSON, an object, no unknown fields.
fn body<T: serde::de::DeserializeOwned>(raw: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let raw = raw.map_err(|e| {
        let code = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ => "bad_request",
        };
        ApiError::new(e.status(), code, e.body_text())
    })?;
    let raw = if raw.is_empty() { &b"{}"[..] } else { &raw[..] };
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A room id as `/chat/{room}` takes it, else `not_found`.
fn room_id(id: &str) -> Result<&str, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.contains('/')
        && !id.chars().any(char::is_control);
    ok.then_some(id).ok_or_else(ApiError::no_such_room)
}

/// A user id (`sub`) or a display name from a body: 1-128 bytes, no
/// control characters.
fn user_id<'a>(field: &str, id: &'a str) -> Result<&'a str, ApiError> {
    if id.trim().is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1-{MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(id)
}

/// Message text: not empty, at most `--max-frame-bytes` (what a socket
/// may send).
fn content<'a>(state: &AppState, content: &'a str) -> Result<&'a str, ApiError> {
    let max = state.config.max_frame_bytes;
    if content.is_empty() {
        return Err(ApiError::bad_request("content is empty"));
    }
    if content.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("content is longer than {max} bytes (--max-frame-bytes)"),
        ));
    }
    Ok(content)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    room: String,
    content: String,
    user: Option<String>,
}

/// `POST /api/publish {"room","content","user"?}` → `{"id"}`: a chat
/// message shown as from `user` (default `system`), answered once saved.
async fn publish(
    _: ApiCaller,
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: PublishBody = body(raw)?;
    let room = room_id(&request.room)?;
    let user = user_id("user", request.user.as_deref().unwrap_or(DEFAULT_AUTHOR))?;
    let text = content(&state, &request.content)?;
    let group = frames::room_group(room);
    let author = Author {
        sub: user,
        username: user,
    };
    let target = ChatRoom {
        id: room,
        group: &group,
    };
    let id = chat::publish(&state, target, author, text.to_owned()).await?;
    tracing::info!(room, user, id, "server API: published");
    Ok(Json(json!({"id": id})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DmBody {
    to: String,
    content: String,
    from: Option<String>,
}

/// `POST /api/dm {"to","content","from"?}` → `{"id"}`: a DM from `from`
/// (default `system`), saved in the pair's history, delivered to `to`'s
/// `/dm` sockets (and `from`'s, as a copy).
async fn dm(
    _: ApiCaller,
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: DmBody = body(raw)?;
    let to = user_id("to", &request.to)?;
    let from = user_id("from", request.from.as_deref().unwrap_or(DEFAULT_AUTHOR))?;
    let text = content(&state, &request.content)?;
    let pair = frames::dm_pair_group(from, to);
    let author = Author {
        sub: from,
        username: from,
    };
    let report = crate::dm::deliver(&state, author, to, &pair, text, None).await?;
    // Counted as unread for `to` (and listed for both), as a socket's DM is.
    crate::features::unread::after_dm(&state, from, to, report.offset).await;
    tracing::info!(from, to, id = report.offset, "server API: direct message");
    Ok(Json(json!({"id": report.offset})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    user: String,
}

/// The reason a disconnected socket's close frame carries.
const DISCONNECT_REASON: &str = "disconnected by the server";

/// `POST /api/disconnect {"user"}` → `{"closed": n}`: closes every socket
/// of the user with 4000, here (`n` counts these) and, with Redis, on
/// every other hub (through a close event).
async fn disconnect(
    _: ApiCaller,
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: DisconnectBody = body(raw)?;
    let user = user_id("user", &request.user)?;
    let event = CloseEvent {
        room: String::new(),
        user: Some(user.to_owned()),
        admitted: None,
        code: moderation::KICK_CLOSE_CODE,
        reason: DISCONNECT_REASON.into(),
        node: state.store.node.clone(),
    };
    let closed = close_user(&state, user, event.code, &event.reason);
    state.store.publish_close(&event).await?;
    tracing::info!(user, closed, "server API: disconnected");
    Ok(Json(json!({"closed": closed})).into_response())
}

/// Closes every socket of `user` on this hub; returns how many.
fn close_user(state: &AppState, user: &str, code: u16, reason: &str) -> usize {
    let sessions = state.user_sessions(user);
    for &id in &sessions {
        state.close_connection(id, code, reason);
    }
    sessions.len()
}

/// A close event for every socket of a user (an empty `room`, sent by
/// another hub's `POST /api/disconnect`): closes them here and returns
/// true; false for any other event.
pub fn apply_disconnect(state: &AppState, event: &CloseEvent) -> bool {
    match (&event.user, event.room.is_empty()) {
        (Some(user), true) => {
            close_user(state, user, event.code, &event.reason);
            true
        }
        _ => false,
    }
}

/// `POST /api/rooms/{id}/ban {"user","duration_s"?}`: a moderator's ban
/// (by `system`): the room is told, the user's sockets in the room close
/// with 4003 on every hub, joins are refused until it ends.
async fn ban(
    _: ApiCaller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let room = room_id(&id)?;
    let request: Value = body(raw)?;
    if let Some(other) = request.as_object().and_then(|o| {
        o.keys()
            .find(|k| !matches!(k.as_str(), "user" | "duration_s"))
    }) {
        return Err(ApiError::bad_request(format!("unknown field `{other}`")));
    }
    let (target, duration) = moderation::target_of(&request)?;
    let group = frames::room_group(room);
    let author = Author {
        sub: DEFAULT_AUTHOR,
        username: DEFAULT_AUTHOR,
    };
    let target_room = ChatRoom {
        id: room,
        group: &group,
    };
    moderation::apply(&state, target_room, "ban", &target, duration, author).await?;
    let duration_s = duration.map(|d| d.as_secs());
    Ok(Json(json!({"room": room, "user": target, "duration_s": duration_s})).into_response())
}

/// `GET /api/rooms/{id}/history?limit=&before=`: the `history` frame of
/// the newest `limit` messages (default 50, at most 200) with an id below
/// `before` (default: the newest), oldest first: `{"type":"history",
/// "epoch","messages":[..]}`, each message as the room got it.
async fn history(
    _: ApiCaller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let room = room_id(&id)?;
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match query
            .as_deref()
            .and_then(|q| crate::auth::query_param(q, name))
        {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number"))),
        }
    };
    let before = number("before")?.unwrap_or(0);
    let limit = match number("limit")? {
        None => features::history::PAGE_DEFAULT,
        Some(0) => return Err(ApiError::bad_request("limit must be positive")),
        Some(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(features::history::PAGE_MAX),
    };
    let group = frames::room_group(room);
    let (epoch, messages) = features::saved::messages_before(&state, &group, before, limit).await?;
    let page = frames::history(epoch, &messages, None);
    Ok(([(header::CONTENT_TYPE, "application/json")], page).into_response())
}

/// `GET /api/presence`: `{"count","users":[{"id","username","status"}]}`,
/// the users online as `/presence` lists them.
async fn presence(_: ApiCaller, State(state): State<Arc<AppState>>) -> Response {
    let users = state.presence.users();
    Json(json!({"count": users.len(), "users": users})).into_response()
}
