//! The channelbox example hub: a WebSocket chat server (rooms, presence,
//! direct messages, history with recovery) on the channelbox core.
//!
//! ```sh
//! cargo run --release --example hub                      # demo mode on 127.0.0.1:8000
//! cargo run --release --example hub -- --jwt-secret S    # tokens signed with S
//! cargo run --release --example hub -- --help
//! ```
//!
//! The wire protocol is PROTOCOL.md; the library's `lib.rs` walks the
//! modules. This file only reads the [`Config`], sets up logging and the
//! runtime, and runs the server until SIGINT or SIGTERM.

use clap::Parser;

use channelbox_hub::{server, Config};

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let listen = config.listen_addr();
    let threads = config.threads.unwrap_or_else(default_threads);
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
