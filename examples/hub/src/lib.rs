//! The channelbox example hub as a library: a WebSocket chat server (rooms,
//! presence, direct messages, history with recovery) on the channelbox
//! core. `src/main.rs` is the command line; the tests start the same server
//! in-process with [`server::run`].
//!
//! Modules, in the order a connection meets them: `server` (accept, route,
//! upgrade, shared state), `auth` (JWT), `chat` / `presence` / `dm` (the
//! endpoints), `socket` (one task per socket, batched writes), `frames`
//! (outbound JSON), `limits` (rate limit), `http` (healthz, stats, metrics,
//! static files), `features` (the extensions' hooks).

pub mod assets;
pub mod auth;
pub mod chat;
pub mod dm;
pub mod features;
pub mod frames;
pub mod http;
pub mod limits;
pub mod presence;
pub mod server;
pub mod socket;
