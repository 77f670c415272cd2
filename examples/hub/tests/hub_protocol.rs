//! The example hub's protocol (PROTOCOL.md), end to end: real WebSocket
//! clients against the server started in-process on 127.0.0.1:0.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

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
    // One join saved: the second socket is the same member's (issue 16).
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
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
    // Her socket's close is told live only (closing is not leaving).
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
    // Her close and her return are not saved (she stays a member).
    assert_eq!(got, ["two", "three"]);
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
