//! The ready fd's first call, raced: connections are sent to from other
//! threads while the fd is made. Whether a message landed before the fd
//! existed (the first call's scan lists it) or after (its own send lists
//! it), every connection left holding messages is listed exactly once.
//! The same behaviour without a race is tested from C in
//! `tests/c/behaviour.c` (`ready_fd_lists_connections_ready_before_it_was_created`).

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use channelbox::{Config, Hub, Kind};

const CONNECTIONS: usize = 16;
/// Bounded in rounds and in time: each round is a fresh hub.
const ROUNDS: usize = 200;
const TIME_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn no_connection_is_missed_when_sends_race_the_first_ready_fd_call() {
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < ROUNDS && started.elapsed() < TIME_LIMIT {
        rounds += 1;
        let hub = Hub::new(Config::default()).unwrap();
        let conns: Vec<_> = (0..CONNECTIONS)
            .map(|_| hub.open(None, None).unwrap())
            .collect();
        let ids: Vec<u64> = conns.iter().map(|c| c.id()).collect();
        let start = Arc::new(Barrier::new(3));
        // Two senders, each to every other connection, from both ends, so
        // some sends land before the fd exists and some after.
        let senders: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|half| {
                let hub = hub.clone();
                let ids = ids.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut mine: Vec<u64> = ids.into_iter().skip(half).step_by(2).collect();
                    if half == 1 {
                        mine.reverse();
                    }
                    for id in mine {
                        hub.conn_send(id, Kind::Text, "x").unwrap();
                    }
                })
            })
            .collect();
        start.wait();
        let fd = hub.ready_fd().unwrap();
        for sender in senders {
            sender.join().unwrap();
        }
        assert!(fd >= 0);
        let mut listed = Vec::new();
        let mut out = [0u64; 64];
        loop {
            let n = hub.take_ready(&mut out);
            if n == 0 {
                break;
            }
            listed.extend_from_slice(&out[..n]);
        }
        let unique: BTreeSet<u64> = listed.iter().copied().collect();
        assert_eq!(unique.len(), listed.len(), "listed twice: {listed:?}");
        let expected: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique, expected, "round {rounds}: some were missed");
        for conn in &conns {
            assert_eq!(conn.pending().0, 1);
        }
    }
    assert!(rounds >= 1);
}
