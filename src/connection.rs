//! The handle a host keeps for one open connection: receive without a map
//! lookup, synchronously or asynchronously, and join or leave groups.

use std::sync::Arc;
use std::time::Duration;

use crate::close::CloseReason;
use crate::conn::{ConnId, ConnState, RecvBatch};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::message::Message;

/// A handle on one open connection: receive without a map lookup, and wait
/// on it synchronously or asynchronously.
#[derive(Clone)]
pub struct Connection {
    hub: Hub,
    state: Arc<ConnState>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.state.id)
            .field("user", &self.state.user)
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(hub: Hub, state: Arc<ConnState>) -> Connection {
        Connection { hub, state }
    }

    /// Its id, for the hub's by-id methods and the C API.
    pub fn id(&self) -> ConnId {
        self.state.id
    }

    /// The user it carries, if any.
    pub fn user(&self) -> Option<&str> {
        self.state.user.as_deref()
    }

    /// When its TTL runs out, in ms since the Unix epoch (None: never).
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.state.expires_at_ms
    }

    /// The hub it belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Waits up to `timeout` (None = forever) for one message.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Message> {
        let mut out = Vec::with_capacity(1);
        self.state.recv_batch_timeout(&mut out, 1, timeout)?;
        out.pop().ok_or(Error::Empty)
    }

    /// Waits up to `timeout` for at least one message, then moves up to
    /// `max` into `out`.
    pub fn recv_batch(
        &self,
        out: &mut Vec<Message>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        self.state.recv_batch_timeout(out, max, timeout)
    }

    /// Moves up to `max` pending messages into `out` without waiting.
    pub fn try_recv_batch(&self, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        self.state.try_recv_batch(out, max)
    }

    /// Resolves when at least one message is pending (moving up to `max`
    /// into `out`) or the connection is closed and drained. Waker-based:
    /// works in any executor, no polling, no thread.
    pub fn recv_batch_async<'a>(&'a self, out: &'a mut Vec<Message>, max: usize) -> RecvBatch<'a> {
        RecvBatch {
            conn: &self.state,
            out,
            max,
        }
    }

    /// One message, asynchronously.
    pub async fn recv_async(&self) -> Result<Message> {
        let mut out = Vec::with_capacity(1);
        self.recv_batch_async(&mut out, 1).await?;
        out.pop().ok_or(Error::Empty)
    }

    /// True once the hub or the host closed it.
    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Why it was closed (None while it is open).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.close_reason()
    }

    /// Messages and payload bytes waiting in its queue.
    pub fn pending(&self) -> (usize, usize) {
        self.state.pending()
    }

    /// Joins a group.
    pub fn join(&self, group: &str) -> Result<()> {
        self.hub.group_add(self.state.id, group)
    }

    /// Leaves a group.
    pub fn leave(&self, group: &str) -> Result<()> {
        self.hub.group_remove(self.state.id, group)
    }

    /// Closes and releases it (see [`Hub::close`]).
    pub fn close(&self) -> Result<()> {
        self.hub.close(self.state.id)
    }
}
