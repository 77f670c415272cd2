//! The server API (`/api/*`, `--api-key`): real HTTP on 127.0.0.1, each
//! call's effect observed on real WebSockets; one case with two hubs on a
//! throw-away Redis.

mod common;

use channelbox_test_support::RedisServer;
use common::Hub;
use serde_json::{json, Value};

const KEY: &str = "backend-key-0123456789";

async fn hub() -> Hub {
    Hub::start_with(|c| c.api_key = Some(KEY.into())).await
}

/// One API call with `Authorization: apikey <key>`: (status, JSON body).
async fn call(hub: &Hub, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(hub, Some(&format!("apikey {KEY}")), method, path, body).await
}

/// One API call with the given `Authorization` (or none).
async fn call_as(
    hub: &Hub,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let raw = body.map(|b| b.to_string()).unwrap_or_default();
    call_raw(hub, authorization, method, path, &raw).await
}

async fn call_raw(
    hub: &Hub,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    raw: &str,
) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    let (status, _, body) = hub.request(method, path, &headers, raw.as_bytes()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn history_contents(page: &Value) -> Vec<&str> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["type"] == "message")
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn without_a_key_every_api_path_is_404() {
    for key in [None, Some(String::new())] {
        let hub = Hub::start_with(|c| c.api_key = key).await;
        let auth = Some("apikey ");
        for (method, path) in [
            ("POST", "/api/publish"),
            ("POST", "/api/dm"),
            ("POST", "/api/disconnect"),
            ("POST", "/api/rooms/lobby/ban"),
            ("GET", "/api/rooms/lobby/history"),
            ("GET", "/api/presence"),
            ("GET", "/api/publish"),
        ] {
            let body = Some(json!({"room": "lobby", "content": "x"}));
            let (status, answer) = call_as(&hub, auth, method, path, body).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
            assert_eq!(answer["error"], "not_found");
        }
        hub.stop().await;
    }
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401_with_a_json_error() {
    let hub = hub().await;
    let user_token = format!("Bearer {}", hub.user("alice"));
    let wrong_scheme = format!("Bearer {KEY}");
    let longer = format!("apikey {KEY}x");
    for auth in [
        None,
        Some("apikey wrong"),
        Some("apikey "),
        Some(longer.as_str()),
        Some(wrong_scheme.as_str()),
        Some(user_token.as_str()),
    ] {
        for (method, path) in [("GET", "/api/presence"), ("POST", "/api/publish")] {
            let body = Some(json!({"room": "lobby", "content": "x"}));
            let (status, answer) = call_as(&hub, auth, method, path, body).await;
            assert_eq!(status, 401, "{auth:?} {path}: {answer}");
            assert_eq!(answer["code"], "unauthorized");
            assert_eq!(answer["error"], "unauthorized");
            assert!(answer["detail"].is_string());
        }
    }
    // Nothing was published by the refused calls.
    let (_, page) = call(&hub, "GET", "/api/rooms/lobby/history", None).await;
    assert_eq!(history_contents(&page), Vec::<&str>::new());
    // The scheme is case-insensitive, as HTTP's are.
    let upper = format!("APIKEY {KEY}");
    let (status, _) = call_as(&hub, Some(&upper), "GET", "/api/presence", None).await;
    assert_eq!(status, 200);
    hub.stop().await;
}

#[tokio::test]
async fn publish_reaches_a_member_and_history_with_the_id_it_returned() {
    let hub = hub().await;
    let (mut alice, _) = hub.join("lobby", &hub.user("alice")).await;
    let body = json!({"room": "lobby", "content": "invoice paid @alice", "user": "billing-bot"});
    let (status, answer) = call(&hub, "POST", "/api/publish", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_u64().expect("id");
    let live = alice
        .expect_where("message", |f| f["content"] == "invoice paid @alice")
        .await;
    // The frame of a chat message, from the name given, mentions listed.
    assert_eq!(live["id"], id);
    assert_eq!(live["user"], "billing-bot");
    assert!(live.get("user_id").is_none(), "{live}");
    assert_eq!(live["mentions"], json!(["alice"]));
    assert!(live["timestamp"].is_string());
    // Saved: the history page and a joiner's history hold the same frame.
    let (status, page) = call(&hub, "GET", "/api/rooms/lobby/history", None).await;
    assert_eq!(status, 200);
    let saved = page["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(saved, live);
    let (_, joined) = hub.join("lobby", &hub.user("bob")).await;
    assert!(common::message_ids(&joined).contains(&id));
    // Counted and indexed like a chat message.
    let messages = hub
        .state
        .counters
        .messages
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(messages, 1);
    alice
        .send(json!({"type": "search", "query": "invoice"}))
        .await;
    let found = alice.expect("search_results").await;
    let ids: Vec<u64> = found["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![id], "{found}");
    hub.stop().await;
}

#[tokio::test]
async fn publish_without_a_user_is_shown_as_system() {
    let hub = hub().await;
    let (mut alice, _) = hub.join("news", &hub.user("alice")).await;
    let body = json!({"room": "news", "content": "maintenance at noon"});
    let (status, answer) = call(&hub, "POST", "/api/publish", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let live = alice.expect("message").await;
    assert_eq!(live["user"], "system");
    assert_eq!(live["id"], answer["id"]);
    hub.stop().await;
}

#[tokio::test]
async fn a_mention_from_the_api_notifies_the_user_on_presence() {
    let hub = hub().await;
    let mut carol = hub.ws("/presence", &hub.user("carol")).await.unwrap();
    carol.expect("users").await;
    let body = json!({"room": "ops", "content": "@carol deploy done", "user": "ci"});
    let (status, answer) = call(&hub, "POST", "/api/publish", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let mention = carol.expect("mention").await;
    assert_eq!(mention["room"], "ops");
    assert_eq!(mention["message_id"], answer["id"]);
    assert_eq!(mention["from"], "ci");
    hub.stop().await;
}

#[tokio::test]
async fn dm_reaches_the_user_and_is_kept_in_the_pairs_history() {
    let hub = hub().await;
    let bob_token = hub.user("bob");
    let mut bob = hub.ws("/dm/alice", &bob_token).await.unwrap();
    bob.expect("history").await;
    let body = json!({"to": "bob", "content": "your order shipped", "from": "shop"});
    let (status, answer) = call(&hub, "POST", "/api/dm", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_u64().expect("id");
    let live = bob.expect("direct_message").await;
    assert_eq!(live["id"], id);
    assert_eq!(live["from"], "shop");
    assert_eq!(live["from_id"], "shop");
    assert_eq!(live["to"], "bob");
    assert_eq!(live["content"], "your order shipped");
    // Kept in the conversation of bob and shop, replayed on connect.
    let mut again = hub.ws("/dm/shop", &bob_token).await.unwrap();
    let history = again.expect("history").await;
    assert_eq!(history["messages"], json!([live]));
    // Without `from` the DM is from `system`.
    let body = json!({"to": "bob", "content": "welcome"});
    let (status, _) = call(&hub, "POST", "/api/dm", Some(body)).await;
    assert_eq!(status, 200);
    let live = bob.expect("direct_message").await;
    assert_eq!(live["from"], "system");
    hub.stop().await;
}

#[tokio::test]
async fn disconnect_closes_every_socket_of_the_user_with_4000() {
    let hub = hub().await;
    let (carol_token, dave_token) = (hub.user("carol"), hub.user("dave"));
    let (mut room, _) = hub.join("lobby", &carol_token).await;
    let mut presence = hub.ws("/presence", &carol_token).await.unwrap();
    presence.expect("users").await;
    let mut dm = hub.ws("/dm/dave", &carol_token).await.unwrap();
    dm.expect("history").await;
    let (mut dave, _) = hub.join("lobby", &dave_token).await;
    let (status, answer) = call(
        &hub,
        "POST",
        "/api/disconnect",
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["closed"], 3);
    for socket in [&mut room, &mut presence, &mut dm] {
        assert_eq!(socket.expect_close().await, Some(4000));
    }
    // Dave stays, and sees carol leave.
    dave.expect_where("system", |f| f["message"] == "carol left the chat")
        .await;
    dave.say("still here").await;
    // A user with no socket: nothing to close.
    let (status, answer) = call(
        &hub,
        "POST",
        "/api/disconnect",
        Some(json!({"user": "nobody"})),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"closed": 0})));
    hub.stop().await;
}

#[tokio::test]
async fn ban_closes_the_user_and_refuses_the_rejoin() {
    let hub = hub().await;
    let eve_token = hub.user("eve");
    let (mut eve, _) = hub.join("market", &eve_token).await;
    let (mut frank, _) = hub.join("market", &hub.user("frank")).await;
    let body = json!({"user": "eve", "duration_s": 3600});
    let (status, answer) = call(&hub, "POST", "/api/rooms/market/ban", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"room": "market", "user": "eve", "duration_s": 3600})
    );
    assert_eq!(eve.expect_close().await, Some(4003));
    let told = frank.expect_where("system", |f| f["action"] == "ban").await;
    assert_eq!(told["user"], "eve");
    assert_eq!(told["by"], "system");
    assert_eq!(told["duration_s"], 3600);
    assert_eq!(hub.ws("/chat/market", &eve_token).await.err(), Some(403));
    // Other rooms still take her.
    hub.join("elsewhere", &eve_token).await;
    // Kept in the hub's state: it holds after a restart.
    drop((eve, frank));
    let hub = hub.restart().await;
    assert_eq!(hub.ws("/chat/market", &eve_token).await.err(), Some(403));
    hub.stop().await;
}

#[tokio::test]
async fn history_pages_back_newest_first_within_bounds() {
    let hub = hub().await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        let body = json!({"room": "log", "content": format!("entry {n}")});
        let (status, answer) = call(&hub, "POST", "/api/publish", Some(body)).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_u64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let page = |q: String| {
        let hub = &hub;
        async move {
            let path = format!("/api/rooms/log/history{q}");
            let (status, page) = call(hub, "GET", &path, None).await;
            assert_eq!(status, 200, "{path}: {page}");
            history_contents(&page)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    let all = page(String::new()).await;
    assert_eq!(all, ["entry 1", "entry 2", "entry 3", "entry 4", "entry 5"]);
    assert_eq!(page("?limit=2".into()).await, ["entry 4", "entry 5"]);
    let older = page(format!("?limit=2&before={}", ids[3])).await;
    assert_eq!(older, ["entry 2", "entry 3"]);
    let first = page(format!("?before={}", ids[1])).await;
    assert_eq!(first, ["entry 1"]);
    assert_eq!(
        page(format!("?before={}", ids[0])).await,
        Vec::<String>::new()
    );
    // A room nobody used has an empty history.
    let (status, empty) = call(&hub, "GET", "/api/rooms/quiet/history", None).await;
    assert_eq!(status, 200);
    assert_eq!(empty["messages"], json!([]));
    hub.stop().await;
}

#[tokio::test]
async fn a_room_only_the_api_writes_to_expires_like_an_idle_room() {
    let hub = Hub::start_with(|c| {
        c.api_key = Some(KEY.into());
        c.idle_room_history_seconds = 1;
    })
    .await;
    let body = json!({"room": "ephemeral", "content": "gone soon"});
    assert_eq!(call(&hub, "POST", "/api/publish", Some(body)).await.0, 200);
    let (_, page) = call(&hub, "GET", "/api/rooms/ephemeral/history", None).await;
    assert_eq!(history_contents(&page), ["gone soon"]);
    // Flushed about a second after the message (the sweep runs every
    // second); at most `WAIT`.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (_, page) = call(&hub, "GET", "/api/rooms/ephemeral/history", None).await;
        if page["messages"] == json!([]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never flushed: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    hub.stop().await;
}

#[tokio::test]
async fn history_limit_is_bounded_to_200() {
    let hub = hub().await;
    for n in 0..205 {
        let body = json!({"room": "busy", "content": format!("m{n}")});
        assert_eq!(call(&hub, "POST", "/api/publish", Some(body)).await.0, 200);
    }
    let (status, page) = call(&hub, "GET", "/api/rooms/busy/history?limit=100000", None).await;
    assert_eq!(status, 200);
    let contents = history_contents(&page);
    assert_eq!(contents.len(), 200);
    assert_eq!(contents.last(), Some(&"m204"));
    hub.stop().await;
}

#[tokio::test]
async fn presence_lists_a_connected_user() {
    let hub = hub().await;
    let (status, answer) = call(&hub, "GET", "/api/presence", None).await;
    assert_eq!((status, answer), (200, json!({"count": 0, "users": []})));
    let token = hub.token("u-42", Some("Grace"), false);
    let mut grace = hub.ws("/presence", &token).await.unwrap();
    grace.expect("users").await;
    grace
        .send(json!({"type": "status", "status": "away"}))
        .await;
    grace
        .expect_where("status", |f| f["status"] == "away")
        .await;
    let (status, answer) = call(&hub, "GET", "/api/presence", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"count": 1, "users": [{"id": "u-42", "username": "Grace", "status": "away"}]})
    );
    grace.close().await;
    hub.stop().await;
}

#[tokio::test]
async fn bad_input_gets_400_404_or_413_with_a_code() {
    let hub = hub().await;
    let key = format!("apikey {KEY}");
    let long_room = json!({"room": "r".repeat(129), "content": "x"}).to_string();
    let long_to = json!({"to": "u".repeat(129), "content": "x"}).to_string();
    let big = json!({"room": "a", "content": "x".repeat(64 * 1024 + 1)}).to_string();
    let huge = json!({"room": "a", "content": "x".repeat(3 << 20)}).to_string();
    let (bad, missing, too_large) = ("bad_request", "not_found", "too_large");
    // (request line, body, status, code)
    let cases: [(&str, &str, u16, &str); 24] = [
        ("POST /api/publish", "not json", 400, bad),
        ("POST /api/publish", "[1,2]", 400, bad),
        ("POST /api/publish", "", 400, bad),
        ("POST /api/publish", r#"{"room":"a"}"#, 400, bad),
        (
            "POST /api/publish",
            r#"{"room":"a","content":""}"#,
            400,
            bad,
        ),
        ("POST /api/publish", r#"{"room":"a","content":7}"#, 400, bad),
        (
            "POST /api/publish",
            r#"{"room":"a","content":"x","colour":"red"}"#,
            400,
            bad,
        ),
        (
            "POST /api/publish",
            r#"{"room":"a","content":"x","user":""}"#,
            400,
            bad,
        ),
        (
            "POST /api/publish",
            r#"{"room":"a","content":"x","user":"a\u0007b"}"#,
            400,
            bad,
        ),
        (
            "POST /api/publish",
            r#"{"room":"","content":"x"}"#,
            404,
            missing,
        ),
        (
            "POST /api/publish",
            r#"{"room":"a/b","content":"x"}"#,
            404,
            missing,
        ),
        ("POST /api/publish", &long_room, 404, missing),
        ("POST /api/publish", &big, 413, too_large),
        ("POST /api/publish", &huge, 413, too_large),
        ("POST /api/dm", r#"{"content":"x"}"#, 400, bad),
        ("POST /api/dm", &long_to, 400, bad),
        ("POST /api/disconnect", "{}", 400, bad),
        ("POST /api/rooms/a/ban", "{}", 400, bad),
        (
            "POST /api/rooms/a/ban",
            r#"{"user":"eve","duration_s":-1}"#,
            400,
            bad,
        ),
        (
            "POST /api/rooms/a/ban",
            r#"{"user":"eve","why":"spam"}"#,
            400,
            bad,
        ),
        ("POST /api/rooms/%01/ban", r#"{"user":"eve"}"#, 404, missing),
        ("GET /api/rooms/a/history?limit=0", "", 400, bad),
        ("GET /api/rooms/a/history?limit=ten", "", 400, bad),
        ("GET /api/rooms/a/history?before=-1", "", 400, bad),
    ];
    for (line, body, status, code) in cases {
        let (method, path) = line.split_once(' ').unwrap();
        let (got, answer) = call_raw(&hub, Some(&key), method, path, body).await;
        let shown = &body[..body.len().min(80)];
        assert_eq!(got, status, "{line} {shown}: {answer}");
        assert_eq!(answer["code"], code, "{line} {shown}: {answer}");
        assert_eq!(answer["error"], code);
        assert!(answer["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // None of it reached a room.
    let (_, page) = call(&hub, "GET", "/api/rooms/a/history", None).await;
    assert_eq!(page["messages"], json!([]));
    hub.stop().await;
}

async fn node(redis: &RedisServer, name: &str) -> Hub {
    Hub::on_redis(redis, name, |c| c.api_key = Some(KEY.into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_publish_and_disconnect_reach_the_other_hub() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let (mut on_b, _) = b.join("shared", &b.user("bob")).await;
    let body = json!({"room": "shared", "content": "from hub a", "user": "backend"});
    let (status, answer) = call(&a, "POST", "/api/publish", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let live = on_b
        .expect_where("message", |f| f["content"] == "from hub a")
        .await;
    assert_eq!(live["id"], answer["id"]);
    assert_eq!(live["user"], "backend");
    // Its history, read through the other hub, has it with the same id.
    let (_, page) = call(&b, "GET", "/api/rooms/shared/history", None).await;
    let saved = page["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(saved, live);
    // A DM sent through hub a reaches bob's /dm socket on hub b.
    let mut dm = b.ws("/dm/x", &b.user("bob")).await.unwrap();
    dm.expect("history").await;
    let body = json!({"to": "bob", "content": "across hubs"});
    let (status, answer) = call(&a, "POST", "/api/dm", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let live = dm.expect("direct_message").await;
    assert_eq!(live["id"], answer["id"]);
    // A disconnect on hub a closes bob's sockets on hub b (none on a).
    let body = json!({"user": "bob"});
    let (status, answer) = call(&a, "POST", "/api/disconnect", Some(body)).await;
    assert_eq!((status, answer), (200, json!({"closed": 0})));
    assert_eq!(on_b.expect_close().await, Some(4000));
    assert_eq!(dm.expect_close().await, Some(4000));
    // And a ban through hub a refuses the rejoin on hub b.
    let body = json!({"user": "bob"});
    let (status, _) = call(&a, "POST", "/api/rooms/shared/ban", Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(b.ws("/chat/shared", &b.user("bob")).await.err(), Some(403));
    a.stop().await;
    b.stop().await;
}

/// What the API publishes and sends moves unread counts as a member's
/// message and a user's DM do: a watcher's `activity` frame and
/// `GET /unread` for the room, and the recipient's DM count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_and_api_dms_count_as_unread() {
    let hub = hub().await;
    // Dana has been in the room (counted from her first visit).
    let (dana_in_room, _) = hub.join("news", &hub.user("dana")).await;
    dana_in_room.close().await;
    let mut watcher = hub.ws("/presence", &hub.user("dana")).await.unwrap();
    watcher.expect("users").await;
    watcher
        .send(json!({"type": "watch_unread", "rooms": ["news"]}))
        .await;
    watcher.expect("watching_unread").await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let body = Some(json!({"room": "news", "content": format!("bulletin {n}")}));
        let (status, answer) = call(&hub, "POST", "/api/publish", body).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_u64().unwrap());
    }
    for id in &ids {
        let f = watcher.expect_where("activity", |f| f["id"] == *id).await;
        assert_eq!(f["room"], "news");
        assert_eq!(f["user"], "system");
    }
    let body = Some(json!({"to": "dana", "content": "your order shipped", "from": "shop"}));
    let (status, answer) = call(&hub, "POST", "/api/dm", body).await;
    assert_eq!(status, 200, "{answer}");
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (status, counts) = hub.json("GET", "/unread", &hub.user("dana"), None).await;
        assert_eq!(status, 200, "{counts}");
        if counts["rooms"]["news"] == 2 && counts["dms"]["shop"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unread never matched: {counts}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    hub.stop().await;
}
