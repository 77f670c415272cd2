//! The thread a hub starts for connection TTLs ends before the hub's free
//! returns (found by the `c_abi` fuzz target: LeakSanitizer saw threads a
//! freed hub had spawned still starting up at exit). A C host may unload
//! the library right after `cbx_hub_free`, so no thread may outlive it.
//! Its own test binary: no other test's hub starts TTL threads meanwhile.
#![cfg(target_os = "linux")]

use std::ptr::{null, null_mut};

use channelbox::ffi::*;

/// Threads of this process (a thread names itself only once it runs, so
/// all are counted).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
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
