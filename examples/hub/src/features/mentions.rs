//! Mentions: `@name` in a message or an edit notifies that user, on their
//! `/presence` and `/dm` sockets, when they may read the room.

use channelbox::Kind;
use rustc_hash::FxHashSet;
use serde_json::json;

use crate::chat::Author;
use crate::frames;
use crate::server::AppState;
use crate::session::Session;

/// Most users one message notifies by mention.
const MAX_MENTIONS: usize = 20;

/// `@name` tokens of a text (`[A-Za-z0-9_.-]+`), trailing punctuation
/// trimmed, lowercased, deduplicated.
pub fn mention_names(content: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = content;
    while let Some(at) = rest.find('@') {
        let after = &rest[at + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .unwrap_or(after.len());
        let name = after[..end].trim_end_matches(['.', '-']).to_lowercase();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
        rest = &after[end..];
    }
    out
}

/// The user ids a text mentions, among users the hub knows (seen on a
/// `/chat` socket, or online on `/presence`).
pub fn resolve(state: &AppState, content: &str) -> Vec<String> {
    let names = mention_names(content);
    if names.is_empty() {
        return Vec::new();
    }
    let (mut subs, unknown) = state.features.directory.lookup(&names);
    if !unknown.is_empty() {
        for user in state.presence.users() {
            if unknown
                .iter()
                .any(|n| *n == user.id.to_lowercase() || *n == user.username.to_lowercase())
            {
                subs.push(user.id);
            }
        }
    }
    let mut seen = FxHashSet::default();
    subs.retain(|s| seen.insert(s.clone()));
    subs.truncate(MAX_MENTIONS);
    subs
}

/// Tells each mentioned user who may read `room`, on their `/presence`
/// and `/dm` sockets, wherever they are.
pub async fn notify(session: &Session, room: &str, id: u64, content: &str, subs: &[&str]) {
    let claims = &session.claims;
    let author = Author {
        sub: &claims.sub,
        username: &claims.username,
    };
    notify_from(&session.state, author, room, id, content, subs).await;
}

/// [`notify`] for a message from `author`, with or without a socket (the
/// server API's `POST /api/publish`).
pub async fn notify_from(
    state: &AppState,
    author: Author<'_>,
    room: &str,
    id: u64,
    content: &str,
    subs: &[&str],
) {
    let notice = frames::encode(&json!({
        "type": "mention",
        "room": room,
        "message_id": id,
        "from": author.username,
        "from_id": author.sub,
        "content": content,
    }));
    for &sub in subs {
        if sub == author.sub {
            continue;
        }
        let admin = state.features.directory.is_admin(sub);
        let readable = super::may_read_async(state, room, sub, admin).await;
        if readable.unwrap_or_else(|e| {
            tracing::warn!(error = %e, room, "mention: room check failed; not told");
            false
        }) {
            let group = frames::notify_group(sub);
            let send = state
                .hub
                .group_send_async(&group, Kind::Json, notice.clone(), false);
            let _ = send.await;
            crate::webhooks::mention_offline(
                state,
                author.sub,
                author.username,
                room,
                id,
                sub,
                content,
            );
        }
    }
}
