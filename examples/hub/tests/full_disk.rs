//! A full disk under the hub process (issue 11): the built hub binary runs
//! with its file size capped (`RLIMIT_FSIZE`, SIGXFSZ ignored, so writes
//! past the cap fail with EFBIG as on a full disk). Sends past the cap get
//! an `error` frame and no `ack`, a resend of a refused message is not
//! acked either, nothing acknowledged is lost: once the cap is gone (the
//! hub started again on the same `--data-dir`) every acked message is in
//! history with its id and content, and a refused one can be sent again.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "full";
/// Most sends before the cap must have been reached.
const MAX_SENDS: usize = 20_000;

fn start(dir: &Path, cap: Option<u64>) -> common::HubChild {
    common::HubChild::start(|c| {
        c.args(["--jwt-secret", common::SECRET, "--threads", "2"])
            .args(["--messages-per-second", "100000", "--burst", "100000"])
            // History bounds far above what the test sends: nothing evicted.
            .args(["--history-max-messages", "1000000"])
            .args(["--history-max-bytes", "1000000000"])
            .arg("--data-dir")
            .arg(dir)
            .stderr(std::process::Stdio::inherit());
        if let Some(cap) = cap {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let limit = libc::rlimit {
                        rlim_cur: cap,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    })
}

async fn connect(hub: &common::HubChild, sub: &str) -> common::Ws {
    let token = common::token(sub, sub);
    let url = format!("ws://{}/chat/{ROOM}?token={token}", hub.addr);
    let (ws, _) = tokio::time::timeout(common::WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("upgrade");
    ws
}

/// The next frame (within [`common::WAIT`]); `None` when the socket is gone.
async fn next(ws: &mut common::Ws) -> Option<Value> {
    for _ in 0..10_000 {
        match tokio::time::timeout(common::WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
    None
}

/// What the hub answered to one send.
#[derive(Debug)]
enum Answer {
    Ack(u64),
    Error(Value),
}

/// Sends `content` with `client_id` and waits for its `ack` or an `error`
/// (other frames, the room's broadcasts, are skipped).
async fn send(ws: &mut common::Ws, content: &str, client_id: &str) -> Answer {
    let frame = json!({"type": "message", "content": content, "client_id": client_id});
    ws.send(Message::text(frame.to_string())).await.unwrap();
    for _ in 0..1000 {
        let f = next(ws).await.expect("an answer to a send");
        if f["type"] == "ack" && f["client_id"] == client_id {
            return Answer::Ack(f["id"].as_u64().unwrap());
        }
        if f["type"] == "error" {
            return Answer::Error(f);
        }
    }
    panic!("no ack or error within 1000 frames");
}

/// The largest file under `dir`.
fn largest_file(dir: &Path) -> u64 {
    let mut max = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        max = max.max(if meta.is_dir() {
            largest_file(&entry.path())
        } else {
            meta.len()
        });
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_with_an_error_and_loses_nothing_acked() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    {
        // Files made first, so the capped hub only has to grow them.
        let mut hub = start(dir.path(), None);
        let mut ws = connect(&hub, "writer").await;
        match send(&mut ws, "first", "c-first").await {
            Answer::Ack(id) => acked.insert(id, "first".into()),
            other => panic!("first send: {other:?}"),
        };
        hub.kill();
    }
    let cap = largest_file(dir.path()) + (1 << 20);
    let refused_id;
    let error;
    {
        let mut hub = start(dir.path(), Some(cap));
        let mut ws = connect(&hub, "writer").await;
        let payload = "x".repeat(900);
        let mut first_error = None;
        for i in 0..MAX_SENDS {
            let content = format!("{i} {payload}");
            let client_id = format!("c{i}");
            match send(&mut ws, &content, &client_id).await {
                Answer::Ack(id) => {
                    assert!(acked.insert(id, content).is_none(), "id {id} acked twice");
                }
                Answer::Error(e) => {
                    first_error = Some((client_id, e));
                    break;
                }
            }
        }
        let (client_id, e) = first_error.expect("the cap is reached within MAX_SENDS sends");
        println!("refused after {} acks: {e}", acked.len());
        assert!(acked.len() > 10, "only {} sends acked", acked.len());
        // A clear error: the history store failed, and why.
        assert_eq!(e["code"], "unavailable", "{e}");
        assert!(
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("history store")),
            "{e}"
        );
        // Later sends, and a resend of the refused one, are refused too:
        // never an ack for what is not on disk.
        for i in 0..3 {
            match send(&mut ws, &format!("more {i}"), &format!("more{i}")).await {
                Answer::Error(e) => assert_eq!(e["code"], "unavailable", "{e}"),
                Answer::Ack(id) => panic!("acked {id} with the disk full"),
            }
        }
        match send(&mut ws, "resend", &client_id).await {
            Answer::Error(e) => assert_eq!(e["code"], "unavailable", "{e}"),
            Answer::Ack(id) => panic!("the refused message's resend was acked as {id}"),
        }
        refused_id = client_id;
        error = e;
        hub.kill();
    }
    // Space back: every acked message is there with its id and content.
    let hub = start(dir.path(), None);
    let mut ws = connect(&hub, "reader").await;
    // The join's own `history` frame first; then pages, newest first.
    let joined = next(&mut ws).await.expect("the join's history frame");
    assert_eq!(joined["type"], "history", "{joined}");
    let mut found: BTreeMap<u64, String> = BTreeMap::new();
    let mut before: Option<u64> = None;
    for _ in 0..(MAX_SENDS / 200 + 10) {
        let mut frame = json!({"type": "history", "limit": 200});
        if let Some(b) = before {
            frame["before"] = json!(b);
        }
        ws.send(Message::text(frame.to_string())).await.unwrap();
        let page = loop {
            let f = next(&mut ws).await.expect("a history page");
            if f["type"] == "history" {
                break f;
            }
        };
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        for m in &messages {
            if m["type"] == "message" {
                found.insert(
                    m["id"].as_u64().unwrap(),
                    m["content"].as_str().unwrap_or_default().to_owned(),
                );
            }
        }
        match messages.iter().filter_map(|m| m["id"].as_u64()).min() {
            Some(oldest) if oldest > 1 => before = Some(oldest),
            _ => break,
        }
    }
    for (id, content) in &acked {
        assert_eq!(found.get(id), Some(content), "acked message {id} lost");
    }
    // The refused message can be sent again now, and is saved.
    match send(&mut ws, "resend after", &refused_id).await {
        Answer::Ack(id) => assert!(id > *acked.keys().last().unwrap()),
        other => panic!("resend after the disk has room: {other:?} (refused with {error})"),
    }
}
