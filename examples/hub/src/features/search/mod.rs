//! Full-text search over the rooms' messages, and the `search` frame that
//! queries it.
//!
//! The index keeps ids only (room and history offset). The text a result
//! shows is read back from the core's history when the query runs, so the
//! hub never holds a second copy of history, an edited message is found by
//! its new words only, and a deleted or evicted one is never shown.
//!
//! Where the index lives follows where history lives:
//!
//! - **Alone** (no `--redis-url`): in this process's memory
//!   ([`MemoryIndex`]). History is the core's, so the index is derived
//!   data: [`rebuild`] fills it from the core's history when the hub first
//!   needs it (a restart with durable history finds what was said before).
//!   Index work that arrives during the rebuild waits and is applied after
//!   it; searches wait for the rebuild.
//! - **On Redis** ([`shared::SharedIndex`]): in Redis, so every node finds
//!   what any node indexed. A send queues its index work (bounded; a full
//!   queue drops the work and counts it rather than slowing chat) and one
//!   task per node writes it in pipelined batches. A query reads the
//!   rarest word's refs newest first and checks the other words by score,
//!   so its cost follows the hits asked for, not the history.
//!
//! Permissions are asked per room met, through [`super::may_read_async`].
//!
//! Not done: prefix matching ("contras" finding "contrast"). Both indexes
//! match whole words only.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashSet;
use serde_json::Value;

use super::{fields, saved};
use crate::error::Refusal;
use crate::frames;
use crate::server::AppState;
use crate::session::Session;

pub mod memory;
pub mod rebuild;
pub mod shared;

pub use memory::MemoryIndex;

/// Longest word indexed, in characters; longer tokens are ignored (they are
/// hashes and links nobody searches by a prefix of).
const MAX_WORD_CHARS: usize = 48;
/// How many messages a room takes between two eviction checks on Redis
/// (the memory index counts exactly, per room).
const EVICTION_CHECK_EVERY: u32 = 256;
/// Counters of messages per room since the last eviction check on Redis,
/// by a hash of the room: bounded whatever the number of rooms (two rooms
/// that share a counter are checked a little more often).
const EVICTION_COUNTERS: usize = 1024;

/// Splits text into lowercase words: runs of letters and digits, each once,
/// in order of first appearance.
pub fn words(text: &str) -> Vec<String> {
    split_words(text).into_iter().map(Cow::into_owned).collect()
}

/// Distinct words up to which duplicates are found by a linear scan.
const DEDUP_LINEAR: usize = 32;

/// [`words`] without copying the words that are already lowercase (most of
/// them).
pub fn split_words(text: &str) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(8);
    // Only for long texts, where a scan of `out` would cost.
    let mut seen: Option<FxHashSet<String>> = None;
    for_each_word(text, |word| {
        let new = match &mut seen {
            Some(seen) => seen.insert(word.to_cow().into_owned()),
            None if out.len() < DEDUP_LINEAR => {
                !out.iter().any(|w| w.as_bytes() == word.as_bytes())
            }
            None => {
                let mut set: FxHashSet<String> = out.iter().map(|w| w.to_string()).collect();
                let new = set.insert(word.to_cow().into_owned());
                seen = Some(set);
                new
            }
        };
        if new {
            out.push(word.to_cow());
        }
    });
    out
}

/// One word of a text, as [`for_each_word`] hands it over.
#[derive(Clone, Copy, Debug)]
pub enum Word<'text, 'buf> {
    /// The text holds the word as it is (already lowercase).
    AsIs(&'text str),
    /// The word lowercased into a buffer that lives until the next word:
    /// UTF-8 (bytes, so that hashing it does not validate it again).
    Lowered(&'buf [u8]),
}

impl<'text> Word<'text, '_> {
    /// The lowercase word's UTF-8 bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Word::AsIs(w) => w.as_bytes(),
            Word::Lowered(w) => w,
        }
    }

    /// The lowercase word, borrowed from the text when it can be.
    pub fn to_cow(&self) -> Cow<'text, str> {
        match *self {
            Word::AsIs(w) => Cow::Borrowed(w),
            Word::Lowered(w) => Cow::Owned(
                std::str::from_utf8(w)
                    .expect("a lowercased word is UTF-8")
                    .to_owned(),
            ),
        }
    }
}

/// Byte classes for the split: not part of a word (an ASCII byte that is
/// not a letter or digit), a lowercase ASCII letter or digit, an uppercase
/// ASCII letter, a byte of a character past ASCII.
const SEPARATOR: u8 = 0;
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const NON_ASCII: u8 = 4;
static BYTE_CLASS: [u8; 256] = {
    let mut t = [NON_ASCII; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_alphanumeric() {
            LOWER
        } else {
            SEPARATOR
        };
        b += 1;
    }
    t
};

/// Calls `f` with every word of `text` in order, duplicates included: runs
/// of letters and digits (`char::is_alphanumeric`), lowercased, tokens over
/// [`MAX_WORD_CHARS`] characters skipped. [`split_words`], [`words`] and the
/// memory index's keys all split with it.
///
/// One pass over the bytes cuts the text at ASCII separators (separators
/// for `char::is_alphanumeric` too); a piece that is all ASCII is a word
/// as it is (an uppercase one is lowercased into a buffer on the stack,
/// nothing is allocated), a piece with characters past ASCII is split
/// again by characters and lowercased by `str::to_lowercase`.
pub fn for_each_word<'t>(text: &'t str, mut f: impl FnMut(Word<'t, '_>)) {
    let mut lower = [0u8; MAX_WORD_CHARS];
    // The piece since the last separator, and the classes of its bytes.
    let mut start = 0;
    let mut class = SEPARATOR;
    for (at, &b) in text.as_bytes().iter().enumerate() {
        let c = BYTE_CLASS[b as usize];
        if c != SEPARATOR {
            class |= c;
            continue;
        }
        if class != SEPARATOR {
            // `start` and `at` are ASCII bytes: character boundaries.
            piece(&text[start..at], class, &mut lower, &mut f);
            class = SEPARATOR;
        }
        start = at + 1;
    }
    if class != SEPARATOR {
        piece(&text[start..], class, &mut lower, &mut f);
    }
}

/// The words of one piece of [`for_each_word`]'s text: no ASCII separator
/// in it, `class` the classes of its bytes.
#[inline(always)]
fn piece<'t>(
    piece: &'t str,
    class: u8,
    lower: &mut [u8; MAX_WORD_CHARS],
    f: &mut impl FnMut(Word<'t, '_>),
) {
    if class & NON_ASCII != 0 {
        return past_ascii(piece, f);
    }
    // For ASCII a length in bytes is a count of characters.
    if piece.len() > MAX_WORD_CHARS {
        return;
    }
    if class & UPPER == 0 {
        f(Word::AsIs(piece));
    } else {
        let lower = &mut lower[..piece.len()];
        for (l, b) in lower.iter_mut().zip(piece.bytes()) {
            *l = b.to_ascii_lowercase();
        }
        f(Word::Lowered(lower));
    }
}

/// [`piece`] for a piece with characters past ASCII.
#[cold]
fn past_ascii<'t>(piece: &'t str, f: &mut impl FnMut(Word<'t, '_>)) {
    for token in piece.split(|c: char| !c.is_alphanumeric()) {
        if token.is_empty()
            || (token.len() > MAX_WORD_CHARS && token.chars().count() > MAX_WORD_CHARS)
        {
            continue;
        }
        if token.is_ascii() {
            if token.bytes().any(|b| b.is_ascii_uppercase()) {
                f(Word::Lowered(token.to_ascii_lowercase().as_bytes()));
            } else {
                f(Word::AsIs(token));
            }
        } else {
            let lower = token.to_lowercase();
            if lower == token {
                f(Word::AsIs(token));
            } else {
                f(Word::Lowered(lower.as_bytes()));
            }
        }
    }
}

/// What a search returns for one hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The room the message was sent to.
    pub room: String,
    /// The message as history holds it now.
    pub message: serde_json::Value,
}

/// True when a message read back from history is a live message whose text
/// still holds every wanted word.
fn still_matches(message: &serde_json::Value, wanted: &[String]) -> bool {
    if message.get("deleted").and_then(|d| d.as_bool()) == Some(true) {
        return false;
    }
    let Some(content) = message.get("content").and_then(|c| c.as_str()) else {
        return false;
    };
    let have = words(content);
    wanted.iter().all(|w| have.contains(w))
}

/// One change to the index, as a send, an edit, a delete or history's
/// eviction asks for it.
#[derive(Debug)]
pub enum Op {
    /// A new message with its words.
    Insert {
        /// The room id (not the core group).
        room: Arc<str>,
        /// The message's history offset.
        id: u64,
        /// When it was sent, in ms since the epoch: its place in "newest first".
        at_ms: u64,
        /// Its words, as [`words`] splits them.
        words: Vec<String>,
    },
    /// An edit: the message's words are now `new` (`old` were its words).
    Update {
        /// The room id.
        room: Arc<str>,
        /// The message's history offset.
        id: u64,
        /// The words before the edit.
        old: Vec<String>,
        /// The words after it.
        new: Vec<String>,
    },
    /// A deleted message (or one found missing from history).
    Remove {
        /// The room id.
        room: Arc<str>,
        /// The message's history offset.
        id: u64,
    },
    /// History no longer keeps the room's messages below `first_kept`
    /// (`u64::MAX`: none of them).
    Evict {
        /// The room id.
        room: Arc<str>,
        /// The first offset history still keeps.
        first_kept: u64,
    },
    /// Resolved once every op queued before it is written (benchmarks and
    /// tests wait on it).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Where this hub's index lives, chosen at its first use.
enum Home {
    /// In memory, rebuilt from the core's history.
    Alone(Arc<rebuild::Local>),
    /// In Redis, shared by every node.
    Shared(shared::SharedIndex),
}

/// The hub's search index (`FeatureState::search`): in memory when the hub
/// runs alone, in Redis with `--redis-url`.
pub struct SearchIndex {
    /// Set at the first use, when the hub's configuration is at hand.
    home: OnceLock<Home>,
    /// Messages per room (by hash) since the last eviction check, on Redis.
    since_check: Box<[AtomicU32]>,
}

impl Default for SearchIndex {
    fn default() -> Self {
        SearchIndex {
            home: OnceLock::new(),
            since_check: (0..EVICTION_COUNTERS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let home = match self.home.get() {
            None => "not started",
            Some(Home::Alone(_)) => "memory",
            Some(Home::Shared(_)) => "redis",
        };
        f.debug_struct("SearchIndex").field("home", &home).finish()
    }
}

impl SearchIndex {
    /// Starts the index if it is not yet: on Redis with `--redis-url`, else
    /// in memory, rebuilt from the core's history (on a thread of its own
    /// when history is large). Every other method calls it; the hub calls
    /// it early (at the first join) so the rebuild starts before anyone
    /// searches.
    pub fn start(&self, state: &AppState) {
        self.home(state);
    }

    fn home(&self, state: &AppState) -> &Home {
        self.home.get_or_init(|| match state.config.redis_url() {
            Some(url) => {
                let prefix = &state.hub.config().redis_key_prefix;
                match shared::SharedIndex::start(url, prefix) {
                    Ok(index) => Home::Shared(index),
                    Err(e) => {
                        // The core connected with this URL already; this
                        // only fails without a Tokio runtime.
                        tracing::error!(error = %e, "search: cannot start the shared index; searching this hub's messages only");
                        Home::Alone(rebuild::Local::start(state.hub.clone()))
                    }
                }
            }
            None => Home::Alone(rebuild::Local::start(state.hub.clone())),
        })
    }

    fn apply(&self, state: &AppState, op: Op) -> bool {
        match self.home(state) {
            Home::Alone(local) => local.apply(op),
            Home::Shared(index) => {
                index.submit(op);
                false
            }
        }
    }

    /// Indexes a new message. Returns true when the room is due an eviction
    /// check: the caller then reads the room's first kept offset from
    /// history and calls [`SearchIndex::evict_before`].
    #[inline(never)] // one frame in profiles: what indexing costs a send
    pub fn insert(&self, state: &AppState, room: &str, id: u64, content: &str) -> bool {
        // Alone and built (every send after the start): straight into the
        // index with the words borrowed from the text, no op to build.
        if let Home::Alone(local) = self.home(state) {
            if let Some(due) = local.insert_now(room, id, content) {
                return due;
            }
        }
        let op = Op::Insert {
            room: room.into(),
            id,
            at_ms: frames::now_ms(),
            words: words(content),
        };
        let due = self.apply(state, op);
        if let Some(Home::Shared(_)) = self.home.get() {
            let i = rustc_hash::FxBuildHasher.hash_one(room) as usize % EVICTION_COUNTERS;
            let n = self.since_check[i].fetch_add(1, Ordering::Relaxed);
            return n % EVICTION_CHECK_EVERY == EVICTION_CHECK_EVERY - 1;
        }
        due
    }

    /// Re-indexes an edited message: words it lost stop finding it, new
    /// words find it, in its original place in time.
    pub fn update(&self, state: &AppState, room: &str, id: u64, old: &str, new: &str) {
        let op = Op::Update {
            room: room.into(),
            id,
            old: words(old),
            new: words(new),
        };
        self.apply(state, op);
    }

    /// Forgets a deleted message.
    pub fn remove(&self, state: &AppState, room: &str, id: u64) {
        let op = Op::Remove {
            room: room.into(),
            id,
        };
        self.apply(state, op);
    }

    /// Forgets a room's messages with an id below `first_kept` (history
    /// evicted them; `u64::MAX` forgets them all). Before the index started
    /// there is nothing of this process's to forget (on Redis, refs that
    /// history no longer backs are also dropped when a search meets them).
    pub fn evict_before(&self, room: &str, first_kept: u64) {
        let op = Op::Evict {
            room: room.into(),
            first_kept,
        };
        match self.home.get() {
            Some(Home::Alone(local)) => {
                local.apply(op);
            }
            Some(Home::Shared(index)) => index.submit(op),
            None => {}
        }
    }

    /// Index changes dropped because the queue to Redis was full (0 when
    /// the hub runs alone).
    pub fn dropped(&self) -> u64 {
        match self.home.get() {
            Some(Home::Shared(index)) => index.dropped(),
            Some(Home::Alone(local)) => local.dropped(),
            None => 0,
        }
    }

    /// Resolves once every index change made so far through this hub is
    /// applied (written to Redis, or past the rebuild).
    pub async fn settled(&self, state: &AppState) {
        match self.home(state) {
            Home::Alone(local) => local.built().await,
            Home::Shared(index) => index.flush().await,
        }
    }

    /// Messages that contain every word of `query`, newest first, at most
    /// `limit`, only from rooms `may_read` accepts (asked once per room
    /// met), each read back from history as it is now.
    pub async fn search<Asked>(
        &self,
        state: &AppState,
        query: &str,
        limit: usize,
        may_read: impl FnMut(Arc<str>) -> Asked,
    ) -> Result<Vec<Hit>, Refusal>
    where
        Asked: std::future::Future<Output = bool>,
    {
        match self.home(state) {
            Home::Alone(local) => {
                local.built().await;
                // Reads so far: every few, the worker is given back.
                let fetched = std::sync::atomic::AtomicUsize::new(0);
                let hits = local
                    .index
                    .search(query, limit, may_read, |room, id| {
                        let n = fetched.fetch_add(1, Ordering::Relaxed);
                        let pause = n % saved::READS_PER_YIELD == saved::READS_PER_YIELD - 1;
                        async move {
                            if pause {
                                tokio::task::yield_now().await;
                            }
                            let message = saved::saved(state, &frames::room_group(&room), id).await;
                            message.map(Value::Object)
                        }
                    })
                    .await;
                Ok(hits)
            }
            Home::Shared(index) => {
                let fetch = |room: Arc<str>, id: u64| async move {
                    let read = state.hub.history_get_async(&frames::room_group(&room), id);
                    match read.await {
                        Ok(m) => match serde_json::from_slice::<Value>(m.data()) {
                            Ok(v @ Value::Object(_)) => shared::Fetched::Message(v),
                            _ => shared::Fetched::Gone,
                        },
                        Err(channelbox::Error::NoSuchMessage { .. }) => shared::Fetched::Gone,
                        Err(_) => shared::Fetched::Unavailable,
                    }
                };
                index
                    .search(query, limit, may_read, fetch)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "search: Redis failed");
                        channelbox::Error::EngineUnavailable(format!("search: {e}")).into()
                    })
            }
        }
    }
}

/// Search result counts: by default, and at most.
const SEARCH_DEFAULT: usize = 20;
const SEARCH_MAX: usize = 100;
/// Longest search query, in bytes.
const MAX_QUERY_BYTES: usize = 512;

/// `{"type":"search","query","limit"?}`: messages from every room the
/// caller may read, newest first.
pub async fn frame(session: &Session, frame: &Value) -> Result<(), Refusal> {
    let query = fields::text(frame, "query", MAX_QUERY_BYTES)?;
    let limit = fields::limit(frame, SEARCH_DEFAULT, SEARCH_MAX)?;
    let state: &AppState = &session.state;
    let claims = &session.claims;
    let hits = state
        .features
        .search
        .search(state, query, limit, |room: Arc<str>| async move {
            super::may_read_async(state, &room, &claims.sub, claims.is_admin())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, %room, "search: room check failed; skipped");
                    false
                })
        })
        .await?;
    let messages: Vec<Value> = hits
        .into_iter()
        .map(|mut hit| {
            hit.message["room"] = Value::String(hit.room);
            hit.message
        })
        .collect();
    // The oldest hits go first when they do not all fit in one frame.
    let query: Box<str> = query.into();
    let frame = saved::fit_off_worker(
        state,
        messages,
        move |messages| {
            crate::frames::encode(&SearchResults {
                ty: "search_results",
                query: &query,
                messages,
            })
        },
        saved::Trim::FromTheEnd,
    )
    .await;
    session.send(frame);
    Ok(())
}

/// The `search_results` frame.
#[derive(serde::Serialize)]
struct SearchResults<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    query: &'a str,
    messages: &'a [Box<serde_json::value::RawValue>],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plainest statement of [`words`]: letters and digits, lowercased,
    /// each once, tokens over [`MAX_WORD_CHARS`] characters dropped (no
    /// borrowed words, no set for long texts).
    fn by_chars(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for token in text.split(|c: char| !c.is_alphanumeric()) {
            if token.is_empty() || token.chars().count() > MAX_WORD_CHARS {
                continue;
            }
            let word = token.to_lowercase();
            if !out.contains(&word) {
                out.push(word);
            }
        }
        out
    }

    #[test]
    fn texts_split_into_lowercase_words_each_once() {
        let mut texts: Vec<String> = vec![
            String::new(),
            "B|0000002a|3|17|1701234567890123456|xxxx".into(),
            "Hello, hello WORLD! world_42 42".into(),
            "  --leading and trailing--  ".into(),
            format!(
                "{} short {}",
                "a".repeat(MAX_WORD_CHARS),
                "b".repeat(MAX_WORD_CHARS + 1)
            ),
            (0..40)
                .map(|i| format!("w{i} W{i}"))
                .collect::<Vec<_>>()
                .join(" "),
            format!(
                "{} {} {}",
                "A".repeat(MAX_WORD_CHARS),
                "Bb".repeat(MAX_WORD_CHARS),
                "Cc".repeat(MAX_WORD_CHARS / 2)
            ),
            "Éclair HELLO hello Σίσυφος ΟΔΟΣ wörld WÖRLD".into(),
        ];
        // Pseudo-random texts: printable ASCII with letters weighted up,
        // then with characters past ASCII too: letters (lower, upper, final
        // sigma), digits, separators (a dash, a no-break space), an emoji.
        let ascii: Vec<char> = "aAbBzZ09 .,|_-\t\n!xyzXYZ".chars().collect();
        let wide: Vec<char> = "aAzZ09 .,-éÉßΣσΟ٣—\u{a0}🙂ǅ".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for alphabet in [&ascii, &wide] {
            for len in [1, 7, 64, 300] {
                for _ in 0..50 {
                    let text: String = (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            alphabet[(x % alphabet.len() as u64) as usize]
                        })
                        .collect();
                    texts.push(text);
                }
            }
        }
        texts.push(format!(
            "{}é {}",
            "A".repeat(MAX_WORD_CHARS),
            "é".repeat(MAX_WORD_CHARS + 1)
        ));
        for text in &texts {
            assert_eq!(words(text), by_chars(text), "{text:?}");
        }
        // Letters past ASCII are lowercased too.
        assert_eq!(
            words("Grüße, GRÜSSE straße"),
            by_chars("Grüße, GRÜSSE straße")
        );
    }
}
