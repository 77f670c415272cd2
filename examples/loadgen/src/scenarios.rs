//! The BENCHMARKS.md scenarios a-e: their sizes, and which mode runs each.
//!
//! A scenario is a preset of `fanout` or `idle` flags; `loadgen scenario X` runs it and adds
//! `scenario` and `scenario_desc` to the JSON. The doc comments on [`ScenarioName`] are
//! the `scenario --help` text.

use crate::cli::{Common, FanoutArgs, IdleArgs, ScenarioArgs};
use crate::{fanout, idle};
use clap::ValueEnum;
use serde_json::{json, Value};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// 1 room x 1000 subscribers, 1 publisher sends 200 messages back to back (saturation).
    A,
    /// 1 room x 1000 subscribers, 100 msg/s for 10 s (1000 messages): latency p50/p99.
    B,
    /// 5000 idle connections in 500 rooms of 10, held 5 s: server RSS per connection.
    C,
    /// 100 rooms x 10 subscribers, 100 publishers at once, 200 messages each (saturation).
    D,
    /// 1 room x 100 subscribers of which the first never reads; a busy room: 250 msg/s of 4 KiB
    /// for 8 s (1 MB/s to each reader, 8 MB offered to the stuck one): every other reader must
    /// get 100%, and the server's RSS must stay bounded.
    E,
}

impl ScenarioName {
    /// The letter, as in the JSON's `scenario` and the default label.
    pub fn letter(self) -> &'static str {
        match self {
            ScenarioName::A => "a",
            ScenarioName::B => "b",
            ScenarioName::C => "c",
            ScenarioName::D => "d",
            ScenarioName::E => "e",
        }
    }

    /// One line for the report's "what" column.
    pub fn describe(self) -> &'static str {
        match self {
            ScenarioName::A => "1 room x 1000 subs, 200 msgs saturated",
            ScenarioName::B => "1 room x 1000 subs, 100 msg/s for 10 s",
            ScenarioName::C => "5000 idle conns in 500 rooms",
            ScenarioName::D => "100 rooms x 10 subs, 100 publishers x 200 msgs",
            ScenarioName::E => "1 room x 100 subs (1 never reads), 250 msg/s x 4 KiB for 8 s",
        }
    }
}

/// What a scenario runs: the flags of one of the measuring modes.
#[derive(Debug)]
pub enum Preset {
    Fanout(FanoutArgs),
    Idle(IdleArgs),
}

/// The preset of scenario `name` over the common flags `c`, with `repeat` rounds (at least 1).
pub fn preset(name: ScenarioName, c: Common, repeat: usize) -> Preset {
    let repeat = repeat.max(1);
    match name {
        ScenarioName::A => Preset::Fanout(saturated(c, repeat, 1, 1000, 200)),
        ScenarioName::B => {
            let mut f = saturated(c, repeat, 1, 1000, 1000);
            f.rate = Some(100.0);
            f.drain_ms = 10000;
            Preset::Fanout(f)
        }
        ScenarioName::C => Preset::Idle(IdleArgs {
            c,
            conns: 5000,
            rooms: 500,
            hold_secs: 5,
            user_prefix: "i".into(),
            expect_marked: 0,
            stop_file: None,
        }),
        ScenarioName::D => Preset::Fanout(saturated(c, repeat, 100, 10, 200)),
        ScenarioName::E => {
            // A fixed rate, not saturation: back to back, a single-threaded load generator
            // reading 99 sockets of 4 KiB frames falls behind by itself, and a hub that
            // bounds its queues then rightly closes the readers too.
            let mut f = saturated(c, repeat, 1, 100, 2000);
            f.slow_subs = 1;
            f.payload_bytes = 4096;
            f.rate = Some(250.0);
            f.drain_ms = 10000;
            Preset::Fanout(f)
        }
    }
}

/// Fan-out flags with the `fanout` defaults and no rate: publishers send back to back.
fn saturated(c: Common, repeat: usize, rooms: usize, subs: usize, messages: usize) -> FanoutArgs {
    FanoutArgs {
        c,
        rooms,
        subs,
        messages,
        rate: None,
        repeat,
        payload_bytes: 0,
        settle_ms: 500,
        quiet_ms: 3000,
        slow_subs: 0,
        drain_ms: 20000,
    }
}

/// `loadgen scenario X`: the preset's run, labelled "scenario X" unless `--label` says otherwise.
pub async fn run_scenario(s: ScenarioArgs) -> Value {
    let mut c = s.c.clone();
    if c.label.is_empty() {
        c.label = format!("scenario {}", s.name.letter());
    }
    let mut out = match preset(s.name, c, s.repeat) {
        Preset::Fanout(f) => fanout::run_fanout(f).await,
        Preset::Idle(i) => idle::run_idle(i).await,
    };
    if let Some(o) = out.as_object_mut() {
        o.insert("scenario".into(), json!(s.name.letter()));
        o.insert("scenario_desc".into(), json!(s.name.describe()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn common() -> Common {
        let cli = Cli::try_parse_from(["loadgen", "fanout"]).unwrap();
        let Cmd::Fanout(a) = cli.cmd else {
            unreachable!()
        };
        a.c
    }

    fn fanout(name: ScenarioName, repeat: usize) -> FanoutArgs {
        match preset(name, common(), repeat) {
            Preset::Fanout(f) => f,
            Preset::Idle(_) => panic!("{name:?} is not a fan-out scenario"),
        }
    }

    #[test]
    fn saturation_scenarios_have_the_benchmark_sizes() {
        let a = fanout(ScenarioName::A, 3);
        assert_eq!((a.rooms, a.subs, a.messages, a.repeat), (1, 1000, 200, 3));
        assert_eq!((a.rate, a.slow_subs, a.drain_ms), (None, 0, 20000));
        let d = fanout(ScenarioName::D, 3);
        assert_eq!((d.rooms, d.subs, d.messages, d.rate), (100, 10, 200, None));
    }

    #[test]
    fn rate_scenarios_publish_at_a_fixed_rate_with_a_shorter_drain() {
        let b = fanout(ScenarioName::B, 1);
        assert_eq!((b.rooms, b.subs, b.messages), (1, 1000, 1000));
        assert_eq!((b.rate, b.drain_ms), (Some(100.0), 10000));
        let e = fanout(ScenarioName::E, 1);
        assert_eq!((e.rooms, e.subs, e.messages), (1, 100, 2000));
        assert_eq!((e.slow_subs, e.payload_bytes), (1, 4096));
        assert_eq!((e.rate, e.drain_ms), (Some(250.0), 10000));
    }

    #[test]
    fn scenario_c_holds_idle_connections() {
        let Preset::Idle(c) = preset(ScenarioName::C, common(), 3) else {
            panic!("c is an idle scenario")
        };
        assert_eq!((c.conns, c.rooms, c.hold_secs), (5000, 500, 5));
    }

    #[test]
    fn at_least_one_round_runs() {
        assert_eq!(fanout(ScenarioName::A, 0).repeat, 1);
    }
}
