//! Rooms REST and moderation over a real hub: private rooms, owners and
//! admins, members, kicks, bans, mutes.

mod common;

use common::Hub;
use serde_json::json;

#[tokio::test]
async fn rooms_are_created_listed_shown_changed_and_deleted() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &olga,
            Some(json!({"name": "Design Review", "private": true, "members": ["bob"]})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(room["name"], "Design Review");
    assert_eq!(room["private"], true);
    assert_eq!(room["owner"], "olga");
    assert_eq!(room["members"], json!(["bob", "olga"]));
    let id = room["id"].as_str().unwrap().to_string();
    assert_eq!(id, "design-review");
    let public = hub
        .create_room(&olga, json!({"name": "Design Review"}))
        .await;
    assert_ne!(public, id, "a taken id gets a suffix");

    let (_, list) = hub.json("GET", "/rooms", &hub.user("bob"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, list) = hub.json("GET", "/rooms", &hub.user("eve"), None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![public.as_str()],
        "private rooms are listed to members only"
    );
    let (_, list) = hub.json("GET", "/rooms", &hub.admin("root"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);

    assert_eq!(
        hub.json("GET", &format!("/rooms/{id}"), &hub.user("bob"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        hub.json("GET", &format!("/rooms/{id}"), &hub.user("eve"), None)
            .await
            .0,
        // Issue 12: a private room is "no such room" to a non-member.
        404
    );
    assert_eq!(hub.json("GET", "/rooms/nope", &olga, None).await.0, 404);

    let path = format!("/rooms/{id}");
    assert_eq!(
        hub.json("PATCH", &path, &hub.user("bob"), Some(json!({"name": "x"})))
            .await
            .0,
        403
    );
    let (status, room) = hub
        .json(
            "PATCH",
            &path,
            &olga,
            Some(json!({"name": "Renamed", "private": false})),
        )
        .await;
    assert_eq!(
        (status, room["name"].as_str(), room["private"].as_bool()),
        (200, Some("Renamed"), Some(false))
    );
    let (status, _) = hub
        .json(
            "PATCH",
            &path,
            &hub.admin("root"),
            Some(json!({"private": true})),
        )
        .await;
    assert_eq!(status, 200, "admins change any room");
    assert_eq!(
        hub.json("PATCH", "/rooms/nope", &olga, Some(json!({"name": "x"})))
            .await
            .0,
        404
    );
    assert_eq!(
        hub.json("PATCH", &path, &olga, Some(json!({"name": 3})))
            .await
            .0,
        400
    );

    let members = format!("/rooms/{id}/members");
    let (status, room) = hub
        .json(
            "POST",
            &members,
            &olga,
            Some(json!({"add": ["carol"], "remove": ["bob"]})),
        )
        .await;
    assert_eq!(
        (status, room["members"].clone()),
        (200, json!(["carol", "olga"]))
    );
    assert_eq!(
        hub.json(
            "POST",
            &members,
            &hub.user("carol"),
            Some(json!({"add": ["eve"]}))
        )
        .await
        .0,
        403
    );

    assert_eq!(
        hub.json("DELETE", &path, &hub.user("carol"), None).await.0,
        403
    );
    assert_eq!(hub.json("DELETE", &path, &olga, None).await.0, 204);
    assert_eq!(hub.json("GET", &path, &olga, None).await.0, 404);
    assert_eq!(hub.json("DELETE", &path, &olga, None).await.0, 404);
    assert_eq!(hub.http("GET", "/rooms", None, None, b"").await.0, 401);
    hub.stop().await;
}

#[tokio::test]
async fn a_private_room_admits_members_and_admins_only() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub
        .create_room(
            &olga,
            json!({"name": "Secret", "private": true, "members": ["bob"]}),
        )
        .await;
    let path = format!("/chat/{id}");
    assert!(hub.ws(&path, &olga).await.is_ok());
    assert!(hub.ws(&path, &hub.user("bob")).await.is_ok());
    assert!(hub.ws(&path, &hub.admin("root")).await.is_ok());
    assert_eq!(hub.ws(&path, &hub.user("eve")).await.err(), Some(403));
    // Rooms never created are open to all.
    assert!(hub
        .ws("/chat/anything-goes", &hub.user("eve"))
        .await
        .is_ok());
    hub.stop().await;
}

#[tokio::test]
async fn a_member_removed_while_connected_is_closed_with_4003() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub
        .create_room(
            &olga,
            json!({"name": "Secret", "private": true, "members": ["bob"]}),
        )
        .await;
    let (mut bob, _) = hub.join(&id, &hub.user("bob")).await;
    let (mut o, _) = hub.join(&id, &olga).await;
    let (status, _) = hub
        .json(
            "POST",
            &format!("/rooms/{id}/members"),
            &olga,
            Some(json!({"remove": ["bob"]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.expect_close().await, Some(4003));
    o.say("olga is still here").await;
    assert_eq!(
        hub.ws(&format!("/chat/{id}"), &hub.user("bob")).await.err(),
        Some(403)
    );
    hub.stop().await;
}

#[tokio::test]
async fn kick_closes_the_target_and_tells_the_room() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub.create_room(&olga, json!({"name": "Ops"})).await;
    let (mut o, _) = hub.join(&id, &olga).await;
    let (mut bob, _) = hub.join(&id, &hub.user("bob")).await;
    let (mut carol, _) = hub.join(&id, &hub.user("carol")).await;
    carol.send(json!({"type": "kick", "user": "bob"})).await;
    assert_eq!(carol.expect("error").await["code"], "forbidden");
    o.send(json!({"type": "kick", "user": "bob"})).await;
    assert_eq!(bob.expect_close().await, Some(4000));
    let notice = carol
        .expect_where("system", |f| f["action"] == "kick")
        .await;
    assert_eq!(notice["user"], "bob");
    assert!(notice["id"].as_u64().is_some(), "the notice is saved");
    // A kick is not a ban.
    assert!(hub
        .ws(&format!("/chat/{id}"), &hub.user("bob"))
        .await
        .is_ok());
    hub.stop().await;
}

#[tokio::test]
async fn ban_closes_with_4003_and_refuses_joins_until_unban() {
    let hub = Hub::start().await;
    let (mut admin, _) = hub.join("lobby", &hub.admin("root")).await;
    let (mut bob, _) = hub.join("lobby", &hub.user("bob")).await;
    let (mut carol, _) = hub.join("lobby", &hub.user("carol")).await;
    admin.send(json!({"type": "ban", "user": "bob"})).await;
    assert_eq!(bob.expect_close().await, Some(4003));
    let notice = carol.expect_where("system", |f| f["action"] == "ban").await;
    assert_eq!(notice["user"], "bob");
    assert_eq!(
        hub.ws("/chat/lobby", &hub.user("bob")).await.err(),
        Some(403)
    );
    assert!(
        hub.ws("/chat/elsewhere", &hub.user("bob")).await.is_ok(),
        "bans are per room"
    );
    // Search skips rooms the caller is banned from.
    carol.say("findable words").await;
    let (mut bob_else, _) = hub.join("elsewhere", &hub.user("bob")).await;
    bob_else
        .send(json!({"type": "search", "query": "findable"}))
        .await;
    assert_eq!(
        bob_else.expect("search_results").await["messages"],
        json!([])
    );
    admin.send(json!({"type": "unban", "user": "bob"})).await;
    carol
        .expect_where("system", |f| f["action"] == "unban")
        .await;
    assert!(hub.ws("/chat/lobby", &hub.user("bob")).await.is_ok());
    hub.stop().await;
}

#[tokio::test]
async fn a_ban_with_a_duration_runs_out() {
    let hub = Hub::start().await;
    let (mut admin, _) = hub.join("lobby", &hub.admin("root")).await;
    admin
        .send(json!({"type": "ban", "user": "bob", "duration_s": 1}))
        .await;
    admin.expect_where("system", |f| f["action"] == "ban").await;
    assert_eq!(
        hub.ws("/chat/lobby", &hub.user("bob")).await.err(),
        Some(403)
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(hub.ws("/chat/lobby", &hub.user("bob")).await.is_ok());
    hub.stop().await;
}

#[tokio::test]
async fn a_muted_user_cannot_post_until_unbanned() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub.create_room(&olga, json!({"name": "Quiet"})).await;
    let (mut o, _) = hub.join(&id, &olga).await;
    let (mut bob, _) = hub.join(&id, &hub.user("bob")).await;
    let earlier = bob.say("before the mute").await;
    o.send(json!({"type": "mute", "user": "bob", "duration_s": 60}))
        .await;
    let notice = bob.expect_where("system", |f| f["action"] == "mute").await;
    assert_eq!(notice["user"], "bob");
    bob.send(json!({"type": "message", "content": "can I talk?"}))
        .await;
    assert_eq!(bob.expect("error").await["code"], "muted");
    bob.send(json!({"type": "edit", "message_id": earlier, "content": "sneaky"}))
        .await;
    assert_eq!(bob.expect("error").await["code"], "muted");
    o.send(json!({"type": "unban", "user": "bob"})).await;
    bob.expect_where("system", |f| f["action"] == "unban").await;
    bob.say("I can talk").await;
    o.send(json!({"type": "mute", "user": "bob", "duration_s": -3}))
        .await;
    assert_eq!(o.expect("error").await["code"], "bad_request");
    hub.stop().await;
}

#[tokio::test]
async fn making_a_room_private_closes_non_members() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub
        .create_room(&olga, json!({"name": "Open", "members": ["bob"]}))
        .await;
    let (mut bob, _) = hub.join(&id, &hub.user("bob")).await;
    let (mut eve, _) = hub.join(&id, &hub.user("eve")).await;
    let (status, _) = hub
        .json(
            "PATCH",
            &format!("/rooms/{id}"),
            &olga,
            Some(json!({"private": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(eve.expect_close().await, Some(4003));
    bob.say("members stay").await;
    hub.stop().await;
}

#[tokio::test]
async fn deleting_a_room_forgets_what_was_said_in_it() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub
        .create_room(&olga, json!({"name": "Temp", "private": true}))
        .await;
    let (mut o, _) = hub.join(&id, &olga).await;
    o.say("confidential words").await;
    let (status, _) = hub
        .json("DELETE", &format!("/rooms/{id}"), &olga, None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(o.expect_close().await, Some(4003));
    // The id is an open room again, with nothing of the old one in it.
    let (mut eve, history) = hub.join(&id, &hub.user("eve")).await;
    assert!(!history.to_string().contains("confidential"), "{history}");
    eve.send(json!({"type": "search", "query": "confidential"}))
        .await;
    assert_eq!(eve.expect("search_results").await["messages"], json!([]));
    hub.stop().await;
}

#[tokio::test]
async fn creating_a_room_never_takes_over_an_open_one() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("general", &hub.user("alice")).await;
    a.say("this room was here first").await;
    let id = hub
        .create_room(
            &hub.user("mallory"),
            json!({"name": "General", "private": true}),
        )
        .await;
    assert_ne!(id, "general");
    assert!(id.starts_with("general-"), "{id}");
    assert!(hub.ws("/chat/general", &hub.user("bob")).await.is_ok());
    hub.stop().await;
}

#[tokio::test]
async fn rooms_survive_a_restart() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub
        .create_room(
            &olga,
            json!({"name": "Vault", "private": true, "members": ["bob"]}),
        )
        .await;
    let hub = hub.restart().await;
    let (status, room) = hub
        .json("GET", &format!("/rooms/{id}"), &hub.user("bob"), None)
        .await;
    assert_eq!(
        (status, room["private"].as_bool()),
        (200, Some(true)),
        "{room}"
    );
    assert_eq!(
        hub.ws(&format!("/chat/{id}"), &hub.user("eve")).await.err(),
        Some(403)
    );
    assert!(hub
        .ws(&format!("/chat/{id}"), &hub.user("bob"))
        .await
        .is_ok());
    hub.stop().await;
}

#[tokio::test]
async fn stats_and_metrics_name_a_private_room_only_to_those_who_may_read_it() {
    let hub = Hub::start().await;
    let olga = hub.user("olga");
    let id = hub
        .create_room(
            &olga,
            json!({"name": "Secret plans", "private": true, "members": ["bob"]}),
        )
        .await;
    let (mut o, _) = hub.join(&id, &olga).await;
    o.say("the plan").await;
    let (_open, _) = hub.join("lobby", &hub.user("eve")).await;
    for (token, sees) in [
        (olga.clone(), true),
        (hub.user("bob"), true),
        (hub.admin("root"), true),
        (hub.user("eve"), false),
    ] {
        let (status, stats) = hub.json("GET", "/stats", &token, None).await;
        assert_eq!(status, 200);
        assert_eq!(stats["per_room"].get(&id).is_some(), sees, "{stats}");
        assert!(stats["per_room"].get("lobby").is_some(), "{stats}");
        let top_names_it = stats["top_rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["room"] == id.as_str());
        assert_eq!(top_names_it, sees, "{stats}");
        let (status, _, body) = hub.http("GET", "/metrics", Some(&token), None, b"").await;
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text.contains(&format!("room=\"{id}\"")), sees, "{text}");
    }
    hub.stop().await;
}
