//! Helpers for the hub's tests: start the server in-process on
//! 127.0.0.1:0, mint tokens, talk WebSocket with tokio-tungstenite. Every
//! wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use channelbox_hub::server::{self, AppState, Config};

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestHub {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub fn config() -> Config {
    Config {
        jwt_secret: Some(SECRET.into()),
        ..Config::default()
    }
}

pub async fn start(config: Config) -> TestHub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(config).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run_with_state(
        listener,
        state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    TestHub {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestHub {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
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
                .unwrap()
                .unwrap();
        }
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
pub async fn connect(hub: &TestHub, path: &str, token: &str) -> Ws {
    try_connect(hub, path, Some(token))
        .await
        .expect("upgrade accepted")
}

/// Connects; `Err(status)` when the upgrade is refused.
pub async fn try_connect(hub: &TestHub, path: &str, token: Option<&str>) -> Result<Ws, u16> {
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

pub fn close_code_of(code: CloseCode) -> u16 {
    u16::from(code)
}

/// A plain HTTP/1.1 request over a TCP socket: (status, body).
pub async fn http(
    hub: &TestHub,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        hub.addr,
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
