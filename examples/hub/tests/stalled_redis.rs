//! A stalled Redis holds up only the calls that need it (issue 11): the
//! built hub binary on one thread (`--threads 1`, a current-thread
//! runtime), its Redis stopped with SIGSTOP, joins waiting on the room
//! check; meanwhile `/healthz` still answers and a socket already open
//! still gets its pings answered. Before, the room check blocked the only
//! thread for the engine timeout, and nothing else moved.

mod common;

use std::time::Duration;

use channelbox_test_support::RedisServer;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The redis-server's process id, as it reports it.
fn redis_pid(redis: &RedisServer) -> i32 {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut redis.raw())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("process_id in INFO")
}

/// Stops a process (SIGSTOP) until dropped (SIGCONT), also when the test
/// fails.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// `GET /healthz`: the status code.
async fn healthz(addr: std::net::SocketAddr) -> u16 {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    };
    let raw = tokio::time::timeout(common::WAIT, exchange)
        .await
        .expect("healthz answered");
    let head = String::from_utf8_lossy(&raw);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Upgrades to `/chat/{room}`: `Ok` or the refusal's HTTP status.
async fn join(addr: std::net::SocketAddr, room: &str, sub: &str) -> Result<common::Ws, u16> {
    let token = common::token(sub, sub);
    let url = format!("ws://{addr}/chat/{room}?token={token}");
    match tokio::time::timeout(common::WAIT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        Ok(Err(e)) => panic!("join {room}: {e}"),
        Err(_) => panic!("join {room}: no answer within {:?}", common::WAIT),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_holds_up_joins_but_not_the_rest_of_a_one_thread_hub() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = common::HubChild::start(|c| {
        c.args(["--jwt-secret", common::SECRET, "--threads", "1"])
            .args(["--redis-url", &redis.url()])
            .arg("--data-dir")
            .arg(dir.path())
            .stderr(std::process::Stdio::inherit());
    });
    // Open before the stall: a socket in room "a".
    let mut open = join(hub.addr, "a", "olga").await.expect("join before");
    // Joined for good (its core connection open, subscribed) once the
    // `history` frame is here.
    let history = tokio::time::timeout(common::WAIT, async {
        loop {
            match open.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"history\"") => break t,
                Some(Ok(_)) => continue,
                other => panic!("socket lost before the stall: {other:?}"),
            }
        }
    })
    .await
    .expect("the history frame");
    assert!(history.contains("\"type\":\"history\""), "{history}");
    let pid = redis_pid(&redis);

    let stopped = Stopped::new(pid);
    // Joins that need Redis: each waits for the room check.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    const JOINS: usize = 3;
    for i in 0..JOINS {
        let done = done_tx.clone();
        let addr = hub.addr;
        tokio::spawn(async move {
            let result = join(addr, "b", &format!("user{i}")).await.map(|_| ());
            let _ = done.send(result);
        });
    }
    // Let them reach the room check (ordering only: nothing is asserted
    // about time).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile, while no join has an answer yet, the hub answers the rest.
    let mut answered_while_waiting = 0;
    for _ in 0..5 {
        assert_eq!(healthz(hub.addr).await, 200);
        open.send(Message::Ping(b"still here".to_vec().into()))
            .await
            .unwrap();
        let pong = tokio::time::timeout(common::WAIT, async {
            loop {
                match open.next().await {
                    Some(Ok(Message::Pong(p))) => break p,
                    Some(Ok(_)) => continue,
                    other => panic!("socket lost: {other:?}"),
                }
            }
        })
        .await
        .expect("pong");
        assert_eq!(&pong[..], b"still here");
        if done_rx.try_recv().is_ok() {
            break;
        }
        answered_while_waiting += 1;
    }
    assert!(
        answered_while_waiting >= 1,
        "a join was answered before /healthz and a ping: the hub's only thread waited on Redis"
    );
    // The waiting joins are refused (503) once the store gives up.
    let mut results = Vec::new();
    for _ in 0..JOINS {
        let r = tokio::time::timeout(common::WAIT, done_rx.recv())
            .await
            .expect("every join answered")
            .unwrap();
        results.push(r.err());
    }
    assert!(
        results.iter().all(|r| *r == Some(503)),
        "joins while Redis is stopped: {results:?}"
    );

    drop(stopped);
    // Redis back: joins go through again.
    let mut back = None;
    for _ in 0..50 {
        match join(hub.addr, "b", "late").await {
            Ok(ws) => {
                back = Some(ws);
                break;
            }
            Err(503) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(s) => panic!("join after Redis came back: HTTP {s}"),
        }
    }
    assert!(back.is_some(), "no join within 50 tries after SIGCONT");
}
