//! `loadgen fanout`: R rooms x N subscribers, one publisher per room.
//!
//! In order: subscribers join in batches ([`subscriber`]), then the publishers
//! ([`publisher`]); each round starts every publisher and ends when everything arrived or a
//! limit hit ([`round`]); then everyone stops, the subscribers hand in what they counted, and
//! [`crate::report`] turns it into the JSON line.

mod publisher;
mod round;
mod subscriber;

use crate::cli::FanoutArgs;
use crate::clock::deadlines;
use crate::connect::{connect_in_batches, Target, Ws};
use crate::procfs::{proc_rss_kb, RssWatch};
use crate::report::{FanoutResult, Readers, RoundReport};
use crate::stats::{SubRound, Summary};
use crate::wire;
use publisher::{publisher, Pace, PubCmd, RoundDone};
use round::Conductor;
pub use round::RoundMeta;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subscriber::subscriber;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// One round's counters, shared by its publishers, its subscribers and the conductor.
struct RoundShared {
    delivered: AtomicU64,
    last_recv_ns: AtomicU64,
    /// `u64::MAX` until the first send.
    first_send_ns: AtomicU64,
    last_send_ns: AtomicU64,
}

impl RoundShared {
    fn new() -> RoundShared {
        RoundShared {
            delivered: AtomicU64::new(0),
            last_recv_ns: AtomicU64::new(0),
            first_send_ns: AtomicU64::new(u64::MAX),
            last_send_ns: AtomicU64::new(0),
        }
    }
}

/// What every connection task of a run shares.
struct Shared {
    /// In every message's marker: messages of other runs do not count.
    run_id: u32,
    /// Per publisher per round.
    messages: usize,
    rounds: Vec<RoundShared>,
    errors: Mutex<Vec<String>>,
    /// How each stuck reader ended: "closed 4008 ...", "still open", ...
    slow_outcomes: Mutex<Vec<String>>,
    /// Joined subscribers per room, and whether the room's publisher joined.
    room_subs: Vec<AtomicUsize>,
    room_pub: Vec<AtomicUsize>,
}

impl Shared {
    fn new(run_id: u32, messages: usize, repeat: usize, rooms: usize) -> Shared {
        Shared {
            run_id,
            messages,
            rounds: (0..repeat).map(|_| RoundShared::new()).collect(),
            errors: Mutex::new(Vec::new()),
            slow_outcomes: Mutex::new(Vec::new()),
            room_subs: (0..rooms).map(|_| AtomicUsize::new(0)).collect(),
            room_pub: (0..rooms).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Note an error for the report.
    fn error(&self, e: String) {
        self.errors.lock().unwrap().push(e);
    }

    /// Expected deliveries per round: joined subscribers of rooms whose publisher joined, times M.
    fn expected_per_round(&self) -> u64 {
        (0..self.room_pub.len())
            .filter(|&r| self.room_pub[r].load(Ordering::Relaxed) > 0)
            .map(|r| self.room_subs[r].load(Ordering::Relaxed) as u64 * self.messages as u64)
            .sum()
    }
}

/// One connection of a fan-out run: where it connects, as whom, and what stops it.
struct Member {
    target: Arc<Target>,
    shared: Arc<Shared>,
    room_idx: usize,
    room: String,
    user: String,
    connect_timeout: Duration,
    stop: watch::Receiver<bool>,
}

impl Member {
    /// Connect and join within the connect timeout; a failure names the user.
    async fn open(&self) -> Result<Ws, String> {
        match timeout(
            self.connect_timeout,
            self.target.connect(&self.room, &self.user),
        )
        .await
        {
            Ok(Ok(ws)) => Ok(ws),
            Ok(Err(e)) => Err(format!("{}: {e}", self.user)),
            Err(_) => Err(format!("{}: connect/join timed out", self.user)),
        }
    }
}

/// The tasks of one kind of connection after the connect phase.
struct Joined<T> {
    ok: usize,
    errors: Vec<String>,
    handles: Vec<JoinHandle<T>>,
}

/// A fan-out run being set up: what every member is made from.
struct Run<'a> {
    a: &'a FanoutArgs,
    target: Arc<Target>,
    shared: Arc<Shared>,
    /// Room names are the prefix and the room's index.
    prefix: String,
    stop: watch::Receiver<bool>,
    /// Connecting and rounds stop here.
    hard_deadline: Instant,
}

impl Run<'_> {
    fn member(&self, room_idx: usize, user: String) -> Member {
        Member {
            target: self.target.clone(),
            shared: self.shared.clone(),
            room_idx,
            room: format!("{}{room_idx}", self.prefix),
            user,
            connect_timeout: Duration::from_millis(self.a.c.connect_timeout_ms),
            stop: self.stop.clone(),
        }
    }

    /// Subscriber i goes to room i % R, so every room fills up alike; the first
    /// `--slow-subs` of each room never read.
    async fn connect_subscribers(&self) -> Joined<Option<Vec<SubRound>>> {
        let a = self.a;
        let n_subs = a.rooms * a.subs;
        let mut handles = Vec::with_capacity(n_subs);
        let (ok, errors) = connect_in_batches(
            n_subs,
            a.c.connect_batch,
            Duration::from_millis(a.c.connect_pause_ms),
            self.hard_deadline,
            |i| {
                let (tx, rx) = oneshot::channel();
                let member = self.member(i % a.rooms, format!("s{i}"));
                handles.push(tokio::spawn(subscriber(
                    member,
                    tx,
                    i / a.rooms < a.slow_subs,
                )));
                rx
            },
        )
        .await;
        Joined {
            ok,
            errors,
            handles,
        }
    }

    /// Publisher i goes to room i; it takes round commands from the returned senders and
    /// reports finished rounds on `done`.
    async fn connect_publishers(
        &self,
        done: &mpsc::Sender<RoundDone>,
    ) -> (Joined<()>, Vec<mpsc::Sender<PubCmd>>) {
        let a = self.a;
        let pace = Pace {
            rate: a.rate,
            payload_bytes: a.payload_bytes,
        };
        let mut cmds = Vec::new();
        let mut handles = Vec::new();
        let (ok, errors) = connect_in_batches(
            a.rooms,
            a.c.connect_batch,
            Duration::from_millis(a.c.connect_pause_ms),
            self.hard_deadline,
            |i| {
                let (tx, rx) = oneshot::channel();
                let (ctx, crx) = mpsc::channel(self.shared.rounds.len() + 1);
                cmds.push(ctx);
                let member = self.member(i, format!("p{i}"));
                handles.push(tokio::spawn(publisher(member, tx, crx, done.clone(), pace)));
                rx
            },
        )
        .await;
        let joined = Joined {
            ok,
            errors,
            handles,
        };
        (joined, cmds)
    }
}

/// Run `loadgen fanout` and return its JSON line.
pub async fn run_fanout(a: FanoutArgs) -> Value {
    let c = &a.c;
    let target = match Target::new(c) {
        Ok(t) => Arc::new(t),
        Err(e) => return json!({ "mode": "fanout", "error": e }),
    };
    let (hard_deadline, end_deadline) = deadlines(c.timeout);
    let run_id: u32 = wire::random_u32();
    let prefix = c
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{run_id:08x}-"));
    let repeat = a.repeat.max(1);
    let shared = Arc::new(Shared::new(run_id, a.messages, repeat, a.rooms));
    let (stop_tx, stop_rx) = watch::channel(false);
    let rss = RssWatch::new(c.server_pid);
    let run = Run {
        a: &a,
        target,
        shared: shared.clone(),
        prefix,
        stop: stop_rx,
        hard_deadline,
    };

    let t_conn = Instant::now();
    let subs = run.connect_subscribers().await;
    let sub_connect_s = t_conn.elapsed().as_secs_f64();
    let (done_tx, done_rx) = mpsc::channel(a.rooms.max(1) * repeat + 8);
    let (pubs, pub_cmds) = run.connect_publishers(&done_tx).await;
    let connect_s = t_conn.elapsed().as_secs_f64();

    let mut conductor = Conductor {
        shared: shared.clone(),
        pub_cmds,
        done_rx,
        pubs_ok: pubs.ok,
        expected_per_round: shared.expected_per_round(),
        quiet: Duration::from_millis(a.quiet_ms),
        drain: Duration::from_millis(a.drain_ms),
        hard_deadline,
        rss,
        rss_round_end: None,
    };
    let mut round_meta: Vec<RoundMeta> = Vec::new();
    if pubs.ok > 0 && subs.ok > 0 {
        for round in 0..repeat {
            sleep(Duration::from_millis(a.settle_ms)).await;
            if Instant::now() >= hard_deadline {
                break;
            }
            round_meta.push(conductor.run(round).await);
        }
    }

    let _ = stop_tx.send(true);
    let counted = collect(subs.handles, pubs.handles, end_deadline, &a, &round_meta).await;
    let rss_after = c.server_pid.and_then(proc_rss_kb);
    if counted.timed_out > 0 {
        shared.error(format!(
            "{} connection task(s) did not finish before the deadline",
            counted.timed_out
        ));
    }
    let rounds = round_reports(&a, &conductor, round_meta, counted.per_round, pubs.ok);
    let mut errors = subs.errors;
    errors.extend(pubs.errors);
    errors.extend(shared.errors.lock().unwrap().drain(..));
    let stuck_readers = shared.slow_outcomes.lock().unwrap().clone();
    FanoutResult {
        args: &a,
        subscribers: subs.ok,
        publishers: pubs.ok,
        sub_connect_s,
        connect_s,
        rss_before: conductor.rss.first,
        rss_round_end: conductor.rss_round_end,
        rss_max: conductor.rss.max,
        rss_after,
        readers: counted.readers,
        stuck_readers,
        rounds,
        errors,
    }
    .into_json()
}

/// What the subscribers counted, handed in after the stop signal.
struct Counted {
    /// Per round: the sum over subscribers, and every delivery's latency (µs).
    per_round: Vec<(Summary, Vec<u32>)>,
    readers: Readers,
    /// Tasks that did not end by the end deadline.
    timed_out: usize,
}

/// Wait (until `end_deadline`) for every task; sum the subscribers' records per round.
async fn collect(
    sub_handles: Vec<JoinHandle<Option<Vec<SubRound>>>>,
    pub_handles: Vec<JoinHandle<()>>,
    end_deadline: Instant,
    a: &FanoutArgs,
    round_meta: &[RoundMeta],
) -> Counted {
    let repeat = a.repeat.max(1);
    let mut counted = Counted {
        per_round: (0..repeat)
            .map(|_| (Summary::default(), Vec::new()))
            .collect(),
        readers: Readers::default(),
        timed_out: 0,
    };
    let rounds_ran = round_meta.len();
    for h in sub_handles {
        let res = tokio::time::timeout_at(end_deadline.into(), h).await;
        if res.is_err() {
            counted.timed_out += 1;
        }
        if let Ok(Ok(Some(rounds))) = res {
            counted.readers.add(&rounds, rounds_ran, a.messages);
            for (i, r) in rounds.into_iter().enumerate() {
                counted.per_round[i].0.add(&r, a.messages);
                counted.per_round[i].1.extend_from_slice(&r.lat_us);
            }
        }
    }
    for h in pub_handles {
        if tokio::time::timeout_at(end_deadline.into(), h)
            .await
            .is_err()
        {
            counted.timed_out += 1;
        }
    }
    counted
}

/// The JSON of each round that ran.
fn round_reports(
    a: &FanoutArgs,
    conductor: &Conductor,
    round_meta: Vec<RoundMeta>,
    per_round: Vec<(Summary, Vec<u32>)>,
    pubs_ok: usize,
) -> Vec<Value> {
    round_meta
        .into_iter()
        .zip(per_round)
        .enumerate()
        .map(|(index, (meta, (received, mut lat_us)))| {
            lat_us.sort_unstable();
            RoundReport {
                index,
                meta,
                received: &received,
                lat_us: &lat_us,
                expected: conductor.expected_per_round,
                published: a.messages * pubs_ok,
                threads: a.c.threads.max(1),
            }
            .to_json()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rooms_with_a_publisher_expect_deliveries() {
        let s = Shared::new(7, 200, 1, 3);
        s.room_subs[0].store(10, Ordering::Relaxed);
        s.room_subs[1].store(9, Ordering::Relaxed);
        s.room_subs[2].store(10, Ordering::Relaxed);
        s.room_pub[0].store(1, Ordering::Relaxed);
        s.room_pub[1].store(1, Ordering::Relaxed);
        assert_eq!(s.expected_per_round(), 19 * 200);
    }
}
