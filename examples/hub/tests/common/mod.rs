//! The hub's test harness, shared by every test file: a real hub on
//! 127.0.0.1:0 with a throw-away data directory, tokens, WebSocket clients
//! (a [`Client`] with expectations, or a bare [`Ws`] with the free
//! functions) and a minimal HTTP client. Every wait is bounded by [`WAIT`].
//!
//! Each test file compiles this module on its own and uses a part of it,
//! so what one file leaves unused is not dead code.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use channelbox_hub::auth::Claims;
use channelbox_hub::server::{self, AppState};
use channelbox_hub::Config;

/// The secret every test hub signs tokens with.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A hub served in-process until [`Hub::stop`].
pub struct Hub {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Uploads and rooms.json; removed when the hub is dropped.
    _dir: tempfile::TempDir,
}

impl Hub {
    /// A hub with the default settings.
    pub async fn start() -> Hub {
        Hub::start_with(|_| {}).await
    }

    /// A hub with the default settings as `change` leaves them.
    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            jwt_secret: Some(SECRET.into()),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        change(&mut config);
        Hub::start_config(config, dir).await
    }

    /// One of several hubs on the Redis server `redis`, with node name
    /// `name` and the default settings as `change` leaves them.
    pub async fn on_redis(
        redis: &channelbox_test_support::RedisServer,
        name: &str,
        change: impl FnOnce(&mut Config),
    ) -> Hub {
        let (url, name) = (redis.url(), name.to_owned());
        Hub::start_with(move |c| {
            c.redis_url = Some(url);
            c.node_name = Some(name);
            change(c);
        })
        .await
    }

    /// Two hubs on `redis` with the default settings, named `h1` and `h2`.
    pub async fn pair_on_redis(redis: &channelbox_test_support::RedisServer) -> (Hub, Hub) {
        let h1 = Hub::on_redis(redis, "h1", |_| {}).await;
        (h1, Hub::on_redis(redis, "h2", |_| {}).await)
    }

    /// Creates a room through `POST /rooms` as `token` (201 expected) and
    /// returns its id.
    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let (status, room) = self.json("POST", "/rooms", token, Some(body)).await;
        assert_eq!(status, 201, "{room}");
        room["id"].as_str().expect("the room's id").to_owned()
    }

    /// Stops this hub and starts a new one with the same settings and
    /// data directory (a restart).
    pub async fn restart(mut self) -> Hub {
        let config = self.state.config.clone();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        let old = Arc::downgrade(&self.state);
        self.stop().await;
        // A new process finds the old one's files released; in this one
        // they stay open (redb locks them) until the last task holding the
        // old state ends, e.g. a socket still closing on a loaded machine.
        let until = tokio::time::Instant::now() + WAIT;
        while old.strong_count() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let state = loop {
            match AppState::new(config.clone()) {
                Ok(state) => break state,
                Err(e) if tokio::time::Instant::now() < until => {
                    eprintln!("restart: {e:#}; trying again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("restart: {e:#}"),
            }
        };
        Hub::start_state(state, dir).await
    }

    async fn start_config(config: Config, dir: tempfile::TempDir) -> Hub {
        Hub::start_state(AppState::new(config).expect("state"), dir).await
    }

    async fn start_state(state: Arc<AppState>, dir: tempfile::TempDir) -> Hub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run_with_state(
            listener,
            state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Hub {
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the server and waits (bounded) for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("run returned in time")
                .expect("run did not panic")
                .expect("run succeeded");
        }
    }

    /// `ws://` URL of `path` on this hub.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A token for `sub` (username = sub unless given), optionally admin.
    pub fn token(&self, sub: &str, username: Option<&str>, admin: bool) -> String {
        self.state.auth.mint(&Claims {
            sub: sub.into(),
            username: username.unwrap_or(sub).into(),
            roles: if admin { vec!["admin".into()] } else { vec![] },
            exp: now() + 3600,
        })
    }

    /// A token for user `sub`.
    pub fn user(&self, sub: &str) -> String {
        self.token(sub, None, false)
    }

    /// A token for admin `sub`.
    pub fn admin(&self, sub: &str) -> String {
        self.token(sub, None, true)
    }

    /// Connects to `path` (e.g. `/chat/lobby`) with `?token=`;
    /// `Err(status)` when refused.
    pub async fn ws(&self, path: &str, token: &str) -> Result<Client, u16> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("ws://{}{path}{sep}token={token}", self.addr);
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await {
            Ok(Ok((ws, _))) => Ok(Client { ws }),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                Err(resp.status().as_u16())
            }
            Ok(Err(e)) => panic!("connect {path}: {e}"),
            Err(_) => panic!("connect {path}: timed out"),
        }
    }

    /// Joins a room and reads up to the `history` frame (returned).
    pub async fn join(&self, room: &str, token: &str) -> (Client, Value) {
        let mut c = self
            .ws(&format!("/chat/{room}"), token)
            .await
            .unwrap_or_else(|s| panic!("join {room}: HTTP {s}"));
        let history = c.expect("history").await;
        (c, history)
    }

    /// One HTTP/1.1 request with `headers`; returns (status, head, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        let exchange = async {
            let mut s = TcpStream::connect(self.addr).await.expect("connect");
            s.write_all(req.as_bytes()).await.expect("write");
            // A server may answer (413) before reading the whole body.
            let _ = s.write_all(body).await;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            out
        };
        let raw = tokio::time::timeout(WAIT, exchange)
            .await
            .expect("http timed out");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("http head");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut body = raw[split + 4..].to_vec();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, head, body)
    }

    /// An HTTP request with an optional bearer token and content type.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer.as_str()));
        }
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        self.request(method, path, &headers, body).await
    }

    /// An HTTP request whose answer is text: (status, body).
    pub async fn http_text(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let (status, _, body) = self.request(method, path, headers, body.as_bytes()).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// An HTTP call with a JSON body and a JSON answer.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let raw = body.map(|b| b.to_string()).unwrap_or_default();
        let ct = (!raw.is_empty()).then_some("application/json");
        let (status, _, body) = self
            .http(method, path, Some(token), ct, raw.as_bytes())
            .await;
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A valid HS256 token for `sub` (username `name`).
pub fn token(sub: &str, name: &str) -> String {
    sign(
        &json!({"sub": sub, "username": name, "exp": now() + 3600}),
        SECRET,
    )
}

pub fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Connects with `Authorization: Bearer`.
pub async fn connect(hub: &Hub, path: &str, token: &str) -> Ws {
    try_connect(hub, path, Some(token))
        .await
        .expect("upgrade accepted")
}

/// Connects; `Err(status)` when the upgrade is refused.
pub async fn try_connect(hub: &Hub, path: &str, token: Option<&str>) -> Result<Ws, u16> {
    let mut request = hub.url(path).into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Ok(Err(e)) => panic!("connect failed: {e}"),
        Err(_) => panic!("connect timed out"),
    }
}

/// Frame types of the extensions that a base client ignores.
const EXTENSION_FRAMES: [&str; 2] = ["reads", "typing"];

/// The next text frame as JSON (pings, pongs and extension frames skipped);
/// panics on close or after [`WAIT`].
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("JSON frame");
                if !EXTENSION_FRAMES.contains(&v["type"].as_str().unwrap_or("")) {
                    return v;
                }
            }
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Reads until a frame of type `ty` arrives (at most 1000 frames).
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    for _ in 0..1000 {
        let v = recv(ws).await;
        if v["type"] == ty {
            return v;
        }
    }
    panic!("no {ty} frame");
}

/// Reads until the socket closes; returns the close code (frames before it
/// are skipped, at most 100,000).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    for _ in 0..100_000 {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
    panic!("no close");
}

/// True when nothing arrives within `ms`.
pub async fn quiet(ws: &mut Ws, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), ws.next())
        .await
        .is_err()
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
}

pub struct Client {
    pub ws: Ws,
}

/// What a client saw next.
#[derive(Debug)]
pub enum Seen {
    Frame(Value),
    Closed(Option<u16>),
    Nothing,
}

impl Client {
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    /// The next frame or close within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Seen {
        let deadline = tokio::time::Instant::now() + wait;
        for _ in 0..1000 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Seen::Nothing,
                Ok(None) => return Seen::Closed(None),
                Ok(Some(Err(_))) => return Seen::Closed(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Seen::Frame(serde_json::from_str(t.as_str()).expect("json frame"))
                }
                Ok(Some(Ok(Message::Close(c)))) => {
                    return Seen::Closed(c.map(|c| u16::from(c.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
        Seen::Nothing
    }

    /// Skips frames until one of type `ty` (at most 200 frames, [`WAIT`]).
    pub async fn expect(&mut self, ty: &str) -> Value {
        self.expect_where(ty, |_| true).await
    }

    /// Skips frames until one of type `ty` that `pred` accepts.
    pub async fn expect_where(&mut self, ty: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut skipped = Vec::new();
        for _ in 0..200 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Seen::Frame(f) if f["type"] == ty && pred(&f) => return f,
                Seen::Frame(f) => skipped.push(f),
                other => panic!("waiting for {ty}: {other:?}; skipped {skipped:?}"),
            }
        }
        panic!("no {ty} frame in 200; skipped {skipped:?}")
    }

    /// Asserts no frame of type `ty` arrives within `wait`.
    pub async fn expect_no(&mut self, ty: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        for _ in 0..200 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Seen::Frame(f) if f["type"] == ty => panic!("unexpected {ty}: {f}"),
                Seen::Frame(_) => continue,
                _ => return,
            }
        }
    }

    /// The close code within [`WAIT`], skipping frames.
    pub async fn expect_close(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for _ in 0..500 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Seen::Closed(code) => return code,
                Seen::Frame(_) => continue,
                Seen::Nothing => panic!("socket was not closed"),
            }
        }
        panic!("socket was not closed")
    }

    /// Sends a chat message and returns its id from the `ack`.
    pub async fn say(&mut self, content: &str) -> u64 {
        self.say_with(json!({"type": "message", "content": content}))
            .await
    }

    /// Sends a message frame (a `client_id` is added) and returns the acked id.
    pub async fn say_with(&mut self, mut frame: Value) -> u64 {
        let client_id = format!("c{}", rand::random::<u64>());
        frame["client_id"] = json!(client_id);
        self.send(frame).await;
        let ack = self
            .expect_where("ack", |f| f["client_id"] == client_id.as_str())
            .await;
        ack["id"].as_u64().expect("ack id")
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(
            WAIT,
            self.ws
                .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })),
        )
        .await;
    }
}

/// The ids of a `history` frame's messages of type `message`.
pub fn message_ids(history: &Value) -> Vec<u64> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "message")
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

/// The saved entry `id` of a room, read from the core's history.
pub fn saved(hub: &Hub, room: &str, id: u64) -> Value {
    let m = hub
        .state
        .hub
        .history_get(&format!("room:{room}"), id)
        .expect("saved message");
    serde_json::from_slice(m.data()).unwrap()
}

/// The hub binary next to this test's (`target/<profile>/examples/hub`),
/// which `cargo test -p channelbox-hub` builds with the tests.
pub fn hub_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/hub
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("hub"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} missing: cargo build --example hub",
        bin.display()
    );
    bin
}

/// A free port on 127.0.0.1 (bound, then let go for a child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process of the built hub binary on `127.0.0.1`; killed (SIGKILL, by
/// PID) when dropped, also when the test fails.
pub struct HubChild {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl HubChild {
    /// Starts the hub binary with `--port` and what `configure` adds
    /// (its output goes nowhere unless `configure` says otherwise), without
    /// waiting for it to listen.
    pub fn spawn(configure: impl FnOnce(&mut std::process::Command)) -> HubChild {
        use std::process::{Command, Stdio};
        let port = free_port();
        let mut command = Command::new(hub_binary());
        command
            .args(["--port", &port.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        configure(&mut command);
        HubChild {
            child: command.spawn().expect("start the hub binary"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// [`HubChild::spawn`], then waits (at most 15 s) until it accepts
    /// connections.
    pub fn start(configure: impl FnOnce(&mut std::process::Command)) -> HubChild {
        let hub = HubChild::spawn(configure);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(hub.addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the hub did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        hub
    }

    /// SIGKILL (`Child::kill` on Unix), this PID only, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubChild {
    fn drop(&mut self) {
        self.kill();
    }
}
