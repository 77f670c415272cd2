//! A connection's bounded outbound queue, its slow-consumer policy, and the
//! three ways a host waits on it: a blocking timeout, an async waker, and the
//! hub's readiness fd.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use parking_lot::{Condvar, Mutex, MutexGuard};
use rustc_hash::FxHashSet;

use crate::close::CloseReason;
use crate::config::SlowConsumer;
use crate::error::{Error, Result};
use crate::message::Message;

/// A connection's id: never reused within a hub, so a stale id is always
/// detected rather than aliasing a newer connection.
pub type ConnId = u64;

/// Slots a queue gets when the connection opens (8 bytes each): the first
/// message to a new connection then needs no allocation inside the
/// group's send, which holds the group's lock.
const QUEUE_SLOTS_AT_OPEN: usize = 4;

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

/// What a drain ([`ConnState::drain_each`]) left in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// Empty, and open (or released by the host).
    Nothing,
    /// Messages the drain had no room for.
    More,
    /// Empty and closed by the hub: the receiver is to be told.
    Closed,
}

/// Queue limits, copied from the hub config so a push needs no other lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
    pub(crate) policy: SlowConsumer,
}

/// The byte bound as the queue counts it. A payload's length always fits
/// an `isize` (Rust allocations do); a bound past that is as good as none.
fn max_room(max_bytes: usize) -> isize {
    isize::try_from(max_bytes).unwrap_or(isize::MAX)
}

/// What a push reads and writes, and nothing else: with its lock it is 64
/// bytes, one cache line (see [`QueueLine`]), so a delivery to a member
/// touches one line of the member's state, not three.
#[derive(Debug)]
pub(crate) struct Queue {
    items: VecDeque<Message>,
    /// Payload bytes `items` may still take: `max_bytes` minus what it
    /// holds, so a push compares with one field rather than two. Below
    /// zero while an empty queue's one message is over the bound.
    room_bytes: isize,
    /// `Limits::max_messages`, copied here to share the line.
    max_messages: usize,
    /// Set once; the reason is what receivers are told after draining.
    /// Boxed: one word on the hot line, set at most once a connection.
    closed: Option<Box<CloseReason>>,
}

/// The queue and its lock on a cache line of their own.
#[derive(Debug)]
#[repr(align(64))]
struct QueueLine(Mutex<Queue>);

/// The state of one connection, shared by the hub's maps and the groups it
/// is a member of.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) id: ConnId,
    pub(crate) user: Option<Arc<str>>,
    /// Absolute expiry in ms since the epoch (Nexios' `expires`).
    pub(crate) expires_at_ms: Option<u64>,
    queue: QueueLine,
    /// Threads blocked in `recv` (so a push knows to signal the condvar).
    /// Changed and read only under the queue's lock (atomic only to live
    /// off its cache line).
    blocked: AtomicU32,
    /// An async receiver found the queue empty and registered its waker:
    /// the next push wakes it. Without it every push to an empty queue
    /// would pay the waker's atomics, task or no task. Changed and read
    /// only under the queue's lock.
    task_waiting: AtomicBool,
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
            queue: QueueLine(Mutex::new(Queue {
                items: VecDeque::with_capacity(QUEUE_SLOTS_AT_OPEN),
                room_bytes: max_room(limits.max_bytes),
                max_messages: limits.max_messages,
                closed: None,
            })),
            blocked: AtomicU32::new(0),
            task_waiting: AtomicBool::new(false),
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
    #[inline(always)]
    pub(crate) fn push_len(&self, message: &Message, len: usize) -> Push {
        match self.try_push(len, || message.clone()) {
            Ok(wake) => Push::Queued {
                wake,
                dropped_oldest: 0,
            },
            Err(q) => self.push_slow(q, message, len),
        }
    }

    /// The common case of a push, inlined into the fan-out loop since it
    /// is the cost of a delivery: open, room left within the bounds and
    /// the slots it has. A lock, a slot for the reference `copy` makes (a
    /// clone, or one a fan-out reserved with the rest: no locked
    /// instruction, see `Message::reserve`), and a look at whether anyone
    /// waits when the queue was empty. `Ok(wake)`: queued,
    /// `wake` when the queue was empty. `Err`: the rest is up to
    /// [`ConnState::push_slow`], given the lock still held (so that the
    /// fast path hands nothing bigger than a register back).
    #[inline(always)]
    pub(crate) fn try_push(
        &self,
        len: usize,
        copy: impl FnOnce() -> Message,
    ) -> std::result::Result<bool, MutexGuard<'_, Queue>> {
        let mut q = self.queue.0.lock();
        let n = q.items.len();
        if q.closed.is_some()
            || n >= q.items.capacity()
            || (n > 0 && (n >= q.max_messages || len as isize > q.room_bytes))
        {
            return Err(q);
        }
        q.items.push_back(copy());
        q.room_bytes -= len as isize;
        let wake = n == 0;
        if wake && self.anyone_waiting() {
            self.wake_waiting(q);
        }
        Ok(wake)
    }

    /// [`ConnState::push_len`] for an empty, full or closed queue, or one
    /// whose slots are all taken.
    #[inline(never)]
    pub(crate) fn push_slow(
        &self,
        mut q: MutexGuard<'_, Queue>,
        message: &Message,
        len: usize,
    ) -> Push {
        if q.closed.is_some() {
            return Push::Closed;
        }
        let limits = self.limits;
        let fits = |q: &Queue| {
            q.items.is_empty()
                || (q.items.len() < limits.max_messages && len as isize <= q.room_bytes)
        };
        let mut dropped_oldest = 0;
        if !fits(&q) {
            match limits.policy {
                SlowConsumer::DropNewest => return Push::Dropped,
                SlowConsumer::Disconnect => {
                    q.closed = Some(Box::new(CloseReason::SlowConsumer {
                        messages: q.items.len(),
                        bytes: self.queued_bytes(&q),
                    }));
                    let blocked = self.blocked.load(Ordering::Relaxed) > 0;
                    drop(q);
                    self.wake_readers(blocked, true);
                    return Push::Disconnected;
                }
                SlowConsumer::DropOldest => {
                    while !fits(&q) {
                        if let Some(old) = q.items.pop_front() {
                            q.room_bytes += old.len() as isize;
                            dropped_oldest += 1;
                        }
                    }
                }
            }
        }
        let wake = q.items.is_empty();
        if q.items.len() == q.items.capacity() {
            // A burst is filling it: grow fourfold (within the bound)
            // rather than double, fewer copies while the group is locked.
            let room = q.items.len().saturating_mul(3).max(QUEUE_SLOTS_AT_OPEN);
            let room = room.min(limits.max_messages.saturating_sub(q.items.len()).max(1));
            q.items.reserve(room);
        }
        q.items.push_back(message.clone());
        q.room_bytes -= len as isize;
        let blocked = wake && self.blocked.load(Ordering::Relaxed) > 0;
        let task = wake && self.task_waiting.swap(false, Ordering::Relaxed);
        drop(q);
        if wake {
            self.wake_readers(blocked, task);
        }
        Push::Queued {
            wake,
            dropped_oldest,
        }
    }

    /// True when a thread or a task waits for this queue (read under its
    /// lock, which orders every change).
    #[inline(always)]
    fn anyone_waiting(&self) -> bool {
        self.blocked.load(Ordering::Relaxed) > 0 || self.task_waiting.load(Ordering::Relaxed)
    }

    /// Payload bytes waiting (under the lock).
    fn queued_bytes(&self, q: &Queue) -> usize {
        (max_room(self.limits.max_bytes) - q.room_bytes) as usize
    }

    /// Wakes whoever waits on a queue that just stopped being empty.
    #[cold]
    #[inline(never)]
    fn wake_waiting(&self, q: MutexGuard<'_, Queue>) {
        let blocked = self.blocked.load(Ordering::Relaxed) > 0;
        let task = self.task_waiting.swap(false, Ordering::Relaxed);
        drop(q);
        self.wake_readers(blocked, task);
    }

    /// Wakes blocked threads (`blocked`) and the async task (`task`).
    fn wake_readers(&self, blocked: bool, task: bool) {
        if blocked {
            self.cond.notify_all();
        }
        if task {
            self.waker.wake();
        }
    }

    /// Closes the queue; returns false when it was already closed.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut q = self.queue.0.lock();
        if q.closed.is_some() {
            return false;
        }
        q.closed = Some(Box::new(reason));
        let blocked = self.blocked.load(Ordering::Relaxed) > 0;
        drop(q);
        self.wake_readers(blocked, true);
        true
    }

    /// True once closed (it may still hold messages to drain).
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.0.lock().closed.is_some()
    }

    /// Why it was closed, if it was.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.queue.0.lock().closed.as_deref().cloned()
    }

    /// Messages and bytes waiting.
    pub(crate) fn pending(&self) -> (usize, usize) {
        let q = self.queue.0.lock();
        (q.items.len(), self.queued_bytes(&q))
    }

    /// Moves up to `max` pending messages into `out`. `Ok(0)`: nothing yet;
    /// `Err(Closed)`: closed and drained.
    pub(crate) fn try_recv_batch(&self, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        let mut q = self.queue.0.lock();
        Self::drain(&mut q, out, max)
    }

    fn drain(q: &mut Queue, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        let n = q.items.len().min(max);
        if n == 0 {
            return match &q.closed {
                Some(reason) if max > 0 => Err(Error::Closed(CloseReason::clone(reason))),
                _ => Ok(0),
            };
        }
        out.reserve(n);
        for message in q.items.drain(..n) {
            q.room_bytes += message.len() as isize;
            out.push(message);
        }
        Ok(n)
    }

    /// Hands up to `max` pending messages to `each`, oldest first, under
    /// the queue's lock (the hub's ready-list drain: no batch vector in
    /// between). Returns how many, and what is left: nothing, more
    /// messages, or a queue closed by the hub and now drained (never said
    /// of one the host released, whose id is gone).
    pub(crate) fn drain_each(&self, max: usize, mut each: impl FnMut(Message)) -> (usize, Left) {
        let mut q = self.queue.0.lock();
        let n = q.items.len().min(max);
        let mut freed = 0;
        // `pop_front` rather than `drain`: a drain's set-up and drop cost
        // more than the message when one or two are queued.
        for _ in 0..n {
            if let Some(message) = q.items.pop_front() {
                freed += message.len();
                each(message);
            }
        }
        q.room_bytes += freed as isize;
        let left = if !q.items.is_empty() {
            Left::More
        } else {
            match q.closed.as_deref() {
                None | Some(CloseReason::ClosedByHost) => Left::Nothing,
                Some(_) => Left::Closed,
            }
        };
        (n, left)
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
        let mut q = self.queue.0.lock();
        loop {
            let n = Self::drain(&mut q, out, max)?;
            if n > 0 || max == 0 {
                return Ok(n);
            }
            self.blocked.fetch_add(1, Ordering::Relaxed);
            let timed_out = match deadline {
                Some(d) => self.cond.wait_until(&mut q, d).timed_out(),
                None => {
                    self.cond.wait(&mut q);
                    false
                }
            };
            self.blocked.fetch_sub(1, Ordering::Relaxed);
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
        {
            let mut q = self.queue.0.lock();
            match Self::drain(&mut q, out, max) {
                Ok(0) if max > 0 => self.task_waiting.store(true, Ordering::Relaxed),
                other => return Poll::Ready(other),
            }
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

    /// A waker that counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn async_receiver_that_found_the_queue_empty_is_woken_once_by_the_next_push() {
        let c = conn(100, 1000, SlowConsumer::Disconnect);
        let counter = Arc::new(CountingWaker(0.into()));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        c.push(&msg(1));
        c.push(&msg(1));
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(c.poll_recv_batch(&mut cx, &mut out, 10), Poll::Ready(Ok(2)));
        // Not waiting any more: pushes to the empty queue wake nobody.
        c.push(&msg(1));
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Waiting again (queue drained first): the next push wakes it.
        assert_eq!(c.poll_recv_batch(&mut cx, &mut out, 10), Poll::Ready(Ok(1)));
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        c.push(&msg(1));
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn closing_wakes_a_waiting_async_receiver() {
        let c = conn(100, 1000, SlowConsumer::Disconnect);
        let counter = Arc::new(CountingWaker(0.into()));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        assert!(c.close(CloseReason::ClosedByHost));
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_burst_grows_the_slots_but_never_past_the_message_bound() {
        let c = conn(10, 1 << 20, SlowConsumer::DropNewest);
        for _ in 0..10 {
            assert!(matches!(c.push(&msg(1)), Push::Queued { .. }));
        }
        assert_eq!(c.push(&msg(1)), Push::Dropped);
        let q = c.queue.0.lock();
        assert_eq!(q.items.len(), 10);
        // 4 slots at open, then 16 would pass the bound: 10 it is.
        assert!(q.items.capacity() >= 10 && q.items.capacity() < 16);
    }

    #[test]
    fn a_queue_and_its_lock_fill_one_cache_line() {
        assert_eq!(std::mem::size_of::<QueueLine>(), 64);
        assert_eq!(std::mem::align_of::<QueueLine>(), 64);
    }

    #[test]
    fn an_oversized_message_fits_an_empty_queue_and_is_counted_exactly() {
        let c = conn(10, 25, SlowConsumer::DropNewest);
        assert!(matches!(c.push(&msg(40)), Push::Queued { wake: true, .. }));
        assert_eq!(c.push(&msg(1)), Push::Dropped);
        assert_eq!(c.pending(), (1, 40));
        let mut out = Vec::new();
        assert_eq!(c.try_recv_batch(&mut out, 10), Ok(1));
        assert_eq!(c.pending(), (0, 0));
        // The bound is whole again: 25 bytes, not 25 + 40.
        assert!(matches!(c.push(&msg(20)), Push::Queued { .. }));
        assert_eq!(c.push(&msg(6)), Push::Dropped);
        assert!(matches!(c.push(&msg(5)), Push::Queued { .. }));
        assert_eq!(c.pending(), (2, 25));
    }

    #[test]
    fn blocking_recv_times_out_with_empty() {
        let c = conn(10, 100, SlowConsumer::Disconnect);
        let mut out = Vec::new();
        let r = c.recv_batch_timeout(&mut out, 1, Some(Duration::from_millis(10)));
        assert_eq!(r, Err(Error::Empty));
    }
}
