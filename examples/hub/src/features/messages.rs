//! The chat message path as the features see it: checks before a message
//! is saved (mutes, thread roots, attachments, mentions, resends by
//! `client_id`), and bookkeeping after (client ids, threads, the search
//! index, mention notices, analytics).

use serde_json::{json, Value};

use super::client_ids::Decision;
use super::{mentions, saved, ChatRoom};
use crate::chat::{Author, MessageDraft, SentMessage};
use crate::error::Refusal;
use crate::server::AppState;
use crate::session::Session;

/// Most attachments on one message.
const MAX_ATTACHMENTS: usize = 10;

/// Checks and enriches a chat message before it is saved; a resend of a
/// message already saved (or being saved) sets `draft.duplicate_of`.
pub async fn before(
    session: &Session,
    room: ChatRoom<'_>,
    draft: &mut MessageDraft,
) -> Result<(), Refusal> {
    let state = &session.state;
    let claims = &session.claims;
    if state
        .features
        .moderation
        .muted(room.id, &claims.sub)
        .await?
    {
        return Err(Refusal::muted());
    }
    if let Some(reply_to) = draft.thread_id {
        draft.thread_id = Some(super::threads::root_of(session, room, reply_to).await?);
    }
    if let Some(list) = &draft.attachments {
        let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
        if list.len() > MAX_ATTACHMENTS {
            return Err(Refusal::too_large(format!(
                "at most {MAX_ATTACHMENTS} attachments"
            )));
        }
        for a in list {
            match a.as_str() {
                Some(id) if super::files::exists(state, id) => {}
                _ => {
                    return Err(Refusal::bad_request(
                        "attachments must be ids of uploaded files",
                    ))
                }
            }
        }
    }
    add_mentions(state, draft);
    if let Some(client_id) = &draft.client_id {
        match state
            .features
            .client_ids
            .check(room.id, &claims.sub, client_id)
            .await?
        {
            Decision::Send => {}
            Decision::Duplicate(id) => draft.duplicate_of = Some(id),
            // Acked when the first copy is saved.
            Decision::InFlight => draft.duplicate_of = Some(0),
        }
    }
    Ok(())
}

/// Lists the users the message mentions in its `mentions` field.
pub fn add_mentions(state: &AppState, draft: &mut MessageDraft) {
    let mentioned = mentions::resolve(state, &draft.content);
    if !mentioned.is_empty() {
        draft.extra.insert("mentions".into(), json!(mentioned));
    }
}

/// After a chat message was saved: remembers its client id and thread,
/// indexes it, notifies the users it mentions, counts it.
pub async fn after(session: &Session, room: ChatRoom<'_>, sent: &SentMessage<'_>) {
    let claims = &session.claims;
    let author = Author {
        sub: &claims.sub,
        username: &claims.username,
    };
    after_saved(&session.state, author, room, sent).await;
}

/// [`after`] for a message with no socket behind it (the server API's
/// `POST /api/publish`) as well as a socket's.
pub async fn after_saved(
    state: &AppState,
    author: Author<'_>,
    room: ChatRoom<'_>,
    sent: &SentMessage<'_>,
) {
    let features = &state.features;
    let draft = sent.draft;
    features.analytics.record_message(room.id, sent.delivered);
    if let Some(client_id) = &draft.client_id {
        features
            .client_ids
            .saved(room.id, author.sub, client_id, sent.id)
            .await;
    }
    if let Some(root) = draft.thread_id {
        features.threads.add_reply(room.id, root, sent.id).await;
    }
    if features
        .search
        .insert(state, room.id, sent.id, &draft.content)
    {
        // Forget what history has evicted since the last check.
        if let Some(first) = saved::first_kept(state, room.group).await {
            features.search.evict_before(room.id, first);
            features.threads.evict_before(room.id, first).await;
        }
    }
    if let Some(Value::Array(mentioned)) = draft.extra.get("mentions") {
        let subs: Vec<&str> = mentioned.iter().filter_map(Value::as_str).collect();
        mentions::notify_from(state, author, room.id, sent.id, &draft.content, &subs).await;
    }
}
