//! The example hub under load, in-process on loopback: a stuck reader does
//! not hold up a 1000-member room, slow consumers are closed with 4008 and
//! recover, 200 concurrent joins all see what follows, and shutdown closes
//! every socket with 1001. Counts and waits are bounded.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// A client with a tiny receive buffer that joins and then never reads.
async fn stuck_client(hub: &Hub, path: &str, sub: &str) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(hub.addr).await.unwrap();
    let mut request = hub.url(path).into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(sub, sub)).parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    ws
}

/// Reads until every `content` in `0..n` (as "mN") arrived; returns how
/// many did before `deadline`.
async fn read_marks(mut ws: Ws, n: usize, deadline: tokio::time::Instant) -> usize {
    let mut seen = vec![false; n];
    let mut count = 0;
    while count < n {
        let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "message" {
                let i: usize = v["content"].as_str().unwrap()[1..].parse().unwrap();
                if !seen[i] {
                    seen[i] = true;
                    count += 1;
                }
            }
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_reader_does_not_slow_a_1000_member_room() {
    let hub = Hub::start_with(|c| {
        c.messages_per_second = 0;
        c.queue_max_bytes = 64 * 1024;
    })
    .await;
    let _stuck = stuck_client(&hub, "/chat/big", "stuck").await;
    let mut readers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    const MESSAGES: usize = 100;
    for batch in 0..10 {
        let mut joins = Vec::new();
        for i in 0..100 {
            let url = hub.url("/chat/big");
            let t = token(&format!("m{batch}-{i}"), "m");
            joins.push(tokio::spawn(async move {
                let mut request = url.into_client_request().unwrap();
                request
                    .headers_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
                let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
                // Joined once the history frame is here.
                loop {
                    if let Some(Ok(Message::Text(t))) = ws.next().await {
                        if t.contains("\"history\"") {
                            break;
                        }
                    }
                }
                ws
            }));
        }
        for j in joins {
            let ws = tokio::time::timeout(WAIT, j).await.unwrap().unwrap();
            readers.push(tokio::spawn(read_marks(ws, MESSAGES, deadline)));
        }
    }
    let mut publisher = connect(&hub, "/chat/big", &token("pub", "pub")).await;
    recv_type(&mut publisher, "history").await;
    let started = std::time::Instant::now();
    let pad = "p".repeat(900);
    for i in 0..MESSAGES {
        // The padding goes in a field the hub ignores; content stays "mN".
        let frame = json!({"message": format!("m{i}"), "pad": pad});
        publisher
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }
    let mut complete = 0;
    for r in readers {
        if r.await.unwrap() == MESSAGES {
            complete += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(complete, 1000, "every reader got every message");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4008_and_recovers_with_since() {
    // History in memory: the sender must outrun the stuck reader's socket
    // buffers, and with history on disk each ack waits for a commit.
    let hub = Hub::start_with(|c| {
        c.history_store = channelbox_hub::config::HistoryStore::Memory;
        c.messages_per_second = 0;
        c.queue_max_bytes = 64 * 1024;
        c.history_max_bytes = 64 << 20;
    })
    .await;
    let mut stuck = stuck_client(&hub, "/chat/slow", "slowpoke").await;
    let mut reader = connect(&hub, "/chat/slow", &token("fast", "fast")).await;
    recv_type(&mut reader, "history").await;
    let mut publisher = connect(&hub, "/chat/slow", &token("pub", "pub")).await;
    recv_type(&mut publisher, "history").await;
    let big = "x".repeat(8 * 1024);
    let mut last_id = 0;
    for i in 0..600 {
        publisher
            .send(Message::text(
                json!({"message": format!("{i}{big}")}).to_string(),
            ))
            .await
            .unwrap();
        let m = recv_type(&mut reader, "message").await;
        last_id = m["id"].as_u64().unwrap();
        if hub.state.hub.stats().slow_consumer_disconnects > 0 {
            break;
        }
    }
    assert!(
        hub.state.hub.stats().slow_consumer_disconnects >= 1,
        "the stuck reader was cut off"
    );
    // It reads now: what was in flight, then the 4008 close.
    assert_eq!(close_code(&mut stuck).await, Some(4008));
    // And recovers what it missed.
    let mut history = None;
    let mut back = connect(&hub, "/chat/slow?since=3", &token("slowpoke", "slowpoke")).await;
    for _ in 0..10 {
        let v = recv(&mut back).await;
        if v["type"] == "history" {
            history = Some(v);
            break;
        }
    }
    let history = history.unwrap();
    assert_eq!(history["recovered"], true);
    let ids: Vec<u64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&4));
    assert!(ids.contains(&last_id));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_joins_all_see_later_messages() {
    let hub = Hub::start_with(|c| {
        c.messages_per_second = 0;
    })
    .await;
    let mut joins = Vec::new();
    for i in 0..200 {
        let url = hub.url("/chat/crowd");
        let t = token(&format!("c{i}"), &format!("c{i}"));
        joins.push(tokio::spawn(async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            loop {
                if let Some(Ok(Message::Text(t))) = ws.next().await {
                    if t.contains("\"history\"") {
                        break;
                    }
                }
            }
            ws
        }));
    }
    let mut members = Vec::new();
    for j in joins {
        members.push(tokio::time::timeout(WAIT, j).await.unwrap().unwrap());
    }
    assert_eq!(hub.state.hub.presence("room:crowd").len(), 200);
    let mut publisher = connect(&hub, "/chat/crowd", &token("p", "p")).await;
    recv_type(&mut publisher, "history").await;
    for i in 0..3 {
        send(&mut publisher, json!({"message": format!("m{i}")})).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let readers: Vec<_> = members
        .into_iter()
        .map(|ws| tokio::spawn(read_marks(ws, 3, deadline)))
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), 3);
    }
    hub.stop().await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let hub = Hub::start().await;
    let mut chat = connect(&hub, "/chat/bye", &token("a", "a")).await;
    recv_type(&mut chat, "history").await;
    let mut presence = connect(&hub, "/presence", &token("b", "b")).await;
    recv_type(&mut presence, "users").await;
    let mut dm = connect(&hub, "/dm/a", &token("b", "b")).await;
    recv_type(&mut dm, "history").await;
    let addr = hub.addr;
    let stopping = tokio::spawn(hub.stop());
    for ws in [&mut chat, &mut presence, &mut dm] {
        assert_eq!(close_code(ws).await, Some(1001));
    }
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
