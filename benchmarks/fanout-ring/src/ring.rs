//! Design (b): one ring per group. A send writes the message once into the
//! next slot (one lock, one slot, whatever the group's size); each member
//! has a cursor, the sequence number of the next message it reads. A member
//! more than the ring's capacity behind has lost messages: its drain
//! reports [`Drained::Lagged`] and moves its cursor to the oldest message
//! still held (tokio's `broadcast` does the same; a server could disconnect
//! instead, the detection is the same).
//!
//! The reader's reference: [`Handout::Clone`] raises the message's count
//! at each read (tokio's `broadcast` clones the value a `recv`), a locked
//! instruction a delivery again, but on the reader's side.
//! [`Handout::Reserved`] raises it once a send by the group's size, as the
//! core's fan-out does; a read hands one of those out without touching the
//! count, and the slot remembers how many are left, to give back (one
//! decrement) when it is overwritten or the ring dropped.
//!
//! Readiness: a member that drained everything is put on the group's
//! waiting list (under the ring's lock, so no send can slip between its
//! last read and its listing). The next send moves the whole waiting list
//! to the hub's ready list: the first send of a burst still costs one entry
//! per caught-up member, the other sends of the burst cost nothing per
//! member.

use parking_lot::Mutex;

use crate::{Drained, Fanout, MemberId, Message, ReadyList};

/// One member's place in the ring.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Sequence number of the next message it reads.
    next: u64,
    /// The tail when it was put on the waiting list: it is on the list
    /// while that is still the tail (no send since), so it is listed once,
    /// and a send clears every member's mark without touching it.
    listed_at: u64,
}

/// How a reader gets its own reference to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handout {
    /// A count increment a read.
    Clone,
    /// One increment a send for all members; a read takes one.
    Reserved,
}

/// One message in the ring.
#[derive(Debug)]
struct Slot {
    message: Message,
    /// With [`Handout::Reserved`]: references reserved for members that
    /// have not read it yet.
    unread: usize,
}

impl Slot {
    /// Gives back the references nobody took (lagged or departed readers).
    fn release_unread(&mut self) {
        for _ in 0..std::mem::take(&mut self.unread) {
            // SAFETY: `unread` references were reserved for this message
            // in `send` and not handed out.
            drop(unsafe { Message::from_raw(&*self.message) });
        }
    }
}

#[derive(Debug)]
struct State {
    /// `slots[seq % capacity]` holds message `seq` while it is among the
    /// newest `capacity`.
    slots: Box<[Option<Slot>]>,
    /// Sequence number of the next message sent.
    tail: u64,
    cursors: Vec<Cursor>,
    /// Members that drained everything: listed ready by the next send.
    waiting: Vec<MemberId>,
}

/// A group whose messages are written once into a ring.
pub struct Ring {
    state: Mutex<State>,
    /// `capacity - 1`; the capacity is a power of two.
    mask: u64,
    handout: Handout,
}

impl Drop for Ring {
    fn drop(&mut self) {
        for slot in self.state.get_mut().slots.iter_mut().flatten() {
            slot.release_unread();
        }
    }
}

impl Ring {
    /// A ring of `capacity` slots (rounded up to a power of two) for
    /// `members` members, all caught up (so all waiting).
    pub fn new(members: usize, capacity: usize, handout: Handout) -> Ring {
        let capacity = capacity.next_power_of_two();
        Ring {
            state: Mutex::new(State {
                slots: (0..capacity).map(|_| None).collect(),
                tail: 0,
                cursors: vec![
                    Cursor {
                        next: 0,
                        listed_at: 0
                    };
                    members
                ],
                waiting: (0..members as MemberId).collect(),
            }),
            mask: capacity as u64 - 1,
            handout,
        }
    }
}

impl Fanout for Ring {
    fn members(&self) -> usize {
        self.state.lock().cursors.len()
    }

    /// One slot written, the message it replaces released after the lock,
    /// and the waiting members (if any) moved to the ready list. Every
    /// member can read it, so all are counted as deliveries.
    fn send(&self, message: &Message, ready: &ReadyList) -> usize {
        let mut st = self.state.lock();
        let members = st.cursors.len();
        let unread = match self.handout {
            Handout::Clone => 0,
            Handout::Reserved => {
                std::mem::forget(message.reserve(members));
                members
            }
        };
        let slot = (st.tail & self.mask) as usize;
        let old = st.slots[slot].replace(Slot {
            message: message.clone(),
            unread,
        });
        st.tail += 1;
        if !st.waiting.is_empty() {
            let mut ready = ready.lock();
            ready.extend_from_slice(&st.waiting);
            st.waiting.clear();
        }
        drop(st);
        if let Some(mut old) = old {
            old.release_unread();
        }
        members
    }

    /// Hands up to `max` references out (the host gets its own reference,
    /// as the C ABI hands out), from the member's cursor on.
    fn drain(&self, member: MemberId, out: &mut Vec<Message>, max: usize) -> Drained {
        let mut st = self.state.lock();
        let st = &mut *st;
        let tail = st.tail;
        let capacity = self.mask + 1;
        let cursor = &mut st.cursors[member as usize];
        if tail - cursor.next > capacity {
            let missed = tail - capacity - cursor.next;
            cursor.next = tail - capacity;
            return Drained::Lagged(missed);
        }
        let n = (tail - cursor.next).min(max as u64);
        let (slots, mask, handout) = (&mut st.slots, self.mask, self.handout);
        out.extend((cursor.next..cursor.next + n).map(|seq| {
            let slot = slots[(seq & mask) as usize]
                .as_mut()
                .expect("a slot within the ring's capacity behind the tail is written");
            match handout {
                Handout::Clone => slot.message.clone(),
                Handout::Reserved => {
                    slot.unread -= 1;
                    // SAFETY: one of the references `send` reserved for
                    // this message's readers, each of whom reads it once
                    // (the cursor moves past it).
                    unsafe { Message::from_raw(&*slot.message) }
                }
            }
        }));
        cursor.next += n;
        if cursor.next == tail && cursor.listed_at != tail {
            cursor.listed_at = tail;
            st.waiting.push(member);
        }
        Drained::Messages(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn caught_up_members_are_listed_by_the_first_send_only() {
        for handout in [Handout::Clone, Handout::Reserved] {
            let group = Ring::new(3, 8, handout);
            let ready = ReadyList::default();
            group.send(&message(b"a"), &ready);
            group.send(&message(b"b"), &ready);
            assert_eq!(*ready.lock(), vec![0, 1, 2]);
            ready.lock().clear();
            let mut out = Vec::new();
            assert_eq!(group.drain(1, &mut out, 256), Drained::Messages(2));
            assert_eq!(out.iter().map(|m| &m[..]).collect::<Vec<_>>(), [b"a", b"b"]);
            assert_eq!(group.drain(1, &mut out, 256), Drained::Messages(0));
            group.send(&message(b"c"), &ready);
            assert_eq!(*ready.lock(), vec![1]);
        }
    }

    #[test]
    fn a_member_that_stopped_halfway_is_listed_again_once_caught_up() {
        for handout in [Handout::Clone, Handout::Reserved] {
            let group = Ring::new(1, 8, handout);
            let ready = ReadyList::default();
            for _ in 0..3 {
                group.send(&message(b"m"), &ready);
            }
            ready.lock().clear();
            let mut out = Vec::new();
            assert_eq!(group.drain(0, &mut out, 2), Drained::Messages(2));
            group.send(&message(b"m"), &ready);
            assert!(ready.lock().is_empty(), "it was not caught up");
            assert_eq!(group.drain(0, &mut out, 256), Drained::Messages(2));
            group.send(&message(b"m"), &ready);
            assert_eq!(*ready.lock(), vec![0]);
        }
    }

    #[test]
    fn a_member_more_than_the_capacity_behind_is_told_what_it_missed() {
        for handout in [Handout::Clone, Handout::Reserved] {
            let group = Ring::new(2, 4, handout);
            let ready = ReadyList::default();
            for i in 0..10u8 {
                group.send(&message(&[i]), &ready);
            }
            let mut out = Vec::new();
            assert_eq!(group.drain(0, &mut out, 256), Drained::Lagged(6));
            assert_eq!(group.drain(0, &mut out, 256), Drained::Messages(4));
            assert_eq!(out.iter().map(|m| m[0]).collect::<Vec<_>>(), [6, 7, 8, 9]);
        }
    }

    /// Drops count how often the payload was freed.
    struct Tracked(Arc<AtomicUsize>);

    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            b"tracked"
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_reference_goes_back_whether_read_or_not() {
        for handout in [Handout::Clone, Handout::Reserved] {
            let freed = Arc::new(AtomicUsize::new(0));
            let group = Ring::new(2, 2, handout);
            let ready = ReadyList::default();
            for _ in 0..3 {
                let payload = Bytes::from_owner(Tracked(freed.clone()));
                group.send(&Message::new(payload), &ready);
            }
            // The first was overwritten; member 1 never read it.
            assert_eq!(freed.load(Ordering::SeqCst), 1);
            let mut out = Vec::new();
            assert_eq!(group.drain(0, &mut out, 256), Drained::Lagged(1));
            assert_eq!(group.drain(0, &mut out, 256), Drained::Messages(2));
            drop(group);
            assert_eq!(freed.load(Ordering::SeqCst), 1, "member 0 holds two");
            out.clear();
            assert_eq!(freed.load(Ordering::SeqCst), 3);
        }
    }
}
