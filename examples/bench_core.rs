//! Core micro-benchmarks: fan-out cost per delivery, batch drain cost, two
//! threads on two groups, memory per idle connection and per history entry.
//!
//! `cargo run --release --example bench_core [-- --quick] [-- --json]`
//!
//! Timed sections measure only the sends (queues are drained between
//! rounds, untimed). Each number is the median of 5 runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use channelbox::{Config, Hub, Kind};

/// Counts live heap bytes, so memory per connection and per history entry
/// is measured exactly rather than through RSS (which the allocator blurs).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator and only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed) as u64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn big_queues() -> Config {
    Config {
        queue_max_messages: 1 << 20,
        queue_max_bytes: 1 << 40,
        history_max_bytes: 64 << 20,
        ..Config::default()
    }
}

/// ns per delivery for a group of `members`, `payload` bytes, optional history.
fn fanout(members: usize, payload: usize, history: bool, deliveries_target: usize) -> f64 {
    let hub = Hub::new(big_queues()).unwrap();
    let conns: Vec<_> = (0..members)
        .map(|i| {
            let c = hub.open(Some(&format!("u{i}")), None).unwrap();
            c.join("g").unwrap();
            c
        })
        .collect();
    let body = vec![b'x'; payload];
    let sends_per_round = (10_000 / members).clamp(1, 1000);
    let rounds = (deliveries_target / (sends_per_round * members)).max(3);
    let mut sink = Vec::with_capacity(sends_per_round);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let mut ns = 0u128;
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..sends_per_round {
                hub.group_send("g", Kind::Binary, body.clone(), history)
                    .unwrap();
            }
            ns += t.elapsed().as_nanos();
            for c in &conns {
                sink.clear();
                c.try_recv_batch(&mut sink, usize::MAX).unwrap();
            }
        }
        runs.push(ns as f64 / (rounds * sends_per_round * members) as f64);
    }
    median(runs)
}

/// ns per message to drain a connection's queue with batches of 256.
fn drain_cost() -> f64 {
    let hub = Hub::new(big_queues()).unwrap();
    let c = hub.open(None, None).unwrap();
    c.join("g").unwrap();
    let mut runs = Vec::new();
    let mut out = Vec::with_capacity(256);
    for _ in 0..5 {
        for _ in 0..100_000 {
            hub.group_send("g", Kind::Binary, &b"0123456789"[..], false)
                .unwrap();
        }
        let t = Instant::now();
        let mut n = 0;
        loop {
            out.clear();
            let got = c.try_recv_batch(&mut out, 256).unwrap();
            if got == 0 {
                break;
            }
            n += got;
        }
        runs.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    median(runs)
}

/// Deliveries per second with `threads` threads, each sending to its own
/// group of 1000 members.
fn threads_deliveries_per_s(threads: usize) -> f64 {
    let hub = Hub::new(big_queues()).unwrap();
    let conns: Vec<Vec<_>> = (0..threads)
        .map(|g| {
            (0..1000)
                .map(|_| {
                    let c = hub.open(None, None).unwrap();
                    c.join(&format!("g{g}")).unwrap();
                    c
                })
                .collect()
        })
        .collect();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let sends = 200;
        let t = Instant::now();
        std::thread::scope(|s| {
            for g in 0..threads {
                let hub = hub.clone();
                s.spawn(move || {
                    let name = format!("g{g}");
                    for _ in 0..sends {
                        hub.group_send(&name, Kind::Binary, &b"payload-100-bytes"[..], false)
                            .unwrap();
                    }
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        runs.push((threads * sends * 1000) as f64 / secs);
        let mut sink = Vec::new();
        for c in conns.iter().flatten() {
            sink.clear();
            c.try_recv_batch(&mut sink, usize::MAX).unwrap();
        }
    }
    median(runs)
}

fn idle_bytes_per_connection(n: usize) -> f64 {
    let hub = Hub::new(Config::default()).unwrap();
    let before = heap_bytes();
    let conns: Vec<_> = (0..n)
        .map(|i| {
            let c = hub.open(Some(&format!("user{i}")), None).unwrap();
            c.join(&format!("room{}", i % (n / 10).max(1))).unwrap();
            c
        })
        .collect();
    let after = heap_bytes();
    drop(conns);
    (after.saturating_sub(before)) as f64 / n as f64
}

fn bytes_per_history_message(n: usize, payload: usize) -> f64 {
    let config = Config {
        history_max_bytes: 0,
        ..Config::default()
    };
    let hub = Hub::new(config).unwrap();
    let before = heap_bytes();
    for _ in 0..n {
        hub.group_send("g", Kind::Binary, vec![b'x'; payload], true)
            .unwrap();
    }
    let after = heap_bytes();
    after.saturating_sub(before) as f64 / n as f64
}

fn main() {
    let mut args = std::env::args().skip_while(|a| a != "--callgrind").skip(1);
    if let Some(n) = args.next() {
        // Fixed work for `valgrind --tool=callgrind`: N sends to MEMBERS
        // members (1000 unless given).
        let n: usize = n.parse().expect("--callgrind N [MEMBERS]");
        let members = args
            .next()
            .map_or(1000, |m| m.parse().expect("--callgrind N [MEMBERS]"));
        callgrind(n, members);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let json = std::env::args().any(|a| a == "--json");
    let target = if quick { 200_000 } else { 2_000_000 };
    let mut rows = Vec::new();
    println!("| group size | payload | history | ns per delivery |");
    println!("|---:|---:|:---:|---:|");
    for &members in &[1usize, 100, 1000, 10_000] {
        for &payload in &[100usize, 4096] {
            for &history in &[false, true] {
                let ns = fanout(members, payload, history, target);
                println!(
                    "| {members} | {payload} B | {} | {ns:.1} |",
                    if history { "yes" } else { "no" }
                );
                rows.push(serde_json::json!({"members": members, "payload": payload, "history": history, "ns_per_delivery": ns}));
            }
        }
    }
    let drain = drain_cost();
    let one = threads_deliveries_per_s(1);
    let two = threads_deliveries_per_s(2);
    let idle = idle_bytes_per_connection(if quick { 20_000 } else { 100_000 });
    let hist = bytes_per_history_message(if quick { 20_000 } else { 200_000 }, 100);
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| batch drain (256 a call), ns per message | {drain:.1} |");
    println!(
        "| 1 thread, 1 group x 1000: deliveries/s | {:.1} M |",
        one / 1e6
    );
    println!(
        "| 2 threads, 2 groups x 1000: deliveries/s | {:.1} M |",
        two / 1e6
    );
    println!("| heap per idle connection (user + 1 group) | {idle:.0} B |");
    println!("| heap per history message (100 B payload) | {hist:.0} B |");
    if json {
        println!(
            "{}",
            serde_json::json!({"fanout": rows, "drain_ns": drain, "one_thread_dps": one,
                "two_threads_dps": two, "idle_conn_bytes": idle, "history_msg_bytes": hist})
        );
    }
}

/// `n` history-less sends of 100 B to a group of `members`, drained every
/// 10 sends: run twice with different `n` under callgrind and divide the
/// difference by the extra deliveries for instructions per delivery.
fn callgrind(n: usize, members: usize) {
    let hub = Hub::new(big_queues()).unwrap();
    let conns: Vec<_> = (0..members)
        .map(|_| {
            let c = hub.open(None, None).unwrap();
            c.join("g").unwrap();
            c
        })
        .collect();
    let body = vec![b'x'; 100];
    let mut sink = Vec::new();
    for i in 0..n {
        hub.group_send("g", Kind::Binary, body.clone(), false)
            .unwrap();
        if i % 10 == 9 {
            for c in &conns {
                sink.clear();
                c.try_recv_batch(&mut sink, usize::MAX).unwrap();
            }
        }
    }
}
