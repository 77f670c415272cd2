//! Typing notices: `{"type":"typing","state":bool}` tells the room and
//! saves nothing; each socket may send 2 a second; a muted user none.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use super::ChatRoom;
use crate::error::Refusal;
use crate::frames;
use crate::rate_limit::RateLimit;
use crate::session::Session;

/// Typing notices accepted per connection per second.
const PER_SECOND: u32 = 2;

/// Each typing socket's rate limit.
#[derive(Debug, Default)]
pub struct Typing {
    /// connection id -> its bucket (dropped when the socket leaves).
    limits: Mutex<FxHashMap<u64, RateLimit>>,
}

impl Typing {
    /// Takes one notice from `conn`'s allowance; false when it is spent.
    fn allow(&self, conn: u64) -> bool {
        self.limits
            .lock()
            .entry(conn)
            .or_insert_with(|| RateLimit::new(PER_SECOND, PER_SECOND))
            .try_take()
    }

    /// Drops a closed connection's rate limit.
    pub fn forget_connection(&self, conn: u64) {
        self.limits.lock().remove(&conn);
    }
}

/// `{"type":"typing","state":bool}`: tells the room, saves nothing.
pub async fn typing(session: &Session, room: ChatRoom<'_>, frame: &Value) -> Result<(), Refusal> {
    let state_flag = match frame.get("state") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Refusal::bad_request("state must be true or false")),
    };
    // Muted users do not tell the room they are typing either.
    session
        .state
        .features
        .moderation
        .check_not_muted(room.id, &session.claims.sub)
        .await?;
    if !session.state.features.typing.allow(session.conn.id()) {
        return Err(Refusal::rate_limited(
            "typing notices are limited to 2 a second",
        ));
    }
    let claims = &session.claims;
    let notice = frames::encode(&json!({
        "type": "typing",
        "user": claims.username,
        "user_id": claims.sub,
        "state": state_flag,
    }));
    room.broadcast(session, notice).await;
    Ok(())
}
