//! A reconnecting client converges (issue 11, item 3): edits, deletes and
//! reactions are saved as update events with ids of their own, a `?since=`
//! recovery replays them with the messages in id order, and a fresh join
//! or a `history` page shows messages only (pages stay full). Real sockets,
//! one hub in memory and two hubs on one throw-away Redis.

mod common;

use std::collections::BTreeMap;

use channelbox_test_support::RedisServer;
use common::Hub;
use serde_json::{json, Value};

/// What the hub saves and sends for an edit, a delete and a reaction.
const UPDATE_TYPES: [&str; 3] = ["edited", "deleted", "reaction"];

fn is_update(entry: &Value) -> bool {
    UPDATE_TYPES.contains(&entry["type"].as_str().unwrap_or(""))
}

/// A client's copy of a room: messages (and notices) by id.
type View = BTreeMap<u64, Value>;

/// Applies one frame or history entry to `view` the way the browser
/// client does: messages are stored, an update event rewrites the message
/// it names (when the view has it) with the state it carries.
fn apply(view: &mut View, entry: &Value) {
    if !is_update(entry) {
        view.insert(entry["id"].as_u64().expect("saved entry id"), entry.clone());
        return;
    }
    let target = entry["message_id"].as_u64().expect("message_id");
    let Some(Value::Object(m)) = view.get_mut(&target) else {
        return;
    };
    match entry["type"].as_str() {
        Some("edited") => {
            m.insert("content".into(), entry["content"].clone());
            m.insert("edited".into(), json!(true));
            match entry.get("mentions") {
                Some(mentions) => m.insert("mentions".into(), mentions.clone()),
                None => m.remove("mentions"),
            };
        }
        Some("deleted") => {
            for key in ["content", "attachments", "reactions", "mentions", "edited"] {
                m.remove(key);
            }
            m.insert("deleted".into(), json!(true));
        }
        _ => {
            // One (user, emoji) pair's resulting state.
            let (emoji, user) = (entry["emoji"].as_str().unwrap(), &entry["user"]);
            let reactions = m.entry("reactions").or_insert_with(|| json!({}));
            let set = reactions.as_object_mut().unwrap();
            let mut users: Vec<Value> = set
                .get(emoji)
                .and_then(Value::as_array)
                .map(|u| u.iter().filter(|x| *x != user).cloned().collect())
                .unwrap_or_default();
            if entry["op"] != "remove" {
                users.push(user.clone());
            }
            if users.is_empty() {
                set.remove(emoji);
            } else {
                set.insert(emoji.to_owned(), Value::Array(users));
            }
        }
    }
}

/// What a reader sees of a message: its text, whether it was edited or
/// deleted, who it mentions and its reactions (none and `{}` alike).
fn shown(m: &Value) -> Value {
    let reactions = match m.get("reactions") {
        Some(Value::Object(r)) if !r.is_empty() => Value::Object(r.clone()),
        _ => json!({}),
    };
    json!({
        "content": m.get("content"),
        "edited": m["edited"] == true,
        "deleted": m["deleted"] == true,
        "mentions": m.get("mentions").cloned().unwrap_or(json!([])),
        "reactions": reactions,
    })
}

fn entries(history: &Value) -> &Vec<Value> {
    history["messages"].as_array().expect("messages")
}

fn ids(list: &[Value]) -> Vec<u64> {
    list.iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

/// Bob (on `b_hub`) writes three messages that alice (on `a_hub`) reads
/// before she leaves; while she is away he edits one, deletes one, reacts
/// to one and writes a fourth. Her `?since=` recovery brings exactly what
/// she missed, update events included, in id order; applying it leaves
/// her with what a fresh joiner sees, and applying it twice changes
/// nothing. Returns the live update events bob got.
async fn away_client_converges(a_hub: &Hub, b_hub: &Hub, room: &str) -> Vec<Value> {
    let (mut bob, _) = b_hub.join(room, &b_hub.user("bob")).await;
    let m1 = bob.say("first, with a typo").await;
    let m2 = bob.say("second, to be deleted").await;
    let m3 = bob.say("third, to be liked").await;

    let alice_token = a_hub.user("alice");
    let (alice, history) = a_hub.join(room, &alice_token).await;
    let epoch = history["epoch"].as_str().expect("epoch").to_owned();
    let mut view = View::new();
    for entry in entries(&history) {
        apply(&mut view, entry);
    }
    let last = *view.keys().last().unwrap();
    assert!([m1, m2, m3].iter().all(|id| view.contains_key(id)));
    alice.close().await;
    bob.expect_where("system", |f| f["message"] == "alice left the chat")
        .await;

    let mut live = Vec::new();
    bob.send(json!({"type": "edit", "message_id": m1, "content": "first, fixed, cc @bob"}))
        .await;
    live.push(bob.expect("edited").await);
    bob.send(json!({"type": "delete", "message_id": m2})).await;
    live.push(bob.expect("deleted").await);
    for (emoji, op) in [("👍", "add"), ("🎉", "add"), ("🎉", "remove")] {
        bob.send(json!({"type": "reaction", "message_id": m3, "emoji": emoji, "op": op}))
            .await;
        live.push(bob.expect("reaction").await);
    }
    let m4 = bob.say("fourth, while alice is away").await;

    let path = format!("/chat/{room}?since={last}&epoch={epoch}");
    let mut alice = a_hub.ws(&path, &alice_token).await.expect("rejoin");
    let recovery = alice.expect("history").await;
    assert_eq!(recovery["recovered"], true, "{recovery}");
    let replay = entries(&recovery);
    // Every saved entry after `since`, in id order, none left out.
    let first = last + 1;
    let expected_ids: Vec<u64> = (first..first + replay.len() as u64).collect();
    assert_eq!(ids(replay), expected_ids, "{recovery}");
    let types: Vec<&str> = replay.iter().map(|e| e["type"].as_str().unwrap()).collect();
    // alice's close and return are not saved: she stays a member (issue 16).
    assert_eq!(
        types,
        ["edited", "deleted", "reaction", "reaction", "reaction", "message"],
        "{recovery}"
    );
    // The replayed events are the ones the room got live, ids included.
    assert_eq!(&replay[..5], &live[..]);
    for event in &live {
        let id = event["id"].as_u64().expect("an update event has an id");
        assert!(id > m3 && id < m4, "update event id {id}");
    }
    for entry in replay {
        apply(&mut view, entry);
    }
    let once = view.clone();
    for entry in replay {
        apply(&mut view, entry);
    }
    assert_eq!(view, once, "applying the replay again changed the view");

    // Recovery refused (an epoch the room never had): the last messages,
    // without update events.
    let path = format!("/chat/{room}?since={last}&epoch=12345");
    let mut refused = a_hub.ws(&path, &alice_token).await.expect("rejoin");
    let fallback = refused.expect("history").await;
    assert_eq!(fallback["recovered"], false, "{fallback}");
    assert!(!entries(&fallback).iter().any(is_update), "{fallback}");
    assert!(ids(entries(&fallback)).contains(&m4), "{fallback}");

    // A fresh joiner sees the same messages, and no update events.
    let (_carol, fresh) = b_hub.join(room, &b_hub.user("carol")).await;
    assert!(!entries(&fresh).iter().any(is_update), "{fresh}");
    let fresh: View = entries(&fresh)
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m.clone()))
        .collect();
    for id in [m1, m2, m3, m4] {
        assert_eq!(shown(&view[&id]), shown(&fresh[&id]), "message {id}");
    }
    assert_eq!(view[&m1]["content"], "first, fixed, cc @bob");
    assert_eq!(view[&m1]["mentions"], json!(["bob"]));
    assert_eq!(view[&m2]["deleted"], true);
    assert!(view[&m2].get("content").is_none());
    assert_eq!(view[&m3]["reactions"], json!({"👍": ["bob"]}));
    live
}

#[tokio::test]
async fn a_client_back_from_away_gets_edits_deletes_and_reactions_in_id_order() {
    let hub = Hub::start().await;
    let live = away_client_converges(&hub, &hub, "away").await;
    // The live frame is the saved event, byte for byte the same JSON.
    for event in &live {
        let id = event["id"].as_u64().unwrap();
        assert_eq!(&common::saved(&hub, "away", id), event);
    }
    // A reaction event is one pair's state, of a fixed size: no set.
    assert!(live[3].get("reactions").is_none(), "{}", live[3]);
    assert_eq!(
        (
            live[3]["emoji"].as_str(),
            live[3]["op"].as_str(),
            live[3]["user"].as_str()
        ),
        (Some("🎉"), Some("add"), Some("bob"))
    );
    assert_eq!(
        (live[4]["emoji"].as_str(), live[4]["op"].as_str()),
        (Some("🎉"), Some("remove"))
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_converges_across_two_hubs_on_redis() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    // Alice reads and recovers on h1; bob writes and changes on h2.
    let live = away_client_converges(&h1, &h2, "spanned").await;
    for event in &live {
        // The id Redis assigned, not the engine's placeholder.
        let id = event["id"].as_u64().unwrap();
        assert!((1..1_000_000).contains(&id), "live update id {id}");
    }
    h1.stop().await;
    h2.stop().await;
}

#[tokio::test]
async fn a_fresh_join_and_history_pages_show_messages_only_and_stay_full() {
    let hub = Hub::start_with(|c| c.messages_per_second = 0).await;
    let (mut alice, _) = hub.join("busy", &hub.user("alice")).await;
    for i in 0..120 {
        let id = alice.say(&format!("m{i}")).await;
        alice
            .send(json!({"type": "reaction", "message_id": id, "emoji": "👀"}))
            .await;
        alice.expect("reaction").await;
    }
    let (mut bob, history) = hub.join("busy", &hub.user("bob")).await;
    // Every saved entry that is not an update event, from the core.
    let saved = hub
        .state
        .hub
        .history("room:busy", Default::default())
        .unwrap()
        .messages;
    let saved: Vec<Value> = saved
        .iter()
        .map(|m| serde_json::from_slice(m.data()).unwrap())
        .collect();
    assert!(saved.iter().filter(|e| is_update(e)).count() >= 120);
    let messages: Vec<u64> = ids(&saved
        .into_iter()
        .filter(|e| !is_update(e))
        .collect::<Vec<_>>());

    let shown = ids(entries(&history));
    assert_eq!(shown, messages[messages.len() - 50..], "{history}");
    bob.send(json!({"type": "history", "before": shown[0], "limit": 60}))
        .await;
    let page = bob.expect("history").await;
    let at = messages.len() - 50;
    assert_eq!(ids(entries(&page)), messages[at - 60..at], "{page}");
    // At the start of history a page holds what is left.
    bob.send(json!({"type": "history", "before": messages[3], "limit": 50}))
        .await;
    let page = bob.expect("history").await;
    assert_eq!(ids(entries(&page)), messages[..3], "{page}");
    hub.stop().await;
}

#[tokio::test]
async fn update_events_take_history_slots() {
    let hub = Hub::start_with(|c| c.history_max_messages = 10).await;
    let (mut alice, _) = hub.join("small", &hub.user("alice")).await;
    let kept = alice.say("pushed out by reactions").await;
    let target = alice.say("reacted to").await;
    for i in 0..10 {
        let op = if i % 2 == 0 { "add" } else { "remove" };
        alice
            .send(json!({"type": "reaction", "message_id": target, "emoji": "👍", "op": op}))
            .await;
        alice.expect("reaction").await;
    }
    assert!(hub.state.hub.history_get("room:small", kept).is_err());
    let (_, history) = hub.join("small", &hub.user("bob")).await;
    assert!(!ids(entries(&history)).contains(&kept), "{history}");
    hub.stop().await;
}

#[tokio::test]
async fn threads_search_and_stats_never_count_update_events() {
    let hub = Hub::start().await;
    let (mut alice, _) = hub.join("lab", &hub.user("alice")).await;
    let (mut bob, _) = hub.join("lab", &hub.user("bob")).await;
    let root = alice.say("root words").await;
    let reply = bob
        .say_with(json!({"type": "message", "content": "reply words", "thread_id": root}))
        .await;
    alice
        .send(json!({"type": "reaction", "message_id": reply, "emoji": "👍"}))
        .await;
    let reacted = alice.expect("reaction").await;
    alice
        .send(json!({"type": "edit", "message_id": root, "content": "root words edited"}))
        .await;
    let edited = alice.expect("edited").await;

    alice
        .send(json!({"type": "thread", "message_id": root}))
        .await;
    let thread = alice.expect("thread").await;
    assert_eq!(ids(entries(&thread)), [root, reply], "{thread}");
    assert_eq!(thread["messages"][0]["content"], "root words edited");
    // An update event is not a message: no thread, no reply to it.
    for event in [&reacted, &edited] {
        let id = event["id"].as_u64().unwrap();
        alice
            .send(json!({"type": "thread", "message_id": id}))
            .await;
        assert_eq!(alice.expect("error").await["code"], "not_found");
        let frame = json!({"type": "message", "content": "re", "thread_id": id});
        alice.send(frame).await;
        assert_eq!(alice.expect("error").await["code"], "not_found");
    }
    alice
        .send(json!({"type": "search", "query": "words"}))
        .await;
    let found = alice.expect("search_results").await;
    assert_eq!(ids(entries(&found)), [reply, root], "{found}");
    let (status, stats) = hub.json("GET", "/stats", &hub.user("ops"), None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["messages"], 2, "{stats}");
    assert_eq!(stats["per_room"]["lab"]["messages"], 2, "{stats}");
    // The core's count is of saved entries: two join notices, two
    // messages and the two events.
    assert_eq!(stats["history_messages"], 6, "{stats}");
    hub.stop().await;
}

#[tokio::test]
async fn a_reaction_event_does_not_grow_with_the_messages_reactors() {
    let hub = Hub::start().await;
    let (mut alice, _) = hub.join("popular", &hub.user("alice")).await;
    let target = alice.say("react to me").await;
    let mut sizes = Vec::new();
    for i in 0..20 {
        let (mut fan, _) = hub.join("popular", &hub.user(&format!("fan{i:02}"))).await;
        fan.send(json!({"type": "reaction", "message_id": target, "emoji": "👍"}))
            .await;
        let event = fan.expect("reaction").await;
        sizes.push(serde_json::to_vec(&event).unwrap().len());
    }
    // Twenty reactors on the message, yet the twentieth event is the size
    // of the first (give or take the digits of its id): it carries one
    // pair, not the set.
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(max - min <= 2, "{sizes:?}");
    let saved = common::saved(&hub, "popular", target);
    assert_eq!(saved["reactions"]["👍"].as_array().map(Vec::len), Some(20));
    hub.stop().await;
}
