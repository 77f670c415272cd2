// The hub's modules, included by main.rs and by the tests (tests/hub_*.rs),
// so both build the same server. Paths are relative to this file.

#[path = "auth.rs"]
pub mod auth;
#[path = "chat.rs"]
pub mod chat;
#[path = "dm.rs"]
pub mod dm;
#[path = "features.rs"]
pub mod features;
#[path = "frames.rs"]
pub mod frames;
#[path = "http.rs"]
pub mod http;
#[path = "limits.rs"]
pub mod limits;
#[path = "presence.rs"]
pub mod presence;
#[path = "server.rs"]
pub mod server;
#[path = "socket.rs"]
pub mod socket;
