//! The base protocol of PROTOCOL.md, written once and run against both
//! servers that speak it: the Rust hub (in-process) and the C chat server
//! (`examples/c-server`, a child process). Each case is a function of a
//! [`Target`]; `both!` makes a `rust_hub` and a `c_server` test of it.
//!
//! Frames are compared byte for byte where PROTOCOL.md fixes them (key
//! order included), with only the timestamp read from the frame.
//! `CBX_VALGRIND=1` runs the C server under valgrind (see `protocol/`).

mod common;
mod protocol;

use common::{now, sign, token, SECRET};
use futures_util::SinkExt;
use protocol::Target;
use serde_json::{json, Value};

/// Runs each case against the Rust hub and against the C server.
macro_rules! both {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rust_hub() {
                let target = super::Target::rust().await;
                super::$case(&target).await;
                target.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn c_server() {
                let Some(target) = super::Target::c().await else { return };
                super::$case(&target).await;
                target.stop().await;
            }
        }
    )*};
}

both!(
    joining_gets_history_then_notices_with_ids,
    history_replays_the_last_50_of_60_in_order,
    messages_reach_every_member_in_one_order,
    presence_lists_users_by_id_with_statuses,
    dms_reach_both_users_and_replay_the_last_50,
    every_bad_token_is_refused_with_401_before_the_upgrade,
    bad_paths_are_404,
    bad_frames_get_an_error_and_the_socket_stays,
    an_oversize_frame_closes_with_1009,
    a_slow_consumer_is_closed_with_4008_while_the_room_flows,
);

/// The `timestamp` of a frame, checked to be ISO 8601 UTC with ms.
fn timestamp(frame: &Value) -> String {
    let ts = frame["timestamp"].as_str().expect("timestamp").to_owned();
    let shape: String = ts
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999Z", "{ts}");
    ts
}

fn system_bytes(id: u64, message: &str, ts: &str) -> String {
    format!(r#"{{"type":"system","id":{id},"message":"{message}","timestamp":"{ts}"}}"#)
}

async fn joining_gets_history_then_notices_with_ids(t: &Target) {
    let mut alice = t.ws("/chat/lobby", &token("alice", "Alice")).await;
    let text = alice.text().await;
    let history: Value = serde_json::from_str(&text).unwrap();
    let epoch = history["epoch"].as_str().expect("epoch is a string");
    let joined = &history["messages"][0];
    assert_eq!(
        text,
        format!(
            r#"{{"type":"history","epoch":"{epoch}","messages":[{}]}}"#,
            system_bytes(1, "Alice joined the chat", &timestamp(joined))
        )
    );

    let mut bob = t.ws("/chat/lobby", &token("bob", "Bob")).await;
    assert_eq!(bob.frame().await["type"], "history");
    let text = alice.text().await;
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        text,
        system_bytes(2, "Bob joined the chat", &timestamp(&frame))
    );
    bob.close().await;
    // The room hears that Bob left. The tutorial's server saves it (id 3);
    // the hub saves only a membership's end, and closing a socket is not
    // leaving: there it is live only, without an id (PROTOCOL.md, Base).
    let left = alice.frame().await;
    let left_id = t.saves_every_notice().then_some(3);
    assert_eq!(
        (&left["type"], left["id"].as_u64(), &left["message"]),
        (&json!("system"), left_id, &json!("Bob left the chat"))
    );
    // Bob's next visit: a join the tutorial saves again; the hub sends it
    // to the others live only (Bob is a member), and Bob gets no copy.
    let mut bob = t.ws("/chat/lobby", &token("bob", "Bob")).await;
    assert_eq!(bob.frame().await["type"], "history");
    let back = alice.frame().await;
    let back_id = t.saves_every_notice().then_some(4);
    assert_eq!(
        (&back["type"], back["id"].as_u64(), &back["message"]),
        (&json!("system"), back_id, &json!("Bob joined the chat"))
    );
    assert!(bob.quiet(200).await);

    let mut carol = t.ws("/chat/lobby", &token("carol", "Carol")).await;
    let history = carol.frame().await;
    let saved: Vec<(u64, &str)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m["message"].as_str().unwrap()))
        .collect();
    let mut want = vec![(1, "Alice joined the chat"), (2, "Bob joined the chat")];
    if t.saves_every_notice() {
        want.extend([(3, "Bob left the chat"), (4, "Bob joined the chat")]);
    }
    want.push((want.len() as u64 + 1, "Carol joined the chat"));
    assert_eq!(saved, want);
    // The joiner's own notice is in its history, not repeated live.
    assert!(carol.quiet(200).await);
}

async fn history_replays_the_last_50_of_60_in_order(t: &Target) {
    let mut alice = t.ws("/chat/r60", &token("alice", "alice")).await;
    alice.frame().await;
    for i in 0..60 {
        alice.send(json!({"message": format!("m{i}")})).await;
    }
    for i in 0..60 {
        assert_eq!(alice.frame().await["content"], format!("m{i}"));
    }
    let mut bob = t.ws("/chat/r60", &token("bob", "bob")).await;
    let history = bob.frame().await;
    let messages = history["messages"].as_array().unwrap();
    // 1 = alice's join, 2..=61 the messages, 62 = bob's join (last entry).
    let ids: Vec<u64> = messages.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (13..=62).collect::<Vec<u64>>());
    assert_eq!(messages[0]["content"], "m11");
    assert_eq!(messages[48]["content"], "m59");
    assert_eq!(messages[49]["message"], "bob joined the chat");
}

async fn messages_reach_every_member_in_one_order(t: &Target) {
    let names = [("u0", "Ann"), ("u1", "u1"), ("u2", "Cy")];
    let mut members = Vec::new();
    for (sub, name) in names {
        let mut ws = t.ws("/chat/all", &token(sub, name)).await;
        assert_eq!(ws.frame().await["type"], "history");
        members.push(ws);
    }
    // Join notices of later members: ids 2 and 3.
    for (i, ws) in members.iter_mut().enumerate() {
        for _ in i + 1..3 {
            assert_eq!(ws.frame().await["type"], "system");
        }
    }
    // Three senders at once; the room's one order is the ids' order.
    for round in 0..5 {
        for (i, ws) in members.iter_mut().enumerate() {
            ws.send(json!({"message": format!("r{round} from {i}")}))
                .await;
        }
    }
    let mut seen: Vec<Vec<String>> = Vec::new();
    for ws in members.iter_mut() {
        let mut texts = Vec::new();
        for expected_id in 4..19u64 {
            let text = ws.text().await;
            let m: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(m["id"], expected_id, "{text}");
            let sender = m["content"].as_str().unwrap().rsplit(' ').next().unwrap();
            let (sub, name) = names[sender.parse::<usize>().unwrap()];
            // `user_id` only when it differs from `user`.
            let user_id = if sub == name {
                String::new()
            } else {
                format!(r#","user_id":"{sub}""#)
            };
            assert_eq!(
                text,
                format!(
                    r#"{{"type":"message","id":{expected_id},"user":"{name}"{user_id},"content":"{}","timestamp":"{}"}}"#,
                    m["content"].as_str().unwrap(),
                    timestamp(&m)
                )
            );
            texts.push(text);
        }
        seen.push(texts);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    // Each sender's own messages keep their order.
    for i in 0..3 {
        let own: Vec<String> = seen[0]
            .iter()
            .map(|t| serde_json::from_str::<Value>(t).unwrap())
            .filter(|m| m["content"].as_str().unwrap().ends_with(&format!(" {i}")))
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..5).map(|r| format!("r{r} from {i}")).collect();
        assert_eq!(own, want);
    }
}

fn status_bytes(frame: &Value, user: &str, user_id: &str, status: &str) -> String {
    format!(
        r#"{{"status":"{status}","timestamp":"{}","type":"status","user":"{user}","user_id":"{user_id}"}}"#,
        timestamp(frame)
    )
}

async fn presence_lists_users_by_id_with_statuses(t: &Target) {
    let alice = token("alice", "Alice");
    let mut watcher = t.ws("/presence", &token("w", "Watcher")).await;
    assert_eq!(
        watcher.text().await,
        r#"{"count":1,"type":"users","users":[{"id":"w","status":"online","username":"Watcher"}]}"#
    );
    // Its own `online` comes after the list.
    let text = watcher.text().await;
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(text, status_bytes(&frame, "Watcher", "w", "online"));

    let mut tab1 = t.ws("/presence", &alice).await;
    assert_eq!(
        tab1.text().await,
        r#"{"count":2,"type":"users","users":[{"id":"alice","status":"online","username":"Alice"},{"id":"w","status":"online","username":"Watcher"}]}"#
    );
    let text = watcher.text().await;
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(text, status_bytes(&frame, "Alice", "alice", "online"));

    // A second tab: counted once, and nobody is told.
    let mut tab2 = t.ws("/presence", &alice).await;
    let users = tab2.frame().await;
    assert_eq!(users["count"], 2, "{users}");
    assert!(watcher.quiet(300).await, "a second tab broadcasts nothing");

    tab2.send(json!({"type": "status", "status": "away"})).await;
    let text = watcher.text().await;
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(text, status_bytes(&frame, "Alice", "alice", "away"));
    let mut late = t.ws("/presence", &token("zed", "Zed")).await;
    let users = late.frame().await;
    assert_eq!(users["count"], 3);
    assert_eq!(users["users"][0]["status"], "away");
    assert_eq!(users["users"][2]["id"], "zed");
    late.close().await;
    assert_eq!(watcher.frame().await["status"], "online"); // zed
    assert_eq!(watcher.frame().await["status"], "offline"); // zed left

    // Offline only after the user's last tab.
    tab1.close().await;
    assert!(watcher.quiet(300).await, "one tab closing is not offline");
    tab2.close().await;
    let text = watcher.text().await;
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(text, status_bytes(&frame, "Alice", "alice", "offline"));

    // Only the hub says offline.
    watcher
        .send(json!({"type": "status", "status": "offline"}))
        .await;
    assert_eq!(
        watcher.text().await,
        r#"{"type":"error","code":"bad_request","detail":"status must be online, away or busy"}"#
    );
}

async fn dms_reach_both_users_and_replay_the_last_50(t: &Target) {
    let (alice, bob) = (token("alice", "Alice"), token("bob", "Bob"));
    let mut bob1 = t.ws("/dm/alice", &bob).await;
    let mut bob2 = t.ws("/dm/carol", &bob).await;
    let mut alice1 = t.ws("/dm/bob", &alice).await;
    let mut alice2 = t.ws("/dm/bob", &alice).await;
    for ws in [&mut bob1, &mut bob2, &mut alice1, &mut alice2] {
        let history = ws.text().await;
        let epoch = serde_json::from_str::<Value>(&history).unwrap()["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            history,
            format!(r#"{{"type":"history","epoch":"{epoch}","messages":[]}}"#)
        );
    }
    alice1.send(json!({"message": "hi bob"})).await;
    // Every /dm socket of both users, whatever peer it names.
    for ws in [&mut bob1, &mut bob2, &mut alice1, &mut alice2] {
        let text = ws.text().await;
        let m: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"type":"direct_message","id":1,"from":"Alice","from_id":"alice","to":"bob","content":"hi bob","timestamp":"{}"}}"#,
                timestamp(&m)
            )
        );
    }
    // 60 more, both ways; the replay is the last 50, oldest first.
    for i in 0..60 {
        let (from, to) = if i % 2 == 0 {
            (&mut bob1, &mut alice1)
        } else {
            (&mut alice1, &mut bob1)
        };
        from.send(json!({"message": format!("d{i}")})).await;
        assert_eq!(to.frame().await["content"], format!("d{i}"));
        assert_eq!(from.frame().await["content"], format!("d{i}"));
    }
    for (path, who) in [("/dm/bob", &alice), ("/dm/alice", &bob)] {
        let mut ws = t.ws(path, who).await;
        let history = ws.frame().await;
        let got: Vec<(u64, &str)> = history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_u64().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let want: Vec<(u64, String)> = (10..60).map(|i| (i as u64 + 2, format!("d{i}"))).collect();
        let want: Vec<(u64, &str)> = want.iter().map(|(id, s)| (*id, s.as_str())).collect();
        assert_eq!(got, want, "{path}");
    }
    // Carol's conversation with bob is another one.
    let mut carol = t.ws("/dm/bob", &token("carol", "Carol")).await;
    assert_eq!(carol.frame().await["messages"], json!([]));
}

async fn every_bad_token_is_refused_with_401_before_the_upgrade(t: &Target) {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = now() + 3600;
    let claims = json!({"sub": "mallory", "exp": exp});
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("malformed", Some("not.a.jwt".into())),
        ("garbage", Some("garbage".into())),
        (
            "wrong signature",
            Some(sign(&claims, "another-secret-0123456789abcdef")),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims)
            )),
        ),
        ("HS384", Some(hs384)),
        (
            "expired",
            Some(sign(&json!({"sub": "mallory", "exp": now() - 120}), SECRET)),
        ),
        (
            "missing exp",
            Some(sign(&json!({"sub": "mallory"}), SECRET)),
        ),
        ("missing sub", Some(sign(&json!({"exp": exp}), SECRET))),
        (
            "empty sub",
            Some(sign(&json!({"sub": "", "exp": exp}), SECRET)),
        ),
        (
            "sub not a string",
            Some(sign(&json!({"sub": 7, "exp": exp}), SECRET)),
        ),
        (
            "exp not a number",
            Some(sign(&json!({"sub": "m", "exp": "tomorrow"}), SECRET)),
        ),
    ];
    for (what, token) in &cases {
        for path in ["/chat/x", "/presence", "/dm/bob"] {
            let refused = t.try_request(path, token.as_deref()).await;
            assert_eq!(refused.err(), Some(401), "{what} on {path}");
            let query = format!("{path}?token={}", token.as_deref().unwrap_or(""));
            let refused = t.try_request(&query, None).await;
            assert_eq!(refused.err(), Some(401), "{what} in ?token= on {path}");
        }
    }
    // Within the 30 s leeway is fine, in the header or the query.
    let recent = sign(&json!({"sub": "late", "exp": now() - 5}), SECRET);
    let mut ws = t.try_request("/chat/x", Some(&recent)).await.unwrap();
    assert_eq!(ws.frame().await["type"], "history");
    let mut ws = t.ws("/chat/x", &recent).await;
    assert_eq!(ws.frame().await["type"], "history");
}

async fn bad_paths_are_404(t: &Target) {
    let ok = token("pat", "pat");
    for path in ["/chat/", "/dm/", "/presence/elsewhere"] {
        assert_eq!(t.try_ws(path, &ok).await.err(), Some(404), "{path}");
    }
    let long = format!("/chat/{}", "r".repeat(129));
    assert_eq!(t.try_ws(&long, &ok).await.err(), Some(404));
    // The token is checked first.
    assert_eq!(t.try_ws("/chat/", "garbage").await.err(), Some(401));
}

async fn bad_frames_get_an_error_and_the_socket_stays(t: &Target) {
    let mut ws = t.ws("/chat/err", &token("eve", "eve")).await;
    ws.frame().await;
    let cases = [
        ("not json", "bad_request", "not JSON"),
        ("[1,2]", "bad_request", "expected a JSON object"),
        (
            r#"{"type":"fly"}"#,
            "unknown_type",
            r#"unknown frame type \"fly\""#,
        ),
        (
            r#"{"type":"message"}"#,
            "bad_request",
            "missing field: content",
        ),
        (
            r#"{"type":"message","content":7}"#,
            "bad_request",
            "content must be a string",
        ),
        (r#"{"message":""}"#, "bad_request", "content is empty"),
        (r#"{"hello":"world"}"#, "bad_request", "missing field: type"),
        (r#"{"type":3}"#, "bad_request", "type must be a string"),
    ];
    for (frame, code, detail) in cases {
        ws.send_text(frame).await;
        assert_eq!(
            ws.text().await,
            format!(r#"{{"type":"error","code":"{code}","detail":"{detail}"}}"#),
            "{frame}"
        );
    }
    ws.ws
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1u8, 2, 3,
        ]))
        .await
        .unwrap();
    assert_eq!(ws.frame().await["code"], "bad_request");
    ws.send(json!({"message": "still here"})).await;
    assert_eq!(ws.frame().await["content"], "still here");
}

async fn an_oversize_frame_closes_with_1009(t: &Target) {
    let mut ws = t.ws("/chat/big", &token("bo", "bo")).await;
    ws.frame().await;
    // Just under the 64 KiB default passes; just over closes.
    let fits = format!(r#"{{"message":"{}"}}"#, "x".repeat(64 * 1024 - 14));
    assert_eq!(fits.len(), 64 * 1024);
    ws.send_text(&fits).await;
    assert_eq!(ws.frame().await["type"], "message");
    ws.send(json!({"message": "x".repeat(100_000)})).await;
    assert_eq!(ws.close_code().await, Some(1009));
}

/// The most a TCP socket's send buffer grows to (tcp_wmem's maximum).
fn send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

/// A client that joins with a tiny receive buffer and then reads nothing.
async fn stuck_client(t: &Target, path: &str, sub: &str) -> protocol::Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(t.addr).await.unwrap();
    let mut request = t
        .url(&format!("{path}?token={}", token(sub, sub)))
        .into_client_request()
        .unwrap();
    request.headers_mut().remove("authorization");
    let (ws, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    protocol::Client { ws }
}

async fn a_slow_consumer_is_closed_with_4008_while_the_room_flows(t: &Target) {
    let mut stuck = stuck_client(t, "/chat/slow", "slowpoke").await;
    let mut reader = t.ws("/chat/slow", &token("fast", "fast")).await;
    reader.frame().await;
    let mut publisher = t.ws("/chat/slow", &token("pub", "pub")).await;
    publisher.frame().await;
    // The stuck one's own join notice may still be on its way (its
    // client returns at the handshake): the reader may hear it first.
    let mut notice = reader.frame().await;
    if notice["message"] == "slowpoke joined the chat" {
        notice = reader.frame().await;
    }
    assert_eq!(notice["message"], "pub joined the chat");
    // More than the stuck socket's kernel send buffer can take (it grows
    // up to tcp_wmem's maximum) plus its 64 KiB queue; the reader gets
    // every message meanwhile, in order.
    let size = 32 * 1024;
    let count = (send_buffer_max() + 2 * protocol::QUEUE_MAX_BYTES) / size + 32;
    // The room hears that the stuck one left when its socket ends.
    let big = "x".repeat(size);
    let mut left = false;
    for i in 0..count {
        publisher
            .send(json!({"message": format!("{i} {big}")}))
            .await;
        for (ws, is_reader) in [(&mut reader, true), (&mut publisher, false)] {
            let mut m = ws.frame().await;
            if m["type"] == "system" {
                assert_eq!(m["message"], "slowpoke left the chat");
                left |= is_reader;
                m = ws.frame().await;
            }
            assert_eq!(m["type"], "message", "{i}");
            assert!(m["content"].as_str().unwrap().starts_with(&format!("{i} ")));
        }
    }
    // The stuck reader reads now: what was in flight, then 4008.
    assert_eq!(stuck.close_code().await, Some(4008));
    if !left {
        let m = reader.frame().await;
        assert_eq!(m["message"], "slowpoke left the chat", "{m}");
    }
}

/// SIGINT with sockets open on every endpoint: the C server closes them,
/// frees everything and exits 0 (under valgrind: no error, no definite
/// leak). The Rust hub's shutdown is `hub_load.rs`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_server_stops_on_sigint_with_sockets_open() {
    let Some(t) = Target::c().await else { return };
    let mut open = Vec::new();
    for (path, sub) in [
        ("/chat/a", "ann"),
        ("/presence", "ann"),
        ("/dm/ann", "bo"),
        ("/chat/a", "bo"),
    ] {
        let mut ws = t.ws(path, &token(sub, sub)).await;
        assert!(matches!(
            ws.frame().await["type"].as_str(),
            Some("history" | "users")
        ));
        open.push(ws);
    }
    open[0]
        .send(json!({"message": "queued for everyone"}))
        .await;
    assert_eq!(open[3].frame().await["content"], "queued for everyone");
    t.stop_with(libc::SIGINT).await;
    drop(open);
}

/// Text that is not UTF-8 is a protocol error libwebsockets closes with
/// 1007 (the Rust hub drops such a socket without a close frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_server_closes_text_that_is_not_utf8_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let Some(t) = Target::c().await else { return };
    let mut ws = t.ws("/chat/utf8", &token("ute", "ute")).await;
    assert_eq!(ws.frame().await["type"], "history");
    let bad = Frame::message(
        &b"{\"message\":\"\xff\xfe\"}"[..],
        OpCode::Data(Data::Text),
        true,
    );
    ws.ws
        .send(tokio_tungstenite::tungstenite::Message::Frame(bad))
        .await
        .unwrap();
    assert_eq!(ws.close_code().await, Some(1007));
    t.stop().await;
}

/// `CHANNELBOX_JWT_SECRET` works as `--jwt-secret` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_server_reads_its_secret_from_the_environment() {
    let Some(t) = Target::c_with_secret_from(protocol::Secret::Env).await else {
        return;
    };
    let mut ws = t.ws("/chat/env", &token("eni", "eni")).await;
    assert_eq!(ws.frame().await["type"], "history");
    let forged = sign(&json!({"sub": "m", "exp": now() + 60}), "not-the-secret");
    assert_eq!(t.try_ws("/chat/env", &forged).await.err(), Some(401));
    t.stop().await;
}

/// Without a secret there is no server (no demo mode): exit status 2.
#[test]
fn the_c_server_refuses_to_start_without_a_secret() {
    let Some(exe) = protocol::c_server_exe() else {
        return;
    };
    let out = std::process::Command::new(exe)
        .args(["--port", "0"])
        .env_remove("CHANNELBOX_JWT_SECRET")
        .output()
        .expect("run chat-server");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a JWT secret is required"));
}
