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

/// Messages a socket may have sent whose commit to disk is still awaited
/// (see [`Session::pending_acks`]). 1024, not 64: a socket that sends a
/// burst faster than commits complete (2-32 ms apart under load) stopped
/// being read after 64, and the burst reached the room in pieces, each
/// its own round of writes to every member: in the referee's scenario a
/// (one sender, 1000 members) the hub spent 0.55-0.60x rust-naive's CPU a
/// delivery with 64 and 0.30-0.40x with 1024, same runs (BENCHMARKS.md,
/// "How many acks may wait"). Each waiting ack holds its commit's number
/// and its `client_id` (an estimate: under 200 B), so the bound is a few
/// hundred KB for a socket whose messages wait for the disk.
pub const MAX_PENDING_ACKS: usize = 1024;

/// One WebSocket session as handlers and extensions see it.
pub struct Session {
    /// The hub-wide state.
    pub state: Arc<AppState>,
    /// Who is connected (from the token). Inline: an `Arc` of its own was
    /// one more allocation per socket (issue 14 item 3).
    pub claims: Claims,
    /// Which endpoint, with its room or peer.
    pub endpoint: Endpoint,
    /// The core connection: its queue is what this socket's writer drains.
    pub conn: Connection,
    /// Saved messages of this socket whose `ack` waits for the durable
    /// store ([`MAX_PENDING_ACKS`] at most; the next message waits for one).
    /// Empty until the first one waits (most sockets never send, or send
    /// only what is already committed): see [`Session::pending_acks`].
    pub pending_acks: std::sync::OnceLock<Arc<PendingAcks>>,
    /// Counts this socket against `--max-connections-per-user` until the
    /// session ends; its user id is the hub's one `Arc<str>` for the user,
    /// which per-user state keys by instead of copies of the string.
    pub(crate) user_slot: crate::server::UserSlot,
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

    /// This socket's waiting acks, created by the first that waits.
    pub fn pending_acks(&self) -> &Arc<PendingAcks> {
        self.pending_acks.get_or_init(PendingAcks::new)
    }

    /// Closes this socket with a WebSocket close code (e.g. 4003).
    pub fn close(&self, code: u16, reason: &str) {
        self.state.close_connection(self.conn.id(), code, reason);
    }
}

/// The `ack`s of one socket's saved messages that wait for their commit,
/// in the order the messages were sent, and the one task that sends them:
/// started when the first waits, gone once none does. Each waiting
/// message is its commit's number ([`channelbox::CommitSeq`]), not a
/// future: the task waits once per commit ([`channelbox::Hub::commit_wait`],
/// one wake-up a commit), then answers every message whose commit is done
/// with atomic loads ([`channelbox::Hub::commit_outcome`]). Messages without
/// a `client_id` (no `ack` to send, only an `error` if their commit fails)
/// that share a commit are one entry with a count.
pub struct PendingAcks {
    queue: parking_lot::Mutex<AckQueue>,
    /// Signalled when messages leave a full queue ([`MAX_PENDING_ACKS`]).
    room: tokio::sync::Notify,
}

#[derive(Default)]
struct AckQueue {
    waiting: std::collections::VecDeque<PendingAck>,
    /// Messages waiting (an entry may stand for several).
    messages: usize,
    /// A task is serving `waiting`.
    served: bool,
}

/// Saved messages of one commit whose `ack` (or `error`) waits for it.
struct PendingAck {
    commit: channelbox::CommitSeq,
    /// The room and `client_id` of a message sent with one: released if
    /// the commit fails, so a resend is saved anew, not acked with `id`.
    client_id: Option<(String, String)>,
    id: u64,
    /// How many messages this entry stands for: 1 with a `client_id`,
    /// any number without (same commit, nothing to tell apart).
    count: usize,
}

impl PendingAcks {
    /// No ack waiting.
    pub fn new() -> Arc<PendingAcks> {
        Arc::new(PendingAcks {
            queue: parking_lot::Mutex::new(AckQueue::default()),
            room: tokio::sync::Notify::new(),
        })
    }

    /// Sends message `id`'s `ack` (none without a `client_id`) once commit
    /// `commit` is done, or an `error` frame if it failed, without holding
    /// up the socket: waits here only while [`MAX_PENDING_ACKS`] messages
    /// of this socket wait already.
    pub(crate) async fn push(
        self: &Arc<Self>,
        session: &Session,
        room: &str,
        client_id: Option<String>,
        id: u64,
        commit: channelbox::CommitSeq,
    ) {
        let mut client_id = client_id.map(|c| (room.to_owned(), c));
        // Most pushes find room: no `Notified` is made for them (listing
        // and unlisting one cost ~150 instructions a message).
        let serve = match self.try_push(&mut client_id, id, commit) {
            Some(serve) => serve,
            None => loop {
                let freed = self.room.notified();
                tokio::pin!(freed);
                // Listed before the check: a release in between is not
                // missed.
                freed.as_mut().enable();
                if let Some(serve) = self.try_push(&mut client_id, id, commit) {
                    break serve;
                }
                freed.await;
            },
        };
        if serve {
            let (acks, state, conn) = (self.clone(), session.state.clone(), session.conn.id());
            let sub = session.claims.sub.clone();
            tokio::spawn(async move { acks.serve(&state, conn, &sub).await });
        }
    }

    /// Queues message `id` unless [`MAX_PENDING_ACKS`] wait already
    /// (`None`); `Some(true)` when no task serves the queue yet.
    fn try_push(
        &self,
        client_id: &mut Option<(String, String)>,
        id: u64,
        commit: channelbox::CommitSeq,
    ) -> Option<bool> {
        let mut q = self.queue.lock();
        if q.messages >= MAX_PENDING_ACKS {
            return None;
        }
        q.messages += 1;
        match q.waiting.back_mut() {
            Some(back)
                if client_id.is_none() && back.client_id.is_none() && back.commit == commit =>
            {
                back.count += 1;
            }
            _ => q.waiting.push_back(PendingAck {
                commit,
                client_id: client_id.take(),
                id,
                count: 1,
            }),
        }
        Some(!std::mem::replace(&mut q.served, true))
    }

    /// Answers waiting acks in order until none is left.
    async fn serve(&self, state: &AppState, conn: channelbox::ConnId, sub: &str) {
        let hub = &state.hub;
        let mut answered = Vec::new();
        loop {
            let oldest = {
                let mut q = self.queue.lock();
                match q.waiting.front() {
                    Some(next) => next.commit,
                    None => {
                        q.served = false;
                        return;
                    }
                }
            };
            // Once per commit; every entry of it and of older commits is
            // answered below without waiting again.
            let _ = hub.commit_wait(oldest).await;
            {
                let mut q = self.queue.lock();
                let full = q.messages >= MAX_PENDING_ACKS;
                while let Some(next) = q.waiting.front() {
                    let Some(outcome) = hub.commit_outcome(next.commit) else {
                        break;
                    };
                    let next = q.waiting.pop_front().expect("just seen");
                    q.messages -= next.count;
                    answered.push((next, outcome));
                }
                if full && q.messages < MAX_PENDING_ACKS {
                    self.room.notify_waiters();
                }
            }
            for (next, committed) in answered.drain(..) {
                if committed.is_ok() && next.client_id.is_none() {
                    continue;
                }
                let client_id = next.client_id.as_ref();
                if let (Err(_), Some((room, client_id))) = (&committed, client_id) {
                    let ids = &state.features.client_ids;
                    ids.failed(room, sub, client_id, next.id).await;
                }
                let client_id = client_id.map(|(_, c)| c.as_str());
                for _ in 0..next.count {
                    let committed = committed.clone();
                    if let Some(frame) = crate::chat::ack_frame(committed, client_id, next.id) {
                        let _ = hub.conn_send(conn, channelbox::Kind::Json, frame);
                    }
                }
            }
        }
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
