//! The hub's readiness fd: one eventfd that is readable while some
//! connection has messages pending or was closed, so a C or Python host can
//! drive every connection from one epoll/poll/asyncio reader.
//!
//! Edge-triggered per connection: a connection is listed when its queue goes
//! from empty to non-empty (or it closes). After `take`, drain it until it
//! reports empty; it will be listed again on its next message.
//!
//! Listing is in two steps. The push that finds the queue empty marks the
//! connection under the queue's lock, which it holds anyway (the queue's
//! `listed` flag: set at most once until the connection comes off the
//! list); the pusher then appends what it marked. A fan-out appends every
//! member it marked under one lock of the list after its loop, and
//! signals the fd at most once a send.
//!
//! The list holds plain pointers to the connections ([`Listed`]), not
//! counted references: listing costs no atomic instruction, and taking a
//! connection off none. What keeps a listed connection alive:
//!
//! - the hub's map of connections holds a reference until the host
//!   releases the id ([`crate::Hub::close`]), and the pointer exists only
//!   while the connection is marked (every mark is made under the queue's
//!   lock, by a thread that holds a reference at that moment);
//! - releasing an id marks the queue released under its lock, after which
//!   nothing marks it again; if it is marked then, the hub's reference goes
//!   to this list's `retired`, which drops it once the mark is cleared;
//! - whoever clears a mark (a drain, [`Ready::take`]) does so as its last
//!   use of the pointer, under the queue's lock. A drain that leaves the
//!   connection marked (no room for all it holds) puts it back.
//!
//! The fd costs nothing until a host first asks for it. At that moment every
//! connection that already holds messages (or was closed by the hub) is
//! listed and the fd signalled, as epoll reports an fd that is ready when it
//! is added: a host that opens connections before it sets up its event loop
//! misses nothing.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::conn::{ConnId, ConnState, Left};
use crate::error::{Error, Result};
use crate::message::Message;

/// Connections a receive from the ready list takes off it at a time: the
/// list's lock is not held while their queues are drained.
const RECV_CHUNK: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct Ready {
    /// Off until a host asks for the fd: Rust hosts that use the async
    /// receive pay nothing for it.
    enabled: AtomicBool,
    fd: OnceLock<OwnedFd>,
    /// Serialises the fd's creation, so the connections that were ready
    /// before it existed are listed once, before any caller gets the fd.
    creating: Mutex<()>,
    /// Connections to look at, in the order they became ready.
    list: Mutex<VecDeque<Listed>>,
    /// The hub's references to released connections that were still
    /// marked when released (see the module doc).
    retired: Mutex<Vec<Arc<ConnState>>>,
}

/// A connection on the ready list, or marked for it: a pointer without a
/// reference count, valid while the connection is marked (see the module
/// doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listed(NonNull<ConnState>);

// SAFETY: a `Listed` is only dereferenced while the connection is marked,
// which keeps it alive (module doc); `ConnState` is `Sync`.
unsafe impl Send for Listed {}
// SAFETY: as above.
unsafe impl Sync for Listed {}

impl Listed {
    /// The pointer to a connection the caller marked.
    #[inline(always)]
    pub(crate) fn new(conn: &Arc<ConnState>) -> Listed {
        Listed(NonNull::from(&**conn))
    }

    /// # Safety
    ///
    /// The connection must still be marked (`Queue::listed`): only the
    /// taker of a pointer off the list clears the mark, as its last use.
    #[inline(always)]
    unsafe fn get<'a>(self) -> &'a ConnState {
        // SAFETY: the caller's promise; marked connections are alive.
        unsafe { self.0.as_ref() }
    }
}

impl Ready {
    /// The eventfd, created on first use. On creation every connection
    /// `existing()` returns that has messages queued or was closed is listed
    /// (and the fd signalled) before the fd is handed out.
    pub(crate) fn fd(&self, existing: impl FnOnce() -> Vec<Arc<ConnState>>) -> Result<RawFd> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd.as_raw_fd());
        }
        let _creating = self.creating.lock();
        if let Some(fd) = self.fd.get() {
            return Ok(fd.as_raw_fd());
        }
        // SAFETY: eventfd has no memory-safety preconditions.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(Error::InvalidArgument(format!(
                "eventfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `raw` is a fresh fd that we own.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let fd = self.fd.get_or_init(|| owned).as_raw_fd();
        // Enabled before the scan: a push from here on reads it under its
        // queue's lock, after the scan's look at that queue or before it
        // (the lock orders them), and marks the connection itself; one
        // queued earlier is seen by the scan. The queue's `listed` flag
        // keeps a connection seen by both from being listed twice.
        self.enabled.store(true, Ordering::SeqCst);
        for conn in existing() {
            if conn.mark_if_pending(self) {
                self.list(&conn);
            }
        }
        Ok(fd)
    }

    /// True once a host asked for the fd: pushes then mark connections
    /// for the list. Read under a queue's lock.
    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Appends a connection a push or a close marked (see
    /// `ConnState::mark_if_pending`), and signals the fd when the list was
    /// empty.
    pub(crate) fn list(&self, conn: &Arc<ConnState>) {
        let mut list = self.list.lock();
        let was_empty = list.is_empty();
        list.push_back(Listed::new(conn));
        if was_empty {
            self.signal();
        }
    }

    /// Appends every connection a fan-out marked, in its order, under one
    /// lock, and signals the fd at most once; leaves `conns` empty.
    pub(crate) fn list_all(&self, conns: &mut Vec<Listed>) {
        if conns.is_empty() {
            return;
        }
        let mut list = self.list.lock();
        let was_empty = list.is_empty();
        list.extend(conns.drain(..));
        if was_empty {
            self.signal();
        }
    }

    /// Makes the fd readable (the list went from empty to not), under the
    /// list's lock.
    fn signal(&self) {
        if let Some(fd) = self.fd.get() {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Resets the fd (the list is empty), under the list's lock.
    fn reset(&self) {
        if let Some(fd) = self.fd.get() {
            let mut buf: u64 = 0;
            // SAFETY: reads 8 bytes into a valid u64 from our
            // non-blocking eventfd; EAGAIN is fine.
            unsafe { libc::read(fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
        }
    }

    /// Moves up to `out.len()` ready connection ids into `out`; resets the
    /// fd once the list is empty.
    pub(crate) fn take(&self, out: &mut [ConnId]) -> usize {
        let taken: Vec<Listed> = {
            let mut list = self.list.lock();
            let n = list.len().min(out.len());
            let taken = list.drain(..n).collect();
            if list.is_empty() {
                self.reset();
            }
            taken
        };
        // Unmarked before the host drains them (it does once this
        // returns): a push after that drain lists them again.
        for (slot, conn) in out.iter_mut().zip(&taken) {
            // SAFETY: marked until `unlist`, its last use.
            let conn = unsafe { conn.get() };
            *slot = conn.id;
            conn.unlist();
        }
        self.drop_retired();
        taken.len()
    }

    /// Keeps the hub's reference to a released connection that is still
    /// marked (`ConnState::release` said so) until the mark is cleared.
    pub(crate) fn retire(&self, conn: Arc<ConnState>) {
        self.retired.lock().push(conn);
    }

    /// Drops the retired references whose connection is no longer marked
    /// (nothing can mark a released one again).
    fn drop_retired(&self) {
        let mut retired = self.retired.lock();
        if !retired.is_empty() {
            retired.retain(|conn| conn.is_listed());
        }
    }

    /// Receives from the ready connections in the order they became ready:
    /// hands up to `max` of their messages to `each` as `(id,
    /// Some(message))`, and `(id, None)` for a connection the hub closed
    /// once everything queued on it has been handed out. A connection
    /// comes off the list once drained; one the call had no room for stays
    /// first in line, so the next call goes on where this one stopped.
    /// `open(id)` says whether a closed connection's id is still the
    /// host's (one it released is skipped). Returns how many it handed
    /// out; resets the fd once the list is empty.
    pub(crate) fn recv(
        &self,
        max: usize,
        open: impl Fn(ConnId) -> bool,
        mut each: impl FnMut(ConnId, Option<Message>),
    ) -> usize {
        let mut n = 0;
        let mut chunk: Vec<Listed> = Vec::new();
        while n < max {
            {
                let mut list = self.list.lock();
                let k = list.len().min(max - n).min(RECV_CHUNK);
                if k == 0 {
                    break;
                }
                // Plain copies (`Listed` is a pointer), then the range
                // dropped, which has nothing to drop.
                let (front, back) = list.as_slices();
                let from_front = k.min(front.len());
                chunk.clear();
                chunk.extend_from_slice(&front[..from_front]);
                chunk.extend_from_slice(&back[..k - from_front]);
                list.drain(..k);
                if list.is_empty() {
                    self.reset();
                }
            }
            for (i, &listed) in chunk.iter().enumerate() {
                // SAFETY: marked until `drain_each` clears the mark, its
                // last use unless it leaves the mark (then it goes back).
                let conn = unsafe { listed.get() };
                let id = conn.id;
                // Unmarked under the queue's lock unless `More`: a message
                // pushed after the drain lists it again.
                let (got, left) = conn.drain_each(max - n, |m| each(id, Some(m)));
                n += got;
                match left {
                    Left::Nothing => {}
                    Left::Closed => {
                        // `drain_each` left room for this entry.
                        if open(id) {
                            each(id, None);
                            n += 1;
                        }
                    }
                    Left::More => {
                        // Out of room: this one (still marked) and the
                        // rest of the chunk go back first in line, in
                        // their order.
                        self.put_back(&chunk[i..]);
                        return self.done(n);
                    }
                }
            }
        }
        self.done(n)
    }

    /// The end of a receive: retired references whose mark is gone go.
    fn done(&self, n: usize) -> usize {
        self.drop_retired();
        n
    }

    /// Puts the connection a receive had no room for and those it did not
    /// reach (`conns`, all still marked) back at the head of the list, in
    /// their order.
    fn put_back(&self, conns: &[Listed]) {
        let mut list = self.list.lock();
        let was_empty = list.is_empty();
        for &conn in conns.iter().rev() {
            list.push_front(conn);
        }
        if was_empty && !conns.is_empty() {
            self.signal();
        }
    }
}
