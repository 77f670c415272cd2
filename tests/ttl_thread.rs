//! The thread a hub starts for connection TTLs ends before the hub's free
//! returns (found by the `c_abi` fuzz target: LeakSanitizer saw threads a
//! freed hub had spawned still starting up at exit). A C host may unload
//! the library right after `cbx_hub_free`, so no thread may outlive it.
//! Its own test binary: no other test's hub starts TTL threads meanwhile.
#![cfg(target_os = "linux")]

use std::ptr::{null, null_mut};

use channelbox::ffi::*;

/// Threads of this process that are not exiting (a thread names itself
/// only once it runs, so all are counted). `pthread_join` returns once the
/// joined thread has cleared its tid on its way out, a moment before the
/// kernel takes it off /proc/self/task; such a thread has `PF_EXITING`
/// (0x4) in its flags and is not counted. One still starting up or
/// sleeping is.
fn threads() -> usize {
    const PF_EXITING: u64 = 0x4;
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // After the name's closing parenthesis: state, ppid, pgrp,
            // session, tty_nr, tpgid, flags.
            let flags: u64 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(6)?
                .parse()
                .ok()?;
            Some(flags & PF_EXITING == 0)
        })
        .filter(|&live| live)
        .count()
}

#[test]
fn freeing_a_hub_ends_its_ttl_thread_before_returning() {
    let before = threads();
    for _ in 0..50 {
        let mut hub = null_mut();
        let mut conn = 0u64;
        unsafe {
            assert_eq!(cbx_hub_new(null(), &mut hub), CBX_OK);
            assert_eq!(cbx_conn_open(hub, null(), 3600, &mut conn), CBX_OK);
            cbx_hub_free(hub);
        }
        assert_eq!(threads(), before, "a thread outlived cbx_hub_free");
    }
}
