//! The lock of a connection's queue: one byte, taken with one `compare
//! exchange` and, when nobody waits, released with a plain store (on x86 a
//! `mov`, no locked instruction), half the atomic cost of a delivery's
//! critical section (BENCHMARKS.md, "Bursts through the C ABI", fifth
//! round).
//!
//! The queue's critical sections are a few instructions (a push, a drain
//! of a batch), so a thread that finds the lock taken spins a little
//! (`parking_lot_core::SpinWait`), and only then marks the lock `PARKED`
//! and sleeps in `parking_lot_core`'s queue for the lock's address, as
//! parking_lot's own mutex does. An unlock that finds the mark wakes one
//! sleeper; one that finds the lock plainly `LOCKED` stores `UNLOCKED`
//! without a locked instruction. Between its load and its store a waiter
//! can set the mark and go to sleep: that wake-up is lost, so a sleeper
//! never sleeps longer than [`PARK_TIMEOUT`] before it looks again. The
//! lock is never lost (the store is a release, the acquire a compare
//! exchange); only a waiter's latency is bounded by the timeout, in a
//! window of one instruction.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use lock_api::{GuardSend, RawMutex};
use parking_lot_core::{SpinWait, DEFAULT_PARK_TOKEN, DEFAULT_UNPARK_TOKEN};

const UNLOCKED: u8 = 0;
/// Taken; nobody sleeps on it.
const LOCKED: u8 = 1;
/// Taken, and a thread may sleep on it: the unlock wakes one.
const PARKED: u8 = 2;

/// How long a waiter sleeps at most before it looks at the lock again
/// (the lost wake-up above).
const PARK_TIMEOUT: Duration = Duration::from_micros(500);

/// The raw lock; `QueueMutex<T>` is the mutex around the queue.
pub(crate) struct RawQueueLock {
    state: AtomicU8,
}

/// A mutex on [`RawQueueLock`].
pub(crate) type QueueMutex<T> = lock_api::Mutex<RawQueueLock, T>;
/// Its guard.
pub(crate) type QueueGuard<'a, T> = lock_api::MutexGuard<'a, RawQueueLock, T>;

// SAFETY: `lock` returns only once this thread moved the state from
// `UNLOCKED` with an acquire compare exchange or swap; `unlock` (called
// only by the holder) moves it back with a release store or swap. Both
// keep one holder at a time.
unsafe impl RawMutex for RawQueueLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawQueueLock = RawQueueLock {
        state: AtomicU8::new(UNLOCKED),
    };
    type GuardMarker = GuardSend;

    #[inline(always)]
    fn lock(&self) {
        if self
            .state
            .compare_exchange_weak(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline(always)]
    unsafe fn unlock(&self) {
        // Only the holder writes `LOCKED` back to anything, and a waiter
        // only ever writes `PARKED`: if it reads `LOCKED` here, a plain
        // store releases the lock (see the module doc for the one race).
        if self.state.load(Ordering::Relaxed) == LOCKED {
            self.state.store(UNLOCKED, Ordering::Release);
        } else {
            self.unlock_slow();
        }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }
}

impl RawQueueLock {
    fn key(&self) -> usize {
        &self.state as *const AtomicU8 as usize
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        let mut spin = SpinWait::new();
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if state == UNLOCKED {
                if self
                    .state
                    .compare_exchange_weak(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if state == LOCKED && spin.spin() {
                continue;
            }
            break;
        }
        // Mark it and sleep until it comes back unlocked. Taken from here
        // on with the mark set (another thread may still sleep on it): its
        // unlock then wakes one, or nobody, at the cost of a swap.
        while self.state.swap(PARKED, Ordering::Acquire) != UNLOCKED {
            let deadline = Instant::now() + PARK_TIMEOUT;
            // SAFETY: the key is this lock's address, which outlives the
            // call; the closures neither panic nor call into the parking
            // lot.
            unsafe {
                parking_lot_core::park(
                    self.key(),
                    || self.state.load(Ordering::Relaxed) == PARKED,
                    || {},
                    |_, _| {},
                    DEFAULT_PARK_TOKEN,
                    Some(deadline),
                );
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn unlock_slow(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == PARKED {
            // SAFETY: as in `lock_slow`.
            unsafe {
                parking_lot_core::unpark_one(self.key(), |_| DEFAULT_UNPARK_TOKEN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    /// A counter that is not atomic: only the lock keeps its increments
    /// whole.
    struct Counter(UnsafeCell<u64>);
    // SAFETY: written only under the lock, in the test below.
    unsafe impl Sync for Counter {}

    #[test]
    fn threads_contending_on_the_lock_lose_no_increment() {
        const THREADS: usize = 4;
        const ROUNDS: u64 = 200_000;
        let lock = Arc::new(QueueMutex::new(()));
        let counter = Arc::new(Counter(UnsafeCell::new(0)));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for i in 0..ROUNDS {
                        let _g = lock.lock();
                        // SAFETY: under the lock.
                        unsafe { *counter.0.get() += 1 };
                        // Now and then a long critical section, so that
                        // waiters give up spinning and sleep.
                        if (i + t as u64) % 5000 == 0 {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // SAFETY: every thread is done.
        assert_eq!(unsafe { *counter.0.get() }, THREADS as u64 * ROUNDS);
        assert!(!lock.is_locked());
    }
}
