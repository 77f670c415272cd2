//! The human-readable summary of a run, on stderr (`--quiet` drops it).

use serde_json::{json, Value};

/// Print the table of a run's JSON line.
pub fn print_table(v: &Value) {
    let g = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
    eprintln!(
        "---- loadgen {} {} {} ----",
        g("mode"),
        g("protocol"),
        g("label")
    );
    if let Some(e) = v.get("error") {
        eprintln!("error: {e}");
        return;
    }
    if g("mode") == "\"fanout\"" {
        print_fanout(v);
    } else {
        eprintln!(
            "conns {} / {} (open at end {}), rooms {}, connect {} s, server RSS kB before {} held {} max {} -> {} B/conn; loadgen {} B/conn",
            g("conns"), g("conns_wanted"), g("still_open_at_end"), g("rooms"), g("connect_s"),
            g("server_rss_kb_before"), g("server_rss_kb_held"), g("server_rss_kb_max"),
            g("server_rss_bytes_per_conn"), g("loadgen_rss_bytes_per_conn")
        );
    }
    if let Some(n) = v.get("errors_total").and_then(|x| x.as_u64()) {
        if n > 0 {
            eprintln!("errors: {n}, first: {}", v["errors"]);
        }
    }
}

/// A fan-out run: its sizes, its readers, then a row per round and the median.
fn print_fanout(v: &Value) {
    let g = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
    eprintln!(
        "subscribers {} / {} in {} room(s), publishers {}, messages {} per publisher, rate {}, connect {} s",
        g("subscribers"), g("subscribers_wanted"), g("rooms"), g("publishers"), g("messages"), g("rate"), g("connect_s")
    );
    eprintln!(
        "readers with 100% of every round: {} / {} (min {}%), stuck readers per room {}; server RSS kB before {} round end {} max {} after {}",
        g("readers_complete"), g("readers"), g("readers_min_pct"), g("slow_subscribers_per_room"),
        g("server_rss_kb_before"), g("server_rss_kb_round_end"), g("server_rss_kb_max"), g("server_rss_kb_after")
    );
    if v["slow_subscribers_per_room"].as_u64().unwrap_or(0) > 0 {
        eprintln!("stuck readers: {}", v["stuck_readers"]);
    }
    eprintln!(
        "{:>5} {:>10} {:>10} {:>7} {:>5} {:>5} {:>8} {:>12} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7}",
        "round", "expected", "delivered", "lost", "dup", "ooo", "wall_s", "deliv/s", "p50_ms", "p99_ms", "max_ms", "lg_cpu", "srv_cpu", "srv_us/d", "lg_busy"
    );
    for r in rows(v) {
        eprintln!("{}", row(&r));
    }
}

/// The rounds, then the median as a row "med" when there is more than one round.
fn rows(v: &Value) -> Vec<Value> {
    let rows: Vec<Value> = v["rounds"].as_array().cloned().unwrap_or_default();
    let mut all = rows.clone();
    let mut med = v["median"].clone();
    if let Some(o) = med.as_object_mut() {
        o.insert("round".into(), json!("med"));
        o.insert(
            "expected".into(),
            rows.first()
                .map(|r| r["expected"].clone())
                .unwrap_or(Value::Null),
        );
    }
    if rows.len() > 1 {
        all.push(med);
    }
    all
}

/// One round (or the median) under the column headings.
fn row(r: &Value) -> String {
    let f = |k: &str| match &r[k] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        x => x.to_string(),
    };
    format!(
        "{:>5} {:>10} {:>10} {:>7} {:>5} {:>5} {:>8} {:>12} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7}",
        f("round"), f("expected"), f("delivered"), f("lost"), f("dup"), f("out_of_order"), f("wall_s"),
        f("deliveries_per_s"), f("lat_p50_ms"), f("lat_p99_ms"), f("lat_max_ms"), f("loadgen_cpu_s"), f("server_cpu_s"),
        f("server_us_per_delivery"), f("loadgen_busy")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_row_follows_several_rounds() {
        let v = json!({
            "rounds": [{"round": 0, "expected": 10}, {"round": 1, "expected": 10}],
            "median": {"delivered": 10, "lat_p50_ms": null},
        });
        let r = rows(&v);
        assert_eq!(r.len(), 3);
        assert_eq!(r[2]["round"], json!("med"));
        assert_eq!(r[2]["expected"], json!(10));
        let one = json!({"rounds": [{"round": 0}], "median": {}});
        assert_eq!(rows(&one).len(), 1);
    }

    #[test]
    fn a_row_right_aligns_and_dashes_what_is_missing() {
        let line = row(&json!({"round": "med", "expected": 200000, "lat_p50_ms": 1.5}));
        assert!(line.starts_with("  med     200000          -"), "{line}");
        assert!(line.contains("      1.5 "), "{line}");
        assert!(line.ends_with("       -"), "{line}");
    }
}
