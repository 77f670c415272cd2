//! What the live unread counts add to a chat message: the `activity`
//! frame (`features::unread::send_activity`) sent after each saved message.
//!
//! A room of 10 members gets `n` saved chat messages the way the hub
//! sends them (`group_send_with_async`, the frame encoded with its id by
//! `frames::encode`, as `chat::send_message` does; the client frame's
//! parsing and the features' hooks are left out, so the share measured
//! is an upper bound of the share in the whole message path);
//! `activity` also sends each one's `activity` frame to `unread:{room}`,
//! watched by `watchers` connections (0: nobody watches). Queues are
//! drained every 100 messages. Count instructions, not time, and take the
//! difference of two runs (the setup cancels):
//!
//! ```text
//! cargo build -p channelbox-hub --example bench_unread
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/debug/examples/bench_unread room 2000 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/debug/examples/bench_unread activity 2000 0   # and `... 2000 1`
//! ```
//!
//! (added per message) = (activity - room) / n; the room run alone, less a
//! run with n = 0, is the room send's own cost.
//!
//! Measured 2026-12-02 (debug build, as the tests run; valgrind 3.19,
//! n = 2000, instructions per message): the room send 76,956; the
//! `activity` frame adds 10,462 with nobody watching (+13.6 %), 14,558
//! with 1 watcher (+18.9 %), 21,229 with 10 (+27.6 %), about 1,200 a
//! watcher. Encoding the frame with a serde struct instead cost 34,255
//! with nobody watching (+44.5 %): the frame is written directly.

use channelbox::Kind;
use channelbox_hub::config::HistoryStore;
use channelbox_hub::features::unread::{activity_group, send_activity};
use channelbox_hub::frames::{self, ChatMessage};
use channelbox_hub::server::AppState;
use channelbox_hub::Config;

const ROOM: &str = "bench-room";
const MEMBERS: usize = 10;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "room".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let n = n.min(1_000_000);
    let watchers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let watchers = watchers.min(1000);
    let activity = match mode.as_str() {
        "room" => false,
        "activity" => true,
        other => anyhow::bail!("mode is room or activity, not {other}"),
    };
    let dir = tempfile::tempdir()?;
    let config = Config {
        jwt_secret: Some("bench-secret-bench-secret-bench-secret".into()),
        data_dir: dir.path().to_path_buf(),
        history_store: HistoryStore::Memory,
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let state = runtime.block_on(async { AppState::new(config) })?;
    let hub = &state.hub;
    let group = frames::room_group(ROOM);
    let mut conns = Vec::new();
    for _ in 0..MEMBERS {
        let c = hub.open(None, None)?;
        c.join(&group)?;
        conns.push(c);
    }
    for _ in 0..watchers {
        let c = hub.open(None, None)?;
        c.join(&activity_group(ROOM))?;
        conns.push(c);
    }
    let mut drained = Vec::new();
    let extra = serde_json::Map::new();
    runtime.block_on(async {
        for i in 0..n {
            // Built as the hub builds a chat message (`chat::send_message`).
            let content = format!("message {i}");
            let ts = frames::timestamp(frames::now_ms());
            let send = hub.group_send_with_async(&group, Kind::Json, true, |id| {
                frames::encode(&ChatMessage {
                    ty: "message",
                    id,
                    user: "u0",
                    user_id: None,
                    content: &content,
                    timestamp: &ts,
                    thread_id: None,
                    attachments: None,
                    extra: &extra,
                })
            });
            let report = send.await?;
            if activity {
                send_activity(hub, ROOM, report.offset, "u0").await;
            }
            if i % 100 == 99 {
                for c in &conns {
                    drained.clear();
                    c.try_recv_batch(&mut drained, 1000)?;
                }
            }
        }
        anyhow::Ok(())
    })?;
    println!("{mode}: {n} messages, {MEMBERS} members, {watchers} watchers");
    Ok(())
}
