//! HTTP on the hub's port: the browser client (`GET /`, `/static/*`, the
//! files of [`crate::assets`]), `GET /healthz`, `GET /stats` (JSON),
//! `GET /metrics` (Prometheus text), `POST /auth/guest`, and the extensions'
//! routes.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::assets;
use crate::auth::{self, Claims};
use crate::features;
use crate::server::AppState;

/// The router for every plain HTTP request.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/auth/guest", post(auth::guest));
    for &(path, content_type, body) in assets::CLIENT.iter().chain(features::STATIC) {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
        .merge(features::routes())
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "detail": "no such endpoint"})),
            )
        })
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The numbers behind `/stats` and `/metrics`.
struct Snapshot {
    core: channelbox::Stats,
    chat: usize,
    presence: usize,
    dm: usize,
    rooms: Vec<(Arc<str>, usize)>,
    presence_users: usize,
    messages: u64,
    direct_messages: u64,
    upgrades_refused: u64,
    rate_limit_closes: u64,
    uptime_s: f64,
}

fn snapshot(state: &AppState) -> Snapshot {
    use std::sync::atomic::Ordering::Relaxed;
    let (chat, presence, dm) = state.session_counts();
    let mut rooms: Vec<_> = state.rooms().into_iter().collect();
    rooms.sort_unstable();
    let c = &state.counters;
    Snapshot {
        core: state.hub.stats(),
        chat,
        presence,
        dm,
        rooms,
        presence_users: state.presence.count(),
        messages: c.messages.load(Relaxed),
        direct_messages: c.direct_messages.load(Relaxed),
        upgrades_refused: c.upgrades_refused.load(Relaxed),
        rate_limit_closes: c.rate_limit_closes.load(Relaxed),
        uptime_s: state.started.elapsed().as_secs_f64(),
    }
}

/// `GET /stats`: JSON counters (a token is required).
async fn stats(caller: Claims, State(state): State<Arc<AppState>>) -> Response {
    let s = snapshot(&state);
    let per_room: serde_json::Map<String, serde_json::Value> = s
        .rooms
        .iter()
        .map(|(room, n)| (room.to_string(), json!({"connections": n})))
        .collect();
    let mut body = json!({
        "connections": s.chat + s.presence + s.dm,
        "connections_by_endpoint": {"chat": s.chat, "presence": s.presence, "dm": s.dm},
        "users_online": s.core.users,
        "presence_users": s.presence_users,
        "rooms": s.rooms.len(),
        "messages": s.messages,
        "direct_messages": s.direct_messages,
        "group_sends": s.core.group_sends,
        "deliveries": s.core.deliveries,
        "dropped": s.core.dropped,
        "slow_consumer_disconnects": s.core.slow_consumer_disconnects,
        "rate_limit_disconnects": s.rate_limit_closes,
        "upgrades_refused": s.upgrades_refused,
        "history_messages": s.core.history_messages,
        "history_bytes": s.core.history_bytes,
        "queued_messages": s.core.queued_messages,
        "queued_bytes": s.core.queued_bytes,
        "uptime_seconds": s.uptime_s,
        "per_room": per_room,
        "engine": {
            "connected": s.core.engine_connected,
            "published": s.core.engine_published,
            "received": s.core.engine_received,
            "reconnects": s.core.engine_reconnects,
            "unavailable": s.core.engine_unavailable,
            "lost_subscriptions": s.core.engine_lost_subscriptions,
            "lost_subscription_closes": s.core.engine_lost_subscription_closes,
            "malformed": s.core.engine_malformed,
        },
    });
    features::extend_stats(&state, &caller, &mut body);
    Json(body).into_response()
}

/// `GET /metrics`: the same in Prometheus text format.
async fn metrics(caller: Claims, State(state): State<Arc<AppState>>) -> Response {
    let s = snapshot(&state);
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            out,
            "# HELP channelbox_{name} {help}\n# TYPE channelbox_{name} {kind}\nchannelbox_{name} {value}\n"
        );
    };
    metric(
        "connections",
        "gauge",
        "Open WebSocket connections.",
        (s.chat + s.presence + s.dm).to_string(),
    );
    metric(
        "users_online",
        "gauge",
        "Distinct users with an open connection.",
        s.core.users.to_string(),
    );
    metric(
        "presence_users",
        "gauge",
        "Distinct users on /presence.",
        s.presence_users.to_string(),
    );
    metric(
        "rooms",
        "gauge",
        "Rooms with at least one connection.",
        s.rooms.len().to_string(),
    );
    metric(
        "messages_total",
        "counter",
        "Chat messages accepted.",
        s.messages.to_string(),
    );
    metric(
        "direct_messages_total",
        "counter",
        "Direct messages accepted.",
        s.direct_messages.to_string(),
    );
    metric(
        "deliveries_total",
        "counter",
        "Frames put in a connection's queue.",
        s.core.deliveries.to_string(),
    );
    metric(
        "dropped_total",
        "counter",
        "Frames refused by full queues.",
        s.core.dropped.to_string(),
    );
    metric(
        "slow_consumer_disconnects_total",
        "counter",
        "Connections closed (4008) for not reading fast enough.",
        s.core.slow_consumer_disconnects.to_string(),
    );
    metric(
        "rate_limit_disconnects_total",
        "counter",
        "Connections closed (4008) for flooding.",
        s.rate_limit_closes.to_string(),
    );
    metric(
        "upgrades_refused_total",
        "counter",
        "WebSocket upgrades refused (401/403/404).",
        s.upgrades_refused.to_string(),
    );
    metric(
        "history_messages",
        "gauge",
        "Messages kept in all histories.",
        s.core.history_messages.to_string(),
    );
    metric(
        "history_bytes",
        "gauge",
        "Bytes kept in all histories.",
        s.core.history_bytes.to_string(),
    );
    metric(
        "queued_bytes",
        "gauge",
        "Bytes waiting in outbound queues.",
        s.core.queued_bytes.to_string(),
    );
    // The Redis engine's health (all 0 when the hub runs alone).
    for (name, kind, help, value) in [
        (
            "engine_connected",
            "gauge",
            "1 while connected to Redis (--redis-url).",
            s.core.engine_connected,
        ),
        (
            "engine_published_total",
            "counter",
            "Messages published to Redis.",
            s.core.engine_published,
        ),
        (
            "engine_received_total",
            "counter",
            "Broadcasts received from Redis.",
            s.core.engine_received,
        ),
        (
            "engine_reconnects_total",
            "counter",
            "Redis subscription reconnects.",
            s.core.engine_reconnects,
        ),
        (
            "engine_unavailable_total",
            "counter",
            "Operations refused while Redis was unreachable.",
            s.core.engine_unavailable,
        ),
        (
            "engine_lost_subscriptions_total",
            "counter",
            "Redis subscription sessions lost.",
            s.core.engine_lost_subscriptions,
        ),
        (
            "engine_lost_subscription_closes_total",
            "counter",
            "Sockets closed (1012) after a lost subscription.",
            s.core.engine_lost_subscription_closes,
        ),
        (
            "engine_malformed_total",
            "counter",
            "Malformed entries found in Redis, skipped.",
            s.core.engine_malformed,
        ),
    ] {
        metric(name, kind, help, value.to_string());
    }
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the hub started.",
        format!("{:.3}", s.uptime_s),
    );
    let _ = writeln!(
        out,
        "# HELP channelbox_connections_by_endpoint Open WebSocket connections per endpoint."
    );
    let _ = writeln!(out, "# TYPE channelbox_connections_by_endpoint gauge");
    for (endpoint, n) in [("chat", s.chat), ("presence", s.presence), ("dm", s.dm)] {
        let _ = writeln!(
            out,
            "channelbox_connections_by_endpoint{{endpoint=\"{endpoint}\"}} {n}"
        );
    }
    features::extend_metrics(&state, &caller, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
