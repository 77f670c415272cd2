//! The core's promises, one behaviour a test.

use std::sync::Arc;
use std::time::Duration;

use channelbox::{CloseReason, Config, Error, HistoryQuery, Hub, Kind, ManualClock, SlowConsumer};

fn hub() -> Hub {
    Hub::new(Config::default()).unwrap()
}

fn hub_with(f: impl FnOnce(&mut Config)) -> Hub {
    let mut c = Config::default();
    f(&mut c);
    Hub::new(c).unwrap()
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn offsets(hub: &Hub, group: &str, q: HistoryQuery) -> Vec<u64> {
    hub.history(group, q)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.offset())
        .collect()
}

#[test]
fn offsets_start_at_one_and_only_saved_messages_get_one() {
    let hub = hub();
    let c = hub.open(None, None).unwrap();
    c.join("g").unwrap();
    let r1 = hub.group_send("g", Kind::Text, text("a"), true).unwrap();
    let r2 = hub.group_send("g", Kind::Text, text("b"), false).unwrap();
    let r3 = hub.group_send("g", Kind::Text, text("c"), true).unwrap();
    assert_eq!((r1.offset, r2.offset, r3.offset), (1, 0, 2));
    let got: Vec<(u64, String)> = (0..3)
        .map(|_| {
            let m = c.recv(Some(Duration::ZERO)).unwrap();
            (m.offset(), m.text().unwrap().to_string())
        })
        .collect();
    assert_eq!(got, vec![(1, "a".into()), (0, "b".into()), (2, "c".into())]);
    assert_eq!(offsets(&hub, "g", HistoryQuery::default()), vec![1, 2]);
}

#[test]
fn offsets_are_per_group() {
    let hub = hub();
    hub.group_send("a", Kind::Text, text("x"), true).unwrap();
    hub.group_send("a", Kind::Text, text("x"), true).unwrap();
    assert_eq!(
        hub.group_send("b", Kind::Text, text("x"), true)
            .unwrap()
            .offset,
        1
    );
}

#[test]
fn one_payload_is_shared_by_every_recipient_and_history() {
    let hub = hub();
    let a = hub.open(None, None).unwrap();
    let b = hub.open(None, None).unwrap();
    a.join("g").unwrap();
    b.join("g").unwrap();
    hub.group_send("g", Kind::Json, text(r#"{"x":1}"#), true)
        .unwrap();
    let ma = a.recv(None).unwrap();
    let mb = b.recv(None).unwrap();
    let mh = hub.history_get("g", 1).unwrap();
    assert!(ma.ptr_eq(&mb) && ma.ptr_eq(&mh));
}

#[test]
fn flush_changes_the_epoch_and_offsets_keep_counting() {
    let hub = hub();
    hub.group_send("g", Kind::Text, text("a"), true).unwrap();
    let before = hub.history("g", HistoryQuery::default()).unwrap();
    hub.history_flush(Some("g")).unwrap();
    let after = hub.history("g", HistoryQuery::default()).unwrap();
    assert_ne!(before.epoch, after.epoch);
    assert!(after.messages.is_empty());
    assert_eq!(
        hub.group_send("g", Kind::Text, text("b"), true)
            .unwrap()
            .offset,
        2
    );
    hub.history_flush(None).unwrap();
    assert_ne!(
        hub.history("g", HistoryQuery::default()).unwrap().epoch,
        after.epoch
    );
}

#[test]
fn history_count_bound_evicts_the_oldest_only() {
    let hub = hub_with(|c| c.history_max_messages = 3);
    for i in 0..10 {
        hub.group_send("g", Kind::Text, text(&i.to_string()), true)
            .unwrap();
    }
    let page = hub.history("g", HistoryQuery::default()).unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.offset()).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    assert_eq!((page.first_offset, page.last_offset), (8, 10));
}

#[test]
fn history_byte_bound_evicts_the_oldest_and_never_wipes() {
    // Nexios drops the whole history past its limit; we drop just enough.
    let hub = hub_with(|c| c.history_max_bytes = 1000);
    for _ in 0..50 {
        hub.group_send("g", Kind::Binary, vec![7u8; 100], true)
            .unwrap();
    }
    let page = hub.history("g", HistoryQuery::default()).unwrap();
    assert_eq!(page.messages.len(), 10);
    assert_eq!(page.first_offset, 41);
    assert_eq!(hub.stats().history_bytes, 1000);
}

#[test]
fn history_age_bound_evicts_expired_entries() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = Config {
        history_ttl_seconds: 10,
        ..Config::default()
    };
    let hub = Hub::with_clock(config, clock.clone()).unwrap();
    hub.group_send("g", Kind::Text, text("old"), true).unwrap();
    clock.advance_ms(6_000);
    hub.group_send("g", Kind::Text, text("new"), true).unwrap();
    clock.advance_ms(5_000);
    assert_eq!(offsets(&hub, "g", HistoryQuery::default()), vec![2]);
    clock.advance_ms(5_000);
    assert_eq!(
        offsets(&hub, "g", HistoryQuery::default()),
        Vec::<u64>::new()
    );
    let page = hub.history("g", HistoryQuery::default()).unwrap();
    assert_eq!(page.last_offset, 2, "the offset counter survives eviction");
}

#[test]
fn history_read_returns_the_newest_limit_after_since_oldest_first() {
    let hub = hub();
    for i in 0..20 {
        hub.group_send("g", Kind::Text, text(&i.to_string()), true)
            .unwrap();
    }
    let q = |since, limit| HistoryQuery {
        since,
        before: 0,
        limit,
    };
    assert_eq!(offsets(&hub, "g", q(15, 0)), vec![16, 17, 18, 19, 20]);
    assert_eq!(offsets(&hub, "g", q(5, 3)), vec![18, 19, 20]);
    assert_eq!(offsets(&hub, "g", q(0, 0)).len(), 20);
    let before = HistoryQuery {
        since: 0,
        before: 10,
        limit: 2,
    };
    assert_eq!(offsets(&hub, "g", before), vec![8, 9]);
    let empty = hub.history("nobody", q(0, 0)).unwrap();
    assert!(empty.messages.is_empty());
    assert_eq!(empty.last_offset, 0);
}

#[test]
fn gap_is_visible_from_first_offset() {
    let hub = hub_with(|c| c.history_max_messages = 5);
    for _ in 0..12 {
        hub.group_send("g", Kind::Text, text("m"), true).unwrap();
    }
    // A client that has up to offset 3 missed 4..=12 but only 8..=12 are kept.
    let page = hub
        .history(
            "g",
            HistoryQuery {
                since: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(3 + 1 < page.first_offset);
    assert_eq!(page.first_offset, 8);
}

#[test]
fn slow_consumer_is_disconnected_and_the_group_keeps_flowing() {
    let hub = hub_with(|c| {
        c.queue_max_messages = 5;
    });
    let slow = hub.open(None, None).unwrap();
    let fast = hub.open(None, None).unwrap();
    slow.join("g").unwrap();
    fast.join("g").unwrap();
    let mut got = Vec::new();
    let mut disconnected = 0;
    for i in 0..20 {
        let r = hub
            .group_send("g", Kind::Text, text(&i.to_string()), false)
            .unwrap();
        disconnected += r.disconnected;
        fast.try_recv_batch(&mut got, 100).unwrap();
    }
    assert_eq!(got.len(), 20, "the fast member got everything");
    assert_eq!(disconnected, 1);
    assert!(slow.is_closed());
    // What was queued can still be drained, then receive says closed.
    let mut drained = Vec::new();
    assert_eq!(slow.try_recv_batch(&mut drained, 100).unwrap(), 5);
    match slow.try_recv_batch(&mut drained, 100) {
        Err(Error::Closed(CloseReason::SlowConsumer { messages, bytes })) => {
            assert_eq!((messages, bytes), (5, 5), "what was queued when it closed")
        }
        other => panic!("expected closed, got {other:?}"),
    }
    assert_eq!(hub.groups()["g"].connections, vec![fast.id()]);
    let stats = hub.stats();
    assert_eq!(stats.slow_consumer_disconnects, 1);
    assert!(stats.dropped >= 1);
}

#[test]
fn queue_byte_bound_applies_too() {
    let hub = hub_with(|c| c.queue_max_bytes = 250);
    let c = hub.open(None, None).unwrap();
    c.join("g").unwrap();
    for _ in 0..2 {
        hub.group_send("g", Kind::Binary, vec![0u8; 100], false)
            .unwrap();
    }
    let r = hub
        .group_send("g", Kind::Binary, vec![0u8; 100], false)
        .unwrap();
    assert_eq!((r.delivered, r.disconnected), (0, 1));
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_drops() {
    let hub = hub_with(|c| {
        c.queue_max_messages = 3;
        c.slow_consumer = SlowConsumer::DropOldest;
    });
    let c = hub.open(None, None).unwrap();
    c.join("g").unwrap();
    let mut dropped = 0;
    for i in 0..10 {
        dropped += hub
            .group_send("g", Kind::Text, text(&i.to_string()), false)
            .unwrap()
            .dropped;
    }
    assert_eq!(dropped, 7);
    let mut out = Vec::new();
    c.try_recv_batch(&mut out, 10).unwrap();
    let texts: Vec<&str> = out.iter().map(|m| m.text().unwrap()).collect();
    assert_eq!(texts, vec!["7", "8", "9"]);
    assert!(!c.is_closed());
    assert_eq!(hub.stats().dropped, 7);
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let hub = hub_with(|c| {
        c.queue_max_messages = 3;
        c.slow_consumer = SlowConsumer::DropNewest;
    });
    let c = hub.open(None, None).unwrap();
    c.join("g").unwrap();
    for i in 0..10 {
        hub.group_send("g", Kind::Text, text(&i.to_string()), false)
            .unwrap();
    }
    let mut out = Vec::new();
    c.try_recv_batch(&mut out, 10).unwrap();
    let texts: Vec<&str> = out.iter().map(|m| m.text().unwrap()).collect();
    assert_eq!(texts, vec!["0", "1", "2"]);
}

#[test]
fn presence_counts_a_user_once_and_empty_groups_disappear() {
    let hub = hub();
    let tabs: Vec<_> = (0..3)
        .map(|_| hub.open(Some("alice"), None).unwrap())
        .collect();
    let bob = hub.open(Some("bob"), None).unwrap();
    for t in &tabs {
        t.join("room").unwrap();
    }
    bob.join("room").unwrap();
    let groups = hub.groups();
    assert_eq!(groups["room"].users, vec!["alice", "bob"]);
    assert_eq!(groups["room"].connections.len(), 4);
    tabs[0].close().unwrap();
    tabs[1].leave("room").unwrap();
    assert_eq!(hub.presence("room"), vec!["alice", "bob"]);
    tabs[2].close().unwrap();
    assert_eq!(hub.presence("room"), vec!["bob"]);
    bob.leave("room").unwrap();
    assert!(!hub.groups().contains_key("room"));
}

#[test]
fn a_group_has_listeners_only_while_it_has_members_here() {
    let hub = hub();
    assert!(!hub.group_has_listeners("watch"));
    let a = hub.open(Some("alice"), None).unwrap();
    let b = hub.open(Some("bob"), None).unwrap();
    a.join("watch").unwrap();
    b.join("watch").unwrap();
    assert!(hub.group_has_listeners("watch"));
    a.leave("watch").unwrap();
    assert!(hub.group_has_listeners("watch"));
    b.close().unwrap();
    assert!(!hub.group_has_listeners("watch"));
    // Saved history is not a listener: a group kept for its history alone
    // has nobody to hear an unsaved send.
    hub.group_send("kept", Kind::Text, text("saved"), true)
        .unwrap();
    assert_eq!(offsets(&hub, "kept", HistoryQuery::default()), vec![1]);
    assert!(!hub.group_has_listeners("kept"));
}

#[test]
fn join_is_idempotent() {
    let hub = hub();
    let c = hub.open(Some("u"), None).unwrap();
    c.join("g").unwrap();
    c.join("g").unwrap();
    assert_eq!(
        hub.group_send("g", Kind::Text, text("x"), false)
            .unwrap()
            .delivered,
        1
    );
    c.leave("g").unwrap();
    c.leave("g").unwrap();
    assert_eq!(
        hub.group_send("g", Kind::Text, text("x"), false)
            .unwrap()
            .delivered,
        0
    );
}

#[test]
fn expired_connection_leaves_its_groups_and_is_closed() {
    let clock = Arc::new(ManualClock::new(0));
    let hub = Hub::with_clock(Config::default(), clock.clone()).unwrap();
    let short = hub.open(Some("a"), Some(Duration::from_secs(5))).unwrap();
    let long = hub.open(Some("b"), Some(Duration::from_secs(60))).unwrap();
    short.join("g").unwrap();
    long.join("g").unwrap();
    clock.advance_ms(4_999);
    assert_eq!(hub.sweep_expired(), 0);
    clock.advance_ms(1);
    assert_eq!(hub.sweep_expired(), 1);
    assert!(short.is_closed());
    assert_eq!(short.close_reason(), Some(CloseReason::Expired));
    assert_eq!(CloseReason::Expired.to_string(), "connection expired (ttl)");
    assert_eq!(hub.presence("g"), vec!["b"]);
    assert_eq!(hub.stats().expired_connections, 1);
}

#[test]
fn ttl_thread_closes_on_real_time() {
    let hub = hub();
    let c = hub.open(None, Some(Duration::from_millis(50))).unwrap();
    c.join("g").unwrap();
    // Blocks until the reaper closes it (bounded: 5 s).
    match c.recv(Some(Duration::from_secs(5))) {
        Err(Error::Closed(reason)) => assert_eq!(reason, CloseReason::Expired),
        other => panic!("expected closed by ttl, got {other:?}"),
    }
}

#[test]
fn limits_refuse_without_side_effects() {
    let hub = hub_with(|c| {
        c.max_payload_bytes = 10;
        c.max_group_name_bytes = 4;
    });
    let c = hub.open(None, None).unwrap();
    assert!(matches!(c.join(""), Err(Error::InvalidArgument(_))));
    assert!(matches!(c.join("toolong"), Err(Error::TooLarge(_))));
    c.join("g").unwrap();
    assert!(matches!(
        hub.group_send("g", Kind::Binary, vec![0u8; 11], true),
        Err(Error::TooLarge(_))
    ));
    assert!(matches!(
        hub.group_send("g", Kind::Json, text("{bad"), true),
        Err(Error::InvalidJson(_))
    ));
    assert!(matches!(
        hub.group_send("g", Kind::Text, vec![0xff], true),
        Err(Error::InvalidUtf8(_))
    ));
    assert!(matches!(c.try_recv_batch(&mut Vec::new(), 10), Ok(0)));
    assert_eq!(hub.stats().history_messages, 0);
    assert_eq!(
        hub.history("g", HistoryQuery::default())
            .unwrap()
            .last_offset,
        0
    );
}

#[test]
fn stale_ids_are_detected_and_never_reused() {
    let hub = hub();
    let a = hub.open(None, None).unwrap().id();
    hub.close(a).unwrap();
    assert_eq!(hub.close(a), Err(Error::NoSuchConnection(a)));
    let b = hub.open(None, None).unwrap().id();
    assert_ne!(a, b);
    assert!(matches!(
        hub.group_add(a, "g"),
        Err(Error::NoSuchConnection(_))
    ));
    assert!(matches!(
        hub.recv(a, Some(Duration::ZERO)),
        Err(Error::NoSuchConnection(_))
    ));
}

#[test]
fn a_users_connections_are_counted_as_they_open_and_close() {
    let hub = hub();
    let first = hub.open(Some("alice"), None).unwrap();
    assert_eq!(hub.user_connections("alice"), 1);
    let second = hub.open(Some("alice"), None).unwrap();
    let third = hub.open(Some("alice"), None).unwrap();
    assert_eq!(hub.user_connections("alice"), 3);
    hub.close(second.id()).unwrap();
    assert_eq!(hub.user_connections("alice"), 2);
    hub.close(first.id()).unwrap();
    assert_eq!(hub.user_connections("alice"), 1);
    assert_eq!(hub.users(), vec!["alice".to_string()]);
    let r = hub.user_send("alice", Kind::Text, text("dm")).unwrap();
    assert_eq!(r.delivered, 1);
    hub.close(third.id()).unwrap();
    assert_eq!(hub.user_connections("alice"), 0);
    assert!(hub.users().is_empty());
}

#[test]
fn user_send_reaches_every_connection_of_the_user() {
    let hub = hub();
    let tabs: Vec<_> = (0..3)
        .map(|_| hub.open(Some("alice"), None).unwrap())
        .collect();
    let other = hub.open(Some("bob"), None).unwrap();
    let r = hub.user_send("alice", Kind::Text, text("dm")).unwrap();
    assert_eq!(r.delivered, 3);
    for t in &tabs {
        let m = t.recv(Some(Duration::ZERO)).unwrap();
        assert_eq!((m.text(), m.group(), m.offset()), (Some("dm"), None, 0));
    }
    assert!(matches!(
        other.recv(Some(Duration::ZERO)),
        Err(Error::Empty)
    ));
    assert_eq!(
        hub.user_send("nobody", Kind::Text, text("x"))
            .unwrap()
            .delivered,
        0
    );
}

#[test]
fn direct_send_reaches_one_connection() {
    let hub = hub();
    let a = hub.open(None, None).unwrap();
    let b = hub.open(None, None).unwrap();
    hub.conn_send(a.id(), Kind::Binary, vec![1, 2, 3]).unwrap();
    assert_eq!(
        &a.recv(Some(Duration::ZERO)).unwrap().data()[..],
        &[1, 2, 3]
    );
    assert!(matches!(b.recv(Some(Duration::ZERO)), Err(Error::Empty)));
}

#[test]
fn close_all_drains_then_reports_closed_and_flush_groups_keeps_connections() {
    let hub = hub();
    let a = hub.open(None, None).unwrap();
    a.join("g").unwrap();
    hub.group_send("g", Kind::Text, text("x"), true).unwrap();
    hub.groups_flush();
    assert!(hub.groups().is_empty());
    assert!(!a.is_closed());
    assert_eq!(
        hub.history("g", HistoryQuery::default())
            .unwrap()
            .messages
            .len(),
        1
    );
    hub.close_all();
    assert_eq!(a.recv(Some(Duration::ZERO)).unwrap().text(), Some("x"));
    assert_eq!(
        a.recv(Some(Duration::ZERO)).unwrap_err(),
        Error::Closed(CloseReason::HubClosed)
    );
    assert_eq!(a.join("g"), Err(Error::Closed(CloseReason::HubClosed)));
    assert_eq!(a.close_reason(), Some(CloseReason::HubClosed));
}

#[test]
fn history_replace_keeps_offset_and_timestamp() {
    let hub = hub();
    hub.group_send("g", Kind::Json, text(r#"{"v":1}"#), true)
        .unwrap();
    let original = hub.history_get("g", 1).unwrap();
    hub.history_replace("g", 1, Kind::Json, text(r#"{"v":2}"#))
        .unwrap();
    let replaced = hub.history_get("g", 1).unwrap();
    assert_eq!(replaced.text(), Some(r#"{"v":2}"#));
    assert_eq!((replaced.offset(), replaced.ts_ms()), (1, original.ts_ms()));
    assert!(matches!(
        hub.history_replace("g", 9, Kind::Json, text("{}")),
        Err(Error::NoSuchMessage { .. })
    ));
    assert!(matches!(
        hub.history_replace("g", 1, Kind::Json, text("{")),
        Err(Error::InvalidJson(_))
    ));
}

#[test]
fn group_send_with_builds_the_frame_with_its_offset() {
    let hub = hub();
    let c = hub.open(None, None).unwrap();
    c.join("room").unwrap();
    hub.group_send("room", Kind::Text, text("first"), true)
        .unwrap();
    let r = hub
        .group_send_with("room", Kind::Json, true, |id| {
            format!(r#"{{"type":"message","id":{id}}}"#).into()
        })
        .unwrap();
    assert_eq!(r.offset, 2);
    assert_eq!(
        hub.history_get("room", 2).unwrap().text(),
        Some(r#"{"type":"message","id":2}"#)
    );
    // A bad frame from the builder is refused and nothing is saved.
    let bad = hub.group_send_with("room", Kind::Json, true, |_| "{nope".into());
    assert!(matches!(bad, Err(Error::InvalidJson(_))));
    assert_eq!(
        hub.group_send("room", Kind::Text, text("x"), true)
            .unwrap()
            .offset,
        3
    );
}

#[test]
fn ready_fd_lists_connections_with_pending_messages() {
    let hub = hub();
    let fd = hub.ready_fd().unwrap();
    let a = hub.open(None, None).unwrap();
    let b = hub.open(None, None).unwrap();
    a.join("g").unwrap();
    b.join("g").unwrap();
    let readable = |fd| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    };
    assert!(!readable(fd));
    hub.group_send("g", Kind::Text, text("x"), false).unwrap();
    hub.group_send("g", Kind::Text, text("y"), false).unwrap();
    assert!(readable(fd));
    let mut ids = [0u64; 8];
    let n = hub.take_ready(&mut ids);
    let mut ready = ids[..n].to_vec();
    ready.sort_unstable();
    assert_eq!(ready, vec![a.id(), b.id()]);
    assert!(!readable(fd));
    // Listed again only after being drained and receiving anew.
    let mut out = Vec::new();
    a.try_recv_batch(&mut out, 10).unwrap();
    hub.group_send("g", Kind::Text, text("z"), false).unwrap();
    let n = hub.take_ready(&mut ids);
    assert_eq!(&ids[..n], &[a.id()]);
}

#[test]
fn concurrent_sends_from_threads_lose_nothing_and_keep_group_order() {
    let hub = hub_with(|c| c.queue_max_messages = 100_000);
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let c = hub.open(None, None).unwrap();
            c.join(&format!("g{i}")).unwrap();
            c.join("shared").unwrap();
            c
        })
        .collect();
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for n in 0..1000 {
                    hub.group_send(
                        &format!("g{i}"),
                        Kind::Text,
                        n.to_string().into_bytes(),
                        false,
                    )
                    .unwrap();
                    hub.group_send("shared", Kind::Text, format!("{i}:{n}").into_bytes(), true)
                        .unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let mut orders = Vec::new();
    for r in &readers {
        let mut out = Vec::new();
        r.try_recv_batch(&mut out, usize::MAX).unwrap();
        assert_eq!(out.len(), 5000);
        let shared: Vec<u64> = out
            .iter()
            .filter(|m| m.group() == Some("shared"))
            .map(|m| m.offset())
            .collect();
        assert_eq!(
            shared,
            (1..=4000).collect::<Vec<_>>(),
            "one order per group"
        );
        orders.push(shared);
    }
}

#[tokio::test]
async fn async_receive_wakes_on_send() {
    let hub = hub();
    let c = hub.open(None, None).unwrap();
    c.join("g").unwrap();
    let sender = {
        let hub = hub.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            hub.group_send("g", Kind::Text, text("hello"), false)
                .unwrap();
        })
    };
    let mut out = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.recv_batch_async(&mut out, 16))
        .await
        .expect("woken within 5 s")
        .unwrap();
    assert_eq!((n, out[0].text()), (1, Some("hello")));
    sender.await.unwrap();
    let bye = CloseReason::Host {
        code: 4000,
        text: "bye".into(),
    };
    hub.disconnect(c.id(), bye.clone()).unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), c.recv_async())
        .await
        .unwrap();
    assert_eq!(closed.unwrap_err(), Error::Closed(bye));
}

#[test]
fn blocking_receive_wakes_on_send_from_another_thread() {
    let hub = hub();
    let c = hub.open(None, None).unwrap();
    let id = c.id();
    let h = hub.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        h.conn_send(id, Kind::Text, text("wake")).unwrap();
    });
    let m = c.recv(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(m.text(), Some("wake"));
    t.join().unwrap();
}

#[test]
fn a_send_in_progress_on_one_group_does_not_block_another_group() {
    // The builder of `group_send_with` runs under group "a"'s lock; a send
    // to group "b" from another thread must complete meanwhile. With one
    // global lock this would wait forever (bounded here by 5 s).
    let hub = hub();
    let b = hub.open(None, None).unwrap();
    b.join("b").unwrap();
    let other = hub.clone();
    hub.group_send_with("a", Kind::Text, true, move |_| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = other.group_send("b", Kind::Text, b"x".to_vec(), true);
            let _ = tx.send(r);
        });
        let r = rx.recv_timeout(Duration::from_secs(5));
        assert!(matches!(r, Ok(Ok(_))), "send to b was blocked by a's send");
        "a".into()
    })
    .unwrap();
    assert_eq!(b.recv(Some(Duration::ZERO)).unwrap().text(), Some("x"));
}

/// Polls a future once: the in-memory engine's async reads are done at once.
fn done_at_once<F: std::future::Future>(f: F) -> F::Output {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = std::task::Waker::from(Arc::new(Noop));
    let mut cx = std::task::Context::from_waker(&waker);
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("an in-memory read waited"),
    }
}

#[test]
fn last_offset_is_the_newest_offset_ever_assigned() {
    let hub = hub();
    assert_eq!(hub.last_offset("g").unwrap(), 0, "nothing saved yet");
    hub.group_send("g", Kind::Text, text("a"), true).unwrap();
    hub.group_send("g", Kind::Text, text("b"), false).unwrap();
    hub.group_send("g", Kind::Text, text("c"), true).unwrap();
    assert_eq!(hub.last_offset("g").unwrap(), 2);
    hub.history_flush(Some("g")).unwrap();
    assert_eq!(
        hub.last_offset("g").unwrap(),
        2,
        "a flush does not lower it"
    );
    assert_eq!(done_at_once(hub.last_offset_async("g")).unwrap(), 2);
    assert_eq!(hub.last_offset("other").unwrap(), 0);
    assert!(matches!(
        hub.last_offset(""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        done_at_once(hub.last_offset_async("")),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn last_offset_survives_eviction() {
    let hub = hub_with(|c| c.history_max_messages = 2);
    for i in 0..5 {
        hub.group_send("g", Kind::Text, text(&i.to_string()), true)
            .unwrap();
    }
    let page = hub.history("g", HistoryQuery::default()).unwrap();
    assert_eq!((page.first_offset, page.last_offset), (4, 5));
    assert_eq!(hub.last_offset("g").unwrap(), 5);
}

#[test]
fn async_history_reads_match_the_blocking_ones_in_memory() {
    let hub = hub();
    for s in ["a", "b", "c"] {
        hub.group_send("g", Kind::Text, text(s), true).unwrap();
    }
    let q = HistoryQuery {
        since: 1,
        ..HistoryQuery::default()
    };
    let page = done_at_once(hub.history_async("g", q)).unwrap();
    let blocking = hub.history("g", q).unwrap();
    assert_eq!(
        (page.epoch, page.first_offset, page.last_offset),
        (blocking.epoch, 1, 3)
    );
    assert_eq!(
        page.messages.iter().map(|m| m.offset()).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        done_at_once(hub.history_get_async("g", 2)).unwrap().text(),
        Some("b")
    );
    assert!(matches!(
        done_at_once(hub.history_get_async("g", 9)),
        Err(Error::NoSuchMessage { offset: 9, .. })
    ));
    assert!(matches!(
        done_at_once(hub.history_async("", q)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn async_history_replace_keeps_offset_and_refuses_bad_input_in_memory() {
    let hub = hub();
    hub.group_send("g", Kind::Json, text(r#"{"v":1}"#), true)
        .unwrap();
    let ts = hub.history_get("g", 1).unwrap().ts_ms();
    let m =
        done_at_once(hub.history_replace_async("g", 1, Kind::Json, text(r#"{"v":2}"#))).unwrap();
    assert_eq!(
        (m.offset(), m.ts_ms(), m.text()),
        (1, ts, Some(r#"{"v":2}"#))
    );
    assert_eq!(hub.history_get("g", 1).unwrap().text(), Some(r#"{"v":2}"#));
    assert!(matches!(
        done_at_once(hub.history_replace_async("g", 1, Kind::Json, text("{nope"))),
        Err(Error::InvalidJson(_))
    ));
    assert!(matches!(
        done_at_once(hub.history_replace_async("g", 7, Kind::Text, text("x"))),
        Err(Error::NoSuchMessage { offset: 7, .. })
    ));
    assert_eq!(hub.history_get("g", 1).unwrap().text(), Some(r#"{"v":2}"#));
}

#[test]
fn async_presence_reads_match_the_blocking_ones_in_memory() {
    let hub = hub();
    let a = hub.open(Some("alice"), None).unwrap();
    let _b = hub.open(Some("bob"), None).unwrap();
    a.join("g").unwrap();
    assert!(done_at_once(hub.is_present_async("g", "alice")));
    assert!(!done_at_once(hub.is_present_async("g", "bob")));
    assert_eq!(done_at_once(hub.presence_async("g")), vec!["alice"]);
    assert_eq!(done_at_once(hub.users_async()), vec!["alice", "bob"]);
}

#[test]
fn a_host_disconnect_keeps_its_code_and_text_and_the_first_reason_wins() {
    let hub = hub();
    let c = hub.open(None, None).unwrap();
    assert_eq!(c.close_reason(), None, "open: no reason");
    let banned = CloseReason::Host {
        code: 4003,
        text: "banned from this room".into(),
    };
    hub.disconnect(c.id(), banned.clone()).unwrap();
    hub.disconnect(c.id(), CloseReason::HubClosed).unwrap();
    hub.close_all();
    assert_eq!(c.close_reason(), Some(banned.clone()));
    assert_eq!(banned.to_string(), "banned from this room");
    assert_eq!(banned.code(), 2);
    assert_eq!(
        c.recv(Some(Duration::ZERO)).unwrap_err(),
        Error::Closed(banned)
    );
    c.close().unwrap();
    assert_eq!(
        c.close_reason(),
        Some(CloseReason::Host {
            code: 4003,
            text: "banned from this room".into()
        }),
        "closing after a disconnect keeps the reason"
    );
}

#[test]
fn closing_releases_with_closed_by_host() {
    let hub = hub();
    let c = hub.open(None, None).unwrap();
    c.close().unwrap();
    assert_eq!(c.close_reason(), Some(CloseReason::ClosedByHost));
    assert_eq!(
        c.recv(Some(Duration::ZERO)).unwrap_err(),
        Error::Closed(CloseReason::ClosedByHost)
    );
}

#[test]
#[cfg(not(feature = "redis"))]
fn the_redis_engine_is_refused_clearly_when_built_without_it() {
    let config = Config::from_json(r#"{"engine": "redis"}"#).unwrap();
    match Hub::new(config) {
        Err(Error::InvalidArgument(why)) => {
            assert!(why.contains("built without the redis feature"), "{why}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}
