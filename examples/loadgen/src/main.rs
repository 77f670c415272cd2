//! channelbox's own loopback WebSocket fan-out load generator.
//!
//! Based on the company's shared benchmark load generator (same flags, same JSON output, same
//! measurement rules), ported to tokio-tungstenite 0.28, with the BENCHMARKS.md scenarios as
//! presets (`loadgen scenario a|b|c|d|e`) and a markdown `report` of result files. Run it with
//! `cargo run --release --example loadgen -- --help`, or everything against a fresh hub with
//! `scripts/bench-hub.sh`.
//!
//! Modes:
//! * `fanout`: R rooms x N subscribers, one publisher per room sends M messages
//!   (fixed `--rate` or saturation), subscribers count deliveries, detect loss,
//!   duplicates and reordering, and record publisher-send -> subscriber-receive latency.
//! * `idle`: open N idle connections, hold them, report the server's RSS delta per connection.
//! * `send`: one user sends marked messages stamped with the machine's clock, which `idle
//!   --expect-marked` connections (in any process) time: a broadcast across processes and hubs.
//! * `soak`: readers, rejoining churners and publishers for minutes: the server's RSS and fds over
//!   time, latency p99 per interval, messages lost for connected and for rejoining readers.
//!
//! Protocol adapters (`--protocol`): `seed` (the JSON chat protocol), `socketio`
//! (Engine.IO v4 / Socket.IO v5 over a raw websocket), `rawws` (plain text broadcast).
//!
//! Output: exactly one JSON line on stdout; a human-readable table on stderr.
//!
//! Safety rails: only loopback hosts are accepted, every loop is bounded by a count and by
//! the hard `--timeout` (the process exits at `--timeout` + 3 s whatever happens).
//!
//! The modules, in the order a run goes through them:
//! * [`cli`]: the subcommands and their flags; [`scenarios`]: the presets a-e.
//! * [`connect`]: loopback check, URL and token, the join handshake, connecting in batches.
//! * [`wire`]: message bodies and their markers, each protocol's frame, JWTs.
//! * [`fanout`] (subscribers, publishers, rounds) and [`idle`]: the two measuring modes.
//! * [`stats`]: loss, duplicates, reordering and latency; [`procfs`]: the server's CPU and
//!   memory; [`clock`]: one monotonic clock and the run's deadlines.
//! * [`report`]: the JSON line, the table on stderr, and `loadgen report`'s markdown.

mod cli;
mod clock;
mod connect;
mod fanout;
mod idle;
mod procfs;
mod report;
mod scenarios;
mod send;
mod soak;
mod stats;
mod wire;

use clap::Parser;
use cli::{Cli, Cmd};
use serde_json::{json, Value};
use std::time::Duration;

fn main() {
    clock::start();
    let cli = Cli::parse();
    let (limit, quiet, threads) = match cli.cmd.common() {
        // The soak prints its own progress on stderr; the table is for the other modes.
        Some(c) => (
            c.timeout.max(1),
            c.quiet || matches!(cli.cmd, Cmd::Soak(_)),
            c.threads,
        ),
        None => {
            if let Cmd::Report(r) = &cli.cmd {
                print!("{}", report::markdown::report(&r.files));
            }
            return;
        }
    };
    procfs::raise_nofile();
    start_watchdog(limit);
    let rt = runtime(threads);
    let out = rt.block_on(run(cli.cmd, limit));
    println!("{}", out);
    if !quiet {
        report::table::print_table(&out);
    }
    let failed = out.get("error").is_some();
    rt.shutdown_timeout(Duration::from_millis(500));
    std::process::exit(if failed { 2 } else { 0 });
}

/// Outside the runtime: even if a task never yields, the process ends at `limit` + 3 s.
fn start_watchdog(limit: u64) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(limit + 3));
        println!(
            "{}",
            json!({ "error": format!("watchdog: still running {}s after start, exiting", limit + 3) })
        );
        std::process::exit(3);
    });
}

/// One thread by default: on 2 cores a second one mostly takes CPU from the server.
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime")
}

/// The measuring mode `cmd`, cut off `limit` seconds after process start; the run's own
/// deadlines end it earlier.
async fn run(cmd: Cmd, limit: u64) -> Value {
    let fut = async move {
        match cmd {
            Cmd::Fanout(a) => fanout::run_fanout(a).await,
            Cmd::Idle(a) => idle::run_idle(a).await,
            Cmd::Send(a) => send::run_send(a).await,
            Cmd::Scenario(a) => scenarios::run_scenario(a).await,
            Cmd::Soak(a) => soak::run_soak(a).await,
            Cmd::Report(_) => unreachable!("report measures nothing"),
        }
    };
    let hard = clock::start() + Duration::from_secs(limit);
    match tokio::time::timeout_at(hard.into(), fut).await {
        Ok(v) => v,
        Err(_) => json!({ "error": format!("hard timeout after {limit}s") }),
    }
}
