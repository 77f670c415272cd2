//! Durable history benchmark (`history_dir`): saved sends per second with
//! group commit, fsync on and off, from several sending threads; and the
//! time a hub takes to start on a store holding 1 M saved messages.
//!
//! `cargo run --release --example bench_durable [-- --quick]`
//! (`scripts/bench-durable.sh` runs it with the hub comparison.) The store
//! goes in `BENCH_DIR` (default: a temp dir under `target/`), so it is on
//! the disk a hub would use. Each figure is the median of 3 runs.

use std::path::Path;
use std::time::{Duration, Instant};

use channelbox::{Config, Hub, Kind};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn config(dir: &Path, fsync: bool) -> Config {
    Config {
        history_dir: dir.to_str().unwrap().to_owned(),
        history_fsync: fsync,
        history_max_messages: 1000,
        ..Config::default()
    }
}

/// Saved sends per second and sends per commit: `threads` threads, each
/// sending 200-byte messages to one of 100 groups in turn, for `secs` (and
/// at most 1 M sends in all).
fn throughput(base: &Path, fsync: bool, threads: usize, secs: f64) -> (f64, f64) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let hub = Hub::new(config(dir.path(), fsync)).unwrap();
    // Reserve every group's offsets first (one commit each), as a running
    // hub has done long before.
    for g in 0..100 {
        hub.group_send(&format!("group-{g}"), Kind::Binary, vec![0u8; 200], true)
            .unwrap();
    }
    let commits0 = hub.stats().history_store_commits;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let per_thread = 1_000_000 / threads;
    let start = Instant::now();
    let sent: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let hub = hub.clone();
                s.spawn(move || {
                    let mut n = 0;
                    while n < per_thread && Instant::now() < deadline {
                        let group = format!("group-{}", (t * 7 + n) % 100);
                        hub.group_send(&group, Kind::Binary, vec![1u8; 200], true)
                            .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let commits = (hub.stats().history_store_commits - commits0).max(1);
    (sent as f64 / elapsed, sent as f64 / commits as f64)
}

/// Fills a store with `groups` x `per_group` saved messages (fsync off, 8
/// threads), then times `Hub::new` on it: open, read every group's window
/// back, trim, reserve. Returns (fill seconds, start ms, messages loaded).
fn restart(base: &Path, groups: usize, per_group: usize) -> (f64, f64, u64) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let fill = Instant::now();
    {
        let hub = Hub::new(config(dir.path(), false)).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let hub = hub.clone();
                s.spawn(move || {
                    for g in (t..groups).step_by(8) {
                        let group = format!("group-{g}");
                        for _ in 0..per_group {
                            hub.group_send(&group, Kind::Binary, vec![2u8; 200], true)
                                .unwrap();
                        }
                    }
                });
            }
        });
    }
    let fill = fill.elapsed().as_secs_f64();
    let t = Instant::now();
    let hub = Hub::new(config(dir.path(), true)).unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (fill, ms, hub.stats().history_messages)
}

/// `--callgrind <memory|disk> <threads> <sends>`: `sends` saved sends in
/// all (from `threads` threads) to groups of 10 members that are drained,
/// for instruction counts; the store goes to a fresh temp dir.
fn callgrind(args: &[String]) {
    let disk = args[0] == "disk";
    let threads: usize = args[1].parse().unwrap();
    let sends: usize = args[2].parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new(Config {
        history_dir: if disk {
            dir.path().to_str().unwrap().to_owned()
        } else {
            String::new()
        },
        ..Config::default()
    })
    .unwrap();
    let mut members = Vec::new();
    for t in 0..threads {
        let group = format!("group-{t}");
        for _ in 0..10 {
            let c = hub.open(None, None).unwrap();
            c.join(&group).unwrap();
            members.push(c);
        }
        // The group's offsets reserved (a running hub did that long ago).
        hub.group_send(&group, Kind::Binary, vec![0u8; 100], true)
            .unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..threads {
            let hub = hub.clone();
            let members = &members[t * 10..t * 10 + 10];
            s.spawn(move || {
                let group = format!("group-{t}");
                for i in 0..sends / threads {
                    hub.group_send(&group, Kind::Binary, vec![1u8; 100], true)
                        .unwrap();
                    if i % 64 == 63 {
                        let mut drained = Vec::new();
                        for m in members {
                            m.try_recv_batch(&mut drained, 1024).unwrap();
                            drained.clear();
                        }
                    }
                }
            });
        }
    });
}

/// `--commit-cost <batch> <commits> [interval_ms]`: `commits` commits of
/// `batch` saved sends each, from one thread, to 100 groups in turn (a
/// 200-byte chat-like frame, nobody joined), each batch gathered into one
/// commit by a commit interval (default 300 ms: long enough under
/// callgrind); prints the commits made (one a batch when the interval
/// held). Run under callgrind at two batch sizes: the difference of the
/// history writer's instructions over the difference of messages is its
/// cost per message, the rest its cost per commit; the store is in a fresh
/// temp dir under `BENCH_DIR` (default `target/`), fsync on.
fn commit_cost(args: &[String]) {
    let batch: usize = args[0].parse().unwrap();
    let commits: usize = args[1].parse().unwrap();
    let interval: u64 = args.get(2).map_or(300, |a| a.parse().unwrap());
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let hub = Hub::new(Config {
        history_commit_interval_ms: interval,
        history_max_messages: 10_000,
        ..config(dir.path(), true)
    })
    .unwrap();
    let groups: Vec<String> = (0..100).map(|g| format!("room-{g}")).collect();
    // Each group's offsets reserved (a running hub did that long ago), in
    // one commit.
    for g in &groups {
        hub.group_send_built_saved(g, Kind::Binary, true, |_| vec![0u8; 200].into())
            .unwrap();
    }
    hub.group_send(&groups[0], Kind::Binary, vec![0u8; 200], true)
        .unwrap();
    let frame = |id: u64| {
        let mut v =
            format!(r#"{{"type":"message","id":{id},"user":"user-0042","content":""#).into_bytes();
        v.resize(180, b'x');
        v.extend_from_slice(br#"","timestamp":"2026-12-03T16:00:00.000Z"}"#);
        bytes::Bytes::from(v)
    };
    let commits0 = hub.stats().history_store_commits;
    let t = Instant::now();
    for _ in 0..commits {
        for i in 0..batch - 1 {
            let g = &groups[i % groups.len()];
            hub.group_send_built_saved(g, Kind::Json, true, frame)
                .unwrap();
        }
        // The last one waits for the commit (every earlier one is in it).
        let g = &groups[(batch - 1) % groups.len()];
        hub.group_send(g, Kind::Json, frame(0), true).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let made = hub.stats().history_store_commits - commits0;
    // The writer thread's CPU (user + system, ns, from schedstat) since it
    // started: the reservations' commit included, the opening not.
    let writer_ns = thread_cpu_ns("cbx-history");
    println!(
        "commit-cost: batch={batch} commits asked={commits} made={made} messages={} secs={secs:.2} writer_cpu_ms={:.1} writer_us_per_message={:.3}",
        batch * commits,
        writer_ns as f64 / 1e6,
        writer_ns as f64 / 1e3 / (batch * commits) as f64,
    );
}

/// CPU time in ns of this process's threads named `name` (Linux
/// `/proc/self/task/*/schedstat`; 0 elsewhere).
fn thread_cpu_ns(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--callgrind") {
        return callgrind(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--commit-cost") {
        return commit_cost(&args[1..]);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    // `--restart-only`: just the restart table (to compare store layouts).
    let restart_only = std::env::args().any(|a| a == "--restart-only");
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&base).unwrap();
    let runs = if quick { 1 } else { 3 };
    let secs = if quick { 1.0 } else { 3.0 };
    println!(
        "# bench_durable: 200 B saved sends to 100 groups, median of {runs} runs, store under {}",
        base.display()
    );
    println!("| fsync | sending threads | saved sends/s | sends per commit |");
    println!("| --- | --- | --- | --- |");
    for fsync in [true, false] {
        for threads in [1, 4, 16, 64] {
            if restart_only {
                break;
            }
            let r: Vec<_> = (0..runs)
                .map(|_| throughput(&base, fsync, threads, secs))
                .collect();
            let rate = median(r.iter().map(|x| x.0).collect());
            let batch = median(r.iter().map(|x| x.1).collect());
            println!(
                "| {} | {threads} | {rate:.0} | {batch:.1} |",
                if fsync { "on" } else { "off" }
            );
        }
    }
    let (groups, per_group) = if quick { (100, 1000) } else { (1000, 1000) };
    println!();
    println!(
        "| restart with {} saved messages ({groups} groups) | fill (s) | Hub::new (ms) | loaded |",
        groups * per_group
    );
    println!("| --- | --- | --- | --- |");
    let r: Vec<_> = (0..runs)
        .map(|_| restart(&base, groups, per_group))
        .collect();
    let fill = median(r.iter().map(|x| x.0).collect());
    let ms = median(r.iter().map(|x| x.1).collect());
    println!("| median | {fill:.1} | {ms:.0} | {} |", r[0].2);
}
