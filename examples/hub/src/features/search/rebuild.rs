//! The memory index of a hub that runs alone, rebuilt from the core's
//! history: the index is derived data, history is what is kept (on disk
//! when the core keeps it there), so a restarted hub finds what was said
//! before it stopped.
//!
//! [`from_history`] walks every room's history oldest first, merged across
//! rooms by send time, so document order (what "newest first" follows) is
//! the order the messages were sent in. [`Local`] wraps the index while the
//! rebuild runs: index changes that arrive meanwhile wait in a bounded list
//! and are applied after it; searches wait for it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use channelbox::{HistoryQuery, Hub, Message};
use parking_lot::Mutex;
use serde::Deserialize;

use super::{MemoryIndex, Op};

/// Messages read from one room's history at a time.
const PAGE: u64 = 512;
/// Up to this many saved messages, the rebuild runs at once on the caller's
/// thread (a fresh hub, the tests); above, on a thread of its own.
const INLINE_REBUILD_MAX: u64 = 20_000;
/// Index changes kept while the rebuild runs; more are dropped and counted
/// (at 1 M messages the rebuild takes seconds, see BENCHMARKS.md).
const PENDING_MAX: usize = 262_144;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Rooms whose history held messages.
    pub rooms: usize,
    /// Chat messages indexed (tombstones and notices are not).
    pub messages: usize,
    /// How long it took.
    pub took: Duration,
}

/// The fields of a saved frame the index reads.
#[derive(Deserialize)]
struct Saved<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<&'a str>,
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    deleted: Option<bool>,
}

/// One room's history being walked.
struct Cursor {
    /// The core group (`room:<id>`).
    group: String,
    /// The room id the index keys by.
    room: String,
    /// Read but not yet merged, oldest first.
    buffered: VecDeque<Message>,
    /// The highest offset read so far.
    read_up_to: u64,
    /// The group's last offset when the walk began: later messages are
    /// indexed as they are sent.
    last: u64,
}

impl Cursor {
    /// The next message of this room, reading a page when needed.
    fn peek(&mut self, hub: &Hub) -> Option<&Message> {
        while self.buffered.is_empty() && self.read_up_to < self.last {
            let query = HistoryQuery {
                since: self.read_up_to,
                before: self.read_up_to.saturating_add(PAGE + 1).min(self.last + 1),
                limit: 0,
            };
            let page = hub.history(&self.group, query).ok()?;
            self.read_up_to = query.before - 1;
            if page.first_offset == 0 {
                // Flushed meanwhile: nothing left to read.
                self.read_up_to = self.last;
            } else if page.first_offset > self.read_up_to + 1 {
                // Evicted meanwhile: jump to what is kept.
                self.read_up_to = page.first_offset - 1;
            }
            self.buffered.extend(page.messages);
        }
        self.buffered.front()
    }
}

/// Fills `index` from every room's history in `hub`, oldest first across
/// rooms by send time. Groups other than rooms (`room:<id>`) are skipped.
pub fn from_history(hub: &Hub, index: &MemoryIndex) -> Rebuilt {
    let started = Instant::now();
    let bounds = hub.history_all(HistoryQuery {
        since: u64::MAX,
        ..HistoryQuery::default()
    });
    let mut cursors: Vec<Cursor> = bounds
        .into_iter()
        .filter_map(|(group, page)| {
            let room = group.strip_prefix("room:")?.to_owned();
            (page.first_offset > 0).then(|| Cursor {
                room,
                buffered: VecDeque::new(),
                read_up_to: page.first_offset - 1,
                last: page.last_offset,
                group,
            })
        })
        .collect();
    let rooms = cursors.len();
    // (send time, offset, cursor): the oldest message of every room.
    let mut heads: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        if let Some(m) = c.peek(hub) {
            heads.push(Reverse((m.ts_ms(), m.offset(), i)));
        }
    }
    let mut messages = 0;
    while let Some(Reverse((_, _, i))) = heads.pop() {
        let c = &mut cursors[i];
        let Some(m) = c.buffered.pop_front() else {
            continue;
        };
        if let Ok(saved) = serde_json::from_slice::<Saved>(m.data()) {
            if let (Some("message"), Some(content), None | Some(false)) =
                (saved.ty, saved.content, saved.deleted)
            {
                index.insert(&c.room, m.offset(), &content);
                messages += 1;
            }
        }
        if let Some(next) = c.peek(hub) {
            heads.push(Reverse((next.ts_ms(), next.offset(), i)));
        }
    }
    Rebuilt {
        rooms,
        messages,
        took: started.elapsed(),
    }
}

/// Messages the core's history holds in rooms, from its bounds alone.
fn saved_in_rooms(hub: &Hub) -> u64 {
    let bounds = hub.history_all(HistoryQuery {
        since: u64::MAX,
        ..HistoryQuery::default()
    });
    bounds
        .iter()
        .filter(|(group, page)| group.starts_with("room:") && page.first_offset > 0)
        .map(|(_, page)| page.last_offset + 1 - page.first_offset)
        .sum()
}

/// The memory index of a hub that runs alone, and its rebuild.
pub struct Local {
    /// The index itself.
    pub index: MemoryIndex,
    /// True once the rebuild is done and `pending` applied.
    ready: AtomicBool,
    /// Changes that arrived during the rebuild, applied after it.
    pending: Mutex<Vec<Op>>,
    /// Changes dropped because `pending` was full.
    dropped: AtomicU64,
    /// Tells waiting searches the rebuild is done.
    built: tokio::sync::watch::Sender<bool>,
}

impl Local {
    /// An index rebuilt from `hub`'s history: at once when history is
    /// small, else on a thread of its own (the index answers once it is
    /// done).
    pub fn start(hub: Hub) -> Arc<Local> {
        let local = Arc::new(Local {
            index: MemoryIndex::new(),
            ready: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            built: tokio::sync::watch::Sender::new(false),
        });
        let saved = saved_in_rooms(&hub);
        if saved <= INLINE_REBUILD_MAX {
            local.rebuild(&hub);
            return local;
        }
        let building = local.clone();
        let spawned = std::thread::Builder::new()
            .name("search-rebuild".into())
            .spawn(move || building.rebuild(&hub));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "search: cannot start the rebuild thread; the index starts empty");
            local.finish();
        }
        local
    }

    fn rebuild(&self, hub: &Hub) {
        let done = from_history(hub, &self.index);
        tracing::info!(
            rooms = done.rooms,
            messages = done.messages,
            ms = done.took.as_millis() as u64,
            "search index rebuilt from history"
        );
        self.finish();
    }

    /// Applies what waited, then lets changes and searches through.
    fn finish(&self) {
        let mut pending = self.pending.lock();
        for op in std::mem::take(&mut *pending) {
            self.apply_now(op);
        }
        self.ready.store(true, Ordering::Release);
        drop(pending);
        self.built.send_replace(true);
    }

    /// Applies `op`, or keeps it for after the rebuild. True when an
    /// insert made the room due an eviction check.
    pub fn apply(&self, op: Op) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            let mut pending = self.pending.lock();
            if !self.ready.load(Ordering::Acquire) {
                if pending.len() < PENDING_MAX || matches!(op, Op::Barrier(_)) {
                    pending.push(op);
                } else {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return false;
            }
        }
        self.apply_now(op)
    }

    /// Indexes a new message at once when the rebuild is done (`None`
    /// before: the caller then queues it as an [`Op`]).
    pub fn insert_now(&self, room: &str, id: u64, content: &str) -> Option<bool> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        Some(self.index.insert(room, id, content))
    }

    fn apply_now(&self, op: Op) -> bool {
        match op {
            Op::Insert {
                room, id, words, ..
            } => self.index.insert_words(&room, id, &words),
            Op::Update { room, id, old, new } => {
                self.index.update_words(&room, id, &old, &new);
                false
            }
            Op::Remove { room, id } => {
                self.index.remove(&room, id);
                false
            }
            Op::Evict { room, first_kept } => {
                self.index.evict_before(&room, first_kept);
                false
            }
            Op::Barrier(done) => {
                let _ = done.send(());
                false
            }
        }
    }

    /// Changes dropped because too many arrived during the rebuild.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Resolves once the rebuild is done.
    pub async fn built(&self) {
        let mut built = self.built.subscribe();
        let _ = built.wait_for(|b| *b).await;
    }
}
