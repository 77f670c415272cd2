//! One WebSocket session as the endpoints and the features see it: who
//! (the token's claims), which endpoint (with its room or peer), and the
//! core connection whose queue the socket drains.

use std::sync::Arc;

use channelbox::Connection;

use crate::auth::Claims;
use crate::error::Refusal;
use crate::frames;
use crate::server::AppState;

/// Which endpoint a WebSocket session speaks.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `/chat/{room}`.
    Chat {
        /// The room id from the path.
        room: Arc<str>,
        /// The room's core group (`room:<id>`).
        group: Arc<str>,
    },
    /// `/presence`.
    Presence,
    /// `/dm/{peer}`.
    Dm {
        /// Where this socket's messages go (a user id).
        peer: Arc<str>,
    },
}

/// One WebSocket session as handlers and extensions see it.
/// Messages a socket may have sent whose commit to disk is still awaited
/// (see [`Session::pending_acks`]).
pub const MAX_PENDING_ACKS: usize = 64;

pub struct Session {
    /// The hub-wide state.
    pub state: Arc<AppState>,
    /// Who is connected (from the token).
    pub claims: Arc<Claims>,
    /// Which endpoint, with its room or peer.
    pub endpoint: Endpoint,
    /// The core connection: its queue is what this socket's writer drains.
    pub conn: Connection,
    /// `?since=`: the last message id the client has (recovery).
    pub since: Option<u64>,
    /// `?epoch=`: the history epoch `since` belongs to.
    pub epoch: Option<u64>,
    /// Saved messages of this socket whose `ack` waits for the durable
    /// store ([`MAX_PENDING_ACKS`] at most; the next message waits for one).
    pub pending_acks: Arc<tokio::sync::Semaphore>,
    /// Counts this socket against `--max-connections-per-user` until the
    /// session ends.
    pub(crate) _user_slot: crate::server::UserSlot,
}

impl Session {
    /// Sends a frame to this socket only (through its queue, so it keeps
    /// its place among room frames).
    pub fn send(&self, frame: bytes::Bytes) {
        let _ = self
            .state
            .hub
            .conn_send(self.conn.id(), channelbox::Kind::Json, frame);
    }

    /// Sends any serializable frame to this socket only.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, frame: &T) {
        self.send(frames::encode(frame));
    }

    /// Sends `{"type":"error","code","detail"}` to this socket.
    pub fn refuse(&self, refusal: &Refusal) {
        self.send(frames::error(refusal.code.as_str(), &refusal.detail));
    }

    /// Closes this socket with a WebSocket close code (e.g. 4003).
    pub fn close(&self, code: u16, reason: &str) {
        self.state.close_connection(self.conn.id(), code, reason);
    }
}

/// What the registry keeps per open WebSocket, so moderation can find a
/// user's sockets.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Whose socket it is.
    pub sub: Arc<str>,
    /// Where it is connected (a room, for kicks and bans).
    pub endpoint: Endpoint,
    /// This socket's own token has the admin role (not the user's last
    /// token: each socket keeps the rights it was opened with).
    pub admin: bool,
}
