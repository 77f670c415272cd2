//! Two hubs on one Redis changing the same thing at once (issue 11):
//! reactions to one message from both keep every reaction (the rewrite of
//! the saved message is held by a lease in Redis, not only by each
//! process's lock), and bans set through both at a room's cap never leave
//! more than the cap (one Lua script sets and evicts).

mod common;

use channelbox_test_support::RedisServer;

use common::Hub;
use serde_json::{json, Value};

async fn node(redis: &RedisServer, name: &str, max_bans: usize) -> Hub {
    Hub::on_redis(redis, name, |c| c.max_bans_per_room = max_bans).await
}

/// Users reacting through each hub.
const PER_HUB: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_through_two_hubs_at_once_are_all_kept() {
    let redis = RedisServer::start();
    let (h1, h2) = (node(&redis, "h1", 100).await, node(&redis, "h2", 100).await);
    let (mut author, _) = h1.join("race", &h1.user("author")).await;
    let id = author.say("react to me").await;
    let mut clients = Vec::new();
    for i in 0..2 * PER_HUB {
        let hub = if i % 2 == 0 { &h1 } else { &h2 };
        let sub = format!("u{i}");
        let (c, _) = hub.join("race", &hub.user(&sub)).await;
        clients.push((sub, c));
    }
    // Every reaction frame out before any answer is read.
    for (_, c) in &mut clients {
        c.send(json!({"type": "reaction", "message_id": id, "emoji": "👍", "op": "add"}))
            .await;
    }
    for (sub, c) in &mut clients {
        let sub = sub.clone();
        c.expect_where("reaction", |f| f["user"] == sub.as_str())
            .await;
    }
    let saved = common::saved(&h2, "race", id);
    let mut users: Vec<String> = saved["reactions"]["👍"]
        .as_array()
        .unwrap_or_else(|| panic!("no reactions kept: {saved}"))
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    users.sort();
    let mut expected: Vec<String> = clients.iter().map(|(s, _)| s.clone()).collect();
    expected.sort();
    assert_eq!(users, expected, "a reaction was lost");
    // And the room heard one event per reaction, from either hub.
    let mut heard = Vec::new();
    for _ in 0..2 * PER_HUB {
        let f = author.expect("reaction").await;
        heard.push(f["user"].as_str().unwrap().to_owned());
    }
    heard.sort();
    assert_eq!(heard, expected);
}

/// The room's cap, and the bans set through each hub.
const CAP: usize = 3;
const SOCKETS_PER_HUB: usize = 3;
const BANS_PER_SOCKET: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_through_two_hubs_at_once_never_exceed_the_cap() {
    let redis = RedisServer::start();
    let (h1, h2) = (node(&redis, "h1", CAP).await, node(&redis, "h2", CAP).await);
    let (status, room) = h1
        .json(
            "POST",
            "/rooms",
            &h1.user("olga"),
            Some(json!({"name": "capped"})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let room = room["id"].as_str().unwrap().to_owned();
    // The owner, several times on each hub: bans go out in parallel.
    let mut owners = Vec::new();
    for i in 0..2 * SOCKETS_PER_HUB {
        let hub = if i % 2 == 0 { &h1 } else { &h2 };
        owners.push(hub.join(&room, &hub.user("olga")).await.0);
    }
    let target = |socket: usize, n: usize| format!("t{socket}-{n}");
    for n in 0..BANS_PER_SOCKET {
        for (s, c) in owners.iter_mut().enumerate() {
            c.send(json!({"type": "ban", "user": target(s, n)})).await;
        }
    }
    for (s, c) in owners.iter_mut().enumerate() {
        for n in 0..BANS_PER_SOCKET {
            let t = target(s, n);
            c.expect_where("system", |f: &Value| {
                f["action"] == "ban" && f["user"] == t.as_str()
            })
            .await;
        }
    }
    let mut raw = redis.raw();
    let kept: usize = redis::cmd("HLEN")
        .arg(format!("cbx:hub:bans:{room}"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(kept, CAP, "bans kept for the room");
    // The hubs agree with Redis: exactly CAP of the targets are refused.
    let mut refused = 0;
    for s in 0..2 * SOCKETS_PER_HUB {
        for n in 0..BANS_PER_SOCKET {
            let hub = if s % 2 == 0 { &h2 } else { &h1 };
            match hub
                .ws(&format!("/chat/{room}"), &hub.user(&target(s, n)))
                .await
            {
                Err(403) => refused += 1,
                Err(other) => panic!("join: HTTP {other}"),
                Ok(c) => c.close().await,
            }
        }
    }
    assert_eq!(refused, CAP);
}
