//! Paging back: `{"type":"history","before"?,"limit"?}` answers a page of
//! older messages, oldest first.

use channelbox::HistoryQuery;
use serde_json::Value;

use super::{fields, ChatRoom};
use crate::error::Refusal;
use crate::frames;
use crate::session::Session;

/// Messages a page holds by default, and at most.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 200;

/// `{"type":"history","before"?,"limit"?}`: a page of older messages.
pub async fn page(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let before = match frame.get("before") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| Refusal::bad_request("before must be a message id"))?,
    };
    let limit = fields::limit(frame, PAGE_DEFAULT, PAGE_MAX)?;
    let query = HistoryQuery {
        since: 0,
        before,
        limit,
    };
    let page = session.state.hub.history_async(room.group, query).await?;
    session.send(frames::history(page.epoch, &page.messages, None));
    Ok(())
}
