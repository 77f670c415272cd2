//! The Redis engine with a real Redis: several `Hub`s (nodes) on one
//! throw-away `redis-server` each test starts on a free loopback port.
//! Needs `redis-server` on PATH (`scripts/ensure-redis.sh` installs it).
#![cfg(feature = "redis")]

use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use channelbox::{CloseReason, Config, Error, HistoryQuery, Hub, Kind, Message};

use channelbox_test_support::{free_port, RedisServer};

fn config(server: &RedisServer, node: &str, extra: &str) -> Config {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    Config::from_json(&format!(
        r#"{{"engine": "redis", "redis_url": "{}", "node_name": "{node}",
            "presence_ttl_seconds": 2, "redis_timeout_ms": 1000{extra}}}"#,
        server.url()
    ))
    .unwrap()
}

fn node(server: &RedisServer, name: &str) -> Hub {
    Hub::new(config(server, name, "")).unwrap()
}

/// Receives `n` messages or fails after a few seconds.
fn recv_n(conn: &channelbox::Connection, n: usize) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "got {} of {n} messages", out.len());
        match conn.recv(Some(left)) {
            Ok(m) => out.push(m),
            Err(Error::Empty) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    out
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(25));
    }
}

fn offsets(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(Message::offset).collect()
}

fn texts(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| m.text().unwrap().to_owned()).collect()
}

#[test]
fn a_group_spans_three_nodes_in_one_order_with_gap_free_offsets() {
    let redis = RedisServer::start();
    let nodes: Vec<Hub> = ["a", "b", "c"].iter().map(|n| node(&redis, n)).collect();
    let members: Vec<_> = nodes
        .iter()
        .map(|h| {
            let c = h.open(None, None).unwrap();
            c.join("room").unwrap();
            c
        })
        .collect();
    let per_node = 40;
    let senders: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, hub)| {
            let hub = hub.clone();
            thread::spawn(move || {
                for j in 0..per_node {
                    let text = format!("{i}-{j}");
                    hub.group_send("room", Kind::Text, text.into_bytes(), true)
                        .unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let total = 3 * per_node;
    let seen: Vec<Vec<Message>> = members.iter().map(|m| recv_n(m, total)).collect();
    let expected: Vec<u64> = (1..=total as u64).collect();
    for s in &seen {
        assert_eq!(offsets(s), expected, "offsets unique and gap-free");
        assert_eq!(texts(s), texts(&seen[0]), "one order on every node");
    }
    // Each sender's own messages keep their order.
    for i in 0..3 {
        let mine: Vec<String> = texts(&seen[0])
            .into_iter()
            .filter(|t| t.starts_with(&format!("{i}-")))
            .collect();
        let want: Vec<String> = (0..per_node).map(|j| format!("{i}-{j}")).collect();
        assert_eq!(mine, want);
    }
    // The last 50 of history are the same everywhere, and match delivery.
    let q = HistoryQuery {
        limit: 50,
        ..HistoryQuery::default()
    };
    let pages: Vec<_> = nodes
        .iter()
        .map(|h| h.history("room", q).unwrap())
        .collect();
    for p in &pages {
        assert_eq!(p.messages.len(), 50);
        assert_eq!(p.last_offset, total as u64);
        assert_eq!(p.epoch, pages[0].epoch);
        assert_eq!(offsets(&p.messages), offsets(&seen[0][total - 50..]));
        assert_eq!(texts(&p.messages), texts(&seen[0][total - 50..]));
    }
    assert!(pages[0].epoch != 0);
}

#[test]
fn group_send_with_puts_the_redis_offset_in_the_frame() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let on_b = b.open(None, None).unwrap();
    on_b.join("room").unwrap();
    a.group_send("room", Kind::Json, &br#"{"warm":1}"#[..], true)
        .unwrap();
    let report = a
        .group_send_with("room", Kind::Json, true, |id| {
            format!(r#"{{"type":"message","id":{id},"content":"18446744073709551615"}}"#).into()
        })
        .unwrap();
    assert_eq!(report.offset, 2);
    let got = recv_n(&on_b, 2);
    assert_eq!(
        got[1].text().unwrap(),
        r#"{"type":"message","id":2,"content":"18446744073709551615"}"#
    );
    assert_eq!(got[1].offset(), 2);
    let saved = a.history_get("room", 2).unwrap();
    assert_eq!(saved.data(), got[1].data());
    // Not saved: the builder gets 0, nothing is replaced.
    let report = a
        .group_send_with("room", Kind::Json, false, |id| {
            format!(r#"{{"id":{id}}}"#).into()
        })
        .unwrap();
    assert_eq!(report.offset, 0);
    assert_eq!(recv_n(&on_b, 1)[0].text().unwrap(), r#"{"id":0}"#);
}

#[test]
fn a_member_on_another_node_is_a_listener() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let on_b = b.open(None, None).unwrap();
    on_b.join("watch").unwrap();
    // Node a has no member of its own, and cannot know b's without asking
    // Redis: it must not skip the send.
    assert!(a.group_has_listeners("watch"));
    a.group_send("watch", Kind::Text, &b"hi"[..], false)
        .unwrap();
    assert_eq!(recv_n(&on_b, 1)[0].text().unwrap(), "hi");
}

#[test]
fn presence_is_one_user_across_nodes_and_offline_after_the_last_tab() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let alice_a = a.open(Some("alice"), None).unwrap();
    let alice_b = b.open(Some("alice"), None).unwrap();
    let bob_b = b.open(Some("bob"), None).unwrap();
    for c in [&alice_a, &alice_b, &bob_b] {
        c.join("room").unwrap();
    }
    for hub in [&a, &b] {
        assert_eq!(hub.presence("room"), vec!["alice", "bob"]);
        assert_eq!(hub.users(), vec!["alice", "bob"]);
    }
    assert!(a.is_present("room", "bob"), "bob is only on b");
    alice_a.close().unwrap();
    assert!(a.is_present("room", "alice"), "alice still has a tab on b");
    alice_b.close().unwrap();
    assert!(!a.is_present("room", "alice"));
    assert!(!b.is_present("room", "alice"));
    assert_eq!(a.presence("room"), vec!["bob"]);
    assert_eq!(a.users(), vec!["bob"]);
    bob_b.leave("room").unwrap();
    assert!(a.presence("room").is_empty());
}

#[test]
fn user_sends_reach_every_tab_on_every_node() {
    let redis = RedisServer::start();
    let (a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    let tabs = [
        a.open(Some("alice"), None).unwrap(),
        b.open(Some("alice"), None).unwrap(),
        b.open(Some("alice"), None).unwrap(),
    ];
    let bob = b.open(Some("bob"), None).unwrap();
    c.user_send("alice", Kind::Text, &b"psst"[..]).unwrap();
    for t in &tabs {
        let m = recv_n(t, 1);
        assert_eq!(
            (m[0].text(), m[0].group(), m[0].offset()),
            (Some("psst"), None, 0)
        );
    }
    assert_eq!(bob.pending().0, 0);
    // A user nobody holds is fine.
    c.user_send("nobody", Kind::Text, &b"x"[..]).unwrap();
}

#[test]
fn a_client_recovers_on_another_node_by_offset_and_epoch() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    for i in 1..=10 {
        a.group_send("room", Kind::Text, format!("m{i}").into_bytes(), true)
            .unwrap();
    }
    let first = a.history("room", HistoryQuery::default()).unwrap();
    // The client saw up to 6 on a, reconnects to b.
    let q = HistoryQuery {
        since: 6,
        ..HistoryQuery::default()
    };
    let page = b.history("room", q).unwrap();
    assert_eq!(page.epoch, first.epoch);
    assert_eq!(offsets(&page.messages), vec![7, 8, 9, 10]);
    assert_eq!(texts(&page.messages), vec!["m7", "m8", "m9", "m10"]);
    assert_eq!((page.first_offset, page.last_offset), (1, 10));
    // Paging before an id, and one entry by offset.
    let before = HistoryQuery {
        before: 5,
        limit: 2,
        ..HistoryQuery::default()
    };
    assert_eq!(
        offsets(&b.history("room", before).unwrap().messages),
        vec![3, 4]
    );
    assert_eq!(b.history_get("room", 3).unwrap().text(), Some("m3"));
    assert!(matches!(
        b.history_get("room", 11),
        Err(Error::NoSuchMessage { .. })
    ));
    // An edit on b shows on a, same offset and timestamp.
    let edited = b
        .history_replace("room", 3, Kind::Text, &b"m3 (edited)"[..])
        .unwrap();
    let seen = a.history_get("room", 3).unwrap();
    assert_eq!(
        (seen.text(), seen.ts_ms()),
        (Some("m3 (edited)"), edited.ts_ms())
    );
    // A flush on b is a new epoch for everyone; offsets keep counting.
    b.history_flush(Some("room")).unwrap();
    let after = a.history("room", HistoryQuery::default()).unwrap();
    assert_ne!(after.epoch, first.epoch);
    assert!(after.messages.is_empty());
    assert_eq!(
        a.group_send("room", Kind::Text, &b"n"[..], true)
            .unwrap()
            .offset,
        11
    );
    assert_eq!(b.history_all(HistoryQuery::default()).len(), 1);
}

#[test]
fn history_bounds_apply_across_nodes() {
    let redis = RedisServer::start();
    let a = Hub::new(config(&redis, "a", r#""history_max_messages": 5"#)).unwrap();
    let b = Hub::new(config(&redis, "b", r#""history_max_messages": 5"#)).unwrap();
    for i in 1..=12 {
        let hub = if i % 2 == 0 { &a } else { &b };
        hub.group_send("room", Kind::Text, format!("m{i}").into_bytes(), true)
            .unwrap();
    }
    let page = a.history("room", HistoryQuery::default()).unwrap();
    assert_eq!(offsets(&page.messages), vec![8, 9, 10, 11, 12]);
    assert_eq!((page.first_offset, page.last_offset), (8, 12));
    let stream_len: usize = redis::cmd("XLEN")
        .arg("cbx:g:room:log")
        .query(&mut redis.raw())
        .unwrap();
    assert_eq!(stream_len, 5);
}

#[test]
fn a_growing_replacement_keeps_the_byte_bound_in_redis() {
    let redis = RedisServer::start();
    let hub = Hub::new(config(&redis, "a", r#""history_max_bytes": 1000"#)).unwrap();
    for _ in 0..10 {
        hub.group_send("room", Kind::Binary, vec![0u8; 50], true)
            .unwrap();
    }
    let bytes_key = || -> u64 {
        redis::cmd("GET")
            .arg("cbx:g:room:bytes")
            .query(&mut redis.raw())
            .unwrap()
    };
    assert_eq!(bytes_key(), 500);
    for offset in 1..=10 {
        // Each entry grows from 50 to 400 bytes, one after the other; the
        // oldest entries go at once, as after a send.
        let _ = hub.history_replace("room", offset, Kind::Binary, vec![1u8; 400]);
        let bytes = bytes_key();
        assert!(bytes <= 1000, "{bytes} bytes after replacing {offset}");
    }
    let page = hub.history("room", HistoryQuery::default()).unwrap();
    assert_eq!(offsets(&page.messages), vec![9, 10]);
    assert!(page.messages.iter().all(|m| m.len() == 400));
}

#[test]
fn a_node_that_dies_without_goodbye_drops_out_within_the_presence_ttl() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let carol = b.open(Some("carol"), None).unwrap();
    carol.join("room").unwrap();
    let dave = a.open(Some("dave"), None).unwrap();
    dave.join("room").unwrap();
    assert_eq!(a.presence("room"), vec!["carol", "dave"]);
    b.engine_halt();
    let died = Instant::now();
    // The TTL is 2 s; the heartbeat on a keeps dave.
    wait_until("carol to expire", Duration::from_secs(4), || {
        a.presence("room") == vec!["dave"]
    });
    assert!(
        died.elapsed() <= Duration::from_millis(2500),
        "{:?}",
        died.elapsed()
    );
    assert_eq!(a.users(), vec!["dave"]);
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        a.presence("room"),
        vec!["dave"],
        "live entries are refreshed"
    );
}

#[test]
fn a_clean_shutdown_says_goodbye_at_once() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    {
        let b = node(&redis, "b");
        let erin = b.open(Some("erin"), None).unwrap();
        erin.join("room").unwrap();
        assert_eq!(a.presence("room"), vec!["erin"]);
        drop(erin);
    }
    assert!(a.presence("room").is_empty());
    assert!(a.users().is_empty());
}

#[test]
fn subscriptions_follow_local_membership() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let mut raw = redis.raw();
    let channels = |raw: &mut redis::Connection| -> Vec<String> {
        let mut c: Vec<String> = redis::cmd("PUBSUB").arg("CHANNELS").query(raw).unwrap();
        c.sort();
        c
    };
    assert!(channels(&mut raw).is_empty());
    let x = a.open(Some("xavier"), None).unwrap();
    let y = a.open(None, None).unwrap();
    x.join("room").unwrap();
    y.join("room").unwrap();
    assert_eq!(channels(&mut raw), vec!["cbx:c:g:room", "cbx:c:u:xavier"]);
    x.leave("room").unwrap();
    assert_eq!(channels(&mut raw), vec!["cbx:c:g:room", "cbx:c:u:xavier"]);
    y.leave("room").unwrap();
    x.close().unwrap();
    wait_until("unsubscribe", Duration::from_secs(2), || {
        channels(&mut raw).is_empty()
    });
}

#[test]
fn start_up_refuses_a_bad_url_and_an_unreachable_redis_unless_lazy() {
    let bad = Config::from_json(r#"{"engine": "redis", "redis_url": "http://nope"}"#).unwrap();
    assert!(matches!(Hub::new(bad), Err(Error::InvalidArgument(_))));
    let port = free_port();
    let down = format!(
        r#"{{"engine": "redis", "redis_url": "redis://127.0.0.1:{port}/", "redis_timeout_ms": 300}}"#
    );
    let err = Hub::from_json(&down).unwrap_err();
    assert!(
        matches!(&err, Error::EngineUnavailable(m) if m.contains(&port.to_string())),
        "{err}"
    );
    // Lazy: starts, refuses work while Redis is away, works once it is up.
    let lazy = down.replace("}", r#", "redis_lazy_connect": true}"#);
    let hub = Hub::from_json(&lazy).unwrap();
    let err = hub
        .group_send("room", Kind::Text, &b"x"[..], true)
        .unwrap_err();
    assert!(matches!(err, Error::EngineUnavailable(_)), "{err}");
    assert!(hub.stats().engine_unavailable >= 1);
    let mut server = RedisServer::on_port(port);
    server.spawn();
    let c = hub.open(None, None).unwrap();
    wait_until("lazy join", Duration::from_secs(5), || {
        c.join("room").is_ok()
    });
    hub.group_send("room", Kind::Text, &b"hello"[..], true)
        .unwrap();
    assert_eq!(texts(&recv_n(&c, 1)), vec!["hello"]);
    assert_eq!(hub.stats().engine_connected, 1);
}

#[test]
fn malformed_data_in_redis_is_skipped_and_counted() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let c = a.open(None, None).unwrap();
    c.join("room").unwrap();
    a.group_send("room", Kind::Json, &b"[1]"[..], true).unwrap();
    let mut raw = redis.raw();
    // A foreign writer: bad kind, bad JSON, missing fields.
    let _: String = redis::cmd("XADD")
        .arg("cbx:g:room:log")
        .arg("2-0")
        .arg("k")
        .arg("?")
        .arg("t")
        .arg("1")
        .arg("d")
        .arg("x")
        .query(&mut raw)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("cbx:g:room:log")
        .arg("3-0")
        .arg("k")
        .arg("j")
        .arg("t")
        .arg("1")
        .arg("d")
        .arg("{nope")
        .query(&mut raw)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("cbx:g:room:log")
        .arg("4-0")
        .arg("z")
        .arg("z")
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("cbx:g:room:off")
        .arg("4")
        .query(&mut raw)
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("cbx:c:g:room")
        .arg("garbage")
        .query(&mut raw)
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("cbx:c:g:room")
        .arg("cbx1\nj\n0\n1\n0\n{not json")
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("cbx:g:room:pres")
        .arg("+inf")
        .arg("no-separator")
        .query(&mut raw)
        .unwrap();
    a.group_send("room", Kind::Json, &b"[5]"[..], true).unwrap();
    assert_eq!(texts(&recv_n(&c, 1)), vec!["[1]"]);
    // Offsets 2..4 were never broadcast: the member is told, not left
    // with a silent gap.
    assert_eq!(
        c.recv(Some(Duration::from_secs(5))).unwrap_err(),
        Error::Closed(CloseReason::EngineMissedMessages)
    );
    let page = a.history("room", HistoryQuery::default()).unwrap();
    assert_eq!(offsets(&page.messages), vec![1, 5]);
    assert!(a.presence("room").is_empty());
    let s = a.stats();
    assert_eq!(s.engine_lost_subscription_closes, 1);
    assert!(s.engine_malformed >= 6, "{s:?}");
}

#[test]
fn redis_restarted_under_traffic_clients_get_everything_in_order_or_are_told() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let on_a = a.open(Some("ann"), None).unwrap();
    let on_b = b.open(Some("ben"), None).unwrap();
    on_a.join("room").unwrap();
    on_b.join("room").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (a, stop) = (a.clone(), stop.clone());
        thread::spawn(move || {
            let (mut ok, mut refused) = (0u64, 0u64);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                match a.group_send("room", Kind::Text, format!("m{i}").into_bytes(), true) {
                    Ok(_) => ok += 1,
                    Err(Error::EngineUnavailable(_)) => refused += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
                thread::sleep(Duration::from_millis(2));
            }
            (ok, refused)
        })
    };
    thread::sleep(Duration::from_millis(300));
    let before = a.history("room", HistoryQuery::default()).unwrap();
    redis.kill();
    thread::sleep(Duration::from_millis(300));
    redis.spawn();
    // Both members are told: their connections close with the reason.
    for conn in [&on_a, &on_b] {
        let mut got = Vec::new();
        let reason = loop {
            match conn.recv(Some(Duration::from_secs(5))) {
                Ok(m) => got.push(m),
                Err(Error::Closed(reason)) => break reason,
                Err(e) => panic!("expected a close, got {e}"),
            }
        };
        assert_eq!(reason, CloseReason::EngineLostSubscription);
        // What they did get was in order, without gaps.
        let offs = offsets(&got);
        assert!(offs.windows(2).all(|w| w[1] == w[0] + 1), "{offs:?}");
    }
    // New connections join once the nodes are back; traffic flows again.
    let open = |hub: &Hub, user: &str| {
        let mut conn = None;
        wait_until("open", Duration::from_secs(5), || {
            conn = hub.open(Some(user), None).ok();
            conn.is_some()
        });
        conn.unwrap()
    };
    let again_a = open(&a, "ann");
    let again_b = open(&b, "ben");
    wait_until("rejoin on a", Duration::from_secs(5), || {
        again_a.join("room").is_ok()
    });
    wait_until("rejoin on b", Duration::from_secs(5), || {
        again_b.join("room").is_ok()
    });
    let after_restart = a.history("room", HistoryQuery::default()).unwrap();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, refused) = sender.join().unwrap();
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    let from_a = again_a.pending().0;
    let from_b = again_b.pending().0;
    assert!(from_a > 0 && from_b > 0);
    let mut all_a = Vec::new();
    again_a.try_recv_batch(&mut all_a, usize::MAX).unwrap();
    let mut all_b = Vec::new();
    again_b.try_recv_batch(&mut all_b, usize::MAX).unwrap();
    // They joined at different moments: from the later join on, both saw
    // the same messages, gap-free, in one order.
    let start = all_a[0].offset().max(all_b[0].offset());
    let end = all_a
        .last()
        .unwrap()
        .offset()
        .min(all_b.last().unwrap().offset());
    let window = |all: &[Message]| -> Vec<(u64, String)> {
        all.iter()
            .filter(|m| (start..=end).contains(&m.offset()))
            .map(|m| (m.offset(), m.text().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(window(&all_a), window(&all_b));
    assert_eq!(window(&all_a).len() as u64, end - start + 1);
    // Redis lost its data: the epoch changed, so clients recover from scratch.
    assert_ne!(after_restart.epoch, before.epoch);
    assert!(a.presence("room").contains(&"ben".to_owned()));
    let s = a.stats();
    assert!(s.engine_reconnects >= 1, "{s:?}");
    assert!(s.engine_lost_subscription_closes >= 1, "{s:?}");
    assert!(s.engine_unavailable >= 1, "{s:?}");
}

#[test]
fn sends_while_redis_is_down_fail_fast_with_engine_unavailable() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "a");
    let c = a.open(Some("u"), None).unwrap();
    c.join("room").unwrap();
    redis.kill();
    // The first call may wait for the timeout; later ones fail fast.
    let _ = a.group_send("room", Kind::Text, &b"x"[..], true);
    let t = Instant::now();
    for _ in 0..20 {
        let err = a
            .group_send("room", Kind::Text, &b"x"[..], true)
            .unwrap_err();
        assert!(matches!(err, Error::EngineUnavailable(_)), "{err}");
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(
        a.user_send("u", Kind::Text, &b"x"[..]),
        Err(Error::EngineUnavailable(_))
    ));
    assert!(matches!(
        a.history("room", HistoryQuery::default()),
        Err(Error::EngineUnavailable(_))
    ));
    let other = a.open(None, None).unwrap();
    assert!(matches!(
        other.join("elsewhere"),
        Err(Error::EngineUnavailable(_))
    ));
    assert!(
        !a.groups().contains_key("elsewhere"),
        "a failed join leaves nothing behind"
    );
    assert!(TcpStream::connect(("127.0.0.1", redis.port)).is_err());
}

#[test]
fn the_c_style_json_config_selects_the_engine() {
    let redis = RedisServer::start();
    let json = format!(
        r#"{{"engine": "redis", "redis_url": "{}", "node_name": "n1", "presence_ttl_seconds": 5}}"#,
        redis.url()
    );
    let hub = Hub::from_json(&json).unwrap();
    let c = hub.open(Some("zed"), None).unwrap();
    c.join("g").unwrap();
    let nodes: Vec<String> = {
        thread::sleep(Duration::from_millis(100));
        let mut raw = redis.raw();
        wait_until("heartbeat", Duration::from_secs(3), || {
            let n: Vec<String> = redis::cmd("ZRANGE")
                .arg("cbx:nodes")
                .arg(0)
                .arg(-1)
                .query(&mut raw)
                .unwrap();
            !n.is_empty()
        });
        redis::cmd("ZRANGE")
            .arg("cbx:nodes")
            .arg(0)
            .arg(-1)
            .query(&mut raw)
            .unwrap()
    };
    assert_eq!(nodes, vec!["n1"]);
}

#[test]
fn membership_churn_never_loses_a_message_sent_after_a_join() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let conn = b.open(None, None).unwrap();
    for i in 0..60 {
        conn.join("churn").unwrap();
        let text = format!("m{i}");
        a.group_send("churn", Kind::Text, text.clone().into_bytes(), false)
            .unwrap();
        assert_eq!(texts(&recv_n(&conn, 1)), vec![text]);
        conn.leave("churn").unwrap();
    }
}

#[test]
fn history_ages_out_by_the_hub_clock() {
    let redis = RedisServer::start();
    let clock = Arc::new(channelbox::ManualClock::new(1_000_000));
    let config = config(&redis, "a", r#""history_ttl_seconds": 10"#);
    let a = Hub::with_clock(config, clock.clone()).unwrap();
    a.group_send("room", Kind::Text, &b"old"[..], true).unwrap();
    clock.advance_ms(6_000);
    a.group_send("room", Kind::Text, &b"new"[..], true).unwrap();
    clock.advance_ms(5_000);
    let page = a.history("room", HistoryQuery::default()).unwrap();
    assert_eq!(texts(&page.messages), vec!["new"]);
    assert_eq!((page.first_offset, page.last_offset), (2, 2));
    clock.advance_ms(6_000);
    let page = a.history("room", HistoryQuery::default()).unwrap();
    assert!(page.messages.is_empty());
    assert_eq!((page.first_offset, page.last_offset), (0, 2));
}

#[test]
fn a_lost_offset_counter_never_reuses_an_offset() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    for _ in 0..3 {
        a.group_send("room", Kind::Text, &b"m"[..], true).unwrap();
    }
    let before = a.history("room", HistoryQuery::default()).unwrap();
    let _: () = redis::cmd("DEL")
        .arg("cbx:g:room:off")
        .query(&mut redis.raw())
        .unwrap();
    let report = a
        .group_send_with("room", Kind::Json, true, |id| {
            format!(r#"{{"id":{id}}}"#).into()
        })
        .unwrap();
    assert_eq!(report.offset, 4);
    assert_eq!(
        a.history_get("room", 4).unwrap().text(),
        Some(r#"{"id":4}"#)
    );
    let after = a.history("room", HistoryQuery::default()).unwrap();
    assert_eq!(offsets(&after.messages), vec![1, 2, 3, 4]);
    assert_eq!(after.epoch, before.epoch, "history is intact: same epoch");
}

#[test]
fn async_sends_await_redis_without_blocking_the_executor() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let on_b = b.open(None, None).unwrap();
    on_b.join("room").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Many sends in flight at once on one executor thread.
        let sends: Vec<_> = (0..20)
            .map(|i| {
                a.group_send_with_async("room", Kind::Json, true, move |id| {
                    format!(r#"{{"id":{id},"n":{i}}}"#).into()
                })
            })
            .collect();
        let mut offsets: Vec<u64> = Vec::new();
        for s in sends {
            offsets.push(s.await.unwrap().offset);
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (1..=20).collect::<Vec<u64>>());
        let report = a
            .group_send_async("room", Kind::Text, &b"plain"[..], false)
            .await
            .unwrap();
        assert_eq!(report.offset, 0);
        let err = a
            .group_send_async("room", Kind::Json, &b"{nope"[..], true)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidJson(_)));
        let got = {
            let mut got = Vec::new();
            while got.len() < 21 {
                got.push(on_b.recv_async().await.unwrap());
            }
            got
        };
        for m in &got[..20] {
            let id = format!(r#""id":{}"#, m.offset());
            assert!(m.text().unwrap().contains(&id), "{:?}", m.text());
        }
        assert_eq!(got[20].text(), Some("plain"));
    });
    assert_eq!(a.stats().group_sends, 21);
}

#[test]
fn async_sends_work_the_same_in_memory() {
    let hub = Hub::new(Config::default()).unwrap();
    let c = hub.open(None, None).unwrap();
    c.join("room").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let report = rt
        .block_on(hub.group_send_with_async("room", Kind::Json, true, |id| {
            format!(r#"{{"id":{id}}}"#).into()
        }))
        .unwrap();
    assert_eq!((report.offset, report.delivered), (1, 1));
    assert_eq!(c.recv(None).unwrap().text(), Some(r#"{"id":1}"#));
}

#[test]
fn last_offset_is_shared_by_every_node_and_survives_a_flush() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    assert_eq!(b.last_offset("room").unwrap(), 0, "nothing saved yet");
    for i in 0..3 {
        a.group_send("room", Kind::Text, i.to_string().into_bytes(), true)
            .unwrap();
    }
    a.group_send("room", Kind::Text, &b"unsaved"[..], false)
        .unwrap();
    assert_eq!(b.last_offset("room").unwrap(), 3);
    b.history_flush(Some("room")).unwrap();
    assert_eq!(
        a.last_offset("room").unwrap(),
        3,
        "a flush does not lower it"
    );
    assert_eq!(
        a.history("room", HistoryQuery::default())
            .unwrap()
            .last_offset,
        3,
        "the same as a history read says"
    );
    assert!(matches!(a.last_offset(""), Err(Error::InvalidArgument(_))));
}

#[test]
fn async_history_reads_and_replace_await_redis() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    for i in 1..=3 {
        a.group_send(
            "room",
            Kind::Json,
            format!(r#"{{"n":{i}}}"#).into_bytes(),
            true,
        )
        .unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Several reads in flight at once on one executor thread.
        let (page, entry, last) = (
            b.history_async(
                "room",
                HistoryQuery {
                    since: 1,
                    ..HistoryQuery::default()
                },
            ),
            b.history_get_async("room", 2),
            b.last_offset_async("room"),
        );
        let page = page.await.unwrap();
        assert_eq!(offsets(&page.messages), vec![2, 3]);
        assert_eq!((page.first_offset, page.last_offset), (1, 3));
        assert_eq!(entry.await.unwrap().text(), Some(r#"{"n":2}"#));
        assert_eq!(last.await.unwrap(), 3);
        assert!(matches!(
            b.history_get_async("room", 9).await,
            Err(Error::NoSuchMessage { offset: 9, .. })
        ));
        let edited = b
            .history_replace_async("room", 2, Kind::Json, &br#"{"n":"two"}"#[..])
            .await
            .unwrap();
        assert_eq!(
            (edited.offset(), edited.text()),
            (2, Some(r#"{"n":"two"}"#))
        );
        assert!(matches!(
            b.history_replace_async("room", 9, Kind::Json, &b"{}"[..])
                .await,
            Err(Error::NoSuchMessage { offset: 9, .. })
        ));
        assert!(matches!(
            b.history_replace_async("room", 2, Kind::Json, &b"{nope"[..])
                .await,
            Err(Error::InvalidJson(_))
        ));
    });
    assert_eq!(
        a.history_get("room", 2).unwrap().text(),
        Some(r#"{"n":"two"}"#),
        "every node reads the edit"
    );
}

#[test]
fn async_presence_reads_see_every_node() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let alice = a.open(Some("alice"), None).unwrap();
    alice.join("room").unwrap();
    let _bob = b.open(Some("bob"), None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(b.is_present_async("room", "alice").await, "seen from b");
        assert!(!b.is_present_async("room", "bob").await);
        assert_eq!(b.presence_async("room").await, vec!["alice"]);
        assert_eq!(a.users_async().await, vec!["alice", "bob"]);
    });
}

#[test]
fn async_reads_fail_fast_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "a");
    a.group_send("room", Kind::Text, &b"x"[..], true).unwrap();
    redis.kill();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(matches!(
            a.history_async("room", HistoryQuery::default()).await,
            Err(Error::EngineUnavailable(_))
        ));
        assert!(matches!(
            a.last_offset_async("room").await,
            Err(Error::EngineUnavailable(_))
        ));
    });
    assert!(a.stats().engine_unavailable >= 2);
}
