//! The embedded hub's state (`<data dir>/hub.redb`) across a `kill -9`:
//! a real hub process (the built example binary) is killed with SIGKILL
//! and started again on the same `--data-dir`. Rooms (owner, privacy,
//! members), bans and mutes with their expiry, read receipts, thread
//! replies and client ids hold; a room id cannot be taken over; a damaged
//! row is skipped and counted; a damaged file stops the hub with a message
//! that names it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use channelbox_hub::auth::{Auth, Claims};
use channelbox_hub::store::{Store, Table};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "restart-test-secret-of-some-length";

/// One hub process on `127.0.0.1`; SIGKILLed (by PID) when dropped.
struct HubProcess {
    child: common::HubChild,
    addr: std::net::SocketAddr,
}

impl HubProcess {
    fn start(data_dir: &Path) -> HubProcess {
        let child = common::HubChild::start(|c| {
            c.args(["--jwt-secret", SECRET])
                .args(["--threads", "2"])
                .arg("--data-dir")
                .arg(data_dir);
        });
        let addr = child.addr;
        HubProcess { child, addr }
    }

    /// SIGKILL (`Child::kill` on Unix), this PID only.
    fn kill_9(mut self) {
        self.child.kill();
    }

    fn token(&self, sub: &str, admin: bool) -> String {
        Auth::new(SECRET.as_bytes(), false).mint(&Claims {
            sub: sub.into(),
            username: sub.into(),
            roles: if admin { vec!["admin".into()] } else { vec![] },
            exp: common::now() + 3600,
        })
    }

    /// `Err(status)` when the upgrade is refused.
    async fn ws(&self, path: &str, sub: &str) -> Result<common::Client, u16> {
        let url = format!("ws://{}{path}?token={}", self.addr, self.token(sub, false));
        match tokio::time::timeout(common::WAIT, tokio_tungstenite::connect_async(url)).await {
            Ok(Ok((ws, _))) => Ok(common::Client { ws }),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => Err(r.status().as_u16()),
            other => panic!("connect {path}: {other:?}"),
        }
    }

    async fn join(&self, room: &str, sub: &str) -> common::Client {
        let mut c = self
            .ws(&format!("/chat/{room}"), sub)
            .await
            .unwrap_or_else(|s| panic!("join {room}: HTTP {s}"));
        c.expect("history").await;
        c
    }

    /// One HTTP request as `sub`; (status, JSON body or null).
    async fn json(&self, method: &str, path: &str, sub: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            self.token(sub, false),
            body.len()
        );
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            out
        };
        let raw = tokio::time::timeout(common::WAIT, exchange).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text[9..12].parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_bans_mutes_and_receipts_hold_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    let (status, secret) = hub
        .json(
            "POST",
            "/rooms",
            "olga",
            Some(json!({"name": "secret", "private": true, "members": ["bob"]})),
        )
        .await;
    assert_eq!(status, 201);
    let secret = secret["id"].as_str().unwrap().to_owned();
    let (_, ruled) = hub
        .json("POST", "/rooms", "olga", Some(json!({"name": "ruled"})))
        .await;
    let ruled = ruled["id"].as_str().unwrap().to_owned();
    let mut olga = hub.join(&ruled, "olga").await;
    for frame in [
        json!({"type": "ban", "user": "mallory"}),
        json!({"type": "ban", "user": "brief", "duration_s": 1}),
        json!({"type": "mute", "user": "eve", "duration_s": 3600}),
    ] {
        olga.send(frame.clone()).await;
        olga.expect_where("system", |f| {
            f["action"] == frame["type"] && f["user"] == frame["user"]
        })
        .await;
    }
    let id = olga.say("read me").await;
    olga.send(json!({"type": "read", "message_id": id})).await;
    olga.expect_where("read", |f| f["message_id"] == id).await;
    let reply = olga
        .say_with(json!({"type": "message", "content": "re", "thread_id": id}))
        .await;
    // Receipts and thread replies are committed in batches every 5 ms;
    // rooms and bans were committed before their answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.kill_9();

    // The file as the killed hub left it.
    {
        let store = Store::open_embedded(dir.path()).unwrap();
        assert_eq!(store.replies(&ruled, id, 10).await.unwrap(), vec![reply]);
    }

    // Past the short ban's end, on the same data directory.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hub = HubProcess::start(dir.path());
    let (status, room) = hub
        .json("GET", &format!("/rooms/{secret}"), "bob", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(room["owner"], "olga");
    assert_eq!(room["private"], true);
    assert_eq!(room["members"], json!(["bob", "olga"]));
    assert_eq!(
        hub.ws(&format!("/chat/{secret}"), "stranger").await.err(),
        Some(403)
    );
    let _bob = hub.join(&secret, "bob").await;
    assert_eq!(
        hub.ws(&format!("/chat/{ruled}"), "mallory").await.err(),
        Some(403)
    );
    let _brief = hub.join(&ruled, "brief").await;
    let mut eve = hub.ws(&format!("/chat/{ruled}"), "eve").await.unwrap();
    let reads = eve.expect("reads").await;
    assert_eq!(reads["reads"]["olga"], id, "{reads}");
    eve.send(json!({"type": "message", "content": "hello?"}))
        .await;
    assert_eq!(eve.expect("error").await["code"], "muted");
    // A stranger asking for the same name gets another id, not the room.
    let (status, taken) = hub
        .json("POST", "/rooms", "mallory", Some(json!({"name": "secret"})))
        .await;
    assert_eq!(status, 201);
    assert_ne!(taken["id"].as_str(), Some(secret.as_str()));
    // The owner still owns it: she may change it.
    let (status, _) = hub
        .json(
            "PATCH",
            &format!("/rooms/{secret}"),
            "olga",
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_a_restart_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    let mut alice = hub.join("lobby", "alice").await;
    alice
        .send(json!({"type": "message", "content": "once", "client_id": "c-7"}))
        .await;
    let ack = alice.expect_where("ack", |f| f["client_id"] == "c-7").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.kill_9();
    let store = Store::open_embedded(dir.path()).unwrap();
    let key = format!(
        "{}:{}:{}{}{}",
        "lobby".len(),
        "alice".len(),
        "lobby",
        "alice",
        "c-7"
    );
    let kept = store
        .get(Table::ClientIds, "", &key)
        .await
        .unwrap()
        .unwrap();
    let kept = String::from_utf8(kept).unwrap();
    assert!(kept.starts_with(&format!("{},", ack["id"])), "{kept}");
    drop(store);
    // The client resends to the restarted hub: acked with the first id,
    // not saved again.
    let hub = HubProcess::start(dir.path());
    let mut again = hub.join("lobby", "alice").await;
    again
        .send(json!({"type": "message", "content": "once", "client_id": "c-7"}))
        .await;
    let second = again.expect_where("ack", |f| f["client_id"] == "c-7").await;
    assert_eq!(second["id"], ack["id"]);
    again.expect_no("message", Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_embedded(dir.path()).unwrap();
        let good = json!({"id": "good", "name": "good", "private": false, "owner": "olga", "members": ["olga"]});
        store
            .put(Table::Rooms, "", "good", good.to_string().as_bytes())
            .await
            .unwrap();
        store
            .put(Table::Rooms, "", "bad", b"{half a ro")
            .await
            .unwrap();
        store
            .put(Table::Bans, "good", "bob", b"whenever")
            .await
            .unwrap();
    }
    let hub = HubProcess::start(dir.path());
    let (status, list) = hub.json("GET", "/rooms", "olga", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([{"id": "good", "name": "good", "private": false, "owner": "olga", "members": ["olga"]}])
    );
    // A damaged room admits nobody but admins; a damaged ban does not hold.
    assert_eq!(hub.ws("/chat/bad", "bob").await.err(), Some(403));
    let _bob = hub.join("good", "bob").await;
    let (_, stats) = hub.json("GET", "/stats", "olga", None).await;
    assert!(stats["state_corrupt"].as_u64().unwrap() >= 3, "{stats}");
}

#[test]
fn a_damaged_state_file_stops_the_hub_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hub.redb"), vec![0x5a; 64 * 1024]).unwrap();
    let port = common::free_port();
    let mut child = Command::new(common::hub_binary())
        .args(["--port", &port.to_string(), "--jwt-secret", SECRET])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the hub kept running on a damaged state file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("hub.redb"), "{stderr}");
    assert!(stderr.contains("move it aside"), "{stderr}");
    // The file is left as it was, for whoever repairs it.
    assert_eq!(
        std::fs::read(dir.path().join("hub.redb")).unwrap(),
        vec![0x5a; 64 * 1024]
    );
}

/// A room is committed before its 201 and a ban before its `system` frame:
/// killed right after them, the hub still has both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_room_and_ban_survive_an_immediate_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            "olga",
            Some(json!({"name": "quick", "private": true})),
        )
        .await;
    assert_eq!(status, 201);
    let id = room["id"].as_str().unwrap().to_owned();
    let mut olga = hub.join(&id, "olga").await;
    olga.send(json!({"type": "ban", "user": "bob"})).await;
    olga.expect_where("system", |f| f["action"] == "ban").await;
    hub.kill_9();
    let hub = HubProcess::start(dir.path());
    let (status, room) = hub.json("GET", &format!("/rooms/{id}"), "olga", None).await;
    assert_eq!((status, room["private"].as_bool()), (200, Some(true)));
    // Bob is banned; made a member, he is still refused by the ban.
    let (status, _) = hub
        .json(
            "POST",
            &format!("/rooms/{id}/members"),
            "olga",
            Some(json!({"add": ["bob"]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(hub.ws(&format!("/chat/{id}"), "bob").await.err(), Some(403));
}

/// A `rooms.json` left by an older hub is imported at the first start and
/// renamed, so it is read once; its rooms keep their owners and privacy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_rooms_json_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let old = json!([{"id": "legacy", "name": "Legacy", "private": true, "owner": "olga", "members": ["olga", "bob"]}]);
    std::fs::write(dir.path().join("rooms.json"), old.to_string()).unwrap();
    let hub = HubProcess::start(dir.path());
    let (status, room) = hub.json("GET", "/rooms/legacy", "bob", None).await;
    assert_eq!(status, 200);
    assert_eq!(room["owner"], "olga");
    assert_eq!(hub.ws("/chat/legacy", "stranger").await.err(), Some(403));
    assert!(!dir.path().join("rooms.json").exists());
    assert!(dir.path().join("rooms.json.imported").exists());
    // Olga deletes it; a restart does not bring it back from the old file.
    let (status, _) = hub.json("DELETE", "/rooms/legacy", "olga", None).await;
    assert_eq!(status, 204);
    hub.kill_9();
    let hub = HubProcess::start(dir.path());
    let (status, _) = hub.json("GET", "/rooms/legacy", "olga", None).await;
    assert_eq!(status, 404);
}

/// With history on disk too (the default), what depends on it holds
/// across a `kill -9`: a thread lists its replies, search finds messages
/// sent before the kill (the index is rebuilt from history), an edit made
/// before the kill shows, and a client that was away recovers by id with
/// the edit's update event, `recovered: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_search_and_edits_hold_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    let mut olga = hub.ws("/chat/notes", "olga").await.unwrap();
    let epoch = olga.expect("history").await["epoch"].clone();
    let root = olga.say("alpha bravo charlie").await;
    let reply = olga
        .say_with(json!({"type": "message", "content": "a reply", "thread_id": root}))
        .await;
    let later = olga.say("delta").await;
    olga.send(json!({"type": "edit", "message_id": later, "content": "delta echo"}))
        .await;
    let edited = olga.expect("edited").await;
    let event = edited["id"].as_u64().unwrap();
    assert!(event > later, "{edited}");
    // Every ack and the edit's event were committed before they came back.
    hub.kill_9();

    let hub = HubProcess::start(dir.path());
    let mut olga = hub.ws("/chat/notes", "olga").await.unwrap();
    let history = olga.expect("history").await;
    assert_eq!(history["epoch"], epoch, "{history}");
    let shown: Vec<&Value> = history["messages"].as_array().unwrap().iter().collect();
    let latest = shown.iter().find(|m| m["id"] == later).expect("kept");
    assert_eq!(latest["content"], "delta echo");
    assert_eq!(latest["edited"], true);
    olga.send(json!({"type": "thread", "message_id": root}))
        .await;
    let thread = olga.expect("thread").await;
    let ids: Vec<u64> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![root, reply], "{thread}");
    for (query, want) in [("bravo", root), ("echo", later)] {
        // The index is rebuilt from history in the background: poll.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            olga.send(json!({"type": "search", "query": query})).await;
            let found = olga.expect("search_results").await;
            let hits: Vec<u64> = found["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_u64().unwrap())
                .collect();
            if hits == vec![want] {
                break;
            }
            assert!(Instant::now() < deadline, "{query}: {found}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A client that left after the root recovers the rest, the edit's
    // event included, in id order.
    let url = format!(
        "ws://{}/chat/notes?token={}&since={root}&epoch={}",
        hub.addr,
        hub.token("bob", false),
        epoch
            .as_str()
            .map_or_else(|| epoch.to_string(), str::to_owned),
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut bob = common::Client { ws };
    let replay = bob.expect("history").await;
    assert_eq!(replay["recovered"], true, "{replay}");
    let ids: Vec<u64> = replay["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.contains(&reply) && ids.contains(&later) && ids.contains(&event),
        "{replay}"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{replay}");
}
