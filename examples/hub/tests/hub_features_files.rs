//! Files and analytics over a real hub.

mod common;

use common::Hub;
use serde_json::Value;

#[tokio::test]
async fn an_upload_comes_back_with_its_content_type() {
    let hub = Hub::start().await;
    let alice = hub.user("alice");
    let png = b"\x89PNG\r\n\x1a\nnot really";
    let (status, _, body) = hub
        .http("POST", "/files", Some(&alice), Some("image/png"), png)
        .await;
    assert_eq!(status, 201);
    let file: Value = serde_json::from_slice(&body).unwrap();
    let id = file["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(file["url"], format!("/files/{id}"));
    // Any signed-in user, by header or ?token=.
    let bob = hub.user("bob");
    let (status, head, body) = hub
        .http("GET", &format!("/files/{id}"), Some(&bob), None, b"")
        .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/png"),
        "{head}"
    );
    assert_eq!(body, png);
    let (status, _, body) = hub
        .http("GET", &format!("/files/{id}?token={bob}"), None, None, b"")
        .await;
    assert_eq!((status, body.as_slice()), (200, &png[..]));
    assert_eq!(
        hub.http("GET", &format!("/files/{id}"), None, None, b"")
            .await
            .0,
        401
    );
    hub.stop().await;
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_with_413() {
    let hub = Hub::start_with(|c| c.max_file_bytes = 1000).await;
    let alice = hub.user("alice");
    let (status, _, _) = hub
        .http(
            "POST",
            "/files",
            Some(&alice),
            Some("text/plain"),
            &[b'a'; 1001],
        )
        .await;
    assert_eq!(status, 413);
    let (status, _, _) = hub
        .http(
            "POST",
            "/files",
            Some(&alice),
            Some("text/plain"),
            &[b'a'; 1000],
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(hub.http("POST", "/files", None, None, b"x").await.0, 401);
    hub.stop().await;
}

#[tokio::test]
async fn file_ids_never_reach_the_filesystem_unless_generated() {
    let hub = Hub::start().await;
    let alice = hub.user("alice");
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "00000000000000000000000000000000",
        "ABCDEF",
        "x",
    ] {
        let (status, _, _) = hub
            .http("GET", &format!("/files/{id}"), Some(&alice), None, b"")
            .await;
        assert_eq!(status, 404, "{id}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn stats_and_metrics_count_messages_and_deliveries_per_room() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("busy", &hub.user("alice")).await;
    let (_b, _) = hub.join("busy", &hub.user("bob")).await;
    let (mut c, _) = hub.join("calm", &hub.user("carol")).await;
    for i in 0..3 {
        a.say(&format!("m{i}")).await;
    }
    c.say("hello").await;
    let (status, stats) = hub.json("GET", "/stats", &hub.user("alice"), None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["per_room"]["busy"]["messages"], 3);
    assert_eq!(stats["per_room"]["busy"]["deliveries"], 6);
    assert_eq!(stats["per_room"]["calm"]["messages"], 1);
    assert_eq!(stats["per_room"]["busy"]["connections"], 2);
    let minutes = stats["per_minute"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    assert_eq!(
        minutes[59]["messages"].as_u64().unwrap() + minutes[58]["messages"].as_u64().unwrap(),
        4
    );
    assert_eq!(stats["messages_last_hour"], 4);
    assert_eq!(stats["top_rooms"][0]["room"], "busy");
    let (status, _, body) = hub
        .http("GET", "/metrics", Some(&hub.user("alice")), None, b"")
        .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("channelbox_room_messages_total{room=\"busy\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("channelbox_room_deliveries_total{room=\"busy\"} 6"),
        "{text}"
    );
    hub.stop().await;
}
