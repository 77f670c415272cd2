//! Message features of the hub over real sockets: acks and resends,
//! typing, reactions, edits, deletes, read receipts, threads, mentions,
//! history pages, search, attachments, errors.

mod common;

use std::time::Duration;

use common::{saved, Hub};
use serde_json::json;

#[tokio::test]
async fn ack_and_a_resend_with_the_same_client_id_is_stored_once() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let frame = json!({"type": "message", "content": "once", "client_id": "k1"});
    a.send(frame.clone()).await;
    let ack = a.expect("ack").await;
    assert_eq!(ack["client_id"], "k1");
    let id = ack["id"].as_u64().unwrap();
    a.send(frame).await;
    let again = a.expect("ack").await;
    assert_eq!(again["id"].as_u64(), Some(id), "{again}");
    let after = a.say("next").await;
    assert_eq!(after, id + 1, "the resend was saved again");
    hub.stop().await;
}

#[tokio::test]
async fn typing_reaches_the_room_is_not_saved_and_is_rate_limited() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let (mut b, _) = hub.join("lobby", &hub.user("bob")).await;
    a.send(json!({"type": "typing", "state": true})).await;
    let t = b.expect("typing").await;
    assert_eq!(
        (t["user"].as_str(), t["state"].as_bool()),
        (Some("alice"), Some(true))
    );
    let before = hub
        .state
        .hub
        .history("room:lobby", Default::default())
        .unwrap()
        .last_offset;
    // A burst: at most 2 in any 1 s window pass, so some of these are refused.
    for _ in 0..6 {
        a.send(json!({"type": "typing", "state": true})).await;
    }
    let err = a.expect("error").await;
    assert_eq!(err["code"], "rate_limited");
    let after = hub
        .state
        .hub
        .history("room:lobby", Default::default())
        .unwrap()
        .last_offset;
    assert_eq!(before, after, "typing was saved");
    hub.stop().await;
}

#[tokio::test]
async fn reactions_are_broadcast_and_kept_on_the_message() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let (mut b, _) = hub.join("lobby", &hub.user("bob")).await;
    let id = a.say("react to me").await;
    for who in [&mut a, &mut b] {
        who.send(json!({"type": "reaction", "message_id": id, "emoji": "👍", "op": "add"}))
            .await;
    }
    let r = a.expect_where("reaction", |f| f["user"] == "bob").await;
    assert_eq!(
        (
            r["message_id"].as_u64(),
            r["emoji"].as_str(),
            r["op"].as_str()
        ),
        (Some(id), Some("👍"), Some("add"))
    );
    assert_eq!(
        saved(&hub, "lobby", id)["reactions"],
        json!({"👍": ["alice", "bob"]})
    );
    b.send(json!({"type": "reaction", "message_id": id, "emoji": "👍", "op": "remove"}))
        .await;
    a.expect_where("reaction", |f| f["op"] == "remove").await;
    assert_eq!(
        saved(&hub, "lobby", id)["reactions"],
        json!({"👍": ["alice"]})
    );
    // A joiner sees them in history.
    let (_, history) = hub.join("lobby", &hub.user("carol")).await;
    let m = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(m["reactions"], json!({"👍": ["alice"]}));
    b.send(json!({"type": "reaction", "message_id": 9999, "emoji": "👍"}))
        .await;
    assert_eq!(b.expect("error").await["code"], "not_found");
    hub.stop().await;
}

#[tokio::test]
async fn only_the_author_edits_and_history_shows_the_new_content() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let (mut b, _) = hub.join("lobby", &hub.user("bob")).await;
    let id = a.say("frist").await;
    b.send(json!({"type": "edit", "message_id": id, "content": "hijacked"}))
        .await;
    assert_eq!(b.expect("error").await["code"], "forbidden");
    a.send(json!({"type": "edit", "message_id": id, "content": "first"}))
        .await;
    let e = b.expect("edited").await;
    assert_eq!(
        (e["message_id"].as_u64(), e["content"].as_str()),
        (Some(id), Some("first"))
    );
    let m = saved(&hub, "lobby", id);
    assert_eq!(
        (m["content"].as_str(), m["edited"].as_bool()),
        (Some("first"), Some(true))
    );
    // Search follows the edit.
    a.send(json!({"type": "search", "query": "frist"})).await;
    assert_eq!(a.expect("search_results").await["messages"], json!([]));
    a.send(json!({"type": "search", "query": "first"})).await;
    assert_eq!(
        a.expect("search_results").await["messages"][0]["id"].as_u64(),
        Some(id)
    );
    hub.stop().await;
}

#[tokio::test]
async fn delete_leaves_a_tombstone_without_the_text() {
    let hub = Hub::start().await;
    let owner = hub.user("olga");
    let (status, room) = hub
        .json("POST", "/rooms", &owner, Some(json!({"name": "Ops"})))
        .await;
    assert_eq!(status, 201);
    let room = room["id"].as_str().unwrap().to_string();
    let (mut a, _) = hub.join(&room, &hub.user("alice")).await;
    let (mut b, _) = hub.join(&room, &hub.user("bob")).await;
    let (mut o, _) = hub.join(&room, &owner).await;
    let (mut admin, _) = hub.join(&room, &hub.admin("root")).await;
    let one = a.say("secret plans one").await;
    let two = a.say("secret plans two").await;
    let three = a.say("secret plans three").await;
    b.send(json!({"type": "delete", "message_id": one})).await;
    assert_eq!(b.expect("error").await["code"], "forbidden");
    a.send(json!({"type": "delete", "message_id": one})).await;
    o.send(json!({"type": "delete", "message_id": two})).await;
    admin
        .send(json!({"type": "delete", "message_id": three}))
        .await;
    for id in [one, two, three] {
        let d = b.expect("deleted").await;
        assert_eq!(d["message_id"].as_u64(), Some(id));
        let m = saved(&hub, &room, id);
        assert_eq!(m["deleted"], true);
        assert!(m.get("content").is_none(), "{m}");
        assert_eq!(
            (m["type"].as_str(), m["user"].as_str(), m["id"].as_u64()),
            (Some("message"), Some("alice"), Some(id))
        );
    }
    let (_, history) = hub.join(&room, &hub.user("carol")).await;
    assert!(!history.to_string().contains("secret"), "{history}");
    a.send(json!({"type": "search", "query": "secret"})).await;
    assert_eq!(a.expect("search_results").await["messages"], json!([]));
    hub.stop().await;
}

#[tokio::test]
async fn read_receipts_reach_the_room_and_joiners() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let (mut b, _) = hub.join("lobby", &hub.user("bob")).await;
    let id = a.say("read me").await;
    b.send(json!({"type": "read", "message_id": id})).await;
    let r = a.expect("read").await;
    assert_eq!(
        (r["user"].as_str(), r["message_id"].as_u64()),
        (Some("bob"), Some(id))
    );
    let mut c = hub.ws("/chat/lobby", &hub.user("carol")).await.unwrap();
    c.expect("history").await;
    let reads = c.expect("reads").await;
    assert_eq!(reads["reads"]["bob"].as_u64(), Some(id));
    b.send(json!({"type": "read", "message_id": 10_000})).await;
    assert_eq!(b.expect("error").await["code"], "not_found");
    hub.stop().await;
}

#[tokio::test]
async fn a_thread_answers_with_its_root_and_replies() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let root = a.say("root").await;
    let other = a.say("unrelated").await;
    let r1 = a
        .say_with(json!({"type": "message", "content": "reply 1", "thread_id": root}))
        .await;
    let r2 = a
        .say_with(json!({"type": "message", "content": "reply 2", "thread_id": r1}))
        .await;
    assert_eq!(
        saved(&hub, "lobby", r2)["thread_id"].as_u64(),
        Some(root),
        "a reply to a reply joins the root's thread"
    );
    a.send(json!({"type": "thread", "message_id": root})).await;
    let t = a.expect("thread").await;
    let ids: Vec<u64> = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![root, r1, r2]);
    assert!(!ids.contains(&other));
    a.send(json!({"type": "message", "content": "x", "thread_id": 777}))
        .await;
    assert_eq!(a.expect("error").await["code"], "not_found");
    hub.stop().await;
}

#[tokio::test]
async fn mentions_reach_presence_and_dm_sockets_of_users_who_may_read() {
    let hub = Hub::start().await;
    let bob = hub.token("bob", Some("Bobby"), false);
    let mut bob_presence = hub.ws("/presence", &bob).await.unwrap();
    let mut bob_dm = hub.ws("/dm/alice", &bob).await.unwrap();
    // Bob has been seen under his username.
    let (bob_chat, _) = hub.join("elsewhere", &bob).await;
    bob_chat.close().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let id = a.say("hey @bobby, look").await;
    assert_eq!(saved(&hub, "lobby", id)["mentions"], json!(["bob"]));
    for c in [&mut bob_presence, &mut bob_dm] {
        let m = c.expect("mention").await;
        assert_eq!(
            (
                m["room"].as_str(),
                m["message_id"].as_u64(),
                m["from"].as_str(),
                m["content"].as_str()
            ),
            (
                Some("lobby"),
                Some(id),
                Some("alice"),
                Some("hey @bobby, look")
            )
        );
    }
    // Not in a private room bob is not a member of.
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &hub.user("alice"),
            Some(json!({"name": "Secret", "private": true})),
        )
        .await;
    assert_eq!(status, 201);
    let (mut a2, _) = hub
        .join(room["id"].as_str().unwrap(), &hub.user("alice"))
        .await;
    let id2 = a2.say("@bob private").await;
    assert_eq!(
        saved(&hub, room["id"].as_str().unwrap(), id2)["mentions"],
        json!(["bob"])
    );
    bob_presence
        .expect_no("mention", Duration::from_millis(300))
        .await;
    // An edit that newly mentions someone tells them; old mentions are not repeated.
    let carol = hub.user("carol");
    let mut carol_presence = hub.ws("/presence", &carol).await.unwrap();
    a.send(json!({"type": "edit", "message_id": id, "content": "hey @bobby and @carol"}))
        .await;
    let m = carol_presence.expect("mention").await;
    assert_eq!(m["message_id"].as_u64(), Some(id));
    assert_eq!(
        saved(&hub, "lobby", id)["mentions"],
        json!(["bob", "carol"])
    );
    bob_presence
        .expect_no("mention", Duration::from_millis(300))
        .await;
    hub.stop().await;
}

#[tokio::test]
async fn history_pages_go_back_before_an_id() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(a.say(&format!("m{i}")).await);
    }
    a.send(json!({"type": "history", "before": ids[5], "limit": 3}))
        .await;
    let page = a.expect("history").await;
    assert_eq!(common::message_ids(&page), ids[2..5].to_vec());
    a.send(json!({"type": "history", "limit": 1000})).await;
    let page = a.expect("history").await;
    assert!(page["messages"].as_array().unwrap().len() <= 200);
    a.send(json!({"type": "history", "before": "x"})).await;
    assert_eq!(a.expect("error").await["code"], "bad_request");
    hub.stop().await;
}

#[tokio::test]
async fn search_finds_every_word_newest_first_in_readable_rooms_only() {
    let hub = Hub::start().await;
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &hub.user("olga"),
            Some(json!({"name": "Hidden", "private": true})),
        )
        .await;
    assert_eq!(status, 201);
    let hidden = room["id"].as_str().unwrap().to_string();
    let (mut o, _) = hub.join(&hidden, &hub.user("olga")).await;
    o.say("Deploy the rocket").await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let first = a.say("deploy ROCKET today").await;
    a.say("deploy nothing").await;
    let (mut b, _) = hub.join("other", &hub.user("bob")).await;
    let second = b.say("rocket deploy again").await;
    a.send(json!({"type": "search", "query": "Rocket deploy"}))
        .await;
    let r = a.expect("search_results").await;
    let got: Vec<(String, u64)> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["room"].as_str().unwrap().to_string(),
                m["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("other".to_string(), second), ("lobby".to_string(), first)]
    );
    a.send(json!({"type": "search", "query": "rocket", "limit": 1}))
        .await;
    assert_eq!(
        a.expect("search_results").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    o.send(json!({"type": "search", "query": "rocket"})).await;
    assert_eq!(
        o.expect("search_results").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    a.send(json!({"type": "search"})).await;
    assert_eq!(a.expect("error").await["code"], "bad_request");
    hub.stop().await;
}

#[tokio::test]
async fn attachments_must_name_uploaded_files() {
    let hub = Hub::start().await;
    let alice = hub.user("alice");
    let (status, _, body) = hub
        .http("POST", "/files", Some(&alice), Some("text/plain"), b"hello")
        .await;
    assert_eq!(status, 201);
    let file: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let fid = file["id"].as_str().unwrap().to_string();
    let (mut a, _) = hub.join("lobby", &alice).await;
    let id = a
        .say_with(json!({"type": "message", "content": "see file", "attachments": [fid]}))
        .await;
    assert_eq!(saved(&hub, "lobby", id)["attachments"], json!([fid]));
    a.send(json!({"type": "message", "content": "bad", "attachments": ["../../etc/passwd"]}))
        .await;
    assert_eq!(a.expect("error").await["code"], "bad_request");
    hub.stop().await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_stays_open() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    a.send(json!({"type": "frobnicate"})).await;
    assert_eq!(a.expect("error").await["code"], "unknown_type");
    a.send(json!({"type": "reaction", "message_id": "one", "emoji": "👍"}))
        .await;
    assert_eq!(a.expect("error").await["code"], "bad_request");
    a.send(json!({"type": "edit", "message_id": 1})).await;
    assert_eq!(a.expect("error").await["code"], "bad_request");
    a.send(json!({"type": "reaction", "message_id": 1, "emoji": "x".repeat(100)}))
        .await;
    assert_eq!(a.expect("error").await["code"], "too_large");
    a.say("still here").await;
    hub.stop().await;
}

#[tokio::test]
async fn search_never_returns_what_history_evicted() {
    let hub = Hub::start_with(|c| c.history_max_messages = 5).await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(a.say(&format!("needle {i}")).await);
    }
    a.send(json!({"type": "search", "query": "needle", "limit": 100}))
        .await;
    let found: Vec<u64> = a.expect("search_results").await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    let kept = hub
        .state
        .hub
        .history("room:lobby", Default::default())
        .unwrap();
    assert!(!found.is_empty());
    assert!(
        found.iter().all(|id| *id >= kept.first_offset),
        "{found:?} vs first {}",
        kept.first_offset
    );
    assert_eq!(found[0], *ids.last().unwrap());
    hub.stop().await;
}

#[tokio::test]
async fn search_results_too_big_for_one_frame_keep_the_newest() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("lobby", &hub.user("alice")).await;
    let filler = "x".repeat(60_000);
    let mut last = 0;
    for i in 0..20 {
        last = a.say(&format!("bulky {i} {filler}")).await;
    }
    a.send(json!({"type": "search", "query": "bulky", "limit": 100}))
        .await;
    let found = a.expect("search_results").await;
    let found = found["messages"].as_array().unwrap();
    assert!(!found.is_empty() && found.len() < 20, "{}", found.len());
    assert_eq!(found[0]["id"].as_u64(), Some(last));
    hub.stop().await;
}
