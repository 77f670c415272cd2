//! Paging back: `{"type":"history","before"?,"limit"?}` answers a page of
//! older messages, oldest first. Update events (edits, deletes, reactions
//! saved with ids of their own) are left out: the messages they changed
//! already show the result, and a page is topped up with older messages so
//! it stays full.

use serde_json::Value;

use super::{fields, saved, ChatRoom};
use crate::error::Refusal;
use crate::frames;
use crate::session::Session;

/// Messages a page holds by default, and at most (also the server API's
/// `GET /api/rooms/{id}/history`).
pub const PAGE_DEFAULT: usize = 50;
/// See [`PAGE_DEFAULT`].
pub const PAGE_MAX: usize = 200;

/// `{"type":"history","before"?,"limit"?}`: a page of older messages.
pub async fn page(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let before = match frame.get("before") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| Refusal::bad_request("before must be a message id"))?,
    };
    let limit = fields::limit(frame, PAGE_DEFAULT, PAGE_MAX)?;
    let (epoch, messages) =
        saved::messages_before(&session.state, room.group, before, limit).await?;
    session.send(frames::history(epoch, &messages, None));
    Ok(())
}
