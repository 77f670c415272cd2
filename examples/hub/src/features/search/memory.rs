//! The index of a hub that runs alone: an inverted index from word to the
//! messages that contain it, in this process's memory. It is derived data:
//! `rebuild` fills it from the core's history at start.
//!
//! Every message gets a document number in the order it was indexed; each
//! word's postings are document numbers, ascending, so "newest first" is a
//! walk from the end of the shortest list. Documents of deleted or evicted
//! messages are marked dead and dropped by a compaction that renumbers the
//! live ones once the dead outnumber them.
//!
//! A word is keyed by a 64-bit hash of it (seeded per index), not by its
//! text, and a word met in one message only keeps that message inline: most
//! words are rare (names, numbers, links, timestamps), and indexing one
//! costs no allocation. Two words that share a key share a posting list;
//! that only adds candidates, which the query's re-check against the
//! message's text (`still_matches`) drops, so results are unchanged.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;

use super::{for_each_word, still_matches, words, Hit};

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
    /// Word key ([`MemoryIndex::key`]) -> document numbers, ascending.
    postings: FxHashMap<u64, Postings>,
}

/// The documents of one word key, ascending: inline while there is one.
/// 16 bytes (a map entry of 24 with its key): most words are in one
/// message, so the list of the others is boxed.
#[derive(Debug)]
enum Postings {
    One(u32),
    #[allow(clippy::box_collection)] // half the size of an inline Vec
    Many(Box<Vec<u32>>),
}

impl Postings {
    fn as_slice(&self) -> &[u32] {
        match self {
            Postings::One(doc) => std::slice::from_ref(doc),
            Postings::Many(list) => list,
        }
    }

    fn add(&mut self, doc: u32) {
        match self {
            Postings::One(one) if *one == doc => {}
            Postings::One(one) => {
                let one = *one;
                *self = Postings::Many(Box::new(if one < doc {
                    vec![one, doc]
                } else {
                    vec![doc, one]
                }));
            }
            // Almost always an append; concurrent senders may index
            // slightly out of order, and edits re-add old documents.
            Postings::Many(list) => match list.last() {
                Some(&last) if last >= doc => {
                    if let Err(i) = list.binary_search(&doc) {
                        list.insert(i, doc);
                    }
                }
                _ => list.push(doc),
            },
        }
    }

    /// Removes `doc`; false once nothing is left.
    fn remove(&mut self, doc: u32) -> bool {
        match self {
            Postings::One(one) => *one != doc,
            Postings::Many(list) => {
                if let Ok(i) = list.binary_search(&doc) {
                    list.remove(i);
                }
                self.settle()
            }
        }
    }

    /// Back to inline at one document; false when empty.
    fn settle(&mut self) -> bool {
        if let Postings::Many(list) = self {
            match list[..] {
                [] => return false,
                [one] => *self = Postings::One(one),
                _ => {}
            }
        }
        true
    }
}

/// The search index. One lock: updates are a few pushes, queries read.
#[derive(Debug)]
pub struct MemoryIndex {
    inner: RwLock<Inner>,
    /// Seeds the word keys, per index (per process).
    hasher: foldhash::quality::RandomState,
    /// `u64::MAX`; fewer bits in tests, so that distinct words share keys.
    key_mask: u64,
}

impl Default for MemoryIndex {
    fn default() -> Self {
        MemoryIndex {
            inner: RwLock::default(),
            hasher: foldhash::quality::RandomState::default(),
            key_mask: u64::MAX,
        }
    }
}

/// Word keys of one message, before the index's lock is taken: on the
/// stack up to [`WordKeys::INLINE`].
struct WordKeys {
    inline: [u64; WordKeys::INLINE],
    len: usize,
    more: Vec<u64>,
}

impl WordKeys {
    const INLINE: usize = 24;

    fn new() -> WordKeys {
        WordKeys {
            inline: [0; WordKeys::INLINE],
            len: 0,
            more: Vec::new(),
        }
    }

    fn push(&mut self, key: u64) {
        if self.len < WordKeys::INLINE {
            self.inline[self.len] = key;
            self.len += 1;
        } else {
            self.more.push(key);
        }
    }

    fn inline(&self) -> &[u64] {
        &self.inline[..self.len]
    }
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

    #[inline]
    fn add_posting(&mut self, key: u64, doc: u32) {
        match self.postings.entry(key) {
            Entry::Occupied(list) => list.into_mut().add(doc),
            Entry::Vacant(slot) => {
                slot.insert(Postings::One(doc));
            }
        }
    }

    fn remove_posting(&mut self, key: u64, doc: u32) {
        if let Entry::Occupied(mut list) = self.postings.entry(key) {
            if !list.get_mut().remove(doc) {
                list.remove();
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
        self.postings.retain(|_, postings| match postings {
            Postings::One(doc) => {
                *doc = renumber[*doc as usize];
                *doc != u32::MAX
            }
            Postings::Many(list) => {
                list.retain_mut(|doc| {
                    let new = renumber[*doc as usize];
                    *doc = new;
                    new != u32::MAX
                });
                list.shrink_to_fit();
                postings.settle()
            }
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

    /// An index whose word keys keep `bits` bits only, so that distinct
    /// words share posting lists (tests of what a collision does).
    #[cfg(test)]
    fn with_key_bits(bits: u32) -> MemoryIndex {
        MemoryIndex {
            key_mask: (1u64 << bits) - 1,
            ..MemoryIndex::default()
        }
    }

    /// A lowercase word's key in `postings`, from its UTF-8 bytes.
    #[inline]
    fn key(&self, word: &[u8]) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.hasher.build_hasher();
        h.write(word);
        h.finish() & self.key_mask
    }

    /// Indexes a new message. Returns true when the room is due an eviction
    /// check: the caller then reads the room's first kept offset from
    /// history and calls [`MemoryIndex::evict_before`].
    pub fn insert(&self, room: &str, id: u64, content: &str) -> bool {
        let mut keys = WordKeys::new();
        for_each_word(content, |w| keys.push(self.key(w.as_bytes())));
        self.insert_keys(room, id, &keys)
    }

    /// [`MemoryIndex::insert`] with the text already split by [`words`].
    pub fn insert_words(&self, room: &str, id: u64, words: &[impl AsRef<str>]) -> bool {
        let mut keys = WordKeys::new();
        for w in words {
            keys.push(self.key(w.as_ref().as_bytes()));
        }
        self.insert_keys(room, id, &keys)
    }

    fn insert_keys(&self, room: &str, id: u64, keys: &WordKeys) -> bool {
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
        for &key in keys.inline() {
            st.add_posting(key, doc);
        }
        for &key in &keys.more {
            st.add_posting(key, doc);
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
        // By key, not by word: a key that an old word and a new one share
        // stays (the new word still needs it).
        let old: Vec<u64> = old.iter().map(|w| self.key(w.as_bytes())).collect();
        let new: Vec<u64> = new.iter().map(|w| self.key(w.as_bytes())).collect();
        let mut st = self.inner.write();
        let Some(doc) = st.find(room, id) else {
            return;
        };
        for &key in old.iter().filter(|k| !new.contains(k)) {
            st.remove_posting(key, doc);
        }
        for &key in new.iter().filter(|k| !old.contains(k)) {
            st.add_posting(key, doc);
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

    #[cfg(test)]
    fn generation(&self) -> u64 {
        self.inner.read().generation
    }

    /// Live indexed messages and distinct words (word keys: two words that
    /// share a key count once).
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
        let keys: Vec<u64> = wanted.iter().map(|w| self.key(w.as_bytes())).collect();
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
                let mut lists: Vec<&[u32]> = Vec::with_capacity(keys.len());
                for key in &keys {
                    match st.postings.get(key) {
                        Some(postings) => lists.push(postings.as_slice()),
                        None => return hits,
                    }
                }
                lists.sort_by_key(|l| l.len());
                let (first, rest) = lists.split_first().expect("at least one word");
                let below = |l: &[u32]| l.partition_point(|&d| d < cursor);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::future::ready;

    use futures_util::FutureExt;
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn a_posting_list_is_two_words() {
        assert_eq!(std::mem::size_of::<Postings>(), 16);
    }

    #[test]
    fn postings_go_inline_and_back() {
        let mut p = Postings::One(7);
        p.add(7);
        assert_eq!(p.as_slice(), &[7]);
        p.add(3);
        p.add(9);
        p.add(5);
        assert_eq!(p.as_slice(), &[3, 5, 7, 9]);
        assert!(p.remove(5) && p.remove(9) && p.remove(3));
        assert!(matches!(p, Postings::One(7)));
        assert!(p.remove(8), "another document leaves it as it is");
        assert!(!p.remove(7), "empty");
    }

    /// Messages of a few rooms with words drawn from a small vocabulary,
    /// edited, deleted and evicted, searched through `index`; every result
    /// checked against a plain scan of what history holds.
    fn exercise(index: &MemoryIndex) -> Vec<Vec<(String, u64)>> {
        let vocabulary = [
            "alpha", "Beta", "gamma", "delta", "ÉCOLE", "école", "x1", "x2", "x3", "zeta",
        ];
        let rooms = ["r0", "r1", "r2", "hidden"];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        // (room, id) -> text; ids grow per room; the index order is the
        // order of `sent`.
        let mut history: BTreeMap<(String, u64), String> = BTreeMap::new();
        let mut sent: Vec<(String, u64)> = Vec::new();
        let mut next_id = [0u64; 4];
        let mut results = Vec::new();
        for step in 0..600 {
            let r = next(rooms.len());
            match next(10) {
                0 if !sent.is_empty() => {
                    let (room, id) = sent[next(sent.len())].clone();
                    if let Some(old) = history.get(&(room.clone(), id)).cloned() {
                        let new = format!("{} {}", vocabulary[next(10)], vocabulary[next(10)]);
                        index.update(&room, id, &old, &new);
                        history.insert((room, id), new);
                    }
                }
                1 if !sent.is_empty() => {
                    let (room, id) = sent[next(sent.len())].clone();
                    history.remove(&(room.clone(), id));
                    index.remove(&room, id);
                }
                2 if step % 50 == 0 => {
                    let room = rooms[r].to_string();
                    let first_kept = next_id[r].saturating_sub(5);
                    history.retain(|(m, id), _| *m != room || *id >= first_kept);
                    index.evict_before(&room, first_kept);
                }
                _ => {
                    next_id[r] += 1;
                    let words = 1 + next(4);
                    let text: Vec<&str> = (0..words).map(|_| vocabulary[next(10)]).collect();
                    let text = text.join(if next(2) == 0 { " " } else { ", " });
                    let (room, id) = (rooms[r].to_string(), next_id[r]);
                    index.insert(&room, id, &text);
                    history.insert((room.clone(), id), text);
                    sent.push((room, id));
                }
            }
            if step % 20 != 19 {
                continue;
            }
            for query in [
                "alpha",
                "beta gamma",
                "école",
                "X1 x2",
                "zeta alpha delta",
                "omega",
            ] {
                let limit = 1 + next(8);
                let hits = index
                    .search(
                        query,
                        limit,
                        |room| ready(&*room != "hidden"),
                        |room, id| {
                            let text = history.get(&(room.to_string(), id));
                            ready(text.map(|t| json!({"id": id, "content": t})))
                        },
                    )
                    .now_or_never()
                    .expect("an in-memory fetch is ready at once");
                let got: Vec<(String, u64)> = hits
                    .iter()
                    .map(|h| (h.room.clone(), h.message["id"].as_u64().unwrap()))
                    .collect();
                let wanted = words(query);
                let expected: Vec<(String, u64)> = sent
                    .iter()
                    .rev()
                    .filter(|(room, _)| room != "hidden")
                    .filter(|key| {
                        history.get(key).is_some_and(|t| {
                            let have = words(t);
                            wanted.iter().all(|w| have.contains(w))
                        })
                    })
                    .take(limit)
                    .cloned()
                    .collect();
                assert_eq!(got, expected, "{query:?} at step {step}");
                assert!(hits.iter().all(|h| h.message["content"].as_str().is_some()));
                results.push(got);
            }
        }
        assert!(
            results.iter().filter(|r| !r.is_empty()).count() > 50,
            "the queries found something"
        );
        results
    }

    #[test]
    fn compaction_renumbers_and_drops_inline_postings() {
        let index = MemoryIndex::new();
        let n = COMPACT_MIN_DEAD as u64 * 2 + 100;
        let text = |i: u64| format!("only{i} pair{} common", i / 2);
        for i in 1..=n {
            index.insert("a", i, &text(i));
        }
        // Every other document dead, then enough of them to compact:
        // "pair" lists lose one of their two, "only" words all go.
        for i in (1..=n).step_by(2) {
            index.remove("a", i);
        }
        let live = (n / 2) as usize;
        assert_eq!(index.generation(), 1, "compacted");
        assert_eq!(index.len(), (live, live * 2 + 1));
        let fetch = |_, id: u64| ready(Some(json!({"id": id, "content": text(id)})));
        for (query, want) in [
            (format!("only{}", n - 1), vec![]),
            (format!("only{n}"), vec![n]),
            (format!("pair{}", n / 2), vec![n]),
            ("only2".to_string(), vec![2]),
            // Was [10, 11], 11 died: back inline.
            ("pair5".to_string(), vec![10]),
            ("common".to_string(), vec![n, n - 2, n - 4]),
        ] {
            let hits = index
                .search(&query, 3, |_| ready(true), fetch)
                .now_or_never()
                .expect("ready");
            let ids: Vec<u64> = hits
                .iter()
                .map(|h| h.message["id"].as_u64().unwrap())
                .collect();
            assert_eq!(ids, want, "{query}");
        }
    }

    #[test]
    fn searches_match_a_plain_scan() {
        exercise(&MemoryIndex::new());
    }

    #[test]
    fn words_that_share_a_key_find_the_same_messages() {
        let full = exercise(&MemoryIndex::new());
        // Every word one key, then four keys: each query walks candidates
        // that the re-check against the text drops.
        for bits in [0, 2] {
            let index = MemoryIndex::with_key_bits(bits);
            assert_eq!(exercise(&index), full, "{bits} key bits");
            assert!(index.len().1 <= 1 << bits);
        }
    }

    #[test]
    fn an_edit_keeps_a_key_its_new_words_share_with_the_old() {
        // Every word one key: "old" and "new" collide.
        // Every word one key: "old" and "kept" collide; the edit drops
        // "old" but the key stays for "kept".
        let index = MemoryIndex::with_key_bits(0);
        index.insert("a", 1, "old kept");
        index.update("a", 1, "old kept", "kept");
        let fetch = |_, id| ready(Some(json!({"id": id, "content": "kept"})));
        let hits = index
            .search("kept", 10, |_| ready(true), fetch)
            .now_or_never()
            .expect("ready");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].message, json!({"id": 1, "content": "kept"}));
        let hits: Vec<Value> = index
            .search("old", 10, |_| ready(true), fetch)
            .now_or_never()
            .expect("ready")
            .into_iter()
            .map(|h| h.message)
            .collect();
        assert!(hits.is_empty(), "the old word is gone from the text");
    }
}

/// What the index holds per message when every message brings a word never
/// seen before (the load generator's messages carry a unique timestamp;
/// chat has names, numbers and links). A measurement, not a check (the
/// layout is the same in a debug build):
/// `cargo test -p channelbox-hub --lib -- --ignored --nocapture memory_per_message`.
#[cfg(test)]
#[test]
#[ignore = "a measurement: run it alone"]
fn memory_per_message() {
    fn rss() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        let kb: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kb * 1024
    }
    const N: u64 = 1_000_000;
    let index = MemoryIndex::new();
    let rooms: Vec<String> = (0..100).map(|r| format!("room-{r}")).collect();
    let before = rss();
    for i in 0..N {
        // As the load generator's body: B|<run id>|<round>|<seq>|<sent ns>|
        let text = format!(
            "B|5f3a9c1d2e4b6a70|{}|{}|{}|",
            i / 10_000,
            i % 10_000,
            1_764_765_432_123_456_789u64 + i * 7_919
        );
        index.insert(&rooms[(i % 100) as usize], i / 100 + 1, &text);
    }
    let grown = rss() - before;
    let (docs, words) = index.len();
    println!(
        "memory_per_message: {docs} messages, {words} distinct words: RSS +{:.1} MB, {:.0} bytes a message",
        grown as f64 / 1e6,
        grown as f64 / N as f64
    );
}
