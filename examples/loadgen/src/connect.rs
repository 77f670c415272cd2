//! Opening connections: where (loopback only), as whom (JWT in a header or the query), when
//! one counts as joined (the protocol's readiness condition), and how many at a time.

use crate::cli::{AuthMode, Common, Protocol, Ready};
use crate::wire;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server under test and how every connection of the run reaches it.
pub struct Target {
    /// `--url` without a trailing slash.
    base: String,
    /// Path template with `{room}` and `{user}`.
    path: String,
    pub protocol: Protocol,
    /// `--token`: one fixed token for everyone, preferred over minting.
    token: Option<String>,
    /// `--jwt-secret`: mint a token per user.
    jwt_secret: Option<String>,
    auth: AuthMode,
    ready: Ready,
}

impl Target {
    /// The target of `c`; an error when the URL is not a loopback `ws://` URL.
    pub fn new(c: &Common) -> Result<Target, String> {
        check_loopback(&c.url)?;
        let path = c.path.clone().unwrap_or_else(|| {
            match c.protocol {
                Protocol::Seed => "/chat/{room}",
                Protocol::Socketio => {
                    "/socket.io/?EIO=4&transport=websocket&room={room}&user={user}"
                }
                Protocol::Rawws => "/raw/{room}?user={user}",
            }
            .to_string()
        });
        Ok(Target {
            base: c.url.trim_end_matches('/').to_string(),
            path,
            protocol: c.protocol,
            token: c.token.clone(),
            jwt_secret: c.jwt_secret.clone(),
            auth: c.auth,
            ready: c.ready,
        })
    }

    /// The token `user` sends, if any (none with `--auth none`).
    fn token_for(&self, user: &str) -> Option<String> {
        if self.auth == AuthMode::None {
            return None;
        }
        if let Some(t) = &self.token {
            return Some(t.clone());
        }
        self.jwt_secret.as_ref().map(|s| wire::mint_jwt(s, user))
    }

    /// The URL `user` connects to in `room`, with the token in the query when `--auth` says so.
    fn url(&self, room: &str, user: &str, token: Option<&str>) -> String {
        let mut url = format!(
            "{}{}",
            self.base,
            self.path.replace("{room}", room).replace("{user}", user)
        );
        if let (Some(t), AuthMode::Query | AuthMode::Both) = (token, self.auth) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("token=");
            url.push_str(t);
        }
        url
    }

    /// Connect `user` to `room` and wait until it has joined.
    pub async fn connect(&self, room: &str, user: &str) -> Result<Ws, String> {
        let token = self.token_for(user);
        let url = self.url(room, user, token.as_deref());
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad url {url}: {e}"))?;
        if let (Some(t), AuthMode::Header | AuthMode::Both) = (&token, self.auth) {
            let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())?;
            req.headers_mut().insert("Authorization", v);
        }
        // Small read buffer: tungstenite zero-fills it on every read (the 128 KiB default costs CPU per frame) and it dominates client memory at 5000 conns.
        let cfg = WebSocketConfig::default()
            .read_buffer_size(4 << 10)
            .write_buffer_size(0);
        let (mut ws, _resp) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        self.join(&mut ws).await?;
        Ok(ws)
    }

    /// Protocol handshake plus the readiness condition: on return the connection is in its room.
    async fn join(&self, ws: &mut Ws) -> Result<(), String> {
        let mut sio_connected = self.protocol != Protocol::Socketio;
        if sio_connected && self.effective_ready() == Ready::Connect {
            return Ok(());
        }
        while let Some(frame) = ws.next().await {
            let frame = frame.map_err(|e| format!("join: {e}"))?;
            let text = match &frame {
                Message::Text(t) => t.as_str(),
                Message::Close(c) => return Err(format!("closed during join: {c:?}")),
                _ => continue,
            };
            if self.protocol == Protocol::Socketio {
                if text.starts_with('0') {
                    ws.send(Message::text("40"))
                        .await
                        .map_err(|e| format!("sio connect: {e}"))?;
                    continue;
                }
                if text == "2" {
                    ws.send(Message::text("3"))
                        .await
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                if text.starts_with("44") {
                    return Err(format!("socket.io connect refused: {text}"));
                }
                if text.starts_with("40") {
                    sio_connected = true;
                    if matches!(self.effective_ready(), Ready::Connect) {
                        return Ok(());
                    }
                    continue;
                }
            }
            if !sio_connected {
                continue;
            }
            match self.effective_ready() {
                Ready::FirstFrame | Ready::Connect | Ready::Auto => return Ok(()),
                Ready::History => {
                    if wire::is_history(text.as_bytes()) {
                        return Ok(());
                    }
                }
            }
        }
        Err("connection ended during join".into())
    }

    /// `--ready auto` resolved for the protocol.
    fn effective_ready(&self) -> Ready {
        match (self.ready, self.protocol) {
            (Ready::Auto, Protocol::Seed) => Ready::History,
            (Ready::Auto, Protocol::Socketio) => Ready::Connect,
            (Ready::Auto, Protocol::Rawws) => Ready::FirstFrame,
            (r, _) => r,
        }
    }
}

/// `Ok` for a `ws://` URL whose host is loopback (127.0.0.0/8, `::1`, `localhost`).
pub fn check_loopback(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("refusing a URL with user info: {url}"));
    }
    let host = if authority.starts_with('[') {
        authority
            .split(']')
            .next()
            .unwrap_or("")
            .trim_start_matches('[')
            .to_string()
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    let ok = host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.is_loopback())
            .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "refusing non-loopback host {host:?}: this harness targets 127.0.0.0/8 / ::1 only"
        ))
    }
}

/// Open `jobs` connections in batches of `batch`, pausing between batches.
/// `spawn` is called with the job index and must report (via the returned oneshot) when joined.
/// Returns how many joined, and an error line for each that did not.
pub async fn connect_in_batches<F>(
    jobs: usize,
    batch: usize,
    pause: Duration,
    deadline: Instant,
    mut spawn: F,
) -> (usize, Vec<String>)
where
    F: FnMut(usize) -> oneshot::Receiver<Result<(), String>>,
{
    let mut ok = 0usize;
    let mut errors: Vec<String> = Vec::new();
    let mut i = 0usize;
    while i < jobs {
        if Instant::now() >= deadline {
            errors.push(format!(
                "connect phase hit the deadline after {i} of {jobs}"
            ));
            break;
        }
        let end = (i + batch.max(1)).min(jobs);
        let waits: Vec<_> = (i..end).map(&mut spawn).collect();
        for w in waits {
            match w.await {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push("connection task died".into()),
            }
        }
        i = end;
        if i < jobs && !pause.is_zero() {
            sleep(pause).await;
        }
    }
    (ok, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn target(args: &[&str]) -> Target {
        let argv = ["loadgen", "fanout"].iter().chain(args.iter());
        let Cmd::Fanout(a) = Cli::try_parse_from(argv).unwrap().cmd else {
            unreachable!()
        };
        Target::new(&a.c).unwrap()
    }

    #[test]
    fn only_loopback_hosts_are_accepted() {
        for ok in [
            "ws://127.0.0.1:8000",
            "ws://127.1.2.3/",
            "ws://localhost:1",
            "ws://[::1]:8000/x",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ws://10.0.0.1:8000",
            "ws://192.168.1.2",
            "ws://example.com",
            "ws://127.0.0.1.example.com:80",
            "ws://user@10.0.0.1:80",
            "ws://[::1]@10.0.0.1/",
            "ws://10.0.0.1?x=127.0.0.1",
            "wss://127.0.0.1:443",
            "http://127.0.0.1",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_protocol_has_its_path_and_readiness() {
        let seed = target(&["--url", "ws://127.0.0.1:9/"]);
        assert_eq!(seed.url("r1", "s0", None), "ws://127.0.0.1:9/chat/r1");
        assert_eq!(seed.effective_ready(), Ready::History);
        let sio = target(&["--protocol", "socketio"]);
        assert_eq!(
            sio.url("r1", "s0", None),
            "ws://127.0.0.1:8000/socket.io/?EIO=4&transport=websocket&room=r1&user=s0"
        );
        assert_eq!(sio.effective_ready(), Ready::Connect);
        let raw = target(&["--protocol", "rawws", "--ready", "history"]);
        assert_eq!(
            raw.url("r1", "s0", None),
            "ws://127.0.0.1:8000/raw/r1?user=s0"
        );
        assert_eq!(raw.effective_ready(), Ready::History);
    }

    #[test]
    fn the_token_goes_where_auth_says() {
        let header = target(&["--token", "T"]);
        assert_eq!(header.token_for("s0").as_deref(), Some("T"));
        assert_eq!(
            header.url("r", "s0", Some("T")),
            "ws://127.0.0.1:8000/chat/r"
        );
        let query = target(&["--token", "T", "--auth", "query"]);
        assert_eq!(
            query.url("r", "s0", Some("T")),
            "ws://127.0.0.1:8000/chat/r?token=T"
        );
        let both = target(&["--protocol", "rawws", "--token", "T", "--auth", "both"]);
        assert_eq!(
            both.url("r", "u", Some("T")),
            "ws://127.0.0.1:8000/raw/r?user=u&token=T"
        );
        assert_eq!(
            target(&["--token", "T", "--auth", "none"]).token_for("s0"),
            None
        );
        assert_eq!(target(&[]).token_for("s0"), None);
        let minted = target(&["--jwt-secret", "s3cret"])
            .token_for("alice")
            .unwrap();
        assert_eq!(minted.split('.').count(), 3);
    }

    #[tokio::test]
    async fn batches_count_joins_and_name_failures() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut spawned = Vec::new();
        let (ok, errors) = connect_in_batches(5, 2, Duration::ZERO, deadline, |i| {
            spawned.push(i);
            let (tx, rx) = oneshot::channel();
            match i {
                1 => tx.send(Err(format!("s{i}: refused"))).unwrap(),
                3 => drop(tx),
                _ => tx.send(Ok(())).unwrap(),
            }
            rx
        })
        .await;
        assert_eq!(spawned, [0, 1, 2, 3, 4]);
        assert_eq!(ok, 3);
        assert_eq!(errors, ["s1: refused", "connection task died"]);
    }

    #[tokio::test]
    async fn no_connection_starts_after_the_deadline() {
        let (ok, errors) = connect_in_batches(3, 1, Duration::ZERO, Instant::now(), |_| {
            unreachable!("past the deadline")
        })
        .await;
        assert_eq!(ok, 0);
        assert_eq!(errors, ["connect phase hit the deadline after 0 of 3"]);
    }
}
