//! The HTTP calls the browser client leans on beyond the protocol's base:
//! a file's original name, size and type, and the people picker.

mod common;

use common::Hub;
use serde_json::Value;

#[tokio::test]
async fn an_upload_keeps_its_original_name_and_downloads_under_it() {
    let hub = Hub::start().await;
    let alice = hub.user("alice");
    let text = b"minutes of the meeting\n";
    let (status, _, body) = hub
        .http(
            "POST",
            "/files?name=Meeting%20notes%20%C3%A9t%C3%A9.txt",
            Some(&alice),
            Some("text/plain"),
            text,
        )
        .await;
    assert_eq!(status, 201);
    let file: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(file["name"], "Meeting notes été.txt");
    assert_eq!(file["size"], text.len());
    let id = file["id"].as_str().unwrap();

    let bob = hub.user("bob");
    let (status, meta) = hub
        .json("GET", &format!("/files/{id}/meta"), &bob, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "Meeting notes été.txt");
    assert_eq!(meta["size"], text.len());
    assert_eq!(meta["content_type"], "text/plain");

    let (status, head, body) = hub
        .http("GET", &format!("/files/{id}"), Some(&bob), None, b"")
        .await;
    assert_eq!((status, body.as_slice()), (200, &text[..]));
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains(
            "content-disposition: attachment; filename=\"meeting notes _t_.txt\"; filename*=utf-8''meeting%20notes%20%c3%a9t%c3%a9.txt"
        ),
        "{head}"
    );
    // The meta is for signed-in users only, and only for our own ids.
    assert_eq!(
        hub.http("GET", &format!("/files/{id}/meta"), None, None, b"")
            .await
            .0,
        401
    );
    assert_eq!(
        hub.json("GET", "/files/..%2Fx/meta", &bob, None).await.0,
        404
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_picture_shows_inline_and_a_nameless_upload_is_named_by_its_id() {
    let hub = Hub::start().await;
    let alice = hub.user("alice");
    let (_, _, body) = hub
        .http(
            "POST",
            "/files?name=dot.png",
            Some(&alice),
            Some("image/png"),
            b"png",
        )
        .await;
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, head, _) = hub
        .http("GET", &format!("/files/{id}"), Some(&alice), None, b"")
        .await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-disposition: inline; filename=\"dot.png\""),
        "{head}"
    );
    let (_, _, body) = hub
        .http(
            "POST",
            "/files",
            Some(&alice),
            Some("application/pdf"),
            b"%PDF",
        )
        .await;
    let file: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(file["name"], Value::Null);
    let id = file["id"].as_str().unwrap();
    let (_, head, _) = hub
        .http("GET", &format!("/files/{id}"), Some(&alice), None, b"")
        .await;
    assert!(
        head.contains(&format!("attachment; filename=\"{id}\"")),
        "{head}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_people_picker_lists_known_users_by_name_or_id() {
    let hub = Hub::start().await;
    let bob = hub.token("u-bob", Some("Bob"), false);
    let (_b, _) = hub.join("lobby", &bob).await;
    let carol = hub.token("u-carol", Some("Carol"), false);
    let (_c, _) = hub.join("lobby", &carol).await;
    let alice = hub.user("alice");
    let (status, found) = hub.json("GET", "/users?q=bo", &alice, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        found["users"],
        serde_json::json!([{"id": "u-bob", "username": "Bob"}])
    );
    let (_, found) = hub.json("GET", "/users?q=U-CAR", &alice, None).await;
    assert_eq!(found["users"][0]["id"], "u-carol");
    // Nobody is called that: an id that does not exist is not offered.
    let (_, found) = hub.json("GET", "/users?q=mallory", &alice, None).await;
    assert_eq!(found["users"], serde_json::json!([]));
    // The caller is known from the call itself.
    let (_, found) = hub.json("GET", "/users?q=alice", &alice, None).await;
    assert_eq!(found["users"][0]["id"], "alice");
    assert_eq!(hub.http("GET", "/users?q=bo", None, None, b"").await.0, 401);
    hub.stop().await;
}

/// What the client reads from a mute: the notice names both users by id
/// and carries the length (`duration_s`), which the client shows as "for 5
/// minutes" and counts down from; the muted user's refused message gets an
/// error with a code and a sentence but no expiry, so the client can only
/// count down when it has seen the notice. A mute without a length says
/// the default's; a permanent ban says none.
#[tokio::test]
async fn a_mute_notice_carries_who_by_whom_and_for_how_long() {
    let hub = Hub::start().await;
    let alice = hub.token("u-alice", Some("alice"), false);
    let bob = hub.token("u-bob", Some("bob"), false);
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &alice,
            Some(serde_json::json!({"name": "owned", "private": false, "members": []})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap();
    let (mut a, _) = hub.join(id, &alice).await;
    let (mut b, _) = hub.join(id, &bob).await;
    a.send(serde_json::json!({"type": "mute", "user": "u-bob", "duration_s": 300}))
        .await;
    let notice = b.expect_where("system", |f| f["action"] == "mute").await;
    assert_eq!(notice["user"], "u-bob");
    assert_eq!(notice["by"], "u-alice");
    assert!(
        notice["message"].as_str().unwrap().ends_with(" for 300s"),
        "{notice}"
    );
    assert_eq!(notice["duration_s"], 300);
    assert!(notice["timestamp"].is_string() && notice["id"].is_u64());
    a.send(serde_json::json!({"type": "mute", "user": "u-carol"}))
        .await;
    let notice = b.expect_where("system", |f| f["user"] == "u-carol").await;
    assert_eq!(notice["duration_s"], 600, "{notice}");
    a.send(serde_json::json!({"type": "ban", "user": "u-dave"}))
        .await;
    let notice = b.expect_where("system", |f| f["user"] == "u-dave").await;
    assert!(notice.get("duration_s").is_none(), "{notice}");
    b.send(serde_json::json!({"type": "message", "content": "hello?"}))
        .await;
    let refused = b.expect("error").await;
    assert_eq!(refused["code"], "muted");
    assert!(refused["detail"].is_string(), "{refused}");
    hub.stop().await;
}

/// A guest keeps their identity by renewing their token before it runs
/// out: the same id and name, a later expiry. Other tokens are not renewed.
#[tokio::test]
async fn a_guest_token_is_renewed_as_the_same_guest() {
    let hub = Hub::start_with(|c| c.allow_guest = true).await;
    // A guest token a minute from running out.
    let token = hub.state.auth.mint(&channelbox_hub::auth::Claims {
        sub: "guest-bob-0123456789abcdef".into(),
        username: "bob".into(),
        roles: vec![],
        exp: common::now() + 60,
    });
    let token = token.as_str();
    let old = hub.state.auth.verify(token).unwrap();
    let (status, renewed) = hub.json("POST", "/auth/refresh", token, None).await;
    assert_eq!(status, 200, "{renewed}");
    let new = hub
        .state
        .auth
        .verify(renewed["token"].as_str().unwrap())
        .unwrap();
    assert_eq!((&new.sub, &new.username), (&old.sub, &old.username));
    assert_eq!(renewed["user_id"], old.sub.as_str());
    assert!(
        new.exp >= common::now() + 3600,
        "{} renewed to {}",
        old.exp,
        new.exp
    );
    // Not a guest, or no token: no renewal.
    let alice = hub.user("alice");
    assert_eq!(hub.json("POST", "/auth/refresh", &alice, None).await.0, 403);
    assert_eq!(
        hub.http("POST", "/auth/refresh", None, None, b"").await.0,
        401
    );
    hub.stop().await;
}
