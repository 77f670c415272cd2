//! One monotonic clock for the whole process: publishers stamp send times with it,
//! subscribers compare against it, and the run's deadlines count from its start.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static T0: OnceLock<Instant> = OnceLock::new();

/// The process start (the first call fixes it; `main` calls this before anything else).
#[inline]
pub fn start() -> Instant {
    *T0.get_or_init(Instant::now)
}

/// Nanoseconds since process start (monotonic; shared by publishers and subscribers).
/// Inline: subscribers call it on every frame, from another module.
#[inline]
pub fn now_ns() -> u64 {
    start().elapsed().as_nanos() as u64
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine, so a message
/// stamped by `loadgen send` can be timed by `loadgen idle` in other processes.
pub fn machine_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// (work deadline, end deadline) for a run limited to `timeout_s` seconds since process start:
/// connecting, publishing and draining stop at the first; collecting results and closing
/// sockets must be over by the second, which leaves a few seconds before `--timeout` itself.
pub fn deadlines(timeout_s: u64) -> (Instant, Instant) {
    let t0 = start();
    let total = Duration::from_secs(timeout_s.max(1));
    let end = total.saturating_sub(Duration::from_millis(500));
    let reserve = (total / 5).min(Duration::from_secs(5));
    (t0 + total.saturating_sub(reserve), t0 + end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_clock_moves_forward() {
        let a = machine_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert!(machine_ns() >= a + 2_000_000);
    }

    #[test]
    fn work_stops_before_the_end_and_the_end_before_the_timeout() {
        let t0 = start();
        let (work, end) = deadlines(120);
        assert_eq!(work - t0, Duration::from_secs(115));
        assert_eq!(end - t0, Duration::from_millis(119_500));
        // Short runs keep a fifth in reserve.
        let (work, end) = deadlines(10);
        assert_eq!(work - t0, Duration::from_secs(8));
        assert_eq!(end - t0, Duration::from_millis(9_500));
        // Zero is one second.
        let (work, _) = deadlines(0);
        assert_eq!(work - t0, Duration::from_millis(800));
    }

    #[test]
    fn the_clock_does_not_go_back() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }
}
