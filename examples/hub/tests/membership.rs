//! Join and leave notices follow membership (issue 16, "join/leave
//! noise"): the connection that makes a user a member saves one "joined
//! the chat"; reconnects, reloads and room switches save nothing (live
//! only, no `id`); an explicit leave saves one "left the chat"; kicks end
//! the membership. Memberships hold across a restart (embedded) and are
//! one truth for two hubs on one Redis.

mod common;

use std::time::Duration;

use channelbox_test_support::RedisServer;
use common::{Client, Hub, Seen};
use serde_json::{json, Value};

/// The saved notices (system frames with an `id`) of a `history` frame.
fn saved_notices(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["type"] == "system" && m["id"].is_u64())
        .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every frame `c` gets within `ms` (bounded), then nothing more.
async fn drain(c: &mut Client, ms: u64) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..200 {
        match c.next_within(Duration::from_millis(ms)).await {
            Seen::Frame(f) => out.push(f),
            _ => break,
        }
    }
    out
}

/// The system notices among `frames`: (message, saved?).
fn notices(frames: &[Value]) -> Vec<(String, bool)> {
    frames
        .iter()
        .filter(|f| f["type"] == "system")
        .map(|f| (f["message"].as_str().unwrap().to_owned(), f["id"].is_u64()))
        .collect()
}

/// What the room has saved, as a member who reconnects sees it (which
/// itself saves nothing).
async fn saved_in(hub: &Hub, room: &str, member: &str) -> Vec<String> {
    let (c, history) = hub.join(room, &hub.user(member)).await;
    c.close().await;
    saved_notices(&history)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_room_switches_save_no_notices_and_a_first_visit_one_join() {
    let hub = Hub::start().await;
    let (mut alice, history) = hub.join("lobby", &hub.user("alice")).await;
    assert_eq!(saved_notices(&history), ["alice joined the chat"]);

    // bob's first visit: one saved join.
    let (bob, history) = hub.join("lobby", &hub.user("bob")).await;
    assert_eq!(
        saved_notices(&history),
        ["alice joined the chat", "bob joined the chat"]
    );
    let seen = alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    assert!(seen["id"].is_u64(), "{seen}");

    // Closing is not leaving; coming back is not joining; nor is a visit
    // to another room and back (a room switch), five times over.
    bob.close().await;
    for i in 0..5 {
        let (other, _) = hub.join("elsewhere", &hub.user("bob")).await;
        other.close().await;
        let (mut again, history) = hub.join("lobby", &hub.user("bob")).await;
        assert_eq!(
            saved_notices(&history),
            ["alice joined the chat", "bob joined the chat"],
            "round {i}"
        );
        // A member does not hear its own (live) notice.
        assert!(notices(&drain(&mut again, 150).await).is_empty());
        again.close().await;
    }
    // alice heard each of them live only, never with an id.
    let heard = notices(&drain(&mut alice, 300).await);
    assert!(
        heard.iter().all(|(_, saved)| !saved),
        "a reconnect saved a notice: {heard:?}"
    );
    assert_eq!(
        heard
            .iter()
            .filter(|(m, _)| m == "bob joined the chat")
            .count(),
        5,
        "{heard:?}"
    );
    assert!(heard.iter().any(|(m, _)| m == "bob left the chat"));

    // A recovery after the drop replays nothing new either.
    let (_c, recovered) = hub
        .ws("/chat/lobby?since=2", &hub.user("bob"))
        .await
        .map(|mut c| async move {
            let h = c.expect("history").await;
            (c, h)
        })
        .expect("join")
        .await;
    assert_eq!(recovered["recovered"], true, "{recovered}");
    assert_eq!(recovered["messages"], json!([]), "{recovered}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_leave_saves_one_notice_and_a_later_visit_one_join() {
    let hub = Hub::start().await;
    let (mut alice, _) = hub.join("lobby", &hub.user("alice")).await;
    let (mut bob, _) = hub.join("lobby", &hub.user("bob")).await;
    // bob's second socket in the room (another tab) closes with the leave too.
    let (mut bob_tab, _) = hub.join("lobby", &hub.user("bob")).await;
    let first = alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    assert!(first["id"].is_u64(), "{first}");
    // The second tab: a member already, live only.
    let second = alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    assert!(second.get("id").is_none(), "{second}");

    bob.send(json!({"type": "leave"})).await;
    let mut frames = Vec::new();
    let code = loop {
        match bob.next_within(common::WAIT).await {
            Seen::Frame(f) => frames.push(f),
            Seen::Closed(code) => break code,
            Seen::Nothing => panic!("no close after a leave: {frames:?}"),
        }
        assert!(frames.len() < 50);
    };
    assert_eq!(code, Some(1000));
    let left = frames
        .iter()
        .find(|f| f["type"] == "left")
        .unwrap_or_else(|| panic!("no left frame: {frames:?}"));
    assert_eq!(left["room"], "lobby");
    assert_eq!(left["was_member"], true);
    assert_eq!(bob_tab.expect_close().await, Some(1000));

    // alice: exactly one "bob left", saved; no live copy after it.
    let heard = notices(&drain(&mut alice, 300).await);
    assert_eq!(heard, [("bob left the chat".to_owned(), true)]);

    // A later visit is a join again.
    let (bob, history) = hub.join("lobby", &hub.user("bob")).await;
    assert_eq!(
        saved_notices(&history),
        [
            "alice joined the chat",
            "bob joined the chat",
            "bob left the chat",
            "bob joined the chat"
        ]
    );
    bob.close().await;
    let heard = notices(&drain(&mut alice, 300).await);
    assert_eq!(
        heard,
        [
            ("bob joined the chat".to_owned(), true),
            ("bob left the chat".to_owned(), false)
        ]
    );

    // Leaving a room one is not a member of, over REST: no line.
    let (status, answer) = hub
        .json("POST", "/rooms/lobby/leave", &hub.user("carol"), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["was_member"], false);
    // bob leaves over REST: one line, as with the frame.
    let (status, answer) = hub
        .json("POST", "/rooms/lobby/leave", &hub.user("bob"), None)
        .await;
    assert_eq!((status, &answer["was_member"]), (200, &json!(true)));
    let heard = notices(&drain(&mut alice, 300).await);
    assert_eq!(
        heard.iter().filter(|(_, saved)| *saved).collect::<Vec<_>>(),
        [&("bob left the chat".to_owned(), true)],
        "{heard:?}"
    );
    assert_eq!(
        saved_in(&hub, "lobby", "alice").await.len(),
        5,
        "one more line, bob's leave"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_private_room_takes_one_off_its_members_and_a_kick_ends_membership() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let body = json!({"name": "inner", "private": true, "members": ["bob", "dan"]});
    let id = hub.create_room(&olga, body).await;
    let (mut owner, _) = hub.join(&id, &olga).await;

    let (mut bob, _) = hub.join(&id, &hub.user("bob")).await;
    bob.send(json!({"type": "leave"})).await;
    assert_eq!(bob.expect_close().await, Some(1000));
    let (_, room) = hub.json("GET", &format!("/rooms/{id}"), &olga, None).await;
    let members: Vec<&str> = room["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(!members.contains(&"bob"), "{room}");
    assert!(members.contains(&"dan"), "{room}");
    assert_eq!(
        hub.ws(&format!("/chat/{id}"), &hub.user("bob")).await.err(),
        Some(403)
    );

    // A kick ends dan's membership: his next visit saves a join again.
    let (mut dan, _) = hub.join(&id, &hub.user("dan")).await;
    owner
        .expect_where("system", |f| f["message"] == "dan joined the chat")
        .await;
    owner.send(json!({"type": "kick", "user": "dan"})).await;
    assert_eq!(dan.expect_close().await, Some(4000));
    let (_dan, history) = hub.join(&id, &hub.user("dan")).await;
    let saved = saved_notices(&history);
    assert_eq!(
        saved.iter().filter(|m| *m == "dan joined the chat").count(),
        2,
        "{saved:?}"
    );
    // No "left" line for a kick (the moderation line says it).
    assert!(!saved.iter().any(|m| m == "dan left the chat"), "{saved:?}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_holds_across_a_restart() {
    let hub = Hub::start().await;
    let (bob, _) = hub.join("lobby", &hub.user("bob")).await;
    bob.close().await;
    let hub = hub.restart().await;
    let (mut alice, _) = hub.join("lobby", &hub.user("alice")).await;
    let (_bob, history) = hub.join("lobby", &hub.user("bob")).await;
    let bob_joins = saved_notices(&history)
        .iter()
        .filter(|m| *m == "bob joined the chat")
        .count();
    // Saved once, before the restart (history is on disk by default).
    assert_eq!(bob_joins, 1, "{history}");
    let heard = alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    assert!(heard.get("id").is_none(), "a restart made bob new: {heard}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_redis_share_memberships() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("hall", &h1.user("alice")).await;

    // First visit through h1: saved.
    let (bob, _) = h1.join("hall", &h1.user("bob")).await;
    let seen = alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    assert!(seen["id"].is_u64(), "{seen}");
    bob.close().await;
    // Back through h2: a member already, live only.
    let (mut bob, _) = h2.join("hall", &h2.user("bob")).await;
    let seen = alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    assert!(seen.get("id").is_none(), "{seen}");
    // Leaving through h2: one saved line, heard on h1.
    bob.send(json!({"type": "leave"})).await;
    assert_eq!(bob.expect_close().await, Some(1000));
    let seen = alice
        .expect_where("system", |f| f["message"] == "bob left the chat")
        .await;
    assert!(seen["id"].is_u64(), "{seen}");
    // And a visit through h1 is a join again.
    let (_bob, _) = h1.join("hall", &h1.user("bob")).await;
    let seen = alice
        .expect_where("system", |f| f["message"] == "bob joined the chat")
        .await;
    assert!(seen["id"].is_u64(), "{seen}");
    let saved = saved_in(&h2, "hall", "alice").await;
    assert_eq!(
        saved,
        [
            "alice joined the chat",
            "bob joined the chat",
            "bob left the chat",
            "bob joined the chat"
        ]
    );
}
