//! Benchmark of the hub's search index (examples/hub/src/features/search/).
//!
//! Alone (the default): saves N chat messages (default 1,000,000) into the
//! channelbox core's history across R rooms, indexes each one as the hub
//! does, times one-word and two-word queries (limit 20) with the text read
//! back from history, as the hub answers `search`; then rebuilds a fresh
//! index from that history, as a restarted hub does.
//!
//! `--redis`: two nodes (two cores on a throw-away `redis-server`, each with
//! its own index handle). Node 1 saves the N messages into Redis history
//! and indexes them through its writer task; node 2 answers the queries,
//! reading texts back from Redis history. Then the time from a send on
//! node 1 to its first hit on node 2, and Redis' memory.
//!
//! ```sh
//! cargo run --release --example bench_search                   # 1M messages, 1000 rooms
//! cargo run --release --example bench_search -- 200000 100     # N messages, R rooms
//! cargo run --release --example bench_search -- --redis        # two nodes on Redis, 1M
//! ```
//!
//! Lines starting `result` are for `scripts/bench-search.sh`, which takes
//! medians over runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use channelbox::{Config, EngineKind, Hub, Kind};
use channelbox_hub::features::search::shared::{Fetched, SharedIndex};
use channelbox_hub::features::search::{rebuild, words, MemoryIndex, Op};
use futures_util::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Distinct words in the synthetic vocabulary.
const VOCABULARY: usize = 20_000;
/// Queries timed per kind, alone and on Redis.
const QUERIES: usize = 2_000;
const REDIS_QUERIES: usize = 1_000;
/// Sends to Redis in flight at once while filling.
const IN_FLIGHT: usize = 1024;
/// Messages indexed by the writer alone, to time it.
const WRITER_MESSAGES: usize = 200_000;
/// Probes of the time from a send on node 1 to a hit on node 2.
const PROBES: usize = 200;
/// A probe that is not found within this long counts as this long.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// A word of the vocabulary by rank (rank 0 is the most common).
fn word(rank: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ba", "de", "fu", "go", "hi", "ju", "pe",
        "zo",
    ];
    let mut n = rank;
    let mut w = String::new();
    loop {
        w.push_str(SYLLABLES[n % 16]);
        n /= 16;
        if n == 0 {
            break;
        }
    }
    w
}

/// Zipf-like rank: small ranks are far more likely.
fn zipf_rank(rng: &mut StdRng) -> usize {
    let u: f64 = rng.gen_range(0.0..1.0);
    ((VOCABULARY as f64).powf(u) - 1.0) as usize % VOCABULARY
}

/// One synthetic message: 6-13 Zipf-drawn words.
fn message_text(rng: &mut StdRng) -> String {
    let mut text = String::new();
    for k in 0..rng.gen_range(6..14) {
        if k > 0 {
            text.push(' ');
        }
        text.push_str(&word(zipf_rank(rng)));
    }
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// This thread's CPU time: what a query cost, whatever else the machine
/// was running (wall-clock tails on a loaded machine are preemption).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Prints a table row and `result` lines for the script.
fn report(
    tag: &str,
    name: &str,
    mut times: Vec<Duration>,
    cpu: Option<Vec<Duration>>,
    hits: usize,
) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let cpu_p99 = cpu.map(|mut c| {
        c.sort();
        ms(percentile(&c, 0.99))
    });
    println!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1} |",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.9)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap()),
        cpu_p99.map_or("-".to_owned(), |c| format!("{c:.3}")),
        hits as f64 / times.len() as f64,
    );
    println!(
        "result {tag} {name}: p50 ms = {:.3}",
        ms(percentile(&times, 0.5))
    );
    println!(
        "result {tag} {name}: p99 ms = {:.3}",
        ms(percentile(&times, 0.99))
    );
}

type Pick = Box<dyn Fn(&mut StdRng) -> String>;

/// The query kinds: (name, how to draw one, whether every room is readable).
fn query_kinds() -> Vec<(&'static str, Pick, bool)> {
    vec![
        (
            "1 word, common (rank < 10)",
            Box::new(|r: &mut StdRng| word(r.gen_range(0..10))),
            true,
        ),
        (
            "1 word, Zipf-drawn",
            Box::new(|r: &mut StdRng| word(zipf_rank(r))),
            true,
        ),
        (
            "1 word, rare (rank > 15000)",
            Box::new(|r: &mut StdRng| word(r.gen_range(15_000..VOCABULARY))),
            true,
        ),
        (
            "1 word, Zipf-drawn, caller reads 10% of rooms",
            Box::new(|r: &mut StdRng| word(zipf_rank(r))),
            false,
        ),
        (
            "2 words, Zipf-drawn",
            Box::new(|r: &mut StdRng| format!("{} {}", word(zipf_rank(r)), word(zipf_rank(r)))),
            true,
        ),
        (
            "2 words, common + rare",
            Box::new(|r: &mut StdRng| {
                format!(
                    "{} {}",
                    word(r.gen_range(0..10)),
                    word(r.gen_range(15_000..VOCABULARY))
                )
            }),
            true,
        ),
    ]
}

/// Rooms `r<k>` with `k % 10 == 0`: the 10% a restricted caller reads.
fn readable(all: bool, room: &str) -> bool {
    all || room
        .trim_start_matches('r')
        .parse::<usize>()
        .is_ok_and(|r| r % 10 == 0)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let redis = args.iter().any(|a| a == "--redis");
    args.retain(|a| a != "--redis");
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rooms: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    println!(
        "channelbox {} bench_search{}: {n} messages in {rooms} rooms, vocabulary {VOCABULARY} (Zipf), {} CPUs, load average {}",
        channelbox::VERSION,
        if redis { " --redis" } else { "" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average(),
    );
    if redis {
        on_redis(n, rooms);
    } else {
        alone(n, rooms);
    }
    println!("load average at the end: {}", load_average());
}

fn alone(n: usize, rooms: usize) {
    let hub = Hub::new(Config {
        history_max_messages: 0,
        history_max_bytes: 0,
        ..Config::default()
    })
    .expect("hub");
    let index = MemoryIndex::new();
    let mut rng = StdRng::seed_from_u64(6);
    let room_names: Vec<String> = (0..rooms).map(|r| format!("r{r}")).collect();

    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let room = &room_names[rng.gen_range(0..rooms)];
        let text = message_text(&mut rng);
        let frame = serde_json::json!({
            "type": "message", "user": "bench", "content": text, "timestamp": i,
        });
        let report = hub
            .group_send_with(&format!("room:{room}"), Kind::Json, true, |id| {
                let mut frame = frame.clone();
                frame["id"] = id.into();
                serde_json::to_vec(&frame).expect("json").into()
            })
            .expect("send");
        bytes += text.len();
        index.insert(room, report.offset, &text);
    }
    let index_time = started.elapsed();
    let (docs, distinct) = index.len();
    println!(
        "indexed {docs} messages ({:.1} MB of text, {distinct} distinct words) in {:.2} s: {:.0} messages/s (saving to history included)",
        bytes as f64 / 1e6,
        index_time.as_secs_f64(),
        n as f64 / index_time.as_secs_f64()
    );

    // As the hub reads them back; the in-memory engine answers at once.
    let fetch = |room: Arc<str>, id: u64| {
        let read = hub.history_get_async(&format!("room:{room}"), id);
        async move {
            let m = read.await.ok()?;
            serde_json::from_slice::<serde_json::Value>(m.data()).ok()
        }
    };
    println!("| query | n | p50 ms | p90 ms | p99 ms | max ms | p99 CPU ms | hits/query |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, pick, all_rooms) in query_kinds() {
        let mut times = Vec::with_capacity(QUERIES);
        let mut cpu = Vec::with_capacity(QUERIES);
        let mut hits = 0;
        for _ in 0..QUERIES {
            let q = pick(&mut rng);
            let t = Instant::now();
            let c = thread_cpu();
            let found = index
                .search(
                    &q,
                    20,
                    |room: Arc<str>| std::future::ready(readable(all_rooms, &room)),
                    fetch,
                )
                .now_or_never()
                .expect("the in-memory engine answers at once");
            times.push(t.elapsed());
            cpu.push(thread_cpu().saturating_sub(c));
            hits += found.len();
        }
        report("alone", name, times, Some(cpu), hits);
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("{rss} (core history and index together)");

    // A restarted hub: the same history, a fresh index.
    drop(index);
    let fresh = MemoryIndex::new();
    let cpu = thread_cpu();
    let done = rebuild::from_history(&hub, &fresh);
    let cpu = thread_cpu().saturating_sub(cpu);
    assert_eq!(
        fresh.len(),
        (docs, distinct),
        "the rebuild indexes the same"
    );
    println!(
        "rebuilt the index from history: {} messages in {} rooms in {:.2} s wall, {:.2} s CPU ({:.0} messages/s)",
        done.messages,
        done.rooms,
        done.took.as_secs_f64(),
        cpu.as_secs_f64(),
        done.messages as f64 / done.took.as_secs_f64()
    );
    println!(
        "result alone rebuild: wall s = {:.2}",
        done.took.as_secs_f64()
    );
    println!("result alone rebuild: CPU s = {:.2}", cpu.as_secs_f64());
}

fn on_redis(n: usize, rooms: usize) {
    let server = channelbox_test_support::RedisServer::start();
    let url = server.url();
    let core = |node: &str| {
        Hub::new(Config {
            engine: EngineKind::Redis,
            redis_url: url.clone(),
            node_name: node.into(),
            history_max_messages: 0,
            history_max_bytes: 0,
            ..Config::default()
        })
        .expect("core on redis")
    };
    let (core1, core2) = (core("n1"), core("n2"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let prefix = core1.config().redis_key_prefix.clone();
        let index1 = SharedIndex::start(&url, &prefix).expect("index n1");
        let index2 = SharedIndex::start(&url, &prefix).expect("index n2");
        let mut rng = StdRng::seed_from_u64(6);

        // Node 1: save every message to Redis history, index it through
        // the writer task (waiting for it every half queue, so nothing is
        // dropped: the hub drops instead of waiting).
        let started = Instant::now();
        let drawn: Vec<(String, String)> = (0..n)
            .map(|_| (format!("r{}", rng.gen_range(0..rooms)), message_text(&mut rng)))
            .collect();
        let mut sends = futures_util::stream::iter(drawn)
            .map(|(room, text)| {
                let frame = serde_json::json!({
                    "id": u64::MAX, "type": "message", "user": "bench", "content": text,
                });
                let bytes: bytes::Bytes = serde_json::to_vec(&frame).expect("json").into();
                let send = core1.group_send_with_async(
                    &format!("room:{room}"),
                    Kind::Json,
                    true,
                    move |_| bytes,
                );
                async move { (room, text, send.await) }
            })
            .buffer_unordered(IN_FLIGHT);
        let mut indexed = 0usize;
        while let Some((room, text, sent)) = sends.next().await {
            let report = sent.expect("saved to redis");
            index1.submit(Op::Insert {
                room: room.into(),
                id: report.offset,
                at_ms: now_ms(),
                words: words(&text),
            });
            indexed += 1;
            if indexed % 32_768 == 0 {
                index1.flush().await;
            }
        }
        index1.flush().await;
        let took = started.elapsed();
        assert_eq!(index1.dropped(), 0, "the bench waits instead of dropping");
        println!(
            "node 1 saved and indexed {n} messages in {:.1} s: {:.0} messages/s (Redis history and index writes, {IN_FLIGHT} sends in flight)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        println!("result redis fill: messages/s = {:.0}", n as f64 / took.as_secs_f64());

        // Node 2 answers, reading texts back from Redis history.
        let fetch = |room: Arc<str>, id: u64| {
            let read = core2.history_get_async(&format!("room:{room}"), id);
            async move {
                match read.await {
                    Ok(m) => match serde_json::from_slice(m.data()) {
                        Ok(v) => Fetched::Message(v),
                        Err(_) => Fetched::Gone,
                    },
                    Err(channelbox::Error::NoSuchMessage { .. }) => Fetched::Gone,
                    Err(_) => Fetched::Unavailable,
                }
            }
        };
        println!("queries through node 2 (wall clock, Redis round trips included):");
        println!("| query | n | p50 ms | p90 ms | p99 ms | max ms | p99 CPU ms | hits/query |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        for (name, pick, all_rooms) in query_kinds() {
            let mut times = Vec::with_capacity(REDIS_QUERIES);
            let mut hits = 0;
            for _ in 0..REDIS_QUERIES {
                let q = pick(&mut rng);
                let t = Instant::now();
                let found = index2
                    .search(&q, 20, |room: Arc<str>| std::future::ready(readable(all_rooms, &room)), fetch)
                    .await
                    .expect("redis answers");
                times.push(t.elapsed());
                hits += found.len();
            }
            report("redis", name, times, None, hits);
        }

        // From a send on node 1 to the first hit on node 2.
        let mut seen = Vec::with_capacity(PROBES);
        for p in 0..PROBES {
            let text = format!("probe{p}x unique");
            let t = Instant::now();
            let frame = serde_json::json!({"id": u64::MAX, "type": "message", "content": text});
            let bytes: bytes::Bytes = serde_json::to_vec(&frame).expect("json").into();
            let report = core1
                .group_send_with_async("room:r0", Kind::Json, true, move |_| bytes)
                .await
                .expect("sent");
            index1.submit(Op::Insert {
                room: "r0".into(),
                id: report.offset,
                at_ms: now_ms(),
                words: words(&text),
            });
            let query = format!("probe{p}x");
            loop {
                let found = index2
                    .search(&query, 1, |_| std::future::ready(true), fetch)
                    .await
                    .expect("redis answers");
                if !found.is_empty() || t.elapsed() > PROBE_LIMIT {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            seen.push(t.elapsed());
        }
        seen.sort();
        println!(
            "send on node 1 -> first hit on node 2: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({PROBES} probes, polling every 0.2 ms)",
            percentile(&seen, 0.5).as_secs_f64() * 1e3,
            percentile(&seen, 0.99).as_secs_f64() * 1e3,
            seen.last().unwrap().as_secs_f64() * 1e3,
        );
        println!(
            "result redis visible: p99 ms = {:.2}",
            percentile(&seen, 0.99).as_secs_f64() * 1e3
        );
        let mut raw = server.raw();
        let info: String = redis::cmd("INFO").arg("memory").query(&mut raw).expect("info");
        let used: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        println!(
            "Redis used_memory {:.0} MB for history and index ({:.0} bytes a message)",
            used as f64 / 1e6,
            used as f64 / n as f64
        );
        println!("result redis memory: MB = {:.0}", used as f64 / 1e6);
        // The index's share: every key under its prefix (bounded: one SCAN
        // pass over the keyspace).
        let mut index_bytes = 0u64;
        let mut index_keys = 0u64;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}-search:*"))
                .arg("COUNT")
                .arg(1000)
                .query(&mut raw)
                .expect("scan");
            let mut sizes = redis::pipe();
            for k in &keys {
                sizes.cmd("MEMORY").arg("USAGE").arg(k);
            }
            let sizes: Vec<Option<u64>> = sizes.query(&mut raw).expect("memory usage");
            index_bytes += sizes.into_iter().flatten().sum::<u64>();
            index_keys += keys.len() as u64;
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        println!(
            "of which the search index: {:.0} MB in {index_keys} keys ({:.0} bytes a message; MEMORY USAGE samples big sets)",
            index_bytes as f64 / 1e6,
            index_bytes as f64 / n as f64
        );
        println!("result redis index memory: MB = {:.0}", index_bytes as f64 / 1e6);

        // The writer alone (no history sends): how many messages a node
        // indexes per second before its queue fills and drops. Its own
        // prefix, so the sets above are not touched.
        let writer = SharedIndex::start(&url, "bench-writer").expect("writer");
        let texts: Vec<(String, Vec<String>)> = (0..WRITER_MESSAGES)
            .map(|_| {
                let text = message_text(&mut rng);
                (format!("r{}", rng.gen_range(0..rooms)), words(&text))
            })
            .collect();
        let t = Instant::now();
        for (i, (room, words)) in texts.into_iter().enumerate() {
            writer.submit(Op::Insert {
                room: room.into(),
                id: i as u64 + 1,
                at_ms: now_ms(),
                words,
            });
            if (i + 1) % 32_768 == 0 {
                writer.flush().await;
            }
        }
        writer.flush().await;
        let rate = WRITER_MESSAGES as f64 / t.elapsed().as_secs_f64();
        assert_eq!(writer.dropped(), 0);
        println!(
            "the index writer alone: {WRITER_MESSAGES} messages in {:.2} s: {rate:.0} messages/s",
            t.elapsed().as_secs_f64()
        );
        println!("result redis writer: messages/s = {rate:.0}");
    });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
