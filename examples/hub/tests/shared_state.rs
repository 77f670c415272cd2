//! Two hubs, each with its own data directory, on one throw-away Redis:
//! the hub's state (rooms, bans, mutes, read receipts, threads, client
//! ids) is one truth for both, and damaged values in Redis are skipped.

mod common;

use channelbox_test_support::RedisServer;

use std::time::Duration;

use common::Hub;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_made_on_one_hub_refuses_strangers_on_the_other() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    assert_ne!(h1.state.config.data_dir, h2.state.config.data_dir);
    let id = h1
        .create_room(
            &h1.user("olga"),
            json!({"name": "secret", "private": true, "members": ["bob"]}),
        )
        .await;
    assert_eq!(
        h2.ws(&format!("/chat/{id}"), &h2.user("mallory"))
            .await
            .err(),
        Some(403)
    );
    let (_bob, _) = h2.join(&id, &h2.user("bob")).await;
    let (status, room) = h2
        .json("GET", &format!("/rooms/{id}"), &h2.user("olga"), None)
        .await;
    assert_eq!((status, room["owner"].as_str()), (200, Some("olga")));
    // A stranger cannot take the id over through the other hub either.
    let (status, other) = h2
        .json(
            "POST",
            "/rooms",
            &h2.user("mallory"),
            Some(json!({"name": "secret"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_ne!(other["id"].as_str(), Some(id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_hub_closes_the_socket_on_the_other_and_refuses_the_rejoin() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let id = h1
        .create_room(&h1.user("olga"), json!({"name": "ruled"}))
        .await;
    let (mut mallory, _) = h2.join(&id, &h2.user("mallory")).await;
    let (mut olga, _) = h1.join(&id, &h1.user("olga")).await;
    olga.send(json!({"type": "ban", "user": "mallory"})).await;
    olga.expect_where("system", |f| f["action"] == "ban").await;
    assert_eq!(mallory.expect_close().await, Some(4003));
    assert_eq!(
        h2.ws(&format!("/chat/{id}"), &h2.user("mallory"))
            .await
            .err(),
        Some(403)
    );
    // Lifted through the other hub, it is lifted everywhere.
    let (mut olga2, _) = h2.join(&id, &h2.user("olga")).await;
    olga2
        .send(json!({"type": "unban", "user": "mallory"}))
        .await;
    olga2
        .expect_where("system", |f| f["action"] == "unban")
        .await;
    let (_mallory, _) = h1.join(&id, &h1.user("mallory")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_on_one_hub_silences_the_user_on_the_other() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let id = h1
        .create_room(&h1.user("olga"), json!({"name": "quiet"}))
        .await;
    let (mut olga, _) = h1.join(&id, &h1.user("olga")).await;
    let (mut mallory, _) = h2.join(&id, &h2.user("mallory")).await;
    olga.send(json!({"type": "mute", "user": "mallory", "duration_s": 60}))
        .await;
    olga.expect_where("system", |f| f["action"] == "mute").await;
    mallory
        .send(json!({"type": "message", "content": "shout"}))
        .await;
    let error = mallory.expect("error").await;
    assert_eq!(error["code"], "muted", "{error}");
    olga.expect_no("message", Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_made_on_one_hub_are_seen_on_the_other() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("lobby", &h1.user("alice")).await;
    let id = alice.say("read me").await;
    alice.send(json!({"type": "read", "message_id": id})).await;
    alice
        .expect_where("read", |f| f["user"] == "alice" && f["message_id"] == id)
        .await;
    let mut bob = h2.ws("/chat/lobby", &h2.user("bob")).await.unwrap();
    let reads = bob.expect("reads").await;
    assert_eq!(reads["reads"]["alice"], id, "{reads}");
    // A receipt never moves back, whichever hub it comes through.
    let mut alice2 = h2.ws("/chat/lobby", &h2.user("alice")).await.unwrap();
    alice2.expect("reads").await;
    let first = id;
    let second = alice2.say("later").await;
    alice2
        .send(json!({"type": "read", "message_id": second}))
        .await;
    alice2
        .expect_where("read", |f| f["message_id"] == second)
        .await;
    alice
        .expect_where("read", |f| f["message_id"] == second)
        .await;
    alice
        .send(json!({"type": "read", "message_id": first}))
        .await;
    alice.expect_no("read", Duration::from_millis(300)).await;
    let mut carol = h1.ws("/chat/lobby", &h1.user("carol")).await.unwrap();
    assert_eq!(carol.expect("reads").await["reads"]["alice"], second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_started_on_one_hub_lists_replies_sent_through_the_other() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("lobby", &h1.user("alice")).await;
    let (mut bob, _) = h2.join("lobby", &h2.user("bob")).await;
    let root = alice.say("topic").await;
    let reply = bob
        .say_with(json!({"type": "message", "content": "answer", "thread_id": root}))
        .await;
    alice
        .send(json!({"type": "thread", "message_id": root}))
        .await;
    let thread = alice.expect("thread").await;
    let ids: Vec<u64> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![root, reply], "{thread}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_through_the_other_hub_is_saved_once() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("lobby", &h1.user("alice")).await;
    let frame = json!({"type": "message", "content": "once", "client_id": "c-1"});
    alice.send(frame.clone()).await;
    let first = alice.expect_where("ack", |f| f["client_id"] == "c-1").await;
    // The socket is lost before the client saw the ack; it resends on h2.
    alice.close().await;
    let (mut again, _) = h2.join("lobby", &h2.user("alice")).await;
    again.send(frame).await;
    let second = again.expect_where("ack", |f| f["client_id"] == "c-1").await;
    assert_eq!(first["id"], second["id"]);
    let (_, history) = h1.join("lobby", &h1.user("carol")).await;
    let copies = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["content"] == "once")
        .count();
    assert_eq!(copies, 1, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_values_in_redis_are_reported_and_skipped() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let id = h1
        .create_room(&h1.user("olga"), json!({"name": "fine"}))
        .await;
    let mut raw = redis.raw();
    let set = |raw: &mut redis::Connection, key: &str, field: &str, value: &[u8]| {
        redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg(value)
            .query::<()>(raw)
            .unwrap();
    };
    set(&mut raw, "cbx:hub:rooms:", "broken", b"{not json");
    redis::cmd("ZADD")
        .arg("cbx:hub:rooms-by-id")
        .arg(0)
        .arg("broken")
        .query::<()>(&mut raw)
        .unwrap();
    set(
        &mut raw,
        &format!("cbx:hub:bans:{id}"),
        "mallory",
        b"\xff\xfe",
    );
    set(&mut raw, &format!("cbx:hub:mutes:{id}"), "mallory", b"soon");
    set(&mut raw, &format!("cbx:hub:reads:{id}"), "ghost", b"NaN");
    // The rooms list skips the damaged room and keeps the good one.
    let (status, list) = h2.json("GET", "/rooms", &h2.user("olga"), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);
    // A damaged room admits nobody but admins; a damaged ban or mute does
    // not hold; a damaged receipt is left out.
    assert_eq!(
        h2.ws("/chat/broken", &h2.user("bob")).await.err(),
        Some(403)
    );
    let (_admin, _) = h2.join("broken", &h2.admin("root")).await;
    let mut mallory = h2
        .ws(&format!("/chat/{id}"), &h2.user("mallory"))
        .await
        .unwrap();
    let reads = mallory.expect("reads").await;
    assert!(reads["reads"].get("ghost").is_none(), "{reads}");
    mallory.say("not muted").await;
    let (_, stats) = h2.json("GET", "/stats", &h2.user("olga"), None).await;
    assert!(stats["state_corrupt"].as_u64().unwrap() >= 4, "{stats}");
    let bearer = format!("Bearer {}", h2.user("olga"));
    let (_, metrics) = h2
        .http_text("GET", "/metrics", &[("Authorization", bearer.as_str())], "")
        .await;
    assert!(metrics.contains("channelbox_hub_state_corrupt_total"));
    // Nothing was dropped from the search index on the way.
    assert_eq!(stats["search_index_dropped"], 0, "{stats}");
    assert!(metrics.contains("channelbox_hub_search_index_dropped_total 0\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_join_gets_503_in_bounded_time_and_rooms_503() {
    let mut redis = RedisServer::start();
    let h1 = Hub::on_redis(&redis, "h1", |_| {}).await;
    let id = h1
        .create_room(&h1.user("olga"), json!({"name": "later"}))
        .await;
    redis.kill();
    let started = std::time::Instant::now();
    assert_eq!(
        h1.ws(&format!("/chat/{id}"), &h1.user("bob")).await.err(),
        Some(503)
    );
    for token in [h1.user("olga"), h1.admin("root")] {
        let (status, _) = h1
            .json("POST", "/rooms", &token, Some(json!({"name": "x"})))
            .await;
        assert_eq!(status, 503);
    }
    let (status, _) = h1.json("GET", "/rooms", &h1.user("olga"), None).await;
    assert_eq!(status, 503);
    // Within the engine timeout (2 s) per call, plus slack for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    // Back up: the same hub answers again.
    redis.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = h1.json("GET", "/rooms", &h1.user("olga"), None).await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rooms never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_or_a_room_deleted_on_one_hub_closes_sockets_on_the_other() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let olga = h1.user("olga");
    let id = h1
        .create_room(
            &olga,
            json!({"name": "club", "private": true, "members": ["bob", "carol"]}),
        )
        .await;
    let (mut bob, _) = h2.join(&id, &h2.user("bob")).await;
    let (mut carol, _) = h2.join(&id, &h2.user("carol")).await;
    let (status, _) = h1
        .json(
            "POST",
            &format!("/rooms/{id}/members"),
            &olga,
            Some(json!({"remove": ["bob"]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.expect_close().await, Some(4003));
    assert_eq!(
        h2.ws(&format!("/chat/{id}"), &h2.user("bob")).await.err(),
        Some(403)
    );
    let (status, _) = h1
        .json("DELETE", &format!("/rooms/{id}"), &olga, None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(carol.expect_close().await, Some(4003));
}
