//! What the hub's state store adds to a join and to a message, per mode.
//!
//! A join asks the store what `features::admit` and `on_join` ask: the
//! room's row and the user's ban (one read), then everyone's read receipts. A message asks what `messages::before` and
//! `after` ask: is the author muted, claim the `client_id`, then settle it
//! with the saved id. The calls are the hub's own (`FeatureState`), in a
//! bounded loop, on a room with 20 members, 20 receipts and 5 bans.
//!
//! ```text
//! cargo run --release -p channelbox-hub --example bench_state -- embedded 20000
//! cargo run --release -p channelbox-hub --example bench_state -- redis 5000
//! ```
//!
//! `redis` starts a throw-away `redis-server` on 127.0.0.1. For a stable
//! figure, count instructions instead of time (valgrind's callgrind, two
//! runs whose difference cancels the setup; see BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use channelbox_hub::features::FeatureState;
use channelbox_hub::store::{Store, Table};

const ROOM: &str = "bench-room";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "embedded".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let n = n.clamp(1, 1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let redis = (mode == "redis").then(channelbox_test_support::RedisServer::start);
    let store = Arc::new(match &redis {
        Some(r) => Store::open_redis(&r.url(), "bench", Duration::from_secs(2))?,
        None => Store::open_embedded(dir.path())?,
    });
    let features = FeatureState::new(store.clone());
    runtime.block_on(async {
        let members: Vec<String> = (0..20).map(|i| format!("\"u{i}\"")).collect();
        let room = format!(
            "{{\"id\":\"{ROOM}\",\"name\":\"bench\",\"private\":true,\"owner\":\"u0\",\"members\":[{}]}}",
            members.join(",")
        );
        store.put(Table::Rooms, "", ROOM, room.as_bytes()).await?;
        for i in 0..20 {
            store
                .put(Table::Reads, ROOM, &format!("u{i}"), (100 + i).to_string().as_bytes())
                .await?;
        }
        for i in 0..5 {
            store
                .put(Table::Bans, ROOM, &format!("banned{i}"), b"0,1")
                .await?;
        }
        anyhow::Ok(())
    })?;

    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..n {
            let sub = format!("u{}", i % 20);
            // As `features::admit`: the room's row and the user's ban in one read.
            let stored = store
                .get_many(&[(Table::Rooms, "", ROOM), (Table::Bans, ROOM, &sub)])
                .await?;
            let admitted = features
                .rooms
                .admits_stored(ROOM, stored[0].as_deref(), &sub, false)
                && !features
                    .moderation
                    .ban_holds(ROOM, &sub, stored[1].as_deref());
            assert!(admitted);
            let reads = features.reads.of_room(ROOM).await?;
            assert_eq!(reads.len(), 20);
        }
        anyhow::Ok(())
    })?;
    let join = started.elapsed();

    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..n {
            let sub = format!("u{}", i % 20);
            assert!(!features.moderation.muted(ROOM, &sub).await?);
            let client_id = format!("c{i}");
            features
                .client_ids
                .check(ROOM, &sub, &client_id)
                .await
                .map_err(|r| anyhow::anyhow!(r.detail))?;
            features
                .client_ids
                .saved(ROOM, &sub, &client_id, i as u64 + 1)
                .await;
        }
        anyhow::Ok(())
    })?;
    let message = started.elapsed();
    store.flush();

    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "bench_state mode={mode} n={n} cpus={} join_us={:.2} message_us={:.2} corrupt={}",
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        per(join),
        per(message),
        store.corrupt()
    );
    Ok(())
}
