//! The admin dashboard's data (issue 15): `GET /stats?detail` answers what
//! `GET /stats` answers plus a `detail` object with the hub's health, for
//! admins only.
//!
//! `/stats` stays as it was (any signed-in caller, the same fields), since
//! other programs read it. The dashboard page (`GET /dashboard`, a static
//! file of [`crate::assets`]) sends the chat client's token as a bearer
//! token and asks for `?detail`: a caller without the `admin` role gets 403
//! there, and the page says "admins only". The page itself is public, like
//! `GET /`: it holds no data.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::Claims;
use crate::config::HistoryStore;
use crate::server::AppState;

/// Whether a `/stats` request asked for the admin detail: `Ok(true)` for an
/// admin with `detail` in the query, `Ok(false)` without it, and
/// [`NotAdmin`] for anyone else who asked.
pub fn wants_detail(query: Option<&str>, caller: &Claims) -> Result<bool, NotAdmin> {
    let asked = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("detail"))
    });
    if asked && !caller.is_admin() {
        return Err(NotAdmin);
    }
    Ok(asked)
}

/// A caller without the `admin` role asked for the detail: 403.
#[derive(Debug)]
pub struct NotAdmin;

impl IntoResponse for NotAdmin {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "forbidden", "detail": "admins only"})),
        )
            .into_response()
    }
}

/// The `detail` object: which stores the hub uses and how they fare, and
/// the process' memory.
pub fn detail(state: &AppState) -> Value {
    let core = state.hub.stats();
    let config = &state.config;
    let shared = config.redis_url().is_some();
    let history_kind = match (shared, config.history_store) {
        (true, _) => "redis",
        (false, HistoryStore::Disk) => "disk",
        (false, HistoryStore::Memory) => "memory",
    };
    json!({
        // "memory": the hub runs alone (no engine to be connected to).
        "engine": if shared { "redis" } else { "memory" },
        "state_store": {
            "kind": if state.store.is_shared() { "redis" } else { "redb" },
            "corrupt": state.store.corrupt(),
        },
        "history_store": {
            "kind": history_kind,
            "commits": core.history_store_commits,
            "failed_commits": core.history_store_failed_commits,
            "failing": core.history_store_failing != 0,
            "skipped_rows": core.history_store_skipped_rows,
        },
        "expired_connections": core.expired_connections,
        "rss_bytes": rss_bytes(),
    })
}

/// The process' resident memory from `/proc/self/statm` (Linux); `None`
/// elsewhere.
#[cfg(target_os = "linux")]
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|&p| p > 0)?)
}

#[cfg(not(target_os = "linux"))]
fn rss_bytes() -> Option<u64> {
    None
}
