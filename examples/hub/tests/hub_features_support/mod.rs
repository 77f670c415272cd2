//! Shared by tests/hub_features_*.rs: a real hub on 127.0.0.1:0, tokens,
//! WebSocket clients and a minimal HTTP client. Every wait is bounded.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use channelbox_hub::auth::Claims;
use channelbox_hub::server::{self, AppState, Config};

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Hub {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Hub {
    pub async fn start() -> Hub {
        Hub::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            jwt_secret: Some("test-secret".into()),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        change(&mut config);
        Hub::start_config(config, dir).await
    }

    /// Stops this hub and starts a new one with the same settings and
    /// data directory (a restart).
    pub async fn restart(mut self) -> Hub {
        let config = self.state.config.clone();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        self.stop().await;
        Hub::start_config(config, dir).await
    }

    async fn start_config(config: Config, dir: tempfile::TempDir) -> Hub {
        let state = AppState::new(config).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let _ = server::run_with_state(listener, state, async move {
                    let _ = rx.await;
                })
                .await;
            }
        });
        Hub {
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// A token for `sub` (username = sub unless given), optionally admin.
    pub fn token(&self, sub: &str, username: Option<&str>, admin: bool) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        self.state.auth.mint(&Claims {
            sub: sub.into(),
            username: username.unwrap_or(sub).into(),
            roles: if admin { vec!["admin".into()] } else { vec![] },
            exp,
        })
    }

    pub fn user(&self, sub: &str) -> String {
        self.token(sub, None, false)
    }

    pub fn admin(&self, sub: &str) -> String {
        self.token(sub, None, true)
    }

    /// Connects to `path` (e.g. `/chat/lobby`); Err(status) when refused.
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

    /// One HTTP request; returns (status, headers text, body bytes).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        req.push_str("\r\n");
        let fut = async {
            let mut s = TcpStream::connect(self.addr).await.expect("connect");
            s.write_all(req.as_bytes()).await.expect("write");
            // A server may answer (413) before reading the whole body.
            let _ = s.write_all(body).await;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            out
        };
        let raw = tokio::time::timeout(WAIT, fut)
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

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
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
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
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
