//! A server under test for `base_protocol.rs`: the Rust hub in-process, or
//! the C chat server (`examples/c-server`) as a child process, both on a
//! loopback port and both signing with [`SECRET`], so one test body runs
//! against either.
//!
//! The C server is built with `make` the first time it is needed. When its
//! C libraries are missing the C half of every case says so and passes,
//! unless `CI=true`, where it fails. With `CBX_VALGRIND=1` the C server runs
//! under valgrind, and stopping it (SIGTERM) must give 0 errors and no
//! definite leak.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Hub, Ws, SECRET, WAIT};

/// The outbound queue both servers get: small, so a stuck reader is cut
/// off after a few hundred KiB.
pub const QUEUE_MAX_BYTES: usize = 64 * 1024;

/// How long the C server may take to start or stop (valgrind is slow).
const PROCESS_WAIT: Duration = Duration::from_secs(120);

/// A server that speaks the base protocol.
pub struct Target {
    /// `127.0.0.1:port`.
    pub addr: std::net::SocketAddr,
    server: Server,
}

enum Server {
    Rust(Hub),
    C(CServer),
}

/// The C chat server as a child process.
struct CServer {
    child: Child,
    /// valgrind's report, when it runs under valgrind.
    valgrind_log: Option<PathBuf>,
}

impl Target {
    /// The Rust hub with the limits the C server gets: no rate limit (the C
    /// server has none) and a [`QUEUE_MAX_BYTES`] queue.
    pub async fn rust() -> Target {
        let hub = Hub::start_with(|c| {
            c.messages_per_second = 0;
            c.queue_max_bytes = QUEUE_MAX_BYTES;
        })
        .await;
        Target {
            addr: hub.addr,
            server: Server::Rust(hub),
        }
    }

    /// True for the tutorial's server, which saves every join and leave
    /// notice; the hub saves those of a membership that begins or ends
    /// (PROTOCOL.md, Base): a closed socket's notice is live only.
    pub fn saves_every_notice(&self) -> bool {
        matches!(self.server, Server::C(_))
    }

    /// The C server, or `None` (after saying why) when its libraries are
    /// not installed and this is not CI.
    pub async fn c() -> Option<Target> {
        Target::c_with_secret_from(Secret::Flag).await
    }

    /// The C server given its secret by `--jwt-secret` or by
    /// `CHANNELBOX_JWT_SECRET`.
    pub async fn c_with_secret_from(secret: Secret) -> Option<Target> {
        let exe = c_server_exe()?;
        Some(start_c_server(&exe, secret).await)
    }

    /// `ws://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Connects with `?token=`; `Err(status)` when the upgrade is refused.
    pub async fn try_ws(&self, path: &str, token: &str) -> Result<Client, u16> {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.try_request(&format!("{path}{sep}token={token}"), None)
            .await
    }

    /// Connects to `path`, with `Authorization: Bearer` when `bearer` is
    /// given; `Err(status)` when the upgrade is refused.
    pub async fn try_request(&self, path: &str, bearer: Option<&str>) -> Result<Client, u16> {
        let mut request = self.url(path).into_client_request().expect("request");
        if let Some(token) = bearer {
            let value = format!("Bearer {token}").parse().expect("header");
            request.headers_mut().insert("authorization", value);
        }
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
            Ok(Ok((ws, _))) => Ok(Client { ws }),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                Err(response.status().as_u16())
            }
            Ok(Err(e)) => panic!("connect {path}: {e}"),
            Err(_) => panic!("connect {path}: timed out"),
        }
    }

    /// Connects (the upgrade must be accepted).
    pub async fn ws(&self, path: &str, token: &str) -> Client {
        self.try_ws(path, token)
            .await
            .unwrap_or_else(|status| panic!("{path}: HTTP {status}"))
    }

    /// Stops the server; the C server must exit cleanly (and, under
    /// valgrind, with no error and no definite leak).
    pub async fn stop(self) {
        self.stop_with(libc::SIGTERM).await;
    }

    /// Stops the server; the C server with `signal` (SIGTERM or SIGINT).
    pub async fn stop_with(self, signal: libc::c_int) {
        match self.server {
            Server::Rust(hub) => hub.stop().await,
            Server::C(c) => c.stop(signal).await,
        }
    }
}

/// Frames of the Rust hub's extensions that a base client ignores (read
/// receipts after `history`, typing).
const EXTENSION_FRAMES: [&str; 2] = ["reads", "typing"];

/// A client socket: frames as text (to compare bytes) or JSON.
pub struct Client {
    pub ws: Ws,
}

/// What came next on a socket.
#[derive(Debug, PartialEq)]
pub enum Next {
    Text(String),
    Closed(Option<u16>),
    Nothing,
}

impl Client {
    /// The next text frame or close within `wait` (pings and pongs skipped).
    pub async fn next_within(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        for _ in 0..1000 {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Next::Nothing,
                Ok(None | Some(Err(_))) => return Next::Closed(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    let ty = serde_json::from_str::<Value>(&t).map(|v| v["type"].clone());
                    if !ty.is_ok_and(|ty| EXTENSION_FRAMES.iter().any(|e| ty == *e)) {
                        return Next::Text(t.to_string());
                    }
                }
                Ok(Some(Ok(Message::Close(c)))) => {
                    return Next::Closed(c.map(|c| u16::from(c.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
        Next::Nothing
    }

    /// The next text frame, as sent.
    pub async fn text(&mut self) -> String {
        match self.next_within(WAIT).await {
            Next::Text(t) => t,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON.
    pub async fn frame(&mut self) -> Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Reads until the close (at most 100,000 frames); its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        for _ in 0..100_000 {
            match self.next_within(WAIT).await {
                Next::Text(_) => continue,
                Next::Closed(code) => return code,
                Next::Nothing => panic!("no close within {WAIT:?}"),
            }
        }
        panic!("no close after 100,000 frames");
    }

    /// True when no frame arrives within `ms`.
    pub async fn quiet(&mut self, ms: u64) -> bool {
        self.next_within(Duration::from_millis(ms)).await == Next::Nothing
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.ws.close(None)).await;
    }
}

/// How the C server is given [`SECRET`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// `--jwt-secret`.
    Flag,
    /// `CHANNELBOX_JWT_SECRET`.
    Env,
}

/// The C server's binary, built if need be; `None` (after saying why) when
/// its libraries are missing and this is not CI.
pub fn c_server_exe() -> Option<PathBuf> {
    match c_server_binary() {
        Ok(exe) => Some(exe),
        Err(Missing(why)) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "CI=true and the C server cannot be built: {why}");
            // Straight to stderr: the harness captures `eprintln!`.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n*** SKIPPED: the C chat server cannot be built: {why} ***\n").as_bytes(),
            );
            None
        }
    }
}

/// Why the C server cannot be built here (a missing tool or library).
struct Missing(String);

/// Builds `examples/c-server/chat-server` once per test process.
fn c_server_binary() -> Result<PathBuf, Missing> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build_c_server).clone().map_err(Missing)
}

fn build_c_server() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../c-server");
    let have = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("cc", &["--version"]) || !have("make", &["--version"]) {
        return Err("cc or make is not installed".into());
    }
    let libs = ["libwebsockets", "jansson", "libjwt"];
    if !have("pkg-config", &["--exists", libs[0], libs[1], libs[2]]) {
        return Err(format!(
            "pkg-config does not find {libs:?} (apt-get install pkg-config \
             libwebsockets-dev libjansson-dev libjwt-dev uthash-dev)"
        ));
    }
    if !Path::new("/usr/include/uthash.h").exists() {
        return Err("uthash.h is missing (apt-get install uthash-dev)".into());
    }
    // The tools are there: from here on a failure is a real one.
    let out = std::process::Command::new("make")
        .arg("-C")
        .arg(&dir)
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make -C examples/c-server failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(dir.join("chat-server"))
}

fn valgrind_wanted() -> bool {
    std::env::var("CBX_VALGRIND").is_ok_and(|v| v == "1")
}

/// Starts the server on a free port (`--port 0`) and reads the port from
/// the line it prints once it listens.
async fn start_c_server(exe: &Path, secret: Secret) -> Target {
    let queue = QUEUE_MAX_BYTES.to_string();
    let mut args = vec!["--port", "0", "--queue-max-bytes", &queue];
    if secret == Secret::Flag {
        args.extend(["--jwt-secret", SECRET]);
    }
    let mut valgrind_log = None;
    let mut command = if valgrind_wanted() {
        let log = std::env::temp_dir().join(format!(
            "chat-server-valgrind-{}-{}.log",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut c = Command::new("valgrind");
        c.args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(format!("--log-file={}", log.display()))
        .arg(exe);
        valgrind_log = Some(log);
        c
    } else {
        Command::new(exe)
    };
    if secret == Secret::Env {
        command.env("CHANNELBOX_JWT_SECRET", SECRET);
    }
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start chat-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PROCESS_WAIT, lines.next_line())
        .await
        .expect("chat-server started in time")
        .expect("read stdout")
        .expect("chat-server printed its port");
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Target {
        addr: ([127, 0, 0, 1], port).into(),
        server: Server::C(CServer {
            child,
            valgrind_log,
        }),
    }
}

impl CServer {
    /// `signal`, then the exit status: 0, or valgrind's report.
    async fn stop(mut self, signal: libc::c_int) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: signals our own child process.
        unsafe { libc::kill(pid, signal) };
        let status = tokio::time::timeout(PROCESS_WAIT, self.child.wait())
            .await
            .expect("chat-server stopped in time")
            .expect("wait");
        let report = match &self.valgrind_log {
            Some(log) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let _ = std::fs::remove_file(log);
                text
            }
            None => String::new(),
        };
        assert!(
            status.success(),
            "chat-server exited with {status}\n{report}"
        );
        if self.valgrind_log.is_some() {
            assert!(
                report.contains("ERROR SUMMARY: 0 errors"),
                "valgrind:\n{report}"
            );
            println!("chat-server under valgrind: 0 errors, no definite leak");
        }
    }
}
