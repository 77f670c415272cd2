//! The example hub's protocol (PROTOCOL.md), end to end: real WebSocket
//! clients against the server started in-process on 127.0.0.1:0.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn ids(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn join_and_leave_are_saved_and_replayed() {
    let hub = Hub::start().await;
    let mut alice = connect(&hub, "/chat/lobby", &token("alice", "Alice")).await;
    let history = recv_type(&mut alice, "history").await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["type"], "system");
    assert_eq!(messages[0]["message"], "Alice joined the chat");
    assert!(messages[0]["id"].as_u64().unwrap() >= 1);
    assert!(history["epoch"].is_string());

    let mut bob = connect(&hub, "/chat/lobby", &token("bob", "Bob")).await;
    let joined = recv(&mut alice).await;
    assert_eq!(joined["message"], "Bob joined the chat");
    assert!(joined["timestamp"].as_str().unwrap().ends_with('Z'));
    bob.close(None).await.unwrap();
    let left = recv(&mut alice).await;
    assert_eq!(
        (left["type"].as_str(), left["message"].as_str()),
        (Some("system"), Some("Bob left the chat"))
    );

    let mut carol = connect(&hub, "/chat/lobby", &token("carol", "Carol")).await;
    let history = recv_type(&mut carol, "history").await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Alice joined the chat",
            "Bob joined the chat",
            "Bob left the chat",
            "Carol joined the chat"
        ]
    );
    assert_eq!(ids(&history["messages"]), [1, 2, 3, 4]);
    hub.stop().await;
}

#[tokio::test]
async fn history_replays_the_last_50_of_60_in_order() {
    let hub = Hub::start().await;
    let mut alice = connect(&hub, "/chat/r60", &token("alice", "alice")).await;
    recv_type(&mut alice, "history").await;
    for i in 0..60 {
        send(&mut alice, json!({"message": format!("m{i}")})).await;
    }
    for i in 0..60 {
        let m = recv(&mut alice).await;
        assert_eq!(m["content"], format!("m{i}"));
    }
    let mut bob = connect(&hub, "/chat/r60", &token("bob", "bob")).await;
    let history = recv_type(&mut bob, "history").await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 50);
    // 1 = alice's join, 2..=61 the messages, 62 = bob's join (last entry).
    assert_eq!(ids(&history["messages"]), (13..=62).collect::<Vec<u64>>());
    assert_eq!(messages[0]["content"], "m11");
    assert_eq!(messages[48]["content"], "m59");
    assert_eq!(messages[49]["message"], "bob joined the chat");
    hub.stop().await;
}

#[tokio::test]
async fn a_message_reaches_every_member_including_the_sender() {
    let hub = Hub::start().await;
    let mut members = Vec::new();
    for i in 0..5 {
        let mut ws = connect(
            &hub,
            "/chat/all",
            &token(&format!("u{i}"), &format!("user{i}")),
        )
        .await;
        recv_type(&mut ws, "history").await;
        members.push(ws);
    }
    // Drain the join notices of later members.
    for (i, ws) in members.iter_mut().enumerate() {
        for _ in i + 1..5 {
            assert_eq!(recv(ws).await["type"], "system");
        }
    }
    send(
        &mut members[2],
        json!({"message": "hello all", "client_id": "c1"}),
    )
    .await;
    for (i, ws) in members.iter_mut().enumerate() {
        let m = recv(ws).await;
        assert_eq!(m["type"], "message");
        assert_eq!(m["content"], "hello all");
        assert_eq!(m["user"], "user2");
        assert_eq!(m["user_id"], "u2");
        assert_eq!(m["id"], 6);
        if i == 2 {
            let ack = recv(ws).await;
            assert_eq!(ack, json!({"type": "ack", "client_id": "c1", "id": 6}));
        }
    }
    // The typed form works too.
    send(
        &mut members[0],
        json!({"type": "message", "content": "typed"}),
    )
    .await;
    assert_eq!(recv(&mut members[4]).await["content"], "typed");
    hub.stop().await;
}

#[tokio::test]
async fn the_user_in_frames_comes_from_the_token() {
    let hub = Hub::start().await;
    let mut ws = connect(&hub, "/chat/who", &token("sam", "sam")).await;
    recv_type(&mut ws, "history").await;
    send(
        &mut ws,
        json!({"message": "hi", "user": "root", "username": "root"}),
    )
    .await;
    let m = recv(&mut ws).await;
    assert_eq!(m["user"], "sam");
    assert!(
        m.get("user_id").is_none(),
        "user_id is left out when it equals user: {m}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn presence_counts_users_not_tabs() {
    let hub = Hub::start().await;
    let alice_token = token("alice", "Alice");
    let mut watcher = connect(&hub, "/presence", &token("w", "Watcher")).await;
    let users = recv_type(&mut watcher, "users").await;
    assert_eq!(users["count"], 1);
    assert_eq!(recv_type(&mut watcher, "status").await["status"], "online");

    let mut tab1 = connect(&hub, "/presence", &alice_token).await;
    let users = recv_type(&mut tab1, "users").await;
    assert_eq!(users["count"], 2);
    let online = recv(&mut watcher).await;
    assert_eq!(
        (online["user"].as_str(), online["status"].as_str()),
        (Some("Alice"), Some("online"))
    );

    let mut tab2 = connect(&hub, "/presence", &alice_token).await;
    let users = recv_type(&mut tab2, "users").await;
    assert_eq!(
        users["count"], 2,
        "two tabs of one user count once: {users}"
    );
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    assert!(
        quiet(&mut watcher, 300).await,
        "a second tab broadcasts nothing"
    );
    assert_eq!(hub.state.presence.count(), 2);

    // Offline only after the last tab.
    tab1.close(None).await.unwrap();
    assert!(
        quiet(&mut watcher, 300).await,
        "one tab closing is not offline"
    );
    send(&mut tab2, json!({"type": "status", "status": "away"})).await;
    let away = recv(&mut watcher).await;
    assert_eq!(
        (away["user_id"].as_str(), away["status"].as_str()),
        (Some("alice"), Some("away"))
    );
    tab2.close(None).await.unwrap();
    let offline = recv(&mut watcher).await;
    assert_eq!(
        (offline["user"].as_str(), offline["status"].as_str()),
        (Some("Alice"), Some("offline"))
    );
    assert_eq!(hub.state.presence.count(), 1);

    send(&mut watcher, json!({"type": "status", "status": "offline"})).await;
    assert_eq!(recv(&mut watcher).await["code"], "bad_request");
    hub.stop().await;
}

#[tokio::test]
async fn dms_reach_every_dm_socket_of_both_users_and_are_replayed() {
    let hub = Hub::start().await;
    let (alice, bob) = (token("alice", "Alice"), token("bob", "Bob"));
    let mut bob1 = connect(&hub, "/dm/alice", &bob).await;
    let mut bob2 = connect(&hub, "/dm/carol", &bob).await;
    let mut alice1 = connect(&hub, "/dm/bob", &alice).await;
    let mut alice2 = connect(&hub, "/dm/bob", &alice).await;
    for ws in [&mut bob1, &mut bob2, &mut alice1, &mut alice2] {
        assert_eq!(recv_type(ws, "history").await["messages"], json!([]));
    }
    send(&mut alice1, json!({"message": "hi bob"})).await;
    for ws in [&mut bob1, &mut bob2, &mut alice1, &mut alice2] {
        let m = recv(ws).await;
        assert_eq!(m["type"], "direct_message");
        assert_eq!(m["from"], "Alice");
        assert_eq!(m["to"], "bob");
        assert_eq!(m["content"], "hi bob");
        assert_eq!(m["id"], 1);
    }
    send(&mut bob1, json!({"message": "hi alice"})).await;
    assert_eq!(recv(&mut alice2).await["content"], "hi alice");

    // Replayed to both sides, both directions, oldest first.
    for (path, t) in [("/dm/bob", &alice), ("/dm/alice", &bob)] {
        let mut ws = connect(&hub, path, t).await;
        let history = recv_type(&mut ws, "history").await;
        let contents: Vec<&str> = history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents, ["hi bob", "hi alice"]);
    }
    // Carol's conversation with bob is separate.
    let mut carol = connect(&hub, "/dm/bob", &token("carol", "Carol")).await;
    assert_eq!(
        recv_type(&mut carol, "history").await["messages"],
        json!([])
    );
    hub.stop().await;
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401() {
    let hub = Hub::start().await;
    let exp = now() + 3600;
    let header_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"sub": "mallory", "exp": exp}).to_string())
    };
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &json!({"sub": "mallory", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("malformed", Some("not.a.jwt".into())),
        ("garbage", Some("garbage".into())),
        (
            "wrong signature",
            Some(sign(
                &json!({"sub": "mallory", "exp": exp}),
                "another-secret-0123456789abcdef",
            )),
        ),
        ("alg none", Some(format!("{header_none}.{payload}."))),
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
    ];
    for (what, token) in &cases {
        for path in ["/chat/x", "/presence", "/dm/bob"] {
            let result = try_connect(&hub, path, token.as_deref()).await;
            assert_eq!(result.err(), Some(401), "{what} on {path}");
        }
        let q = match token {
            Some(t) => format!("/chat/x?token={t}"),
            None => "/chat/x?token=".into(),
        };
        assert_eq!(
            try_connect(&hub, &q, None).await.err(),
            Some(401),
            "{what} in ?token="
        );
        let (status, _) = match token {
            Some(t) => {
                hub.http_text(
                    "GET",
                    "/stats",
                    &[("authorization", &format!("Bearer {t}"))],
                    "",
                )
                .await
            }
            None => hub.http_text("GET", "/stats", &[], "").await,
        };
        assert_eq!(status, 401, "{what} on /stats");
    }
    // Within the 30 s leeway is fine.
    let recent = sign(&json!({"sub": "late", "exp": now() - 5}), SECRET);
    assert!(try_connect(&hub, "/chat/x", Some(&recent)).await.is_ok());
    hub.stop().await;
}

#[tokio::test]
async fn a_token_works_in_the_header_and_in_the_query() {
    let hub = Hub::start().await;
    let t = token("qq", "Quinn");
    let mut by_header = connect(&hub, "/chat/t", &t).await;
    recv_type(&mut by_header, "history").await;
    let mut by_query = try_connect(&hub, &format!("/chat/t?token={t}"), None)
        .await
        .unwrap();
    let history = recv_type(&mut by_query, "history").await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    let (status, body) = hub
        .http_text("GET", &format!("/stats?token={t}"), &[], "")
        .await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["connections"], 2);
    hub.stop().await;
}

#[tokio::test]
async fn since_recovers_the_exact_gap() {
    let hub = Hub::start().await;
    let t = token("rita", "rita");
    let mut talker = connect(&hub, "/chat/rec", &token("tom", "tom")).await;
    recv_type(&mut talker, "history").await;
    let mut rita = connect(&hub, "/chat/rec", &t).await;
    let history = recv_type(&mut rita, "history").await;
    let epoch = history["epoch"].as_str().unwrap().to_owned();
    send(&mut talker, json!({"message": "one"})).await;
    let last = recv(&mut rita).await["id"].as_u64().unwrap();
    rita.close(None).await.unwrap();
    // Her leave is saved before what follows.
    for _ in 0..10 {
        if recv(&mut talker).await["message"] == "rita left the chat" {
            break;
        }
    }
    for text in ["two", "three"] {
        send(&mut talker, json!({"message": text})).await;
        assert_eq!(recv(&mut talker).await["content"], text);
    }

    let mut rita = connect(&hub, &format!("/chat/rec?since={last}&epoch={epoch}"), &t).await;
    let history = recv_type(&mut rita, "history").await;
    assert_eq!(history["recovered"], true, "{history}");
    let got: Vec<String> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["content"]
                .as_str()
                .or(m["message"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        got,
        ["rita left the chat", "two", "three", "rita joined the chat"]
    );
    assert_eq!(history["messages"][0]["id"].as_u64().unwrap(), last + 1);

    // Another epoch: not recoverable.
    let mut other = connect(&hub, &format!("/chat/rec?since={last}&epoch=12345"), &t).await;
    assert_eq!(recv_type(&mut other, "history").await["recovered"], false);
    hub.stop().await;
}

#[tokio::test]
async fn since_past_the_kept_history_is_not_recovered() {
    let hub = Hub::start_with(|c| {
        c.history_max_messages = 5;
    })
    .await;
    let mut talker = connect(&hub, "/chat/gone", &token("tom", "tom")).await;
    recv_type(&mut talker, "history").await;
    for i in 0..20 {
        send(&mut talker, json!({"message": format!("m{i}")})).await;
    }
    for _ in 0..20 {
        recv(&mut talker).await;
    }
    let mut late = connect(&hub, "/chat/gone?since=2", &token("lee", "lee")).await;
    let history = recv_type(&mut late, "history").await;
    assert_eq!(history["recovered"], false);
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[4]["message"], "lee joined the chat");
    hub.stop().await;
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_socket_stays() {
    let hub = Hub::start().await;
    let mut ws = connect(&hub, "/chat/err", &token("eve", "eve")).await;
    recv_type(&mut ws, "history").await;
    let cases = [
        ("not json", "bad_request"),
        ("[1,2]", "bad_request"),
        (r#"{"type":"fly"}"#, "unknown_type"),
        (r#"{"type":"message"}"#, "bad_request"),
        (r#"{"type":"message","content":7}"#, "bad_request"),
        (r#"{"hello":"world"}"#, "bad_request"),
        (r#"{"type":3}"#, "bad_request"),
    ];
    for (frame, code) in cases {
        ws.send(Message::text(frame)).await.unwrap();
        let e = recv(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame}"
        );
        assert!(e["detail"].is_string());
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(recv(&mut ws).await["code"], "bad_request");
    send(&mut ws, json!({"message": "still here"})).await;
    assert_eq!(recv(&mut ws).await["content"], "still here");
    hub.stop().await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009() {
    let hub = Hub::start_with(|c| {
        c.max_frame_bytes = 1024;
    })
    .await;
    let mut ws = connect(&hub, "/chat/big", &token("bo", "bo")).await;
    recv_type(&mut ws, "history").await;
    let big = "x".repeat(4000);
    send(&mut ws, json!({"message": big})).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    hub.stop().await;
}

#[tokio::test]
async fn a_flood_is_closed_with_4008() {
    let hub = Hub::start_with(|c| {
        c.messages_per_second = 50;
        c.burst = 100;
    })
    .await;
    let mut ws = connect(&hub, "/chat/flood", &token("fl", "fl")).await;
    recv_type(&mut ws, "history").await;
    for i in 0..400 {
        if ws
            .send(Message::text(
                json!({"message": format!("{i}")}).to_string(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(4008));
    let mut other = connect(&hub, "/chat/flood", &token("ok", "ok")).await;
    let history = recv_type(&mut other, "history").await;
    let n = history["messages"].as_array().unwrap().len();
    assert!(n <= 50);
    hub.stop().await;
}

#[tokio::test]
async fn http_endpoints_answer() {
    let hub = Hub::start().await;
    let (status, body) = hub.http_text("GET", "/healthz", &[], "").await;
    assert_eq!((status, body.contains("ok")), (200, true));
    let (status, body) = hub.http_text("GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html"));
    assert_eq!(
        hub.http_text("GET", "/static/js/main.js", &[], "").await.0,
        200
    );
    assert_eq!(
        hub.http_text("GET", "/static/style.css", &[], "").await.0,
        200
    );
    assert_eq!(hub.http_text("GET", "/presences", &[], "").await.0, 404);

    let t = token("ops", "ops");
    let mut ws = connect(&hub, "/chat/m", &t).await;
    recv_type(&mut ws, "history").await;
    send(&mut ws, json!({"message": "count me"})).await;
    recv(&mut ws).await;
    let auth = format!("Bearer {t}");
    let (status, body) = hub
        .http_text("GET", "/stats", &[("authorization", &auth)], "")
        .await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["rooms"], 1);
    assert_eq!(stats["messages"], 1);
    assert!(stats["deliveries"].as_u64().unwrap() >= 2);
    let (status, body) = hub
        .http_text("GET", "/metrics", &[("authorization", &auth)], "")
        .await;
    assert_eq!(status, 200);
    for name in [
        "channelbox_connections 1",
        "channelbox_users_online",
        "channelbox_rooms 1",
        "channelbox_messages_total 1",
        "channelbox_deliveries_total",
        "channelbox_dropped_total",
        "channelbox_slow_consumer_disconnects_total",
        "channelbox_history_bytes",
    ] {
        assert!(body.contains(name), "{name} in {body}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn demo_mode_issues_guest_tokens() {
    let hub = Hub::start_with(|c| c.jwt_secret = None).await;
    let (status, body) = hub
        .http_text(
            "POST",
            "/auth/guest",
            &[("content-type", "application/json")],
            r#"{"username":"Gina"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let t = reply["token"].as_str().unwrap();
    let mut ws = connect(&hub, "/chat/demo", t).await;
    let history = recv_type(&mut ws, "history").await;
    assert_eq!(history["messages"][0]["message"], "Gina joined the chat");
    let (status, _) = hub
        .http_text(
            "POST",
            "/auth/guest",
            &[("content-type", "application/json")],
            r#"{"username":""}"#,
        )
        .await;
    assert_eq!(status, 400);
    hub.stop().await;

    // With a secret, guest login is off unless allowed.
    let hub = Hub::start().await;
    let (status, _) = hub
        .http_text(
            "POST",
            "/auth/guest",
            &[("content-type", "application/json")],
            r#"{"username":"x"}"#,
        )
        .await;
    assert_eq!(status, 403);
    hub.stop().await;
    let hub = Hub::start_with(|c| {
        c.allow_guest = true;
    })
    .await;
    let (status, _) = hub
        .http_text(
            "POST",
            "/auth/guest",
            &[("content-type", "application/json")],
            r#"{"username":"x"}"#,
        )
        .await;
    assert_eq!(status, 200);
    hub.stop().await;
}

#[tokio::test]
async fn pings_are_answered_and_frames_keep_flowing() {
    use futures_util::StreamExt;
    let hub = Hub::start().await;
    let mut ws = connect(&hub, "/chat/ping", &token("pi", "pi")).await;
    recv_type(&mut ws, "history").await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let mut ponged = false;
    for _ in 0..10 {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Pong(p))) => {
                assert_eq!(&p[..], b"are you there");
                ponged = true;
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(ponged);
    send(&mut ws, json!({"message": "after the ping"})).await;
    assert_eq!(recv(&mut ws).await["content"], "after the ping");
    hub.stop().await;
}
