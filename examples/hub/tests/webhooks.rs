//! Signed webhooks (`--webhook-url`, `--webhook-secret`), against a real
//! receiver the test starts on 127.0.0.1: every body's signature is checked
//! with the receiver's secret, each event type is triggered over real
//! WebSockets and HTTP and arrives with its data, retries and give-ups are
//! counted in `/metrics`, a stuck or dead endpoint leaves chat flowing, a
//! full queue drops and counts, with two hubs on Redis each fact is posted
//! once and "offline" means on no hub, the server API's paths post too, and
//! the hub binary takes its flags and environment.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use channelbox_test_support::RedisServer;
use common::{Hub, WAIT};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;

const HOOK_SECRET: &str = "webhook-secret-for-tests";

/// What the receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    /// This status.
    Status(u16),
    /// Never: holds the request open.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    /// The body, parsed.
    event: Value,
    /// The signature header matched the receiver's own HMAC of the body.
    signed: bool,
    content_type: String,
    id_header: String,
    event_header: String,
    at: Instant,
}

struct Inner {
    secret: String,
    /// Answers to give in order; the last one repeats.
    answers: Mutex<VecDeque<Answer>>,
    got: Mutex<Vec<Received>>,
    arrived: tokio::sync::Notify,
}

/// A webhook receiver on 127.0.0.1 that checks every signature.
struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    async fn start(secret: &str, answers: &[Answer]) -> Receiver {
        let inner = Arc::new(Inner {
            secret: secret.to_owned(),
            answers: Mutex::new(answers.iter().copied().collect()),
            got: Mutex::default(),
            arrived: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.inner.got.lock().clone()
    }

    /// Waits (bounded) until a request matches `pred`; returns it.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let arrived = self.inner.arrived.notified();
            if let Some(r) = self.got().into_iter().find(&pred) {
                return r;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("no webhook {what} in time; got {:#?}", self.got());
            }
        }
    }

    /// Waits for an event named `name` whose data matches `pred`.
    async fn event(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Received {
        self.wait_for(name, |r| r.event["event"] == name && pred(&r.event["data"]))
            .await
    }

    fn count(&self, name: &str) -> usize {
        self.got()
            .iter()
            .filter(|r| r.event["event"] == name)
            .count()
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signature = header("x-channelbox-signature");
    let mut mac = Hmac::<Sha256>::new_from_slice(inner.secret.as_bytes()).unwrap();
    mac.update(&body);
    let signed = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|raw| mac.verify_slice(&raw).is_ok());
    inner.got.lock().push(Received {
        event: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed,
        content_type: header("content-type"),
        id_header: header("x-channelbox-event-id"),
        event_header: header("x-channelbox-event"),
        at: Instant::now(),
    });
    inner.arrived.notify_waiters();
    let answer = {
        let mut answers = inner.answers.lock();
        if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().copied().unwrap_or(Answer::Status(200))
        }
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// A hub posting to `url`, signed with `secret`, as `change` leaves it.
async fn hub_posting_to(
    url: &str,
    secret: &str,
    change: impl FnOnce(&mut channelbox_hub::Config),
) -> Hub {
    let (url, secret) = (url.to_owned(), secret.to_owned());
    Hub::start_with(move |c| {
        c.webhook_url = Some(url);
        c.webhook_secret = Some(secret);
        change(c);
    })
    .await
}

/// A URL nothing listens on.
async fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

/// `/metrics` as text, with an admin token.
async fn metrics(hub: &Hub) -> String {
    let token = hub.admin("ops");
    let (status, text) = hub
        .http_text(
            "GET",
            "/metrics",
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(status, 200);
    text
}

/// The value of `channelbox_<name>` in `/metrics`.
async fn metric(hub: &Hub, name: &str) -> u64 {
    let text = metrics(hub).await;
    let prefix = format!("channelbox_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Polls `/metrics` until `name` reaches `want` (bounded by [`WAIT`]).
async fn metric_reaches(hub: &Hub, name: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = metric(hub, name).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a DM on `dm` and returns its id from the `ack`.
async fn dm(dm: &mut common::Client, content: &str) -> u64 {
    dm.say(content).await
}

#[tokio::test]
async fn every_event_type_arrives_signed_with_its_data() {
    let receiver = Receiver::start(HOOK_SECRET, &[Answer::Status(200)]).await;
    let hub = hub_posting_to(&receiver.url(), HOOK_SECRET, |_| {}).await;
    let alice = hub.user("alice");

    // room.created, from POST /rooms.
    let (status, room) = hub
        .json(
            "POST",
            "/rooms",
            &alice,
            Some(json!({"name": "Plans", "private": true, "members": ["bob"]})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().unwrap().to_owned();
    let created = receiver
        .event("room.created", |d| d["room"] == room_id.as_str())
        .await;
    assert_eq!(
        created.event["data"],
        json!({"room": room_id, "name": "Plans", "private": true, "owner": "alice",
               "members": ["alice", "bob"]})
    );

    // dm.offline: bob has no connection at all.
    let mut alice_dm = hub.ws("/dm/bob", &alice).await.unwrap();
    alice_dm.expect("history").await;
    let id = dm(&mut alice_dm, "are you there, bob?").await;
    let offline = receiver
        .event("dm.offline", |d| d["message_id"] == id)
        .await;
    assert_eq!(
        offline.event["data"],
        json!({"from": "alice", "from_name": "alice", "to": "bob", "message_id": id,
               "preview": "are you there, bob?", "attachments": []})
    );
    // A file: the event lists it.
    let (status, _, raw) = hub
        .http(
            "POST",
            "/files?name=pic.png&dm=bob",
            Some(&alice),
            Some("image/png"),
            b"\x89PNG\r\n\x1a\nhi",
        )
        .await;
    assert_eq!(status, 201);
    let file: Value = serde_json::from_slice(&raw).unwrap();
    let id = alice_dm
        .say_with(
            json!({"type": "message", "content": "see attached", "attachments": [file["id"]]}),
        )
        .await;
    let offline = receiver
        .event("dm.offline", |d| d["message_id"] == id)
        .await;
    assert_eq!(offline.event["data"]["attachments"], json!([file["id"]]));
    assert_eq!(offline.event["data"]["preview"], "see attached");
    // Once bob is connected (any socket), a DM to him is no webhook.
    let bob = hub.user("bob");
    let mut bob_presence = hub.ws("/presence", &bob).await.unwrap();
    bob_presence.expect("users").await;
    dm(&mut alice_dm, "ah, there you are").await;
    bob_presence.close().await;

    // mention.offline: carol is known (she was in the lobby) and gone;
    // dave is online on /presence.
    let (carol_chat, _) = hub.join("lobby", &hub.user("carol")).await;
    carol_chat.close().await;
    let mut dave_presence = hub.ws("/presence", &hub.user("dave")).await.unwrap();
    dave_presence.expect("users").await;
    let (mut lobby, _) = hub.join("lobby", &alice).await;
    let id = lobby.say("@dave @carol standup in 5").await;
    let mention = receiver
        .event("mention.offline", |d| d["message_id"] == id)
        .await;
    assert_eq!(
        mention.event["data"],
        json!({"room": "lobby", "message_id": id, "from": "alice", "from_name": "alice",
               "user": "carol", "preview": "@dave @carol standup in 5"})
    );

    // user.banned: alice owns her room and bans mallory for a minute.
    let (mut own, _) = hub.join(&room_id, &alice).await;
    let before = common::now() * 1000;
    own.send(json!({"type": "ban", "user": "mallory", "duration_s": 60}))
        .await;
    let banned = receiver
        .event("user.banned", |d| d["user"] == "mallory")
        .await;
    let data = &banned.event["data"];
    assert_eq!(
        (data["room"].as_str(), data["by"].as_str()),
        (Some(room_id.as_str()), Some("alice"))
    );
    assert_eq!(data["duration_s"], 60);
    let until = data["until"].as_u64().unwrap();
    assert_eq!(until, banned.event["ts"].as_u64().unwrap() + 60_000);
    assert!(
        until >= before + 60_000 && until <= before + 70_000,
        "{data}"
    );
    // A ban without a duration lasts until lifted.
    own.send(json!({"type": "ban", "user": "eve"})).await;
    let banned = receiver.event("user.banned", |d| d["user"] == "eve").await;
    assert_eq!(
        banned.event["data"],
        json!({"room": room_id, "user": "eve", "by": "alice", "until": null, "duration_s": null})
    );
    // A marker after everything above: the mention loop and the second DM
    // are done by now, and neither dave nor the online bob got an event.
    lobby.say("@carol again").await;
    receiver
        .event("mention.offline", |d| d["preview"] == "@carol again")
        .await;

    let got = receiver.got();
    assert_eq!(receiver.count("dm.offline"), 2, "{got:#?}");
    assert_eq!(receiver.count("mention.offline"), 2, "{got:#?}");
    assert!(got.iter().all(|r| r.event["data"]["user"] != "dave"));
    let node = hub.state.store.node.clone();
    for r in &got {
        assert!(r.signed, "signature checks: {r:?}");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.id_header, r.event["id"].as_str().unwrap());
        assert_eq!(r.event_header, r.event["event"].as_str().unwrap());
        assert_eq!(r.event["node"], node.as_str());
        assert!(r.event["ts"].as_u64().unwrap() >= before - 60_000);
    }
    let mut ids: Vec<&str> = got
        .iter()
        .map(|r| r.event["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "event ids are unique");
    metric_reaches(&hub, "webhook_events_delivered_total", got.len() as u64).await;
    assert_eq!(metric(&hub, "webhook_events_failed_total").await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_fails_the_receivers_check() {
    let receiver = Receiver::start(HOOK_SECRET, &[Answer::Status(200)]).await;
    let hub = hub_posting_to(&receiver.url(), "not-the-receivers-secret", |_| {}).await;
    let (status, _) = hub
        .json(
            "POST",
            "/rooms",
            &hub.user("alice"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 201);
    let r = receiver.wait_for("room.created", |_| true).await;
    assert!(
        !r.signed,
        "a body signed with another secret must not verify"
    );
    hub.stop().await;
}

#[tokio::test]
async fn without_a_url_webhooks_are_off_and_a_url_needs_a_secret() {
    let hub = Hub::start().await;
    assert!(hub.state.webhooks.is_none());
    assert!(!metrics(&hub).await.contains("webhook"));
    hub.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let refused = channelbox_hub::server::AppState::new(channelbox_hub::Config {
        webhook_url: Some("http://127.0.0.1:9/hook".into()),
        data_dir: dir.path().to_path_buf(),
        ..channelbox_hub::Config::default()
    });
    let err = refused.err().expect("a URL without a secret is refused");
    assert!(err.to_string().contains("--webhook-secret"), "{err}");
}

#[tokio::test]
async fn a_receiver_that_fails_twice_sees_the_retries_and_one_delivery() {
    let answers = [
        Answer::Status(500),
        Answer::Status(503),
        Answer::Status(200),
    ];
    let receiver = Receiver::start(HOOK_SECRET, &answers).await;
    // The default back-off: 0.5 s, then 1 s.
    let hub = hub_posting_to(&receiver.url(), HOOK_SECRET, |_| {}).await;
    let (status, _) = hub
        .json(
            "POST",
            "/rooms",
            &hub.user("alice"),
            Some(json!({"name": "retry"})),
        )
        .await;
    assert_eq!(status, 201);
    metric_reaches(&hub, "webhook_events_delivered_total", 1).await;
    let got = receiver.got();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got.iter().all(|r| r.signed && r.event == got[0].event),
        "the same body each time"
    );
    // Backed off, doubling (lower bounds only: a busy machine is slower).
    assert!(got[1].at - got[0].at >= Duration::from_millis(450));
    assert!(got[2].at - got[1].at >= Duration::from_millis(950));
    assert_eq!(metric(&hub, "webhook_retries_total").await, 2);
    assert_eq!(metric(&hub, "webhook_events_failed_total").await, 0);
    assert_eq!(metric(&hub, "webhook_events_queued_total").await, 1);
    // /stats says the same.
    let (status, stats) = hub.json("GET", "/stats", &hub.admin("ops"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        stats["webhooks"],
        json!({"queued": 1, "delivered": 1, "retried": 2, "failed": 0, "dropped": 0,
               "skipped": 0, "queue_depth": 0, "in_flight": 0})
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_4xx_is_given_up_at_once_and_a_429_is_retried() {
    let answers = [Answer::Status(429), Answer::Status(404)];
    let receiver = Receiver::start(HOOK_SECRET, &answers).await;
    let hub = hub_posting_to(&receiver.url(), HOOK_SECRET, |c| {
        c.webhook_retry_base_ms = 10
    })
    .await;
    let (status, _) = hub
        .json(
            "POST",
            "/rooms",
            &hub.user("alice"),
            Some(json!({"name": "gone"})),
        )
        .await;
    assert_eq!(status, 201);
    metric_reaches(&hub, "webhook_events_failed_total", 1).await;
    // 429 retried once; the 404 ended it (the failed count is set after
    // the last attempt, so nothing more comes).
    assert_eq!(receiver.got().len(), 2);
    assert_eq!(metric(&hub, "webhook_retries_total").await, 1);
    assert_eq!(metric(&hub, "webhook_events_delivered_total").await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_slow_chat() {
    let receiver = Receiver::start(HOOK_SECRET, &[Answer::Hang]).await;
    let hub = hub_posting_to(&receiver.url(), HOOK_SECRET, |c| {
        c.messages_per_second = 0;
        c.webhook_timeout_ms = 120_000;
    })
    .await;
    let alice = hub.user("alice");
    let mut alice_dm = hub.ws("/dm/bob", &alice).await.unwrap();
    alice_dm.expect("history").await;
    let (mut lobby, _) = hub.join("lobby", &alice).await;
    // 200 DMs to the offline bob (200 events for a receiver that holds every
    // request), each round trip bounded by WAIT; the lobby keeps flowing.
    let started = Instant::now();
    for i in 0..200 {
        dm(&mut alice_dm, &format!("dm {i}")).await;
        if i % 20 == 0 {
            lobby.say(&format!("lobby {i}")).await;
        }
    }
    let elapsed = started.elapsed();
    let webhooks = hub.state.webhooks.as_ref().unwrap();
    // Every sender is stuck on the receiver, the rest wait in the queue.
    assert_eq!(webhooks.in_flight(), channelbox_hub::webhooks::SENDERS);
    assert_eq!(metric(&hub, "webhook_events_queued_total").await, 200);
    assert_eq!(metric(&hub, "webhook_events_delivered_total").await, 0);
    assert_eq!(
        metric(&hub, "webhook_queue_depth").await,
        200 - channelbox_hub::webhooks::SENDERS as u64
    );
    // A behaviour check, not a speed target (each round trip above was
    // also bounded by WAIT): 210 round trips on a machine shared with other
    // builds; a hub that waited on the receiver would take 120 s for the
    // first one.
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    // Shutdown waits 2 s for the stuck events at most, then drops them.
    let stopping = Instant::now();
    hub.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "{:?}",
        stopping.elapsed()
    );
}

#[tokio::test]
async fn a_dead_endpoint_counts_failures_and_chat_goes_on() {
    let url = dead_url().await;
    let hub = hub_posting_to(&url, HOOK_SECRET, |c| c.webhook_retry_base_ms = 5).await;
    let mut alice_dm = hub.ws("/dm/bob", &hub.user("alice")).await.unwrap();
    alice_dm.expect("history").await;
    for i in 0..3 {
        dm(&mut alice_dm, &format!("into the void {i}")).await;
    }
    metric_reaches(&hub, "webhook_events_failed_total", 3).await;
    // Each one: the first attempt and 5 retries.
    assert_eq!(metric(&hub, "webhook_retries_total").await, 15);
    assert_eq!(metric(&hub, "webhook_events_delivered_total").await, 0);
    assert_eq!(metric(&hub, "webhook_in_flight").await, 0);
    // Chat still works.
    let (mut lobby, _) = hub.join("lobby", &hub.user("carol")).await;
    lobby.say("still here").await;
    hub.stop().await;
}

#[tokio::test]
async fn a_full_queue_drops_the_newest_and_counts_them() {
    let url = dead_url().await;
    let hub = hub_posting_to(&url, HOOK_SECRET, |c| {
        c.messages_per_second = 0;
        c.webhook_queue_max = 4;
        // The first retry comes after a minute: the senders stay busy.
        c.webhook_retry_base_ms = 60_000;
    })
    .await;
    let mut alice_dm = hub.ws("/dm/bob", &hub.user("alice")).await.unwrap();
    alice_dm.expect("history").await;
    for i in 0..40 {
        dm(&mut alice_dm, &format!("dm {i}")).await;
    }
    let queued = metric(&hub, "webhook_events_queued_total").await;
    let dropped = metric(&hub, "webhook_events_dropped_total").await;
    assert_eq!(queued + dropped, 40);
    // At most the senders' events plus the queue's 4 were taken.
    let senders = channelbox_hub::webhooks::SENDERS as u64;
    assert!(queued <= senders + 4, "queued {queued}");
    assert!(dropped >= 40 - senders - 4, "dropped {dropped}");
    let webhooks = hub.state.webhooks.as_ref().unwrap();
    assert_eq!((webhooks.in_flight() + webhooks.depth()) as u64, queued);
    hub.stop().await;
}

#[tokio::test]
async fn queued_events_go_out_during_the_shutdown_grace() {
    let receiver = Receiver::start(HOOK_SECRET, &[Answer::Status(200)]).await;
    let hub = hub_posting_to(&receiver.url(), HOOK_SECRET, |_| {}).await;
    let alice = hub.user("alice");
    for i in 0..5 {
        let (status, _) = hub
            .json(
                "POST",
                "/rooms",
                &alice,
                Some(json!({"name": format!("r{i}")})),
            )
            .await;
        assert_eq!(status, 201);
    }
    hub.stop().await;
    assert_eq!(receiver.count("room.created"), 5, "{:#?}", receiver.got());
}

async fn redis_node(redis: &RedisServer, name: &str, url: &str) -> Hub {
    let redis_url = redis.url();
    let name = name.to_owned();
    hub_posting_to(url, HOOK_SECRET, move |c| {
        c.redis_url = Some(redis_url);
        c.node_name = Some(name);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_one_event_per_fact_and_offline_means_on_no_hub() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(HOOK_SECRET, &[Answer::Status(200)]).await;
    let h1 = redis_node(&redis, "h1", &receiver.url()).await;
    let h2 = redis_node(&redis, "h2", &receiver.url()).await;
    let alice = h1.user("alice");
    let mut alice_dm = h1.ws("/dm/bob", &alice).await.unwrap();
    alice_dm.expect("history").await;

    // Bob is online on h2 only: h1's DM to him is skipped, not posted.
    let bob = h2.user("bob");
    let mut bob_presence = h2.ws("/presence", &bob).await.unwrap();
    bob_presence.expect("users").await;
    dm(&mut alice_dm, "bob is on h2").await;
    metric_reaches(&h1, "webhook_events_skipped_total", 1).await;

    // Bob leaves; once no hub counts him, a DM is posted once, by h1.
    bob_presence.close().await;
    let deadline = Instant::now() + WAIT;
    while h1.state.hub.users_async().await.iter().any(|u| u == "bob") {
        assert!(Instant::now() < deadline, "bob still online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = dm(&mut alice_dm, "bob is gone").await;
    let r = receiver
        .event("dm.offline", |d| d["message_id"] == id)
        .await;
    assert_eq!(r.event["node"], "h1");
    assert!(r.signed);
    // A room created on h2 is posted by h2 alone.
    let (status, _) = h2
        .json(
            "POST",
            "/rooms",
            &h2.user("carol"),
            Some(json!({"name": "shared"})),
        )
        .await;
    assert_eq!(status, 201);
    let r = receiver
        .event("room.created", |d| d["name"] == "shared")
        .await;
    assert_eq!(r.event["node"], "h2");
    // Everything queued has been answered: nothing more is on its way.
    metric_reaches(&h1, "webhook_events_delivered_total", 1).await;
    metric_reaches(&h2, "webhook_events_delivered_total", 1).await;
    assert_eq!(metric(&h2, "webhook_events_queued_total").await, 1);
    assert_eq!(receiver.got().len(), 2, "{:#?}", receiver.got());
    assert_eq!(metric(&h1, "webhook_events_queued_total").await, 2);
    h1.stop().await;
    h2.stop().await;
}

#[tokio::test]
async fn the_server_apis_dm_mention_and_ban_post_webhooks_too() {
    const KEY: &str = "api-key-for-webhook-tests-0123456789";
    let receiver = Receiver::start(HOOK_SECRET, &[Answer::Status(200)]).await;
    let hub = hub_posting_to(&receiver.url(), HOOK_SECRET, |c| {
        c.api_key = Some(KEY.into());
    })
    .await;
    let auth = format!("apikey {KEY}");
    let call = |path: &'static str, body: Value| {
        let auth = auth.clone();
        let hub = &hub;
        async move {
            let headers = [
                ("Content-Type", "application/json"),
                ("Authorization", auth.as_str()),
            ];
            let (status, _, body) = hub
                .request("POST", path, &headers, body.to_string().as_bytes())
                .await;
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    // Carol is known (seen in the lobby) and gone.
    let (carol, _) = hub.join("lobby", &hub.user("carol")).await;
    carol.close().await;

    let answer = call(
        "/api/dm",
        json!({"to": "bob", "content": "your order shipped", "from": "shop"}),
    )
    .await;
    let id = answer["id"].as_u64().unwrap();
    let r = receiver
        .event("dm.offline", |d| d["message_id"] == id)
        .await;
    assert_eq!(r.event["data"]["from"], "shop");
    assert_eq!(r.event["data"]["to"], "bob");

    let answer = call(
        "/api/publish",
        json!({"room": "lobby", "content": "@carol deploy done"}),
    )
    .await;
    let id = answer["id"].as_u64().unwrap();
    let r = receiver
        .event("mention.offline", |d| d["message_id"] == id)
        .await;
    assert_eq!(
        (
            r.event["data"]["user"].as_str(),
            r.event["data"]["from"].as_str()
        ),
        (Some("carol"), Some("system"))
    );

    call(
        "/api/rooms/lobby/ban",
        json!({"user": "mallory", "duration_s": 30}),
    )
    .await;
    let r = receiver
        .event("user.banned", |d| d["user"] == "mallory")
        .await;
    assert_eq!(
        (
            r.event["data"]["room"].as_str(),
            r.event["data"]["by"].as_str(),
            r.event["data"]["duration_s"].as_u64()
        ),
        (Some("lobby"), Some("system"), Some(30))
    );
    assert!(receiver.got().iter().all(|r| r.signed));
    hub.stop().await;
}

/// The hub binary, configured as an operator would: the URL as a flag, the
/// secret from `CHANNELBOX_WEBHOOK_SECRET`; and refused without a secret.
#[tokio::test]
async fn the_hub_binary_takes_the_url_flag_and_the_secret_from_the_environment() {
    let receiver = Receiver::start(HOOK_SECRET, &[Answer::Status(200)]).await;
    let dir = tempfile::tempdir().unwrap();
    let url = receiver.url();
    let hub = common::HubChild::start(|c| {
        c.args(["--webhook-url", &url, "--jwt-secret", common::SECRET])
            .arg("--data-dir")
            .arg(dir.path())
            .env("CHANNELBOX_WEBHOOK_SECRET", HOOK_SECRET);
    });
    let created = reqwest::Client::new()
        .post(format!("http://{}/rooms", hub.addr))
        .bearer_auth(common::token("alice", "Alice"))
        .header("Content-Type", "application/json")
        .body(json!({"name": "From a process"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let r = receiver
        .event("room.created", |d| d["name"] == "From a process")
        .await;
    assert!(r.signed, "{r:?}");
    assert_eq!(r.event["data"]["owner"], "alice");
    drop(hub);

    // A URL without a secret: the process stops at once, saying why.
    let out = tokio::process::Command::new(common::hub_binary())
        .args([
            "--port",
            &common::free_port().to_string(),
            "--webhook-url",
            &url,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("CHANNELBOX_WEBHOOK_SECRET")
        .env("RUST_BACKTRACE", "0")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("exits")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--webhook-secret"), "{stderr}");
}
