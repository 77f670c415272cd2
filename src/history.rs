//! A group's history: a window of the newest saved messages, addressed by
//! offset, bounded by count, bytes and age, evicting the oldest first.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use crate::message::Message;

/// Bounds applied to every group's history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
    pub(crate) ttl_ms: u64,
}

/// A fresh random epoch: differs from every earlier one with overwhelming
/// probability, so a client's stale (offset, epoch) pair is recognised.
pub(crate) fn new_epoch() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(crate::clock::Clock::now_ms(&crate::clock::SystemClock));
    // Never 0, so 0 can mean "no epoch" to callers.
    h.finish() | 1
}

/// One group's saved messages, ascending by offset. Offsets are contiguous
/// except where a durable store skipped some after an unclean restart
/// (offsets handed out but never committed are not reused), so an offset
/// is found by subtraction when that lands on it, else by binary search.
#[derive(Debug)]
pub(crate) struct History {
    entries: VecDeque<Message>,
    bytes: usize,
    /// The offset the next saved message gets (offsets start at 1 and are
    /// never reused, even across flushes, nor across restarts with a
    /// durable store).
    next_offset: u64,
    pub(crate) epoch: u64,
    /// With a durable store: the group's offset reservation (see
    /// `crate::store`); `None` in memory.
    pub(crate) durable: Option<crate::store::Reservation>,
}

/// What a read of one group's history returns.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The group's name.
    pub group: String,
    /// Changes whenever the history is flushed or lost.
    pub epoch: u64,
    /// Offset of the oldest message still kept, 0 when none is kept.
    pub first_offset: u64,
    /// Offset of the newest message ever saved, 0 when none was.
    pub last_offset: u64,
    /// The messages asked for, oldest first.
    pub messages: Vec<Message>,
}

/// Which part of a history to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryQuery {
    /// Only messages with an offset greater than this.
    pub since: u64,
    /// Only messages with an offset smaller than this (0 = no bound).
    pub before: u64,
    /// At most this many, the newest ones (0 = all).
    pub limit: usize,
}

impl History {
    pub(crate) fn new() -> History {
        History {
            entries: VecDeque::new(),
            bytes: 0,
            next_offset: 1,
            epoch: new_epoch(),
            durable: None,
        }
    }

    /// A history read back from a durable store: `entries` ascending by
    /// offset, all below `next_offset`.
    pub(crate) fn restored(
        entries: VecDeque<Message>,
        next_offset: u64,
        epoch: u64,
        durable: crate::store::Reservation,
    ) -> History {
        History {
            bytes: entries.iter().map(Message::len).sum(),
            entries,
            next_offset,
            epoch,
            durable: Some(durable),
        }
    }

    /// The offset the next saved message gets.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when it has never saved anything (the group can be forgotten
    /// without breaking offset monotonicity).
    pub(crate) fn never_used(&self) -> bool {
        self.next_offset == 1
    }

    /// Appends a message built with offset `next_offset()`, then evicts.
    pub(crate) fn push(&mut self, message: Message, bounds: Bounds, now_ms: u64) {
        debug_assert_eq!(message.offset(), self.next_offset);
        self.next_offset += 1;
        self.bytes += message.len();
        self.entries.push_back(message);
        self.evict(bounds, now_ms);
    }

    /// Where the next send starts counting after offsets were skipped (a
    /// durable store's reservation after an unclean restart).
    pub(crate) fn skip_to(&mut self, next_offset: u64) {
        self.next_offset = self.next_offset.max(next_offset);
    }

    /// Drops the oldest entries until every bound holds. Never drops the
    /// newest entry for size alone, so one large message is still kept.
    pub(crate) fn evict(&mut self, bounds: Bounds, now_ms: u64) -> usize {
        let mut evicted = 0;
        while let Some(oldest) = self.entries.front() {
            let over_count = bounds.max_messages > 0 && self.entries.len() > bounds.max_messages;
            let over_bytes =
                bounds.max_bytes > 0 && self.bytes > bounds.max_bytes && self.entries.len() > 1;
            let too_old =
                bounds.ttl_ms > 0 && now_ms.saturating_sub(oldest.ts_ms()) >= bounds.ttl_ms;
            if !(over_count || over_bytes || too_old) {
                break;
            }
            self.bytes -= oldest.len();
            self.entries.pop_front();
            evicted += 1;
        }
        evicted
    }

    pub(crate) fn first_offset(&self) -> u64 {
        self.entries.front().map_or(0, Message::offset)
    }

    fn index_of(&self, offset: u64) -> Option<usize> {
        let first = self.entries.front()?.offset();
        let i = usize::try_from(offset.checked_sub(first)?).ok()?;
        match self.entries.get(i) {
            Some(m) if m.offset() == offset => Some(i),
            // A gap before `offset` (or past the end): search.
            _ => self
                .entries
                .binary_search_by_key(&offset, Message::offset)
                .ok(),
        }
    }

    /// The number of entries with an offset below `offset`.
    fn count_below(&self, offset: u64) -> usize {
        self.entries.partition_point(|m| m.offset() < offset)
    }

    /// The entry saved at `offset`, if still kept.
    pub(crate) fn get(&self, offset: u64) -> Option<&Message> {
        self.index_of(offset).map(|i| &self.entries[i])
    }

    /// Replaces the entry at `offset` with a message that carries the same
    /// offset, then evicts as a push does: a replacement that grew the
    /// history past its byte bound drops the oldest entries (possibly the
    /// replaced one itself when it is the oldest). False when no such
    /// entry is kept.
    pub(crate) fn replace(
        &mut self,
        offset: u64,
        message: Message,
        bounds: Bounds,
        now_ms: u64,
    ) -> bool {
        let Some(i) = self.index_of(offset) else {
            return false;
        };
        self.bytes = self.bytes - self.entries[i].len() + message.len();
        self.entries[i] = message;
        self.evict(bounds, now_ms);
        true
    }

    /// Forgets every entry and starts a new epoch.
    pub(crate) fn flush(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.epoch = new_epoch();
    }

    /// Reads the newest `limit` entries in `(since, before)`, oldest first.
    pub(crate) fn read(&self, group: &str, q: HistoryQuery) -> HistoryPage {
        let first = self.first_offset();
        let len = self.entries.len() as u64;
        let (mut lo, mut hi) = (0u64, len);
        if len > 0 {
            lo = self.count_below(q.since.saturating_add(1)) as u64;
            if q.before > 0 {
                hi = self.count_below(q.before) as u64;
            }
        }
        if hi < lo {
            hi = lo;
        }
        if q.limit > 0 && hi - lo > q.limit as u64 {
            lo = hi - q.limit as u64;
        }
        HistoryPage {
            group: group.to_owned(),
            epoch: self.epoch,
            first_offset: first,
            last_offset: self.next_offset - 1,
            messages: self
                .entries
                .range(lo as usize..hi as usize)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Kind;
    use bytes::Bytes;

    const NO_BOUNDS: Bounds = Bounds {
        max_messages: 0,
        max_bytes: 0,
        ttl_ms: 0,
    };

    fn fill(h: &mut History, n: usize, size: usize, bounds: Bounds, ts: u64) {
        for _ in 0..n {
            let m = Message::new(
                Kind::Binary,
                Bytes::from(vec![1u8; size]),
                None,
                h.next_offset(),
                ts,
            );
            h.push(m, bounds, ts);
        }
    }

    fn offsets(p: &HistoryPage) -> Vec<u64> {
        p.messages.iter().map(Message::offset).collect()
    }

    #[test]
    fn read_windows() {
        let mut h = History::new();
        fill(&mut h, 10, 1, NO_BOUNDS, 0);
        let q = |since, before, limit| HistoryQuery {
            since,
            before,
            limit,
        };
        assert_eq!(
            offsets(&h.read("g", q(0, 0, 0))),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(offsets(&h.read("g", q(0, 0, 3))), vec![8, 9, 10]);
        assert_eq!(offsets(&h.read("g", q(7, 0, 0))), vec![8, 9, 10]);
        assert_eq!(offsets(&h.read("g", q(0, 5, 2))), vec![3, 4]);
        assert_eq!(offsets(&h.read("g", q(10, 0, 0))), Vec::<u64>::new());
        assert_eq!(offsets(&h.read("g", q(0, 1, 0))), Vec::<u64>::new());
        assert_eq!(
            offsets(&h.read("g", q(u64::MAX, u64::MAX, 0))),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn byte_bound_evicts_oldest_only() {
        let mut h = History::new();
        let b = Bounds {
            max_bytes: 100,
            ..NO_BOUNDS
        };
        fill(&mut h, 25, 10, b, 0);
        let p = h.read("g", HistoryQuery::default());
        assert_eq!(offsets(&p), (16..=25).collect::<Vec<_>>());
        assert_eq!((p.first_offset, p.last_offset), (16, 25));
        assert_eq!(h.bytes(), 100);
    }

    #[test]
    fn a_replacement_that_grows_past_the_byte_bound_evicts_the_oldest() {
        let mut h = History::new();
        let b = Bounds {
            max_bytes: 100,
            ..NO_BOUNDS
        };
        fill(&mut h, 10, 10, b, 0);
        assert_eq!(h.bytes(), 100);
        // Offset 9 grows from 10 to 45 bytes: 35 too many, so the four
        // oldest (10 bytes each) go, as a send of 35 bytes would do.
        let big = Message::new(Kind::Binary, Bytes::from(vec![2u8; 45]), None, 9, 0);
        assert!(h.replace(9, big, b, 0));
        let p = h.read("g", HistoryQuery::default());
        assert_eq!(offsets(&p), (5..=10).collect::<Vec<_>>());
        assert!(h.bytes() <= 100, "{} bytes kept", h.bytes());
        assert_eq!(h.get(9).map(Message::len), Some(45));
        // A replacement of an entry no longer kept changes nothing.
        let gone = Message::new(Kind::Binary, Bytes::from(vec![3u8; 500]), None, 1, 0);
        assert!(!h.replace(1, gone, b, 0));
        assert_eq!(
            offsets(&h.read("g", HistoryQuery::default())),
            (5..=10).collect::<Vec<_>>()
        );
    }
}
