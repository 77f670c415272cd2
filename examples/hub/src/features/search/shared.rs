//! The search index in Redis, shared by every hub on it: a message sent
//! through any node is found through any other once its node wrote it (a
//! few milliseconds after the send; the tests hold it to a second).
//!
//! Keys, under `<core prefix>-search` (the core's keys are `<prefix>:...`,
//! so the two never meet):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `w:<word>` | zset | `<id>:<room>` -> send time (ms): the messages holding the word |
//! | `m:<room>` | hash | id -> `<send ms> <word> <word>..`: what to undo on edit, delete, eviction |
//! | `r:<room>` | zset | id -> id: the room's indexed ids, for eviction by offset |
//!
//! Writes: a send queues an [`Op`] (bounded: a full queue drops it and
//! counts it, chat never waits on the index) and one task per hub writes
//! the queue in pipelined batches, one round trip per batch of inserts.
//!
//! A query asks each word's count, reads the rarest word's refs newest
//! first in growing batches (`ZRANGE .. BYSCORE REV LIMIT`), checks the
//! other words with one `ZMSCORE` each per batch, asks `may_read` once per
//! room met, and reads each candidate's text back from history. Its cost
//! follows the hits asked for and the rarest word, never the whole
//! history; it examines at most [`MAX_SCAN`] refs. A ref whose message
//! history no longer keeps is removed as the query meets it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot, OnceCell};

use super::{still_matches, words, Hit, Op};

/// Index changes waiting for the writer; more are dropped and counted.
const QUEUE: usize = 65_536;
/// Changes the writer takes from the queue at once (one pipeline).
const BATCH: usize = 512;
/// Refs of the rarest word a query reads first; each further read doubles,
/// up to [`MAX_BATCH`].
const FIRST_BATCH: usize = 64;
const MAX_BATCH: usize = 2048;
/// Most refs one query examines: a word whose newest refs are all in
/// rooms the caller may not read ends the query here, with what it found.
pub const MAX_SCAN: usize = 20_000;
/// Refs of one room removed per round of an eviction, and rounds per op.
const EVICT_BATCH: usize = 512;
const EVICT_ROUNDS: usize = 64;
/// Attempts at writing one batch before it is dropped (and counted).
const WRITE_ATTEMPTS: u32 = 3;
/// One Redis command's time limit.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What reading a candidate back from history gave.
#[derive(Debug)]
pub enum Fetched {
    /// The message as history holds it now.
    Message(serde_json::Value),
    /// History no longer keeps it: its ref goes.
    Gone,
    /// History could not be asked now: skipped, kept.
    Unavailable,
}

/// The key names under one prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn word(&self, word: &str) -> String {
        format!("{}:w:{word}", self.prefix)
    }
    fn room_words(&self, room: &str) -> String {
        format!("{}:m:{room}", self.prefix)
    }
    fn room_ids(&self, room: &str) -> String {
        format!("{}:r:{room}", self.prefix)
    }
}

/// A message's member in the word sets: id first, so any room id parses.
fn member(room: &str, id: u64) -> String {
    format!("{id}:{room}")
}

fn parse_member(member: &str) -> Option<(&str, u64)> {
    let (id, room) = member.split_once(':')?;
    Some((room, id.parse().ok()?))
}

/// The `m:<room>` value: send time, then the words.
fn stored(at_ms: u64, words: &[String]) -> String {
    let mut s = at_ms.to_string();
    for w in words {
        s.push(' ');
        s.push_str(w);
    }
    s
}

fn parse_stored(value: &str) -> Option<(u64, Vec<String>)> {
    let mut parts = value.split(' ');
    let at_ms = parts.next()?.parse().ok()?;
    Some((at_ms, parts.map(str::to_owned).collect()))
}

/// One connection to Redis (multiplexed, reconnecting), made when first
/// needed.
struct Redis {
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
}

impl Redis {
    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let made = self.manager.get_or_try_init(|| {
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(RESPONSE_TIMEOUT)
                .set_connection_timeout(RESPONSE_TIMEOUT)
                .set_number_of_retries(2);
            ConnectionManager::new_with_config(self.client.clone(), config)
        });
        Ok(made.await?.clone())
    }
}

/// The index in Redis: a queue to this hub's writer task, and queries.
pub struct SharedIndex {
    keys: Keys,
    redis: Arc<Redis>,
    queue: mpsc::Sender<Op>,
    /// Changes dropped: queue full, or Redis failed the batch.
    dropped: Arc<AtomicU64>,
}

impl SharedIndex {
    /// The index on the Redis at `url`, under `<core_prefix>-search`; starts
    /// this hub's writer task (needs a Tokio runtime). Connects when first
    /// used.
    pub fn start(url: &str, core_prefix: &str) -> Result<SharedIndex, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        let redis = Arc::new(Redis {
            client,
            manager: OnceCell::new(),
        });
        let keys = Keys {
            prefix: format!("{core_prefix}-search"),
        };
        let (queue, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        runtime.spawn(write_queue(
            rx,
            redis.clone(),
            keys.clone(),
            dropped.clone(),
        ));
        Ok(SharedIndex {
            keys,
            redis,
            queue,
            dropped,
        })
    }

    /// Queues `op` for the writer; drops it (counted) when the queue is full.
    pub fn submit(&self, op: Op) {
        if let Err(e) = self.queue.try_send(op) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, error = %e, "search: index queue full, index changes dropped");
            }
        }
    }

    /// Changes dropped so far (queue full or Redis failing).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Resolves once every change queued before the call is written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Op::Barrier(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Messages that contain every word of `query`, newest first, at most
    /// `limit`, only from rooms `may_read` accepts (asked once per room
    /// met); `fetch` reads a candidate back from history.
    pub async fn search<Fetching, Asked>(
        &self,
        query: &str,
        limit: usize,
        mut may_read: impl FnMut(Arc<str>) -> Asked,
        fetch: impl Fn(Arc<str>, u64) -> Fetching,
    ) -> RedisResult<Vec<Hit>>
    where
        Fetching: Future<Output = Fetched>,
        Asked: Future<Output = bool>,
    {
        let wanted = words(query);
        let mut hits = Vec::new();
        if wanted.is_empty() || limit == 0 {
            return Ok(hits);
        }
        let mut conn = self.redis.connection().await?;
        let mut keys: Vec<String> = wanted.iter().map(|w| self.keys.word(w)).collect();
        if keys.len() > 1 {
            // The rarest word first: its refs are the fewest to walk.
            let mut counting = redis::pipe();
            for k in &keys {
                counting.cmd("ZCARD").arg(k);
            }
            let counts: Vec<u64> = counting.query_async(&mut conn).await?;
            if counts.contains(&0) {
                return Ok(hits);
            }
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| counts[i]);
            keys = order.into_iter().map(|i| keys[i].clone()).collect();
        }
        let (rarest, others) = keys.split_first().expect("at least one word");

        let mut readable: FxHashMap<Arc<str>, bool> = FxHashMap::default();
        // Newest first: scores at most `below`, skipping the `skip` refs
        // already read that carry exactly that score.
        let mut below = f64::INFINITY;
        let mut skip = 0usize;
        let mut batch = FIRST_BATCH;
        let mut scanned = 0usize;
        loop {
            let max = if below.is_finite() {
                below.to_string()
            } else {
                "+inf".to_owned()
            };
            let refs: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(rarest)
                .arg(&max)
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(skip)
                .arg(batch)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await?;
            let exhausted = refs.len() < batch;
            scanned += refs.len();
            for (_, score) in &refs {
                if *score == below {
                    skip += 1;
                } else {
                    below = *score;
                    skip = 1;
                }
            }
            let mut present = vec![true; refs.len()];
            if !others.is_empty() && !refs.is_empty() {
                let mut checking = redis::pipe();
                for k in others {
                    let c = checking.cmd("ZMSCORE").arg(k);
                    for (m, _) in &refs {
                        c.arg(m);
                    }
                }
                let scores: Vec<Vec<Option<f64>>> = checking.query_async(&mut conn).await?;
                for word in scores {
                    for (p, s) in present.iter_mut().zip(word) {
                        *p &= s.is_some();
                    }
                }
            }
            let mut candidates: Vec<(Arc<str>, u64)> = Vec::new();
            for ((m, _), present) in refs.iter().zip(present) {
                let Some((room, id)) = parse_member(m).filter(|_| present) else {
                    continue;
                };
                let room: Arc<str> = match readable.get_key_value(room) {
                    Some((r, true)) => r.clone(),
                    Some((_, false)) => continue,
                    None => {
                        let r: Arc<str> = room.into();
                        let ok = may_read(r.clone()).await;
                        readable.insert(r.clone(), ok);
                        if !ok {
                            continue;
                        }
                        r
                    }
                };
                candidates.push((room, id));
            }
            let mut candidates = candidates.into_iter().peekable();
            while hits.len() < limit && candidates.peek().is_some() {
                let need = limit - hits.len();
                let chunk: Vec<(Arc<str>, u64)> = candidates.by_ref().take(need).collect();
                let reads = chunk.iter().map(|(room, id)| fetch(room.clone(), *id));
                let fetched = futures_util::future::join_all(reads).await;
                for ((room, id), fetched) in chunk.into_iter().zip(fetched) {
                    match fetched {
                        Fetched::Message(message) => {
                            if still_matches(&message, &wanted) {
                                hits.push(Hit {
                                    room: room.to_string(),
                                    message,
                                });
                            }
                        }
                        Fetched::Gone => self.submit(Op::Remove { room, id }),
                        Fetched::Unavailable => {}
                    }
                }
            }
            if hits.len() >= limit || exhausted || scanned >= MAX_SCAN {
                break;
            }
            batch = (batch * 2).min(MAX_BATCH);
        }
        hits.truncate(limit);
        Ok(hits)
    }
}

/// The writer: takes what the queue holds (up to [`BATCH`]) and writes it,
/// until every sender is gone.
async fn write_queue(
    mut rx: mpsc::Receiver<Op>,
    redis: Arc<Redis>,
    keys: Keys,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let written = match redis.connection().await {
                Ok(mut conn) => write_batch(&mut conn, &keys, &batch).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(()) => break,
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "search: writing the index failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    let lost = batch
                        .iter()
                        .filter(|op| !matches!(op, Op::Barrier(_)))
                        .count();
                    dropped.fetch_add(lost as u64, Ordering::Relaxed);
                    tracing::error!(error = %e, lost, "search: index changes dropped, Redis failed");
                    break;
                }
            }
        }
        for op in batch.drain(..) {
            if let Op::Barrier(done) = op {
                let _ = done.send(());
            }
        }
    }
}

/// Writes `ops` in order: runs of inserts in one pipeline, the rest (edits,
/// deletes, evictions: they read what was stored first) one by one.
async fn write_batch(conn: &mut ConnectionManager, keys: &Keys, ops: &[Op]) -> RedisResult<()> {
    let mut inserts = redis::pipe();
    let mut queued = false;
    for op in ops {
        match op {
            Op::Insert {
                room,
                id,
                at_ms,
                words,
            } => {
                insert(&mut inserts, keys, room, *id, *at_ms, words);
                queued = true;
            }
            Op::Barrier(_) => {}
            other => {
                if queued {
                    inserts.query_async::<()>(conn).await?;
                    inserts = redis::pipe();
                    queued = false;
                }
                write_one(conn, keys, other).await?;
            }
        }
    }
    if queued {
        inserts.query_async::<()>(conn).await?;
    }
    Ok(())
}

fn insert(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    room: &str,
    id: u64,
    at_ms: u64,
    words: &[String],
) {
    let m = member(room, id);
    for w in words {
        pipe.cmd("ZADD")
            .arg(keys.word(w))
            .arg(at_ms)
            .arg(&m)
            .ignore();
    }
    pipe.cmd("HSET")
        .arg(keys.room_words(room))
        .arg(id)
        .arg(stored(at_ms, words))
        .ignore();
    pipe.cmd("ZADD")
        .arg(keys.room_ids(room))
        .arg(id)
        .arg(id)
        .ignore();
}

/// Removes `room`'s messages `ids` (with their stored words) from every set.
fn unindex(pipe: &mut redis::Pipeline, keys: &Keys, room: &str, ids: &[(u64, Option<String>)]) {
    for (id, value) in ids {
        let m = member(room, *id);
        if let Some((_, words)) = value.as_deref().and_then(parse_stored) {
            for w in words {
                pipe.cmd("ZREM").arg(keys.word(&w)).arg(&m).ignore();
            }
        }
    }
    if ids.is_empty() {
        return;
    }
    let mut hdel = redis::cmd("HDEL");
    hdel.arg(keys.room_words(room));
    let mut zrem = redis::cmd("ZREM");
    zrem.arg(keys.room_ids(room));
    for (id, _) in ids {
        hdel.arg(id);
        zrem.arg(id);
    }
    pipe.add_command(hdel).ignore();
    pipe.add_command(zrem).ignore();
}

async fn write_one(conn: &mut ConnectionManager, keys: &Keys, op: &Op) -> RedisResult<()> {
    match op {
        Op::Update { room, id, old, new } => {
            let value: Option<String> = redis::cmd("HGET")
                .arg(keys.room_words(room))
                .arg(id)
                .query_async(conn)
                .await?;
            // Not indexed (yet): another node's insert may still be on its
            // way; index the new words now, a search re-checks the text.
            let (at_ms, old) = match value.as_deref().and_then(parse_stored) {
                Some(stored) => stored,
                None => (crate::frames::now_ms(), old.clone()),
            };
            let m = member(room, *id);
            let mut pipe = redis::pipe();
            for w in old.iter().filter(|w| !new.contains(w)) {
                pipe.cmd("ZREM").arg(keys.word(w)).arg(&m).ignore();
            }
            insert(&mut pipe, keys, room, *id, at_ms, new);
            pipe.query_async::<()>(conn).await
        }
        Op::Remove { room, id } => {
            let value: Option<String> = redis::cmd("HGET")
                .arg(keys.room_words(room))
                .arg(id)
                .query_async(conn)
                .await?;
            let mut pipe = redis::pipe();
            unindex(&mut pipe, keys, room, &[(*id, value)]);
            pipe.query_async::<()>(conn).await
        }
        Op::Evict { room, first_kept } => {
            let below = if *first_kept >= 1 << 53 {
                "+inf".to_owned()
            } else {
                format!("({first_kept}")
            };
            for _ in 0..EVICT_ROUNDS {
                let ids: Vec<u64> = redis::cmd("ZRANGE")
                    .arg(keys.room_ids(room))
                    .arg("-inf")
                    .arg(&below)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(EVICT_BATCH)
                    .query_async(conn)
                    .await?;
                if ids.is_empty() {
                    break;
                }
                let values: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(keys.room_words(room))
                    .arg(&ids)
                    .query_async(conn)
                    .await?;
                let pairs: Vec<(u64, Option<String>)> = ids.iter().copied().zip(values).collect();
                let mut pipe = redis::pipe();
                unindex(&mut pipe, keys, room, &pairs);
                pipe.query_async::<()>(conn).await?;
                if ids.len() < EVICT_BATCH {
                    break;
                }
            }
            Ok(())
        }
        Op::Insert { .. } | Op::Barrier(_) => Ok(()),
    }
}

/// A bulk filler for benchmarks: writes `messages` (room, id, send ms,
/// text) straight into the index at `url`, in pipelines of `BATCH`, as the
/// writer task would.
pub async fn fill(
    url: &str,
    core_prefix: &str,
    messages: impl Iterator<Item = (String, u64, u64, String)>,
) -> RedisResult<usize> {
    let client = redis::Client::open(url)?;
    let mut conn = ConnectionManager::new(client).await?;
    let keys = Keys {
        prefix: format!("{core_prefix}-search"),
    };
    let mut pipe = redis::pipe();
    let mut queued = 0;
    let mut total = 0;
    for (room, id, at_ms, text) in messages {
        insert(&mut pipe, &keys, &room, id, at_ms, &words(&text));
        queued += 1;
        total += 1;
        if queued == BATCH {
            pipe.query_async::<()>(&mut conn).await?;
            pipe = redis::pipe();
            queued = 0;
        }
    }
    if queued > 0 {
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_stored_words_round_trip() {
        assert_eq!(parse_member(&member("a:b", 7)), Some(("a:b", 7)));
        assert_eq!(parse_member("x"), None);
        let words = vec!["hello".to_string(), "world".to_string()];
        assert_eq!(parse_stored(&stored(12, &words)), Some((12, words)));
        assert_eq!(parse_stored(&stored(12, &[])), Some((12, vec![])));
    }
}
