//! `history_fsync: false`: redb's file backend with `sync_data` left out.
//!
//! redb's own non-durable commits are not written to the file until a later
//! durable one, so a crash of the process would lose them; this backend
//! keeps every commit a full one (written to the OS with its header, so a
//! process crash loses nothing) and only skips the fsync, leaving the OS to
//! decide when it reaches the disk. After a power loss redb finds a torn
//! last commit by its checksums and falls back to the one before.

use std::fs::File;
use std::ops::Bound;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// A [`FileBackend`] whose `sync_data` returns at once.
#[derive(Debug)]
pub(super) struct NoSync(FileBackend);

impl NoSync {
    pub(super) fn new(file: File) -> Result<NoSync, redb::DatabaseError> {
        Ok(NoSync(FileBackend::new(file)?))
    }
}

type Io<T> = Result<T, std::io::Error>;
type Lock<T> = Result<T, BackendError>;

impl StorageBackend for NoSync {
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
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Lock<bool> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Lock<bool> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Lock<()> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Lock<()> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Lock<()> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Lock<bool> {
        self.0.query_lock_range(start, end)
    }
}
