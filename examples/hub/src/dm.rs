//! `/dm/{user_id}`: direct messages. The socket receives every DM sent to
//! the caller (it joins the caller's inbox group) and sends to `user_id`.
//!
//! A conversation is kept in a history-only core group per pair of users,
//! so it is replayed to both sides; each DM is saved there (its `id` is the
//! pair's offset), then the same bytes go to the recipient's inbox and the
//! sender's (tabs stay in sync, `to` says where it went). A per-pair lock
//! orders that against a joiner's replay: no DM is missed or seen twice.

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use channelbox::{HistoryQuery, Kind};
use serde::Serialize;
use serde_json::Value;

use crate::chat::{content_of, frame_type, Author};
use crate::error::Refusal;
use crate::features;
use crate::frames;
use crate::server::AppState;
use crate::session::{Endpoint, Session};
use crate::socket::{serve_frames, Socket};

#[derive(Serialize)]
struct DirectMessage<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    id: u64,
    from: &'a str,
    from_id: &'a str,
    to: &'a str,
    content: &'a str,
    timestamp: &'a str,
    /// Ids of files uploaded for this conversation (or for rooms).
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<&'a Value>,
}

/// Orders a pair's saves and deliveries against a joiner's replay (held
/// while the replay is read, so an async lock).
async fn pair_lock<'a>(state: &'a AppState, pair: &str) -> tokio::sync::MutexGuard<'a, ()> {
    let h = rustc_hash::FxBuildHasher.hash_one(pair);
    state.dm_locks[h as usize % state.dm_locks.len()]
        .lock()
        .await
}

/// Serves one `/dm/{user_id}` socket until it closes.
pub async fn serve(session: &Session, socket: &mut Socket) {
    let Endpoint::Dm { peer } = &session.endpoint else {
        return;
    };
    let pair = frames::dm_pair_group(&session.claims.sub, peer);
    // Boxed: the join's state (the history frame) is gone once it is sent.
    let joining = Box::pin(join(session, socket, &pair));
    if !joining.await {
        return;
    }
    let (pair, peer) = (&pair, &**peer);
    let end = serve_frames(session, socket, |text| {
        Box::pin(async move { handle_text(session, peer, pair, text.as_str()).await })
    })
    .await;
    socket.finish(&end).await;
}

/// Joins the caller's inbox and sends the conversation's `history` frame;
/// false when the socket is gone.
async fn join(session: &Session, socket: &mut Socket, pair: &str) -> bool {
    let state = &session.state;
    let sub = &session.claims.sub;
    let page = {
        let _order = pair_lock(state, pair).await;
        if session.conn.join(&frames::dm_inbox_group(sub)).is_err() {
            return false;
        }
        let query = HistoryQuery {
            limit: state.config.history_replay,
            ..HistoryQuery::default()
        };
        state.hub.history_async(pair, query).await
    };
    let _ = session.conn.join(&frames::notify_group(sub));
    let history = match page {
        Ok(page) => frames::history(page.epoch, &page.messages, None),
        Err(_) => frames::history(0, &[], None),
    };
    socket.send_now(&history).await.is_ok()
}

pub(crate) async fn handle_text(session: &Session, peer: &str, pair: &str, text: &str) {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return session.refuse(&Refusal::bad_request("not JSON")),
    };
    let ty = match frame_type(&value) {
        Ok(ty) => ty,
        Err(r) => return session.refuse(&r),
    };
    if ty == "read" {
        // A read position in this conversation (unread counts).
        if let Err(r) = features::unread::dm_read(session, peer, pair, &value).await {
            session.refuse(&r);
        }
        return;
    }
    if ty != "message" {
        return Box::pin(features::handle_frame(session, ty, &value)).await;
    }
    if let Err(r) = send_direct(session, peer, pair, &value).await {
        session.refuse(&r);
    }
}

/// Saves a DM to the pair's history and delivers it to both inboxes.
///
/// The three sends are started under the pair's lock, in order (so a
/// joiner's replay, read under the same lock, either has the DM or gets it
/// live, never both). With Redis the saved send is awaited under the lock
/// (the live copies need the id Redis assigns); the inbox copies are
/// awaited after it. The worker never blocks while Redis answers.
///
/// `from` is a socket's user, or whoever the server API names (`POST
/// /api/dm`); `pair` is [`frames::dm_pair_group`] of the two. Returns the
/// saved DM's report (its `offset` is the DM's `id`). `attachments` were
/// checked by [`features::files::dm_attachments`].
pub async fn deliver(
    state: &Arc<AppState>,
    from: Author<'_>,
    peer: &str,
    pair: &str,
    content: &str,
    attachments: Option<&Value>,
) -> Result<channelbox::SendReport, Refusal> {
    use futures_util::FutureExt;

    let ts = frames::timestamp(frames::now_ms());
    let encode = |id: u64| {
        frames::encode(&DirectMessage {
            ty: "direct_message",
            id,
            from: from.username,
            from_id: from.sub,
            to: peer,
            content,
            timestamp: &ts,
            attachments,
        })
    };
    // The frame `encode` built and the id it was given.
    let mut built: Option<(u64, Bytes)> = None;
    let (report, inboxes) = {
        let _order = pair_lock(state, pair).await;
        let mut saved = state
            .hub
            .group_send_with_async(pair, Kind::Json, true, |id| {
                let frame = encode(id);
                built = Some((id, frame.clone()));
                frame
            });
        // In memory the whole send is done here, and the frame carries its
        // id. With a shared engine (Redis) the id is assigned there: wait
        // for it under the pair's lock (only this pair's next DM waits), so
        // the live copies carry the real id, the same as the replay. A
        // refused DM (too large) is refused at once: deliver nothing.
        // Redis may also answer before the first poll: the frame built
        // then holds the engine's placeholder, not the id, so it is
        // built again.
        let report = match (&mut saved).now_or_never() {
            Some(done) => done?,
            None => saved.await?,
        };
        let frame = match built {
            Some((id, frame)) if id == report.offset => frame,
            _ => encode(report.offset),
        };
        let hub = &state.hub;
        let mut inboxes = vec![hub.group_send_async(
            &frames::dm_inbox_group(peer),
            Kind::Json,
            frame.clone(),
            false,
        )];
        if peer != from.sub {
            inboxes.push(hub.group_send_async(
                &frames::dm_inbox_group(from.sub),
                Kind::Json,
                frame,
                false,
            ));
        }
        (report, inboxes)
    };
    for inbox in inboxes {
        let _ = inbox.await;
    }
    crate::webhooks::dm_offline(
        state,
        from.sub,
        from.username,
        peer,
        report.offset,
        content,
        attachments,
    );
    // The conversation's history expires once it is idle long enough.
    state.features.idle.idle_since_now(state, pair, None);
    state
        .counters
        .direct_messages
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

/// Reads a DM frame, sends it, acks its `client_id`.
async fn send_direct(
    session: &Session,
    peer: &str,
    pair: &str,
    value: &Value,
) -> Result<(), Refusal> {
    let state = &session.state;
    let claims = &session.claims;
    let content = content_of(value)?;
    let attachments =
        features::files::dm_attachments(state, value.get("attachments"), &claims.sub, peer).await?;
    let from = Author {
        sub: &claims.sub,
        username: &claims.username,
    };
    let report = deliver(state, from, peer, pair, content, attachments.as_ref()).await?;
    if let Some(client_id) = value.get("client_id").and_then(Value::as_str) {
        session.send_json(&serde_json::json!({
            "type": "ack", "client_id": client_id, "id": report.offset,
        }));
    }
    // Listed for unread counts after the ack: it never waits for the store.
    features::unread::after_dm(state, &claims.sub, peer, report.offset).await;
    Ok(())
}
