//! Transport and auth hardening (issue 12): what a hostile client can hold
//! or skip without logging in or while misbehaving. Real sockets on
//! 127.0.0.1; every time limit is a small flag value, every wait bounded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server ends the connection; `Some(bytes)` when it did
/// within `limit`, `None` when it was still open.
async fn read_to_end_within(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok().map(|_| out)
}

/// Sends `chunks` one every `every` while waiting for the server to end the
/// connection; the time it took, or `None` if it outlived `limit`.
async fn trickle_until_closed(
    s: &mut TcpStream,
    chunk: &[u8],
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        if s.write_all(chunk).await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // An error response (408) before the close is fine.
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    None
}

/// A WebSocket opened by hand, so the test decides what the client answers
/// (nothing, garbage): the handshake is read byte by byte, so no frame
/// bytes are consumed with it.
async fn raw_ws(hub: &Hub, path: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(hub.addr).await.expect("connect");
    let request = format!(
        "GET {path}?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        hub.addr
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, s.read_exact(&mut byte))
            .await
            .expect("handshake in time")
            .expect("handshake");
        head.push(byte[0]);
        assert!(head.len() < 4096, "handshake too long");
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
    s
}

/// A client frame (masked, FIN set).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The server frames in `raw` (unmasked): (opcode, payload).
fn server_frames(raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut i = 0;
    while i + 2 <= raw.len() {
        let opcode = raw[i] & 0x0f;
        let (len, start) = match raw[i + 1] & 0x7f {
            126 => (u16::from_be_bytes([raw[i + 2], raw[i + 3]]) as usize, i + 4),
            127 => (
                u64::from_be_bytes(raw[i + 2..i + 10].try_into().unwrap()) as usize,
                i + 10,
            ),
            n => (n as usize, i + 2),
        };
        if start + len > raw.len() {
            break;
        }
        frames.push((opcode, raw[start..start + len].to_vec()));
        i = start + len;
    }
    frames
}

/// The close code of the close frame among `frames`.
fn close_code_of(frames: &[(u8, Vec<u8>)]) -> Option<u16> {
    frames
        .iter()
        .find(|(op, _)| *op == 0x8)
        .and_then(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
}

const GET_HEALTHZ_HEAD_START: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n";

#[tokio::test]
async fn a_request_trickling_its_headers_is_cut_after_the_header_timeout() {
    let hub = Hub::start_with(|c| {
        c.header_timeout_ms = 300;
        c.idle_timeout_ms = 60_000;
    })
    .await;
    // Plain HTTP: one header line every 100 ms, never the blank line.
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(GET_HEALTHZ_HEAD_START).await.unwrap();
    let took = trickle_until_closed(
        &mut s,
        b"X-Slow: 1\r\n",
        Duration::from_millis(100),
        Duration::from_secs(5),
    )
    .await
    .expect("the stalled HTTP request was never cut");
    assert!(
        took >= Duration::from_millis(150),
        "cut too early: {took:?}"
    );
    // The WebSocket path, which does its own handshake.
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(b"GET /chat/lobby HTTP/1.1\r\nHost: hub\r\n")
        .await
        .unwrap();
    trickle_until_closed(
        &mut s,
        b"X-Slow: 1\r\n",
        Duration::from_millis(100),
        Duration::from_secs(5),
    )
    .await
    .expect("the stalled WebSocket handshake was never cut");
    // A socket that never says anything.
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    read_to_end_within(&mut s, Duration::from_secs(5))
        .await
        .expect("a silent socket was never cut");
    hub.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let hub = Hub::start_with(|c| {
        c.header_timeout_ms = 60_000;
        c.idle_timeout_ms = 300;
    })
    .await;
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let raw = read_to_end_within(&mut s, Duration::from_secs(5))
        .await
        .expect("the idle keep-alive connection was never closed");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(250));
    hub.stop().await;
}

#[tokio::test]
async fn a_request_trickling_its_body_is_cut_after_the_body_timeout() {
    let hub = Hub::start_with(|c| {
        c.header_timeout_ms = 60_000;
        c.idle_timeout_ms = 60_000;
        c.body_timeout_ms = 300;
        c.allow_guest = true;
    })
    .await;
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(
        b"POST /auth/guest HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    let took = trickle_until_closed(
        &mut s,
        b" ",
        Duration::from_millis(100),
        Duration::from_secs(5),
    )
    .await
    .expect("the stalled body was never cut");
    assert!(
        took >= Duration::from_millis(150),
        "cut too early: {took:?}"
    );
    hub.stop().await;
}

/// Opens `n` sockets to `addr` that stall in their request headers,
/// alternating the HTTP path, the WebSocket path and silence.
async fn stalled_sockets(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head: &[u8] = match i % 3 {
            0 => GET_HEALTHZ_HEAD_START,
            1 => b"GET /chat/lobby HTTP/1.1\r\nHost: hub\r\n",
            _ => b"",
        };
        s.write_all(head).await.expect("write");
        held.push(s);
    }
    held
}

const LOW_NOFILE_TEST: &str =
    "stalled_connections_do_not_starve_healthz_or_joins_under_a_low_open_files_limit";

/// 300 stalled sockets against a hub whose process may open 128 files:
/// without a cap they would take its last descriptors; the pending cap
/// cuts the oldest instead, so `/healthz` and a join still work. The hub
/// runs in a child process (this test again, with `CBX_LOW_NOFILE`): the
/// limit is its own, and the stalled sockets' client ends are not in it.
#[test]
fn stalled_connections_do_not_starve_healthz_or_joins_under_a_low_open_files_limit() {
    if std::env::var_os("CBX_LOW_NOFILE").is_some() {
        return low_nofile_hub();
    }
    use std::io::{BufRead, Write};
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            LOW_NOFILE_TEST,
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CBX_LOW_NOFILE", "128")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the child test");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: std::net::SocketAddr = lines
        .by_ref()
        .map_while(Result::ok)
        // The harness may print the test's name on the same line.
        .find_map(|l| l.split_once("HUB ").map(|(_, a)| a.trim().parse().unwrap()))
        .expect("the child's hub address");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(async {
        let held = stalled_sockets(addr, 300).await;
        // Let the hub accept (and cut) them all.
        tokio::time::sleep(Duration::from_millis(500)).await;
        held
    });
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    drop(stdin);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    drop(held);
    assert!(status.success(), "child failed:\n{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("1 passed")), "{rest:?}");
}

/// The child's half: a hub limited to 128 open files; once the parent
/// holds its stalled sockets, `/healthz` and a join must work.
fn low_nofile_hub() {
    let limit = libc::rlimit {
        rlim_cur: 128,
        rlim_max: 128,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let hub = Hub::start_with(|c| {
            c.header_timeout_ms = 60_000;
            c.max_pending_connections = 64;
        })
        .await;
        println!("HUB {}", hub.addr);
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        assert!(hub.state.pending.len() <= 64);
        let (status, stats) = hub.json("GET", "/stats", &hub.user("ops"), None).await;
        assert_eq!(status, 200);
        assert!(
            stats["pending_evictions"].as_u64().unwrap() >= 300 - 64,
            "{stats}"
        );
        let (status, body) = hub.http_text("GET", "/healthz", &[], "").await;
        assert_eq!(status, 200, "{body}");
        let (mut alice, history) = hub.join("lobby", &hub.user("alice")).await;
        assert_eq!(history["type"], "history");
        alice
            .send(json!({"type": "message", "content": "still here"}))
            .await;
        alice.expect("message").await;
        hub.stop().await;
    });
}

#[tokio::test]
async fn shutdown_does_not_wait_for_stalled_sockets() {
    let hub = Hub::start_with(|c| c.header_timeout_ms = 60_000).await;
    let _held = stalled_sockets(hub.addr, 6).await;
    while hub.state.pending.len() < 6 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    hub.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_1001() {
    let hub = Hub::start_with(|c| c.ping_interval = 0.2).await;
    let mut s = raw_ws(&hub, "/presence", &hub.user("ghost")).await;
    // Never read while the hub pings (so nothing answers); then collect.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let raw = read_to_end_within(&mut s, WAIT)
        .await
        .expect("the silent client was never closed");
    let frames = server_frames(&raw);
    let pings = frames.iter().filter(|(op, _)| *op == 0x9).count();
    assert_eq!(pings, 2, "two pings, then the close: {frames:?}");
    assert_eq!(close_code_of(&frames), Some(1001));
    hub.stop().await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let hub = Hub::start_with(|c| c.ping_interval = 0.1).await;
    let (mut alice, _) = hub.join("lobby", &hub.user("alice")).await;
    // tungstenite answers each ping as it reads: ten intervals, no close.
    let until = Instant::now() + Duration::from_millis(1000);
    for _ in 0..100 {
        match alice
            .next_within(until.saturating_duration_since(Instant::now()))
            .await
        {
            Seen::Nothing => break,
            Seen::Frame(_) => continue,
            Seen::Closed(code) => panic!("closed with {code:?} while answering pings"),
        }
    }
    alice
        .send(json!({"type": "message", "content": "alive"}))
        .await;
    alice.expect("message").await;
    hub.stop().await;
}

#[tokio::test]
async fn pings_are_off_at_interval_zero() {
    let hub = Hub::start_with(|c| c.ping_interval = 0.0).await;
    let mut s = raw_ws(&hub, "/presence", &hub.user("quiet")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf))
        .await
        .expect("the users frame")
        .unwrap();
    let frames = server_frames(&buf[..n]);
    assert!(frames.iter().all(|(op, _)| *op == 0x1), "{frames:?}");
    hub.stop().await;
}

#[tokio::test]
async fn a_user_holds_at_most_max_connections_per_user_sockets() {
    let hub = Hub::start_with(|c| c.max_connections_per_user = 3).await;
    let token = hub.user("hoarder");
    let mut open = Vec::new();
    for path in ["/chat/a", "/presence", "/dm/bob"] {
        open.push(hub.ws(path, &token).await.expect("under the cap"));
    }
    assert_eq!(hub.ws("/chat/b", &token).await.err(), Some(429));
    // Someone else is not affected.
    hub.ws("/chat/b", &hub.user("other"))
        .await
        .expect("other user");
    // A closed socket gives its slot back.
    open.pop().unwrap().close().await;
    let deadline = Instant::now() + WAIT;
    loop {
        match hub.ws("/chat/b", &token).await {
            Ok(_) => break,
            Err(429) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(status) => panic!("slot never came back: {status}"),
        }
    }
    hub.stop().await;
}

#[tokio::test]
async fn guest_tokens_are_limited_per_address_and_carry_64_random_bits() {
    let hub = Hub::start_with(|c| {
        c.allow_guest = true;
        c.guest_tokens_per_minute = 3;
    })
    .await;
    let guest = || async {
        let (status, _, body) = hub
            .http(
                "POST",
                "/auth/guest",
                None,
                Some("application/json"),
                br#"{"username":"Eve"}"#,
            )
            .await;
        (
            status,
            serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    for _ in 0..3 {
        let (status, body) = guest().await;
        assert_eq!(status, 200, "{body}");
        let id = body["user_id"].as_str().unwrap();
        let tag = id.strip_prefix("guest-Eve-").expect("guest id shape");
        assert_eq!(tag.len(), 16, "{id}");
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    let (status, body) = guest().await;
    assert_eq!(status, 429, "{body}");
    hub.stop().await;
}

#[tokio::test]
async fn a_token_whose_nbf_is_in_the_future_is_refused() {
    let hub = Hub::start().await;
    let later = sign(
        &json!({"sub": "early", "exp": now() + 7200, "nbf": now() + 3600}),
        SECRET,
    );
    assert_eq!(hub.ws("/chat/lobby", &later).await.err(), Some(401));
    let (status, _) = hub.json("GET", "/rooms", &later, None).await;
    assert_eq!(status, 401);
    let valid = sign(
        &json!({"sub": "ontime", "exp": now() + 7200, "nbf": now() - 10}),
        SECRET,
    );
    hub.ws("/chat/lobby", &valid)
        .await
        .expect("nbf in the past");
    hub.stop().await;
}

#[test]
fn secrets_shorter_than_32_bytes_are_flagged() {
    use channelbox_hub::auth::weak_secret;
    assert!(weak_secret(b"abcdef").is_some());
    assert!(weak_secret(&[b'x'; 31]).is_some());
    assert!(weak_secret(&[b'x'; 32]).is_none());
}

#[tokio::test]
async fn a_socket_keeps_the_rights_of_its_own_token() {
    let hub = Hub::start().await;
    let carol = hub.user("carol");
    let (status, room) = hub
        .json("POST", "/rooms", &carol, Some(json!({"name": "team"})))
        .await;
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap().to_owned();
    // Bob joins with a plain token, then opens another socket as an admin.
    let (mut plain, _) = hub.join(&id, &hub.user("bob")).await;
    let (_admin, _) = hub.join("lobby", &hub.admin("bob")).await;
    // The room turns private: bob's plain socket is no longer admitted.
    let (status, body) = hub
        .json(
            "PATCH",
            &format!("/rooms/{id}"),
            &carol,
            Some(json!({"private": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(plain.expect_close().await, Some(4003));
    hub.stop().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let hub = Hub::start().await;
    let mut s = raw_ws(&hub, "/chat/lobby", &hub.user("mallory")).await;
    s.write_all(&client_frame(0x1, &[b'{', 0xff, 0xfe, b'}']))
        .await
        .unwrap();
    let raw = read_to_end_within(&mut s, WAIT)
        .await
        .expect("the socket was not closed");
    assert_eq!(close_code_of(&server_frames(&raw)), Some(1007));
    hub.stop().await;
}

#[tokio::test]
async fn a_server_side_close_ends_the_connection_promptly() {
    let hub = Hub::start_with(|c| c.max_frame_bytes = 1024).await;
    let mut s = raw_ws(&hub, "/chat/lobby", &hub.user("big")).await;
    // Too big: the hub closes with 1009; this client never answers the close.
    s.write_all(&client_frame(0x1, &[b'a'; 2000]))
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let close_seen = loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("a close in time")
            .unwrap();
        assert!(n > 0, "ended without a close frame");
        raw.extend_from_slice(&buf[..n]);
        if close_code_of(&server_frames(&raw)).is_some() {
            break Instant::now();
        }
    };
    assert_eq!(close_code_of(&server_frames(&raw)), Some(1009));
    read_to_end_within(&mut s, Duration::from_secs(5))
        .await
        .expect("the connection stayed open");
    let lag = close_seen.elapsed();
    assert!(
        lag < Duration::from_millis(1000),
        "the TCP end came {lag:?} after the close frame"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_repeated_status_is_not_broadcast_again() {
    let hub = Hub::start().await;
    let mut watcher = hub.ws("/presence", &hub.user("watcher")).await.unwrap();
    watcher.expect("users").await;
    let mut alice = hub.ws("/presence", &hub.user("alice")).await.unwrap();
    alice.expect("users").await;
    watcher
        .expect_where("status", |f| f["user_id"] == "alice")
        .await;
    for _ in 0..3 {
        alice
            .send(json!({"type": "status", "status": "away"}))
            .await;
    }
    alice
        .send(json!({"type": "status", "status": "busy"}))
        .await;
    let first = watcher.expect("status").await;
    assert_eq!(first["status"], "away", "{first}");
    let second = watcher.expect("status").await;
    assert_eq!(
        second["status"], "busy",
        "a repeated away came through: {second}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn binary_frames_count_against_the_rate_limit() {
    let hub = Hub::start_with(|c| {
        c.messages_per_second = 1;
        c.burst = 1;
    })
    .await;
    let mut s = raw_ws(&hub, "/chat/lobby", &hub.user("binary")).await;
    for _ in 0..40 {
        if s.write_all(&client_frame(0x2, b"x")).await.is_err() {
            break;
        }
    }
    let raw = read_to_end_within(&mut s, WAIT)
        .await
        .expect("a binary flood was never closed");
    assert_eq!(close_code_of(&server_frames(&raw)), Some(4008));
    hub.stop().await;
}

#[tokio::test]
async fn the_client_page_carries_a_content_security_policy() {
    let hub = Hub::start().await;
    let (status, head, body) = hub.request("GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .expect("a CSP header");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(head.contains("x-content-type-options: nosniff"));
    assert!(head.contains("referrer-policy: no-referrer"));
    // The page itself has no inline script the policy would block.
    let page = String::from_utf8_lossy(&body);
    assert!(!page.contains("<script>"), "inline script in the page");
    hub.stop().await;
}

#[tokio::test]
async fn uploads_over_the_cap_get_503_and_stalled_ones_time_out() {
    let hub = Hub::start_with(|c| {
        c.max_uploads_in_flight = 2;
        c.body_timeout_ms = 500;
        c.idle_timeout_ms = 60_000;
    })
    .await;
    let token = hub.user("uploader");
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(hub.addr).await.unwrap();
        let head = format!(
            "POST /files HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[7u8; 1000]).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = hub
        .http("POST", "/files", Some(&token), Some("text/plain"), b"hello")
        .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    for mut s in stalled {
        let raw = read_to_end_within(&mut s, WAIT)
            .await
            .expect("a stalled upload was never cut");
        let head = String::from_utf8_lossy(&raw);
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    }
    let (status, _, body) = hub
        .http("POST", "/files", Some(&token), Some("text/plain"), b"hello")
        .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    // Nothing half-written stays behind.
    let leftovers = std::fs::read_dir(hub.state.config.data_dir.join("files"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        })
        .count();
    assert_eq!(leftovers, 0);
    hub.stop().await;
}

#[tokio::test]
async fn file_links_need_no_token_in_the_url() {
    let hub = Hub::start().await;
    let token = hub.user("sharer");
    let (status, _, body) = hub
        .http("POST", "/files", Some(&token), Some("text/plain"), b"hello")
        .await;
    assert_eq!(status, 201);
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/files/{id}");
    let cookie = format!("theme=dark; cbx_files={token}");
    let (status, body) = hub
        .http_text("GET", &path, &[("Cookie", &cookie)], "")
        .await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (status, _) = hub
        .http_text("GET", &path, &[("Cookie", "cbx_files=forged")], "")
        .await;
    assert_eq!(status, 401);
    let (status, _) = hub.http_text("GET", &path, &[], "").await;
    assert_eq!(status, 401);
    hub.stop().await;
}
