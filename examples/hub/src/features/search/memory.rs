//! The index of a hub that runs alone: an inverted index from word to the
//! messages that contain it, in this process's memory. It is derived data:
//! `rebuild` fills it from the core's history at start.
//!
//! Every message gets a document number in the order it was indexed; each
//! word's postings are document numbers, ascending, so "newest first" is a
//! walk from the end of the shortest list. Documents of deleted or evicted
//! messages are marked dead and dropped by a compaction that renumbers the
//! live ones once the dead outnumber them.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use super::{split_words, still_matches, words, Hit};

/// How many messages a room takes between two eviction checks.
const EVICTION_CHECK_EVERY: u64 = 256;
/// Dead documents tolerated before a compaction is considered.
const COMPACT_MIN_DEAD: usize = 65_536;
/// Postings a search examines per hold of the read lock: senders update
/// the index between two holds, so a search never stalls them for long.
const SCAN_PER_HOLD: usize = 8_192;

/// One indexed message.
#[derive(Clone, Copy, Debug)]
struct Doc {
    /// Index into `Inner::rooms`.
    room: u32,
    /// The message's history offset in its room.
    id: u64,
    /// False once deleted or evicted; its postings go at the next compaction.
    live: bool,
}

#[derive(Debug)]
struct RoomDocs {
    name: Arc<str>,
    /// (message id, document number), ascending by id: history evicts the
    /// oldest first, so eviction pops from the front.
    docs: VecDeque<(u64, u32)>,
    /// Messages indexed since the room was last checked for eviction.
    since_check: u64,
}

#[derive(Debug, Default)]
struct Inner {
    rooms: Vec<RoomDocs>,
    room_index: FxHashMap<Arc<str>, u32>,
    /// Document number -> message.
    docs: Vec<Doc>,
    dead: usize,
    /// Bumped by every compaction (document numbers change): a search that
    /// let go of the lock resumes only if it did not move.
    generation: u64,
    /// Word -> document numbers, ascending.
    postings: FxHashMap<Box<str>, Vec<u32>>,
}

/// The search index. One lock: updates are a few pushes, queries read.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    inner: RwLock<Inner>,
}

impl Inner {
    fn room(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.room_index.get(name) {
            return i;
        }
        let name: Arc<str> = name.into();
        let i = self.rooms.len() as u32;
        self.rooms.push(RoomDocs {
            name: name.clone(),
            docs: VecDeque::new(),
            since_check: 0,
        });
        self.room_index.insert(name, i);
        i
    }

    fn find(&self, room: &str, id: u64) -> Option<u32> {
        let r = &self.rooms[*self.room_index.get(room)? as usize];
        let i = r.docs.binary_search_by_key(&id, |&(m, _)| m).ok()?;
        Some(r.docs[i].1)
    }

    fn add_posting(&mut self, word: &str, doc: u32) {
        let list = match self.postings.get_mut(word) {
            Some(list) => list,
            None => self.postings.entry(word.into()).or_default(),
        };
        // Almost always an append; concurrent senders may index slightly
        // out of order, and edits re-add old documents.
        match list.last() {
            Some(&last) if last >= doc => {
                if let Err(i) = list.binary_search(&doc) {
                    list.insert(i, doc);
                }
            }
            _ => list.push(doc),
        }
    }

    fn remove_posting(&mut self, word: &str, doc: u32) {
        if let Some(list) = self.postings.get_mut(word) {
            if let Ok(i) = list.binary_search(&doc) {
                list.remove(i);
            }
            if list.is_empty() {
                self.postings.remove(word);
            }
        }
    }

    fn kill(&mut self, doc: u32) {
        let d = &mut self.docs[doc as usize];
        if d.live {
            d.live = false;
            self.dead += 1;
        }
    }

    /// Drops dead documents and renumbers the live ones, keeping order.
    fn compact(&mut self) {
        let mut renumber = vec![u32::MAX; self.docs.len()];
        let mut docs = Vec::with_capacity(self.docs.len() - self.dead);
        for (old, d) in self.docs.iter().enumerate() {
            if d.live {
                renumber[old] = docs.len() as u32;
                docs.push(*d);
            }
        }
        self.postings.retain(|_, list| {
            list.retain_mut(|doc| {
                let new = renumber[*doc as usize];
                *doc = new;
                new != u32::MAX
            });
            list.shrink_to_fit();
            !list.is_empty()
        });
        for r in &mut self.rooms {
            r.docs.retain_mut(|(_, doc)| {
                let new = renumber[*doc as usize];
                *doc = new;
                new != u32::MAX
            });
        }
        self.docs = docs;
        self.dead = 0;
        self.generation += 1;
    }

    fn maybe_compact(&mut self) {
        if self.dead >= COMPACT_MIN_DEAD && self.dead * 2 >= self.docs.len() {
            self.compact();
        }
    }

    fn evict_before(&mut self, room: u32, first_kept: u64) {
        let mut dead = Vec::new();
        let r = &mut self.rooms[room as usize];
        while let Some(&(id, doc)) = r.docs.front() {
            if id >= first_kept {
                break;
            }
            r.docs.pop_front();
            dead.push(doc);
        }
        for doc in dead {
            self.kill(doc);
        }
    }
}

impl MemoryIndex {
    /// An empty index.
    pub fn new() -> MemoryIndex {
        MemoryIndex::default()
    }

    /// Indexes a new message. Returns true when the room is due an eviction
    /// check: the caller then reads the room's first kept offset from
    /// history and calls [`MemoryIndex::evict_before`].
    pub fn insert(&self, room: &str, id: u64, content: &str) -> bool {
        self.insert_words(room, id, &split_words(content))
    }

    /// [`MemoryIndex::insert`] with the text already split by [`words`].
    pub fn insert_words(&self, room: &str, id: u64, words: &[impl AsRef<str>]) -> bool {
        let mut st = self.inner.write();
        let r = st.room(room);
        // Offsets grow: one past the room's newest is not indexed yet.
        let newest = st.rooms[r as usize].docs.back().map(|&(m, _)| m);
        if newest.is_some_and(|m| m >= id) && st.find(room, id).is_some() {
            return false;
        }
        if st.docs.len() >= u32::MAX as usize - 1 {
            st.compact();
        }
        let doc = st.docs.len() as u32;
        st.docs.push(Doc {
            room: r,
            id,
            live: true,
        });
        let rd = &mut st.rooms[r as usize].docs;
        match rd.back() {
            Some(&(last, _)) if last > id => {
                let i = rd.partition_point(|&(m, _)| m < id);
                rd.insert(i, (id, doc));
            }
            _ => rd.push_back((id, doc)),
        }
        for w in words {
            st.add_posting(w.as_ref(), doc);
        }
        let rd = &mut st.rooms[r as usize];
        rd.since_check += 1;
        if rd.since_check >= EVICTION_CHECK_EVERY {
            rd.since_check = 0;
            return true;
        }
        false
    }

    /// Re-indexes an edited message: words it lost stop finding it, new
    /// words find it, in its original place in time.
    pub fn update(&self, room: &str, id: u64, old: &str, new: &str) {
        self.update_words(room, id, &words(old), &words(new))
    }

    /// [`MemoryIndex::update`] with both texts already split by [`words`].
    pub fn update_words(&self, room: &str, id: u64, old: &[String], new: &[String]) {
        let mut st = self.inner.write();
        let Some(doc) = st.find(room, id) else {
            return;
        };
        for w in old.iter().filter(|w| !new.contains(w)) {
            st.remove_posting(w, doc);
        }
        for w in new.iter().filter(|w| !old.contains(w)) {
            st.add_posting(w, doc);
        }
    }

    /// Forgets a deleted message.
    pub fn remove(&self, room: &str, id: u64) {
        let mut st = self.inner.write();
        let Some(r) = st.room_index.get(room).copied() else {
            return;
        };
        let rd = &mut st.rooms[r as usize].docs;
        let Ok(i) = rd.binary_search_by_key(&id, |&(m, _)| m) else {
            return;
        };
        let (_, doc) = rd.remove(i).expect("found above");
        st.kill(doc);
        st.maybe_compact();
    }

    /// Forgets a room's messages with an id below `first_kept` (history
    /// evicted them; `u64::MAX` forgets them all).
    pub fn evict_before(&self, room: &str, first_kept: u64) {
        let mut st = self.inner.write();
        let Some(r) = st.room_index.get(room).copied() else {
            return;
        };
        st.evict_before(r, first_kept);
        st.maybe_compact();
    }

    /// Live indexed messages and distinct words.
    pub fn len(&self) -> (usize, usize) {
        let st = self.inner.read();
        (st.docs.len() - st.dead, st.postings.len())
    }

    /// Messages that contain every word of `query`, newest first, at most
    /// `limit`, only from rooms `may_read` accepts (asked once per room
    /// met). `fetch` reads a message back from history (None when it is no
    /// longer kept); a hit is re-checked against its current text, so a
    /// deleted message or an edit's old words never match.
    ///
    /// The index's read lock is held only to pick candidates, a bounded
    /// number at a time; texts are fetched (awaiting the engine) with the
    /// lock released.
    pub async fn search<Fetched, Asked>(
        &self,
        query: &str,
        limit: usize,
        mut may_read: impl FnMut(Arc<str>) -> Asked,
        mut fetch: impl FnMut(Arc<str>, u64) -> Fetched,
    ) -> Vec<Hit>
    where
        Fetched: std::future::Future<Output = Option<serde_json::Value>>,
        Asked: std::future::Future<Output = bool>,
    {
        let wanted = words(query);
        if wanted.is_empty() || limit == 0 {
            return Vec::new();
        }
        let mut hits = Vec::new();
        // Rooms whose oldest kept offset turned out to be above an indexed id.
        let mut evicted: Vec<(Arc<str>, u64)> = Vec::new();
        let mut readable: FxHashMap<u32, bool> = FxHashMap::default();
        // Documents below this one are still to be examined.
        let mut cursor = u32::MAX;
        let mut generation = None;
        loop {
            // With the room's index: rooms not asked yet are asked (the
            // state store may be remote) once the lock is released.
            let mut candidates: Vec<(u32, Arc<str>, u64)> = Vec::new();
            let mut exhausted = true;
            {
                let st = self.inner.read();
                if *generation.get_or_insert(st.generation) != st.generation {
                    // Renumbered under us: what was found so far stands.
                    break;
                }
                let mut lists: Vec<&Vec<u32>> = Vec::with_capacity(wanted.len());
                for w in &wanted {
                    match st.postings.get(w.as_str()) {
                        Some(list) => lists.push(list),
                        None => return hits,
                    }
                }
                lists.sort_by_key(|l| l.len());
                let (first, rest) = lists.split_first().expect("at least one word");
                let below = |l: &Vec<u32>| l.partition_point(|&d| d < cursor);
                // Upper bounds in the other lists only move down as we walk.
                let mut ends: Vec<usize> = rest.iter().map(|l| below(l)).collect();
                let need = limit - hits.len();
                'docs: for (scanned, &doc) in first[..below(first)].iter().rev().enumerate() {
                    if scanned >= SCAN_PER_HOLD || candidates.len() >= need {
                        exhausted = false;
                        break;
                    }
                    cursor = doc;
                    for (list, end) in rest.iter().zip(ends.iter_mut()) {
                        match list[..*end].binary_search(&doc) {
                            Ok(i) => *end = i,
                            Err(i) => {
                                *end = i;
                                continue 'docs;
                            }
                        }
                    }
                    let d = st.docs[doc as usize];
                    if !d.live {
                        continue;
                    }
                    if readable.get(&d.room) != Some(&false) {
                        let name = &st.rooms[d.room as usize].name;
                        candidates.push((d.room, name.clone(), d.id));
                    }
                }
            }
            for (r, room, _) in &candidates {
                if !readable.contains_key(r) {
                    let ok = may_read(room.clone()).await;
                    readable.insert(*r, ok);
                }
            }
            for (r, room, id) in candidates {
                if readable.get(&r) != Some(&true) {
                    continue;
                }
                let Some(message) = fetch(room.clone(), id).await else {
                    evicted.push((room, id));
                    continue;
                };
                if still_matches(&message, &wanted) {
                    hits.push(Hit {
                        room: room.to_string(),
                        message,
                    });
                }
            }
            if exhausted || hits.len() >= limit {
                break;
            }
        }
        hits.truncate(limit);
        if !evicted.is_empty() {
            let mut st = self.inner.write();
            for (room, id) in evicted {
                if let Some(r) = st.room_index.get(&room).copied() {
                    // History evicts oldest first: everything up to a
                    // missing id is gone too.
                    st.evict_before(r, id.saturating_add(1));
                }
            }
            st.maybe_compact();
        }
        hits
    }
}
