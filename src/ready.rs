//! The hub's readiness fd: one eventfd that is readable while some
//! connection has messages pending or was closed, so a C or Python host can
//! drive every connection from one epoll/poll/asyncio reader.
//!
//! Edge-triggered per connection: a connection is listed when its queue goes
//! from empty to non-empty (or it closes). After `take`, drain it until it
//! reports empty; it will be listed again on its next message.
//!
//! The fd costs nothing until a host first asks for it. At that moment every
//! connection that already holds messages (or was closed by the hub) is
//! listed and the fd signalled, as epoll reports an fd that is ready when it
//! is added: a host that opens connections before it sets up its event loop
//! misses nothing.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    list: Mutex<VecDeque<Arc<ConnState>>>,
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
        // Enabled before the scan: a message queued from here on is listed
        // by its own `notify` (its queue lock orders it after this store),
        // one queued earlier is seen by the scan. `in_ready` keeps a
        // connection seen by both from being listed twice.
        self.enabled.store(true, Ordering::SeqCst);
        for conn in existing() {
            let (messages, _) = conn.pending();
            if messages > 0 || conn.is_closed() {
                self.notify(&conn);
            }
        }
        Ok(fd)
    }

    /// Lists `conn` as ready, once, and signals the fd when the list was
    /// empty. Inlined into the fan-out loop: with no fd asked for it is
    /// one load.
    #[inline(always)]
    pub(crate) fn notify(&self, conn: &Arc<ConnState>) {
        if self.enabled.load(Ordering::Relaxed) {
            self.list_once(conn);
        }
    }

    #[inline(never)]
    fn list_once(&self, conn: &Arc<ConnState>) {
        if conn.in_ready.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut list = self.list.lock();
        let was_empty = list.is_empty();
        list.push_back(conn.clone());
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
        let mut list = self.list.lock();
        let n = list.len().min(out.len());
        for (slot, conn) in out.iter_mut().zip(list.drain(..n)) {
            conn.in_ready.store(false, Ordering::Release);
            *slot = conn.id;
        }
        if list.is_empty() {
            self.reset();
        }
        n
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
        let mut chunk: Vec<Arc<ConnState>> = Vec::new();
        while n < max {
            {
                let mut list = self.list.lock();
                let k = list.len().min(max - n).min(RECV_CHUNK);
                if k == 0 {
                    break;
                }
                chunk.extend(list.drain(..k));
                if list.is_empty() {
                    self.reset();
                }
            }
            let mut conns = chunk.drain(..);
            for conn in conns.by_ref() {
                // Cleared before the queue is looked at: a message pushed
                // after the drain below finds the flag down and lists the
                // connection again.
                conn.in_ready.store(false, Ordering::Release);
                let id = conn.id;
                let (got, left) = conn.drain_each(max - n, |m| each(id, Some(m)));
                n += got;
                let relist = match left {
                    Left::Nothing => false,
                    Left::Closed if !open(id) => false,
                    Left::Closed if n < max => {
                        each(id, None);
                        n += 1;
                        false
                    }
                    Left::Closed | Left::More => true,
                };
                if relist {
                    // Out of room: this one and the rest of the chunk go
                    // back first in line, in their order.
                    self.put_back(conn, conns.by_ref());
                    break;
                }
            }
        }
        n
    }

    /// Puts the connection a receive had no room for (`first`, whose flag
    /// it lowered) and those it did not reach (`rest`, still flagged) back
    /// at the head of the list, in their order. `first` stays where it is
    /// if a push listed it again meanwhile.
    fn put_back(
        &self,
        first: Arc<ConnState>,
        rest: impl DoubleEndedIterator<Item = Arc<ConnState>>,
    ) {
        let mut list = self.list.lock();
        let was_empty = list.is_empty();
        for conn in rest.rev() {
            list.push_front(conn);
        }
        if !first.in_ready.swap(true, Ordering::AcqRel) {
            list.push_front(first);
        }
        if was_empty && !list.is_empty() {
            self.signal();
        }
    }
}
