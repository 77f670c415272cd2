//! Signed webhooks (`--webhook-url`, `--webhook-secret`): the facts an
//! application backend acts on, POSTed to it as JSON. `dm.offline` and
//! `mention.offline` (the user has no connection: send a push
//! notification), `room.created`, `user.banned`. Each body is signed:
//! `X-Channelbox-Signature: sha256=<hex HMAC-SHA256 of the body bytes>`.
//! The shapes are in PROTOCOL.md, "Webhooks".
//!
//! Delivery never touches the chat path: an emit builds the body and
//! `try_send`s it into a bounded queue (when full, the new event is dropped
//! and counted). One dispatcher task hands queued events to at most
//! [`SENDERS`] deliveries at a time; each POST has a timeout, and a
//! connection error, a timeout, a 5xx or a 429 is retried after 0.5, 1, 2,
//! 4 and 8 s, then given up. A 2xx is delivered; any other answer is given
//! up at once. So a slow or dead endpoint fills the queue, never a socket.
//!
//! With several hubs on one Redis each fact is emitted once, by the hub
//! that handled it (the sender's hub for a DM or a mention). "No
//! connection" means anywhere: a user with a socket on this hub is online
//! (checked at once, in memory); otherwise, with Redis, the delivery asks
//! Redis for the users online on every hub just before the POST (so the
//! chat path never waits for Redis) and skips the event, counted, when the
//! user is there.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use channelbox::Hub;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::features::rooms::Room;
use crate::server::AppState;

/// Deliveries in flight at once (each may be waiting out a back-off).
pub const SENDERS: usize = 8;
/// Retries after the first attempt; the delays double from
/// `Config::webhook_retry_base_ms` (0.5, 1, 2, 4, 8 s by default).
pub const RETRIES: u32 = 5;
/// Characters of a message kept in an event's `preview`.
pub const PREVIEW_CHARS: usize = 200;
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-channelbox-signature";
/// The event's id (the same on every retry, for receivers to dedupe).
pub const EVENT_ID_HEADER: &str = "x-channelbox-event-id";
/// The event's name (`dm.offline`, ...).
pub const EVENT_HEADER: &str = "x-channelbox-event";

/// What `/stats` and `/metrics` show about webhooks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events accepted into the queue.
    pub queued: AtomicU64,
    /// Events a 2xx answered.
    pub delivered: AtomicU64,
    /// Attempts after a first one failed (connection, timeout, 5xx, 429).
    pub retried: AtomicU64,
    /// Events given up: retries exhausted, or a 4xx (not 429) or 3xx.
    pub failed: AtomicU64,
    /// Events dropped because the queue was full (or the hub had shut
    /// its sender down).
    pub dropped: AtomicU64,
    /// Offline events not sent: the user was online on another hub.
    pub skipped: AtomicU64,
}

/// One queued event.
#[derive(Debug)]
struct Event {
    /// `dm.offline`, `mention.offline`, ...
    name: &'static str,
    /// Unique id, also in the body.
    id: String,
    /// The JSON body, signed and sent as it is.
    body: Bytes,
    /// Shared mode: skip the event if this user is connected on any hub.
    unless_online: Option<String>,
}

/// Why an attempt did not deliver.
enum Outcome {
    Delivered,
    Retry(String),
    GiveUp(String),
}

/// The webhook sender: its queue, its HTTP client and its counters.
pub struct Webhooks {
    /// Where events are POSTed.
    url: reqwest::Url,
    /// Keyed once with the secret; cloned per body.
    mac: Hmac<Sha256>,
    /// Connection pool, with the per-request timeout.
    client: reqwest::Client,
    /// This hub's name, in every event.
    node: String,
    /// For the cross-hub "is this user connected" check (Redis).
    hub: Hub,
    /// Events wait here for the dispatcher (`try_send` only).
    queue: mpsc::Sender<Event>,
    /// The queue's other end, until the dispatcher takes it.
    inbox: Mutex<Option<mpsc::Receiver<Event>>>,
    /// The dispatcher, aborted after the shutdown grace.
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Events taken from the queue and not finished (retries included).
    in_flight: AtomicUsize,
    /// First back-off delay.
    retry_base: Duration,
    /// Counted for `/stats` and `/metrics`.
    pub counters: Counters,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("to", &origin(&self.url))
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The sender `config` asks for: `None` without `--webhook-url`; an
    /// error for a URL that is not http(s) or that comes without a secret.
    pub fn from_config(config: &Config, hub: &Hub, node: &str) -> anyhow::Result<Option<Webhooks>> {
        let Some(url) = config.webhook_url.as_deref().filter(|u| !u.is_empty()) else {
            if config
                .webhook_secret
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            {
                tracing::warn!("--webhook-secret without --webhook-url: webhooks are off");
            }
            return Ok(None);
        };
        let url = reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("--webhook-url {url:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("--webhook-url must be an http:// or https:// URL");
        }
        let secret = config
            .webhook_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--webhook-url needs --webhook-secret (or CHANNELBOX_WEBHOOK_SECRET) to sign events"
                )
            })?;
        let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|e| anyhow::anyhow!("--webhook-secret: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.webhook_timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.webhook_timeout_ms.max(1)))
            // A redirect is an answer to give up on, not to follow: the
            // signed body goes only where it was configured to.
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the URL, whatever `HTTP(S)_PROXY` the process
            // inherited (a backend beside the hub is not behind the
            // proxy meant for the internet).
            .no_proxy()
            .user_agent(concat!("channelbox-hub/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (queue, inbox) = mpsc::channel(config.webhook_queue_max.max(1));
        tracing::info!(to = %origin(&url), "webhooks on");
        Ok(Some(Webhooks {
            url,
            mac,
            client,
            node: node.to_owned(),
            hub: hub.clone(),
            queue,
            inbox: Mutex::new(Some(inbox)),
            dispatcher: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            retry_base: Duration::from_millis(config.webhook_retry_base_ms),
            counters: Counters::default(),
        }))
    }

    /// Starts the dispatcher (once; later calls do nothing).
    pub fn start(self: &Arc<Self>) {
        let Some(inbox) = self.inbox.lock().take() else {
            return;
        };
        let task = tokio::spawn(self.clone().dispatch(inbox));
        *self.dispatcher.lock() = Some(task);
    }

    /// Lets queued and in-flight events go out for at most `grace`, then
    /// drops what is left (logged).
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(task) = self.dispatcher.lock().take() {
            task.abort();
        }
        let left = self.pending();
        if left > 0 {
            tracing::warn!(
                unsent = left,
                "webhooks: shutdown grace over; events dropped"
            );
        }
    }

    /// Events waiting in the queue.
    pub fn depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Events being delivered (or waiting out a back-off).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    fn pending(&self) -> usize {
        self.depth() + self.in_flight()
    }

    /// `sha256=<hex HMAC-SHA256 of body>`, the signature header's value.
    pub fn signature(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Queues event `name` with `data`; never waits. `unless_online`: skip
    /// it if that user turns out to be connected on another hub.
    fn emit(&self, name: &'static str, data: impl Serialize, unless_online: Option<&str>) {
        self.emit_at(crate::frames::now_ms(), name, data, unless_online)
    }

    /// [`Webhooks::emit`] with the event's `ts` given.
    fn emit_at(
        &self,
        ts: u64,
        name: &'static str,
        data: impl Serialize,
        unless_online: Option<&str>,
    ) {
        let id = format!("{:032x}", rand::random::<u128>());
        // Encoded straight from borrowed fields: no JSON tree is built.
        let body = serde_json::to_vec(&Envelope {
            event: name,
            id: &id,
            ts,
            node: &self.node,
            data,
        })
        .unwrap_or_default();
        let event = Event {
            name,
            id,
            body: Bytes::from(body),
            unless_online: unless_online.map(str::to_owned),
        };
        match self.queue.try_send(event) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Relaxed);
            }
            Err(_) => {
                // Full (or shut down): the newest goes, chat goes on.
                self.counters.dropped.fetch_add(1, Relaxed);
                tracing::debug!(event = name, "webhook queue full; event dropped");
            }
        }
    }

    async fn dispatch(self: Arc<Self>, mut inbox: mpsc::Receiver<Event>) {
        let senders = Arc::new(Semaphore::new(SENDERS));
        let mut deliveries = JoinSet::new();
        loop {
            // A free sender first, so waiting events stay in the queue
            // (where the bound counts them).
            let Ok(permit) = senders.clone().acquire_owned().await else {
                return;
            };
            let Some(event) = inbox.recv().await else {
                break;
            };
            // Counted from here, so an aborted delivery that never ran
            // is uncounted too.
            let counted = InFlight::new(&self);
            deliveries.spawn(self.clone().deliver(event, permit, counted));
            while deliveries.try_join_next().is_some() {}
        }
        while deliveries.join_next().await.is_some() {}
    }

    async fn deliver(
        self: Arc<Self>,
        event: Event,
        _sender: OwnedSemaphorePermit,
        _counted: InFlight,
    ) {
        if let Some(user) = &event.unless_online {
            if self.hub.users_async().await.iter().any(|u| u == user) {
                self.counters.skipped.fetch_add(1, Relaxed);
                return;
            }
        }
        let signature = self.signature(&event.body);
        let mut delay = self.retry_base;
        let mut why = String::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                self.counters.retried.fetch_add(1, Relaxed);
            }
            match self.attempt(&event, &signature).await {
                Outcome::Delivered => {
                    self.counters.delivered.fetch_add(1, Relaxed);
                    return;
                }
                Outcome::Retry(reason) => {
                    tracing::debug!(event = event.name, id = %event.id, attempt, reason = %reason, "webhook attempt failed; will retry");
                    why = reason;
                }
                Outcome::GiveUp(reason) => {
                    why = reason;
                    break;
                }
            }
        }
        self.counters.failed.fetch_add(1, Relaxed);
        tracing::warn!(event = event.name, id = %event.id, reason = %why, "webhook given up");
    }

    async fn attempt(&self, event: &Event, signature: &str) -> Outcome {
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_HEADER, event.name)
            .header(EVENT_ID_HEADER, &event.id)
            .body(event.body.clone())
            .send()
            .await;
        match sent {
            Err(e) => Outcome::Retry(e.to_string()),
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Outcome::Delivered
                } else if status.is_server_error() || status.as_u16() == 429 {
                    Outcome::Retry(format!("HTTP {status}"))
                } else {
                    Outcome::GiveUp(format!("HTTP {status}"))
                }
            }
        }
    }
}

/// Counts one event in flight until dropped.
struct InFlight(Arc<Webhooks>);

impl InFlight {
    fn new(webhooks: &Arc<Webhooks>) -> InFlight {
        webhooks.in_flight.fetch_add(1, Relaxed);
        InFlight(webhooks.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Scheme, host and port of `url`: what logs show (a path or query may
/// carry a token).
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// The first [`PREVIEW_CHARS`] characters of `content`.
fn preview(content: &str) -> &str {
    match content.char_indices().nth(PREVIEW_CHARS) {
        Some((end, _)) => &content[..end],
        None => content,
    }
}

/// What every event's body holds (PROTOCOL.md, "Webhooks").
#[derive(Serialize)]
struct Envelope<'a, D> {
    event: &'a str,
    id: &'a str,
    ts: u64,
    node: &'a str,
    data: D,
}

/// `dm.offline`'s `data`.
#[derive(Serialize)]
struct DmOffline<'a> {
    from: &'a str,
    from_name: &'a str,
    to: &'a str,
    message_id: u64,
    preview: &'a str,
    /// The attached files' ids.
    attachments: &'a [Value],
}

/// `mention.offline`'s `data`.
#[derive(Serialize)]
struct MentionOffline<'a> {
    room: &'a str,
    message_id: u64,
    from: &'a str,
    from_name: &'a str,
    user: &'a str,
    preview: &'a str,
}

/// `room.created`'s `data`.
#[derive(Serialize)]
struct RoomCreated<'a> {
    room: &'a str,
    name: &'a str,
    private: bool,
    owner: &'a str,
    members: &'a std::collections::BTreeSet<String>,
}

/// `user.banned`'s `data`.
#[derive(Serialize)]
struct UserBanned<'a> {
    room: &'a str,
    user: &'a str,
    by: &'a str,
    until: Option<u64>,
    duration_s: Option<u64>,
}

/// Queues an offline event for `user` unless they have a connection: on
/// this hub (checked here), or on another hub (checked by the delivery).
fn emit_if_offline<D: Serialize>(
    state: &AppState,
    user: &str,
    name: &'static str,
    data: impl FnOnce() -> D,
) {
    let Some(webhooks) = &state.webhooks else {
        return;
    };
    if state.hub.user_connections(user) > 0 {
        return;
    }
    let shared = state.hub.config().engine == channelbox::EngineKind::Redis;
    webhooks.emit(name, data(), shared.then_some(user));
}

/// `dm.offline`: the DM `id` from `from_sub` (shown as `from_name`) to
/// `to`, who has no connection, with its checked `attachments` (an array
/// of file ids).
pub fn dm_offline(
    state: &AppState,
    from_sub: &str,
    from_name: &str,
    to: &str,
    id: u64,
    content: &str,
    attachments: Option<&Value>,
) {
    if to == from_sub {
        return;
    }
    emit_if_offline(state, to, "dm.offline", || DmOffline {
        from: from_sub,
        from_name,
        to,
        message_id: id,
        preview: preview(content),
        attachments: attachments
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
    });
}

/// `mention.offline`: message `id` in `room`, from `from_sub` (shown as
/// `from_name`), mentions `user`, who has no connection.
pub fn mention_offline(
    state: &AppState,
    from_sub: &str,
    from_name: &str,
    room: &str,
    id: u64,
    user: &str,
    content: &str,
) {
    emit_if_offline(state, user, "mention.offline", || MentionOffline {
        room,
        message_id: id,
        from: from_sub,
        from_name,
        user,
        preview: preview(content),
    });
}

/// `room.created`: `POST /rooms` created `room`.
pub fn room_created(state: &AppState, room: &Room) {
    if let Some(webhooks) = &state.webhooks {
        let data = RoomCreated {
            room: &room.id,
            name: &room.name,
            private: room.private,
            owner: &room.owner,
            members: &room.members,
        };
        webhooks.emit("room.created", data, None);
    }
}

/// `user.banned`: `by` banned `user` from `room` for `duration` (`None`:
/// until lifted). `until` is the event's `ts` plus the duration.
pub fn user_banned(state: &AppState, room: &str, user: &str, by: &str, duration: Option<Duration>) {
    if let Some(webhooks) = &state.webhooks {
        let ts = crate::frames::now_ms();
        let until = duration.map(|d| ts.saturating_add(d.as_millis() as u64));
        let data = UserBanned {
            room,
            user,
            by,
            until,
            duration_s: duration.map(|d| d.as_secs()),
        };
        webhooks.emit_at(ts, "user.banned", data, None);
    }
}

/// Adds `"webhooks": {...}` to `/stats` when webhooks are on.
pub fn extend_stats(state: &AppState, stats: &mut Value) {
    if let Some(w) = &state.webhooks {
        let c = &w.counters;
        stats["webhooks"] = json!({
            "queued": c.queued.load(Relaxed),
            "delivered": c.delivered.load(Relaxed),
            "retried": c.retried.load(Relaxed),
            "failed": c.failed.load(Relaxed),
            "dropped": c.dropped.load(Relaxed),
            "skipped": c.skipped.load(Relaxed),
            "queue_depth": w.depth(),
            "in_flight": w.in_flight(),
        });
    }
}

/// Appends the `channelbox_webhook_*` lines to `/metrics` when webhooks
/// are on.
pub fn extend_metrics(state: &AppState, out: &mut String) {
    use std::fmt::Write;
    let Some(w) = &state.webhooks else {
        return;
    };
    let c = &w.counters;
    for (name, kind, help, value) in [
        (
            "webhook_events_queued_total",
            "counter",
            "Webhook events queued.",
            c.queued.load(Relaxed),
        ),
        (
            "webhook_events_delivered_total",
            "counter",
            "Webhook events answered with 2xx.",
            c.delivered.load(Relaxed),
        ),
        (
            "webhook_retries_total",
            "counter",
            "Webhook attempts retried (connection error, timeout, 5xx, 429).",
            c.retried.load(Relaxed),
        ),
        (
            "webhook_events_failed_total",
            "counter",
            "Webhook events given up (retries exhausted, or refused).",
            c.failed.load(Relaxed),
        ),
        (
            "webhook_events_dropped_total",
            "counter",
            "Webhook events dropped because the queue was full.",
            c.dropped.load(Relaxed),
        ),
        (
            "webhook_events_skipped_total",
            "counter",
            "Offline events not sent: the user was online on another hub.",
            c.skipped.load(Relaxed),
        ),
        (
            "webhook_queue_depth",
            "gauge",
            "Webhook events waiting in the queue.",
            w.depth() as u64,
        ),
        (
            "webhook_in_flight",
            "gauge",
            "Webhook events being delivered or waiting to retry.",
            w.in_flight() as u64,
        ),
    ] {
        let _ = write!(
            out,
            "# HELP channelbox_{name} {help}\n# TYPE channelbox_{name} {kind}\nchannelbox_{name} {value}\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_keeps_whole_characters() {
        let long = "é".repeat(PREVIEW_CHARS + 5);
        assert_eq!(preview(&long).chars().count(), PREVIEW_CHARS);
        assert_eq!(preview("short"), "short");
    }

    #[test]
    fn a_url_without_a_secret_is_refused_and_no_url_is_off() {
        let hub = Hub::new(channelbox::Config::default()).unwrap();
        let mut config = Config::default();
        assert!(Webhooks::from_config(&config, &hub, "n").unwrap().is_none());
        config.webhook_url = Some("http://127.0.0.1:9/hook".into());
        let err = Webhooks::from_config(&config, &hub, "n").unwrap_err();
        assert!(err.to_string().contains("--webhook-secret"), "{err}");
        config.webhook_secret = Some(String::new());
        assert!(Webhooks::from_config(&config, &hub, "n").is_err());
        config.webhook_url = Some("ftp://example/".into());
        config.webhook_secret = Some("s".into());
        assert!(Webhooks::from_config(&config, &hub, "n").is_err());
    }

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let hub = Hub::new(channelbox::Config::default()).unwrap();
        let config = Config {
            webhook_url: Some("http://127.0.0.1:9/".into()),
            webhook_secret: Some("Jefe".into()),
            ..Config::default()
        };
        let w = Webhooks::from_config(&config, &hub, "n").unwrap().unwrap();
        assert_eq!(
            w.signature(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
