//! `loadgen report FILE...`: one markdown table over saved JSON lines, a row per file, as
//! `scripts/bench-hub.sh` prints it for BENCHMARKS.md.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const HEADER: &str = "| scenario | what | conns | delivered / expected | lost | dup | ooo | deliveries/s | latency p50 / p99 / max ms | server µs/delivery | server RSS MiB (max) | RSS/conn | notes |\n\
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";

/// Markdown table over result files; unreadable files become a row that says so.
pub fn report(files: &[PathBuf]) -> String {
    let mut t = String::from(HEADER);
    for f in files {
        let name = f.display().to_string();
        match read_result(f) {
            Some(v) => t.push_str(&result_row(&v, &name)),
            None => t.push_str(&format!(
                "| {name} | no result | | | | | | | | | | | unreadable or empty |\n"
            )),
        }
    }
    t
}

/// The last JSON line of a file (the loadgen prints one; a log may precede it).
fn read_result(f: &Path) -> Option<Value> {
    std::fs::read_to_string(f).ok().and_then(|s| {
        s.lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
    })
}

/// The row of one result; `name` stands in for a missing scenario and label.
fn result_row(v: &Value, name: &str) -> String {
    let sc = v
        .get("scenario")
        .and_then(|x| x.as_str())
        .map(String::from)
        .unwrap_or_else(|| {
            v.get("label")
                .and_then(|x| x.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or(name)
                .to_string()
        });
    let desc = v
        .get("scenario_desc")
        .and_then(|x| x.as_str())
        .unwrap_or("");
    let notes = error_notes(v);
    match v.get("mode").and_then(|x| x.as_str()) {
        Some("fanout") => fanout_row(v, &sc, desc, notes),
        Some("idle") => idle_row(v, &sc, desc, notes),
        _ => format!(
            "| {sc} | {desc} | | | | | | | | | | | {} |\n",
            notes.join("; ")
        ),
    }
}

/// "error: ..." for a run that failed, and the three most frequent error kinds.
fn error_notes(v: &Value) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    if let Some(e) = v.get("error") {
        notes.push(format!(
            "error: {}",
            e.as_str()
                .map(String::from)
                .unwrap_or_else(|| e.to_string())
        ));
    }
    let errs = v.get("errors_total").and_then(|x| x.as_u64()).unwrap_or(0);
    if errs > 0 {
        let kinds: Vec<String> = v["error_kinds"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or(&[])
            .iter()
            .take(3)
            .map(|k| {
                let text: String = k[0].as_str().unwrap_or("").chars().take(70).collect();
                format!("{} x {}", text.replace('|', "/"), k[1])
            })
            .collect();
        notes.push(format!("{errs} errors: {}", kinds.join(", ")));
    }
    notes
}

fn fanout_row(v: &Value, sc: &str, desc: &str, mut notes: Vec<String>) -> String {
    let m = &v["median"];
    let rounds = v["rounds"].as_array().map(|r| r.len()).unwrap_or(0);
    let expected = v["rounds"]
        .get(0)
        .map(|r| r["expected"].clone())
        .unwrap_or(Value::Null);
    let conns = v["subscribers"].as_u64().unwrap_or(0) + v["publishers"].as_u64().unwrap_or(0);
    if rounds > 1 {
        notes.push(format!("median of {rounds} rounds"));
    }
    if rounds == 0 {
        notes.push("no round ran".into());
    }
    if v["rounds"].as_array().is_some_and(|r| {
        r.iter()
            .any(|x| x["drain_limited"] == json!(true) || x["timed_out"] == json!(true))
    }) {
        notes.push("a round hit the drain window / timeout".into());
    }
    if let Some(b) = m["loadgen_busy"].as_f64() {
        if b > 0.9 {
            notes.push(format!("loadgen busy {:.0}%", b * 100.0));
        }
    }
    let slow = v["slow_subscribers_per_room"].as_u64().unwrap_or(0);
    if slow > 0 {
        notes.push(format!(
            "{} stuck reader(s) per room: {}; readers with 100%: {} / {} (min {}%); server RSS before {} MiB, at round end {} MiB, after close {} MiB",
            slow,
            stuck_summary(&v["stuck_readers"]),
            num(&v["readers_complete"]),
            num(&v["readers"]),
            num(&v["readers_min_pct"]),
            mib(&v["server_rss_kb_before"]),
            mib(&v["server_rss_kb_round_end"]),
            mib(&v["server_rss_kb_after"]),
        ));
    }
    format!(
        "| {sc} | {desc} | {} | {} / {} | {} | {} | {} | {} | {} / {} / {} | {} | {} ({}) | — | {} |\n",
        group_thousands(conns as i64),
        num(&m["delivered"]),
        num(&expected),
        num(&m["lost"]),
        num(&m["dup"]),
        num(&m["out_of_order"]),
        num(&m["deliveries_per_s"]),
        num(&m["lat_p50_ms"]),
        num(&m["lat_p99_ms"]),
        num(&m["lat_max_ms"]),
        num(&m["server_us_per_delivery"]),
        mib(&v["server_rss_kb_round_end"]),
        mib(&v["server_rss_kb_max"]),
        notes.join("; "),
    )
}

fn idle_row(v: &Value, sc: &str, desc: &str, mut notes: Vec<String>) -> String {
    let kib = |key: &str| v[key].as_f64().map(|b| format!("{:.1} KiB", b / 1024.0));
    // The anonymous part (heap, stacks) is the connections' own memory;
    // the rest of the growth is code the first joins touched.
    let per = match (
        kib("server_rss_bytes_per_conn"),
        kib("server_anon_bytes_per_conn"),
    ) {
        (Some(rss), Some(anon)) => format!("{rss} (anon {anon})"),
        (Some(rss), None) => rss,
        _ => "—".into(),
    };
    let open = v["still_open_at_end"].as_u64().unwrap_or(0);
    let conns = v["conns"].as_u64().unwrap_or(0);
    if open < conns {
        notes.push(format!("{} closed during the hold", conns - open));
    }
    format!(
        "| {sc} | {desc} | {} / {} | — | — | — | — | — | — | — | {} ({}) | {} | {} |\n",
        num(&v["conns"]),
        num(&v["conns_wanted"]),
        mib(&v["server_rss_kb_held"]),
        mib(&v["server_rss_kb_max"]),
        per,
        notes.join("; "),
    )
}

/// A number as the table shows it: grouped thousands, fewer decimals as it grows, "—" for null.
fn num(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 1000.0 {
                group_thousands(f.round() as i64)
            } else if f.fract() == 0.0 {
                format!("{}", f as i64)
            } else if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else if f.abs() >= 10.0 {
                format!("{f:.1}")
            } else {
                format!("{f:.2}")
            }
        }
        x => x.to_string(),
    }
}

/// kB as MiB with one decimal, "—" when missing.
fn mib(v: &Value) -> String {
    v.as_f64()
        .map(|kb| format!("{:.1}", kb / 1024.0))
        .unwrap_or_else(|| "—".into())
}

/// "closed 4008 too slow x 3, still open x 1": stuck-reader outcomes grouped by kind.
fn stuck_summary(v: &Value) -> String {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for o in v.as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
        let o = o.as_str().unwrap_or("");
        let kind = if kinds.is_empty() && v.as_array().map_or(0, |a| a.len()) == 1 {
            o.to_string()
        } else {
            o.split(" (after").next().unwrap_or(o).to_string()
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let s = kinds
        .iter()
        .map(|(k, n)| {
            if *n > 1 {
                format!("{k} x {n}")
            } else {
                k.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    s.replace('|', "/")
}

/// 1234567 -> "1,234,567".
fn group_thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        let digits_left = s.len() - i;
        if i > 0 && digits_left % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_a_row_per_file() {
        let dir = std::env::temp_dir().join(format!("loadgen-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fan = dir.join("a.json");
        std::fs::write(
            &fan,
            json!({"mode":"fanout","scenario":"a","scenario_desc":"d","subscribers":10,"publishers":1,
                   "rounds":[{"expected":100}],"median":{"delivered":100,"lost":0,"dup":0,"out_of_order":0,
                   "deliveries_per_s":12345.0,"lat_p50_ms":1.5,"lat_p99_ms":2.5,"lat_max_ms":3.0,
                   "server_us_per_delivery":0.2},"server_rss_kb_round_end":2048,"server_rss_kb_max":4096,
                   "errors_total":0})
            .to_string(),
        )
        .unwrap();
        let missing = dir.join("missing.json");
        let t = report(&[fan, missing]);
        std::fs::remove_dir_all(&dir).ok();
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 4, "{t}");
        assert!(rows[2].starts_with("| a | d | 11 | 100 / 100 | 0 | 0 | 0 | 12,345 | 1.50 / 2.50 / 3 | 0.20 | 2.0 (4.0) |"), "{}", rows[2]);
        assert!(rows[3].contains("unreadable"));
    }

    #[test]
    fn an_idle_row_shows_memory_per_connection_and_early_closes() {
        let v = json!({"mode":"idle","label":"","conns":50,"conns_wanted":60,"still_open_at_end":48,
                       "server_rss_kb_held":25088,"server_rss_kb_max":25600,
                       "server_rss_bytes_per_conn":2048.0,"errors_total":10,
                       "error_kinds":[["connect: refused", 10]]});
        assert_eq!(
            result_row(&v, "c.json"),
            "| c.json |  | 50 / 60 | — | — | — | — | — | — | — | 24.5 (25.0) | 2.0 KiB | 10 errors: connect: refused x 10; 2 closed during the hold |\n"
        );
        let mut v = v;
        v["server_anon_bytes_per_conn"] = json!(1536.0);
        assert!(result_row(&v, "c.json").contains("| 2.0 KiB (anon 1.5 KiB) |"));
    }

    #[test]
    fn a_failed_run_says_why() {
        let v = json!({"error":"hard timeout after 5s","label":"x/d"});
        assert_eq!(
            result_row(&v, "d.json"),
            "| x/d |  | | | | | | | | | | | error: hard timeout after 5s |\n"
        );
    }

    #[test]
    fn stuck_readers_are_grouped_by_how_they_ended() {
        let one = json!(["still open (after 3 frames, 9 bytes left for it to read)"]);
        assert_eq!(
            stuck_summary(&one),
            "still open (after 3 frames, 9 bytes left for it to read)"
        );
        let many = json!([
            "closed by the server: 4008 too slow (after 1 frames, 2 bytes left for it to read)",
            "closed by the server: 4008 too slow (after 5 frames, 6 bytes left for it to read)",
            "still open (after 0 frames, 0 bytes left for it to read)",
        ]);
        assert_eq!(
            stuck_summary(&many),
            "closed by the server: 4008 too slow x 2, still open"
        );
    }

    #[test]
    fn numbers_lose_decimals_as_they_grow() {
        assert_eq!(num(&json!(null)), "—");
        assert_eq!(num(&json!(3.0)), "3");
        assert_eq!(num(&json!(1.234)), "1.23");
        assert_eq!(num(&json!(12.34)), "12.3");
        assert_eq!(num(&json!(123.4)), "123");
        assert_eq!(num(&json!(123456.7)), "123,457");
        assert_eq!(mib(&json!(2048)), "2.0");
        assert_eq!(mib(&json!(null)), "—");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(-1234567), "-1,234,567");
    }
}
