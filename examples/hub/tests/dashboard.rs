//! The admin dashboard (issue 15): `GET /dashboard` serves the page to
//! anyone (it holds no data); its data route `GET /stats?detail` answers
//! admins only, and `GET /stats` without it is unchanged for everyone.
//! The page itself is driven in Chromium by `tests/browser/test_dashboard.py`.

mod common;

use common::Hub;

#[tokio::test]
async fn the_dashboard_page_is_served_with_the_page_policy() {
    let hub = Hub::start().await;
    let (status, head, body) = hub.http("GET", "/dashboard", None, None, b"").await;
    assert_eq!(status, 200, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("/static/js/dashboard.js"), "{body}");
    for module in [
        "/static/js/dashboard.js",
        "/static/js/dashboard-chart.js",
        "/static/dashboard.css",
    ] {
        let (status, _, _) = hub.http("GET", module, None, None, b"").await;
        assert_eq!(status, 200, "{module}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn stats_detail_is_refused_to_a_user_who_is_not_an_admin() {
    let hub = Hub::start().await;
    let (status, body) = hub
        .json("GET", "/stats?detail", &hub.user("mallory"), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["detail"], "admins only", "{body}");
    // No token at all is the usual 401, before the role is looked at.
    let (status, _, _) = hub.http("GET", "/stats?detail=1", None, None, b"").await;
    assert_eq!(status, 401);
    hub.stop().await;
}

#[tokio::test]
async fn stats_without_detail_is_unchanged_for_users_and_admins() {
    let hub = Hub::start().await;
    let (status, plain) = hub.json("GET", "/stats", &hub.user("alice"), None).await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain.get("detail").is_none(), "{plain}");
    assert!(plain["connections"].is_u64(), "{plain}");
    let (status, admin) = hub
        .json("GET", "/stats?other=1", &hub.admin("root"), None)
        .await;
    assert_eq!(status, 200, "{admin}");
    assert!(admin.get("detail").is_none(), "{admin}");
    hub.stop().await;
}

#[tokio::test]
async fn stats_detail_tells_an_admin_the_stores_and_their_health() {
    let hub = Hub::start().await;
    let (mut a, _) = hub.join("ops", &hub.user("alice")).await;
    a.say("one").await;
    a.say("two").await;
    let (status, stats) = hub
        .json("GET", "/stats?detail", &hub.admin("root"), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    // Everything /stats says is still there.
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(stats["messages"], 2, "{stats}");
    assert_eq!(stats["top_rooms"][0]["room"], "ops", "{stats}");
    let detail = &stats["detail"];
    assert_eq!(detail["engine"], "memory", "{stats}");
    assert_eq!(detail["state_store"]["kind"], "redb", "{stats}");
    assert_eq!(detail["state_store"]["corrupt"], 0, "{stats}");
    // The tests' default is history on disk: the two messages and the
    // join notice were committed there.
    assert_eq!(detail["history_store"]["kind"], "disk", "{stats}");
    assert_eq!(detail["history_store"]["failing"], false, "{stats}");
    assert!(
        detail["history_store"]["commits"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(detail["history_store"]["failed_commits"], 0, "{stats}");
    // The test process' own resident memory: more than a megabyte.
    assert!(detail["rss_bytes"].as_u64().unwrap() > 1 << 20, "{stats}");
    hub.stop().await;
}

#[tokio::test]
async fn stats_detail_names_the_memory_history_store() {
    let hub =
        Hub::start_with(|c| c.history_store = channelbox_hub::config::HistoryStore::Memory).await;
    let (status, stats) = hub
        .json("GET", "/stats?detail=yes", &hub.admin("root"), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats["detail"]["history_store"]["kind"], "memory",
        "{stats}"
    );
    assert_eq!(stats["detail"]["history_store"]["commits"], 0, "{stats}");
    hub.stop().await;
}
