//! What a run prints: the JSON line on stdout (this module), the table on stderr
//! ([`table`]), and `loadgen report`'s markdown over saved JSON lines ([`markdown`]).
//!
//! The JSON is what `scripts/bench-hub.sh` and the shared referee read: field names, their
//! order and their rounding stay as they are.

pub mod markdown;
pub mod table;

use crate::cli::{FanoutArgs, IdleArgs};
use crate::fanout::RoundMeta;
use crate::procfs::{cpu_self_s, self_rss_kb};
use crate::stats::{percentile_ms, SubRound, Summary};
use serde_json::{json, Value};

/// Rounded to 3 decimals, as every float in the JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Errors grouped by what happened (the user name in front is dropped), most frequent first:
/// `[["closed by the server: 4008 too slow", 4], ...]`.
pub fn error_kinds(errors: &[String]) -> Value {
    let mut kinds: Vec<(String, u64)> = Vec::new();
    for e in errors {
        let kind = match e.split_once(": ") {
            Some((who, rest))
                if who.len() > 1
                    && who[1..].bytes().all(|b| b.is_ascii_digit())
                    && matches!(who.as_bytes()[0], b's' | b'p' | b'i') =>
            {
                rest
            }
            _ => e.as_str(),
        };
        match kinds.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind.to_string(), 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    json!(kinds
        .into_iter()
        .map(|(k, n)| json!([k, n]))
        .collect::<Vec<_>>())
}

/// `errors_total`, `error_kinds` and the first ten `errors`.
fn error_fields(mut errors: Vec<String>) -> (usize, Value, Vec<String>) {
    let n_err = errors.len();
    let kinds = error_kinds(&errors);
    errors.truncate(10);
    (n_err, kinds, errors)
}

/// Median of each numeric field across rounds.
pub fn median_rounds(rounds: &[Value]) -> Value {
    let keys = [
        "delivered",
        "lost",
        "late",
        "dup",
        "out_of_order",
        "wall_s",
        "publish_s",
        "deliveries_per_s",
        "publish_rate",
        "lat_p50_ms",
        "lat_p99_ms",
        "lat_max_ms",
        "loadgen_cpu_s",
        "server_cpu_s",
        "server_us_per_delivery",
        "loadgen_us_per_delivery",
        "loadgen_busy",
        "server_sys_frac",
    ];
    let mut out = serde_json::Map::new();
    for k in keys {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.get(k).and_then(|x| x.as_f64()))
            .collect();
        if v.is_empty() {
            out.insert(k.into(), Value::Null);
            continue;
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let m = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        out.insert(k.into(), json!(round3(m)));
    }
    Value::Object(out)
}

/// Subscribers that read (not the stuck ones), and how many got every message of every
/// round that ran, once.
#[derive(Default, Debug, PartialEq)]
pub struct Readers {
    pub readers: u64,
    pub complete: u64,
    pub min_frac: Option<f64>,
}

impl Readers {
    /// Count one reader's records, of which the first `rounds_ran` ran, `messages` each.
    pub fn add(&mut self, rounds: &[SubRound], rounds_ran: usize, messages: usize) {
        self.readers += 1;
        if rounds_ran > 0 && messages > 0 {
            let got: u64 = rounds.iter().take(rounds_ran).map(|r| r.distinct).sum();
            let want = (rounds_ran * messages) as u64;
            let dups: u64 = rounds.iter().map(|r| r.dup).sum();
            if got == want && dups == 0 {
                self.complete += 1;
            }
            let f = got as f64 / want as f64;
            self.min_frac = Some(self.min_frac.map_or(f, |m: f64| m.min(f)));
        }
    }
}

/// One round of a fan-out run, as its JSON object.
pub struct RoundReport<'a> {
    pub index: usize,
    pub meta: RoundMeta,
    /// Summed over the subscribers that handed in their records.
    pub received: &'a Summary,
    /// Every delivery's latency, sorted.
    pub lat_us: &'a [u32],
    /// Deliveries the round should have made.
    pub expected: u64,
    /// Messages all publishers together sent (for `publish_rate`).
    pub published: usize,
    /// Load generator threads (for `loadgen_busy`).
    pub threads: usize,
}

impl RoundReport<'_> {
    pub fn to_json(&self) -> Value {
        let RoundMeta {
            wall_s,
            round_s,
            publish_s,
            loadgen_cpu: lg_cpu,
            drained_out,
            server_cpu,
            server_sys,
            timed_out,
            delivered_at_end,
        } = self.meta;
        let s = self.received;
        let pct = |p: f64| percentile_ms(self.lat_us, p);
        // Deliveries counted when the round ended; anything of this round that arrived later
        // (during the next round or the shutdown) is reported as "late", and still counts as lost.
        let delivered = delivered_at_end.min(s.distinct);
        json!({
            "round": self.index,
            "expected": self.expected,
            "delivered": delivered,
            "lost": self.expected.saturating_sub(delivered),
            "late": s.distinct.saturating_sub(delivered),
            "dup": s.dup,
            "out_of_order": s.ooo,
            "wall_s": round3(wall_s),
            "publish_s": round3(publish_s),
            "deliveries_per_s": if wall_s > 0.0 { (delivered as f64 / wall_s).round() } else { 0.0 },
            "publish_rate": if publish_s > 0.0 { (self.published as f64 / publish_s).round() } else { 0.0 },
            "lat_p50_ms": pct(0.50).map(round3),
            "lat_p99_ms": pct(0.99).map(round3),
            "lat_max_ms": pct(1.0).map(round3),
            "loadgen_cpu_s": round3(lg_cpu),
            "server_cpu_s": server_cpu.map(round3),
            // Share of the server's CPU time spent in the kernel (mostly socket writes).
            "server_sys_frac": match (server_cpu, server_sys) {
                (Some(c), Some(s)) if c > 0.0 => Some(round3(s / c)),
                _ => None,
            },
            // CPU per delivery: robust to the two processes sharing 2 cores.
            "server_us_per_delivery": server_cpu.filter(|_| delivered > 0).map(|c| round3(c * 1e6 / delivered as f64)),
            "loadgen_us_per_delivery": if delivered > 0 { Some(round3(lg_cpu * 1e6 / delivered as f64)) } else { None },
            // Fraction of its threads' time the load generator was on CPU during the round
            // (close to 1.0: the numbers are bounded by the load generator, not the server).
            "loadgen_busy": if round_s > 0.0 { Some(round3(lg_cpu / (round_s * self.threads as f64))) } else { None },
            "timed_out": timed_out,
            "drain_limited": drained_out,
        })
    }
}

/// A whole fan-out run, as its JSON line.
pub struct FanoutResult<'a> {
    pub args: &'a FanoutArgs,
    /// Joined subscribers and publishers.
    pub subscribers: usize,
    pub publishers: usize,
    pub sub_connect_s: f64,
    pub connect_s: f64,
    /// The server's VmRSS (kB): before connecting, at the last round's end, highest, after closing.
    pub rss_before: Option<u64>,
    pub rss_round_end: Option<u64>,
    pub rss_max: Option<u64>,
    pub rss_after: Option<u64>,
    pub readers: Readers,
    /// How each stuck reader ended.
    pub stuck_readers: Vec<String>,
    /// [`RoundReport`]s of the rounds that ran.
    pub rounds: Vec<Value>,
    pub errors: Vec<String>,
}

impl FanoutResult<'_> {
    pub fn into_json(self) -> Value {
        let a = self.args;
        let c = &a.c;
        let median = median_rounds(&self.rounds);
        let (n_err, kinds, errors) = error_fields(self.errors);
        json!({
            "mode": "fanout",
            "label": c.label,
            "protocol": c.protocol.name(),
            "url": c.url,
            "rooms": a.rooms,
            "subs_per_room": a.subs,
            "subscribers": self.subscribers,
            "subscribers_wanted": a.rooms * a.subs,
            "slow_subscribers_per_room": a.slow_subs,
            "publishers": self.publishers,
            "messages": a.messages,
            "rate": a.rate,
            "saturation": a.rate.is_none(),
            "loadgen_threads": c.threads.max(1),
            "repeat": a.repeat.max(1),
            "sub_connect_s": round3(self.sub_connect_s),
            "connect_s": round3(self.connect_s),
            "server_pid": c.server_pid,
            "server_rss_kb_before": self.rss_before,
            "server_rss_kb_round_end": self.rss_round_end,
            "server_rss_kb_max": self.rss_max,
            "server_rss_kb_after": self.rss_after,
            "readers": self.readers.readers,
            "readers_complete": self.readers.complete,
            "readers_min_pct": self.readers.min_frac.map(|f| round3(f * 100.0)),
            "stuck_readers": self.stuck_readers,
            "loadgen_cpu_s_total": round3(cpu_self_s()),
            "loadgen_rss_kb": self_rss_kb(),
            "rounds": self.rounds,
            "median": median,
            "errors_total": n_err,
            "error_kinds": kinds,
            "errors": errors,
        })
    }
}

/// An idle run, as its JSON line.
pub struct IdleResult<'a> {
    pub args: &'a IdleArgs,
    /// Joined connections, and those the server had not closed by the end of the hold.
    pub conns: usize,
    pub still_open: usize,
    pub rooms: usize,
    pub connect_s: f64,
    /// The server's VmRSS (kB): before connecting, last sample of the hold, highest.
    pub rss_before: Option<u64>,
    pub rss_held: Option<u64>,
    pub rss_max: Option<u64>,
    /// The server's anonymous RSS (kB, `RssAnon`) before connecting and at the last
    /// sample of the hold: its growth is the connections' own memory, without the
    /// code pages the first joins touch.
    pub anon_before: Option<u64>,
    pub anon_held: Option<u64>,
    /// This process's VmRSS (kB) before connecting and at the end of the hold.
    pub self_before: Option<u64>,
    pub self_after: Option<u64>,
    /// Marked messages received (`--expect-marked`).
    pub marked: Option<&'a crate::idle::Marked>,
    pub errors: Vec<String>,
}

/// The marked messages an idle run received: how many in all, how many connections got every
/// one, latency percentiles over all deliveries, and per message its deliveries and the latest.
fn marked_json(m: &crate::idle::Marked) -> Value {
    let seen = m.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut lat: Vec<u32> = seen.iter().map(|&(_, us)| us).collect();
    lat.sort_unstable();
    let mut per_seq: std::collections::BTreeMap<u32, (usize, u32)> = Default::default();
    for &(seq, us) in &seen {
        let e = per_seq.entry(seq).or_default();
        e.0 += 1;
        e.1 = e.1.max(us);
    }
    let per_seq: Vec<Value> = per_seq
        .iter()
        .map(|(seq, (n, max))| json!({"seq": seq, "received": n, "last_ms": *max as f64 / 1000.0}))
        .collect();
    json!({
        "expected_per_conn": m.expect,
        "received": seen.len(),
        "conns_complete": m.complete.load(std::sync::atomic::Ordering::Relaxed),
        "lat_p50_ms": crate::stats::percentile_ms(&lat, 0.5),
        "lat_p99_ms": crate::stats::percentile_ms(&lat, 0.99),
        "lat_max_ms": lat.last().map(|&us| us as f64 / 1000.0),
        "per_message": per_seq,
    })
}

impl IdleResult<'_> {
    pub fn into_json(self) -> Value {
        let a = self.args;
        let c = &a.c;
        let ok = self.conns;
        let per_conn = |before: Option<u64>, last: Option<u64>| match (before, last) {
            (Some(b), Some(l)) if ok > 0 => {
                Some(((l as f64 - b as f64) * 1024.0 / ok as f64).round())
            }
            _ => None,
        };
        let (n_err, kinds, errors) = error_fields(self.errors);
        json!({
            "mode": "idle",
            "label": c.label,
            "protocol": c.protocol.name(),
            "url": c.url,
            "conns_wanted": a.conns,
            "conns": ok,
            "still_open_at_end": self.still_open,
            "rooms": self.rooms,
            "connect_s": round3(self.connect_s),
            "hold_s": a.hold_secs,
            "server_pid": c.server_pid,
            "server_rss_kb_before": self.rss_before,
            "server_rss_kb_held": self.rss_held,
            "server_rss_kb_max": self.rss_max,
            "server_rss_bytes_per_conn": per_conn(self.rss_before, self.rss_held),
            "server_anon_kb_before": self.anon_before,
            "server_anon_kb_held": self.anon_held,
            "server_anon_bytes_per_conn": per_conn(self.anon_before, self.anon_held),
            "loadgen_rss_bytes_per_conn": per_conn(self.self_before, self.self_after),
            "loadgen_cpu_s_total": round3(cpu_self_s()),
            "marked": self.marked.map(marked_json),
            "errors_total": n_err,
            "error_kinds": kinds,
            "errors": errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_grouped_by_kind_without_the_user() {
        let errors: Vec<String> = [
            "s1: closed by the server: 4008 too slow",
            "s22: closed by the server: 4008 too slow",
            "p0: send seq 3: broken pipe",
            "connect phase hit the deadline after 5 of 10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let k = error_kinds(&errors);
        assert_eq!(k[0], json!(["closed by the server: 4008 too slow", 2]));
        assert_eq!(k.as_array().unwrap().len(), 3);
    }

    #[test]
    fn only_the_first_ten_errors_are_listed_but_all_are_counted() {
        let errors: Vec<String> = (0..12).map(|i| format!("s{i}: server closed")).collect();
        let (n, kinds, first) = error_fields(errors);
        assert_eq!((n, first.len()), (12, 10));
        assert_eq!(kinds, json!([["server closed", 12]]));
    }

    #[test]
    fn the_median_is_per_field_and_skips_missing_values() {
        let rounds = [
            json!({"delivered": 10, "lat_p50_ms": 1.0, "server_cpu_s": null}),
            json!({"delivered": 30, "lat_p50_ms": 2.0}),
            json!({"delivered": 20, "lat_p50_ms": 4.0}),
            json!({"delivered": 40}),
        ];
        let m = median_rounds(&rounds);
        assert_eq!(m["delivered"], json!(25.0));
        assert_eq!(m["lat_p50_ms"], json!(2.0));
        assert_eq!(m["server_cpu_s"], Value::Null);
        assert_eq!(m.as_object().unwrap().len(), 18);
    }

    #[test]
    fn a_reader_is_complete_with_every_message_once() {
        let full = |dups: usize| {
            let mut r = SubRound::new(2);
            r.record(0, 0, 0);
            r.record(1, 0, 0);
            (0..dups).for_each(|_| {
                r.record(1, 0, 0);
            });
            r
        };
        let mut half = SubRound::new(2);
        half.record(0, 0, 0);
        let mut readers = Readers::default();
        readers.add(&[full(0), full(0)], 2, 2);
        readers.add(&[full(1), full(0)], 2, 2);
        readers.add(&[full(0), half], 2, 2);
        assert_eq!(readers.readers, 3);
        assert_eq!(readers.complete, 1);
        assert_eq!(readers.min_frac, Some(0.75));
        // A round that never ran does not count against anyone.
        let mut r = Readers::default();
        r.add(&[full(0), SubRound::new(2)], 1, 2);
        assert_eq!((r.complete, r.min_frac), (1, Some(1.0)));
    }

    #[test]
    fn a_round_counts_late_messages_as_lost() {
        let received = Summary {
            subs: 2,
            distinct: 10,
            ..Default::default()
        };
        let meta = RoundMeta {
            wall_s: 0.5,
            round_s: 1.0,
            publish_s: 0.25,
            loadgen_cpu: 0.5,
            server_cpu: Some(0.001),
            server_sys: Some(0.0005),
            delivered_at_end: 8,
            ..Default::default()
        };
        let lat = [1000, 2000, 3000];
        let v = RoundReport {
            index: 1,
            meta,
            received: &received,
            lat_us: &lat,
            expected: 12,
            published: 6,
            threads: 1,
        }
        .to_json();
        assert_eq!(v["delivered"], json!(8));
        assert_eq!(v["lost"], json!(4));
        assert_eq!(v["late"], json!(2));
        assert_eq!(v["deliveries_per_s"], json!(16.0));
        assert_eq!(v["publish_rate"], json!(24.0));
        assert_eq!(v["lat_p50_ms"], json!(2.0));
        assert_eq!(v["server_us_per_delivery"], json!(125.0));
        assert_eq!(v["server_sys_frac"], json!(0.5));
        assert_eq!(v["loadgen_busy"], json!(0.5));
    }
}
