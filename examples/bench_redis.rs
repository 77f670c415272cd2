//! Two hubs on Redis next to one in-memory hub, same load, same run.
//!
//! `cargo run --release --example bench_redis [-- --secs 10 --subs 1000 --rate 100]`
//!
//! Starts a throw-away `redis-server` on a loopback port, then runs each
//! node as a child process of this binary (so its CPU time is its own):
//!
//! 1. one in-memory node: `subs` subscribers in one group, publishing
//!    `rate` messages/s (saved to history, id in the frame);
//! 2. two Redis nodes at once: `subs/2` subscribers each in the same group,
//!    each publishing `rate/2` messages/s.
//!
//! Receivers are async tasks (`recv_batch_async`), as in the example hub.
//! Each message carries its send time; latency is receive time minus send
//! time, over every delivery. CPU is the node process' user+system time
//! over the measured window (getrusage), divided by its deliveries.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use channelbox::{Config, Hub, Kind};

struct Args {
    secs: u64,
    subs: usize,
    rate: u64,
    role: Option<String>,
    url: String,
    node: String,
}

fn args() -> Args {
    let mut a = Args {
        secs: 10,
        subs: 1000,
        rate: 100,
        role: None,
        url: String::new(),
        node: "n".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--secs" => a.secs = value.parse().expect("--secs N"),
            "--subs" => a.subs = value.parse().expect("--subs N"),
            "--rate" => a.rate = value.parse().expect("--rate N"),
            "--role" => a.role = Some(value),
            "--url" => a.url = value,
            "--node" => a.node = value,
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A node: opens `subs` members, says "ready", waits for "go" on stdin,
/// publishes for `secs`, then prints one JSON line of results.
fn run_node(a: &Args) {
    let role = a.role.as_deref().unwrap();
    let mut config = Config {
        queue_max_messages: 100_000,
        queue_max_bytes: 64 << 20,
        history_max_messages: 1000,
        ..Config::default()
    };
    if role == "redis" {
        config = Config::from_json(&format!(
            r#"{{"engine": "redis", "redis_url": "{}", "node_name": "{}",
                "queue_max_messages": 100000, "queue_max_bytes": 67108864,
                "history_max_messages": 1000}}"#,
            a.url, a.node
        ))
        .unwrap();
    }
    let hub = Hub::new(config).expect("hub");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..a.subs {
        let conn = hub.open(Some(&format!("{}-u{i}", a.node)), None).unwrap();
        conn.join("bench").unwrap();
        let stop = stop.clone();
        tasks.push(rt.spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            let mut batch = Vec::new();
            loop {
                batch.clear();
                let got = tokio::time::timeout(
                    Duration::from_millis(200),
                    conn.recv_batch_async(&mut batch, 64),
                )
                .await;
                let now = now_us();
                match got {
                    Ok(Ok(_)) => {
                        for m in &batch {
                            let text = m.text().unwrap();
                            let t0: u64 = text
                                .split("\"t\":")
                                .nth(1)
                                .and_then(|r| r.split(',').next())
                                .and_then(|d| d.parse().ok())
                                .unwrap_or(now);
                            lat.push(now.saturating_sub(t0) as u32);
                        }
                    }
                    Ok(Err(_)) => break,
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            lat
        }));
    }
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let cpu0 = cpu_us();
    let t0 = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let total = a.rate * a.secs;
    let mut send_us: Vec<u32> = Vec::with_capacity(total as usize);
    let pad = "x".repeat(100);
    for k in 0..total {
        let due = t0 + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let s = Instant::now();
        hub.group_send_with("bench", Kind::Json, true, |id| {
            format!(
                r#"{{"id":{id},"t":{},"from":"{}","pad":"{pad}"}}"#,
                now_us(),
                a.node
            )
            .into()
        })
        .expect("send");
        send_us.push(s.elapsed().as_micros() as u32);
    }
    // Let the last messages land, then stop the receivers.
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_us() - cpu0;
    let wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        lat.extend(rt.block_on(t).unwrap());
    }
    lat.sort_unstable();
    send_us.sort_unstable();
    let stats = hub.stats();
    println!(
        "{}",
        serde_json::json!({
            "node": a.node,
            "role": role,
            "deliveries": lat.len(),
            "cpu_us": cpu,
            "wall_ms": wall.as_millis() as u64,
            "ns_per_delivery": cpu as f64 * 1000.0 / lat.len().max(1) as f64,
            "p50_us": percentile(&lat, 0.50),
            "p99_us": percentile(&lat, 0.99),
            "max_us": lat.last().copied().unwrap_or(0),
            "send_p50_us": percentile(&send_us, 0.50),
            "send_p99_us": percentile(&send_us, 0.99),
            "engine_unavailable": stats.engine_unavailable,
            "engine_lost_subscription_closes": stats.engine_lost_subscription_closes,
        })
    );
    drop(rt);
}

fn spawn_node(role: &str, node: &str, subs: usize, rate: u64, a: &Args, url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--role", role, "--node", node, "--url", url])
        .args(["--subs", &subs.to_string(), "--rate", &rate.to_string()])
        .args(["--secs", &a.secs.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn node")
}

fn wait_line(child: &mut Child) -> (BufReader<std::process::ChildStdout>, String) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (out, line)
}

/// Runs the nodes together: all ready, then go, then their result lines.
/// With `redis`, also Redis' CPU seconds over the measured window.
fn run_together(children: Vec<Child>, redis: Option<&str>) -> (Vec<serde_json::Value>, f64) {
    let mut readers = Vec::new();
    let mut children = children;
    for c in &mut children {
        let (r, line) = wait_line(c);
        assert_eq!(line.trim(), "ready", "node failed to start");
        readers.push(r);
    }
    let cpu0 = redis.map_or(0.0, redis_cpu);
    for c in &mut children {
        writeln!(c.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let mut results = Vec::new();
    for (mut r, mut c) in readers.into_iter().zip(children) {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        results.push(serde_json::from_str(&line).expect("result line"));
        c.wait().unwrap();
    }
    let cpu = redis.map_or(0.0, redis_cpu) - cpu0;
    (results, cpu)
}

fn redis_cpu(url: &str) -> f64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut c).unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// Group sends per second one node gets through one Redis with four
/// threads sending back to back: the ceiling of a single Redis.
fn saturate(url: &str) -> f64 {
    let hub = Hub::from_json(&format!(
        r#"{{"engine": "redis", "redis_url": "{url}", "node_name": "saturate",
            "history_max_messages": 1000}}"#
    ))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (hub, stop) = (hub.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let group = format!("sat-{i}");
                while !stop.load(Ordering::Relaxed) {
                    hub.group_send(&group, Kind::Json, &br#"{"x":1}"#[..], true)
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let n: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let a = args();
    if a.role.is_some() {
        return run_node(&a);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/ensure-redis.sh installs it)");
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let version = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "machine: {} x {cpu_model}; {}; {}; channelbox {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        version("rustc", "--version"),
        version("redis-server", "--version"),
        channelbox::VERSION
    );
    println!(
        "load: group of {} subscribers, {} msg/s in total, {} s, saved to history",
        a.subs, a.rate, a.secs
    );

    let (memory, _) = run_together(
        vec![spawn_node("memory", "mem", a.subs, a.rate, &a, "")],
        None,
    );
    let half = a.subs / 2;
    let (nodes, redis_cpu_s) = run_together(
        vec![
            spawn_node("redis", "n1", half, a.rate / 2, &a, &url),
            spawn_node("redis", "n2", a.subs - half, a.rate - a.rate / 2, &a, &url),
        ],
        Some(&url),
    );
    let ceiling = saturate(&url);
    let _ = redis.kill();
    let _ = redis.wait();

    println!();
    println!("| node | deliveries | CPU ns/delivery | p50 latency | p99 latency | max | send p50 | send p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let base = memory[0]["ns_per_delivery"].as_f64().unwrap();
    for r in memory.iter().chain(&nodes) {
        println!(
            "| {} ({}) | {} | {:.0} ({:.2}x) | {:.2} ms | {:.2} ms | {:.2} ms | {} us | {} us |",
            r["node"].as_str().unwrap(),
            r["role"].as_str().unwrap(),
            r["deliveries"],
            r["ns_per_delivery"].as_f64().unwrap(),
            r["ns_per_delivery"].as_f64().unwrap() / base,
            r["p50_us"].as_f64().unwrap() / 1000.0,
            r["p99_us"].as_f64().unwrap() / 1000.0,
            r["max_us"].as_f64().unwrap() / 1000.0,
            r["send_p50_us"],
            r["send_p99_us"],
        );
    }
    let messages = (a.rate * a.secs) as f64;
    println!();
    println!(
        "redis-server CPU: {:.0} us per message ({:.3} s over {} messages, 2 subscribed nodes)",
        redis_cpu_s * 1e6 / messages,
        redis_cpu_s,
        messages
    );
    println!(
        "one Redis, saturated: {:.0} group sends/s (4 sending threads on one node, saved, no subscribers)",
        ceiling
    );
    let expected = a.subs as u64 * a.rate * a.secs;
    let got: u64 = nodes
        .iter()
        .map(|r| r["deliveries"].as_u64().unwrap())
        .sum();
    println!("deliveries on the redis nodes: {got} of {expected} expected");
}
