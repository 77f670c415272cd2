//! The hub's configuration, declared once: clap reads it from flags and
//! environment variables (`hub --help`), tests start from
//! [`Config::default`] (the same defaults, no environment) and change what
//! they test, and [`Config::core`] maps it to the core's
//! [`channelbox::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};

/// channelbox example hub: WebSocket chat rooms, presence and direct
/// messages on the channelbox core. HTTP and WebSocket share one port.
#[derive(Parser, Debug, Clone)]
#[command(name = "hub", version)]
pub struct Config {
    /// Address to listen on (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Listen on 127.0.0.1:PORT instead of --listen.
    #[arg(long)]
    pub port: Option<u16>,
    /// HS256 secret that signs tokens. Without one the hub runs in demo
    /// mode: a random secret (said in the log) and `POST /auth/guest` open.
    #[arg(long, env = "CHANNELBOX_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Allow `POST /auth/guest {"username"}` with a configured secret.
    #[arg(long)]
    pub allow_guest: bool,
    /// Largest WebSocket message a client may send; larger ones close the
    /// socket with 1009.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Frames a connection may send per second (0 turns the limit off, as
    /// benchmarks do). Over the limit a frame gets a `rate_limited` error;
    /// a flood is closed with 4008.
    #[arg(long, default_value_t = 50)]
    pub messages_per_second: u32,
    /// Burst allowed above --messages-per-second.
    #[arg(long, default_value_t = 100)]
    pub burst: u32,
    /// Largest file upload (`POST /files`; 413 above).
    #[arg(long, default_value_t = 10 << 20)]
    pub max_file_bytes: usize,
    /// Bytes a connection's outbound queue may hold; a socket that falls
    /// further behind is closed with 4008 and recovers with `?since=`.
    #[arg(long, default_value_t = 1 << 20)]
    pub queue_max_bytes: usize,
    /// Messages a connection's outbound queue may hold (same policy).
    #[arg(long, default_value_t = 10_000)]
    pub queue_max_messages: usize,
    /// Messages kept per room's history (0 = no count bound).
    #[arg(long, default_value_t = 10_000)]
    pub history_max_messages: usize,
    /// Bytes kept per room's history; the oldest go first.
    #[arg(long, default_value_t = 1 << 20)]
    pub history_max_bytes: usize,
    /// Seconds a message stays in history (0 = no age bound).
    #[arg(long, default_value_t = 0)]
    pub history_ttl_seconds: u64,
    /// Messages in the `history` frame a joiner gets.
    #[arg(long, default_value_t = 50)]
    pub history_replay: usize,
    /// Most messages a `?since=` recovery replays before it gives up and
    /// sends the last --history-replay instead (not a flag).
    #[arg(skip = 10_000usize)]
    pub recovery_max: usize,
    /// Most bytes read from a socket at a time, into a buffer per worker
    /// thread (`socket::Stream`): an idle socket keeps none, and a socket
    /// keeps only what it read ahead until its frames are taken. Large
    /// enough that one read takes every frame waiting in the socket (and a
    /// short read tells tokio the socket is drained: no extra `recvfrom`).
    #[arg(long, default_value_t = 16 * 1024)]
    pub read_buffer_bytes: usize,
    /// Most queued frames written to a socket in one write.
    #[arg(long, default_value_t = 256)]
    pub write_batch: usize,
    /// Directory for uploaded files and the rooms registry (rooms.json).
    #[arg(long, default_value = "./channelbox-data")]
    pub data_dir: PathBuf,
    /// Tokio worker threads (default: one per two CPUs; 1 runs everything
    /// on one thread).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Share rooms, history, presence and DMs with other hubs through this
    /// Redis (`redis://127.0.0.1:6379/`); without it the hub runs alone.
    #[arg(long, env = "CHANNELBOX_REDIS_URL")]
    pub redis_url: Option<String>,
    /// This hub's name among the hubs on one Redis (default: generated).
    #[arg(long)]
    pub node_name: Option<String>,
    // Room- and message-level limits (issue 12).
    /// Join (and, apart, leave) notices of one user in one room saved in
    /// the room's history per minute, with bursts of as many (0 = no
    /// cap); the others are delivered live only, so a join/leave loop
    /// never pushes messages out of history. Only a membership that
    /// begins or ends saves a notice (see `features::membership`).
    #[arg(long, default_value_t = 3)]
    pub join_notices_per_minute: u32,
    /// Rooms with more than this many users connected to this hub get no
    /// join or leave notices at all (0 = always send them). Each notice
    /// reaches every member, so N joins into one room cost N²/2
    /// deliveries: a room of 95,000 is 4.5 billion.
    #[arg(long, default_value_t = 0)]
    pub join_notices_max_users: usize,
    /// WebSocket joins (`/chat`) one user may make per minute, over all
    /// rooms (0 = no limit); more are refused with 429.
    #[arg(long, default_value_t = 120)]
    pub joins_per_minute: u32,
    /// Rooms one user may create with `POST /rooms` (admins: no limit).
    #[arg(long, default_value_t = 20)]
    pub max_rooms_per_user: usize,
    /// Distinct rooms one user may have open sockets in at once.
    #[arg(long, default_value_t = 50)]
    pub max_rooms_joined_per_user: usize,
    /// Members a created room may list, and distinct users connected to
    /// any one room at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_room_members: usize,
    /// Most rooms `GET /rooms` returns per page (`?limit=`, `?after=`).
    #[arg(long, default_value_t = 200)]
    pub rooms_page_max: usize,
    /// Rooms listed one by one in `/stats` and `/metrics` (the busiest by
    /// messages); the rest are only counted in the totals.
    #[arg(long, default_value_t = 20)]
    pub stats_top_rooms: usize,
    /// A room nobody created (and a DM conversation) whose last socket
    /// left this many seconds ago, and that saw no message since, loses
    /// its history (0 = keep it as long as the history bounds allow). Off
    /// with --redis-url (use --history-ttl-seconds there).
    #[arg(long, default_value_t = 24 * 3600)]
    pub idle_room_history_seconds: u64,
    /// Bans and mutes kept per room; over it, the oldest expiring one
    /// goes first, then the oldest permanent one.
    #[arg(long, default_value_t = 10_000)]
    pub max_bans_per_room: usize,
    /// Users the hub remembers (names for mentions, the admin role); over
    /// it, the least recently seen are forgotten.
    #[arg(long, default_value_t = 100_000)]
    pub max_remembered_users: usize,
    /// Longest display name, in characters (after normalisation).
    #[arg(long, default_value_t = 64)]
    pub max_display_name_chars: usize,
    /// With --redis-url: the users of a hub that dies (and cannot say
    /// goodbye) go offline on the other hubs within this many seconds.
    #[arg(long, default_value_t = channelbox::Config::default().presence_ttl_seconds)]
    pub presence_ttl_seconds: u64,

    // Transport and auth limits (issue 12). Each one bounds what a client
    // can hold without logging in or while misbehaving.
    /// Milliseconds a connection may take to send a request's headers (a
    /// WebSocket handshake's too), and to start its next request on a
    /// keep-alive connection; then it is closed.
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Milliseconds a request may take to send its whole body; then the
    /// request fails (408 for uploads) and its connection closes.
    #[arg(long, default_value_t = 60_000)]
    pub body_timeout_ms: u64,
    /// Milliseconds an HTTP connection may move no byte in either direction
    /// (a client that stops reading a response, or sends nothing) before it
    /// is closed.
    #[arg(long, default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Connections still in their request headers or WebSocket handshake
    /// kept at once; a new one over the cap cuts the oldest, so stalled
    /// sockets cannot use up the open-files limit.
    #[arg(long, default_value_t = 512)]
    pub max_pending_connections: usize,
    /// Seconds between the hub's pings on an idle WebSocket (0 = none); a
    /// socket that answers two in a row with nothing is closed with 1001.
    #[arg(long, default_value_t = 25.0)]
    pub ping_interval: f64,
    /// WebSockets one user (token `sub`) may hold at once; more are refused
    /// with HTTP 429 before the upgrade (0 = no cap).
    #[arg(long, default_value_t = 100)]
    pub max_connections_per_user: usize,
    /// Guest tokens `POST /auth/guest` mints per client IP per minute
    /// (429 above; 0 = no cap).
    #[arg(long, default_value_t = 10)]
    pub guest_tokens_per_minute: u32,
    /// Uploads (`POST /files`) receiving at once; more get 503.
    #[arg(long, default_value_t = 8)]
    pub max_uploads_in_flight: usize,
    /// Where room history lives without --redis-url: `disk` keeps it in
    /// `<data-dir>/history` (it survives a restart or a crash, and a send
    /// is acknowledged once it is on disk); `memory` keeps it in this
    /// process only (gone at exit). With --redis-url history is in Redis.
    #[arg(long, value_enum, default_value_t = HistoryStore::Disk)]
    pub history_store: HistoryStore,
    /// With `--history-store disk`: acknowledge a send once fsync returned
    /// (true), or once the OS has it (false: faster; a crash of the hub
    /// loses nothing acknowledged, a power loss may lose what the OS had
    /// not written back yet: on Linux up to about 30 s by default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub history_fsync: bool,
    /// With `--history-store disk`: milliseconds the history writer lets
    /// sends gather before one commit (0 = commit at once, but under load
    /// no sooner than 2 ms after the previous commit started, 32 ms under sustained load). More per commit costs less CPU per message and adds
    /// up to that much to each acknowledgement.
    #[arg(long, default_value_t = 0)]
    pub history_commit_interval_ms: u64,

    // The server API (issue 15, item 1).
    /// Turns on the server API (`/api/*`) for application backends, which
    /// send `Authorization: apikey KEY` with every call. Without a key (or
    /// with an empty one) every `/api/*` path answers 404.
    #[arg(long, env = "CHANNELBOX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    // Tokens from an identity provider (issue 15, item 2), beside
    // --jwt-secret. Each algorithm is verified only with its own kind of
    // key (see `auth`).
    /// A JWK Set (file, or http(s) URL of the provider's jwks_uri) whose
    /// RS256, ES256 and EdDSA keys verify tokens, chosen by `kid`; a token
    /// with an unknown `kid` reloads it, at most once per 30 s.
    #[arg(long, env = "CHANNELBOX_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// A PEM public key (RSA, EC P-256 or Ed25519) that verifies tokens of
    /// its algorithm (RS256, ES256, EdDSA).
    #[arg(long, env = "CHANNELBOX_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Every token's `iss` must equal this (any token: HS256 too).
    #[arg(long, env = "CHANNELBOX_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Every token's `aud` must name this. Without it, a token that
    /// carries an `aud` is refused.
    #[arg(long, env = "CHANNELBOX_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Shortest time between two reloads of --jwt-jwks (not a flag).
    #[arg(skip = std::time::Duration::from_secs(30))]
    pub jwt_jwks_min_reload_interval: std::time::Duration,
    /// Longest a fetch or read of --jwt-jwks may take (not a flag).
    #[arg(skip = std::time::Duration::from_secs(5))]
    pub jwt_jwks_fetch_timeout: std::time::Duration,

    // Signed webhooks (issue 15, item 3).
    /// POST signed JSON events (`dm.offline`, `mention.offline`,
    /// `room.created`, `user.banned`) to this http(s) URL; needs
    /// --webhook-secret. Off without it. See PROTOCOL.md, "Webhooks".
    #[arg(long, env = "CHANNELBOX_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Key of the HMAC-SHA256 in each event's `X-Channelbox-Signature`.
    #[arg(long, env = "CHANNELBOX_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Webhook events waiting for delivery at most; more are dropped and
    /// counted (not a flag: tests make it small).
    #[arg(skip = 10_000usize)]
    pub webhook_queue_max: usize,
    /// Milliseconds before a webhook's first retry, doubled for each next
    /// one (not a flag: tests make it short).
    #[arg(skip = 500u64)]
    pub webhook_retry_base_ms: u64,
    /// Milliseconds one webhook POST may take (not a flag).
    #[arg(skip = 5_000u64)]
    pub webhook_timeout_ms: u64,
}

/// `--history-store`: where room history lives without Redis.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStore {
    /// On disk, in `<data-dir>/history` (the default).
    Disk,
    /// In this process' memory only.
    Memory,
}

impl Default for Config {
    /// The command line's defaults, without reading the environment (a
    /// test must not pick up the shell's `CHANNELBOX_JWT_SECRET`).
    fn default() -> Self {
        let command = Config::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["hub"])
            .expect("every flag has a default or is optional");
        Config::from_arg_matches(&matches).expect("defaults parse")
    }
}

impl Config {
    /// Where to listen: `--port` on 127.0.0.1, else `--listen`.
    pub fn listen_addr(&self) -> SocketAddr {
        match self.port {
            Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            None => self.listen,
        }
    }

    /// The signing secret; an empty one (`CHANNELBOX_JWT_SECRET=`) is none.
    pub fn jwt_secret(&self) -> Option<&str> {
        self.jwt_secret.as_deref().filter(|s| !s.is_empty())
    }

    /// `--jwt-jwks`; empty is none.
    pub fn jwt_jwks(&self) -> Option<&str> {
        self.jwt_jwks.as_deref().filter(|s| !s.is_empty())
    }

    /// `--jwt-public-key`; empty is none.
    pub fn jwt_public_key(&self) -> Option<&std::path::Path> {
        self.jwt_public_key
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
    }

    /// `--jwt-issuer`; empty is none.
    pub fn jwt_issuer(&self) -> Option<&str> {
        self.jwt_issuer.as_deref().filter(|s| !s.is_empty())
    }

    /// `--jwt-audience`; empty is none.
    pub fn jwt_audience(&self) -> Option<&str> {
        self.jwt_audience.as_deref().filter(|s| !s.is_empty())
    }

    /// `--ping-interval` as a duration; `None` when pings are off.
    pub fn ping_interval(&self) -> Option<std::time::Duration> {
        (self.ping_interval.is_finite() && self.ping_interval > 0.0)
            .then(|| std::time::Duration::from_secs_f64(self.ping_interval.min(86_400.0)))
    }

    /// The Redis to share with other hubs; an empty URL is none.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref().filter(|u| !u.is_empty())
    }

    /// The core's configuration: queues, history, the engine.
    pub fn core(&self) -> channelbox::Config {
        let mut core = channelbox::Config {
            history_max_messages: self.history_max_messages,
            history_max_bytes: self.history_max_bytes,
            history_ttl_seconds: self.history_ttl_seconds,
            queue_max_messages: self.queue_max_messages,
            queue_max_bytes: self.queue_max_bytes,
            slow_consumer: channelbox::SlowConsumer::Disconnect,
            // Frames the hub builds wrap client text (plus a history frame
            // of up to `recovery_max` entries, which is sent directly).
            max_payload_bytes: self.max_frame_bytes.saturating_mul(2).max(1 << 20),
            ..channelbox::Config::default()
        };
        if let Some(url) = self.redis_url() {
            core.engine = channelbox::EngineKind::Redis;
            core.redis_url = url.to_owned();
            core.node_name = self.node_name.clone().unwrap_or_default();
            core.presence_ttl_seconds = self.presence_ttl_seconds;
        } else if self.history_store == HistoryStore::Disk {
            core.history_dir = self.data_dir.join("history").to_string_lossy().into_owned();
            core.history_fsync = self.history_fsync;
            core.history_commit_interval_ms = self.history_commit_interval_ms;
        }
        core
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_command_lines() {
        let config = Config::default();
        assert_eq!(config.listen_addr(), "127.0.0.1:8000".parse().unwrap());
        assert_eq!(config.max_frame_bytes, 64 * 1024);
        assert_eq!(config.messages_per_second, 50);
        assert_eq!(config.burst, 100);
        assert_eq!(config.recovery_max, 10_000);
        assert_eq!(config.data_dir, PathBuf::from("./channelbox-data"));
        assert_eq!(config.jwt_secret(), None);
        assert_eq!(config.core().engine, channelbox::EngineKind::Memory);
    }

    #[test]
    fn history_is_on_disk_by_default_and_flags_choose_otherwise() {
        let core = Config::default().core();
        let expected = PathBuf::from("./channelbox-data").join("history");
        assert_eq!(PathBuf::from(&core.history_dir), expected);
        assert!(core.history_fsync);
        let parse = |args: &[&str]| {
            let command = Config::command().mut_args(|arg| arg.env(None));
            let matches = command
                .try_get_matches_from(std::iter::once("hub").chain(args.iter().copied()))
                .unwrap();
            Config::from_arg_matches(&matches).unwrap().core()
        };
        assert!(parse(&["--history-store", "memory"]).history_dir.is_empty());
        assert!(!parse(&["--history-fsync", "false"]).history_fsync);
        assert_eq!(
            parse(&["--history-commit-interval-ms", "3"]).history_commit_interval_ms,
            3
        );
        let redis = parse(&["--redis-url", "redis://127.0.0.1:1/"]);
        assert!(redis.history_dir.is_empty(), "history is in Redis");
        assert!(Config::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["hub", "--history-store", "tape"])
            .is_err());
    }

    #[test]
    fn transport_limits_have_their_documented_defaults() {
        let config = Config::default();
        assert_eq!(config.header_timeout_ms, 10_000);
        assert_eq!(config.body_timeout_ms, 60_000);
        assert_eq!(config.idle_timeout_ms, 60_000);
        assert_eq!(config.max_pending_connections, 512);
        assert_eq!(
            config.ping_interval(),
            Some(std::time::Duration::from_secs(25))
        );
        assert_eq!(config.max_connections_per_user, 100);
        assert_eq!(config.guest_tokens_per_minute, 10);
        assert_eq!(config.max_uploads_in_flight, 8);
        let off = Config::parse_from(["hub", "--ping-interval", "0"]);
        assert_eq!(off.ping_interval(), None);
        let fast = Config::parse_from(["hub", "--ping-interval", "0.5"]);
        assert_eq!(
            fast.ping_interval(),
            Some(std::time::Duration::from_millis(500))
        );
    }

    #[test]
    fn provider_key_flags_parse_and_empty_ones_are_none() {
        let config = Config::parse_from([
            "hub",
            "--jwt-jwks",
            "https://idp.example/jwks.json",
            "--jwt-public-key",
            "/etc/idp.pem",
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "channelbox",
        ]);
        assert_eq!(config.jwt_jwks(), Some("https://idp.example/jwks.json"));
        assert_eq!(
            config.jwt_public_key(),
            Some(std::path::Path::new("/etc/idp.pem"))
        );
        assert_eq!(config.jwt_issuer(), Some("https://idp.example"));
        assert_eq!(config.jwt_audience(), Some("channelbox"));
        let defaults = Config::default();
        assert_eq!(defaults.jwt_jwks(), None);
        assert_eq!(defaults.jwt_public_key(), None);
        assert_eq!(defaults.jwt_issuer(), None);
        assert_eq!(defaults.jwt_audience(), None);
        assert_eq!(
            defaults.jwt_jwks_min_reload_interval,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(
            defaults.jwt_jwks_fetch_timeout,
            std::time::Duration::from_secs(5)
        );
        let empty = Config::parse_from(["hub", "--jwt-jwks", "", "--jwt-audience", ""]);
        assert_eq!((empty.jwt_jwks(), empty.jwt_audience()), (None, None));
    }

    #[test]
    fn port_overrides_listen_and_empty_secrets_are_none() {
        let config = Config::parse_from(["hub", "--port", "9000", "--jwt-secret", ""]);
        assert_eq!(config.listen_addr(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.jwt_secret(), None);
    }
}
