//! The upgrade reads the request head before deciding (issue 11: the room
//! check is awaited, not run in tungstenite's synchronous callback): a head
//! that arrives in pieces is still upgraded, a private room still refused
//! (403), and a head over 16 KiB gets 431.

mod common;

use std::time::Duration;

use common::Hub;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `parts` of a request one after the other (a pause between them)
/// and returns the status line's code.
async fn status_of(hub: &Hub, parts: &[String]) -> u16 {
    let exchange = async {
        let mut s = TcpStream::connect(hub.addr).await.unwrap();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                // Ordering only: the first part is in before the next.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s.write_all(part.as_bytes()).await.unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        // Up to the end of the response head.
        for _ in 0..100 {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        got
    };
    let raw = tokio::time::timeout(common::WAIT, exchange)
        .await
        .expect("an answer");
    let head = String::from_utf8_lossy(&raw);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"))
}

fn upgrade_head(path: &str, token: &str, extra: &str) -> String {
    format!(
        "GET {path}?token={token} HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_head_in_pieces_is_upgraded_and_a_large_one_refused_with_431() {
    let hub = Hub::start().await;
    let head = upgrade_head("/chat/lobby", &hub.user("ann"), "");
    let (first, rest) = head.split_at(head.len() / 2);
    assert_eq!(status_of(&hub, &[first.into(), rest.into()]).await, 101);
    let cookie = format!("Cookie: c={}\r\n", "x".repeat(20 * 1024));
    let large = upgrade_head("/chat/lobby", &hub.user("ann"), &cookie);
    assert_eq!(status_of(&hub, &[large]).await, 431);
    // Under the bound, a long head is fine.
    let cookie = format!("Cookie: c={}\r\n", "x".repeat(8 * 1024));
    let long = upgrade_head("/chat/lobby", &hub.user("ann"), &cookie);
    assert_eq!(status_of(&hub, &[long]).await, 101);
}

#[tokio::test]
async fn a_private_room_is_still_refused_before_the_upgrade() {
    let hub = Hub::start().await;
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &hub.user("olga"),
            Some(json!({"name": "secret", "private": true})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let path = format!("/chat/{}", room["id"].as_str().unwrap());
    let head = upgrade_head(&path, &hub.user("mallory"), "");
    assert_eq!(status_of(&hub, &[head]).await, 403);
    let head = upgrade_head(&path, &hub.user("olga"), "");
    assert_eq!(status_of(&hub, &[head]).await, 101);
}
