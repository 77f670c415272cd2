//! Unread counts (issue 15 item 4) over real sockets: `GET /unread` counts
//! others' messages after a read position (not notices, not one's own),
//! rooms from the first visit, DM conversations, the live `activity` and
//! `read` frames, two hubs on one Redis, a restart; and DM attachments,
//! readable by the conversation's two parties only.

mod common;

use std::time::Duration;

use channelbox_test_support::RedisServer;
use common::{Client, Hub, WAIT};
use serde_json::{json, Value};

/// `GET /unread` as `sub`.
async fn unread(hub: &Hub, sub: &str) -> Value {
    let (status, body) = hub.json("GET", "/unread", &hub.user(sub), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET /unread` as `sub` until `check` holds (bounded by [`WAIT`]): the
/// first visit and DM listings are written just after the frame that
/// causes them.
async fn unread_until(hub: &Hub, sub: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = unread(hub, sub).await;
        if check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unread never matched: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `sub` reads `room` up to `id` on a socket of its own, then leaves.
async fn read_up_to(hub: &Hub, room: &str, sub: &str, id: u64) {
    let (mut c, _) = hub.join(room, &hub.user(sub)).await;
    c.send(json!({"type": "read", "message_id": id})).await;
    c.expect_where("read", |f| f["message_id"] == id).await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_messages_count_until_read_and_notices_and_own_messages_do_not() {
    let hub = Hub::start().await;
    let (mut bob, _) = hub.join("lobby", &hub.user("bob")).await;
    let first = bob.say("before alice reads").await;
    read_up_to(&hub, "lobby", "alice", first).await;
    assert_eq!(unread(&hub, "alice").await["rooms"]["lobby"], 0);

    let a = bob.say("one").await;
    bob.say("two").await;
    let c = bob.say("three").await;
    // A notice (carol's join and leave) and an edit are not messages.
    let (carol, _) = hub.join("lobby", &hub.user("carol")).await;
    carol.close().await;
    bob.send(json!({"type": "edit", "message_id": c, "content": "three!"}))
        .await;
    bob.expect("edited").await;
    // Alice's own message does not count for her.
    let (mut alice, _) = hub.join("lobby", &hub.user("alice")).await;
    alice.say("mine").await;
    alice.close().await;
    let body = unread(&hub, "alice").await;
    assert_eq!(body["rooms"]["lobby"], 3, "{body}");
    assert_eq!(body["at_least"]["rooms"], json!([]));

    read_up_to(&hub, "lobby", "alice", a).await;
    assert_eq!(unread(&hub, "alice").await["rooms"]["lobby"], 2);
    read_up_to(&hub, "lobby", "alice", c).await;
    assert_eq!(unread(&hub, "alice").await["rooms"]["lobby"], 0);
    // A deleted message no longer counts.
    let d = bob.say("oops").await;
    assert_eq!(unread(&hub, "alice").await["rooms"]["lobby"], 1);
    bob.send(json!({"type": "delete", "message_id": d})).await;
    bob.expect("deleted").await;
    assert_eq!(unread(&hub, "alice").await["rooms"]["lobby"], 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_scan_bound_a_count_is_a_lower_bound_and_says_so() {
    let hub = Hub::start().await;
    let (mut bob, _) = hub.join("busy", &hub.user("bob")).await;
    let first = bob.say("first").await;
    read_up_to(&hub, "busy", "alice", first).await;
    // More messages than one count reads, saved straight into the room's
    // history (as the hub saves bob's; sockets would only be slower).
    let scan = channelbox_hub::features::unread::SCAN as u64;
    for n in 0..scan + 5 {
        let frame = json!({"type": "message", "user": "bob", "content": format!("m{n}")});
        hub.state
            .hub
            .group_send_async("room:busy", channelbox::Kind::Json, frame.to_string(), true)
            .await
            .unwrap();
    }
    let body = unread(&hub, "alice").await;
    assert_eq!(body["rooms"]["busy"], scan, "{body}");
    assert_eq!(body["at_least"]["rooms"], json!(["busy"]));
    assert_eq!(body["scan"], scan);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_counts_from_the_first_visit_and_is_unlisted_before() {
    let hub = Hub::start().await;
    let (mut bob, _) = hub.join("old", &hub.user("bob")).await;
    for n in 0..5 {
        bob.say(&format!("long ago {n}")).await;
    }
    assert_eq!(unread(&hub, "dave").await["rooms"], json!({}));
    // Dave looks in without reading anything: the room is listed, at 0.
    let (dave, _) = hub.join("old", &hub.user("dave")).await;
    dave.close().await;
    unread_until(&hub, "dave", |b| b["rooms"]["old"] == 0).await;
    bob.say("news").await;
    assert_eq!(unread(&hub, "dave").await["rooms"]["old"], 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_conversation_counts_for_its_recipient_until_read_on_any_device() {
    let hub = Hub::start().await;
    let mut bob = hub.ws("/dm/alice", &hub.user("bob")).await.unwrap();
    bob.expect("history").await;
    let mut alice_presence = hub.ws("/presence", &hub.user("alice")).await.unwrap();
    alice_presence.expect("users").await;
    bob.send(json!({"type": "message", "content": "hi"})).await;
    bob.send(json!({"type": "message", "content": "there"}))
        .await;
    let second = bob
        .expect_where("direct_message", |f| f["content"] == "there")
        .await;
    let body = unread_until(&hub, "alice", |b| b["dms"]["bob"] == 2).await;
    assert_eq!(body["rooms"], json!({}));
    // The sender has read what they sent.
    unread_until(&hub, "bob", |b| b["dms"]["alice"] == 0).await;

    let mut alice = hub.ws("/dm/bob", &hub.user("alice")).await.unwrap();
    alice.expect("history").await;
    let id = second["id"].as_u64().unwrap();
    alice.send(json!({"type": "read", "message_id": id})).await;
    // Her other socket hears of it, and the count is gone.
    let told = alice_presence
        .expect_where("read", |f| f["dm"] == "bob")
        .await;
    assert_eq!(told["message_id"], id);
    assert_eq!(unread(&hub, "alice").await["dms"]["bob"], 0);
    // A read beyond the conversation is refused.
    alice
        .send(json!({"type": "read", "message_id": id + 10}))
        .await;
    assert_eq!(alice.expect("error").await["code"], "not_found");
    hub.stop().await;
}

/// A `/presence` socket of `sub` watching `rooms`; returns it with the
/// rooms the hub agreed to.
async fn watcher(hub: &Hub, sub: &str, rooms: Value) -> (Client, Value) {
    let mut p = hub.ws("/presence", &hub.user(sub)).await.unwrap();
    p.expect("users").await;
    p.send(json!({"type": "watch_unread", "rooms": rooms}))
        .await;
    let watching = p.expect("watching_unread").await;
    (p, watching["rooms"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_socket_gets_one_activity_frame_per_message_and_reads_from_other_devices() {
    let hub = Hub::start().await;
    let owner = hub.user("olga");
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &owner,
            Some(json!({"name": "secret", "private": true, "members": []})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &owner,
            Some(json!({"name": "club", "private": true, "members": ["alice"]})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let (mut alice, watching) = watcher(&hub, "alice", json!(["lobby", "secret", "club"])).await;
    // The private room she is not in is not watched.
    assert_eq!(watching, json!(["lobby", "club"]));
    let (mut bob, _) = hub.join("lobby", &hub.user("bob")).await;
    // Alice has been in the room before (a first visit reads it all).
    let earlier = bob.say("earlier").await;
    alice.expect("activity").await;
    read_up_to(&hub, "lobby", "alice", earlier).await;
    let id = bob.say("hello").await;
    let activity = alice.expect("activity").await;
    assert_eq!(
        activity,
        json!({"type": "activity", "room": "lobby", "id": id, "user": "bob"})
    );
    // Join notices are not activity; neither is a message in the room she
    // does not watch.
    let (carol, _) = hub.join("lobby", &hub.user("carol")).await;
    let (mut olga, _) = hub.join("secret", &owner).await;
    olga.say("hush").await;
    alice
        .expect_no("activity", Duration::from_millis(300))
        .await;
    carol.close().await;
    // Reading on another device reaches this socket.
    read_up_to(&hub, "lobby", "alice", id).await;
    let read = alice.expect_where("read", |f| f["room"] == "lobby").await;
    assert_eq!(read["message_id"], id);
    // Banned from the club: her sockets stop watching it.
    let (mut club, _) = hub.join("club", &owner).await;
    club.say("welcome").await;
    alice
        .expect_where("activity", |f| f["room"] == "club")
        .await;
    club.send(json!({"type": "ban", "user": "alice"})).await;
    club.expect_where("system", |f| f["action"] == "ban").await;
    club.say("after the ban").await;
    alice
        .expect_no("activity", Duration::from_millis(300))
        .await;
    // Not a list: refused.
    alice
        .send(json!({"type": "watch_unread", "rooms": "lobby"}))
        .await;
    assert_eq!(alice.expect("error").await["code"], "bad_request");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_live_frames_cross_two_hubs_on_one_redis() {
    let redis = RedisServer::start();
    let a = Hub::on_redis(&redis, "a", |_| {}).await;
    let b = Hub::on_redis(&redis, "b", |_| {}).await;
    // Alice has read the room on hub B; her sidebar socket is on hub B too.
    let (mut bob, _) = a.join("lobby", &a.user("bob")).await;
    let first = bob.say("first").await;
    read_up_to(&b, "lobby", "alice", first).await;
    let (mut on_b, _) = watcher(&b, "alice", json!(["lobby"])).await;
    // A message on hub A: the count on B goes up, live.
    let id = bob.say("from hub a").await;
    let activity = on_b.expect("activity").await;
    assert_eq!(activity["id"], id);
    assert_eq!(unread(&b, "alice").await["rooms"]["lobby"], 1);
    // Reading on B lowers it for a socket on A.
    let (mut on_a, _) = watcher(&a, "alice", json!(["lobby"])).await;
    read_up_to(&b, "lobby", "alice", id).await;
    let read = on_a.expect_where("read", |f| f["room"] == "lobby").await;
    assert_eq!(read["message_id"], id);
    assert_eq!(unread(&a, "alice").await["rooms"]["lobby"], 0);
    // DMs too: sent on A, counted on B.
    let mut dm = a.ws("/dm/alice", &a.user("bob")).await.unwrap();
    dm.expect("history").await;
    dm.send(json!({"type": "message", "content": "psst"})).await;
    dm.expect("direct_message").await;
    unread_until(&b, "alice", |body| body["dms"]["bob"] == 1).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_restart() {
    let hub = Hub::start().await;
    let (mut bob, _) = hub.join("lobby", &hub.user("bob")).await;
    let first = bob.say("first").await;
    read_up_to(&hub, "lobby", "alice", first).await;
    bob.say("second").await;
    bob.say("third").await;
    let mut dm = hub.ws("/dm/alice", &hub.user("bob")).await.unwrap();
    dm.expect("history").await;
    dm.send(json!({"type": "message", "content": "psst"})).await;
    dm.expect("direct_message").await;
    unread_until(&hub, "alice", |b| b["dms"]["bob"] == 1).await;
    bob.close().await;
    dm.close().await;
    let hub = hub.restart().await;
    let body = unread(&hub, "alice").await;
    assert_eq!(body["rooms"]["lobby"], 2, "{body}");
    assert_eq!(body["dms"]["bob"], 1, "{body}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_needs_a_token() {
    let hub = Hub::start().await;
    assert_eq!(hub.http("GET", "/unread", None, None, b"").await.0, 401);
    hub.stop().await;
}

/// Uploads `body` as `sub`, for the DM with `dm` when given; the file id.
async fn upload(hub: &Hub, sub: &str, dm: Option<&str>, body: &[u8]) -> String {
    let path = match dm {
        Some(peer) => format!("/files?name=pic.png&dm={peer}"),
        None => "/files?name=pic.png".to_owned(),
    };
    let (status, _, raw) = hub
        .http("POST", &path, Some(&hub.user(sub)), Some("image/png"), body)
        .await;
    assert_eq!(status, 201);
    let file: Value = serde_json::from_slice(&raw).unwrap();
    file["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_attachment_is_delivered_and_readable_by_its_two_parties_only() {
    let hub = Hub::start().await;
    let png = b"\x89PNG\r\n\x1a\nfor bob only";
    let id = upload(&hub, "alice", Some("bob"), png).await;
    for (who, status) in [("alice", 200), ("bob", 200), ("carol", 403)] {
        let token = hub.user(who);
        let (got, _, body) = hub
            .http("GET", &format!("/files/{id}"), Some(&token), None, b"")
            .await;
        assert_eq!(got, status, "{who}");
        if status == 200 {
            assert_eq!(body, png);
        }
        let meta = hub
            .http("GET", &format!("/files/{id}/meta"), Some(&token), None, b"")
            .await
            .0;
        assert_eq!(meta, status, "{who} meta");
    }
    // Admins are not parties either.
    let admin = hub.admin("root");
    assert_eq!(
        hub.http("GET", &format!("/files/{id}"), Some(&admin), None, b"")
            .await
            .0,
        403
    );

    let mut bob = hub.ws("/dm/bob", &hub.user("bob")).await.unwrap();
    bob.expect("history").await;
    let mut alice = hub.ws("/dm/bob", &hub.user("alice")).await.unwrap();
    alice.expect("history").await;
    alice
        .send(json!({"type": "message", "content": "look", "attachments": [id]}))
        .await;
    let got = bob.expect("direct_message").await;
    assert_eq!(got["attachments"], json!([id]));
    // Replayed with the conversation.
    let mut again = hub.ws("/dm/alice", &hub.user("bob")).await.unwrap();
    let history = again.expect("history").await;
    assert_eq!(history["messages"][0]["attachments"], json!([id]));

    // Another conversation's file cannot be attached here, nor a DM's file
    // to a room message; a room file can go in a DM.
    let carols = upload(&hub, "carol", Some("dave"), b"x").await;
    alice
        .send(json!({"type": "message", "content": "x", "attachments": [carols]}))
        .await;
    assert_eq!(alice.expect("error").await["code"], "forbidden");
    let (mut room, _) = hub.join("lobby", &hub.user("alice")).await;
    room.send(json!({"type": "message", "content": "x", "attachments": [id]}))
        .await;
    assert_eq!(room.expect("error").await["code"], "bad_request");
    let open = upload(&hub, "alice", None, b"y").await;
    alice
        .send(json!({"type": "message", "content": "room file", "attachments": [open]}))
        .await;
    let got = bob
        .expect_where("direct_message", |f| f["content"] == "room file")
        .await;
    assert_eq!(got["attachments"], json!([open]));
    // A bad `dm` is refused.
    let long = "x".repeat(201);
    let (status, _, _) = hub
        .http(
            "POST",
            &format!("/files?dm={long}"),
            Some(&hub.user("alice")),
            None,
            b"z",
        )
        .await;
    assert_eq!(status, 400);
    hub.stop().await;
}
