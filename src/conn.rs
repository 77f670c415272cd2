//! A connection's bounded outbound queue, its slow-consumer policy, and the
//! three ways a host waits on it: a blocking timeout, an async waker, and the
//! hub's readiness fd.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use parking_lot::{Condvar, Mutex};
use rustc_hash::FxHashSet;

use crate::close::CloseReason;
use crate::config::SlowConsumer;
use crate::error::{Error, Result};
use crate::message::Message;

/// A connection's id: never reused within a hub, so a stale id is always
/// detected rather than aliasing a newer connection.
pub type ConnId = u64;

/// What happened to one message offered to one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued; `wake` says the queue was empty, so a reader must be woken.
    Queued { wake: bool, dropped_oldest: u64 },
    /// Not queued: the queue was full and the policy drops the newest.
    Dropped,
    /// Not queued: the queue was full and the connection is now closed.
    Disconnected,
    /// Not queued: the connection was already closed.
    Closed,
}

/// Queue limits, copied from the hub config so a push needs no other lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
    pub(crate) policy: SlowConsumer,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Message>,
    /// Payload bytes in `items`, what `max_bytes` bounds.
    bytes: usize,
    /// Set once; the reason is what receivers are told after draining.
    closed: Option<CloseReason>,
    /// Threads blocked in `recv` (so a push knows to signal the condvar).
    blocked: u32,
}

/// The state of one connection, shared by the hub's maps and the groups it
/// is a member of.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) id: ConnId,
    pub(crate) user: Option<Arc<str>>,
    /// Absolute expiry in ms since the epoch (Nexios' `expires`).
    pub(crate) expires_at_ms: Option<u64>,
    queue: Mutex<Queue>,
    /// Wakes blocking receivers.
    cond: Condvar,
    /// Wakes the async receiver.
    waker: AtomicWaker,
    /// Set while the id sits in the hub's ready list, so it is listed once.
    pub(crate) in_ready: AtomicBool,
    /// The groups it belongs to, so closing it can leave them all. Also the
    /// lock that orders a join against a concurrent close.
    pub(crate) groups: Mutex<FxHashSet<Arc<str>>>,
    limits: Limits,
}

impl ConnState {
    pub(crate) fn new(
        id: ConnId,
        user: Option<Arc<str>>,
        expires_at_ms: Option<u64>,
        limits: Limits,
    ) -> ConnState {
        ConnState {
            id,
            user,
            expires_at_ms,
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            waker: AtomicWaker::new(),
            in_ready: AtomicBool::new(false),
            groups: Mutex::new(FxHashSet::default()),
            limits,
        }
    }

    /// Offers one message under the slow-consumer policy. Never blocks on
    /// the reader.
    pub(crate) fn push(&self, message: &Message) -> Push {
        self.push_len(message, message.len())
    }

    /// [`ConnState::push`] with the payload length computed once per send
    /// rather than once per member.
    #[inline]
    pub(crate) fn push_len(&self, message: &Message, len: usize) -> Push {
        let mut q = self.queue.lock();
        if q.closed.is_some() {
            return Push::Closed;
        }
        let limits = self.limits;
        let fits = |q: &Queue| {
            q.items.is_empty()
                || (q.items.len() < limits.max_messages && q.bytes + len <= limits.max_bytes)
        };
        let mut dropped_oldest = 0;
        if !fits(&q) {
            match limits.policy {
                SlowConsumer::DropNewest => return Push::Dropped,
                SlowConsumer::Disconnect => {
                    q.closed = Some(CloseReason::SlowConsumer {
                        messages: q.items.len(),
                        bytes: q.bytes,
                    });
                    let blocked = q.blocked > 0;
                    drop(q);
                    self.wake_readers(blocked);
                    return Push::Disconnected;
                }
                SlowConsumer::DropOldest => {
                    while !fits(&q) {
                        if let Some(old) = q.items.pop_front() {
                            q.bytes -= old.len();
                            dropped_oldest += 1;
                        }
                    }
                }
            }
        }
        let wake = q.items.is_empty();
        q.items.push_back(message.clone());
        q.bytes += len;
        let blocked = wake && q.blocked > 0;
        drop(q);
        if wake {
            self.wake_readers(blocked);
        }
        Push::Queued {
            wake,
            dropped_oldest,
        }
    }

    fn wake_readers(&self, blocked: bool) {
        if blocked {
            self.cond.notify_all();
        }
        self.waker.wake();
    }

    /// Closes the queue; returns false when it was already closed.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut q = self.queue.lock();
        if q.closed.is_some() {
            return false;
        }
        q.closed = Some(reason);
        let blocked = q.blocked > 0;
        drop(q);
        self.wake_readers(blocked);
        true
    }

    /// True once closed (it may still hold messages to drain).
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.lock().closed.is_some()
    }

    /// Why it was closed, if it was.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.queue.lock().closed.clone()
    }

    /// Messages and bytes waiting.
    pub(crate) fn pending(&self) -> (usize, usize) {
        let q = self.queue.lock();
        (q.items.len(), q.bytes)
    }

    /// Moves up to `max` pending messages into `out`. `Ok(0)`: nothing yet;
    /// `Err(Closed)`: closed and drained.
    pub(crate) fn try_recv_batch(&self, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        let mut q = self.queue.lock();
        Self::drain(&mut q, out, max)
    }

    fn drain(q: &mut Queue, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        let n = q.items.len().min(max);
        if n == 0 {
            return match &q.closed {
                Some(reason) if max > 0 => Err(Error::Closed(reason.clone())),
                _ => Ok(0),
            };
        }
        out.reserve(n);
        for message in q.items.drain(..n) {
            q.bytes -= message.len();
            out.push(message);
        }
        Ok(n)
    }

    /// Blocks up to `timeout` (None = forever) for at least one message.
    /// `Err(Empty)` when the time ran out.
    pub(crate) fn recv_batch_timeout(
        &self,
        out: &mut Vec<Message>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut q = self.queue.lock();
        loop {
            let n = Self::drain(&mut q, out, max)?;
            if n > 0 || max == 0 {
                return Ok(n);
            }
            q.blocked += 1;
            let timed_out = match deadline {
                Some(d) => self.cond.wait_until(&mut q, d).timed_out(),
                None => {
                    self.cond.wait(&mut q);
                    false
                }
            };
            q.blocked -= 1;
            if timed_out {
                let n = Self::drain(&mut q, out, max)?;
                return if n > 0 { Ok(n) } else { Err(Error::Empty) };
            }
        }
    }

    /// Polls for a batch, registering the task's waker when there is none.
    pub(crate) fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Message>,
        max: usize,
    ) -> Poll<Result<usize>> {
        match self.try_recv_batch(out, max) {
            Ok(0) if max > 0 => {}
            other => return Poll::Ready(other),
        }
        self.waker.register(cx.waker());
        // A push between the first check and the registration would have
        // found no waker: look again.
        match self.try_recv_batch(out, max) {
            Ok(0) => Poll::Pending,
            other => Poll::Ready(other),
        }
    }
}

/// Future of [`crate::Connection::recv_batch_async`].
pub struct RecvBatch<'a> {
    pub(crate) conn: &'a ConnState,
    pub(crate) out: &'a mut Vec<Message>,
    pub(crate) max: usize,
}

impl Future for RecvBatch<'_> {
    type Output = Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.conn.poll_recv_batch(cx, this.out, this.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Kind;
    use bytes::Bytes;

    fn msg(n: usize) -> Message {
        Message::new(Kind::Binary, Bytes::from(vec![0u8; n]), None, 0, 0)
    }

    fn conn(max_messages: usize, max_bytes: usize, policy: SlowConsumer) -> ConnState {
        ConnState::new(
            1,
            None,
            None,
            Limits {
                max_messages,
                max_bytes,
                policy,
            },
        )
    }

    #[test]
    fn drop_oldest_keeps_the_newest_within_bounds() {
        let c = conn(3, 1000, SlowConsumer::DropOldest);
        for _ in 0..5 {
            c.push(&msg(10));
        }
        assert_eq!(c.pending(), (3, 30));
    }

    #[test]
    fn drop_newest_refuses_and_keeps_the_queue() {
        let c = conn(2, 1000, SlowConsumer::DropNewest);
        assert!(matches!(c.push(&msg(1)), Push::Queued { wake: true, .. }));
        assert!(matches!(c.push(&msg(1)), Push::Queued { wake: false, .. }));
        assert_eq!(c.push(&msg(1)), Push::Dropped);
        assert_eq!(c.pending(), (2, 2));
    }

    #[test]
    fn disconnect_closes_but_keeps_what_was_queued() {
        let c = conn(10, 25, SlowConsumer::Disconnect);
        c.push(&msg(10));
        c.push(&msg(10));
        assert_eq!(c.push(&msg(10)), Push::Disconnected);
        assert_eq!(c.push(&msg(1)), Push::Closed);
        let mut out = Vec::new();
        assert_eq!(c.try_recv_batch(&mut out, 10), Ok(2));
        assert_eq!(
            c.try_recv_batch(&mut out, 10),
            Err(Error::Closed(CloseReason::SlowConsumer {
                messages: 2,
                bytes: 20
            }))
        );
    }

    #[test]
    fn blocking_recv_times_out_with_empty() {
        let c = conn(10, 100, SlowConsumer::Disconnect);
        let mut out = Vec::new();
        let r = c.recv_batch_timeout(&mut out, 1, Some(Duration::from_millis(10)));
        assert_eq!(r, Err(Error::Empty));
    }
}
