//! Durable history (`history_dir`): the in-memory [`History`] windows stay
//! the read path, and every change to them (saved send, replacement, flush,
//! eviction) is also queued here, under the group's lock so each group's
//! changes keep their order, to one writer thread that commits whatever
//! arrived meanwhile in one redb transaction (group commit: the next
//! commit starts as soon as the previous one is done). Nothing here runs
//! under a group's lock except pushing onto the queue; a saved send waits
//! for its commit after it has fanned out and let go of the lock.
//!
//! On disk (one file, `history.redb`), the messages as one log of
//! segments, one a commit:
//!
//! - `messages`: key = a global sequence number (8 bytes big-endian), one
//!   a commit; value = a segment: format (1), the records' length (u64 LE),
//!   the records, each its length (u32 LE) then group name length (u32
//!   LE), group name, offset (u64 LE), kind (1 byte), timestamp (u64 LE),
//!   payload; then the *floors*: for each group with a record in the
//!   segment, name length (u32 LE), name, and the offset below which its
//!   records are gone (u64 LE). One redb insert a commit, whatever the
//!   number of messages and groups in it. A segment stays while any of
//!   its records is live; its dead records (evicted, replaced, flushed)
//!   are recognised at start by their group's floor (the newest segment
//!   holding a group's records carries its floor, and a flush or a start
//!   writes it in the `groups` row) or by a later record of the same
//!   offset. The writer keeps, per group, the `(offset, segment)` of each
//!   live record and, per segment, how many are live (in the writer
//!   thread only): a segment with none is deleted; one under half live
//!   has its live records copied into the next commit's segment, so the
//!   log stays within about twice its live records. At start the log is
//!   read once in sequence order to rebuild every group's window and that
//!   index. Rows below the `meta` row `segments_from` are of the earlier
//!   log layout (2: one message a row, unframed) and are read as one-record
//!   segments: a file of that layout is upgraded in place at start.
//! - `groups`: key = group name; value = format (2), epoch (u64 LE),
//!   reserved (u64 LE), floor (u64 LE) (format 1, without the floor, is
//!   read as floor 0).
//! - `meta`: `messages_layout` = 3, `segments_from` (u64 LE). A file whose
//!   `messages` hold rows without it (the first layout, keyed by group and
//!   offset) is refused with `Storage`, not converted; so is a layout this
//!   build does not know.
//!
//! **Offsets are never reused.** A group hands out an offset only below its
//! *reservation*, a bound committed to disk ahead of use ([`RESERVE`] at a
//! time, renewed when half is used, so a send waits for it only when the
//! writer falls far behind), or while nothing of the group is on disk yet:
//! then its epoch is not on disk either, and a crash leaves its clients
//! with an epoch the next start never issued, which tells them their
//! offsets no longer hold.
//! A restart continues from the reservation: after a clean shutdown the
//! writer lowers it to the next unused offset (no gap); after a crash the
//! offsets handed out but never committed are skipped, so a client that
//! saw one live never sees it reused.
//!
//! **Failures.** A commit that fails (disk full, I/O error) fails the sends
//! waiting on it with [`Error::Storage`] naming the OS error; those
//! messages were already delivered live and stay in the memory window. The
//! failed batch is kept and retried every second; while it cannot be
//! written every saved send, replacement and flush is refused with
//! `Storage` (nothing new gets an offset), and once a retry succeeds the
//! batch is on disk and writes are accepted again. If the process stops
//! before that, the failed batch is lost; its senders were told.
//!
//! **Bad data.** A record (or a segment's framing or floors) that does
//! not decode is skipped and counted (`history_store_skipped_rows`); a
//! segment that does not decode whole is never deleted or rewritten. A file that cannot be opened at all
//! (not a redb file, unreadable, locked by another hub) makes the hub
//! refuse to start with `Storage` naming the file: the operator decides
//! whether to move it aside, nothing is discarded behind their back.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
// The writer looks a group up by name for every message it writes: FxHash,
// as the hub's own group maps (a SipHash of the name was ~40 % of the
// writer's own instructions a message).
use rustc_hash::FxHashMap as HashMap;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::history::{new_epoch, Bounds, History};
use crate::message::{Kind, Message};

mod nosync;

/// Offsets reserved on disk at a time for one group.
pub(crate) const RESERVE: u64 = 4096;

/// Without `history_commit_interval_ms`, the least time between the starts
/// of two commits: a commit that follows another closer than this waits
/// the rest (changes keep joining it), one after a quiet spell starts at
/// once. Each redb commit costs ~250 000 instructions whatever it holds,
/// and as much again in the kernel (the fsync's write-back), plus a
/// wake-up of every task waiting on it, so under load this sets how many
/// messages share that cost.
const SPACING: Duration = Duration::from_millis(2);

/// Under sustained load the spacing grows, doubling at each commit that
/// carried at least [`BUSY_CHANGES`] changes, up to this; a commit with
/// fewer brings it back to [`SPACING`]. Light traffic keeps ~2 ms
/// between commits (and a lone send commits at once); a saturated store
/// commits about every 32 ms. Most of a commit's cost is the kernel's
/// (the fdatasync's write-back: ~0.5-0.7 ms of CPU a commit on a virtio
/// disk, whatever it holds), so fewer, larger commits are what makes a
/// saturated disk hub cost about what a memory hub does; the price is
/// acks up to ~32 ms later under that load, never the live fan-out,
/// which does not wait for the disk (BENCHMARKS.md, "Fewer commits
/// under sustained load": at 8 ms the disk hub spent 1.11-1.22x the
/// memory hub's CPU a delivery in scenario d, at 32 ms 1.04-1.14x).
const MAX_SPACING: Duration = Duration::from_millis(32);

/// A commit with at least this many changes counts as load (see
/// [`MAX_SPACING`]): 8 in 2 ms is 4,000 saved sends a second. 8 and not
/// 64: one sender's burst to a large room (the referee's scenario a, 200
/// messages to 1,000 members each) fans out slowly, so its commits carry
/// 10-16 messages; at 64 they never counted as load and each paid the
/// whole commit (disk 1.22x memory in CPU a delivery in a, against 1.11x
/// at 8, same runs; BENCHMARKS.md, "Fewer commits under sustained
/// load").
const BUSY_CHANGES: usize = 8;

/// The spacing after a commit of `changes` changes, `spacing` being the
/// one before it.
fn next_spacing(spacing: Duration, changes: usize) -> Duration {
    if changes >= BUSY_CHANGES {
        (spacing * 2).min(MAX_SPACING)
    } else {
        SPACING
    }
}

/// How long the writer waits before retrying a failed commit.
const RETRY: Duration = Duration::from_secs(1);

/// The store's file inside `history_dir`.
pub(crate) const FILE_NAME: &str = "history.redb";

const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
const GROUPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("groups");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The `meta` key of the `messages` layout.
const LAYOUT_KEY: &str = "messages_layout";
/// The `messages` layout this build writes: a log of segments keyed by
/// sequence, one a commit.
const LAYOUT: u8 = 3;
/// The earlier log layout (one message a row), read and upgraded in place.
const LOG_LAYOUT: u8 = 2;
/// The `meta` key of the first sequence number that is a segment (rows
/// below it are of the log layout).
const SEGMENTS_FROM_KEY: &str = "segments_from";
/// The format byte of a `groups` value (1: without the floor).
const GROUP_FORMAT: u8 = 2;

/// The durable history store of one hub.
pub(crate) struct Store {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// What the hub's threads and the writer share.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer: work arrived, or the hub is closing.
    wake: Condvar,
    /// Set while commits fail; every write is refused meanwhile.
    failing: AtomicBool,
    /// Why the last commit failed (for the refusals' message).
    failure: Mutex<String>,
    commits: AtomicU64,
    failed_commits: AtomicU64,
    skipped_rows: AtomicU64,
    /// The outcomes of the commits done.
    outcomes: Outcomes,
}

/// Changes waiting for the next commit, and that commit's number.
struct Queue {
    ops: Vec<Op>,
    commit: Commit,
    closing: bool,
}

/// One change to write.
enum Op {
    /// A saved message (a send, or a replacement at the same offset), and
    /// the group's oldest kept offset after it (older rows are evicted).
    /// The message itself, as history holds it: one reference-count
    /// increment, not a copy of its group name and payload handles.
    Put { message: Message, first_kept: u64 },
    /// Every row of the group goes; it has a new epoch.
    Flush { group: Arc<str>, epoch: u64 },
    /// Offsets below `upto` may be handed out once this is committed.
    Reserve {
        group: Arc<str>,
        upto: u64,
        epoch: u64,
        cell: Reservation,
    },
}

/// A group's offset reservation, shared by its history (under the group's
/// lock) and the writer (which raises `committed` after a commit).
#[derive(Debug, Clone, Default)]
pub(crate) struct Reservation(Arc<ReservationCell>);

#[derive(Debug, Default)]
struct ReservationCell {
    /// Offsets below this are on disk as reserved.
    committed: AtomicU64,
    /// The highest reservation asked for (under the group's lock).
    asked: AtomicU64,
}

/// What a save must do before it takes an offset.
pub(crate) enum Admit {
    /// The offset is reserved: go ahead.
    Go,
    /// Wait for this commit (outside the group's lock), then try again.
    Wait(Commit),
}

/// The commit a change joined: commits are numbered from 1 in the order
/// they complete (a failed commit has its number too; its retry is a later
/// one). 0 is "nothing to wait for". A plain number, so a saved send hands
/// it back without a shared allocation or a lock: the outcome is read
/// from the store's atomics ([`Store::outcome`]), waited for once per
/// commit by any number of waiters ([`Store::wait`], [`Store::done`]).
pub(crate) type Commit = u64;

/// What the writer publishes of the commits that completed, read with
/// atomic loads by the senders and their hosts.
#[derive(Default)]
struct Outcomes {
    /// The newest commit whose outcome is known (all older ones are too).
    done: AtomicU64,
    /// The newest commit that failed (0: none ever did). A commit above it
    /// and at most `done` succeeded, told by two loads.
    last_failed: AtomicU64,
    /// The failed commits, as ranges `(first, last, why)` of consecutive
    /// numbers (a disk that stays full fails every retry: one range),
    /// oldest first, at most [`FAILURES_KEPT`].
    failures: Mutex<VecDeque<(u64, u64, Arc<str>)>>,
    /// The futures waiting for a commit, all woken at each commit, and
    /// how many times the list was emptied so (a future registered in this
    /// round is still listed: polled again, it does not add itself twice).
    wakers: Mutex<(u64, Vec<Waker>)>,
    /// Blocking waiters wait on `cond` under `lock`.
    lock: Mutex<()>,
    cond: Condvar,
}

/// How many failure ranges [`Outcomes`] remembers; a commit older than the
/// oldest kept one and not after a success it could tell reads as failed
/// (never reported durable when it was not).
const FAILURES_KEPT: usize = 1024;

impl Outcomes {
    /// Commit `seq` (and every one before it) is done: `result` its
    /// outcome. Wakes its waiters.
    fn complete(&self, seq: u64, result: Result<(), String>) {
        self.complete_range(seq, seq, result);
    }

    /// Commits `first..=last` are done with `result` (after the writer
    /// panicked: every one from the next on, `last` = `u64::MAX`).
    fn complete_range(&self, first: u64, last: u64, result: Result<(), String>) {
        if let Err(why) = result {
            let mut f = self.failures.lock();
            match f.back_mut() {
                Some(back) if back.1.saturating_add(1) >= first => back.1 = back.1.max(last),
                _ => {
                    if f.len() == FAILURES_KEPT {
                        f.pop_front();
                    }
                    f.push_back((first, last, why.into()));
                }
            }
            drop(f);
            self.last_failed.fetch_max(last, Ordering::Release);
        }
        self.done.fetch_max(last, Ordering::Release);
        // Taken and woken outside the lock: a waker may poll at once.
        let wakers = {
            let mut w = self.wakers.lock();
            w.0 += 1;
            std::mem::take(&mut w.1)
        };
        drop(self.lock.lock());
        self.cond.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// Commit `seq`'s outcome, `None` while it is under way.
    fn outcome(&self, seq: u64) -> Option<Result<()>> {
        if seq > self.done.load(Ordering::Acquire) {
            return None;
        }
        if seq > self.last_failed.load(Ordering::Acquire) {
            return Some(Ok(()));
        }
        let f = self.failures.lock();
        let failed = match f.iter().rev().find(|r| r.0 <= seq) {
            Some((_, last, why)) if seq <= *last => Some(why.to_string()),
            Some(_) => None,
            // Older than every range kept: unknown, so not durable.
            None if f.len() == FAILURES_KEPT => {
                Some("the outcome of this commit is no longer known".into())
            }
            None => None,
        };
        Some(failed.map_or(Ok(()), |why| Err(Error::Storage(why))))
    }
}

/// Resolves when a commit is done (see [`Store::done`]).
pub(crate) struct Done {
    shared: Arc<Shared>,
    seq: u64,
    /// The round of [`Outcomes::wakers`] this future is listed in, with
    /// the waker it left there.
    listed: Option<(u64, Waker)>,
}

impl std::future::Future for Done {
    type Output = Result<()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<()>> {
        let this = &mut *self;
        let o = &this.shared.outcomes;
        if let Some(r) = o.outcome(this.seq) {
            return Poll::Ready(r);
        }
        let mut wakers = o.wakers.lock();
        // Checked again under the lock: the writer publishes `done` before
        // it takes the wakers, so a commit that completed meanwhile is seen.
        if let Some(r) = o.outcome(this.seq) {
            return Poll::Ready(r);
        }
        let listed = matches!(&this.listed, Some((round, w)) if *round == wakers.0 && w.will_wake(cx.waker()));
        if !listed {
            wakers.1.push(cx.waker().clone());
            this.listed = Some((wakers.0, cx.waker().clone()));
        }
        Poll::Pending
    }
}

/// Counters the hub's stats report.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StoreStats {
    pub(crate) commits: u64,
    pub(crate) failed_commits: u64,
    pub(crate) skipped_rows: u64,
    pub(crate) failing: bool,
}

/// A group read back at start.
pub(crate) struct Restored {
    pub(crate) name: Arc<str>,
    pub(crate) history: History,
}

impl Store {
    /// Opens (or creates) the store in `config.history_dir`, reads every
    /// group's epoch, next offset and window within `bounds`, trims what
    /// lies outside the bounds, reserves offsets ahead, and starts the
    /// writer.
    pub(crate) fn open(
        config: &Config,
        bounds: Bounds,
        now_ms: u64,
    ) -> Result<(Store, Vec<Restored>)> {
        let dir = PathBuf::from(&config.history_dir);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Storage(format!("cannot create history_dir {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE_NAME);
        let db = Db::open(&path, config.history_fsync)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                ops: Vec::new(),
                commit: 1,
                closing: false,
            }),
            wake: Condvar::new(),
            failing: AtomicBool::new(false),
            failure: Mutex::new(String::new()),
            commits: AtomicU64::new(0),
            failed_commits: AtomicU64::new(0),
            skipped_rows: AtomicU64::new(0),
            outcomes: Outcomes::default(),
        });
        let (restored, index) = load(&db, bounds, now_ms, &shared.skipped_rows)
            .map_err(|e| Error::Storage(format!("cannot read {}: {e}", path.display())))?;
        let writer = Writer {
            db,
            index,
            stale: false,
            path,
            linger: Duration::from_millis(config.history_commit_interval_ms),
            buf: Vec::new(),
        };
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("cbx-history".into())
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| writer.run(&shared));
                    if std::panic::catch_unwind(run).is_err() {
                        // A bug: refuse every write from now on rather
                        // than leave senders waiting for commits that
                        // never come.
                        *shared.failure.lock() = "the writer thread panicked".into();
                        shared.failing.store(true, Ordering::Release);
                        let mut q = shared.queue.lock();
                        q.ops.clear();
                        drop(q);
                        let first = shared.outcomes.done.load(Ordering::Acquire) + 1;
                        shared.outcomes.complete_range(
                            first,
                            u64::MAX,
                            Err("the writer thread panicked".into()),
                        );
                    }
                })
                .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?
        };
        Ok((
            Store {
                shared,
                writer: Some(thread),
            },
            restored,
        ))
    }

    /// Refuses writes while commits fail.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.shared.failing.load(Ordering::Acquire) {
            return Err(Error::Storage(format!(
                "cannot write, nothing is saved until a retry succeeds: {}",
                self.shared.failure.lock()
            )));
        }
        Ok(())
    }

    /// Before a save to `group` takes `history.next_offset()`: refuses it
    /// while commits fail, asks for more offsets when half the reservation
    /// is used, and says to wait when the offset is not reserved yet.
    /// Called under the group's lock; out of line, as only the durable
    /// path needs it.
    #[inline(never)]
    pub(crate) fn admit(&self, group: &Arc<str>, history: &mut History) -> Result<Admit> {
        self.check_writable()?;
        let offset = history.next_offset();
        let epoch = history.epoch;
        let r = history.durable.get_or_insert_with(Reservation::default);
        let asked = r.0.asked.load(Ordering::Relaxed);
        let committed = r.0.committed.load(Ordering::Acquire);
        if committed == 0 {
            // Nothing of this history is on disk yet (a new group, or one
            // made again), so its epoch is not either: after a crash its
            // clients hold an epoch the disk never had, and are told. That
            // covers the offsets below the first reservation asked for
            // (whatever commits first holds at least that much).
            let first = if asked == 0 {
                let upto = offset + RESERVE;
                r.0.asked.store(upto, Ordering::Relaxed);
                self.push(Op::Reserve {
                    group: group.clone(),
                    upto,
                    epoch,
                    cell: r.clone(),
                });
                upto
            } else {
                asked
            };
            if offset < first {
                return Ok(Admit::Go);
            }
            let commit = self.push(Op::Reserve {
                group: group.clone(),
                upto: first,
                epoch,
                cell: r.clone(),
            });
            return Ok(Admit::Wait(commit));
        }
        let reserved = offset < committed;
        if reserved && asked > offset + RESERVE / 2 {
            return Ok(Admit::Go);
        }
        // Ask for more ahead of use; when the offset is not reserved yet,
        // ask again (the earlier request may sit in a commit under way)
        // and wait for this one.
        let upto = asked.max(offset + RESERVE);
        r.0.asked.store(upto, Ordering::Relaxed);
        let commit = self.push(Op::Reserve {
            group: group.clone(),
            upto,
            epoch,
            cell: r.clone(),
        });
        Ok(if reserved {
            Admit::Go
        } else {
            Admit::Wait(commit)
        })
    }

    /// Queues a saved message (send or replacement). Under the group's lock.
    #[inline(never)]
    pub(crate) fn put(&self, message: &Message, first_kept: u64) -> Commit {
        debug_assert!(
            message.0.group.is_some(),
            "saved messages belong to a group"
        );
        self.push(Op::Put {
            message: message.clone(),
            first_kept,
        })
    }

    /// Queues a flush (every row goes, new epoch). Under the group's lock.
    pub(crate) fn flush(&self, group: &Arc<str>, epoch: u64) -> Commit {
        self.push(Op::Flush {
            group: group.clone(),
            epoch,
        })
    }

    fn push(&self, op: Op) -> Commit {
        let mut q = self.shared.queue.lock();
        let was_empty = q.ops.is_empty();
        q.ops.push(op);
        let commit = q.commit;
        drop(q);
        if was_empty {
            self.shared.wake.notify_one();
        }
        commit
    }

    /// Commit `commit`'s outcome, `None` while it is under way: two atomic
    /// loads unless some commit failed.
    pub(crate) fn outcome(&self, commit: Commit) -> Option<Result<()>> {
        self.shared.outcomes.outcome(commit)
    }

    /// The newest commit whose outcome is known.
    pub(crate) fn done_up_to(&self) -> Commit {
        self.shared.outcomes.done.load(Ordering::Acquire)
    }

    /// Blocks until commit `commit` is done.
    pub(crate) fn wait(&self, commit: Commit) -> Result<()> {
        let o = &self.shared.outcomes;
        if let Some(r) = o.outcome(commit) {
            return r;
        }
        let mut lock = o.lock.lock();
        loop {
            if let Some(r) = o.outcome(commit) {
                return r;
            }
            o.cond.wait(&mut lock);
        }
    }

    /// Resolves when commit `commit` is done; never blocks.
    pub(crate) fn done(&self, commit: Commit) -> Done {
        Done {
            shared: self.shared.clone(),
            seq: commit,
            listed: None,
        }
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let s = &self.shared;
        StoreStats {
            commits: s.commits.load(Ordering::Relaxed),
            failed_commits: s.failed_commits.load(Ordering::Relaxed),
            skipped_rows: s.skipped_rows.load(Ordering::Relaxed),
            failing: s.failing.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Store {
    /// Commits what is queued and lowers every reservation to the next
    /// unused offset (a clean restart leaves no gap), then stops the writer.
    fn drop(&mut self) {
        self.shared.queue.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

// ----- the file --------------------------------------------------------

/// The open redb database (reopened after an I/O error, which leaves redb
/// refusing every later operation).
struct Db {
    db: Option<redb::Database>,
    path: PathBuf,
    fsync: bool,
}

impl Db {
    fn open(path: &Path, fsync: bool) -> Result<Db> {
        let db = open_database(path, fsync).map_err(|e| {
            Error::Storage(format!(
                "cannot open {}: {e} (move the file aside to start with an empty history)",
                path.display()
            ))
        })?;
        Ok(Db {
            db: Some(db),
            path: path.to_owned(),
            fsync,
        })
    }

    fn get(&mut self) -> Result<&redb::Database, String> {
        if self.db.is_none() {
            let db = open_database(&self.path, self.fsync)
                .map_err(|e| format!("cannot reopen {}: {e}", self.path.display()))?;
            self.db = Some(db);
        }
        Ok(self.db.as_ref().expect("just opened"))
    }
}

/// redb's page cache for the history file. Reads come from the memory
/// windows, so the cache serves only the writer's B-tree pages (the
/// `groups` rows, the `messages` tree's branches) and the load at start,
/// which reads each page once. redb moves every page a commit wrote into
/// its read cache until the cache is full and keeps them there (least
/// recently used first out): the cache is always full, so its size is
/// memory the hub holds whatever it serves. 512 KiB keeps the writer's
/// hot pages; at 5,000 idle connections 2 MiB was ~200 B of RSS a
/// connection more, and in scenario d the writer thread's CPU was the same
/// at 2 MiB, 1 MiB and 512 KiB (BENCHMARKS.md). Half of it bounds what a
/// commit buffers before writing pages out early.
const CACHE_BYTES: usize = 512 << 10;

fn open_database(path: &Path, fsync: bool) -> Result<redb::Database, redb::DatabaseError> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    if fsync {
        builder.create(path)
    } else {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let backend = nosync::NoSync::new(file)?;
        builder.create_with_backend(backend)
    }
}

/// What the writer remembers of one group to keep its `groups` row right.
#[derive(Debug, Clone, Copy)]
struct Meta {
    epoch: u64,
    /// The reservation on disk.
    reserved: u64,
    /// One past the newest offset put (the reservation a clean close
    /// leaves, so the next start has no gap).
    next: u64,
    /// The group's records below this offset are gone (flushed, evicted),
    /// whatever copies partly live segments still hold.
    floor: u64,
}

/// A group's records on disk, `(offset, segment)`, oldest offset first.
type Rows = VecDeque<(u64, u64)>;

/// What the writer knows of one group's records in the log.
#[derive(Default)]
struct GroupLog {
    rows: Rows,
    /// Offsets below this are gone (evicted or flushed).
    floor: u64,
    /// The last segment whose floors list this group.
    mark: u64,
    /// One past the newest offset put in the commit being written (0:
    /// none), folded into the group's [`Meta::next`] once per commit
    /// rather than looked up for every message.
    put_next: u64,
}

/// How many records a segment holds, and how many of them are live (not
/// evicted, replaced or flushed since).
#[derive(Debug, Clone, Copy, Default)]
struct Seg {
    live: u32,
    total: u32,
}

/// Records that row `seq` holds `offset` of its group; returns the row it
/// supersedes (a replacement), whose record is then dead.
fn place(rows: &mut Rows, offset: u64, seq: u64) -> Option<u64> {
    match rows.back() {
        Some(&(last, _)) if offset <= last => match rows.binary_search_by_key(&offset, |r| r.0) {
            Ok(i) => Some(std::mem::replace(&mut rows[i].1, seq)),
            Err(i) => {
                rows.insert(i, (offset, seq));
                None
            }
        },
        _ => {
            rows.push_back((offset, seq));
            None
        }
    }
}

/// One record of segment `seg` is dead: a segment with no live record is
/// deleted (`dead`), one under half live is copied forward (`compact`).
/// The segment being written (`cur`) only counts.
fn release(
    segs: &mut HashMap<u64, Seg>,
    compact: &mut Vec<u64>,
    dead: &mut Vec<u64>,
    cur: u64,
    seg: u64,
) {
    let Some(s) = segs.get_mut(&seg) else {
        // A segment that did not decode whole: left alone.
        return;
    };
    let was_half = s.live * 2 >= s.total;
    s.live = s.live.saturating_sub(1);
    if seg == cur {
        return;
    }
    if s.live == 0 {
        segs.remove(&seg);
        dead.push(seg);
    } else if was_half && s.live * 2 < s.total {
        compact.push(seg);
    }
}

/// Appends a message (group name length u32 LE, name, offset u64 LE, kind,
/// timestamp u64 LE, payload) to `v`.
fn encode_message(v: &mut Vec<u8>, group: &str, offset: u64, kind: Kind, ts_ms: u64, data: &[u8]) {
    v.reserve(4 + group.len() + 17 + data.len());
    v.extend_from_slice(&(group.len() as u32).to_le_bytes());
    v.extend_from_slice(group.as_bytes());
    v.extend_from_slice(&offset.to_le_bytes());
    v.push(match kind {
        Kind::Json => 1,
        Kind::Text => 2,
        Kind::Binary => 3,
    });
    v.extend_from_slice(&ts_ms.to_le_bytes());
    v.extend_from_slice(data);
}

/// The format byte of a segment.
const SEGMENT_FORMAT: u8 = 1;
/// A segment's header: format, then the records' length (u64 LE).
const SEGMENT_HEADER: usize = 9;

/// Starts a segment in `v` (cleared first).
fn begin_segment(v: &mut Vec<u8>) {
    v.clear();
    v.push(SEGMENT_FORMAT);
    v.extend_from_slice(&[0; 8]);
}

/// Appends one record: its length (u32 LE), then the message.
fn push_record(v: &mut Vec<u8>, group: &str, offset: u64, kind: Kind, ts_ms: u64, data: &[u8]) {
    let at = v.len();
    v.extend_from_slice(&[0; 4]);
    encode_message(v, group, offset, kind, ts_ms, data);
    let len = (v.len() - at - 4) as u32;
    v[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends a record copied from another segment.
fn push_raw_record(v: &mut Vec<u8>, body: &[u8]) {
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
}

/// Ends the records of the segment in `v`; its floors follow.
fn end_records(v: &mut [u8]) {
    let len = (v.len() - SEGMENT_HEADER) as u64;
    v[1..SEGMENT_HEADER].copy_from_slice(&len.to_le_bytes());
}

/// Appends a floor: group name length (u32 LE), name, offset (u64 LE).
fn push_floor(v: &mut Vec<u8>, group: &str, floor: u64) {
    v.extend_from_slice(&(group.len() as u32).to_le_bytes());
    v.extend_from_slice(group.as_bytes());
    v.extend_from_slice(&floor.to_le_bytes());
}

/// The records of a `messages` row, in order.
struct Records<'a> {
    /// A row of the earlier layout: one message, not framed.
    single: Option<&'a [u8]>,
    rest: &'a [u8],
    /// Set when the framing broke (the rest is skipped).
    broken: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(s) = self.single.take() {
            return Some(s);
        }
        if self.rest.is_empty() {
            return None;
        }
        let body = self.rest.get(..4).and_then(|n| {
            let n = u32::from_le_bytes(n.try_into().ok()?) as usize;
            self.rest.get(4..4usize.checked_add(n)?)
        });
        match body {
            Some(body) => {
                self.rest = &self.rest[4 + body.len()..];
                Some(body)
            }
            None => {
                self.broken = true;
                self.rest = &[];
                None
            }
        }
    }
}

/// The floors of a segment: `(group, offset)`.
struct Floors<'a> {
    rest: &'a [u8],
    broken: bool,
}

impl<'a> Iterator for Floors<'a> {
    type Item = (&'a str, u64);

    fn next(&mut self) -> Option<(&'a str, u64)> {
        if self.rest.is_empty() {
            return None;
        }
        let floor = (|| {
            let n = u32::from_le_bytes(self.rest.get(..4)?.try_into().ok()?) as usize;
            let name = std::str::from_utf8(self.rest.get(4..4usize.checked_add(n)?)?).ok()?;
            let at = 4 + n;
            let floor = u64::from_le_bytes(self.rest.get(at..at + 8)?.try_into().ok()?);
            Some((name, floor, at + 8))
        })();
        match floor {
            Some((name, floor, used)) => {
                self.rest = &self.rest[used..];
                Some((name, floor))
            }
            None => {
                self.broken = true;
                self.rest = &[];
                None
            }
        }
    }
}

/// Splits a `messages` row into its records and floors: a row below
/// `segments_from` (the earlier layout) is one message; `None` when the
/// segment's header does not decode.
fn split_row(seq: u64, segments_from: u64, value: &[u8]) -> Option<(Records<'_>, Floors<'_>)> {
    if seq < segments_from {
        return Some((
            Records {
                single: Some(value),
                rest: &[],
                broken: false,
            },
            Floors {
                rest: &[],
                broken: false,
            },
        ));
    }
    if value.len() < SEGMENT_HEADER || value[0] != SEGMENT_FORMAT {
        return None;
    }
    let len = usize::try_from(u64::from_le_bytes(
        value[1..SEGMENT_HEADER].try_into().ok()?,
    ))
    .ok()?;
    let end = SEGMENT_HEADER.checked_add(len)?;
    let records = value.get(SEGMENT_HEADER..end)?;
    Some((
        Records {
            single: None,
            rest: records,
            broken: false,
        },
        Floors {
            rest: &value[end..],
            broken: false,
        },
    ))
}

/// The sequence number of a `messages` key.
fn decode_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The group name and offset of a record, and the rest of it.
fn decode_header(value: &[u8]) -> Option<(&str, u64, &[u8])> {
    let len = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
    let rest = &value[4..];
    let name = std::str::from_utf8(rest.get(..len)?).ok()?;
    let rest = &rest[len..];
    let offset = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    (!name.is_empty() && offset != 0).then_some((name, offset, &rest[8..]))
}

/// The message in the rest of a record (after its header), or `None` when
/// it does not decode.
fn decode_message(group: &Arc<str>, offset: u64, rest: &[u8]) -> Option<Message> {
    let (&kind, rest) = rest.split_first()?;
    let kind = match kind {
        1 => Kind::Json,
        2 => Kind::Text,
        3 => Kind::Binary,
        _ => return None,
    };
    let ts_ms = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let data = &rest[8..];
    if kind.validate(data).is_err() {
        return None;
    }
    Some(Message::new(
        kind,
        Bytes::copy_from_slice(data),
        Some(group.clone()),
        offset,
        ts_ms,
    ))
}

fn encode_group(meta: &Meta) -> [u8; 25] {
    let mut v = [0u8; 25];
    v[0] = GROUP_FORMAT;
    v[1..9].copy_from_slice(&meta.epoch.to_le_bytes());
    v[9..17].copy_from_slice(&meta.reserved.to_le_bytes());
    v[17..].copy_from_slice(&meta.floor.to_le_bytes());
    v
}

/// `(epoch, reserved, floor)` of a `groups` row (format 1, written before
/// segments, has no floor), or `None` when it does not decode.
fn decode_group(value: &[u8]) -> Option<(u64, u64, u64)> {
    let floor = match (value.len(), value.first()) {
        (17, Some(1)) => 0,
        (25, Some(&GROUP_FORMAT)) => u64::from_le_bytes(value[17..].try_into().ok()?),
        _ => return None,
    };
    let epoch = u64::from_le_bytes(value[1..9].try_into().ok()?);
    let reserved = u64::from_le_bytes(value[9..17].try_into().ok()?);
    (epoch != 0 && reserved >= 1).then_some((epoch, reserved, floor))
}

/// Checks the `messages` layout of the file, records it in a new one, and
/// upgrades a file of the log layout (2) in place: its rows stay as they
/// are, each read as one message, and new rows are segments. Returns the
/// first sequence number that is a segment.
fn check_layout(tx: &redb::WriteTransaction) -> Result<u64, String> {
    let e = |e: redb::Error| e.to_string();
    let mut meta = tx.open_table(META).map_err(|x| e(x.into()))?;
    let layout = meta
        .get(LAYOUT_KEY)
        .map_err(|x| e(x.into()))?
        .map(|v| v.value().to_vec());
    let from = meta
        .get(SEGMENTS_FROM_KEY)
        .map_err(|x| e(x.into()))?
        .map(|v| v.value().to_vec());
    match layout.as_deref() {
        Some([LAYOUT]) => match from.as_deref().map(<[u8; 8]>::try_from) {
            Some(Ok(from)) => Ok(u64::from_le_bytes(from)),
            _ => Err(format!(
                "its meta row {SEGMENTS_FROM_KEY:?} is missing or unreadable; \
                 move the file aside to start with an empty history"
            )),
        },
        Some([LOG_LAYOUT]) => {
            // Every row so far is one message; segments start after them.
            let messages = tx.open_table(MESSAGES).map_err(|x| e(x.into()))?;
            let last = messages.last().map_err(|x| e(x.into()))?;
            let from = match last {
                Some((k, _)) => decode_seq(k.value()).map_or(1, |s| s + 1),
                None => 1,
            };
            meta.insert(LAYOUT_KEY, &[LAYOUT][..])
                .map_err(|x| e(x.into()))?;
            meta.insert(SEGMENTS_FROM_KEY, &from.to_le_bytes()[..])
                .map_err(|x| e(x.into()))?;
            Ok(from)
        }
        Some(other) => Err(format!(
            "its messages layout {other:?} is not one this build reads ({LOG_LAYOUT} or \
             {LAYOUT}); move the file aside to start with an empty history"
        )),
        None => {
            let messages = tx.open_table(MESSAGES).map_err(|x| e(x.into()))?;
            if !messages.is_empty().map_err(|x| e(x.into()))? {
                return Err(
                    "its messages have the layout of an earlier build (keyed by \
                            group and offset), which this build does not read or convert; \
                            move the file aside to start with an empty history"
                        .into(),
                );
            }
            meta.insert(LAYOUT_KEY, &[LAYOUT][..])
                .map_err(|x| e(x.into()))?;
            meta.insert(SEGMENTS_FROM_KEY, &0u64.to_le_bytes()[..])
                .map_err(|x| e(x.into()))?;
            Ok(0)
        }
    }
}

/// A group as the log is read at start.
#[derive(Default)]
struct Loading {
    /// Its window so far (the newest rows within the bounds).
    window: VecDeque<Message>,
    bytes: usize,
    /// Rows up to this offset are outside the bounds (a newer one made
    /// the window full, or is too old).
    dropped: u64,
    /// The newest offset in a row, even one that does not decode: it was
    /// handed out once.
    newest: u64,
}

type Loaded = (Vec<Restored>, Index);

/// What the writer knows of the disk: each group's `groups` row and
/// records, each segment's live records, and the next sequence number.
#[derive(Default)]
struct Index {
    metas: HashMap<Arc<str>, Meta>,
    groups: HashMap<Arc<str>, GroupLog>,
    segs: HashMap<u64, Seg>,
    /// Segments that fell under half live, to copy forward.
    compact: Vec<u64>,
    next_seq: u64,
    /// Rows below this sequence are of the log layout (one message each).
    segments_from: u64,
}

/// Reads the log once in sequence order into `index` (each group's
/// records and floor, each segment's record count), calling `row` with
/// every record whose header decodes (a later record for the same offset
/// of a group supersedes the earlier one, flagged). Records below their
/// group's floor are still in `index.groups` afterwards: see [`settle`].
fn scan(
    messages: &redb::Table<&[u8], &[u8]>,
    index: &mut Index,
    skip: &dyn Fn(),
    mut row: impl FnMut(&Arc<str>, u64, &[u8], bool),
) -> Result<(), Box<dyn std::error::Error>> {
    index.groups.clear();
    index.segs.clear();
    index.compact.clear();
    let mut next_seq = index.segments_from.max(1);
    for entry in messages.iter()? {
        let (k, v) = entry?;
        let Some(seq) = decode_seq(k.value()) else {
            skip();
            continue;
        };
        next_seq = next_seq.max(seq + 1);
        let Some((mut records, mut floors)) = split_row(seq, index.segments_from, v.value()) else {
            skip();
            continue;
        };
        let mut whole = true;
        let mut total = 0u32;
        for body in records.by_ref() {
            let Some((name, offset, rest)) = decode_header(body) else {
                skip();
                whole = false;
                continue;
            };
            let name: Arc<str> = match index.groups.get_key_value(name) {
                Some((name, _)) => name.clone(),
                None => Arc::from(name),
            };
            let g = index.groups.entry(name.clone()).or_default();
            let replaces = place(&mut g.rows, offset, seq).is_some();
            total += 1;
            row(&name, offset, rest, replaces);
        }
        for (name, floor) in floors.by_ref() {
            match index.groups.get_mut(name) {
                Some(g) => g.floor = g.floor.max(floor),
                None => {
                    let g = index.groups.entry(Arc::from(name)).or_default();
                    g.floor = floor;
                }
            }
        }
        if records.broken || floors.broken {
            skip();
            whole = false;
        }
        if whole {
            index.segs.insert(seq, Seg { live: 0, total });
        }
        // A segment that did not decode whole is never deleted or
        // rewritten: its records that decode are read, the rest is left
        // on disk as it is.
    }
    index.next_seq = next_seq;
    Ok(())
}

/// After [`scan`]: drops each group's records below its floor (the
/// `groups` rows' floors in `floors`), counts every segment's live
/// records, deletes the segments with none, and lists those under half
/// live for copying forward.
fn settle(
    messages: &mut redb::Table<&[u8], &[u8]>,
    index: &mut Index,
) -> Result<(), Box<dyn std::error::Error>> {
    for (name, g) in index.groups.iter_mut() {
        if let Some(m) = index.metas.get(name) {
            g.floor = g.floor.max(m.floor);
        }
        while g.rows.front().is_some_and(|r| r.0 < g.floor) {
            g.rows.pop_front();
        }
        for &(_, seg) in &g.rows {
            if let Some(s) = index.segs.get_mut(&seg) {
                s.live += 1;
            }
        }
    }
    let mut dead = Vec::new();
    for (&seq, s) in &index.segs {
        if s.live == 0 {
            dead.push(seq);
        } else if s.live * 2 < s.total {
            index.compact.push(seq);
        }
    }
    for seq in dead {
        index.segs.remove(&seq);
        messages.remove(&seq.to_be_bytes()[..])?;
    }
    Ok(())
}

/// Reads every group back, trims rows outside the bounds and reserves
/// offsets ahead, in one durable transaction.
fn load(
    db: &Db,
    bounds: Bounds,
    now_ms: u64,
    skipped: &AtomicU64,
) -> Result<Loaded, Box<dyn std::error::Error>> {
    let db = db.db.as_ref().expect("open");
    let mut restored = Vec::new();
    let skip = || {
        skipped.fetch_add(1, Ordering::Relaxed);
    };
    let mut tx = db.begin_write()?;
    tx.set_durability(redb::Durability::Immediate)?;
    let segments_from = check_layout(&tx)?;
    let mut index = Index {
        segments_from,
        ..Index::default()
    };
    {
        let mut groups = tx.open_table(GROUPS)?;
        let mut messages = tx.open_table(MESSAGES)?;
        let mut names: HashMap<Arc<str>, Option<(u64, u64, u64)>> = HashMap::default();
        for row in groups.iter()? {
            let (k, v) = row?;
            match std::str::from_utf8(k.value()) {
                Ok(name) if !name.is_empty() => {
                    names.insert(Arc::from(name), decode_group(v.value()));
                }
                _ => skip(),
            }
        }
        // In log order: each group's window keeps its newest offsets
        // within the bounds, as many as fit (as if read newest first).
        // Records below the group's floor (dead, in segments that hold
        // live ones too) are older than every live one, so they never
        // push a live one out; they are dropped at the end.
        let mut loading: HashMap<Arc<str>, Loading> = HashMap::default();
        scan(
            &messages,
            &mut index,
            &skip,
            |name, offset, rest, replaces| {
                let g = match loading.get_mut(name) {
                    Some(g) => g,
                    None => loading.entry(name.clone()).or_default(),
                };
                g.newest = g.newest.max(offset);
                if replaces {
                    if let Ok(i) = g.window.binary_search_by_key(&offset, Message::offset) {
                        let old = g.window.remove(i).expect("found");
                        g.bytes -= old.len();
                    }
                }
                let Some(m) = decode_message(name, offset, rest) else {
                    skip();
                    return;
                };
                if offset <= g.dropped {
                    // Older than a row the bounds left out: so is it.
                    return;
                }
                if bounds.ttl_ms > 0 && now_ms.saturating_sub(m.ts_ms()) >= bounds.ttl_ms {
                    // Too old: so is every older offset.
                    g.dropped = offset;
                    while g.window.front().is_some_and(|f| f.offset() < offset) {
                        let old = g.window.pop_front().expect("not empty");
                        g.bytes -= old.len();
                    }
                    return;
                }
                // Mostly the newest; a replacement (or a record copied
                // forward) sits later in the log than the offsets after it.
                g.bytes += m.len();
                if !g.window.back().is_some_and(|b| b.offset() >= offset) {
                    g.window.push_back(m);
                } else {
                    let (Ok(i) | Err(i)) = g.window.binary_search_by_key(&offset, Message::offset);
                    g.window.insert(i, m);
                }
                while (bounds.max_messages > 0 && g.window.len() > bounds.max_messages)
                    || (bounds.max_bytes > 0 && g.bytes > bounds.max_bytes && g.window.len() > 1)
                {
                    let old = g.window.pop_front().expect("not empty");
                    g.bytes -= old.len();
                    g.dropped = g.dropped.max(old.offset());
                }
            },
        )?;
        for (name, g) in &index.groups {
            if !g.rows.is_empty() && !names.contains_key(name) {
                // Rows of a group without a `groups` row: treated as an
                // unreadable one.
                names.insert(name.clone(), None);
            }
        }
        for (name, meta) in names {
            let mut g = loading.remove(&name).unwrap_or_default();
            let (epoch, reserved, floor) = match meta {
                Some(m) => m,
                None => {
                    // The group's row is unreadable: a new epoch tells its
                    // clients their offsets no longer hold.
                    skip();
                    (new_epoch(), 1, 0)
                }
            };
            let log = index.groups.entry(name.clone()).or_default();
            let floor = floor.max(log.floor);
            while g.window.front().is_some_and(|m| m.offset() < floor) {
                let old = g.window.pop_front().expect("not empty");
                g.bytes -= old.len();
            }
            let next = reserved.max(g.newest + 1);
            let first_kept = g.window.front().map_or(next, Message::offset);
            // Outside the window now: dead (see `settle`).
            log.floor = floor.max(first_kept);
            let meta = Meta {
                epoch,
                reserved: next + RESERVE,
                next,
                floor: log.floor,
            };
            groups.insert(name.as_bytes(), &encode_group(&meta)[..])?;
            let cell = Reservation::default();
            cell.0.committed.store(meta.reserved, Ordering::Relaxed);
            cell.0.asked.store(meta.reserved, Ordering::Relaxed);
            let mut history = History::restored(g.window, next, epoch, cell);
            history.skip_to(next);
            restored.push(Restored {
                name: name.clone(),
                history,
            });
            index.metas.insert(name, meta);
        }
        settle(&mut messages, &mut index)?;
    }
    tx.commit()?;
    Ok((restored, index))
}

// ----- the writer ------------------------------------------------------

struct Writer {
    db: Db,
    /// Each group's `groups` row and records on disk, each segment's live
    /// records, and the next sequence.
    index: Index,
    /// Set when a commit failed after changing `index`: the next commit
    /// rereads it from the disk first.
    stale: bool,
    path: PathBuf,
    /// `history_commit_interval_ms`: how long changes gather before a
    /// commit.
    linger: Duration,
    /// The segment being written (kept from commit to commit).
    buf: Vec<u8>,
}

/// The largest batch vector (in changes) kept for the next batch.
const SPARE_MAX: usize = 1 << 16;

/// Copies forward at least this many live records a commit (when
/// segments under half live wait), and at most twice the commit's own
/// messages if more: the log's size stays within about twice its live
/// records.
const COMPACT_MIN: usize = 64;

impl Writer {
    fn run(mut self, shared: &Shared) {
        let mut retry: Vec<Op> = Vec::new();
        // When the last commit started: without a commit interval, the
        // next starts at once, or `spacing` after it under load.
        let mut last_start: Option<std::time::Instant> = None;
        let mut spacing = SPACING;
        // The last batch's vector, emptied, given back to the queue: the
        // senders do not grow a new one from nothing every commit (under
        // load thousands of changes, reallocated a dozen times).
        let mut spare: Vec<Op> = Vec::new();
        loop {
            let (mut ops, commit, closing) = {
                let mut q = shared.queue.lock();
                if retry.is_empty() {
                    while q.ops.is_empty() && !q.closing {
                        shared.wake.wait(&mut q);
                    }
                    if self.linger.is_zero() {
                        // Under load (the previous commit started less than
                        // `spacing` ago), let more changes join this one; a
                        // lone send after a quiet spell commits at once.
                        if let Some(deadline) = last_start.map(|t| t + spacing) {
                            while !q.closing && std::time::Instant::now() < deadline {
                                shared.wake.wait_until(&mut q, deadline);
                            }
                        }
                    } else {
                        // Let more changes join this commit (pushes onto
                        // a non-empty queue do not wake the writer).
                        let deadline = std::time::Instant::now() + self.linger;
                        while !q.closing && std::time::Instant::now() < deadline {
                            shared.wake.wait_until(&mut q, deadline);
                        }
                    }
                } else if !q.closing {
                    shared.wake.wait_for(&mut q, RETRY);
                }
                let commit = q.commit;
                q.commit += 1;
                let ops = std::mem::replace(&mut q.ops, std::mem::take(&mut spare));
                (ops, commit, q.closing)
            };
            if !retry.is_empty() {
                retry.append(&mut ops);
                ops = std::mem::take(&mut retry);
            }
            if ops.is_empty() && closing {
                self.close(shared);
                return;
            }
            if ops.is_empty() {
                shared.outcomes.complete(commit, Ok(()));
                continue;
            }
            last_start = Some(std::time::Instant::now());
            spacing = next_spacing(spacing, ops.len());
            match self.commit(&ops) {
                Ok(()) => {
                    shared.commits.fetch_add(1, Ordering::Relaxed);
                    for op in &ops {
                        if let Op::Reserve { upto, cell, .. } = op {
                            cell.0.committed.fetch_max(*upto, Ordering::Release);
                        }
                    }
                    shared.failing.store(false, Ordering::Release);
                    shared.outcomes.complete(commit, Ok(()));
                    if ops.capacity() <= SPARE_MAX {
                        ops.clear();
                        spare = ops;
                    }
                }
                Err(e) => {
                    shared.failed_commits.fetch_add(1, Ordering::Relaxed);
                    *shared.failure.lock() = e.clone();
                    shared.failing.store(true, Ordering::Release);
                    shared.outcomes.complete(
                        commit,
                        Err(format!(
                            "commit to {} failed: {e}; the message was delivered but is not \
                             durable (the store retries it every second)",
                            self.path.display()
                        )),
                    );
                    // The writer's view of each group must match the disk
                    // again before the retry: reread it from the batch.
                    self.db.db = None;
                    self.stale = true;
                    if closing {
                        // One last try, then give up: the process is ending.
                        let _ = self.commit(&ops);
                        self.close(shared);
                        return;
                    }
                    retry = ops;
                }
            }
        }
    }

    /// Writes `ops` in one transaction: every message of the batch in one
    /// new segment (one row), the rows of segments left without a live
    /// record deleted, and the live records of a few segments under half
    /// live copied into the new one. The writer's `metas` change only when
    /// it commits; on failure `index` is reread from the disk before the
    /// next commit.
    fn commit(&mut self, ops: &[Op]) -> Result<(), String> {
        let Writer {
            db,
            index,
            stale,
            buf,
            ..
        } = self;
        let db = db.get()?;
        // The groups this batch changes, copied on first touch: the
        // writer's `metas` change only if the commit succeeds.
        let mut metas: HashMap<Arc<str>, Meta> = HashMap::default();
        let result = (|| -> Result<(), Box<dyn std::error::Error>> {
            let tx = db.begin_write()?;
            let mut touched: Vec<Arc<str>> = Vec::new();
            {
                let mut messages = tx.open_table(MESSAGES)?;
                if *stale {
                    // A failed commit left `index` ahead of the disk.
                    scan(&messages, index, &|| {}, |_, _, _, _| {})?;
                    settle(&mut messages, index)?;
                    *stale = false;
                }
                let Index {
                    metas: committed,
                    groups,
                    segs,
                    compact,
                    next_seq,
                    segments_from,
                } = index;
                let touch = |metas: &mut HashMap<Arc<str>, Meta>, group: &Arc<str>| {
                    if !metas.contains_key(group) {
                        if let Some(m) = committed.get(group) {
                            metas.insert(group.clone(), *m);
                        }
                    }
                };
                let cur = *next_seq;
                *next_seq += 1;
                segs.insert(cur, Seg::default());
                begin_segment(buf);
                // The groups with a record in this segment, whose floors
                // it lists.
                let mut listed: Vec<Arc<str>> = Vec::new();
                let mut dead: Vec<u64> = Vec::new();
                let mut puts = 0usize;
                for op in ops {
                    match op {
                        Op::Put {
                            message,
                            first_kept,
                        } => {
                            let msg = &*message.0;
                            let Some(group) = &msg.group else {
                                // Saved messages belong to a group.
                                continue;
                            };
                            let offset = msg.offset;
                            puts += 1;
                            push_record(buf, group, offset, msg.kind, msg.ts_ms, &msg.data);
                            let s = segs.get_mut(&cur).expect("inserted above");
                            s.live += 1;
                            s.total += 1;
                            let g = match groups.get_mut(group) {
                                Some(g) => g,
                                None => groups.entry(group.clone()).or_default(),
                            };
                            if let Some(old) = place(&mut g.rows, offset, cur) {
                                release(segs, compact, &mut dead, cur, old);
                            }
                            // Evicted: the group's oldest records.
                            while let Some(&(oldest, seg)) = g.rows.front() {
                                if oldest >= *first_kept {
                                    break;
                                }
                                release(segs, compact, &mut dead, cur, seg);
                                g.rows.pop_front();
                            }
                            g.floor = g.floor.max(*first_kept);
                            g.put_next = g.put_next.max(offset + 1);
                            if g.mark != cur {
                                g.mark = cur;
                                listed.push(group.clone());
                            }
                            if g.rows.is_empty() {
                                // No record of the group is left to carry
                                // its floor: its row does.
                                touch(&mut metas, group);
                                if let Some(m) = metas.get_mut(group) {
                                    m.next = m.next.max(std::mem::take(&mut g.put_next));
                                    m.floor = m.floor.max(g.floor);
                                    touched.push(group.clone());
                                }
                            }
                        }
                        Op::Flush { group, epoch } => {
                            touch(&mut metas, group);
                            let g = groups.entry(group.clone()).or_default();
                            for (_, seg) in std::mem::take(&mut g.rows) {
                                release(segs, compact, &mut dead, cur, seg);
                            }
                            if let Some(m) = metas.get_mut(group) {
                                m.next = m.next.max(std::mem::take(&mut g.put_next));
                                m.epoch = *epoch;
                                // Every offset handed out so far is gone,
                                // whatever dead copies segments keep.
                                m.floor = m.floor.max(m.next);
                                g.floor = g.floor.max(m.floor);
                            }
                            touched.push(group.clone());
                        }
                        Op::Reserve {
                            group, upto, epoch, ..
                        } => {
                            touch(&mut metas, group);
                            let m = metas.entry(group.clone()).or_insert(Meta {
                                epoch: *epoch,
                                reserved: 1,
                                next: 1,
                                floor: 0,
                            });
                            m.reserved = m.reserved.max(*upto);
                            // A group forgotten in memory and made again
                            // has a new epoch: the latest request's holds.
                            m.epoch = *epoch;
                            touched.push(group.clone());
                        }
                    }
                }
                // Segments under half live: their live records move into
                // this one, and they go.
                let mut budget = (2 * puts).max(COMPACT_MIN);
                while budget > 0 {
                    let Some(seq) = compact.pop() else { break };
                    if !segs
                        .get(&seq)
                        .is_some_and(|s| seq != cur && s.live * 2 < s.total)
                    {
                        continue;
                    }
                    let key = seq.to_be_bytes();
                    let value = messages.get(&key[..])?.map(|v| v.value().to_vec());
                    if let Some((records, _)) = value
                        .as_deref()
                        .and_then(|v| split_row(seq, *segments_from, v))
                    {
                        for body in records {
                            let Some((name, offset, _)) = decode_header(body) else {
                                continue;
                            };
                            let Some((name, g)) = groups
                                .get_key_value(name)
                                .map(|(n, _)| n.clone())
                                .and_then(|n| groups.get_mut(&n).map(|g| (n, g)))
                            else {
                                continue;
                            };
                            let Ok(i) = g.rows.binary_search_by_key(&offset, |r| r.0) else {
                                continue;
                            };
                            if g.rows[i].1 != seq {
                                continue;
                            }
                            g.rows[i].1 = cur;
                            push_raw_record(buf, body);
                            let s = segs.get_mut(&cur).expect("inserted above");
                            s.live += 1;
                            s.total += 1;
                            budget = budget.saturating_sub(1);
                            if g.mark != cur {
                                g.mark = cur;
                                listed.push(name);
                            }
                        }
                    }
                    segs.remove(&seq);
                    messages.remove(&key[..])?;
                }
                for seq in dead {
                    messages.remove(&seq.to_be_bytes()[..])?;
                }
                end_records(buf);
                for name in &listed {
                    let g = groups.get_mut(name);
                    push_floor(buf, name, g.as_ref().map_or(0, |g| g.floor));
                    // The newest offset put, once a group (every group put
                    // to is listed).
                    if let Some(g) = g.filter(|g| g.put_next > 0) {
                        touch(&mut metas, name);
                        if let Some(m) = metas.get_mut(name) {
                            m.next = m.next.max(g.put_next);
                        }
                        g.put_next = 0;
                    }
                }
                if let Some(&s) = segs.get(&cur).filter(|s| s.live > 0) {
                    messages.insert(&cur.to_be_bytes()[..], &buf[..])?;
                    if s.live * 2 < s.total {
                        // Mostly evicted within the batch already.
                        compact.push(cur);
                    }
                } else {
                    segs.remove(&cur);
                }
                let mut table = tx.open_table(GROUPS)?;
                touched.sort_unstable();
                touched.dedup();
                for group in &touched {
                    if let Some(m) = metas.get(group) {
                        table.insert(group.as_bytes(), &encode_group(m)[..])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })();
        if buf.capacity() > 4 << 20 {
            // One very large batch: do not keep its buffer.
            *buf = Vec::new();
        }
        match result {
            Ok(()) => {
                index.metas.extend(metas);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// At shutdown: each group's reservation comes down to its next unused
    /// offset, so a clean restart continues without a gap, and its floor
    /// is written down.
    fn close(&mut self, shared: &Shared) {
        if shared.failing.load(Ordering::Acquire) {
            return;
        }
        let Ok(db) = self.db.get() else { return };
        let index = &self.index;
        let result = (|| -> Result<(), Box<dyn std::error::Error>> {
            let tx = db.begin_write()?;
            {
                let mut groups = tx.open_table(GROUPS)?;
                for (group, m) in &index.metas {
                    let floor = index.groups.get(group).map_or(0, |g| g.floor);
                    let lowered = Meta {
                        reserved: m.next,
                        floor: m.floor.max(floor),
                        ..*m
                    };
                    groups.insert(group.as_bytes(), &encode_group(&lowered)[..])?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        if result.is_err() {
            shared.failed_commits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_tell_each_commit_ok_or_its_failure_with_ranges_merged() {
        let o = Outcomes::default();
        assert!(o.outcome(1).is_none());
        o.complete(1, Ok(()));
        o.complete(2, Err("full".into()));
        o.complete(3, Err("still full".into()));
        o.complete(4, Ok(()));
        assert_eq!(o.outcome(1), Some(Ok(())));
        assert_eq!(o.outcome(2), Some(Err(Error::Storage("full".into()))));
        // Consecutive failures are one range, with the first's reason.
        assert_eq!(o.outcome(3), Some(Err(Error::Storage("full".into()))));
        assert_eq!(o.failures.lock().len(), 1);
        assert_eq!(o.outcome(4), Some(Ok(())));
        assert!(o.outcome(5).is_none());
        o.complete(5, Err("again".into()));
        assert_eq!(o.failures.lock().len(), 2);
        assert_eq!(o.outcome(5), Some(Err(Error::Storage("again".into()))));
        // After a panic every later commit failed.
        o.complete_range(6, u64::MAX, Err("panicked".into()));
        assert_eq!(o.outcome(5), Some(Err(Error::Storage("again".into()))));
        assert_eq!(o.outcome(7), Some(Err(Error::Storage("again".into()))));
    }

    #[test]
    fn a_commit_older_than_every_failure_kept_reads_as_failed() {
        let o = Outcomes::default();
        for i in 0..=FAILURES_KEPT as u64 {
            // Failures with a success between each: one range each.
            o.complete(2 * i + 1, Ok(()));
            o.complete(2 * i + 2, Err(format!("f{i}")));
        }
        assert_eq!(o.failures.lock().len(), FAILURES_KEPT);
        // 2 failed and fell out of the record; 1 succeeded before it and
        // is no longer known either: both read as not durable.
        assert!(matches!(o.outcome(2), Some(Err(_))));
        assert!(matches!(o.outcome(1), Some(Err(_))));
        assert_eq!(o.outcome(5), Some(Ok(())));
        assert_eq!(o.outcome(6), Some(Err(Error::Storage("f2".into()))));
    }

    #[test]
    fn a_waiting_future_is_woken_once_its_commit_is_done() {
        use std::future::Future;
        use std::task::Wake;
        struct Count(AtomicU64);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            history_dir: dir.path().to_str().unwrap().to_owned(),
            ..Config::default()
        };
        let bounds = Bounds {
            max_messages: 100,
            max_bytes: 1 << 20,
            ttl_ms: 0,
        };
        let (store, _) = Store::open(&config, bounds, 0).unwrap();
        let count = Arc::new(Count(AtomicU64::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        // A commit far ahead: pending, listed once however often polled.
        let far = store.done_up_to() + 1_000;
        let mut done = store.done(far);
        for _ in 0..3 {
            assert!(std::pin::Pin::new(&mut done).poll(&mut cx).is_pending());
        }
        assert_eq!(store.shared.outcomes.wakers.lock().1.len(), 1);
        // A commit that happens (an empty flush still commits) wakes it.
        // (`done` is published just before the wakers are taken: the
        // blocking wait may return first.)
        store.wait(store.flush(&Arc::from("g"), 1)).unwrap();
        for _ in 0..500 {
            if count.0.load(Ordering::SeqCst) > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Woken once: it was listed once.
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(store.shared.outcomes.wakers.lock().1.is_empty());
        assert!(store.outcome(far).is_none());
        let now = store.done_up_to();
        assert_eq!(store.outcome(now), Some(Ok(())));
    }

    #[test]
    fn the_spacing_grows_under_load_and_comes_back_when_it_ends() {
        let mut spacing = SPACING;
        let mut seen = Vec::new();
        for _ in 0..6 {
            spacing = next_spacing(spacing, BUSY_CHANGES);
            seen.push(spacing.as_millis());
        }
        assert_eq!(seen, [4, 8, 16, 32, 32, 32]);
        assert_eq!(next_spacing(spacing, BUSY_CHANGES - 1), SPACING);
        assert_eq!(next_spacing(SPACING, 1), SPACING);
    }
}
