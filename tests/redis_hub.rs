//! Two example hubs (`--redis-url`) on one throw-away Redis, spoken to over
//! WebSockets: a room spans them, ids agree, recovery and DMs work across
//! them, and a Redis restart closes sockets with 1012 (reconnect).

include!("../examples/hub/modules.rs");

#[path = "hub_features_support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::Hub;

struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        self.child = Some(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(self.dir.path())
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server not found: run scripts/ensure-redis.sh"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn node(redis: &RedisServer, name: &str) -> Hub {
    let url = redis.url();
    let name = name.to_owned();
    Hub::start_with(move |c| {
        c.redis_url = Some(url);
        c.node_name = Some(name);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_two_hubs_with_one_sequence_of_ids() {
    let redis = RedisServer::start();
    let (h1, h2) = (node(&redis, "h1").await, node(&redis, "h2").await);
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
async fn a_direct_message_reaches_the_user_on_the_other_hub() {
    let redis = RedisServer::start();
    let (h1, h2) = (node(&redis, "h1").await, node(&redis, "h2").await);
    let mut bob = h2.ws("/dm/alice", &h2.user("bob")).await.unwrap();
    bob.expect("history").await;
    let mut alice = h1.ws("/dm/bob", &h1.user("alice")).await.unwrap();
    alice.expect("history").await;
    alice.send(json!({"message": "psst"})).await;
    let dm = bob.expect("direct_message").await;
    assert_eq!(dm["content"], "psst");
    assert_eq!(dm["from"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_closes_sockets_with_reconnect_and_they_recover() {
    let mut redis = RedisServer::start();
    let (h1, h2) = (node(&redis, "h1").await, node(&redis, "h2").await);
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
            if let support::Seen::Frame(f) = c.next_within(Duration::from_secs(2)).await {
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
