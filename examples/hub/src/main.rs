//! The channelbox example hub: a WebSocket chat server (rooms, presence,
//! direct messages, history with recovery) on the channelbox core.
//!
//! ```sh
//! cargo run --release --example hub                      # demo mode on 127.0.0.1:8000
//! cargo run --release --example hub -- --jwt-secret S    # tokens signed with S
//! cargo run --release --example hub -- --help
//! ```
//!
//! The wire protocol is PROTOCOL.md. Modules, in the order a connection
//! meets them: `server` (accept, route, upgrade, shared state), `auth`
//! (JWT), `chat` / `presence` / `dm` (the endpoints), `socket` (one task
//! per socket, batched writes), `frames` (outbound JSON), `limits` (rate
//! limit), `http` (healthz, stats, metrics, static files), `features` (the
//! extensions' hooks).

use std::net::SocketAddr;

use clap::Parser;

use channelbox_hub::server;

/// channelbox example hub: WebSocket chat rooms, presence and direct
/// messages on the channelbox core. HTTP and WebSocket share one port.
#[derive(Parser, Debug)]
#[command(name = "hub", version)]
struct Args {
    /// Address to listen on (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Listen on 127.0.0.1:PORT instead of --listen.
    #[arg(long)]
    port: Option<u16>,
    /// HS256 secret that signs tokens. Without one the hub runs in demo
    /// mode: a random secret (said in the log) and `POST /auth/guest` open.
    #[arg(long, env = "CHANNELBOX_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Allow `POST /auth/guest {"username"}` with a configured secret.
    #[arg(long)]
    allow_guest: bool,
    /// Largest WebSocket message a client may send; larger ones close the
    /// socket with 1009.
    #[arg(long, default_value_t = 64 * 1024)]
    max_frame_bytes: usize,
    /// Frames a connection may send per second (0 turns the limit off, as
    /// benchmarks do). Over the limit a frame gets a `rate_limited` error;
    /// a flood is closed with 4008.
    #[arg(long, default_value_t = 50)]
    messages_per_second: u32,
    /// Burst allowed above --messages-per-second.
    #[arg(long, default_value_t = 100)]
    burst: u32,
    /// Largest file upload (`POST /files`; 413 above).
    #[arg(long, default_value_t = 10 << 20)]
    max_file_bytes: usize,
    /// Bytes a connection's outbound queue may hold; a socket that falls
    /// further behind is closed with 4008 and recovers with `?since=`.
    #[arg(long, default_value_t = 1 << 20)]
    queue_max_bytes: usize,
    /// Messages a connection's outbound queue may hold (same policy).
    #[arg(long, default_value_t = 10_000)]
    queue_max_messages: usize,
    /// Messages kept per room's history (0 = no count bound).
    #[arg(long, default_value_t = 10_000)]
    history_max_messages: usize,
    /// Bytes kept per room's history; the oldest go first.
    #[arg(long, default_value_t = 1 << 20)]
    history_max_bytes: usize,
    /// Seconds a message stays in history (0 = no age bound).
    #[arg(long, default_value_t = 0)]
    history_ttl_seconds: u64,
    /// Messages in the `history` frame a joiner gets.
    #[arg(long, default_value_t = 50)]
    history_replay: usize,
    /// Bytes read from a socket at a time (tungstenite's read buffer).
    /// Small keeps idle sockets cheap; chat frames are small, and larger
    /// ones are still read whole, just in more reads.
    #[arg(long, default_value_t = 256)]
    read_buffer_bytes: usize,
    /// Most queued frames written to a socket in one write.
    #[arg(long, default_value_t = 256)]
    write_batch: usize,
    /// Directory for uploaded files and the rooms registry (rooms.json).
    #[arg(long, default_value = "./channelbox-data")]
    data_dir: std::path::PathBuf,
    /// Tokio worker threads (default: one per two CPUs; 1 runs everything
    /// on one thread).
    #[arg(long)]
    threads: Option<usize>,
    /// Share rooms, history, presence and DMs with other hubs through this
    /// Redis (`redis://127.0.0.1:6379/`); without it the hub runs alone.
    #[arg(long, env = "CHANNELBOX_REDIS_URL")]
    redis_url: Option<String>,
    /// This hub's name among the hubs on one Redis (default: generated).
    #[arg(long)]
    node_name: Option<String>,
    /// With --redis-url: the users of a hub that dies (and cannot say
    /// goodbye) go offline on the other hubs within this many seconds.
    #[arg(long, default_value_t = channelbox::Config::default().presence_ttl_seconds)]
    presence_ttl_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let listen = match args.port {
        Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        None => args.listen,
    };
    let config = server::Config {
        jwt_secret: args.jwt_secret.filter(|s| !s.is_empty()),
        allow_guest: args.allow_guest,
        max_frame_bytes: args.max_frame_bytes,
        messages_per_second: args.messages_per_second,
        burst: args.burst,
        max_file_bytes: args.max_file_bytes,
        queue_max_bytes: args.queue_max_bytes,
        queue_max_messages: args.queue_max_messages,
        history_max_messages: args.history_max_messages,
        history_max_bytes: args.history_max_bytes,
        history_ttl_seconds: args.history_ttl_seconds,
        history_replay: args.history_replay,
        read_buffer_bytes: args.read_buffer_bytes,
        write_batch: args.write_batch,
        data_dir: args.data_dir,
        redis_url: args.redis_url.filter(|u| !u.is_empty()),
        node_name: args.node_name,
        presence_ttl_seconds: args.presence_ttl_seconds,
        ..server::Config::default()
    };
    let threads = args.threads.unwrap_or_else(default_threads);
    let mut runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    tracing::info!(threads, "runtime");
    runtime.enable_all().build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        server::run(listener, config, shutdown_signal()).await
    })
}

/// One worker per two CPUs: each socket's frames are written in batches, so
/// a worker keeps up with many sockets, and the kernel's share of every
/// send (loopback TCP, waking readers) runs on the other CPUs.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
