//! Issue 13 item 6: does a group ring (each message written once, a cursor
//! per member, as in LMAX Disruptor or tokio's `broadcast`) beat the core's
//! per-connection queues on a burst? Two minimal designs with the core's
//! fan-out contract, measured side by side. Not part of the project's
//! build; see BENCHMARKS.md, "Shared ring vs per-connection queues
//! (measured)".
//!
//! The contract: one group of 1000 members; a send hands a 100-byte
//! payload, one shared message (the core's `Shared` count, raised once per
//! send), to every member; a member whose queue was empty (queues) or who
//! had read everything (ring) is listed on the hub's ready list; after a
//! burst of `depth` sends every member is drained 256 messages a call until
//! a call returns none, and the references drained are dropped (the C
//! host's `cbx_messages_free`).
//!
//! Usage:
//! - `fanout-ring` (default `time`): send ns per delivery and drain ns per
//!   message at depths 1, 10, 64 and 256, median of 15 bursts, three runs
//!   with the designs (queues, ring, ring with a clone at read)
//!   alternated; then send ns per send for groups of 10, 1000 and 10,000
//!   at depth 64; then heap bytes per idle member and per group.
//! - `fanout-ring callgrind DEPTH`: three bursts of each design, each
//!   phase in its own function for `valgrind --toggle-collect`
//!   (`callgrind.sh` runs it and divides); prints the deliveries.

mod queues;
mod ring;
#[allow(dead_code)] // the core's file; this uses `new`, `reserve`, `take`
#[path = "../../../src/shared.rs"]
mod shared;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;

use queues::Queues;
use ring::{Handout, Ring};

/// A message as the core shares it: one allocation, a count, the payload.
type Message = shared::Shared<Bytes>;
/// A member's index in its group.
type MemberId = u32;
/// The hub's ready list (the core's `Ready::list`, without the eventfd).
type ReadyList = Mutex<Vec<MemberId>>;

const MEMBERS: usize = 1000;
const PAYLOAD: usize = 100;
const DEPTHS: [usize; 4] = [1, 10, 64, 256];
/// The per-member bound of the queues, and the ring's capacity: both hold
/// the deepest burst.
const BOUND: usize = 1024;
const MAX_BYTES: usize = 1 << 20;
/// Messages a drain call takes at most (the C bench's batch).
const BATCH: usize = 256;
const WARMUP: usize = 2;
const ROUNDS: usize = 15;
const RUNS: usize = 3;
const CALLGRIND_ROUNDS: usize = 3;

/// What a drain call found.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// This many messages moved out (0: none pending).
    Messages(usize),
    /// Fell more than the ring's capacity behind: this many were lost and
    /// the cursor moved to the oldest message still held.
    Lagged(u64),
}

/// A group's fan-out, either design.
trait Fanout {
    fn members(&self) -> usize;
    /// Offers `message` to every member; returns the deliveries.
    fn send(&self, message: &Message, ready: &ReadyList) -> usize;
    /// Moves up to `max` of `member`'s pending messages into `out`.
    fn drain(&self, member: MemberId, out: &mut Vec<Message>, max: usize) -> Drained;
}

fn message(payload: &[u8]) -> Message {
    Message::new(Bytes::copy_from_slice(payload))
}

/// Heap bytes in use, for the memory figures.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to `System`, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn in_use() -> isize {
    IN_USE.load(Ordering::Relaxed)
}

/// `depth` sends of a fresh 100-byte message each (the C ABI copies the
/// payload into a new message a send too); returns the deliveries.
fn burst(group: &impl Fanout, ready: &ReadyList, depth: usize) -> usize {
    let payload = [b'x'; PAYLOAD];
    let mut delivered = 0;
    for _ in 0..depth {
        delivered += group.send(&message(&payload), ready);
    }
    delivered
}

/// Drains every member until a call returns nothing; returns the messages.
fn drain_all(group: &impl Fanout, out: &mut Vec<Message>) -> usize {
    let mut drained = 0;
    for member in 0..group.members() as MemberId {
        loop {
            match group.drain(member, out, BATCH) {
                Drained::Messages(0) => break,
                Drained::Messages(n) => drained += n,
                Drained::Lagged(missed) => panic!("member {member} lagged by {missed}"),
            }
            out.clear();
        }
    }
    drained
}

/// One untimed burst and drain, checked: every member got every message
/// and was listed ready once.
fn checked_round(group: &impl Fanout, ready: &ReadyList, out: &mut Vec<Message>, depth: usize) {
    let expected = depth * group.members();
    assert_eq!(burst(group, ready, depth), expected);
    assert_eq!(ready.lock().len(), group.members());
    ready.lock().clear();
    assert_eq!(drain_all(group, out), expected);
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median send ns per delivery and drain ns per message over `ROUNDS`
/// bursts of `depth` (after `WARMUP` untimed ones).
fn time_depth(group: &impl Fanout, depth: usize) -> (f64, f64) {
    let ready = ReadyList::default();
    let mut out = Vec::with_capacity(BATCH);
    for _ in 0..WARMUP {
        checked_round(group, &ready, &mut out, depth);
    }
    let (mut sends, mut drains) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let delivered = burst(group, &ready, depth);
        let sent = start.elapsed();
        ready.lock().clear();
        let start = Instant::now();
        let drained = drain_all(group, &mut out);
        let took = start.elapsed();
        assert_eq!((delivered, drained), (depth * group.members(), delivered));
        sends.push(sent.as_nanos() as f64 / delivered as f64);
        drains.push(took.as_nanos() as f64 / drained as f64);
    }
    (median(sends), median(drains))
}

fn queues(members: usize) -> Queues {
    Queues::new(members, BOUND, MAX_BYTES)
}

fn ring(members: usize) -> Ring {
    Ring::new(members, BOUND, Handout::Reserved)
}

fn ring_clone(members: usize) -> Ring {
    Ring::new(members, BOUND, Handout::Clone)
}

/// The designs measured, in the tables' order.
const DESIGNS: [&str; 3] = ["queues", "ring", "ring, clone at read"];

fn build(design: usize, members: usize) -> Box<dyn Fanout> {
    match design {
        0 => Box::new(queues(members)),
        1 => Box::new(ring(members)),
        _ => Box::new(ring_clone(members)),
    }
}

fn time() {
    // One group of each design for the whole process: reused queues, as
    // in a long-lived server.
    let groups: Vec<_> = (0..DESIGNS.len()).map(|d| build(d, MEMBERS)).collect();
    // [design][depth] -> the runs' (send, drain) medians
    let mut runs = vec![vec![Vec::new(); DEPTHS.len()]; DESIGNS.len()];
    for run in 0..RUNS {
        for (d, depth) in DEPTHS.iter().enumerate() {
            for (design, group) in groups.iter().enumerate() {
                let (send, drain) = time_depth(group, *depth);
                runs[design][d].push((send, drain));
                eprintln!(
                    "run {run} depth {depth} {}: send {send:.1} drain {drain:.1}",
                    DESIGNS[design]
                );
            }
        }
    }
    println!("members {MEMBERS}, payload {PAYLOAD} B, median of {RUNS} runs' medians of {ROUNDS} bursts, ns");
    println!("| depth | design | send / delivery | drain / message |");
    println!("|---:|:---|---:|---:|");
    for (d, depth) in DEPTHS.iter().enumerate() {
        for (design, name) in DESIGNS.iter().enumerate() {
            let m = |f: fn(&(f64, f64)) -> f64| median(runs[design][d].iter().map(f).collect());
            println!(
                "| {depth} | {name} | {:.1} | {:.1} |",
                m(|x| x.0),
                m(|x| x.1)
            );
        }
    }

    println!();
    println!("group size at depth 64: send ns per send (not per delivery), median of {RUNS} runs");
    println!("| members | {} |", DESIGNS.join(" | "));
    println!("|---:|---:|---:|---:|");
    for members in [10, 1000, 10_000] {
        let groups: Vec<_> = (0..DESIGNS.len()).map(|d| build(d, members)).collect();
        let mut sends = vec![Vec::new(); DESIGNS.len()];
        for _ in 0..RUNS {
            for (design, group) in groups.iter().enumerate() {
                sends[design].push(time_depth(group, 64).0 * members as f64);
            }
        }
        let cells: Vec<_> = sends
            .into_iter()
            .map(|s| format!("{:.0}", median(s)))
            .collect();
        println!("| {members} | {} |", cells.join(" | "));
    }

    println!();
    memory();
}

/// Heap bytes a group of `MEMBERS` idle members takes, and what a group
/// keeps once a burst of `BOUND` messages was sent and fully drained.
fn memory() {
    let per_member = |build: &dyn Fn(usize) -> Box<dyn Fanout>| {
        let before = in_use();
        let group = build(MEMBERS);
        let idle = in_use() - before;
        let empty = build(0);
        let fixed = in_use() - before - idle;
        let ready = ReadyList::default();
        let mut out = Vec::new();
        let before_burst = in_use();
        checked_round(&group, &ready, &mut out, BOUND);
        let kept = in_use() - before_burst;
        drop((group, empty));
        (idle as f64 / MEMBERS as f64, fixed, kept)
    };
    println!("heap bytes: a group of {MEMBERS} idle members, per member (the group's fixed part included) / an empty group / what a group keeps after a burst of {BOUND} was drained");
    for (design, name) in DESIGNS.iter().enumerate() {
        let (member, fixed, kept) = per_member(&|n| build(design, n));
        println!("{name}: {member:.1} / {fixed} / {kept}");
    }
}

impl<T: Fanout + ?Sized> Fanout for &T {
    fn members(&self) -> usize {
        (**self).members()
    }
    fn send(&self, message: &Message, ready: &ReadyList) -> usize {
        (**self).send(message, ready)
    }
    fn drain(&self, member: MemberId, out: &mut Vec<Message>, max: usize) -> Drained {
        (**self).drain(member, out, max)
    }
}

impl<T: Fanout + ?Sized> Fanout for Box<T> {
    fn members(&self) -> usize {
        (**self).members()
    }
    fn send(&self, message: &Message, ready: &ReadyList) -> usize {
        (**self).send(message, ready)
    }
    fn drain(&self, member: MemberId, out: &mut Vec<Message>, max: usize) -> Drained {
        (**self).drain(member, out, max)
    }
}

// The phases callgrind collects (`--toggle-collect`), one function each.
// Each marks itself with its own constant: identical bodies would be
// merged into one symbol.

#[inline(never)]
fn cg_queues_send(group: &dyn Fanout, ready: &ReadyList, depth: usize) -> usize {
    std::hint::black_box(0u8);
    burst(&group, ready, depth)
}

#[inline(never)]
fn cg_queues_drain(group: &dyn Fanout, out: &mut Vec<Message>) -> usize {
    std::hint::black_box(1u8);
    drain_all(&group, out)
}

#[inline(never)]
fn cg_ring_send(group: &dyn Fanout, ready: &ReadyList, depth: usize) -> usize {
    std::hint::black_box(2u8);
    burst(&group, ready, depth)
}

#[inline(never)]
fn cg_ring_drain(group: &dyn Fanout, out: &mut Vec<Message>) -> usize {
    std::hint::black_box(3u8);
    drain_all(&group, out)
}

#[inline(never)]
fn cg_ringclone_send(group: &dyn Fanout, ready: &ReadyList, depth: usize) -> usize {
    std::hint::black_box(4u8);
    burst(&group, ready, depth)
}

#[inline(never)]
fn cg_ringclone_drain(group: &dyn Fanout, out: &mut Vec<Message>) -> usize {
    std::hint::black_box(5u8);
    drain_all(&group, out)
}

type SendPhase = fn(&dyn Fanout, &ReadyList, usize) -> usize;
type DrainPhase = fn(&dyn Fanout, &mut Vec<Message>) -> usize;

fn callgrind(depth: usize) {
    let phases: [(SendPhase, DrainPhase); 3] = [
        (cg_queues_send, cg_queues_drain),
        (cg_ring_send, cg_ring_drain),
        (cg_ringclone_send, cg_ringclone_drain),
    ];
    let groups: Vec<_> = (0..DESIGNS.len()).map(|d| build(d, MEMBERS)).collect();
    let ready = ReadyList::default();
    let mut out = Vec::with_capacity(BATCH);
    for _ in 0..WARMUP {
        for group in &groups {
            checked_round(group, &ready, &mut out, depth);
        }
    }
    let mut deliveries = 0;
    for _ in 0..CALLGRIND_ROUNDS {
        for (group, (send, drain)) in groups.iter().zip(phases) {
            let delivered = send(&**group, &ready, depth);
            assert_eq!(ready.lock().len(), MEMBERS);
            ready.lock().clear();
            assert_eq!(drain(&**group, &mut out), delivered);
            deliveries = delivered;
        }
    }
    println!("{}", deliveries * CALLGRIND_ROUNDS);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["time"] => time(),
        ["callgrind", depth] => callgrind(depth.parse().expect("DEPTH is a number")),
        _ => {
            eprintln!("usage: fanout-ring [time | callgrind DEPTH]");
            std::process::exit(2);
        }
    }
}
