//! Design (a): the core's per-connection queues, reduced to what a group
//! send and a batch drain touch (`src/conn.rs`'s `try_push`/`push_slow`/
//! `drain`, `src/hub/send.rs`'s `fan_out`): a `parking_lot::Mutex` around a
//! `VecDeque` per member on a cache line of its own, a message bound and a
//! byte bound per member, "was empty" wake detection, and one reference
//! count increment per send for all members (`Shared::reserve`).

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Drained, Fanout, MemberId, Message, ReadyList};

/// Slots a queue gets when its member joins (the core's
/// `QUEUE_SLOTS_AT_OPEN`).
const SLOTS_AT_OPEN: usize = 4;

/// One member's queue and the bounds a push checks, as the core packs them.
#[derive(Debug)]
struct Queue {
    items: VecDeque<Message>,
    /// Payload bytes the queue may still take.
    room_bytes: isize,
    max_messages: usize,
    /// Set when the member leaves or is disconnected (never here; the check
    /// is the core's).
    closed: bool,
}

/// The queue and its lock on a cache line of their own (the core's
/// `QueueLine`), allocated per member like a connection's state.
#[derive(Debug)]
#[repr(align(64))]
struct Member {
    queue: Mutex<Queue>,
}

/// A group whose members each own a bounded queue.
pub struct Queues {
    members: Vec<Arc<Member>>,
}

impl Queues {
    pub fn new(members: usize, max_messages: usize, max_bytes: usize) -> Queues {
        let members = (0..members)
            .map(|_| {
                Arc::new(Member {
                    queue: Mutex::new(Queue {
                        items: VecDeque::with_capacity(SLOTS_AT_OPEN),
                        room_bytes: max_bytes as isize,
                        max_messages,
                        closed: false,
                    }),
                })
            })
            .collect();
        Queues { members }
    }
}

impl Fanout for Queues {
    fn members(&self) -> usize {
        self.members.len()
    }

    /// The core's fan-out: for every member a lock, a bounds check, a slot
    /// and a reserved reference; a member whose queue was empty is listed
    /// ready. Returns the deliveries (a full queue drops the newest).
    fn send(&self, message: &Message, ready: &ReadyList) -> usize {
        let len = message.len() as isize;
        let mut copies = message.reserve(self.members.len());
        let mut delivered = 0;
        let mut listed = None;
        for (id, member) in self.members.iter().enumerate() {
            let mut q = member.queue.lock();
            let n = q.items.len();
            if q.closed || (n > 0 && (n >= q.max_messages || len > q.room_bytes)) {
                continue; // closed, or full: the newest is dropped
            }
            q.items.push_back(copies.take());
            q.room_bytes -= len;
            drop(q);
            delivered += 1;
            if n == 0 {
                listed
                    .get_or_insert_with(|| ready.lock())
                    .push(id as MemberId);
            }
        }
        delivered
    }

    fn drain(&self, member: MemberId, out: &mut Vec<Message>, max: usize) -> Drained {
        let mut q = self.members[member as usize].queue.lock();
        let n = q.items.len().min(max);
        let mut bytes = 0;
        out.extend(q.items.drain(..n).inspect(|m| bytes += m.len() as isize));
        q.room_bytes += bytes;
        Drained::Messages(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message;

    #[test]
    fn a_member_is_listed_ready_once_per_empty_to_pending() {
        let group = Queues::new(3, 16, 1 << 20);
        let ready = ReadyList::default();
        assert_eq!(group.send(&message(b"a"), &ready), 3);
        assert_eq!(group.send(&message(b"b"), &ready), 3);
        assert_eq!(*ready.lock(), vec![0, 1, 2]);
        ready.lock().clear();
        let mut out = Vec::new();
        assert_eq!(group.drain(1, &mut out, 256), Drained::Messages(2));
        assert_eq!(out.iter().map(|m| &m[..]).collect::<Vec<_>>(), [b"a", b"b"]);
        group.send(&message(b"c"), &ready);
        assert_eq!(*ready.lock(), vec![1]);
    }

    #[test]
    fn a_full_queue_drops_the_newest_and_gives_its_reference_back() {
        let group = Queues::new(2, 2, 1 << 20);
        let ready = ReadyList::default();
        let m = message(b"x");
        assert_eq!(group.send(&m, &ready), 2);
        assert_eq!(group.send(&m, &ready), 2);
        assert_eq!(group.send(&m, &ready), 0);
        let mut out = Vec::new();
        assert_eq!(group.drain(0, &mut out, 256), Drained::Messages(2));
        assert_eq!(group.drain(1, &mut out, 1), Drained::Messages(1));
        assert_eq!(group.drain(1, &mut out, 256), Drained::Messages(1));
        assert_eq!(group.drain(1, &mut out, 256), Drained::Messages(0));
    }
}
