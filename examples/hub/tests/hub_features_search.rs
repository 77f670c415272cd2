//! The hub's search index on its own: word matching, order, permissions,
//! edits, deletes and eviction (examples/hub/src/features/search/memory.rs).

use std::collections::HashMap;
use std::future::ready;

use futures_util::FutureExt;

use channelbox_hub::features::search::{self, MemoryIndex};
use serde_json::{json, Value};

/// A stand-in for the core's history: (room, id) -> message.
#[derive(Default)]
struct Store(HashMap<(String, u64), Value>);

impl Store {
    fn put(&mut self, index: &MemoryIndex, room: &str, id: u64, content: &str) {
        self.0.insert(
            (room.into(), id),
            json!({"type": "message", "id": id, "content": content}),
        );
        index.insert(room, id, content);
    }
    fn fetch(&self, room: &str, id: u64) -> Option<Value> {
        self.0.get(&(room.to_string(), id)).cloned()
    }
}

fn ids(hits: &[search::Hit]) -> Vec<(String, u64)> {
    hits.iter()
        .map(|h| (h.room.clone(), h.message["id"].as_u64().unwrap()))
        .collect()
}

#[test]
fn every_word_must_match_case_insensitively_newest_first() {
    let index = MemoryIndex::new();
    let mut store = Store::default();
    store.put(&index, "a", 1, "Hello World");
    store.put(&index, "b", 1, "hello there");
    store.put(&index, "a", 2, "the WORLD says hello!");
    store.put(&index, "a", 3, "nothing here");
    let hits = index
        .search(
            "HELLO world",
            20,
            |_| ready(true),
            |r, i| ready(store.fetch(&r, i)),
        )
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(ids(&hits), vec![("a".into(), 2), ("a".into(), 1)]);
    let hits = index
        .search(
            "hello",
            20,
            |_| ready(true),
            |r, i| ready(store.fetch(&r, i)),
        )
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(
        ids(&hits),
        vec![("a".into(), 2), ("b".into(), 1), ("a".into(), 1)]
    );
    assert!(index
        .search(
            "hello missing",
            20,
            |_| ready(true),
            |r, i| ready(store.fetch(&r, i))
        )
        .now_or_never()
        .expect("an in-memory fetch is ready at once")
        .is_empty());
    assert!(index
        .search("  ", 20, |_| ready(true), |r, i| ready(store.fetch(&r, i)))
        .now_or_never()
        .expect("an in-memory fetch is ready at once")
        .is_empty());
}

#[test]
fn limit_is_respected() {
    let index = MemoryIndex::new();
    let mut store = Store::default();
    for i in 1..=50 {
        store.put(&index, "a", i, "same words");
    }
    let hits = index
        .search("same", 7, |_| ready(true), |r, i| ready(store.fetch(&r, i)))
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(hits.len(), 7);
    assert_eq!(hits[0].message["id"], 50);
}

#[test]
fn unreadable_rooms_are_skipped_and_asked_once() {
    let index = MemoryIndex::new();
    let mut store = Store::default();
    for i in 1..=10 {
        store.put(&index, "secret", i, "plan");
        store.put(&index, "open", i, "plan");
    }
    let mut asked = Vec::new();
    let hits = index
        .search(
            "plan",
            100,
            |room| {
                asked.push(room.to_string());
                ready(&*room != "secret")
            },
            |r, i| ready(store.fetch(&r, i)),
        )
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.room == "open"));
    asked.sort();
    assert_eq!(asked, vec!["open".to_string(), "secret".to_string()]);
}

#[test]
fn edits_change_what_matches() {
    let index = MemoryIndex::new();
    let mut store = Store::default();
    store.put(&index, "a", 1, "old text");
    store.put(&index, "a", 2, "later message");
    store.0.insert(
        ("a".into(), 1),
        json!({"type":"message","id":1,"content":"new words","edited":true}),
    );
    index.update("a", 1, "old text", "new words");
    assert!(index
        .search("old", 20, |_| ready(true), |r, i| ready(store.fetch(&r, i)))
        .now_or_never()
        .expect("an in-memory fetch is ready at once")
        .is_empty());
    let hits = index
        .search("new", 20, |_| ready(true), |r, i| ready(store.fetch(&r, i)))
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(ids(&hits), vec![("a".into(), 1)]);
}

#[test]
fn deleted_and_evicted_messages_are_gone() {
    let index = MemoryIndex::new();
    let mut store = Store::default();
    for i in 1..=5 {
        store.put(&index, "a", i, "word");
    }
    index.remove("a", 5);
    // A tombstone in history never matches, even with stale postings.
    store.0.insert(
        ("a".into(), 4),
        json!({"type":"message","id":4,"deleted":true}),
    );
    // History evicted 1 and 2.
    store.0.remove(&("a".to_string(), 1));
    store.0.remove(&("a".to_string(), 2));
    let hits = index
        .search(
            "word",
            20,
            |_| ready(true),
            |r, i| ready(store.fetch(&r, i)),
        )
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(ids(&hits), vec![("a".into(), 3)]);
    // The search noticed the eviction and dropped those documents.
    assert_eq!(index.len().0, 2);
    index.evict_before("a", u64::MAX);
    assert_eq!(index.len().0, 0);
}

#[test]
fn compaction_keeps_order_and_results() {
    let index = MemoryIndex::new();
    let mut store = Store::default();
    let n = 140_000u64;
    for i in 1..=n {
        let text = if i % 2 == 0 {
            "even common"
        } else {
            "odd common"
        };
        store.put(&index, "a", i, text);
    }
    // Forget the oldest 100k: enough dead documents to compact.
    for i in 1..=100_000 {
        store.0.remove(&("a".to_string(), i));
    }
    index.evict_before("a", 100_001);
    assert_eq!(index.len().0, 40_000);
    let hits = index
        .search(
            "even common",
            3,
            |_| ready(true),
            |r, i| ready(store.fetch(&r, i)),
        )
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(
        ids(&hits),
        vec![("a".into(), n), ("a".into(), n - 2), ("a".into(), n - 4)]
    );
    store.put(&index, "a", n + 1, "even newer");
    let hits = index
        .search("even", 1, |_| ready(true), |r, i| ready(store.fetch(&r, i)))
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(ids(&hits), vec![("a".into(), n + 1)]);
}

#[test]
fn words_are_split_and_lowercased() {
    assert_eq!(
        search::words("Hi, @Bob! héllo-WORLD hi"),
        vec!["hi", "bob", "héllo", "world"]
    );
}

#[test]
fn long_texts_keep_each_word_once_in_order() {
    // Past the linear scan's reach (32 distinct words), duplicates are
    // still caught, whatever their case.
    let text: String = (0..100)
        .map(|i| format!("W{} w{} ", i % 50, i % 50))
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    assert_eq!(search::words(&text), want);
    let long = "x".repeat(49);
    assert_eq!(
        search::words(&format!("ok {long} ÉCOLE école")),
        vec!["ok", "école"]
    );
}

#[test]
fn a_search_resumes_past_many_unreadable_postings() {
    let index = MemoryIndex::new();
    let mut store = Store::default();
    for i in 1..=5 {
        store.put(&index, "open", i, "needle");
    }
    // Far more unreadable postings than one hold of the lock examines.
    for i in 1..=30_000 {
        store.put(&index, "secret", i, "needle");
    }
    let hits = index
        .search(
            "needle",
            20,
            |room| ready(&*room == "open"),
            |r, i| ready(store.fetch(&r, i)),
        )
        .now_or_never()
        .expect("an in-memory fetch is ready at once");
    assert_eq!(
        ids(&hits),
        (1..=5)
            .rev()
            .map(|i| ("open".to_string(), i))
            .collect::<Vec<_>>()
    );
}
