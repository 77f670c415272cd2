//! Two example hubs (`--redis-url`) on one throw-away Redis, spoken to over
//! WebSockets: a room spans them, ids agree, recovery and DMs work across
//! them, presence is the union of the hubs (also when one is killed), and a
//! Redis restart closes sockets with 1012 (reconnect).

use channelbox_hub::*;

mod common;

use channelbox_test_support::RedisServer;

use std::time::{Duration, Instant};

use common::Hub;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_two_hubs_with_one_sequence_of_ids() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("lobby", &h1.user("alice")).await;
    let (mut bob, _) = h2.join("lobby", &h2.user("bob")).await;
    // Alice, on h1, sees bob join on h2.
    alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    alice.send(json!({"message": "hi from h1"})).await;
    let at_bob = bob
        .expect_where("message", |f| f["content"] == "hi from h1")
        .await;
    let at_alice = alice
        .expect_where("message", |f| f["content"] == "hi from h1")
        .await;
    assert_eq!(at_bob["id"], at_alice["id"]);
    bob.send(json!({"message": "hi from h2"})).await;
    let reply = alice
        .expect_where("message", |f| f["content"] == "hi from h2")
        .await;
    assert_eq!(reply["id"].as_u64(), at_bob["id"].as_u64().map(|i| i + 1));
    // A client that saw up to alice's message recovers on the other hub.
    let since = at_bob["id"].as_u64().unwrap();
    let mut carol = h1
        .ws(&format!("/chat/lobby?since={since}"), &h1.user("carol"))
        .await
        .unwrap();
    let history = carol.expect("history").await;
    assert_eq!(history["recovered"], true, "{history}");
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, vec!["hi from h2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hub_counts_the_room_deliveries_to_its_own_sockets() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("counted", &h1.user("alice")).await;
    let (mut bob, _) = h2.join("counted", &h2.user("bob")).await;
    alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    for n in 1..=3 {
        alice.say(&format!("message {n}")).await;
        bob.expect_where("message", |f| f["content"] == format!("message {n}"))
            .await;
    }
    let (at_h1, at_h2) = (room_stats(&h1).await, room_stats(&h2).await);
    // h1 sent the messages; h2 delivered them to bob (his own join notice
    // came in his history frame), h1 to alice (bob's join notice too).
    assert_eq!(at_h1["per_room"]["counted"]["messages"], 3, "{at_h1}");
    assert_eq!(at_h2["per_room"]["counted"]["deliveries"], 3, "{at_h2}");
    assert_eq!(at_h1["per_room"]["counted"]["deliveries"], 4, "{at_h1}");
    h1.stop().await;
    h2.stop().await;
}

/// A hub's `GET /stats`, as a user sees it.
async fn room_stats(hub: &Hub) -> serde_json::Value {
    hub.json("GET", "/stats", &hub.user("ops"), None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_reaches_the_user_on_the_other_hub() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let mut bob = h2.ws("/dm/alice", &h2.user("bob")).await.unwrap();
    bob.expect("history").await;
    let mut alice = h1.ws("/dm/bob", &h1.user("alice")).await.unwrap();
    alice.expect("history").await;
    alice.send(json!({"message": "psst"})).await;
    let dm = bob.expect("direct_message").await;
    assert_eq!(dm["content"], "psst");
    assert_eq!(dm["from"], "alice");
    // The live copies carry the id Redis assigned (not the engine's
    // placeholder), the same id the replay shows, on both hubs.
    let own = alice.expect("direct_message").await;
    let id = dm["id"].as_u64().unwrap();
    assert!((1..1_000_000).contains(&id), "live DM id {id}");
    assert_eq!(own["id"], dm["id"]);
    let mut again = h2.ws("/dm/alice", &h2.user("bob")).await.unwrap();
    let replay = again.expect("history").await;
    let replayed = replay["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["content"] == "psst")
        .expect("the DM is in the replay")
        .clone();
    assert_eq!(replayed["id"], dm["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_closes_sockets_with_reconnect_and_they_recover() {
    let mut redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("lobby", &h1.user("alice")).await;
    let (mut bob, _) = h2.join("lobby", &h2.user("bob")).await;
    alice.send(json!({"message": "before"})).await;
    bob.expect_where("message", |f| f["content"] == "before")
        .await;
    redis.kill();
    redis.spawn();
    assert_eq!(alice.expect_close().await, Some(1012));
    assert_eq!(bob.expect_close().await, Some(1012));
    // Back on their feet: reconnecting works once the hubs resubscribed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        if let Ok(c) = h2.ws("/chat/lobby", &h2.user("bob")).await {
            let mut c = c;
            if let common::Seen::Frame(f) = c.next_within(Duration::from_secs(2)).await {
                if f["type"] == "history" {
                    break c;
                }
            }
        }
        assert!(Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut alice2, _) = h1.join("lobby", &h1.user("alice")).await;
    alice2.send(json!({"message": "after"})).await;
    again
        .expect_where("message", |f| f["content"] == "after")
        .await;
    let s = h1.state.hub.stats();
    assert!(s.engine_lost_subscription_closes >= 1, "{s:?}");
}

/// Reads frames until `done` says it has seen enough (at most 200 frames,
/// within `wait`); returns them all.
async fn frames_until(
    c: &mut common::Client,
    wait: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Vec::new();
    for _ in 0..200 {
        if done(&seen) {
            return seen;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            common::Seen::Frame(f) => seen.push(f),
            other => panic!("waiting: {other:?}; seen {seen:?}"),
        }
    }
    panic!("not done in 200 frames: {seen:?}")
}

fn is_status(f: &serde_json::Value, user: &str, status: &str) -> bool {
    f["type"] == "status" && f["user_id"] == user && f["status"] == status
}

/// Connects to `/presence` and reads until both its `users` frame and the
/// `online` of `user` (its own first socket) arrived; returns the users.
async fn presence_first(
    hub: &Hub,
    token: &str,
    user: &str,
) -> (common::Client, Vec<serde_json::Value>) {
    let mut c = hub.ws("/presence", token).await.unwrap();
    let seen = frames_until(&mut c, common::WAIT, |s| {
        s.iter().any(|f| f["type"] == "users") && s.iter().any(|f| is_status(f, user, "online"))
    })
    .await;
    (c, users_in(&seen))
}

fn users_in(seen: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let users = seen
        .iter()
        .find(|f| f["type"] == "users")
        .expect("users frame");
    let list = users["users"].as_array().unwrap().clone();
    assert_eq!(users["count"].as_u64(), Some(list.len() as u64), "{users}");
    list
}

fn ids(users: &[serde_json::Value]) -> Vec<&str> {
    let mut ids: Vec<&str> = users.iter().filter_map(|u| u["id"].as_str()).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_the_union_of_the_hubs() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let alice_token = h1.token("alice", Some("Alice"), false);
    let (mut alice1, users) = presence_first(&h1, &alice_token, "alice").await;
    assert_eq!(ids(&users), vec!["alice"]);
    let (mut bob, users) = presence_first(&h2, &h2.token("bob", Some("Bob"), false), "bob").await;
    assert_eq!(ids(&users), vec!["alice", "bob"]);
    let alice_entry = users.iter().find(|u| u["id"] == "alice").unwrap();
    assert_eq!(alice_entry["username"], "Alice", "{users:?}");
    assert_eq!(alice_entry["status"], "online");
    // Bob's online (from h2) reaches alice on h1, with his name.
    let online = alice1
        .expect_where("status", |f| is_status(f, "bob", "online"))
        .await;
    assert_eq!(online["user"], "Bob");
    // A watcher on h1 sees both in its list.
    let (mut watcher, users) = presence_first(&h1, &h1.user("w"), "w").await;
    assert_eq!(ids(&users), vec!["alice", "bob", "w"]);
    let bob_entry = users.iter().find(|u| u["id"] == "bob").unwrap();
    assert_eq!(bob_entry["username"], "Bob", "{users:?}");
    for c in [&mut alice1, &mut bob] {
        c.expect_where("status", |f| is_status(f, "w", "online"))
            .await;
    }
    // Alice's second tab, on h2: her list has everyone, nobody hears a thing.
    let mut alice2 = h2.ws("/presence", &alice_token).await.unwrap();
    let users = alice2.expect("users").await;
    assert_eq!(
        ids(users["users"].as_array().unwrap()),
        vec!["alice", "bob", "w"]
    );
    let quiet = Duration::from_millis(600);
    bob.expect_no("status", quiet).await;
    watcher.expect_no("status", quiet).await;
    alice2.expect_no("status", Duration::from_millis(1)).await;
    // A status change on h2 reaches h1.
    bob.send(json!({"type": "status", "status": "away"})).await;
    let away = watcher
        .expect_where("status", |f| is_status(f, "bob", "away"))
        .await;
    assert_eq!(away["user"], "Bob");
    alice1
        .expect_where("status", |f| is_status(f, "bob", "away"))
        .await;
    // A hub that starts later knows names and statuses too.
    let h3 = Hub::on_redis(&redis, "h3", |_| {}).await;
    let (mut late, users) = presence_first(&h3, &h3.user("late"), "late").await;
    assert_eq!(ids(&users), vec!["alice", "bob", "late", "w"]);
    let bob_entry = users.iter().find(|u| u["id"] == "bob").unwrap();
    assert_eq!(
        (&bob_entry["username"], &bob_entry["status"]),
        (&json!("Bob"), &json!("away"))
    );
    for c in [&mut bob, &mut watcher] {
        c.expect_where("status", |f| is_status(f, "late", "online"))
            .await;
    }
    // Her tab on h1 closes: she is still online (on h2).
    alice1.close().await;
    bob.expect_no("status", quiet).await;
    watcher.expect_no("status", quiet).await;
    // Her last tab closes: everyone, on both hubs, hears `offline`.
    alice2.close().await;
    for c in [&mut bob, &mut watcher, &mut late] {
        let off = c
            .expect_where("status", |f| is_status(f, "alice", "offline"))
            .await;
        assert_eq!(off["user"], "Alice");
    }
    watcher.expect_no("status", quiet).await;
    let mut again = h2.ws("/presence", &h2.user("dave")).await.unwrap();
    let users = again.expect("users").await;
    assert_eq!(
        ids(users["users"].as_array().unwrap()),
        vec!["bob", "dave", "late", "w"]
    );
}

/// Hub processes (the built example binary) on one Redis; each is killed
/// (SIGKILL, by PID) when dropped, also when the test fails.
struct HubProcess {
    child: common::HubChild,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

const PROCESS_SECRET: &str = "process-test-secret";

impl HubProcess {
    fn start(redis: &RedisServer, name: &str, ttl_s: u64) -> HubProcess {
        let dir = tempfile::tempdir().unwrap();
        let child = common::HubChild::start(|c| {
            c.args(["--redis-url", &redis.url()])
                .args(["--node-name", name, "--jwt-secret", PROCESS_SECRET])
                .args(["--presence-ttl-seconds", &ttl_s.to_string()])
                .args(["--threads", "1"])
                .arg("--data-dir")
                .arg(dir.path());
        });
        let addr = child.addr;
        HubProcess {
            child,
            addr,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        self.child.kill();
    }

    async fn presence(&self, sub: &str) -> common::Client {
        let token = auth::Auth::new(PROCESS_SECRET.as_bytes(), false).mint(&auth::Claims {
            sub: sub.into(),
            username: sub.to_uppercase(),
            roles: vec![],
            exp: support_now() + 3600,
        });
        let url = format!("ws://{}/presence?token={token}", self.addr);
        let (ws, _) = tokio::time::timeout(common::WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("upgrade");
        common::Client { ws }
    }
}

fn support_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_killed_hub_go_offline_within_the_presence_ttl() {
    const TTL_S: u64 = 2;
    let redis = RedisServer::start();
    let a = HubProcess::start(&redis, "node-a", TTL_S);
    let b = HubProcess::start(&redis, "node-b", TTL_S);
    let mut c = HubProcess::start(&redis, "node-c", TTL_S);
    let mut alice = a.presence("alice").await;
    alice.expect("users").await;
    let mut bob = b.presence("bob").await;
    bob.expect("users").await;
    alice
        .expect_where("status", |f| is_status(f, "bob", "online"))
        .await;
    let mut carol = c.presence("carol").await;
    let users = carol.expect("users").await;
    assert_eq!(
        ids(users["users"].as_array().unwrap()),
        vec!["alice", "bob", "carol"]
    );
    for cl in [&mut alice, &mut bob] {
        cl.expect_where("status", |f| is_status(f, "carol", "online"))
            .await;
    }
    c.kill();
    let killed = Instant::now();
    // Within the TTL, plus two sweeps (a third of it each) and a margin.
    let limit = Duration::from_secs(TTL_S + 4);
    for cl in [&mut alice, &mut bob] {
        let left = limit.saturating_sub(killed.elapsed());
        let seen = frames_until(cl, left, |s| {
            s.iter().any(|f| is_status(f, "carol", "offline"))
        })
        .await;
        let off = seen.last().unwrap();
        assert_eq!(off["user"], "CAROL", "{off}");
    }
    assert!(killed.elapsed() < limit, "{:?}", killed.elapsed());
    // Once, not twice; and a new list no longer has her.
    alice.expect_no("status", Duration::from_millis(900)).await;
    let mut dave = b.presence("dave").await;
    let users = dave.expect("users").await;
    assert_eq!(
        ids(users["users"].as_array().unwrap()),
        vec!["alice", "bob", "dave"]
    );
    drop(carol);
}
