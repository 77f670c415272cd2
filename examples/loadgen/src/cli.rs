//! The command line: subcommands and their flags (clap derive). The doc comments here are
//! the `--help` text, which `scripts/bench-hub.sh` and the shared referee rely on: change
//! them only on purpose.

use crate::scenarios::ScenarioName;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Loopback WebSocket fan-out benchmark for the channelbox hub"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Fan-out: rooms x subscribers, one publisher per room.
    Fanout(FanoutArgs),
    /// Hold N idle connections and measure the server's RSS per connection.
    Idle(IdleArgs),
    /// Join one room as one user and send marked messages stamped with the machine's
    /// monotonic clock, for `idle --expect-marked` receivers in other processes to time.
    Send(SendArgs),
    /// One of the BENCHMARKS.md scenarios with its preset sizes (a, b, c, d, e).
    Scenario(ScenarioArgs),
    /// Soak: readers, rejoining churners and steady publishing for minutes; server RSS, fds,
    /// latency per interval and lost messages (see `soak.rs`).
    Soak(crate::soak::SoakArgs),
    /// Print a markdown table from result files (one JSON line each, as printed on stdout).
    Report(ReportArgs),
}

impl Cmd {
    /// The flags every measuring mode shares; `None` for `report`, which measures nothing.
    pub fn common(&self) -> Option<&Common> {
        match self {
            Cmd::Fanout(a) => Some(&a.c),
            Cmd::Idle(a) => Some(&a.c),
            Cmd::Send(a) => Some(&a.c),
            Cmd::Scenario(a) => Some(&a.c),
            Cmd::Soak(a) => Some(&a.c),
            Cmd::Report(_) => None,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ScenarioArgs {
    #[arg(value_enum)]
    pub name: ScenarioName,
    #[command(flatten)]
    pub c: Common,
    /// Rounds on the same connections for the fan-out scenarios (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Result files (JSON, as printed by fanout/idle/scenario on stdout).
    pub files: Vec<std::path::PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// JSON chat protocol: /chat/{room}, {"message":..} in, {"type":"message","content":..} out.
    Seed,
    /// Engine.IO v4 / Socket.IO v5 over websocket; room from the handshake query; "chat" events.
    Socketio,
    /// Plain text: every text frame is broadcast as-is to the room.
    Rawws,
}

impl Protocol {
    /// The name in the JSON output ("seed", "socketio", "rawws").
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// `Authorization: Bearer <jwt>` header.
    Header,
    /// `?token=<jwt>` query parameter.
    Query,
    /// Both header and query parameter.
    Both,
    /// No token at all.
    None,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ready {
    /// seed: history frame; socketio: Socket.IO CONNECT ack; rawws: first frame.
    Auto,
    /// As soon as the websocket upgrade completes (and, for socketio, the CONNECT ack).
    Connect,
    /// First frame of any kind.
    FirstFrame,
    /// A frame whose "type" is "history".
    History,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Base URL, e.g. ws://127.0.0.1:8000 (loopback hosts only).
    #[arg(long, default_value = "ws://127.0.0.1:8000")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = Protocol::Seed)]
    pub protocol: Protocol,
    /// Path+query template appended to --url; {room} and {user} are substituted.
    /// Defaults: seed "/chat/{room}", socketio
    /// "/socket.io/?EIO=4&transport=websocket&room={room}&user={user}", rawws "/raw/{room}?user={user}".
    #[arg(long)]
    pub path: Option<String>,
    /// Fixed JWT sent by every connection.
    #[arg(long)]
    pub token: Option<String>,
    /// HS256 secret: mint a JWT per user (claims sub, username, exp=now+1h).
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// How the token is sent (ignored when no token/secret is given).
    #[arg(long, value_enum, default_value_t = AuthMode::Header)]
    pub auth: AuthMode,
    /// When a connection counts as joined.
    #[arg(long, value_enum, default_value_t = Ready::Auto)]
    pub ready: Ready,
    /// Connections opened concurrently per batch.
    #[arg(long, default_value_t = 100)]
    pub connect_batch: usize,
    /// Pause between connect batches (ms).
    #[arg(long, default_value_t = 20)]
    pub connect_pause_ms: u64,
    /// Per-connection limit for connect + join (ms).
    #[arg(long, default_value_t = 15000)]
    pub connect_timeout_ms: u64,
    /// Hard limit for the whole run (s); the process exits after it no matter what.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Server PID: its CPU time and VmRSS are sampled from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Free-form label copied into the JSON output.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Room name prefix (default: "bench-<runid>-").
    #[arg(long)]
    pub room_prefix: Option<String>,
    /// Only print the JSON line (no table on stderr).
    #[arg(long)]
    pub quiet: bool,
    /// Tokio worker threads (the load generator shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub c: Common,
    /// Number of rooms (one publisher each).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Subscribers per room.
    #[arg(long, default_value_t = 100)]
    pub subs: usize,
    /// Messages per publisher per round.
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
    /// Publish rate per publisher (msg/s); omit for saturation.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Rounds on the same connections (median reported).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Extra bytes of padding in each message body.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Pause after everyone joined, and between rounds (ms).
    #[arg(long, default_value_t = 500)]
    pub settle_ms: u64,
    /// End a round early when no delivery arrived for this long after publishing ended (ms).
    #[arg(long, default_value_t = 3000)]
    pub quiet_ms: u64,
    /// Subscribers that join and then never read (the first K of each room): a slow-consumer
    /// test. They are not counted in `expected`; the others show whether the server lets one
    /// stuck socket hold up the room.
    #[arg(long, default_value_t = 0)]
    pub slow_subs: usize,
    /// End a round at the latest this long after its publishers finished (ms); whatever has not
    /// arrived by then counts as lost ("undelivered within the drain window").
    #[arg(long, default_value_t = 20000)]
    pub drain_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub c: Common,
    /// Number of idle connections.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Spread connections over this many rooms (round-robin).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Hold time after all connections joined (s).
    #[arg(long, default_value_t = 5)]
    pub hold_secs: u64,
    /// User names are this prefix and the connection's index (several processes on one
    /// server need different prefixes).
    #[arg(long, default_value = "i")]
    pub user_prefix: String,
    /// Marked messages (from `loadgen send`, any run id) each connection should receive: their
    /// latency is timed on the machine's monotonic clock, and the hold ends early once every
    /// connection has this many (0: marked messages are not looked for).
    #[arg(long, default_value_t = 0)]
    pub expect_marked: usize,
    /// With --expect-marked: keep holding after every connection got them, until this file
    /// exists (a script samples the servers' CPU first, then creates it).
    #[arg(long)]
    pub stop_file: Option<std::path::PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    #[command(flatten)]
    pub c: Common,
    /// The room to send to (the full name: --room-prefix does not apply).
    #[arg(long)]
    pub room: String,
    /// The sender's user name.
    #[arg(long, default_value = "sender")]
    pub user: String,
    /// Marked messages to send.
    #[arg(long, default_value_t = 1)]
    pub messages: usize,
    /// Pause between two messages (ms).
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Extra bytes of padding in each message body.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fanout_defaults_are_the_referees() {
        let cli = Cli::try_parse_from(["loadgen", "fanout"]).unwrap();
        let Cmd::Fanout(a) = cli.cmd else {
            panic!("not fanout")
        };
        assert_eq!(a.c.url, "ws://127.0.0.1:8000");
        assert_eq!(a.c.protocol, Protocol::Seed);
        assert_eq!((a.c.auth, a.c.ready), (AuthMode::Header, Ready::Auto));
        assert_eq!((a.c.connect_batch, a.c.connect_pause_ms), (100, 20));
        assert_eq!((a.c.timeout, a.c.threads), (120, 1));
        assert_eq!((a.rooms, a.subs, a.messages, a.repeat), (1, 100, 100, 1));
        assert_eq!((a.settle_ms, a.quiet_ms, a.drain_ms), (500, 3000, 20000));
        assert_eq!(a.rate, None);
    }

    #[test]
    fn scenario_takes_a_letter_and_the_common_flags() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "scenario",
            "d",
            "--server-pid",
            "42",
            "--ready",
            "first-frame",
        ])
        .unwrap();
        let Cmd::Scenario(s) = &cli.cmd else {
            panic!("not scenario")
        };
        assert_eq!((s.name, s.repeat), (ScenarioName::D, 3));
        assert_eq!(cli.cmd.common().unwrap().server_pid, Some(42));
        assert_eq!(s.c.ready, Ready::FirstFrame);
        assert!(Cli::try_parse_from(["loadgen", "scenario", "f"]).is_err());
    }

    #[test]
    fn protocol_names_are_lowercase() {
        assert_eq!(Protocol::Seed.name(), "seed");
        assert_eq!(Protocol::Socketio.name(), "socketio");
        assert_eq!(Protocol::Rawws.name(), "rawws");
    }
}
