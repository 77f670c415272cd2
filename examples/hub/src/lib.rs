//! The channelbox example hub as a library: a WebSocket chat server (rooms,
//! presence, direct messages, history with recovery) on the channelbox
//! core. `src/main.rs` is the command line; the tests start the same server
//! in-process with [`server::run`] and a [`Config::default`].
//!
//! The modules, in the order a connection meets them:
//!
//! - [`config`]: the one [`Config`] (flags, environment, defaults) and its
//!   mapping to the core's configuration.
//! - [`server`]: the listener, [`server::run`], and the state every task
//!   shares ([`server::AppState`]).
//! - [`upgrade`]: routes a socket by its request line (WebSocket or HTTP),
//!   checks the token, the path and the room, upgrades, and serves the
//!   session by its endpoint.
//! - [`auth`]: tokens (HS256 with the secret; RS256, ES256, EdDSA from an
//!   identity provider's key set or public key) and guest logins.
//! - [`session`]: one WebSocket session as the endpoints see it.
//! - The WebSocket endpoints: [`chat`] (`/chat/{room}`), [`presence`]
//!   (`/presence`), [`dm`] (`/dm/{user}`).
//! - [`socket`]: one task per socket, reading client frames (with the
//!   [`rate_limit`]) and writing queued frames in batches.
//! - [`frames`]: the JSON the hub sends, each frame encoded once;
//!   [`error`]: the `error` frames' codes.
//! - [`http`]: `/healthz`, `/stats`, `/metrics`, guest login, and the
//!   browser client of [`assets`]; [`dashboard`]: the admins' `/stats?detail`;
//!   [`api`]: the server API (`/api/*`) for application backends, on with
//!   `--api-key`.
//! - [`features`]: the extensions (typing, reactions, edits, threads, read
//!   receipts, search, mentions, rooms, files, moderation, analytics), one
//!   module each, reached through the hooks in `features/mod.rs`.
//! - [`store`]: the hub's own state (rooms, bans, mutes, read receipts,
//!   threads, client ids) in one place: redb in `<data dir>/hub.redb`, or
//!   Redis with `--redis-url`.
//! - [`webhooks`]: signed JSON events POSTed to an application backend
//!   (`--webhook-url`), from a bounded queue off the chat path.

pub mod api;
pub mod assets;
pub mod auth;
pub mod chat;
pub mod config;
pub mod dashboard;
pub mod dm;
pub mod error;
pub mod features;
pub mod frames;
pub mod fuzzing;
pub mod http;
pub mod presence;
pub mod rate_limit;
pub mod server;
pub mod session;
pub mod socket;
pub mod store;
pub mod upgrade;
pub mod webhooks;

pub use config::Config;
pub use error::Refusal;
