//! Hub lifecycle, errors, readiness and introspection.

use std::ffi::{c_char, CString};

use super::*;
use crate::introspect;

/// Creates a hub. `config_json` is NULL, `""`, `"{}"` (defaults) or a JSON
/// object of settings:
///
/// - `history_max_messages` (0 = no bound; default 0)
/// - `history_max_bytes` per group (0 = no bound; default 1 MiB)
/// - `history_ttl_seconds` (0 = no bound; default 0)
/// - `queue_max_messages` per connection (default 10000)
/// - `queue_max_bytes` per connection (default 1 MiB)
/// - `slow_consumer`: `"disconnect"` (default), `"drop_oldest"`, `"drop_newest"`
/// - `max_payload_bytes` (default 1 MiB)
/// - `max_group_name_bytes` (default 256)
/// - `max_user_bytes` (default 256)
///
/// An unknown key or a value of the wrong type is `CBX_INVALID_ARGUMENT`;
/// text that is not JSON is `CBX_INVALID_JSON`. On success `*out` is the hub,
/// to be freed with `cbx_hub_free`.
#[no_mangle]
pub unsafe extern "C" fn cbx_hub_new(
    config_json: *const c_char,
    out: *mut *mut cbx_hub,
) -> cbx_result {
    boundary(|| {
        let out = out_ptr(out, "out")?;
        let config = opt_str_arg(config_json, "config_json")?.unwrap_or("");
        let hub = Hub::from_json(config)?;
        *out = Box::into_raw(Box::new(cbx_hub { hub }));
        Ok(())
    })
}

/// Frees a hub: every connection is closed and every message not yet
/// received is dropped. NULL is fine. Messages already received stay valid
/// until freed. No other call on this hub may be running or made after it
/// (unlike every other function, this one is not safe to race).
#[no_mangle]
pub unsafe extern "C" fn cbx_hub_free(hub: *mut cbx_hub) {
    boundary_value((), || {
        if !hub.is_null() {
            let hub = Box::from_raw(hub);
            hub.hub.close_all();
            hub.hub.stop_reaper();
            drop(hub);
        }
    })
}

/// The library version, e.g. `"0.1.0"`. Static; do not free.
#[no_mangle]
pub extern "C" fn cbx_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// This thread's last error message, `""` after a successful call. Valid
/// until the next channelbox call on this thread; do not free.
#[no_mangle]
pub extern "C" fn cbx_last_error() -> *const c_char {
    last_error_ptr()
}

/// The name of a result code, e.g. `"CBX_INVALID_JSON"`; `"CBX_UNKNOWN"`
/// for a value that is not a code. Static; do not free.
#[no_mangle]
pub extern "C" fn cbx_result_name(result: i32) -> *const c_char {
    let name: &'static std::ffi::CStr = match result {
        CBX_OK => c"CBX_OK",
        CBX_EMPTY => c"CBX_EMPTY",
        CBX_CLOSED => c"CBX_CLOSED",
        CBX_INVALID_ARGUMENT => c"CBX_INVALID_ARGUMENT",
        CBX_NULL_POINTER => c"CBX_NULL_POINTER",
        CBX_INVALID_UTF8 => c"CBX_INVALID_UTF8",
        CBX_INVALID_JSON => c"CBX_INVALID_JSON",
        CBX_TOO_LARGE => c"CBX_TOO_LARGE",
        CBX_NO_SUCH_CONNECTION => c"CBX_NO_SUCH_CONNECTION",
        CBX_NO_SUCH_MESSAGE => c"CBX_NO_SUCH_MESSAGE",
        CBX_ENGINE_UNAVAILABLE => c"CBX_ENGINE_UNAVAILABLE",
        CBX_STORAGE => c"CBX_STORAGE",
        CBX_PANIC => c"CBX_PANIC",
        _ => c"CBX_UNKNOWN",
    };
    name.as_ptr()
}

/// The hub's readiness fd (an eventfd), for epoll/poll/asyncio: readable
/// while some connection has messages pending or was closed. Call
/// `cbx_hub_take_ready` when it is readable. Owned by the hub: do not close
/// it. Returns -1 on error (see `cbx_last_error`).
///
/// The first call creates the fd and lists every connection that already
/// has messages queued or was closed by the hub, signalling the fd (as
/// epoll reports an fd that is ready when it is added): connections opened
/// and sent to before the event loop started are not missed. From then on
/// a connection is listed when its queue goes from empty to non-empty (or
/// it closes); after a connection is taken, receive from it until
/// `CBX_EMPTY`.
#[no_mangle]
pub unsafe extern "C" fn cbx_hub_ready_fd(hub: *mut cbx_hub) -> i32 {
    let mut fd = -1;
    let r = boundary(|| {
        fd = hub_ref(hub)?.ready_fd()?;
        Ok(())
    });
    if r == CBX_OK {
        fd
    } else {
        -1
    }
}

/// Takes up to `cap` ids of connections that became ready, writing them to
/// `conns` and their count to `*n_out` (0 when none is ready). Resets the
/// ready fd once none is left. An id the host closed after it became ready
/// can still be listed; receiving from it gives `CBX_NO_SUCH_CONNECTION`,
/// which the host can ignore.
#[no_mangle]
pub unsafe extern "C" fn cbx_hub_take_ready(
    hub: *mut cbx_hub,
    conns: *mut u64,
    cap: usize,
    n_out: *mut usize,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let n_out = out_ptr(n_out, "n_out")?;
        if cap == 0 {
            return Err(Error::InvalidArgument("cap is 0".into()));
        }
        let conns = out_ptr(conns, "conns")?;
        let mut ids = vec![0u64; cap.min(65_536)];
        let n = hub.take_ready(&mut ids);
        std::ptr::copy_nonoverlapping(ids.as_ptr(), conns, n);
        *n_out = n;
        Ok(())
    })
}

/// Receives from every ready connection in one call: the drain of an
/// event loop on the ready fd, instead of `cbx_hub_take_ready` and then a
/// receive per connection. Writes up to `cap` entries, entry `i` being
/// `conns[i]` and `messages[i]`, and their count to `*n_out`:
///
/// - a message (free it with `cbx_message_free`, or the whole array with
///   `cbx_messages_free`, which skips NULLs) and the connection it was
///   queued for. Connections come in the order they became ready, each
///   one's messages oldest first;
/// - a NULL message: the hub closed that connection (slow consumer, TTL,
///   `cbx_close_all`, ...) and every message queued on it came before;
///   `cbx_conn_close_reason` says why. Said once a connection. Ids the
///   host released with `cbx_conn_close` are never listed.
///
/// A connection drained by the call comes off the ready list (as
/// `cbx_hub_take_ready` takes it off); one that `cap` left messages on
/// stays first in line for the next call. `CBX_EMPTY` when no connection
/// is ready (nothing written). The ready fd is reset once none is left,
/// so a host calls this until `CBX_EMPTY` each time the fd is readable.
///
/// The first call turns readiness on as `cbx_hub_ready_fd` does (and
/// lists the connections that already hold messages): call that first,
/// as an event loop does, so that sends list their connections from the
/// start. A `cap` of 0 is `CBX_INVALID_ARGUMENT`; one larger than any
/// array can be is `CBX_TOO_LARGE`.
#[no_mangle]
pub unsafe extern "C" fn cbx_hub_recv_ready(
    hub: *mut cbx_hub,
    conns: *mut u64,
    messages: *mut *mut cbx_message,
    cap: usize,
    n_out: *mut usize,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let conns = out_ptr(conns, "conns")?;
        let messages = out_ptr(messages, "messages")?;
        let n_out = out_ptr(n_out, "n_out")?;
        if cap == 0 {
            return Err(Error::InvalidArgument("cap is 0".into()));
        }
        if cap > max_count::<*mut cbx_message>() {
            return Err(Error::TooLarge(format!(
                "cap is {cap}, more entries than memory can hold"
            )));
        }
        let mut i = 0;
        let n = hub.recv_ready_each(cap, |id, message| {
            // Within `cap`: `recv_ready_each` hands out at most that many.
            *conns.add(i) = id;
            *messages.add(i) = message.map_or(std::ptr::null_mut(), cbx_message::into_raw);
            i += 1;
        })?;
        if n == 0 {
            return Err(Error::Empty);
        }
        *n_out = n;
        Ok(())
    })
}

/// Every group with at least one member, as JSON:
/// `{"chat_1": {"connections": [ids], "users": ["alice"]}}` (users are
/// distinct: a user with several connections is listed once). Free `*out`
/// with `cbx_string_free`.
#[no_mangle]
pub unsafe extern "C" fn cbx_groups_json(hub: *mut cbx_hub, out: *mut *mut c_char) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let out = out_ptr(out, "out")?;
        *out = string_out(introspect::groups_json(&hub.groups()))?;
        Ok(())
    })
}

/// Counters and gauges as JSON: `connections`, `users`, `groups`,
/// `group_sends`, `direct_sends`, `deliveries`, `dropped`,
/// `slow_consumer_disconnects`, `expired_connections`, `history_messages`,
/// `history_bytes`, `queued_messages`, `queued_bytes`. Free `*out` with
/// `cbx_string_free`.
#[no_mangle]
pub unsafe extern "C" fn cbx_stats_json(hub: *mut cbx_hub, out: *mut *mut c_char) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let out = out_ptr(out, "out")?;
        let json = serde_json::to_string(&hub.stats())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        *out = string_out(json)?;
        Ok(())
    })
}

/// Empties every group; connections stay open and history is kept
/// (Nexios' `flush_groups`).
#[no_mangle]
pub unsafe extern "C" fn cbx_groups_flush(hub: *mut cbx_hub) -> cbx_result {
    boundary(|| {
        hub_ref(hub)?.groups_flush();
        Ok(())
    })
}

/// Closes every connection on the hub's side: each receiver drains what was
/// queued, then gets `CBX_CLOSED`. Ids stay valid until `cbx_conn_close`.
#[no_mangle]
pub unsafe extern "C" fn cbx_close_all(hub: *mut cbx_hub) -> cbx_result {
    boundary(|| {
        hub_ref(hub)?.close_all();
        Ok(())
    })
}

/// Frees a string returned by channelbox. NULL is fine.
#[no_mangle]
pub unsafe extern "C" fn cbx_string_free(s: *mut c_char) {
    boundary_value((), || {
        if !s.is_null() {
            drop(CString::from_raw(s));
        }
    })
}
