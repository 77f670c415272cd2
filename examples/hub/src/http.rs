//! HTTP on the hub's port: the browser client (`GET /`, `/static/*`, the
//! files of [`crate::assets`]), `GET /healthz`, `GET /stats` (JSON),
//! `GET /metrics` (Prometheus text), `POST /auth/guest`, and the extensions'
//! routes.
//!
//! [`serve_connection`] serves one socket with hyper under three limits:
//! `--header-timeout-ms` (hyper's header-read timeout, which also bounds
//! the wait for the next request on a keep-alive connection),
//! `--body-timeout-ms` (a deadline on each request body, [`DeadlineBody`])
//! and `--idle-timeout-ms` (no byte either way, [`IdleTimeout`]). Every
//! response carries the security headers of [`security_headers`].

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::assets;
use crate::auth::{self, Claims};
use crate::features;
use crate::server::{AppState, PendingSlot};

/// The client page's policy: scripts and styles from the hub only (no
/// inline script), WebSockets to the hub, never framed.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self' ws: wss:; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Serves one HTTP/1 connection until the client or a limit ends it, or
/// the hub shuts down (the request in progress finishes first). The socket
/// stays in [`crate::server::Pending`] until its first request's headers
/// are in.
pub(crate) async fn serve_connection(
    state: Arc<AppState>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: PendingSlot,
) {
    let config = &state.config;
    let io = TokioIo::new(IdleTimeout::new(
        stream,
        Duration::from_millis(config.idle_timeout_ms.max(1)),
    ));
    let body_timeout = Duration::from_millis(config.body_timeout_ms.max(1));
    let slot_id = slot.id;
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        service_state.pending.admit(slot_id);
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        let body = Body::new(DeadlineBody::new(body, body_timeout));
        router.clone().oneshot(Request::from_parts(parts, body))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_timeout_ms.max(1)))
        .keep_alive(true);
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    let mut stop = state.stop.subscribe();
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(error = %e, %peer, "http connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
        _ = slot.cut() => {
            crate::upgrade::cut(&state);
            return;
        }
    }
    // A request in progress may finish; a socket still in its headers is
    // cut at once (shutdown cuts every pending socket).
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(5), conn) => {}
        _ = slot.cut() => {}
    }
}

/// A socket that fails once no byte moved either way for `limit`.
pub struct IdleTimeout<S> {
    inner: S,
    limit: Duration,
    /// When a byte last moved.
    last: Instant,
    /// Fires at `last + limit` (re-armed when it finds later activity).
    timer: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> IdleTimeout<S> {
        let last = Instant::now();
        IdleTimeout {
            inner,
            limit,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + limit)),
        }
    }

    /// Called when the socket is not ready: an error once idle too long.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let due = self.last + self.limit;
            if Instant::now() >= due {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for --idle-timeout-ms",
                ));
            }
            self.timer.as_mut().reset(due);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.check(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.check(cx)?;
                Poll::Pending
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error a body past its deadline fails with (uploads answer 408).
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body not received within --body-timeout-ms")
    }
}

impl std::error::Error for BodyTimedOut {}

/// True when `e` (from reading a request body) is [`BodyTimedOut`].
pub fn body_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<BodyTimedOut>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A request body that fails once `limit` passed since the request came
/// in, however slowly its bytes trickle. The timer exists only once a
/// handler reads a body that is not empty.
pub struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: hyper::body::Incoming, limit: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Instant::now() + limit,
            timer: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Adds the security headers to every response that does not set its own:
/// the page policy (CSP with `frame-ancestors 'none'`), `nosniff`, no
/// referrer (file links must not leak), no framing for old browsers.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// The router for every plain HTTP request.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/auth/guest", post(auth::guest))
        .route("/auth/refresh", post(auth::refresh));
    for &(path, content_type, body) in assets::CLIENT.iter().chain(features::STATIC) {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
        .merge(features::routes())
        .merge(features::directory::routes())
        .merge(crate::api::routes(&state.config))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "detail": "no such endpoint"})),
            )
        })
        .layer(axum::middleware::map_response(security_headers))
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
    pending_evictions: u64,
    pending: usize,
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
        pending_evictions: c.pending_evictions.load(Relaxed),
        pending: state.pending.len(),
        uptime_s: state.started.elapsed().as_secs_f64(),
    }
}

/// `GET /stats`: JSON counters (a token is required); `?detail` adds the
/// admin dashboard's health object (admins only, [`crate::dashboard`]).
async fn stats(
    caller: Claims,
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let detail = match crate::dashboard::wants_detail(query.as_deref(), &caller) {
        Ok(detail) => detail,
        Err(refused) => return refused.into_response(),
    };
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
        "pending_connections": s.pending,
        "pending_evictions": s.pending_evictions,
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
    features::extend_stats(&state, &caller, &mut body).await;
    crate::webhooks::extend_stats(&state, &mut body);
    if detail {
        body["detail"] = crate::dashboard::detail(&state);
    }
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
        "pending_connections",
        "gauge",
        "Connections still in their request headers or handshake.",
        s.pending.to_string(),
    );
    metric(
        "pending_evictions_total",
        "counter",
        "Pending connections cut to stay under --max-pending-connections.",
        s.pending_evictions.to_string(),
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
    state.auth.write_metrics(&mut out);
    features::extend_metrics(&state, &caller, &mut out).await;
    crate::webhooks::extend_metrics(&state, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
