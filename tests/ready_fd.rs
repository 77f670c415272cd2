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

const MEMBERS: usize = 40;
const SENDERS: usize = 3;
const SENDS: usize = 300;

/// Group sends from several threads race a drainer on `recv_ready`. A
/// fan-out marks the members whose queue was empty under each queue's
/// lock and lists them all after its loop, while the drainer takes them
/// off and unmarks them under the same lock: no message may be stranded
/// on a connection that is not listed, and within one call a connection's
/// entries come in one run (it is listed once) and in send order.
#[test]
fn fan_outs_racing_the_ready_list_drain_strand_no_message() {
    let hub = Hub::new(Config::default()).unwrap();
    let conns: Vec<_> = (0..MEMBERS)
        .map(|_| hub.open(None, None).unwrap())
        .collect();
    for c in &conns {
        hub.group_add(c.id(), "room").unwrap();
    }
    let index: std::collections::HashMap<u64, usize> =
        conns.iter().enumerate().map(|(i, c)| (c.id(), i)).collect();
    let fd = hub.ready_fd().unwrap();
    assert!(fd >= 0);
    let start = Arc::new(Barrier::new(SENDERS + 1));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let hub = hub.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for i in 0..SENDS {
                    hub.group_send("room", Kind::Text, format!("{s} {i}"), false)
                        .unwrap();
                }
            })
        })
        .collect();
    start.wait();
    // What each member got from each sender: the next number expected.
    let mut next = vec![[0usize; SENDERS]; MEMBERS];
    let mut got = 0;
    let want = MEMBERS * SENDERS * SENDS;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let mut calls = 0;
    while got < want && Instant::now() < deadline {
        // Wait for the fd (bounded), then drain what is listed.
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        out.clear();
        let n = hub.recv_ready(&mut out, 4096).unwrap();
        calls += 1;
        for (id, message) in &out[..n] {
            let message = message.as_ref().expect("no connection is closed here");
            let text = std::str::from_utf8(message.data()).unwrap();
            let (s, i) = text.split_once(' ').unwrap();
            let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
            let member = index[id];
            assert_eq!(
                i, next[member][s],
                "member {member}, sender {s}: out of order"
            );
            next[member][s] += 1;
            got += 1;
        }
    }
    for sender in senders {
        sender.join().unwrap();
    }
    assert_eq!(
        got,
        want,
        "stranded: {} messages after {calls} calls",
        want - got
    );
    for c in &conns {
        assert_eq!(c.pending().0, 0);
    }
    let mut rest = Vec::new();
    assert_eq!(hub.recv_ready(&mut rest, 16).unwrap(), 0);
}

/// Connections opened, sent to and released while they sit on the ready
/// list, racing fan-outs and a drainer. The list points to connections
/// without a reference of its own (a released one is kept alive until it
/// comes off): every entry the drainer gets names a connection that
/// existed, and the members that stay get every message, in order.
/// (Use after free itself is what valgrind finds in the C test
/// `connections_released_while_listed_are_skipped`.)
#[test]
fn connections_released_while_listed_race_fan_outs_and_the_drain() {
    const CHURN: usize = 300;
    let hub = Hub::new(Config::default()).unwrap();
    let stay: Vec<_> = (0..8).map(|_| hub.open(None, None).unwrap()).collect();
    for c in &stay {
        hub.group_add(c.id(), "room").unwrap();
    }
    let stay_ids: BTreeSet<u64> = stay.iter().map(|c| c.id()).collect();
    hub.ready_fd().unwrap();
    let start = Arc::new(Barrier::new(3));
    let sender = {
        let hub = hub.clone();
        let start = start.clone();
        std::thread::spawn(move || {
            start.wait();
            for i in 0..SENDS {
                hub.group_send("room", Kind::Text, format!("{i}"), false)
                    .unwrap();
            }
        })
    };
    let churn = {
        let hub = hub.clone();
        let start = start.clone();
        std::thread::spawn(move || {
            start.wait();
            let mut ids = Vec::new();
            for _ in 0..CHURN {
                let id = hub.open(None, None).unwrap().id();
                hub.group_add(id, "room").unwrap();
                hub.conn_send(id, Kind::Text, "direct").unwrap();
                hub.close(id).unwrap();
                ids.push(id);
            }
            ids
        })
    };
    start.wait();
    let mut next: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut seen_ids = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let want = stay.len() * SENDS;
    let mut got = 0;
    while got < want && Instant::now() < deadline {
        out.clear();
        hub.recv_ready(&mut out, 1024).unwrap();
        for (id, message) in &out {
            seen_ids.insert(*id);
            if !stay_ids.contains(id) {
                continue;
            }
            let message = message.as_ref().expect("the members that stay stay open");
            let i: usize = std::str::from_utf8(message.data())
                .unwrap()
                .parse()
                .unwrap();
            let expected = next.entry(*id).or_insert(0);
            assert_eq!(i, *expected, "member {id}: out of order");
            *expected += 1;
            got += 1;
        }
        if out.is_empty() {
            std::thread::yield_now();
        }
    }
    sender.join().unwrap();
    let churned: BTreeSet<u64> = churn.join().unwrap().into_iter().collect();
    assert_eq!(got, want);
    for id in &seen_ids {
        assert!(
            stay_ids.contains(id) || churned.contains(id),
            "an entry named connection {id}, which never existed"
        );
    }
    // Whatever is left on the list is released connections, skipped.
    out.clear();
    assert_eq!(hub.recv_ready(&mut out, 4096).unwrap(), 0, "{out:?}");
}
