//! Durable history in the example hub (the default `--history-store
//! disk`): the built hub binary takes messages from several clients, is
//! killed with SIGKILL under that traffic, and is started again on the same
//! `--data-dir`. Every message it acknowledged must be in history with its
//! id, the room's epoch must be the same, and a client reconnecting with
//! `?since=<id>&epoch=<e>` gets exactly what it missed, `recovered: true`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use channelbox_hub::auth;

const SECRET: &str = "durability-test-secret";
/// Clients sending at once.
const SENDERS: usize = 4;
/// Most messages one sender sends before the kill stops it.
const MAX_PER_SENDER: usize = 400;

/// The built hub binary on `--data-dir dir`, killed (SIGKILL, by PID) when
/// dropped.
struct HubProcess {
    child: common::HubChild,
    addr: std::net::SocketAddr,
}

impl HubProcess {
    fn start(dir: &Path) -> HubProcess {
        let child = common::HubChild::start(|c| {
            c.args(["--jwt-secret", SECRET])
                .args(["--threads", "2", "--messages-per-second", "100000"])
                .args(["--burst", "100000"])
                .arg("--data-dir")
                .arg(dir)
                .stderr(Stdio::inherit());
        });
        let addr = child.addr;
        HubProcess { child, addr }
    }

    fn kill(&mut self) {
        self.child.kill();
    }

    async fn connect(&self, sub: &str, query: &str) -> common::Ws {
        let token = auth::Auth::new(SECRET.as_bytes(), false).mint(&auth::Claims {
            sub: sub.into(),
            username: sub.into(),
            roles: vec![],
            exp: common::now() + 3600,
        });
        let url = format!("ws://{}/chat/durable?token={token}{query}", self.addr);
        let (ws, _) = tokio::time::timeout(common::WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("upgrade");
        ws
    }
}

/// The next JSON frame, `None` once the connection is gone (or after
/// [`common::WAIT`]).
async fn next(ws: &mut common::Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(common::WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// The first `history` frame.
async fn history(ws: &mut common::Ws) -> Value {
    loop {
        let frame = next(ws).await.expect("a history frame");
        if frame["type"] == "history" {
            return frame;
        }
    }
}

/// `content` by id of the messages in a history frame.
fn contents(history: &Value) -> BTreeMap<u64, String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "message")
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Sends up to [`MAX_PER_SENDER`] messages one after the other, each
/// after the previous one's ack; returns `(id, content)` of every ack.
async fn sender(mut ws: common::Ws, name: String) -> Vec<(u64, String)> {
    let mut acked = Vec::new();
    'send: for i in 0..MAX_PER_SENDER {
        let content = format!("{name}-{i}");
        let frame = json!({"type": "message", "content": content, "client_id": content});
        if ws.send(Message::text(frame.to_string())).await.is_err() {
            break;
        }
        loop {
            let Some(frame) = next(&mut ws).await else {
                break 'send;
            };
            if frame["type"] == "ack" && frame["client_id"] == content.as_str() {
                acked.push((frame["id"].as_u64().unwrap(), content));
                break;
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_sigkill_and_recovery_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = HubProcess::start(dir.path());
    let mut first = hub.connect("watcher", "").await;
    let epoch = history(&mut first).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let ws = hub.connect(&format!("user{s}"), "").await;
        senders.push(tokio::spawn(sender(ws, format!("user{s}"))));
    }
    // Kill under traffic: once some acks are in, before the senders end.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < 100 {
        assert!(Instant::now() < deadline, "only {seen} messages in 30 s");
        match next(&mut first).await {
            Some(f) if f["type"] == "message" => seen += 1,
            Some(_) => {}
            None => panic!("the watcher lost its connection"),
        }
    }
    hub.kill();
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    println!("{} acks before the kill", acked.len());
    assert!(acked.len() >= 50, "{} acks before the kill", acked.len());
    assert!(
        acked.len() < SENDERS * MAX_PER_SENDER,
        "the kill came under traffic"
    );

    let hub = HubProcess::start(dir.path());
    let mut all = hub
        .connect("checker", &format!("&since=0&epoch={epoch}"))
        .await;
    let replay = history(&mut all).await;
    assert_eq!(replay["epoch"], epoch.as_str(), "the epoch is unchanged");
    assert_eq!(replay["recovered"], true);
    let saved = contents(&replay);
    println!("{} messages in history after the restart", saved.len());
    for (id, content) in &acked {
        assert_eq!(
            saved.get(id),
            Some(content),
            "acknowledged message {id} ({content}) is in history with its id"
        );
    }

    // A client that had everything up to an acknowledged message in the
    // middle gets exactly the rest.
    let mut ids: Vec<u64> = acked.iter().map(|a| a.0).collect();
    ids.sort_unstable();
    let since = ids[ids.len() / 2];
    let mut back = hub
        .connect("watcher", &format!("&since={since}&epoch={epoch}"))
        .await;
    let recovered = history(&mut back).await;
    assert_eq!(recovered["recovered"], true);
    let missed: Vec<u64> = saved.keys().copied().filter(|id| *id > since).collect();
    assert_eq!(
        contents(&recovered).keys().copied().collect::<Vec<_>>(),
        missed
    );

    // New messages get ids above every one handed out before the kill.
    let mut ws = hub.connect("user0", "").await;
    history(&mut ws).await;
    let frame = json!({"type": "message", "content": "after", "client_id": "after"});
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let id = loop {
        let f = next(&mut ws).await.expect("an ack after the restart");
        if f["type"] == "ack" {
            break f["id"].as_u64().unwrap();
        }
    };
    assert!(id > *ids.last().unwrap(), "{id} is new");
    assert!(saved.keys().all(|old| id > *old), "{id} is new");
}

/// A socket has at most `MAX_PENDING_ACKS` saved messages waiting for their
/// commit; the next one is sent, then waits for a slot for its ack, and
/// holds up the socket's reader meanwhile. With commits gathered for 1 s
/// (the most allowed), a burst of `MAX_PENDING_ACKS + 36` is echoed
/// `MAX_PENDING_ACKS + 1` at a time: on the sender's own socket the next
/// echo comes after the first ack, and every
/// message is acked exactly once (acks may come in any order: clients
/// match them by `client_id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_waits_for_acks_beyond_the_pending_limit() {
    use channelbox_hub::session::MAX_PENDING_ACKS;
    const BURST: usize = MAX_PENDING_ACKS + 36;
    let hub = common::Hub::start_with(|c| {
        c.history_commit_interval_ms = 1000;
        c.messages_per_second = 0;
    })
    .await;
    let (mut a, _) = hub.join("acks", &hub.user("a")).await;
    for i in 0..BURST {
        a.send(json!({"message": format!("m{i}"), "client_id": format!("c{i}")}))
            .await;
    }
    // Frames on a's socket in order: echoes ("message") and acks.
    let mut echoes = 0;
    let mut acks = Vec::new();
    let mut echoes_before_first_ack = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.len() < BURST {
        assert!(Instant::now() < deadline, "acks: {} of {BURST}", acks.len());
        let f = match a.next_within(common::WAIT).await {
            common::Seen::Frame(f) => f,
            other => panic!("after {echoes} echoes and {} acks: {other:?}", acks.len()),
        };
        match f["type"].as_str() {
            Some("message") => echoes += 1,
            Some("ack") => {
                echoes_before_first_ack.get_or_insert(echoes);
                acks.push(f["client_id"].as_str().unwrap().to_string());
            }
            _ => {}
        }
    }
    assert_eq!(echoes_before_first_ack, Some(MAX_PENDING_ACKS + 1));
    acks.sort_by_key(|c| c[1..].parse::<usize>().unwrap());
    let want: Vec<String> = (0..BURST).map(|i| format!("c{i}")).collect();
    assert_eq!(acks, want);
    hub.stop().await;
}
