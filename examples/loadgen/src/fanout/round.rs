//! One round: start every publisher, wait until everything arrived (or the quiet, drain or
//! hard limit ends it), and measure what the round cost the server and the load generator.

use super::publisher::{PubCmd, RoundDone};
use super::{RoundShared, Shared};
use crate::procfs::{cpu_self_s, proc_cpu_split, RssWatch};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::sleep;

/// What a round measured, beyond what the subscribers counted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RoundMeta {
    /// First send to last receive (s).
    pub wall_s: f64,
    /// Start command to the round's end (s): what `loadgen_busy` divides by.
    pub round_s: f64,
    /// First send to last send (s).
    pub publish_s: f64,
    pub loadgen_cpu: f64,
    pub drained_out: bool,
    pub server_cpu: Option<f64>,
    pub server_sys: Option<f64>,
    pub timed_out: bool,
    /// Deliveries counted when the round ended; later ones are "late".
    pub delivered_at_end: u64,
}

/// Why the wait for a round ended, when not because everything arrived or all went quiet.
#[derive(Clone, Copy, Default)]
struct RoundEnd {
    timed_out: bool,
    drained_out: bool,
}

/// Drives the rounds of a run over connected publishers.
pub struct Conductor {
    pub shared: Arc<Shared>,
    /// One command channel per joined publisher.
    pub pub_cmds: Vec<mpsc::Sender<PubCmd>>,
    /// Publishers report each finished round here, with its send error if any.
    pub done_rx: mpsc::Receiver<RoundDone>,
    pub pubs_ok: usize,
    pub expected_per_round: u64,
    /// `--quiet-ms`.
    pub quiet: Duration,
    /// `--drain-ms`.
    pub drain: Duration,
    pub hard_deadline: Instant,
    pub rss: RssWatch,
    /// The server's RSS sampled at the end of the last round.
    pub rss_round_end: Option<u64>,
}

impl Conductor {
    /// Run round `round` to its end and measure it.
    pub async fn run(&mut self, round: usize) -> RoundMeta {
        let pid = self.rss.pid();
        let cpu0 = cpu_self_s();
        let scpu0 = pid.and_then(proc_cpu_split);
        let round_t0 = Instant::now();
        for tx in &self.pub_cmds {
            let _ = tx.send(PubCmd::Round(round)).await;
        }
        let end = self.wait(round).await;
        let cpu1 = cpu_self_s();
        let scpu1 = pid.and_then(proc_cpu_split);
        self.rss_round_end = self.rss.sample();
        let round_s = round_t0.elapsed().as_secs_f64();
        let (server_cpu, server_sys) = match (scpu0, scpu1) {
            (Some((u0, s0)), Some((u1, s1))) => (Some((u1 + s1) - (u0 + s0)), Some(s1 - s0)),
            _ => (None, None),
        };
        let rs = &self.shared.rounds[round];
        let (wall_s, publish_s) = send_and_receive_spans(rs);
        RoundMeta {
            wall_s,
            round_s,
            publish_s,
            loadgen_cpu: cpu1 - cpu0,
            drained_out: end.drained_out,
            server_cpu,
            server_sys,
            timed_out: end.timed_out,
            delivered_at_end: rs.delivered.load(Ordering::Relaxed),
        }
    }

    /// Poll every 2 ms until the round is over; sample the server's RSS every 100 ms.
    async fn wait(&mut self, round: usize) -> RoundEnd {
        let rs = &self.shared.rounds[round];
        let mut end = RoundEnd::default();
        let mut pubs_done = 0usize;
        let mut last_count = 0u64;
        let mut last_change = Instant::now();
        let mut pubs_done_at: Option<Instant> = None;
        let mut last_rss_sample = Instant::now();
        loop {
            if self.rss.pid().is_some() && last_rss_sample.elapsed() >= Duration::from_millis(100) {
                last_rss_sample = Instant::now();
                self.rss.sample();
            }
            while let Ok((_r, res)) = self.done_rx.try_recv() {
                pubs_done += 1;
                if let Err(e) = res {
                    self.shared.error(e);
                }
            }
            let published = pubs_done >= self.pubs_ok;
            if published && pubs_done_at.is_none() {
                pubs_done_at = Some(Instant::now());
            }
            let d = rs.delivered.load(Ordering::Relaxed);
            if d >= self.expected_per_round && published {
                break;
            }
            if pubs_done_at.is_some_and(|t| t.elapsed() >= self.drain) {
                end.drained_out = true;
                break;
            }
            if d != last_count {
                last_count = d;
                last_change = Instant::now();
            }
            if published && last_change.elapsed() >= self.quiet {
                break;
            }
            if Instant::now() >= self.hard_deadline {
                end.timed_out = true;
                break;
            }
            sleep(Duration::from_millis(2)).await;
        }
        end
    }
}

/// (first send -> last receive, first send -> last send) in seconds; 0 when nothing was sent.
fn send_and_receive_spans(rs: &RoundShared) -> (f64, f64) {
    let first = rs.first_send_ns.load(Ordering::Relaxed);
    let last_recv = rs.last_recv_ns.load(Ordering::Relaxed);
    let last_send = rs.last_send_ns.load(Ordering::Relaxed);
    let span = |last: u64| {
        if last > first && first != u64::MAX {
            (last - first) as f64 / 1e9
        } else {
            0.0
        }
    };
    (span(last_recv), span(last_send))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_run_from_the_first_send() {
        let rs = RoundShared::new();
        assert_eq!(send_and_receive_spans(&rs), (0.0, 0.0));
        rs.first_send_ns.store(1_000_000_000, Ordering::Relaxed);
        rs.last_send_ns.store(1_500_000_000, Ordering::Relaxed);
        rs.last_recv_ns.store(3_000_000_000, Ordering::Relaxed);
        assert_eq!(send_and_receive_spans(&rs), (2.0, 0.5));
    }

    fn conductor(pubs: usize, expected: u64) -> (Conductor, mpsc::Sender<RoundDone>) {
        let (done_tx, done_rx) = mpsc::channel(8);
        let c = Conductor {
            shared: Arc::new(Shared::new(1, 10, 1, 1)),
            pub_cmds: Vec::new(),
            done_rx,
            pubs_ok: pubs,
            expected_per_round: expected,
            quiet: Duration::from_millis(3000),
            drain: Duration::from_millis(50),
            hard_deadline: Instant::now() + Duration::from_secs(10),
            rss: RssWatch::new(None),
            rss_round_end: None,
        };
        (c, done_tx)
    }

    #[tokio::test]
    async fn a_round_ends_when_everything_arrived() {
        let (mut c, done) = conductor(1, 10);
        c.shared.rounds[0].delivered.store(10, Ordering::Relaxed);
        done.send((0, Ok(()))).await.unwrap();
        let meta = c.run(0).await;
        assert!(!meta.drained_out && !meta.timed_out);
        assert_eq!(meta.delivered_at_end, 10);
        assert!(c.shared.errors.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_round_short_of_messages_ends_at_the_drain_window() {
        let (mut c, done) = conductor(1, 10);
        c.shared.rounds[0].delivered.store(3, Ordering::Relaxed);
        done.send((0, Err("p0: send seq 3: broken pipe".into())))
            .await
            .unwrap();
        let meta = c.run(0).await;
        assert!(meta.drained_out && !meta.timed_out);
        assert_eq!(meta.delivered_at_end, 3);
        assert_eq!(
            *c.shared.errors.lock().unwrap(),
            ["p0: send seq 3: broken pipe"]
        );
    }

    #[tokio::test]
    async fn a_round_stops_at_the_hard_deadline() {
        let (mut c, _done) = conductor(1, 10);
        c.hard_deadline = Instant::now();
        let meta = c.run(0).await;
        assert!(meta.timed_out && !meta.drained_out);
    }
}
