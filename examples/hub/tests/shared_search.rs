//! Search shared by every hub (examples/hub/src/features/search/): two hubs
//! on one throw-away Redis find each other's messages within a second,
//! hits of a private room reach members only, edits and deletes are
//! followed; the Redis index forgets deleted and evicted messages; a hub
//! alone rebuilds its index from the core's history.

use channelbox_hub::*;

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use channelbox::Kind;
use channelbox_hub::features::search::shared::{Fetched, SharedIndex};
use channelbox_hub::features::search::Op;
use channelbox_test_support::RedisServer;
use common::{Client, Hub};
use serde_json::{json, Value};

/// How soon a message sent through one hub must be found through another.
const WITHIN: Duration = Duration::from_secs(1);

/// The (room, id) of each hit of `query`, as `client` gets them.
async fn search(client: &mut Client, query: &str) -> Vec<(String, u64)> {
    client.send(json!({"type": "search", "query": query})).await;
    let results = client.expect("search_results").await;
    results["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["room"].as_str().unwrap().to_owned(),
                m["id"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Searches until the hits are `want` or `WITHIN` has passed since
/// `since`; returns the last hits and when they were first right.
async fn search_until(
    client: &mut Client,
    query: &str,
    want: &[(String, u64)],
    since: Instant,
) -> (Vec<(String, u64)>, Duration) {
    loop {
        let hits = search(client, query).await;
        if hits == want || since.elapsed() > WITHIN {
            return (hits, since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_one_hub_is_found_through_the_other_within_a_second() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("lobby", &h1.user("alice")).await;
    let (mut bob, _) = h2.join("other", &h2.user("bob")).await;
    let id = alice.say("the zebra crossing is open").await;
    let sent = Instant::now();
    let want = vec![("lobby".to_owned(), id)];
    let (hits, took) = search_until(&mut bob, "Zebra crossing", &want, sent).await;
    assert_eq!(hits, want, "not found through h2 within {WITHIN:?}");
    assert!(took <= WITHIN, "{took:?}");
    // And the other way round, newest first across rooms and hubs.
    let other = bob.say("a zebra in the other room").await;
    let want = vec![("other".to_owned(), other), ("lobby".to_owned(), id)];
    let (hits, _) = search_until(&mut alice, "zebra", &want, Instant::now()).await;
    assert_eq!(hits, want);
    assert_eq!(h1.state.features.search.dropped(), 0);
    h1.stop().await;
    h2.stop().await;
}

/// Creates a private room through `hub` with `members`; returns its id.
async fn private_room(hub: &Hub, owner: &str, members: &[&str]) -> String {
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &hub.user(owner),
            Some(json!({"name": "Secret plans", "private": true, "members": members})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    room["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_rooms_hits_reach_its_members_only() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let room = private_room(&h1, "olga", &["alice"]).await;
    let (mut alice, _) = h1.join(&room, &h1.user("alice")).await;
    let secret = alice.say("launch codes tuesday").await;
    // A public message with the same words, so the query finds something.
    let (mut bob, _) = h1.join("lobby", &h1.user("bob")).await;
    let public = bob.say("launch codes are a myth").await;
    let mut mallory = h1.join("lobby", &h1.user("mallory")).await.0;
    let want = vec![("lobby".to_owned(), public)];
    let (hits, _) = search_until(&mut mallory, "launch codes", &want, Instant::now()).await;
    assert_eq!(hits, want, "a non-member sees the public message only");
    let mut member_chat = h1.join("lobby", &h1.user("alice")).await.0;
    let want = vec![("lobby".to_owned(), public), (room.clone(), secret)];
    let (hits, _) = search_until(&mut member_chat, "launch codes", &want, Instant::now()).await;
    assert_eq!(hits, want, "a member sees both");
    h1.stop().await;
    h2.stop().await;
}

/// The same through the other hub: the rooms registry is in Redis too, so
/// hub 2 knows the room is private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_rooms_hits_reach_its_members_only_on_the_other_hub_too() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let room = private_room(&h1, "olga", &["alice"]).await;
    let (mut alice, _) = h1.join(&room, &h1.user("alice")).await;
    let secret = alice.say("launch codes tuesday").await;
    let mut member = h2.join("lobby", &h2.user("alice")).await.0;
    let want = vec![(room.clone(), secret)];
    let (hits, _) = search_until(&mut member, "launch codes", &want, Instant::now()).await;
    assert_eq!(hits, want, "the member finds it through h2");
    let mut mallory = h2.join("lobby", &h2.user("mallory")).await.0;
    assert_eq!(search(&mut mallory, "launch codes").await, vec![]);
    h1.stop().await;
    h2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_found_by_its_new_words_only_and_a_delete_not_at_all_on_either_hub() {
    let redis = RedisServer::start();
    let (h1, h2) = Hub::pair_on_redis(&redis).await;
    let (mut alice, _) = h1.join("lobby", &h1.user("alice")).await;
    let (mut bob, _) = h2.join("lobby", &h2.user("bob")).await;
    let edited = alice.say("meet at the harbour").await;
    let deleted = alice.say("meet at the lighthouse").await;
    let both = vec![("lobby".to_owned(), deleted), ("lobby".to_owned(), edited)];
    let (hits, _) = search_until(&mut bob, "meet", &both, Instant::now()).await;
    assert_eq!(hits, both);

    alice
        .send(json!({"type": "edit", "message_id": edited, "content": "gather at the station"}))
        .await;
    alice.expect("edited").await;
    let now = Instant::now();
    let want = vec![("lobby".to_owned(), edited)];
    let (hits, _) = search_until(&mut bob, "station", &want, now).await;
    assert_eq!(hits, want, "the new words find it through h2");
    for client in [&mut alice, &mut bob] {
        assert_eq!(search(client, "harbour").await, vec![], "old words do not");
    }

    alice
        .send(json!({"type": "delete", "message_id": deleted}))
        .await;
    alice.expect("deleted").await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(search(client, "lighthouse").await, vec![]);
        assert_eq!(search(client, "meet").await, vec![]);
    }
    // The delete removed its refs from Redis too (not only hidden by the
    // re-check against history).
    h1.state.features.search.settled(&h1.state).await;
    let mut raw = redis.raw();
    let refs: Vec<String> = redis::cmd("ZRANGE")
        .arg("cbx-search:w:lighthouse")
        .arg(0)
        .arg(-1)
        .query(&mut raw)
        .unwrap();
    assert_eq!(refs, Vec::<String>::new());
    let refs: Vec<String> = redis::cmd("ZRANGE")
        .arg("cbx-search:w:harbour")
        .arg(0)
        .arg(-1)
        .query(&mut raw)
        .unwrap();
    assert_eq!(refs, Vec::<String>::new());
    h1.stop().await;
    h2.stop().await;
}

/// A stand-in for history in the index-level tests: everything is kept
/// except `gone`.
fn fetch_all_but(gone: &'static [u64]) -> impl Fn(Arc<str>, u64) -> std::future::Ready<Fetched> {
    move |_, id| {
        std::future::ready(if gone.contains(&id) {
            Fetched::Gone
        } else {
            Fetched::Message(json!({"type": "message", "id": id, "content": "kept words"}))
        })
    }
}

fn insert(room: &str, id: u64, text: &str) -> Op {
    Op::Insert {
        room: room.into(),
        id,
        at_ms: 1_000 + id,
        words: features::search::words(text),
    }
}

async fn ids(index: &SharedIndex, query: &str, gone: &'static [u64]) -> Vec<u64> {
    let hits = index
        .search(
            query,
            100,
            |_| std::future::ready(true),
            fetch_all_but(gone),
        )
        .await
        .expect("redis answers");
    hits.iter()
        .map(|h| h.message["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_redis_index_forgets_evicted_and_vanished_messages() {
    let redis = RedisServer::start();
    let index = SharedIndex::start(&redis.url(), "t").expect("index");
    for id in 1..=10 {
        index.submit(insert("a", id, "kept words"));
    }
    index.flush().await;
    assert_eq!(
        ids(&index, "kept", &[]).await,
        (1..=10).rev().collect::<Vec<_>>()
    );
    // History evicted 1-4.
    index.submit(Op::Evict {
        room: "a".into(),
        first_kept: 5,
    });
    index.flush().await;
    let mut raw = redis.raw();
    let card: u64 = redis::cmd("ZCARD")
        .arg("t-search:w:kept")
        .query(&mut raw)
        .unwrap();
    assert_eq!(card, 6);
    let left: u64 = redis::cmd("HLEN")
        .arg("t-search:m:a")
        .query(&mut raw)
        .unwrap();
    assert_eq!(left, 6);
    // A ref whose message history lost is dropped by the search that meets it.
    assert_eq!(ids(&index, "words", &[9]).await, vec![10, 8, 7, 6, 5]);
    index.flush().await;
    let card: u64 = redis::cmd("ZCARD")
        .arg("t-search:w:words")
        .query(&mut raw)
        .unwrap();
    assert_eq!(card, 5);
    // The whole room.
    index.submit(Op::Evict {
        room: "a".into(),
        first_kept: u64::MAX,
    });
    index.flush().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("t-search:*")
        .query(&mut raw)
        .unwrap();
    assert_eq!(keys, Vec::<String>::new());
    assert_eq!(index.dropped(), 0);
}

#[tokio::test]
async fn a_redis_query_reads_newest_first_past_unreadable_rooms_and_equal_times() {
    let redis = RedisServer::start();
    let index = SharedIndex::start(&redis.url(), "t").expect("index");
    // More refs than the first batches read, all at the same time, most in
    // a room the caller may not read.
    for id in 1..=3_000 {
        let room = if id % 100 == 0 { "open" } else { "closed" };
        index.submit(Op::Insert {
            room: room.into(),
            id,
            at_ms: 5,
            words: vec!["kept".into(), "words".into()],
        });
    }
    index.flush().await;
    let mut asked = Vec::new();
    let hits = index
        .search(
            "words kept",
            100,
            |room| {
                asked.push(room.to_string());
                std::future::ready(&*room == "open")
            },
            fetch_all_but(&[]),
        )
        .await
        .expect("redis answers");
    let mut got: Vec<u64> = hits
        .iter()
        .map(|h| h.message["id"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (1..=30).map(|i| i * 100).collect::<Vec<_>>());
    asked.sort();
    assert_eq!(asked, vec!["closed", "open"], "each room asked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_alone_rebuilds_its_index_from_the_cores_history() {
    let hub = Hub::start().await;
    // History the core holds before the index is built, as a restarted
    // hub with durable history finds it: two rooms, interleaved in time,
    // with a tombstone and a notice that must not be indexed.
    let saved = [
        (
            "lobby",
            json!({"type": "message", "user": "a", "content": "rebuilt comet one"}),
        ),
        (
            "other",
            json!({"type": "message", "user": "b", "content": "rebuilt comet two"}),
        ),
        (
            "lobby",
            json!({"type": "system", "message": "comet joined"}),
        ),
        (
            "lobby",
            json!({"type": "message", "user": "a", "deleted": true}),
        ),
        (
            "lobby",
            json!({"type": "message", "user": "a", "content": "rebuilt comet three"}),
        ),
    ];
    let mut ids = Vec::new();
    for (room, frame) in saved {
        let report = hub
            .state
            .hub
            .group_send_with(&format!("room:{room}"), Kind::Json, true, |id| {
                let mut frame: Value = frame.clone();
                frame["id"] = id.into();
                serde_json::to_vec(&frame).unwrap().into()
            })
            .expect("saved");
        ids.push((room.to_owned(), report.offset));
        // Distinct send times, so the merge across rooms has an order to keep.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let (mut carol, _) = hub.join("third", &hub.user("carol")).await;
    let hits = search(&mut carol, "comet").await;
    assert_eq!(hits, vec![ids[4].clone(), ids[1].clone(), ids[0].clone()]);
    // Messages sent after the rebuild join them, newest first.
    let (mut alice, _) = hub.join("lobby", &hub.user("alice")).await;
    let id = alice.say("a fresh comet").await;
    let hits = search(&mut carol, "comet").await;
    assert_eq!(hits[0], ("lobby".to_owned(), id));
    assert_eq!(hits.len(), 4);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_a_large_history_is_rebuilt_are_found_after_it() {
    let hub = Hub::start().await;
    // More than is rebuilt inline: the rebuild runs on its own thread.
    let rooms = 5;
    let per_room = 6_000;
    for i in 0..rooms * per_room {
        hub.state
            .hub
            .group_send_with(&format!("room:r{}", i % rooms), Kind::Json, true, |id| {
                format!("{{\"id\":{id},\"type\":\"message\",\"content\":\"old history {i}\"}}")
                    .into()
            })
            .expect("saved");
    }
    // The first join starts the rebuild on its own thread; a message sent
    // right after it usually arrives during it (then it waits and is
    // indexed after it), and a search waits for the rebuild.
    let (mut alice, _) = hub.join("r0", &hub.user("alice")).await;
    let fresh = alice.say("new history").await;
    let hits = search(&mut alice, "history").await;
    assert_eq!(hits.len(), 20);
    assert_eq!(hits[0], ("r0".to_owned(), fresh));
    // The newest old message came next (i = 29,999, in room r4).
    assert_eq!(hits[1].0, "r4");
    let old = search(&mut alice, "old").await;
    assert_eq!(old.len(), 20);
    hub.state.features.search.settled(&hub.state).await;
    assert_eq!(hub.state.features.search.dropped(), 0);
    hub.stop().await;
}

#[test]
fn a_large_history_is_rebuilt_in_send_order_across_rooms() {
    let core = channelbox::Hub::new(channelbox::Config::default()).expect("core");
    // Rooms take turns, so offsets alone would not give the global order.
    for i in 0..300u64 {
        let room = format!("room:r{}", i % 7);
        let text = format!("{{\"type\":\"message\",\"content\":\"word{} common\"}}", i);
        core.group_send(&room, Kind::Json, text, true)
            .expect("saved");
    }
    let index = features::search::MemoryIndex::new();
    let done = features::search::rebuild::from_history(&core, &index);
    assert_eq!((done.rooms, done.messages), (7, 300));
    let hits = futures_util::FutureExt::now_or_never(index.search(
        "common",
        5,
        |_| std::future::ready(true),
        |room, id| {
            let m = core.history_get(&format!("room:{room}"), id).ok();
            std::future::ready(m.and_then(|m| serde_json::from_slice::<Value>(m.data()).ok()))
        },
    ))
    .expect("in memory");
    let words: Vec<&str> = hits
        .iter()
        .map(|h| h.message["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        words,
        vec![
            "word299 common",
            "word298 common",
            "word297 common",
            "word296 common",
            "word295 common"
        ]
    );
}
