//! The embedded backend: one redb database, `<data dir>/hub.redb`.
//!
//! Each [`Table`] is a redb table keyed by `(group, field)`; thread
//! replies have their own table keyed by `(room, root, reply)`, so a
//! thread's newest replies are one reverse range read.
//!
//! Writes the hub acknowledges (rooms, bans, mutes) commit with
//! `Durability::Immediate` in the caller: one fsync each, rare (the async
//! [`super::Store`] calls run them on tokio's blocking pool). Read
//! receipts, client ids and thread replies come with every message, so
//! they go through the [`Batcher`]: the change is visible to every reader
//! of this process at once (readers look in the batch before the file),
//! and one writer thread commits what gathered in one transaction every
//! [`BATCH_WINDOW`]. A `kill -9` can lose the last window of them (a
//! receipt, a resend's dedup entry, a thread link), never a room or a ban.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use rustc_hash::FxHashMap;

use super::{StoreError, Table};

/// How long the writer gathers batched changes before committing them.
pub const BATCH_WINDOW: Duration = Duration::from_millis(5);

type Kv = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;

const ROOMS: Kv = TableDefinition::new("rooms");
const OWNED: Kv = TableDefinition::new("owned");
const BANS: Kv = TableDefinition::new("bans");
const MUTES: Kv = TableDefinition::new("mutes");
const READS: Kv = TableDefinition::new("reads");
const USER_READS: Kv = TableDefinition::new("user_reads");
const USER_DMS: Kv = TableDefinition::new("user_dms");
const CLIENT_IDS: Kv = TableDefinition::new("client_ids");
const META: Kv = TableDefinition::new("meta");
const MEMBERS: Kv = TableDefinition::new("members");
/// (room, root, reply) -> ().
const THREADS: TableDefinition<'static, (&'static str, u64, u64), ()> =
    TableDefinition::new("threads");

fn def(table: Table) -> Kv {
    match table {
        Table::Rooms => ROOMS,
        Table::Owned => OWNED,
        Table::Bans => BANS,
        Table::Mutes => MUTES,
        Table::Reads => READS,
        Table::UserReads => USER_READS,
        Table::UserDms => USER_DMS,
        Table::ClientIds => CLIENT_IDS,
        Table::Meta => META,
        Table::Members => MEMBERS,
    }
}

/// Tables written through the [`Batcher`] (readers look there first).
/// Every [`Table`], in the order of its discriminant.
const TABLES: [Table; 10] = [
    Table::Rooms,
    Table::Owned,
    Table::Bans,
    Table::Mutes,
    Table::Reads,
    Table::UserReads,
    Table::UserDms,
    Table::ClientIds,
    Table::Meta,
    Table::Members,
];

fn batched(table: Table) -> bool {
    matches!(
        table,
        Table::Reads | Table::UserReads | Table::UserDms | Table::ClientIds | Table::Members
    )
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The key range of one group: `(group, "")` up to `(group + "\0", "")`.
fn group_end(group: &str) -> String {
    format!("{group}\0")
}

/// Changes not committed yet, ordered so one group's are one range.
#[derive(Debug, Default, Clone)]
struct Batch {
    puts: BTreeMap<(Table, String, String), Vec<u8>>,
    replies: Vec<(String, u64, u64)>,
    /// `(room, first_kept)`: the room's threads whose root is below
    /// `first_kept` go, after this batch's replies are written.
    evictions: Vec<(String, u64)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.replies.is_empty() && self.evictions.is_empty()
    }

    /// True when an eviction in this batch drops `room`'s thread `root`.
    fn evicts(&self, room: &str, root: u64) -> bool {
        self.evictions
            .iter()
            .any(|(r, first_kept)| r == room && root < *first_kept)
    }
}

/// The batched changes: the open batch, and the one being committed.
#[derive(Debug, Default)]
struct Pending {
    open: Batch,
    committing: Arc<Batch>,
    stop: bool,
}

/// Gathers frequent small writes and commits them from one thread.
pub struct Batcher {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Set by [`Embedded::flush`]: commit without waiting for the window.
    hurry: AtomicBool,
    /// Batches committed (for logs and tests).
    commits: AtomicU64,
}

/// The embedded store.
pub struct Embedded {
    shared: Arc<(Database, Batcher)>,
    /// Per table (by [`Table`] index): false while the table has never
    /// held a row since the file was opened, so a read of it (a mute check
    /// on every chat message, usually) answers without a read transaction.
    /// Set before any write to the table begins.
    may_hold: [AtomicBool; TABLES.len()],
    /// [`Embedded::may_hold`] for the threads table: false while no reply
    /// was recorded since the file was opened (and it held none), so the
    /// eviction check every few hundred messages of a room costs nothing.
    threads_may_hold: AtomicBool,
    writer: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    /// The threads that waited for the disk ([`Embedded::write`],
    /// [`Embedded::flush`]), for the test that no socket task's thread did.
    #[cfg(test)]
    pub(super) waited_on: Mutex<Vec<std::thread::ThreadId>>,
}

impl Embedded {
    /// Opens or creates `<data_dir>/hub.redb`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Embedded> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let path = data_dir.join("hub.redb");
        // Another state of this process may still be closing the file (an
        // in-process restart): wait a little for its lock.
        let mut tries = 0;
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 40 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    anyhow::bail!(
                        "the hub's state file {} cannot be opened ({e}). If it is damaged, \
                         move it aside to start with no rooms, bans or read receipts, or \
                         restore it from a backup",
                        path.display()
                    )
                }
            }
        };
        // The tables are made once (a write, an fsync); later opens only read.
        let made = db.begin_read()?.list_tables()?.count();
        // (A file from before the members table has one fewer: made here.)
        if made < 11 {
            let tx = db.begin_write().map_err(anyhow::Error::from)?;
            for table in [
                ROOMS, OWNED, BANS, MUTES, READS, USER_READS, USER_DMS, CLIENT_IDS, META, MEMBERS,
            ] {
                tx.open_table(table)?;
            }
            tx.open_table(THREADS)?;
            tx.commit()?;
        }
        let may_hold = {
            let tx = db.begin_read()?;
            let mut may_hold = [const { AtomicBool::new(true) }; TABLES.len()];
            for (i, table) in TABLES.into_iter().enumerate() {
                debug_assert_eq!(table as usize, i);
                let empty = tx.open_table(def(table))?.is_empty()?;
                may_hold[i] = AtomicBool::new(!empty);
            }
            may_hold
        };
        let threads_may_hold = AtomicBool::new(!db.begin_read()?.open_table(THREADS)?.is_empty()?);
        let shared = Arc::new((
            db,
            Batcher {
                pending: Mutex::default(),
                wake: Condvar::new(),
                hurry: AtomicBool::new(false),
                commits: AtomicU64::new(0),
            },
        ));
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("hub-state-writer".into())
            .spawn(move || write_batches(&for_writer))?;
        tracing::info!(path = %path.display(), "hub state opened");
        Ok(Embedded {
            shared,
            may_hold,
            threads_may_hold,
            writer: Some(writer),
            path,
            #[cfg(test)]
            waited_on: Mutex::default(),
        })
    }

    fn db(&self) -> &Database {
        &self.shared.0
    }

    fn batcher(&self) -> &Batcher {
        &self.shared.1
    }

    /// False while `table` has held no row since the file was opened.
    fn may_hold(&self, table: Table) -> bool {
        self.may_hold[table as usize].load(Ordering::SeqCst)
    }

    /// Before a write to `table`: reads of it go to the file from now on.
    fn will_hold(&self, table: Table) {
        self.may_hold[table as usize].store(true, Ordering::SeqCst);
    }

    /// The value under `(group, field)`, the batch first.
    pub fn get(
        &self,
        table: Table,
        group: &str,
        field: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if batched(table) {
            let pending = self.batcher().pending.lock();
            if let Some(v) = find(&pending, table, group, field) {
                return Ok(Some(v.clone()));
            }
        }
        self.read(table, group, field)
    }

    /// Several values in one read transaction (batched tables: the batch first).
    /// No read transaction at all when none of the tables may hold a row
    /// (a join's admission on a hub with no rooms or bans made yet).
    pub fn get_many(&self, keys: &[super::Key<'_>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut tx = None;
        let mut out = Vec::with_capacity(keys.len());
        for &(table, group, field) in keys {
            if batched(table) {
                let pending = self.batcher().pending.lock();
                if let Some(v) = find(&pending, table, group, field) {
                    out.push(Some(v.clone()));
                    continue;
                }
            }
            if !self.may_hold(table) {
                out.push(None);
                continue;
            }
            let tx = match &mut tx {
                Some(tx) => tx,
                None => tx.insert(self.db().begin_read().map_err(db_err)?),
            };
            let t = tx.open_table(def(table)).map_err(db_err)?;
            out.push(
                t.get((group, field))
                    .map_err(db_err)?
                    .map(|v| v.value().to_vec()),
            );
        }
        Ok(out)
    }

    fn read(&self, table: Table, group: &str, field: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.may_hold(table) {
            return Ok(None);
        }
        let tx = self.db().begin_read().map_err(db_err)?;
        let t = tx.open_table(def(table)).map_err(db_err)?;
        Ok(t.get((group, field))
            .map_err(db_err)?
            .map(|v| v.value().to_vec()))
    }

    /// Runs `write` in one durable transaction.
    fn write<T>(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        #[cfg(test)]
        self.waited_on.lock().push(std::thread::current().id());
        let mut tx = self.db().begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        let out = write(&tx).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Sets `(group, field)`, durably.
    pub fn put(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.will_hold(table);
        self.write(|tx| {
            tx.open_table(def(table))?.insert((group, field), value)?;
            Ok(())
        })?;
        self.drop_batched(table, group, field);
        Ok(())
    }

    /// A durable write replaces what the batch held for the same key.
    fn drop_batched(&self, table: Table, group: &str, field: &str) {
        if batched(table) {
            self.batcher().pending.lock().open.puts.remove(&(
                table,
                group.to_owned(),
                field.to_owned(),
            ));
        }
    }

    /// Sets `(group, field)` if empty; true when it did.
    pub fn put_new(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        self.will_hold(table);
        self.write(|tx| {
            let mut t = tx.open_table(def(table))?;
            if t.get((group, field))?.is_some() {
                return Ok(false);
            }
            t.insert((group, field), value)?;
            Ok(true)
        })
    }

    /// Compare and swap (`new: None` removes).
    pub fn swap(
        &self,
        table: Table,
        group: &str,
        field: &str,
        old: &[u8],
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        if new.is_some() {
            self.will_hold(table);
        }
        self.write(|tx| {
            let mut t = tx.open_table(def(table))?;
            let same = t.get((group, field))?.is_some_and(|v| v.value() == old);
            if !same {
                return Ok(false);
            }
            match new {
                Some(v) => {
                    t.insert((group, field), v)?;
                }
                None => {
                    t.remove((group, field))?;
                }
            }
            Ok(true)
        })
    }

    /// Sets `(group, field)`, then removes the fields of `group` that
    /// `evict` names (it sees every field with its value, the new one
    /// included), in one durable transaction; how many went.
    pub fn put_then_evict(
        &self,
        table: Table,
        group: &str,
        field: &str,
        value: &[u8],
        evict: impl FnOnce(&[(String, Vec<u8>)]) -> Vec<String>,
    ) -> Result<usize, StoreError> {
        let end = group_end(group);
        self.will_hold(table);
        let gone = self.write(|tx| {
            let mut t = tx.open_table(def(table))?;
            t.insert((group, field), value)?;
            let mut all = Vec::new();
            for row in t.range((group, "")..(end.as_str(), ""))? {
                let (k, v) = row?;
                all.push((k.value().1.to_owned(), v.value().to_vec()));
            }
            let gone = evict(&all);
            for f in &gone {
                t.remove((group, f.as_str()))?;
            }
            Ok(gone.len())
        })?;
        self.drop_batched(table, group, field);
        Ok(gone)
    }

    /// Removes `(group, field)`, durably.
    pub fn remove(&self, table: Table, group: &str, field: &str) -> Result<(), StoreError> {
        self.drop_batched(table, group, field);
        self.write(|tx| {
            tx.open_table(def(table))?.remove((group, field))?;
            Ok(())
        })
    }

    /// Every field of `group` in order (the batch's values over the file's;
    /// the file is not read while the table has held no row: a join's
    /// `reads` frame on a hub where nobody has sent a read receipt).
    pub fn all(&self, table: Table, group: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let end = group_end(group);
        let mut out = Vec::new();
        if self.may_hold(table) {
            let tx = self.db().begin_read().map_err(db_err)?;
            let t = tx.open_table(def(table)).map_err(db_err)?;
            for row in t.range((group, "")..(end.as_str(), "")).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                out.push((k.value().1.to_owned(), v.value().to_vec()));
            }
        }
        if batched(table) {
            let pending = self.batcher().pending.lock();
            let range = (table, group.to_owned(), String::new())..(table, end, String::new());
            // The batch being committed, then the open one (newer) over it.
            for batch in [&*pending.committing, &pending.open] {
                for ((_, _, field), value) in batch.puts.range(range.clone()) {
                    match out.binary_search_by(|(f, _)| f.as_str().cmp(field)) {
                        Ok(i) => out[i].1 = value.clone(),
                        Err(i) => out.insert(i, (field.clone(), value.clone())),
                    }
                }
            }
        }
        Ok(out)
    }

    /// How many fields `group` holds (durable tables only).
    pub fn count(&self, table: Table, group: &str) -> Result<usize, StoreError> {
        if batched(table) {
            return Ok(self.all(table, group)?.len());
        }
        let end = group_end(group);
        let tx = self.db().begin_read().map_err(db_err)?;
        let t = tx.open_table(def(table)).map_err(db_err)?;
        let n = t
            .range((group, "")..(end.as_str(), ""))
            .map_err(db_err)?
            .count();
        Ok(n)
    }

    /// Removes every field of `group`.
    pub fn drop_group(&self, table: Table, group: &str) -> Result<(), StoreError> {
        if batched(table) {
            self.flush();
        }
        let end = group_end(group);
        self.write(|tx| {
            tx.open_table(def(table))?
                .retain_in((group, "")..(end.as_str(), ""), |_, _| false)?;
            Ok(())
        })
    }

    /// Keeps only the values of `group` that `keep` accepts; how many went.
    pub fn retain_group(
        &self,
        table: Table,
        group: &str,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, StoreError> {
        self.flush();
        let end = group_end(group);
        let mut gone = 0;
        self.write(|tx| {
            tx.open_table(def(table))?
                .retain_in((group, "")..(end.as_str(), ""), |_, v| {
                    let k = keep(v);
                    gone += usize::from(!k);
                    k
                })?;
            Ok(())
        })?;
        Ok(gone)
    }

    /// At most `limit` fields of `group` after `after`, in order.
    pub fn page(
        &self,
        table: Table,
        group: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let end = group_end(group);
        let tx = self.db().begin_read().map_err(db_err)?;
        let t = tx.open_table(def(table)).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t
            .range((group, after)..(end.as_str(), ""))
            .map_err(db_err)?
        {
            let (k, v) = row.map_err(db_err)?;
            let field = k.value().1;
            if field == after {
                continue;
            }
            out.push((field.to_owned(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Reads `(group, field)` (batch first), lets `decide` answer and maybe
    /// give a new value, which goes into the batch. One decision at a time.
    pub fn update_batched<R>(
        &self,
        table: Table,
        group: &str,
        field: &str,
        decide: impl FnOnce(Option<&[u8]>) -> (Option<Vec<u8>>, R),
    ) -> Result<R, StoreError> {
        let mut pending = self.batcher().pending.lock();
        let (new, out) = match find(&pending, table, group, field) {
            Some(v) => decide(Some(v)),
            None => {
                let stored = self.read(table, group, field)?;
                decide(stored.as_deref())
            }
        };
        if let Some(new) = new {
            self.will_hold(table);
            pending
                .open
                .puts
                .insert((table, group.to_owned(), field.to_owned()), new);
            self.batcher().wake.notify_one();
        }
        Ok(out)
    }

    /// Records a thread reply (batched).
    pub fn add_reply(&self, room: &str, root: u64, id: u64) -> Result<(), StoreError> {
        self.threads_may_hold.store(true, Ordering::SeqCst);
        let mut pending = self.batcher().pending.lock();
        pending.open.replies.push((room.to_owned(), root, id));
        self.batcher().wake.notify_one();
        Ok(())
    }

    /// The newest `max` replies to `root`, ascending.
    pub fn replies(&self, room: &str, root: u64, max: usize) -> Result<Vec<u64>, StoreError> {
        let mut ids: Vec<u64> = {
            let pending = self.batcher().pending.lock();
            if pending.open.evicts(room, root) || pending.committing.evicts(room, root) {
                // Gone once that batch commits. No reply can come after:
                // an evicted root is out of history for good (offsets only
                // grow), and a deleted room's eviction is not batched.
                return Ok(Vec::new());
            }
            [&*pending.committing, &pending.open]
                .iter()
                .flat_map(|b| b.replies.iter())
                .filter(|(r, t, _)| r == room && *t == root)
                .map(|(_, _, id)| *id)
                .collect()
        };
        let tx = self.db().begin_read().map_err(db_err)?;
        let t = tx.open_table(THREADS).map_err(db_err)?;
        for row in t
            .range((room, root, 0)..=(room, root, u64::MAX))
            .map_err(db_err)?
            .rev()
            .take(max)
        {
            ids.push(row.map_err(db_err)?.0.value().2);
        }
        ids.sort_unstable();
        ids.dedup();
        let cut = ids.len().saturating_sub(max);
        Ok(ids.split_off(cut))
    }

    /// Forgets the threads of `room` whose root is below `first_kept`:
    /// nothing to do while no thread was ever recorded; otherwise in the
    /// next batched commit (it comes every few hundred messages of a room:
    /// a commit of its own, on the sender's thread, was ~1.6 % of the
    /// hub's CPU in the referee's scenario d). A deleted room's threads
    /// (`u64::MAX`) go at once, so the room id can be reused.
    pub fn evict_threads(&self, room: &str, first_kept: u64) -> Result<(), StoreError> {
        if !self.threads_may_hold.load(Ordering::SeqCst) {
            return Ok(());
        }
        if first_kept < u64::MAX {
            let mut pending = self.batcher().pending.lock();
            pending.open.evictions.push((room.to_owned(), first_kept));
            self.batcher().wake.notify_one();
            return Ok(());
        }
        self.flush();
        self.write(|tx| {
            tx.open_table(THREADS)?
                .retain_in((room, 0, 0)..(room, first_kept, 0), |_, _| false)?;
            Ok(())
        })
    }

    /// Waits (at most 5 s) until every batched change is committed.
    pub fn flush(&self) {
        #[cfg(test)]
        self.waited_on.lock().push(std::thread::current().id());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            {
                let pending = self.batcher().pending.lock();
                if pending.open.is_empty() && pending.committing.is_empty() {
                    return;
                }
            }
            if std::time::Instant::now() > deadline {
                tracing::error!(path = %self.path.display(), "hub state: batched changes not committed in 5 s");
                return;
            }
            self.batcher().hurry.store(true, Ordering::SeqCst);
            self.batcher().wake.notify_one();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.batcher().pending.lock().stop = true;
        self.batcher().wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn find<'a>(pending: &'a Pending, table: Table, group: &str, field: &str) -> Option<&'a Vec<u8>> {
    let key = (table, group.to_owned(), field.to_owned());
    pending
        .open
        .puts
        .get(&key)
        .or_else(|| pending.committing.puts.get(&key))
}

/// The writer thread: waits for batched changes, gathers them for
/// [`BATCH_WINDOW`], commits them in one transaction; exits once stopped
/// and empty.
fn write_batches(shared: &(Database, Batcher)) {
    let (db, batcher) = shared;
    loop {
        {
            let mut pending = batcher.pending.lock();
            while pending.open.is_empty() && !pending.stop {
                batcher.wake.wait(&mut pending);
            }
            if pending.open.is_empty() && pending.stop {
                return;
            }
        }
        if !batcher.hurry.swap(false, Ordering::SeqCst) {
            std::thread::sleep(BATCH_WINDOW);
        }
        let batch = {
            let mut pending = batcher.pending.lock();
            let batch = Arc::new(std::mem::take(&mut pending.open));
            pending.committing = batch.clone();
            batch
        };
        let result = commit(db, &batch);
        let mut pending = batcher.pending.lock();
        if let Err(e) = result {
            tracing::error!(error = %e, "hub state: a batch could not be committed; retrying");
            // Back into the open batch, under anything newer.
            for (k, v) in &batch.puts {
                pending
                    .open
                    .puts
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
            pending.open.replies.extend(batch.replies.iter().cloned());
            pending
                .open
                .evictions
                .extend(batch.evictions.iter().cloned());
            pending.committing = Arc::default();
            drop(pending);
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        pending.committing = Arc::default();
        batcher.commits.fetch_add(1, Ordering::Relaxed);
    }
}

fn commit(db: &Database, batch: &Batch) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate).map_err(|e| {
        redb::Error::from(redb::StorageError::Io(std::io::Error::other(e.to_string())))
    })?;
    {
        let mut tables: FxHashMap<Table, redb::Table<(&str, &str), &[u8]>> = FxHashMap::default();
        for ((table, group, field), value) in &batch.puts {
            let t = match tables.entry(*table) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(tx.open_table(def(*table))?)
                }
            };
            t.insert((group.as_str(), field.as_str()), value.as_slice())?;
        }
        let mut threads = tx.open_table(THREADS)?;
        for (room, root, id) in &batch.replies {
            threads.insert((room.as_str(), *root, *id), ())?;
        }
        for (room, first_kept) in &batch.evictions {
            let room = room.as_str();
            threads.retain_in((room, 0, 0)..(room, *first_kept, 0), |_, _| false)?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `may_hold` is indexed by a table's discriminant: `TABLES` must hold
    /// every table, in that order (a missing one panicked every first join).
    #[test]
    fn tables_lists_every_table_in_discriminant_order() {
        for (i, table) in TABLES.into_iter().enumerate() {
            assert_eq!(table as usize, i, "{}", table.name());
        }
        // `Members` is the last variant.
        assert_eq!(TABLES.len(), Table::Members as usize + 1);
    }

    /// Every write path marks its table first: a value written by any of
    /// them is read back from a file that held nothing in that table (the
    /// ban cap's transaction once skipped it, and bans were not seen).
    #[test]
    fn every_write_is_read_back_from_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Embedded::open(dir.path()).unwrap();
        db.put_then_evict(Table::Bans, "room", "bob", b"0,1", |_| Vec::new())
            .unwrap();
        assert_eq!(
            db.get(Table::Bans, "room", "bob").unwrap().as_deref(),
            Some(&b"0,1"[..])
        );
        let keys = [(Table::Bans, "room", "bob")];
        assert_eq!(db.get_many(&keys).unwrap()[0].as_deref(), Some(&b"0,1"[..]));
        db.put(Table::Mutes, "room", "eve", b"0,2").unwrap();
        assert!(db.get(Table::Mutes, "room", "eve").unwrap().is_some());
        assert!(db.put_new(Table::Owned, "alice", "room", b"").unwrap());
        assert!(db.get(Table::Owned, "alice", "room").unwrap().is_some());
    }

    /// A room's old threads go in a batched commit: gone at once for
    /// readers, gone from the file after the commit, newer ones kept; with
    /// no thread ever recorded an eviction commits nothing.
    #[test]
    fn thread_evictions_are_batched_and_free_without_threads() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Embedded::open(dir.path()).unwrap();
            let before = db.batcher().commits.load(Ordering::SeqCst);
            for first_kept in 1..=100 {
                db.evict_threads("r", first_kept).unwrap();
            }
            db.flush();
            assert_eq!(db.batcher().commits.load(Ordering::SeqCst), before);
            db.add_reply("r", 3, 7).unwrap();
            db.add_reply("r", 3, 9).unwrap();
            db.add_reply("r", 5, 6).unwrap();
            db.add_reply("other", 3, 4).unwrap();
            db.evict_threads("r", 4).unwrap();
            assert!(db.replies("r", 3, 10).unwrap().is_empty());
            assert_eq!(db.replies("r", 5, 10).unwrap(), vec![6]);
            db.flush();
            assert!(db.replies("r", 3, 10).unwrap().is_empty());
        }
        // Reopened (threads on file): evictions still apply, in the file.
        let db = Embedded::open(dir.path()).unwrap();
        assert!(db.replies("r", 3, 10).unwrap().is_empty());
        assert_eq!(db.replies("r", 5, 10).unwrap(), vec![6]);
        assert_eq!(db.replies("other", 3, 10).unwrap(), vec![4]);
        db.evict_threads("r", 6).unwrap();
        db.flush();
        drop(db);
        let db = Embedded::open(dir.path()).unwrap();
        assert!(db.replies("r", 5, 10).unwrap().is_empty());
        assert_eq!(db.replies("other", 3, 10).unwrap(), vec![4]);
    }
}
