//! The TTL reaper: connection deadlines in one heap, and a thread, started
//! with the first connection that has a TTL, that closes each on time.
//!
//! It knows nothing of the hub but the [`Sweeper`] it is handed, so the
//! thread never keeps a dropped hub alive.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::conn::ConnId;

/// What the reaper's thread needs of the hub. Both answer `None` once the
/// hub is gone, and the thread ends.
pub(crate) trait Sweeper: Send + 'static {
    /// The hub's clock.
    fn now_ms(&self) -> Option<u64>;
    /// Closes every connection that is due.
    fn sweep(&self) -> Option<()>;
}

/// Deadlines by time, and the thread that acts on them.
#[derive(Default)]
pub(crate) struct Reaper {
    state: Mutex<ReaperState>,
    cond: Condvar,
    /// Joined by `shutdown`, so a freed hub leaves no thread behind (a C
    /// host may unload the library right after `cbx_hub_free`).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct ReaperState {
    deadlines: BinaryHeap<Reverse<(u64, ConnId)>>,
    started: bool,
    shutdown: bool,
}

impl Reaper {
    /// Schedules `id` to expire at `at_ms`. The first call starts the
    /// thread with the sweeper `start` makes.
    pub(crate) fn schedule<S: Sweeper>(
        self: &Arc<Self>,
        id: ConnId,
        at_ms: u64,
        start: impl FnOnce() -> S,
    ) {
        let mut st = self.state.lock();
        st.deadlines.push(Reverse((at_ms, id)));
        if !st.started {
            st.started = true;
            let reaper = self.clone();
            let sweeper = start();
            let spawned = std::thread::Builder::new()
                .name("channelbox-ttl".into())
                .spawn(move || reaper.run(sweeper));
            match spawned {
                Ok(handle) => *self.thread.lock() = Some(handle),
                // Expiry still happens on explicit sweeps.
                Err(_) => st.started = false,
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Takes the ids whose deadline is at or before `now_ms`.
    pub(crate) fn take_due(&self, now_ms: u64) -> Vec<ConnId> {
        let mut due = Vec::new();
        let mut st = self.state.lock();
        while let Some(Reverse((at, id))) = st.deadlines.peek().copied() {
            if at > now_ms {
                break;
            }
            st.deadlines.pop();
            due.push(id);
        }
        due
    }

    /// Ends the thread (the hub is being dropped) and waits for it, unless
    /// this is that thread (its sweep held the last handle on the hub).
    pub(crate) fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cond.notify_all();
        let handle = self.thread.lock().take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }

    fn run(&self, sweeper: impl Sweeper) {
        let mut st = self.state.lock();
        loop {
            if st.shutdown {
                return;
            }
            let next = st.deadlines.peek().map(|Reverse((at, _))| *at);
            match next {
                None => {
                    self.cond.wait(&mut st);
                }
                Some(at) => {
                    let Some(now) = sweeper.now_ms() else { return };
                    if at > now {
                        // Capped so a manual clock moved by a test is noticed.
                        let wait = Duration::from_millis((at - now).min(1000));
                        self.cond.wait_for(&mut st, wait);
                    } else {
                        drop(st);
                        if sweeper.sweep().is_none() {
                            return;
                        }
                        st = self.state.lock();
                    }
                }
            }
        }
    }
}
