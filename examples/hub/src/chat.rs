//! `/chat/{room}`: join and leave notices, the `history` frame (or a
//! `?since=` recovery), and chat messages. Every other frame type goes to
//! `features::handle_frame`.
//!
//! Notices follow membership (`features::membership`): a connection that
//! makes its user a member saves "X joined the chat"; a member's
//! reconnect, and any socket's close, tell the room live only (no `id`,
//! never in history). Only an explicit leave saves "X left the chat".
//!
//! A message is encoded once, inside `group_send_with_async`, when its history
//! offset (the message `id`) is known; every member's queue then holds the
//! same bytes.

use std::sync::Arc;

use bytes::Bytes;
use channelbox::{HistoryQuery, Kind, Saved, Staged};
use serde_json::{Map, Value};

use crate::error::Refusal;
use crate::features::{self, ChatRoom};
use crate::frames::{self, ChatMessage};
use crate::server::AppState;
use crate::session::{Endpoint, Session};
use crate::socket::{serve_frames, Socket};

/// A message about to be sent; `features::on_message` may add fields
/// (`extra`, e.g. `mentions`) or refuse it.
pub struct MessageDraft {
    /// The text, as the client sent it.
    pub content: String,
    /// The thread root this replies to.
    pub thread_id: Option<u64>,
    /// File ids from `POST /files`.
    pub attachments: Option<Value>,
    /// More fields for the frame (flattened into it).
    pub extra: Map<String, Value>,
    /// The client's id for this message, echoed in the `ack`.
    pub client_id: Option<String>,
    /// Set by `features::on_message` for a resend of a message already
    /// saved under this id (0: still being saved): ack it, save nothing.
    pub duplicate_of: Option<u64>,
}

/// Who a chat message is from: a socket's user, or whoever the server
/// API names (`POST /api/publish`).
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    /// The user id (`sub`), for client ids and mentions.
    pub sub: &'a str,
    /// The name shown in the frame's `user`.
    pub username: &'a str,
}

/// A message that was sent (for `features::after_message`).
pub struct SentMessage<'a> {
    /// Its id: the room's history offset.
    pub id: u64,
    /// The draft it was built from.
    pub draft: &'a MessageDraft,
    /// How many sockets it was delivered to.
    pub delivered: u64,
}

/// Serves one `/chat/{room}` socket that [`join`] joined until it closes.
/// (Not an `async fn`: see [`serve_frames`].)
// Deliberately not `async fn` (its arguments would be kept twice).
#[allow(clippy::manual_async_fn)]
pub fn serve<'a>(
    session: &'a Session,
    socket: &'a mut Socket,
) -> impl std::future::Future<Output = ()> + 'a {
    async move {
        let Endpoint::Chat { room: id, group } = &session.endpoint else {
            return;
        };
        let room = ChatRoom { id, group };
        features::on_join(session, room);
        let end = serve_frames(session, socket, |text| {
            Box::pin(async move { handle_text(session, room, text.as_str()).await })
        })
        .await;
        // An explicit leave saved its notice already.
        let explicit = matches!(&end, crate::socket::Event::Closed { code: 1000, reason }
        if reason == features::membership::LEFT_REASON);
        // Boxed, like the join: the leave's notice is state the socket needs
        // only once, not all its life.
        Box::pin(leave(session, group, !explicit)).await;
        socket.finish(&end).await;
    }
}

/// Joins the room, tells it, and sends the joiner the upgrade's `answer`
/// (the 101, not yet written) with its `history` frame (later copies of
/// what it holds are skipped) and `reads` frame, in one write (the client
/// reads frames only after the 101 anyway); false when the socket is gone.
/// Run by `upgrade::accept`, whose state is freed once the session starts:
/// the socket's task keeps nothing of the join. `(since, epoch)`: the
/// upgrade's `?since=` and `?epoch=` (a recovery).
pub(crate) async fn join(
    session: &Session,
    socket: &mut Socket,
    answer: &[u8],
    (since, epoch): (Option<u64>, Option<u64>),
) -> bool {
    let Endpoint::Chat { room, group } = &session.endpoint else {
        return false;
    };
    let state = &session.state;
    let sub = &session.claims.sub;
    let first = features::membership::on_connect(state, room, sub).await;
    let joined = format!("{} joined the chat", session.claims.username);
    if !first {
        // A member is back: live only, and sent before this socket is in
        // the room, so it does not get its own notice.
        send_notice(state, room, group, sub, true, false, &joined).await;
    }
    if session.conn.join(group).is_err() {
        // Upgraded, then closed, as before the 101 waited for the join.
        let _ = socket.send_answer_and(answer, &[]).await;
        return false;
    }
    features::joined(session, room);
    let saved = match first {
        true => send_notice(state, room, group, sub, true, true, &joined).await,
        false => None,
    };
    let upto = match saved {
        Some(id) => id,
        // Not saved: the history frame holds what was saved before it.
        None => state.hub.last_offset_async(group).await.unwrap_or(0),
    };
    let history = history_frame(state, group, since, epoch, upto).await;
    socket.skip_saved(group.clone(), upto);
    if state.hub.config().engine == channelbox::EngineKind::Redis {
        // Sends report no deliveries on a shared engine: count them here.
        let (state, room) = (state.clone(), room.clone());
        socket.count_deliveries(group.clone(), move |n| {
            state.features.analytics.record_broadcast(&room, n);
        });
    }
    let reads = features::join_frame(session, ChatRoom { id: room, group }).await;
    if socket
        .send_answer_and(answer, &[history, reads])
        .await
        .is_err()
    {
        leave(session, group, true).await;
        return false;
    }
    true
}

/// The socket leaves the room; with `tell`, the room hears it live only
/// (not while the hub shuts down): closing a socket is not leaving.
async fn leave(session: &Session, group: &str, tell: bool) {
    let _ = session.conn.leave(group);
    features::on_leave(session);
    if let Endpoint::Chat { room, .. } = &session.endpoint {
        features::left(session, room);
    }
    let state = &session.state;
    if tell
        && !state
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        let left = format!("{} left the chat", session.claims.username);
        if let Endpoint::Chat { room, .. } = &session.endpoint {
            let sub = &session.claims.sub;
            send_notice(state, room, group, sub, false, false, &left).await;
        }
    }
}

/// A join or leave notice of user `sub`: with `save` (a membership
/// began or ended), saved (its id returned) while their notices of the
/// kind in this room stay within `--join-notices-per-minute`; otherwise
/// delivered live only, without an id, so it never pushes messages out of
/// the room's history. None at all in a room with more than
/// `--join-notices-max-users` users on this hub.
pub(crate) async fn send_notice(
    state: &AppState,
    room: &str,
    group: &str,
    sub: &str,
    joined: bool,
    save: bool,
    message: &str,
) -> Option<u64> {
    let max_users = state.config.join_notices_max_users;
    if max_users > 0 && state.features.occupancy.users_in(room) > max_users {
        return None;
    }
    let per_minute = state.config.join_notices_per_minute;
    if save
        && state
            .features
            .joins
            .save_notice(room, sub, joined, per_minute)
    {
        return Some(send_system(state, group, message).await).filter(|&id| id > 0);
    }
    let ts = frames::timestamp(frames::now_ms());
    let notice = serde_json::json!({"type": "system", "message": message, "timestamp": ts});
    let send = state
        .hub
        .group_send_async(group, Kind::Json, frames::encode(&notice), false);
    let _ = send.await;
    None
}

/// Saves and broadcasts a system notice; returns its id. Async sends
/// never hold the worker while a shared engine (Redis) answers.
pub async fn send_system(state: &AppState, group: &str, message: &str) -> u64 {
    let ts = frames::timestamp(frames::now_ms());
    let send = state
        .hub
        .group_send_with_async(group, Kind::Json, true, |id| {
            frames::system(id, message, &ts)
        });
    send.await.map_or(0, |r| r.offset)
}

/// The `history` frame for a joiner whose own join notice is `upto`: the
/// last messages, or exactly the entries after `since` when the gap is
/// still kept (same epoch, nothing evicted). A recovery replays update
/// events (edits, deletes, reactions) with the messages, in id order, so
/// the client's copies of older messages converge; the last messages leave
/// them out (each message already shows its current state).
async fn history_frame(
    state: &AppState,
    group: &str,
    since: Option<u64>,
    epoch: Option<u64>,
    upto: u64,
) -> Bytes {
    let hub = &state.hub;
    let before = upto.saturating_add(1);
    if let Some(since) = since {
        let max = state.config.recovery_max;
        let query = HistoryQuery {
            since,
            before,
            limit: max + 1,
        };
        if let Ok(page) = hub.history_async(group, query).await {
            // Only the epoch the group has now: an epoch it never issued
            // (or one from before a flush) recovers nothing. A client
            // without an epoch (older clients) is taken to mean this one.
            let same_epoch = epoch.map_or(true, |e| e == page.epoch) && page.epoch != 0;
            let kept = page.first_offset != 0 && page.first_offset <= since.saturating_add(1);
            if same_epoch && kept && since < before && page.messages.len() <= max {
                return frames::history(page.epoch, &page.messages, Some(true));
            }
        }
    }
    let last = features::saved::messages_before(state, group, before, state.config.history_replay);
    match last.await {
        Ok((epoch, messages)) => frames::history(epoch, &messages, since.map(|_| false)),
        Err(_) => frames::history(0, &[], since.map(|_| false)),
    }
}

/// A frame that is only a message's text: `{"message": ".."}` or
/// `{"type":"message","content":".."}` (what nearly every frame is).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainMessage<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

/// The text of a plain message frame, parsed without building a JSON tree;
/// `None` sends the frame down the general path.
fn plain_message(text: &str) -> Option<String> {
    // The shape load generators and the tutorial send, `{"message":"..."}`
    // with nothing to unescape: taken as is, without a parser.
    if let Some(inner) = text
        .strip_prefix(r#"{"message":""#)
        .and_then(|rest| rest.strip_suffix(r#""}"#))
    {
        if !inner.is_empty() && !frames::needs_escape(inner.as_bytes()) {
            return Some(inner.to_owned());
        }
    }
    let frame: PlainMessage = serde_json::from_str(text).ok()?;
    if frame.ty.as_deref().is_some_and(|ty| ty != "message") {
        return None;
    }
    let content = frame.content.or(frame.message)?;
    (!content.is_empty()).then(|| content.into_owned())
}

/// Parses one client frame and dispatches it by `type`.
pub(crate) async fn handle_text(session: &Session, room: ChatRoom<'_>, text: &str) {
    if let Some(content) = plain_message(text) {
        let draft = MessageDraft {
            content,
            thread_id: None,
            attachments: None,
            extra: Map::new(),
            client_id: None,
            duplicate_of: None,
        };
        if let Err(r) = send_message(session, room, draft).await {
            session.refuse(&r);
        }
        return;
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return session.refuse(&Refusal::bad_request("not JSON")),
    };
    let ty = match frame_type(&value) {
        Ok(ty) => ty,
        Err(r) => return session.refuse(&r),
    };
    if ty == "message" {
        if let Err(r) = handle_message(session, room, &value).await {
            session.refuse(&r);
        }
    } else {
        // Boxed so a large extension future does not grow every session.
        let handled = Box::pin(features::handle_frame(session, ty, &value));
        handled.await;
    }
}

/// The frame's `type`; a bare `{"message": ..}` is a `message`.
pub fn frame_type(value: &Value) -> Result<&str, Refusal> {
    let Some(object) = value.as_object() else {
        return Err(Refusal::bad_request("expected a JSON object"));
    };
    match object.get("type") {
        Some(Value::String(ty)) => Ok(ty),
        Some(_) => Err(Refusal::bad_request("type must be a string")),
        None if object.contains_key("message") => Ok("message"),
        None => Err(Refusal::bad_request("missing field: type")),
    }
}

/// The text of a message frame: `content`, or the tutorial's `message`.
pub fn content_of(value: &Value) -> Result<&str, Refusal> {
    let content = value.get("content").or_else(|| value.get("message"));
    match content {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(Refusal::bad_request("content is empty")),
        Some(_) => Err(Refusal::bad_request("content must be a string")),
        None => Err(Refusal::bad_request("missing field: content")),
    }
}

/// Reads a `message` frame's fields, then sends it.
async fn handle_message(
    session: &Session,
    room: ChatRoom<'_>,
    value: &Value,
) -> Result<(), Refusal> {
    let content = content_of(value)?;
    let thread_id = match value.get("thread_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| Refusal::bad_request("thread_id must be a message id"))?,
        ),
    };
    let attachments = match value.get("attachments") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Array(_)) => Some(v.clone()),
        Some(_) => return Err(Refusal::bad_request("attachments must be a list")),
    };
    let client_id = match value.get("client_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Refusal::bad_request("client_id must be a string")),
    };
    let draft = MessageDraft {
        content: content.to_owned(),
        thread_id,
        attachments,
        extra: Map::new(),
        client_id: client_id.map(str::to_owned),
        duplicate_of: None,
    };
    send_message(session, room, draft).await
}

/// Builds, saves and broadcasts a chat message (encoded once, with its id
/// inside); acks `client_id`.
async fn send_message(
    session: &Session,
    room: ChatRoom<'_>,
    mut draft: MessageDraft,
) -> Result<(), Refusal> {
    let state = &session.state;
    features::on_message(session, room, &mut draft).await?;
    if let Some(id) = draft.duplicate_of {
        if let (Some(client_id), true) = (&draft.client_id, id > 0) {
            session.send_json(&serde_json::json!({
                "type": "ack", "client_id": client_id, "id": id,
            }));
        }
        return Ok(());
    }

    let claims = &session.claims;
    let author = Author {
        sub: &claims.sub,
        username: &claims.username,
    };
    let ts = frames::timestamp(frames::now_ms());
    // Written by serde_json: valid JSON, so the core does not parse it again.
    let staged = state
        .hub
        .group_send_built_saved(room.group, Kind::Json, true, |id| {
            message_frame(id, author, &draft, &ts)
        });
    let report = match staged? {
        // Delivered and in history here; only the ack waits for the disk,
        // in a task of its own, so this socket's next frames are read (and
        // their messages share commits) meanwhile.
        Saved::Sent(report, commit) => {
            acknowledge_when_durable(
                session,
                room.id,
                draft.client_id.clone(),
                report.offset,
                commit,
            )
            .await;
            report
        }
        // Through Redis: the id is Redis' answer.
        Saved::Engine(send) => {
            let report = match send.await {
                Ok(report) => report,
                Err(e) => {
                    if let Some(client_id) = &draft.client_id {
                        let ids = &state.features.client_ids;
                        ids.failed(room.id, &claims.sub, client_id, 0).await;
                    }
                    return Err(e.into());
                }
            };
            if let Some(client_id) = &draft.client_id {
                session.send_json(&serde_json::json!({
                    "type": "ack", "client_id": client_id, "id": report.offset,
                }));
            }
            report
        }
    };
    count_message(state);
    let sent = SentMessage {
        id: report.offset,
        draft: &draft,
        delivered: report.delivered,
    };
    features::after_message(session, room, &sent).await;
    Ok(())
}

/// Counts an accepted chat message (`messages` in `/stats`).
fn count_message(state: &AppState) {
    state
        .counters
        .messages
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// A chat message's frame, as the room gets it and history keeps it.
fn message_frame(id: u64, author: Author<'_>, draft: &MessageDraft, ts: &str) -> Bytes {
    let user_id = (author.sub != author.username).then_some(author.sub);
    if draft.attachments.is_none() && draft.extra.is_empty() {
        // The common frame, written directly: the same bytes as below.
        return plain_message_frame(
            id,
            author.username,
            user_id,
            &draft.content,
            ts,
            draft.thread_id,
        );
    }
    frames::encode(&ChatMessage {
        ty: "message",
        id,
        user: author.username,
        user_id,
        content: &draft.content,
        timestamp: ts,
        thread_id: draft.thread_id,
        attachments: draft.attachments.as_ref(),
        extra: &draft.extra,
    })
}

thread_local! {
    /// Where [`plain_message_frame`] writes a frame before its one exact
    /// copy into `Bytes`: per thread, so a message costs one allocation.
    static FRAME_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest frame buffer a thread keeps between messages.
const MAX_KEPT_FRAME_BUF: usize = 64 * 1024;

/// A message frame without attachments or extension fields, byte for byte
/// what `frames::encode(&ChatMessage { .. })` writes (serde_json's compact
/// output: same key order, same string escapes), without serde's map
/// machinery, its buffer's growth and the final shrink: the frame is
/// written into the thread's buffer and copied once, at its exact size.
fn plain_message_frame(
    id: u64,
    user: &str,
    user_id: Option<&str>,
    content: &str,
    ts: &str,
    thread_id: Option<u64>,
) -> Bytes {
    FRAME_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        buf.extend_from_slice(br#"{"type":"message","id":"#);
        frames::push_u64(&mut buf, id);
        buf.extend_from_slice(br#","user":"#);
        frames::push_json_str(&mut buf, user);
        if let Some(user_id) = user_id {
            buf.extend_from_slice(br#","user_id":"#);
            frames::push_json_str(&mut buf, user_id);
        }
        buf.extend_from_slice(br#","content":"#);
        frames::push_json_str(&mut buf, content);
        buf.extend_from_slice(br#","timestamp":"#);
        frames::push_json_str(&mut buf, ts);
        if let Some(thread_id) = thread_id {
            buf.extend_from_slice(br#","thread_id":"#);
            frames::push_u64(&mut buf, thread_id);
        }
        buf.push(b'}');
        let frame = Bytes::copy_from_slice(&buf);
        if buf.capacity() > MAX_KEPT_FRAME_BUF {
            *buf = Vec::new();
        }
        frame
    })
}

/// Saves and delivers a chat message from the server API (`POST
/// /api/publish`) the way a socket's message is (same frame, mentions,
/// search index, analytics), with no socket behind it: no mute, resend or
/// ack applies. Returns its id once it is durable.
pub async fn publish(
    state: &Arc<AppState>,
    room: ChatRoom<'_>,
    author: Author<'_>,
    content: String,
) -> Result<u64, Refusal> {
    let mut draft = MessageDraft {
        content,
        thread_id: None,
        attachments: None,
        extra: Map::new(),
        client_id: None,
        duplicate_of: None,
    };
    features::messages::add_mentions(state, &mut draft);
    let ts = frames::timestamp(frames::now_ms());
    let staged = state
        .hub
        .group_send_built_staged(room.group, Kind::Json, true, |id| {
            message_frame(id, author, &draft, &ts)
        });
    let report = match staged? {
        Staged::Sent(report, durable) => {
            durable.await?;
            report
        }
        Staged::Engine(send) => send.await?,
    };
    count_message(state);
    let sent = SentMessage {
        id: report.offset,
        draft: &draft,
        delivered: report.delivered,
    };
    features::messages::after_saved(state, author, room, &sent).await;
    // Unread badges move for a published message as for a member's.
    features::unread::send_activity(&state.hub, room.id, sent.id, author.sub).await;
    // A room nobody is in here is idle from this message on, as a DM
    // conversation is from its last DM (see `rooms::IdleHistories`).
    if state.room_sessions(room.id).is_empty() {
        state
            .features
            .idle
            .idle_since_now(state, room.group, Some(room.id));
    }
    Ok(report.offset)
}

/// Sends the `ack` of message `id` once commit `commit` is done (an `error`
/// frame if it failed), without holding up the socket (see
/// [`crate::session::PendingAcks`]). Already done (history in memory, no
/// commit to wait for): answered here.
async fn acknowledge_when_durable(
    session: &Session,
    room: &str,
    client_id: Option<String>,
    id: u64,
    commit: channelbox::CommitSeq,
) {
    if let Some(result) = session.state.hub.commit_outcome(commit) {
        if let (Err(_), Some(client_id)) = (&result, &client_id) {
            let ids = &session.state.features.client_ids;
            ids.failed(room, &session.claims.sub, client_id, id).await;
        }
        if let Some(frame) = ack_frame(result, client_id.as_deref(), id) {
            session.send(frame);
        }
        return;
    }
    let acks = session.pending_acks().clone();
    acks.push(session, room, client_id, id, commit).await;
}

/// The `ack` of a committed message (none without a `client_id`), or the
/// `error` of a failed commit.
pub(crate) fn ack_frame(
    committed: channelbox::Result<()>,
    client_id: Option<&str>,
    id: u64,
) -> Option<Bytes> {
    #[derive(serde::Serialize)]
    struct Ack<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        client_id: &'a str,
        id: u64,
    }
    match committed {
        Ok(()) => client_id.map(|client_id| {
            frames::encode(&Ack {
                ty: "ack",
                client_id,
                id,
            })
        }),
        Err(e) => {
            let refusal = Refusal::from(e);
            Some(frames::error(refusal.code.as_str(), &refusal.detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directly written frame is byte for byte serde_json's.
    #[test]
    fn plain_message_frames_are_what_serde_json_writes() {
        let empty = Map::new();
        let texts = [
            "hi",
            "",
            "a \"quoted\" \\ back\\slash",
            "tab\tnew\nline\r\u{1}\u{1f}\u{7f} end",
            "unicode: \u{e9}\u{1F600} </script>",
            "B|0000abcd|0|12|1733221234567890123|",
        ];
        let mut checked = 0;
        for content in texts {
            for (user, user_id) in [("alice", None), ("Al \"x\"", Some("u-1\n"))] {
                for thread_id in [None, Some(0), Some(u64::MAX)] {
                    for id in [0, 7, 1234567890123] {
                        let ts = "2026-12-03T10:00:00.123Z";
                        let expected = frames::encode(&ChatMessage {
                            ty: "message",
                            id,
                            user,
                            user_id,
                            content,
                            timestamp: ts,
                            thread_id,
                            attachments: None,
                            extra: &empty,
                        });
                        let got = plain_message_frame(id, user, user_id, content, ts, thread_id);
                        assert_eq!(
                            std::str::from_utf8(&got).unwrap(),
                            std::str::from_utf8(&expected).unwrap()
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 6 * 2 * 3 * 3);
    }

    #[test]
    fn plain_messages_take_the_fast_path_and_nothing_else_does() {
        assert_eq!(plain_message(r#"{"message":"hi"}"#).as_deref(), Some("hi"));
        assert_eq!(
            plain_message(r#"{"type":"message","content":"a\"b"}"#).as_deref(),
            Some("a\"b")
        );
        assert_eq!(plain_message(r#"{"message":""}"#), None);
        assert_eq!(plain_message(r#"{"type":"typing","state":true}"#), None);
        assert_eq!(plain_message(r#"{"message":"hi","client_id":"c"}"#), None);
        assert_eq!(plain_message(r#"{"message":7}"#), None);
        // Escapes and what JSON refuses go through the parser.
        assert_eq!(
            plain_message(r#"{"message":"a\"b\\c\u00e9"}"#).as_deref(),
            Some("a\"b\\c\u{e9}")
        );
        assert_eq!(plain_message("{\"message\":\"tab\there\"}"), None);
        assert_eq!(plain_message(r#"{"message":"x"}  "#).as_deref(), Some("x"));
        assert_eq!(plain_message(r#"{"message":"x"}}"#), None);
        assert_eq!(plain_message(r#"{"message":"x","type":"typing"}"#), None);
    }

    /// The word-at-a-time check finds every byte that needs an escape, at
    /// every position, and nothing else (UTF-8 included).
    #[test]
    fn needs_escape_finds_every_escaped_byte_at_every_position() {
        let plain = "abcdefghijklmnopq\u{e9}\u{1F600}rstuvwxyz 0123456789 </>~\u{7f}";
        assert!(!frames::needs_escape(plain.as_bytes()));
        let mut checked = 0;
        for at in 0..=plain.len() {
            if !plain.is_char_boundary(at) {
                continue;
            }
            for special in (0u8..0x20).chain([b'"', b'\\']) {
                let mut s = plain.as_bytes().to_vec();
                s.insert(at, special);
                assert!(frames::needs_escape(&s), "byte {special:#x} at {at}");
                checked += 1;
            }
            for other in [b' ', b'!', b'#', b'[', b']', 0x7f] {
                let mut s = plain.as_bytes().to_vec();
                s.insert(at, other);
                assert!(!frames::needs_escape(&s), "byte {other:#x} at {at}");
            }
        }
        assert!(checked > 1000);
        assert_eq!(plain_message("not json"), None);
    }
}
