//! Which embedded store suits channelbox's durable history? Runs our
//! workload against redb, fjall and SQLite (WAL) and prints one line per
//! figure. Not part of the project's build; see BENCHMARKS.md, "Choosing the
//! history store".
//!
//! Workload: keys are 32 bytes (a 24-byte group id, then the offset as 8
//! big-endian bytes, so one group's entries are contiguous and ordered);
//! values 100–300 bytes. Figures:
//!
//! - `append b=N fsync=on|off`: commits of N appends each, for a fixed time;
//!   commits/s and appends/s.
//! - `append+evict b=N`: each commit appends N and deletes the N oldest
//!   (the steady state of a full window).
//! - `startup`: 1 M messages in 1000 groups on disk, reopen the store and
//!   read the newest 100 of every group.
//!
//! Usage: `store-choice [redb|fjall|sqlite ...]` (default: all three),
//! `STORE_DIR` picks where the files go (default: a temp dir in the current
//! directory, so the disk is the one the hub would use).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Key = [u8; 32];

const GROUPS: usize = 100;
const PHASE: Duration = Duration::from_secs(2);
const MAX_COMMITS: usize = 200_000;
const STARTUP_GROUPS: usize = 1000;
const STARTUP_PER_GROUP: u64 = 1000;
const NEWEST: usize = 100;

trait Store {
    /// Commits `puts` and `deletes` in one transaction.
    fn commit(&mut self, puts: &[(Key, Vec<u8>)], deletes: &[Key], fsync: bool);
    /// Reads the newest `n` entries of the group whose keys start with
    /// `prefix`; returns how many bytes it read.
    fn newest(&self, prefix: &[u8; 24], n: usize) -> usize;
}

fn key(group: usize, offset: u64) -> Key {
    let mut k = [0u8; 32];
    let name = format!("group-{group:018}");
    k[..24].copy_from_slice(name.as_bytes());
    k[24..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// A cheap deterministic generator, so every store sees the same values.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn value(&mut self) -> Vec<u8> {
        let len = 100 + (self.next() % 201) as usize;
        (0..len).map(|_| (self.next() & 0xff) as u8).collect()
    }
}

// ----- redb ----------------------------------------------------------------

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("history");

use redb::ReadableDatabase;

struct Redb(redb::Database, bool);
impl Redb {
    fn open(dir: &Path) -> Redb {
        let db = redb::Database::create(dir.join("history.redb")).unwrap();
        Redb(db, false)
    }
    /// redb whose "durable" commits skip fsync: the header is written, so a
    /// process crash loses nothing, but the OS decides when it reaches disk.
    fn open_nosync(dir: &Path) -> Redb {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("history.redb"))
            .unwrap();
        let backend = NoSync(redb::backends::FileBackend::new(file).unwrap());
        let db = redb::Builder::new().create_with_backend(backend).unwrap();
        Redb(db, true)
    }
}

/// A file backend whose `sync_data` does nothing.
#[derive(Debug)]
struct NoSync(redb::backends::FileBackend);
type Io<T> = Result<T, std::io::Error>;
type Lk<T> = Result<T, redb::BackendError>;
type B = std::ops::Bound<u64>;
impl redb::StorageBackend for NoSync {
    fn len(&self) -> Io<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Io<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Io<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Io<()> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Io<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Io<()> {
        self.0.close()
    }
    fn try_lock_range(&self, s: B, e: B) -> Lk<bool> {
        self.0.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: B, e: B) -> Lk<bool> {
        self.0.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: B, e: B) -> Lk<()> {
        self.0.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: B, e: B) -> Lk<()> {
        self.0.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: B, e: B) -> Lk<()> {
        self.0.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: B, e: B) -> Lk<bool> {
        self.0.query_lock_range(s, e)
    }
}
impl Store for Redb {
    fn commit(&mut self, puts: &[(Key, Vec<u8>)], deletes: &[Key], fsync: bool) {
        let mut tx = self.0.begin_write().unwrap();
        if !fsync && !self.1 {
            // The only non-fsync mode redb has: the commit is not persisted
            // at all until a later durable one (a process crash loses it).
            tx.set_durability(redb::Durability::None).unwrap();
        }
        {
            let mut t = tx.open_table(REDB_TABLE).unwrap();
            for (k, v) in puts {
                t.insert(&k[..], &v[..]).unwrap();
            }
            for k in deletes {
                t.remove(&k[..]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn newest(&self, prefix: &[u8; 24], n: usize) -> usize {
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(REDB_TABLE).unwrap();
        let mut hi = [0xffu8; 32];
        hi[..24].copy_from_slice(prefix);
        let mut lo = [0u8; 32];
        lo[..24].copy_from_slice(prefix);
        t.range(&lo[..]..=&hi[..])
            .unwrap()
            .rev()
            .take(n)
            .map(|e| e.unwrap().1.value().len())
            .sum()
    }
}

// ----- fjall ---------------------------------------------------------------

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}
impl Fjall {
    fn open(dir: &Path) -> Fjall {
        let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
        let ks = db
            .keyspace("history", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Fjall { db, ks }
    }
}
impl Store for Fjall {
    fn commit(&mut self, puts: &[(Key, Vec<u8>)], deletes: &[Key], fsync: bool) {
        let mode = if fsync {
            fjall::PersistMode::SyncData
        } else {
            fjall::PersistMode::Buffer
        };
        let mut b = self.db.batch().durability(Some(mode));
        for (k, v) in puts {
            b.insert(&self.ks, &k[..], &v[..]);
        }
        for k in deletes {
            b.remove(&self.ks, &k[..]);
        }
        b.commit().unwrap();
    }
    fn newest(&self, prefix: &[u8; 24], n: usize) -> usize {
        self.ks
            .prefix(prefix)
            .rev()
            .take(n)
            .map(|g| g.value().unwrap().len())
            .sum()
    }
}

// ----- SQLite --------------------------------------------------------------

struct Sqlite {
    db: rusqlite::Connection,
    fsync: Option<bool>,
}
impl Sqlite {
    fn open(dir: &Path) -> Sqlite {
        let db = rusqlite::Connection::open(dir.join("history.sqlite")).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS history (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        Sqlite { db, fsync: None }
    }
}
impl Store for Sqlite {
    fn commit(&mut self, puts: &[(Key, Vec<u8>)], deletes: &[Key], fsync: bool) {
        if self.fsync != Some(fsync) {
            // WAL + FULL fsyncs the log at each commit; NORMAL leaves it to
            // the OS (a process crash loses nothing, a power loss may).
            let mode = if fsync { "FULL" } else { "NORMAL" };
            self.db
                .execute_batch(&format!("PRAGMA synchronous={mode};"))
                .unwrap();
            self.fsync = Some(fsync);
        }
        let tx = self.db.transaction().unwrap();
        {
            let mut ins = tx
                .prepare_cached("INSERT OR REPLACE INTO history (k, v) VALUES (?1, ?2)")
                .unwrap();
            for (k, v) in puts {
                ins.execute((&k[..], &v[..])).unwrap();
            }
            let mut del = tx
                .prepare_cached("DELETE FROM history WHERE k = ?1")
                .unwrap();
            for k in deletes {
                del.execute([&k[..]]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn newest(&self, prefix: &[u8; 24], n: usize) -> usize {
        let mut lo = [0u8; 32];
        lo[..24].copy_from_slice(prefix);
        let mut hi = [0xffu8; 32];
        hi[..24].copy_from_slice(prefix);
        let mut st = self
            .db
            .prepare_cached(
                "SELECT v FROM history WHERE k >= ?1 AND k <= ?2 ORDER BY k DESC LIMIT ?3",
            )
            .unwrap();
        let rows = st
            .query_map((&lo[..], &hi[..], n as i64), |r| {
                r.get_ref(0).map(|v| v.as_blob().map_or(0, <[u8]>::len))
            })
            .unwrap();
        rows.map(Result::unwrap).sum()
    }
}

// ----- the workload --------------------------------------------------------

fn open(store: &str, dir: &Path) -> Box<dyn Store> {
    match store {
        "redb" => Box::new(Redb::open(dir)),
        "redb-nosync" => Box::new(Redb::open_nosync(dir)),
        "fjall" => Box::new(Fjall::open(dir)),
        "sqlite" => Box::new(Sqlite::open(dir)),
        other => panic!("unknown store {other}"),
    }
}

/// Commits batches of `batch` appends (and as many deletes of the oldest
/// when `evict`) for [`PHASE`]; prints commits/s and appends/s.
fn appends(store: &str, dir: &Path, batch: usize, fsync: bool, evict: bool) {
    let mut s = open(store, dir);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next = vec![1u64; GROUPS];
    let mut oldest = vec![1u64; GROUPS];
    // A window to evict from: 1000 entries per group already there.
    if evict {
        for g in 0..GROUPS {
            let puts: Vec<_> = (0..1000)
                .map(|_| {
                    let k = key(g, next[g]);
                    next[g] += 1;
                    (k, rng.value())
                })
                .collect();
            s.commit(&puts, &[], false);
        }
        s.commit(&[], &[], true);
    }
    let start = Instant::now();
    let mut commits = 0usize;
    let mut g = 0;
    while start.elapsed() < PHASE && commits < MAX_COMMITS {
        let mut puts = Vec::with_capacity(batch);
        let mut deletes = Vec::new();
        for _ in 0..batch {
            g = (g + 1) % GROUPS;
            puts.push((key(g, next[g]), rng.value()));
            next[g] += 1;
            if evict {
                deletes.push(key(g, oldest[g]));
                oldest[g] += 1;
            }
        }
        s.commit(&puts, &deletes, fsync);
        commits += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{store:6} {:12} b={batch:<3} fsync={:3}  {:>9.0} commits/s  {:>10.0} appends/s",
        if evict { "append+evict" } else { "append" },
        if fsync { "on" } else { "off" },
        commits as f64 / secs,
        (commits * batch) as f64 / secs
    );
}

/// Writes 1 M messages, reopens the store and reads the newest 100 of every
/// group; prints the load time, the open time and the read time.
fn startup(store: &str, dir: &Path) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let load = Instant::now();
    {
        let mut s = open(store, dir);
        for g in 0..STARTUP_GROUPS {
            let puts: Vec<_> = (1..=STARTUP_PER_GROUP)
                .map(|o| (key(g, o), rng.value()))
                .collect();
            s.commit(&puts, &[], false);
        }
        s.commit(&[], &[], true);
    }
    let load = load.elapsed();
    let size = dir_size(dir);
    let t = Instant::now();
    let s = open(store, dir);
    let opened = t.elapsed();
    let t = Instant::now();
    let mut bytes = 0;
    for g in 0..STARTUP_GROUPS {
        let mut prefix = [0u8; 24];
        prefix.copy_from_slice(&key(g, 0)[..24]);
        bytes += s.newest(&prefix, NEWEST);
    }
    let read = t.elapsed();
    assert!(bytes >= STARTUP_GROUPS * NEWEST * 100);
    println!(
        "{store:6} startup 1M: load {:.1} s, {:.0} MB on disk, open {:.0} ms, newest {NEWEST} x {STARTUP_GROUPS} groups {:.0} ms",
        load.as_secs_f64(),
        size as f64 / 1e6,
        opened.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3
    );
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn fresh_dir(base: &Path) -> tempfile::TempDir {
    tempfile::tempdir_in(base).unwrap()
}

fn main() {
    let base = std::env::var_os("STORE_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stores: Vec<&str> = if args.is_empty() {
        vec!["redb", "redb-nosync", "fjall", "sqlite"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    println!(
        "store-choice: {} groups, 32 B keys, 100-300 B values, {} s per figure, dir {}",
        GROUPS,
        PHASE.as_secs(),
        base.display()
    );
    for store in &stores {
        for (batch, fsync) in [
            (1, true),
            (10, true),
            (100, true),
            (10, false),
            (100, false),
        ] {
            appends(store, fresh_dir(&base).path(), batch, fsync, false);
        }
        appends(store, fresh_dir(&base).path(), 10, true, true);
        startup(store, fresh_dir(&base).path());
    }
}
