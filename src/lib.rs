//! channelbox: a WebSocket group hub core.
//!
//! A host server owns its sockets; the hub owns everything between them:
//! which connection is in which group, fan-out of a message to a group,
//! per-group history with offsets, presence by user, and counters. It knows
//! nothing of WebSockets or HTTP: payloads are opaque bytes tagged json,
//! text or binary.
//!
//! Data flows through the modules in this order:
//!
//! - [`config`]: limits and policies, parsed from JSON for C and Python hosts.
//! - [`hub`]: the entry point, one file a concern. [`Hub::open`] gives a
//!   [`Connection`] (`hub/connections`); [`Hub::group_add`] puts it in a
//!   group; [`Hub::group_send`] (`hub/send`) builds one [`Message`] and
//!   hands the same `Arc` to every member; `hub/history` and
//!   `hub/presence` read what the hub keeps; `hub/backend` is the one seam
//!   between this node's memory and a shared engine.
//! - `connection`: the [`Connection`] handle a host keeps for one client.
//! - `group`: a group's members, presence and history under one lock, so
//!   every member sees one order.
//! - `history`: the newest saved messages of a group, by offset, bounded by
//!   count, bytes and age, evicting the oldest first; an epoch per group.
//! - `store`: durable history (`history_dir`): one writer thread commits
//!   every change to the windows in groups (group commit); a saved send
//!   returns once durable; offsets and epochs survive a restart.
//! - `conn`: each connection's bounded outbound queue (its first slots
//!   inside the connection, a buffer past them) and the slow-consumer
//!   policy; receivers wait on it blocking, async (waker) or through
//! - `ready`: the hub's eventfd for epoll/poll/asyncio hosts, and the
//!   ready list they drain, one connection at a time or all in one call.
//! - `reaper`: closes connections whose time to live ran out, on a thread.
//! - [`CloseReason`] (`close`): why a connection was closed, with a code
//!   every host can match on.
//! - `engine`: where fan-out across nodes, history and presence live when
//!   several hubs share them (`"engine": "redis"`); the default in-memory
//!   engine is the modules above, with nothing in between.
//! - [`introspect`]: JSON shapes of groups and history.
//! - `ffi`: the C ABI, a thin skin that converts and delegates.
//!
//! ```
//! use channelbox::{Hub, Config, Kind};
//! let hub = Hub::new(Config::default()).unwrap();
//! let alice = hub.open(Some("alice"), None).unwrap();
//! alice.join("chat_1").unwrap();
//! let report = hub.group_send("chat_1", Kind::Json, &br#"{"text":"hi"}"#[..], true).unwrap();
//! assert_eq!((report.delivered, report.offset), (1, 1));
//! let m = alice.recv(None).unwrap();
//! assert_eq!((m.group(), m.offset()), (Some("chat_1"), 1));
//! ```

#![deny(missing_docs)]

mod clock;
mod close;
pub mod config;
mod conn;
mod connection;
mod engine;
mod error;
pub mod ffi;
mod group;
mod history;
pub mod hub;
pub mod introspect;
mod message;
mod presence;
mod ready;
mod reaper;
mod shared;
mod stats;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use close::CloseReason;
pub use config::{Config, EngineKind, SlowConsumer};
pub use conn::{ConnId, RecvBatch};
pub use connection::Connection;
pub use error::{Error, Result};
pub use history::{HistoryPage, HistoryQuery};
pub use hub::{
    CommitSeq, CommitWait, GroupInfo, Hub, HubFuture, Saved, SendFuture, SendReport, Staged,
};
pub use message::{Kind, Message};
pub use stats::Stats;

/// The crate version, as `cbx_version()` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
