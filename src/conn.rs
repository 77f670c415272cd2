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
use parking_lot::Mutex;
use rustc_hash::FxHashSet;

use crate::close::CloseReason;
use crate::config::SlowConsumer;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::ready::Ready;

mod lock;

use lock::{QueueGuard, QueueMutex};

/// A connection's id: never reused within a hub, so a stale id is always
/// detected rather than aliasing a newer connection.
pub type ConnId = u64;

/// Slots a queue holds inside the connection's state, on its lock's cache
/// line: up to this many pending messages need no allocation (a send to a
/// new connection allocates nothing while it holds the group's lock), and
/// an idle connection holds no queue buffer at all.
const FIRST_SLOTS: usize = 4;

/// Slots the queue's buffer gets when a burst first passes the first
/// slots: one allocation, nothing to copy or free (there is no buffer
/// yet), and enough for a burst of 19 with no second one. 15 and not 16:
/// 120 bytes is glibc's largest fastbin size (a 128-byte chunk), so the
/// buffers of connections that closed are handed out again from a free
/// list instead of the sorted bins (BENCHMARKS.md, "Bursts through the C
/// ABI", third round).
const REST_SLOTS_AT_FIRST: usize = 15;

/// What happened to one message offered to one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued; `wake` says the queue was empty, so a reader must be woken;
    /// `list` that the push marked the connection for the hub's ready list
    /// (the ready fd is on and it was not listed), so the pusher must put
    /// it there ([`Ready::list`]).
    Queued {
        wake: bool,
        list: bool,
        dropped_oldest: u64,
    },
    /// Not queued: the queue was full and the policy drops the newest.
    Dropped,
    /// Not queued: the queue was full and the connection is now closed.
    Disconnected,
    /// Not queued: the connection was already closed.
    Closed,
}

/// What the common case of a push did ([`ConnState::try_push`]): two
/// flags, so the fan-out loop gets them back in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// The queue was empty: a reader was woken if one waited.
    pub(crate) wake: bool,
    /// The connection was marked for the ready list: the caller lists it.
    pub(crate) list: bool,
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

/// A connection's pending messages, oldest first: up to [`FIRST_SLOTS`] in
/// `first`, the rest in `rest`, a buffer allocated when a burst first
/// needs it. A message goes to `first` only while `rest` is empty, so
/// everything in `first` is older than everything in `rest`.
///
/// `repr(C)`, in this order: what every push reads and writes (the bound,
/// the room, `rest`'s header) fills, with the lock, the connection's first
/// cache line; `first` starts the second, beside the waiting flags a push
/// to an empty queue reads. A delivery touches two lines of the member,
/// as with one buffer, but a queue needs a buffer only past
/// [`FIRST_SLOTS`], and getting one is one allocation, with nothing to
/// copy or free.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Queue {
    /// Set once; the reason is what receivers are told after draining.
    /// Boxed: one word on the hot line, set at most once a connection.
    closed: Option<Box<CloseReason>>,
    /// Payload bytes the queue may still take: `max_bytes` minus what it
    /// holds, so a push compares with one field rather than two. Below
    /// zero while an empty queue's one message is over the bound.
    room_bytes: isize,
    /// `Limits::max_messages`, copied here to share the line; a bound
    /// past `u32::MAX` messages (32 GiB of pointers) counts as that.
    max_messages: u32,
    /// Where the oldest of `first` is.
    head: u8,
    /// How many of `first` hold a message.
    first_len: u8,
    /// On the hub's ready list, or marked for it by a push that will put
    /// it there once its fan-out ends: a connection is listed once. Read
    /// and written only under the queue's lock (the push already holds
    /// it), so listing costs no atomic instruction of its own. While it is
    /// set the connection is not freed (the list holds a plain pointer;
    /// see `crate::ready`).
    listed: bool,
    /// The host released the id ([`ConnState::release`]): nothing marks
    /// it for the ready list any more. `listed` and this fill the padding
    /// after `first_len`.
    released: bool,
    rest: VecDeque<Message>,
    first: [Option<Message>; FIRST_SLOTS],
}

impl Queue {
    fn new(limits: &Limits) -> Queue {
        Queue {
            closed: None,
            room_bytes: max_room(limits.max_bytes),
            max_messages: u32::try_from(limits.max_messages).unwrap_or(u32::MAX),
            head: 0,
            first_len: 0,
            listed: false,
            released: false,
            rest: VecDeque::new(),
            first: Default::default(),
        }
    }

    /// Marks the connection for the ready list when the ready fd is on
    /// and it is not listed yet; true when it did (the caller then lists
    /// it).
    #[inline(always)]
    fn mark_listed(&mut self, ready: &Ready) -> bool {
        if ready.is_on() && !self.listed {
            self.listed = true;
            return true;
        }
        false
    }

    /// Messages pending.
    #[inline(always)]
    fn len(&self) -> usize {
        usize::from(self.first_len) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first_len == 0 && self.rest.is_empty()
    }

    /// The bound on messages.
    #[inline(always)]
    fn max_messages(&self) -> usize {
        self.max_messages as usize
    }

    /// True when a push needs no allocation.
    #[inline(always)]
    fn has_slot(&self) -> bool {
        if self.rest.is_empty() && usize::from(self.first_len) < FIRST_SLOTS {
            return true;
        }
        self.rest.len() < self.rest.capacity()
    }

    /// Appends the message `copy` makes when a slot is free (no
    /// allocation); when none is, nothing is made and `copy` comes back.
    #[inline(always)]
    fn push_back_in_slot<F: FnOnce() -> Message>(&mut self, copy: F) -> std::result::Result<(), F> {
        if self.rest.is_empty() {
            if usize::from(self.first_len) < FIRST_SLOTS {
                let at = (usize::from(self.head) + usize::from(self.first_len)) % FIRST_SLOTS;
                self.first[at] = Some(copy());
                self.first_len += 1;
                return Ok(());
            }
            if self.rest.capacity() == 0 {
                return Err(copy);
            }
        } else if self.rest.len() == self.rest.capacity() {
            return Err(copy);
        }
        self.rest.push_back(copy());
        Ok(())
    }

    /// [`Queue::grow`], then appends `message`: a push within the bounds
    /// that found every slot taken (out of the fan-out loop's inlined
    /// path, but with the reference the fan-out reserved: no count
    /// increment of its own, unlike [`ConnState::push_slow`]).
    #[cold]
    #[inline(never)]
    fn grow_and_push(&mut self, message: Message) {
        self.grow();
        self.rest.push_back(message);
    }

    /// Appends the newest message (`rest` grows when it must).
    #[inline(always)]
    fn push_back(&mut self, message: Message) {
        if self.rest.is_empty() && usize::from(self.first_len) < FIRST_SLOTS {
            let at = (usize::from(self.head) + usize::from(self.first_len)) % FIRST_SLOTS;
            self.first[at] = Some(message);
            self.first_len += 1;
        } else {
            self.rest.push_back(message);
        }
    }

    /// Takes the oldest message.
    #[inline]
    fn pop_front(&mut self) -> Option<Message> {
        if self.first_len == 0 {
            return self.rest.pop_front();
        }
        let message = self.first[usize::from(self.head)].take();
        self.head = ((usize::from(self.head) + 1) % FIRST_SLOTS) as u8;
        self.first_len -= 1;
        message
    }

    /// Hands the `n` oldest messages (at most what is queued) to `each`,
    /// oldest first; returns their payload bytes. A few go one by one
    /// (cheapest to set up); more, the buffer's part in one `drain`
    /// (cheaper per message).
    #[inline]
    fn take_front(&mut self, n: usize, mut each: impl FnMut(Message)) -> usize {
        let mut freed = 0;
        if n <= 8 {
            for _ in 0..n {
                if let Some(message) = self.pop_front() {
                    freed += message.len();
                    each(message);
                }
            }
            return freed;
        }
        let mut left = n;
        while left > 0 && self.first_len > 0 {
            if let Some(message) = self.pop_front() {
                freed += message.len();
                each(message);
            }
            left -= 1;
        }
        let left = left.min(self.rest.len());
        for message in self.rest.drain(..left) {
            freed += message.len();
            each(message);
        }
        freed
    }

    /// Makes room for one more message when every slot is taken: the
    /// first time, [`REST_SLOTS_AT_FIRST`]; then fourfold (fewer copies
    /// while the group is locked); never past the bound.
    fn grow(&mut self) {
        let have = self.len();
        let first = self.rest.capacity() == 0;
        let room = if first {
            REST_SLOTS_AT_FIRST
        } else {
            have.saturating_mul(3)
        };
        let room = room.min(self.max_messages().saturating_sub(have).max(1));
        if first {
            // Straight to the allocator, without `reserve`'s regrowth.
            self.rest = VecDeque::with_capacity(room);
        } else {
            self.rest.reserve(room);
        }
    }

    /// Slots without allocating (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        FIRST_SLOTS + self.rest.capacity()
    }
}

/// The groups one connection is in. Most connections are in one group
/// (a chat socket in its room): that name is kept inline, and a set is
/// allocated only for a second. A hash set for every connection cost a
/// table allocation of ~90 bytes an idle connection (issue 14 item 3).
/// Read and changed only on joins, leaves and closes, never by a push.
#[derive(Debug, Default)]
pub(crate) enum GroupSet {
    #[default]
    Empty,
    One(Arc<str>),
    Many(Box<FxHashSet<Arc<str>>>),
}

impl GroupSet {
    /// True when `name` is one of them.
    pub(crate) fn contains(&self, name: &str) -> bool {
        match self {
            GroupSet::Empty => false,
            GroupSet::One(one) => &**one == name,
            GroupSet::Many(set) => set.contains(name),
        }
    }

    /// Adds `name` (nothing changes when it is there already).
    pub(crate) fn insert(&mut self, name: Arc<str>) {
        match self {
            GroupSet::Empty => *self = GroupSet::One(name),
            GroupSet::One(one) if *one == name => {}
            GroupSet::One(one) => {
                let one = one.clone();
                *self = GroupSet::Many(Box::new([one, name].into_iter().collect()));
            }
            GroupSet::Many(set) => {
                set.insert(name);
            }
        }
    }

    /// Removes `name` if it is there.
    pub(crate) fn remove(&mut self, name: &str) {
        match self {
            GroupSet::One(one) if &**one == name => *self = GroupSet::Empty,
            GroupSet::Many(set) => {
                set.remove(name);
            }
            _ => {}
        }
    }

    /// Takes every name out, leaving none.
    pub(crate) fn take_all(&mut self) -> Vec<Arc<str>> {
        match std::mem::take(self) {
            GroupSet::Empty => Vec::new(),
            GroupSet::One(one) => vec![one],
            GroupSet::Many(set) => set.into_iter().collect(),
        }
    }
}

/// The state of one connection, shared by the hub's maps and the groups it
/// is a member of. `repr(C, align(64))`: the queue and its lock come first,
/// at the start of a cache line (see [`Queue`]), then the flags a push to
/// an empty queue reads, on the line of the first slots; the other fields
/// follow in an order that leaves no gaps (256 bytes in all).
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct ConnState {
    queue: QueueMutex<Queue>,
    /// Threads blocked in `recv` (so a push knows to signal the condvar).
    /// Changed and read only under the queue's lock (atomic only to live
    /// off its cache line).
    blocked: AtomicU32,
    /// An async receiver found the queue empty and registered its waker:
    /// the next push wakes it. Without it every push to an empty queue
    /// would pay the waker's atomics, task or no task. Changed and read
    /// only under the queue's lock.
    task_waiting: AtomicBool,
    pub(crate) id: ConnId,
    pub(crate) user: Option<Arc<str>>,
    /// Absolute expiry in ms since the epoch (Nexios' `expires`).
    pub(crate) expires_at_ms: Option<u64>,
    /// Wakes blocking receivers: a count a push that finds one blocked
    /// raises before it wakes them (`parking_lot_core`'s queue for this
    /// field's address); a receiver sleeps only while it has not moved
    /// since the receiver looked under the queue's lock, so no wake-up is
    /// lost. The queue's lock is not parking_lot's mutex (`lock`), so
    /// parking_lot's `Condvar` cannot wait on it.
    wakes: AtomicU32,
    /// Wakes the async receiver.
    waker: AtomicWaker,
    /// The groups it belongs to, so closing it can leave them all. Also the
    /// lock that orders a join against a concurrent close.
    pub(crate) groups: Mutex<GroupSet>,
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
            queue: QueueMutex::new(Queue::new(&limits)),
            blocked: AtomicU32::new(0),
            task_waiting: AtomicBool::new(false),
            wakes: AtomicU32::new(0),
            waker: AtomicWaker::new(),
            groups: Mutex::new(GroupSet::default()),
            limits,
        }
    }

    /// Offers one message under the slow-consumer policy. Never blocks on
    /// the reader.
    pub(crate) fn push(&self, message: &Message, ready: &Ready) -> Push {
        self.push_len(message, message.len(), ready)
    }

    /// [`ConnState::push`] with the payload length computed once per send
    /// rather than once per member.
    #[inline(always)]
    pub(crate) fn push_len(&self, message: &Message, len: usize, ready: &Ready) -> Push {
        match self.try_push(len, ready, || message.clone()) {
            Ok(Pushed { wake, list }) => Push::Queued {
                wake,
                list,
                dropped_oldest: 0,
            },
            Err(q) => self.push_slow(q, message, len, ready),
        }
    }

    /// The common case of a push, inlined into the fan-out loop since it
    /// is the cost of a delivery: open and room left within the bounds
    /// (a queue whose slots are all taken grows here, out of line:
    /// [`Queue::grow_and_push`]). A lock, a slot for the reference `copy` makes (a
    /// clone, or one a fan-out reserved with the rest: no locked
    /// instruction, see `Message::reserve`), and a look at whether anyone
    /// waits when the queue was empty, and when it was empty with the
    /// ready fd on, the connection marked for the ready list (under the
    /// lock already held: no atomic instruction). `Ok`: queued (see
    /// [`Pushed`]). `Err`: the rest is up to
    /// [`ConnState::push_slow`], given the lock still held (so that the
    /// fast path hands nothing bigger than a register back).
    #[inline(always)]
    pub(crate) fn try_push(
        &self,
        len: usize,
        ready: &Ready,
        copy: impl FnOnce() -> Message,
    ) -> std::result::Result<Pushed, QueueGuard<'_, Queue>> {
        let mut q = self.queue.lock();
        let n = q.len();
        if q.closed.is_some() || (n > 0 && (n >= q.max_messages() || len as isize > q.room_bytes)) {
            return Err(q);
        }
        if let Err(copy) = q.push_back_in_slot(copy) {
            q.grow_and_push(copy());
        }
        q.room_bytes -= len as isize;
        let wake = n == 0;
        let mut list = false;
        if wake {
            list = q.mark_listed(ready);
            if self.anyone_waiting() {
                self.wake_waiting(q);
            }
        }
        Ok(Pushed { wake, list })
    }

    /// [`ConnState::push_len`] for a full or closed queue.
    #[inline(never)]
    pub(crate) fn push_slow(
        &self,
        mut q: QueueGuard<'_, Queue>,
        message: &Message,
        len: usize,
        ready: &Ready,
    ) -> Push {
        if q.closed.is_some() {
            return Push::Closed;
        }
        let limits = self.limits;
        let fits = |q: &Queue| {
            q.is_empty() || (q.len() < q.max_messages() && len as isize <= q.room_bytes)
        };
        let mut dropped_oldest = 0;
        if !fits(&q) {
            match limits.policy {
                SlowConsumer::DropNewest => return Push::Dropped,
                SlowConsumer::Disconnect => {
                    q.closed = Some(Box::new(CloseReason::SlowConsumer {
                        messages: q.len(),
                        bytes: self.queued_bytes(&q),
                    }));
                    let blocked = self.blocked.load(Ordering::Relaxed) > 0;
                    drop(q);
                    self.wake_readers(blocked, true);
                    return Push::Disconnected;
                }
                SlowConsumer::DropOldest => {
                    while !fits(&q) {
                        if let Some(old) = q.pop_front() {
                            q.room_bytes += old.len() as isize;
                            dropped_oldest += 1;
                        }
                    }
                }
            }
        }
        let wake = q.is_empty();
        if !q.has_slot() {
            q.grow();
        }
        q.push_back(message.clone());
        q.room_bytes -= len as isize;
        let list = wake && q.mark_listed(ready);
        let blocked = wake && self.blocked.load(Ordering::Relaxed) > 0;
        let task = wake && self.task_waiting.swap(false, Ordering::Relaxed);
        drop(q);
        if wake {
            self.wake_readers(blocked, task);
        }
        Push::Queued {
            wake,
            list,
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
    fn wake_waiting(&self, q: QueueGuard<'_, Queue>) {
        let blocked = self.blocked.load(Ordering::Relaxed) > 0;
        let task = self.task_waiting.swap(false, Ordering::Relaxed);
        drop(q);
        self.wake_readers(blocked, task);
    }

    /// Wakes blocked threads (`blocked`) and the async task (`task`).
    fn wake_readers(&self, blocked: bool, task: bool) {
        if blocked {
            // After the queue's lock, under which the receivers read the
            // count before sleeping: raised after their look, so each
            // either sees it and does not sleep, or is woken here.
            self.wakes.fetch_add(1, Ordering::Relaxed);
            // SAFETY: as in `recv_batch_timeout`.
            unsafe {
                parking_lot_core::unpark_all(
                    self.wakes_key(),
                    parking_lot_core::DEFAULT_UNPARK_TOKEN,
                );
            }
        }
        if task {
            self.waker.wake();
        }
    }

    /// The parking key blocked receivers sleep on.
    fn wakes_key(&self) -> usize {
        &self.wakes as *const AtomicU32 as usize
    }

    /// Wakes the async receiver without a message: its task runs, finds
    /// the queue as it was, and waits again ([`crate::Hub::wake`]).
    pub(crate) fn wake_task(&self) {
        self.waker.wake();
    }

    /// Closes the queue; returns false when it was already closed.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut q = self.queue.lock();
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
        self.queue.lock().closed.is_some()
    }

    /// Marks the connection for the ready list when the ready fd is on, it
    /// is not listed yet and it has something to say (messages, or a
    /// close); true when it did, and the caller lists it. For a close, and
    /// for the connections that were ready before the fd existed.
    /// Never marks one the host released.
    pub(crate) fn mark_if_pending(&self, ready: &Ready) -> bool {
        let mut q = self.queue.lock();
        !q.released && (!q.is_empty() || q.closed.is_some()) && q.mark_listed(ready)
    }

    /// Clears the mark of a connection taken off the ready list (its host
    /// drains it next): its next push to an empty queue lists it again.
    /// The caller must not touch the connection through the list's pointer
    /// after this.
    pub(crate) fn unlist(&self) {
        self.queue.lock().listed = false;
    }

    /// The host released the id (after closing it): from here on nothing
    /// marks it for the ready list. True when it is marked now: the ready
    /// list (or a fan-out about to append to it) points to it, so the
    /// hub's reference must outlive the mark (`Ready::retire`).
    pub(crate) fn release(&self) -> bool {
        let mut q = self.queue.lock();
        q.released = true;
        q.listed
    }

    /// True while marked for the ready list.
    pub(crate) fn is_listed(&self) -> bool {
        self.queue.lock().listed
    }

    /// Why it was closed, if it was.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.queue.lock().closed.as_deref().cloned()
    }

    /// Messages and bytes waiting.
    pub(crate) fn pending(&self) -> (usize, usize) {
        let q = self.queue.lock();
        (q.len(), self.queued_bytes(&q))
    }

    /// Moves up to `max` pending messages into `out`. `Ok(0)`: nothing yet;
    /// `Err(Closed)`: closed and drained.
    pub(crate) fn try_recv_batch(&self, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        let mut q = self.queue.lock();
        Self::drain(&mut q, out, max)
    }

    fn drain(q: &mut Queue, out: &mut Vec<Message>, max: usize) -> Result<usize> {
        let n = q.len().min(max);
        if n == 0 {
            return match &q.closed {
                Some(reason) if max > 0 => Err(Error::Closed(CloseReason::clone(reason))),
                _ => Ok(0),
            };
        }
        out.reserve(n);
        let freed = q.take_front(n, |message| out.push(message));
        q.room_bytes += freed as isize;
        Ok(n)
    }

    /// Hands up to `max` pending messages to `each`, oldest first, under
    /// the queue's lock (the hub's ready-list drain: no batch vector in
    /// between). Returns how many, and what is left: nothing, more
    /// messages (or a close that found no room: `More` too), or a queue
    /// closed by the hub and now drained, with room left to say so (never
    /// said of one the host released, whose id is gone).
    ///
    /// The connection came off the ready list: unless `More`, its mark is
    /// cleared under the same lock (a push after this drain lists it
    /// again) and the caller must not touch it through the list's pointer
    /// any more; on `More` it stays marked, for the caller to put back.
    pub(crate) fn drain_each(&self, max: usize, each: impl FnMut(Message)) -> (usize, Left) {
        let mut q = self.queue.lock();
        let n = q.len().min(max);
        let freed = q.take_front(n, each);
        q.room_bytes += freed as isize;
        let left = if !q.is_empty() {
            Left::More
        } else {
            match q.closed.as_deref() {
                None | Some(CloseReason::ClosedByHost) => Left::Nothing,
                Some(_) if q.released => Left::Nothing,
                Some(_) if n < max => Left::Closed,
                Some(_) => Left::More,
            }
        };
        if left != Left::More {
            q.listed = false;
        }
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
        let mut q = self.queue.lock();
        loop {
            let n = Self::drain(&mut q, out, max)?;
            if n > 0 || max == 0 {
                return Ok(n);
            }
            self.blocked.fetch_add(1, Ordering::Relaxed);
            let seen = self.wakes.load(Ordering::Relaxed);
            let parked = QueueGuard::unlocked(&mut q, || {
                // SAFETY: the key is `wakes`' address, which outlives the
                // call; the closures neither panic nor park.
                unsafe {
                    parking_lot_core::park(
                        self.wakes_key(),
                        || self.wakes.load(Ordering::Relaxed) == seen,
                        || {},
                        |_, _| {},
                        parking_lot_core::DEFAULT_PARK_TOKEN,
                        deadline,
                    )
                }
            });
            self.blocked.fetch_sub(1, Ordering::Relaxed);
            let timed_out = parked == parking_lot_core::ParkResult::TimedOut;
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
            let mut q = self.queue.lock();
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

    /// A push with the ready fd off, as these tests want.
    fn push(c: &ConnState, m: &Message) -> Push {
        c.push(m, &Ready::default())
    }

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
            push(&c, &msg(10));
        }
        assert_eq!(c.pending(), (3, 30));
    }

    #[test]
    fn drop_newest_refuses_and_keeps_the_queue() {
        let c = conn(2, 1000, SlowConsumer::DropNewest);
        assert!(matches!(push(&c, &msg(1)), Push::Queued { wake: true, .. }));
        assert!(matches!(
            push(&c, &msg(1)),
            Push::Queued { wake: false, .. }
        ));
        assert_eq!(push(&c, &msg(1)), Push::Dropped);
        assert_eq!(c.pending(), (2, 2));
    }

    #[test]
    fn disconnect_closes_but_keeps_what_was_queued() {
        let c = conn(10, 25, SlowConsumer::Disconnect);
        push(&c, &msg(10));
        push(&c, &msg(10));
        assert_eq!(push(&c, &msg(10)), Push::Disconnected);
        assert_eq!(push(&c, &msg(1)), Push::Closed);
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

    impl CountingWaker {
        /// A fresh counter and a waker that counts on it.
        fn pair() -> (Arc<CountingWaker>, std::task::Waker) {
            let counter = Arc::new(CountingWaker(0.into()));
            let waker = std::task::Waker::from(counter.clone());
            (counter, waker)
        }

        fn wakes(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn async_receiver_that_found_the_queue_empty_is_woken_once_by_the_next_push() {
        let c = conn(100, 1000, SlowConsumer::Disconnect);
        let (counter, waker) = CountingWaker::pair();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        push(&c, &msg(1));
        push(&c, &msg(1));
        assert_eq!(counter.wakes(), 1);
        assert_eq!(c.poll_recv_batch(&mut cx, &mut out, 10), Poll::Ready(Ok(2)));
        // Not waiting any more: pushes to the empty queue wake nobody.
        push(&c, &msg(1));
        assert_eq!(counter.wakes(), 1);
        // Waiting again (queue drained first): the next push wakes it.
        assert_eq!(c.poll_recv_batch(&mut cx, &mut out, 10), Poll::Ready(Ok(1)));
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        push(&c, &msg(1));
        assert_eq!(counter.wakes(), 2);
    }

    /// `Hub::wake`: the waiting receiver runs, finds nothing, waits again,
    /// and the next push still wakes it.
    #[test]
    fn a_wake_without_a_message_leaves_the_receiver_waiting() {
        let c = conn(100, 1000, SlowConsumer::Disconnect);
        let (counter, waker) = CountingWaker::pair();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        c.wake_task();
        assert_eq!(counter.wakes(), 1);
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        push(&c, &msg(1));
        assert_eq!(counter.wakes(), 2);
        assert_eq!(c.poll_recv_batch(&mut cx, &mut out, 10), Poll::Ready(Ok(1)));
    }

    #[test]
    fn closing_wakes_a_waiting_async_receiver() {
        let c = conn(100, 1000, SlowConsumer::Disconnect);
        let (counter, waker) = CountingWaker::pair();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(c.poll_recv_batch(&mut cx, &mut out, 10).is_pending());
        assert!(c.close(CloseReason::ClosedByHost));
        assert_eq!(counter.wakes(), 1);
    }

    #[test]
    fn a_burst_grows_the_slots_but_never_past_the_message_bound() {
        let c = conn(10, 1 << 20, SlowConsumer::DropNewest);
        for _ in 0..10 {
            assert!(matches!(push(&c, &msg(1)), Push::Queued { .. }));
        }
        assert_eq!(push(&c, &msg(1)), Push::Dropped);
        let q = c.queue.lock();
        assert_eq!(q.len(), 10);
        // 4 first slots, then 15 more would pass the bound: 6 it is.
        assert_eq!(q.capacity(), 10);
    }

    #[test]
    fn a_group_set_keeps_one_name_inline_and_more_in_a_set() {
        let mut g = GroupSet::default();
        assert!(!g.contains("a"));
        g.insert("a".into());
        g.insert("a".into());
        assert!(matches!(g, GroupSet::One(_)) && g.contains("a") && !g.contains("b"));
        g.remove("b");
        assert!(g.contains("a"));
        g.insert("b".into());
        g.insert("c".into());
        assert!(["a", "b", "c"].iter().all(|n| g.contains(n)));
        g.remove("b");
        assert!(!g.contains("b") && g.contains("c"));
        let mut all = g.take_all();
        all.sort();
        assert_eq!(all, [Arc::from("a"), Arc::from("c")]);
        assert!(matches!(g, GroupSet::Empty));
        g.insert("d".into());
        g.remove("d");
        assert!(matches!(g, GroupSet::Empty) && g.take_all().is_empty());
        assert_eq!(std::mem::size_of::<GroupSet>(), 24);
    }

    #[test]
    fn a_push_touches_two_cache_lines_and_an_idle_queue_has_no_buffer() {
        let c = conn(100, 1000, SlowConsumer::Disconnect);
        assert_eq!(std::mem::align_of::<ConnState>(), 64);
        assert_eq!(std::mem::size_of::<ConnState>(), 256);
        let q = c.queue.lock();
        let start = &c as *const ConnState as usize;
        let end = |p: usize, size: usize| p + size - start;
        // The lock, the bound, the room and the buffer's header: one line.
        for at in [
            end(&q.closed as *const _ as usize, 8),
            end(&q.room_bytes as *const _ as usize, 8),
            end(&q.first_len as *const _ as usize, 1),
            end(&q.rest as *const _ as usize, std::mem::size_of_val(&q.rest)),
        ] {
            assert!(at <= 64, "{at} bytes in");
        }
        // The first slots and the waiting flags: the next one.
        for at in [
            end(
                &q.first as *const _ as usize,
                std::mem::size_of_val(&q.first),
            ),
            end(&c.blocked as *const _ as usize, 4),
            end(&c.task_waiting as *const _ as usize, 1),
        ] {
            assert!(at > 64 && at <= 128, "{at} bytes in");
        }
        assert_eq!(q.rest.capacity(), 0);
    }

    #[test]
    fn messages_leave_in_order_across_the_first_slots_and_the_rest() {
        let c = conn(1000, 1 << 20, SlowConsumer::DropNewest);
        let mut next = 0u8;
        let mut expected = 0u8;
        let mut out = Vec::new();
        // Pushes and receives interleaved so that the oldest sit in either
        // place and the first slots wrap around.
        for round in 0..40usize {
            for _ in 0..(round % 7 + 1) {
                let m = Message::new(Kind::Binary, Bytes::from(vec![next]), None, 0, 0);
                push(&c, &m);
                next = next.wrapping_add(1);
            }
            out.clear();
            c.try_recv_batch(&mut out, round % 5 + 1).unwrap();
            for m in &out {
                assert_eq!(m.data()[0], expected);
                expected = expected.wrapping_add(1);
            }
        }
        out.clear();
        c.try_recv_batch(&mut out, usize::MAX).unwrap();
        for m in &out {
            assert_eq!(m.data()[0], expected);
            expected = expected.wrapping_add(1);
        }
        assert_eq!(expected, next);
        assert_eq!(c.pending(), (0, 0));
    }

    #[test]
    fn an_oversized_message_fits_an_empty_queue_and_is_counted_exactly() {
        let c = conn(10, 25, SlowConsumer::DropNewest);
        assert!(matches!(
            push(&c, &msg(40)),
            Push::Queued { wake: true, .. }
        ));
        assert_eq!(push(&c, &msg(1)), Push::Dropped);
        assert_eq!(c.pending(), (1, 40));
        let mut out = Vec::new();
        assert_eq!(c.try_recv_batch(&mut out, 10), Ok(1));
        assert_eq!(c.pending(), (0, 0));
        // The bound is whole again: 25 bytes, not 25 + 40.
        assert!(matches!(push(&c, &msg(20)), Push::Queued { .. }));
        assert_eq!(push(&c, &msg(6)), Push::Dropped);
        assert!(matches!(push(&c, &msg(5)), Push::Queued { .. }));
        assert_eq!(c.pending(), (2, 25));
    }

    /// Blocking receivers on other threads, pushes and async-free wake-ups
    /// racing: every message arrives once, in order for each receiver's
    /// share, and no receiver sleeps through a push (a lost wake-up would
    /// show as a 10 s timeout, `Err(Empty)`, before the total is reached).
    #[test]
    fn blocking_receivers_racing_pushes_get_every_message_once() {
        const MESSAGES: u64 = 20_000;
        const RECEIVERS: usize = 2;
        let c = Arc::new(conn(1 << 20, 1 << 30, SlowConsumer::DropNewest));
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|_| {
                let (c, received) = (c.clone(), received.clone());
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    let mut last = None;
                    let mut got = 0u64;
                    while received.load(std::sync::atomic::Ordering::SeqCst) < MESSAGES {
                        out.clear();
                        match c.recv_batch_timeout(&mut out, 7, Some(Duration::from_secs(10))) {
                            Ok(n) => {
                                for m in &out {
                                    let v = u64::from_le_bytes(m.data()[..8].try_into().unwrap());
                                    assert!(last.map_or(true, |l| v > l), "{v} after {last:?}");
                                    last = Some(v);
                                }
                                got += n as u64;
                                received.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                            }
                            // The other receiver took the last ones (and the
                            // queue was closed after them).
                            Err(Error::Empty | Error::Closed(_)) => {
                                assert_eq!(
                                    received.load(std::sync::atomic::Ordering::SeqCst),
                                    MESSAGES,
                                    "a receiver slept through a push"
                                );
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    got
                })
            })
            .collect();
        let ready = Ready::default();
        for i in 0..MESSAGES {
            let m = Message::new(
                Kind::Binary,
                Bytes::from(i.to_le_bytes().to_vec()),
                None,
                0,
                0,
            );
            assert!(matches!(c.push(&m, &ready), Push::Queued { .. }));
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
        // The last receiver still blocked wakes by its timeout: close, so
        // it is told at once.
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(std::sync::atomic::Ordering::SeqCst) < MESSAGES
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        c.close(CloseReason::ClosedByHost);
        let total: u64 = receivers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, MESSAGES);
        assert_eq!(c.pending(), (0, 0));
    }

    #[test]
    fn blocking_recv_times_out_with_empty() {
        let c = conn(10, 100, SlowConsumer::Disconnect);
        let mut out = Vec::new();
        let r = c.recv_batch_timeout(&mut out, 1, Some(Duration::from_millis(10)));
        assert_eq!(r, Err(Error::Empty));
    }
}
