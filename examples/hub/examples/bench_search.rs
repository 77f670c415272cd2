//! Benchmark of the hub's search index (examples/hub/src/features/search/memory.rs).
//!
//! Saves N chat messages (default 1,000,000) into the channelbox core's
//! history across R rooms, indexes each one as the hub does, then times
//! one-word and two-word queries (limit 20) with the text read back from
//! history, as the hub answers `search`.
//!
//! ```sh
//! cargo run --release --example bench_search                 # 1M messages, 1000 rooms
//! cargo run --release --example bench_search -- 200000 100   # N messages, R rooms
//! ```

use std::time::{Duration, Instant};

use channelbox::{Config, Hub, Kind};
use channelbox_hub::features::search::MemoryIndex;
use futures_util::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Distinct words in the synthetic vocabulary.
const VOCABULARY: usize = 20_000;
/// Queries timed per kind.
const QUERIES: usize = 2_000;

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

fn report(name: &str, mut times: Vec<Duration>, mut cpu: Vec<Duration>, hits: usize) {
    times.sort();
    cpu.sort();
    let line = format!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
        percentile(&cpu, 0.99).as_secs_f64() * 1e3,
        hits as f64 / times.len() as f64,
    );
    println!("{line}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rooms: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let hub = Hub::new(Config {
        history_max_messages: 0,
        history_max_bytes: 0,
        ..Config::default()
    })
    .expect("hub");
    let index = MemoryIndex::new();
    let mut rng = StdRng::seed_from_u64(6);
    let room_names: Vec<String> = (0..rooms).map(|r| format!("room:r{r}")).collect();

    println!(
        "channelbox {} bench_search: {n} messages in {rooms} rooms, vocabulary {VOCABULARY} (Zipf), {} CPUs",
        channelbox::VERSION,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let started = Instant::now();
    let mut text = String::new();
    let mut bytes = 0usize;
    for i in 0..n {
        let room = &room_names[rng.gen_range(0..rooms)];
        text.clear();
        for k in 0..rng.gen_range(6..14) {
            if k > 0 {
                text.push(' ');
            }
            text.push_str(&word(zipf_rank(&mut rng)));
        }
        let frame = serde_json::json!({
            "type": "message", "user": "bench", "content": text, "timestamp": i,
        });
        let report = hub
            .group_send_with(room, Kind::Json, true, |id| {
                let mut frame = frame.clone();
                frame["id"] = id.into();
                serde_json::to_vec(&frame).expect("json").into()
            })
            .expect("send");
        bytes += text.len();
        index.insert(&room_names_key(room), report.offset, &text);
    }
    let index_time = started.elapsed();
    let (docs, words) = index.len();
    println!(
        "indexed {docs} messages ({:.1} MB of text, {words} distinct words) in {:.2} s: {:.0} messages/s (saving to history included)",
        bytes as f64 / 1e6,
        index_time.as_secs_f64(),
        n as f64 / index_time.as_secs_f64()
    );

    // As the hub reads them back; the in-memory engine answers at once.
    let fetch = |room: std::sync::Arc<str>, id: u64| {
        let read = hub.history_get_async(&format!("room:{room}"), id);
        async move {
            let m = read.await.ok()?;
            serde_json::from_slice::<serde_json::Value>(m.data()).ok()
        }
    };
    println!("| query | n | p50 ms | p90 ms | p99 ms | max ms | p99 CPU ms | hits/query |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    type Pick = Box<dyn Fn(&mut StdRng) -> String>;
    let kinds: Vec<(&str, Pick, bool)> = vec![
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
    ];
    for (name, pick, all_rooms) in kinds {
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
                    |room| {
                        all_rooms
                            || room
                                .trim_start_matches('r')
                                .parse::<usize>()
                                .is_ok_and(|r| r % 10 == 0)
                    },
                    fetch,
                )
                .now_or_never()
                .expect("the in-memory engine answers at once");
            times.push(t.elapsed());
            cpu.push(thread_cpu().saturating_sub(c));
            hits += found.len();
        }
        report(name, times, cpu, hits);
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
}

/// The index is keyed by room id, as the hub keys it (`room:` stripped).
fn room_names_key(group: &str) -> String {
    group.trim_start_matches("room:").to_owned()
}
