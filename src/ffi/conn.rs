//! Connections: open, close, direct send and receive.

use std::cell::RefCell;
use std::ffi::c_char;
use std::time::Duration;

use super::*;
use crate::message::Message;

thread_local! {
    /// The batch `cbx_conn_recv_batch` moves messages through, kept so that
    /// a receive allocates nothing once it has seen its largest batch.
    static RECV_BATCH: RefCell<Vec<Message>> = const { RefCell::new(Vec::new()) };
}

/// A thread keeps at most this many slots of `RECV_BATCH` (32 KiB) between
/// calls: a rare huge batch is not held forever.
const KEPT_BATCH_CAPACITY: usize = 4096;

/// Opens a connection for one client socket the host owns. `user` (NULL for
/// none) is who it belongs to, for presence and `cbx_user_send`.
/// `ttl_seconds` > 0 makes the hub close it after that long (Nexios'
/// `expires`). Writes its id to `*out_conn`; ids are never reused.
#[no_mangle]
pub unsafe extern "C" fn cbx_conn_open(
    hub: *mut cbx_hub,
    user: *const c_char,
    ttl_seconds: u32,
    out_conn: *mut u64,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let user = opt_str_arg(user, "user")?;
        let out_conn = out_ptr(out_conn, "out_conn")?;
        let ttl = (ttl_seconds > 0).then(|| Duration::from_secs(u64::from(ttl_seconds)));
        *out_conn = hub.open(user, ttl)?.id();
        Ok(())
    })
}

/// Closes a connection and releases its id: it leaves every group and its
/// pending messages are dropped. A second close, or an unknown id, is
/// `CBX_NO_SUCH_CONNECTION`.
#[no_mangle]
pub unsafe extern "C" fn cbx_conn_close(hub: *mut cbx_hub, conn: u64) -> cbx_result {
    boundary(|| hub_ref(hub)?.close(conn))
}

/// Sends a payload to one connection (not saved to any history).
/// `CBX_CLOSED` when the connection was already closed by the hub, or when
/// this send found its queue full and the `disconnect` policy closed it.
/// Under `drop_oldest`/`drop_newest` a full queue drops a message and the
/// call succeeds; drops are counted in `cbx_stats_json`.
#[no_mangle]
pub unsafe extern "C" fn cbx_conn_send(
    hub: *mut cbx_hub,
    conn: u64,
    kind: cbx_kind,
    data: *const u8,
    len: usize,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let kind = kind_arg(kind)?;
        let data = bytes_arg(data, len, hub.config().max_payload_bytes)?;
        let report = hub.conn_send(conn, kind, data.to_vec())?;
        if report.disconnected > 0 {
            // This send closed it (a slow consumer): say so, with why.
            let reason = hub.connection(conn)?.close_reason();
            return Err(reason.map_or(Error::NoSuchConnection(conn), Error::Closed));
        }
        Ok(())
    })
}

/// Receives one message, waiting up to `timeout_ms` (0: do not wait; < 0:
/// wait forever). `CBX_EMPTY` when nothing came in time; `CBX_CLOSED` once
/// the connection was closed by the hub and everything queued was received
/// (`cbx_conn_close_reason` says why). Free `*out` with `cbx_message_free`.
#[no_mangle]
pub unsafe extern "C" fn cbx_conn_recv(
    hub: *mut cbx_hub,
    conn: u64,
    timeout_ms: i32,
    out: *mut *mut cbx_message,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let out = out_ptr(out, "out")?;
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        let message = hub.recv(conn, timeout)?;
        *out = cbx_message::into_raw(message);
        Ok(())
    })
}

/// Receives up to `cap` pending messages without waiting, writing them to
/// `out_messages[0..*n_out]`; each is freed with `cbx_message_free` (or all
/// at once with `cbx_messages_free`). `CBX_EMPTY` when none is pending,
/// `CBX_CLOSED` once closed and drained.
#[no_mangle]
pub unsafe extern "C" fn cbx_conn_recv_batch(
    hub: *mut cbx_hub,
    conn: u64,
    out_messages: *mut *mut cbx_message,
    cap: usize,
    n_out: *mut usize,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let out_messages = out_ptr(out_messages, "out_messages")?;
        let n_out = out_ptr(n_out, "n_out")?;
        if cap == 0 {
            return Err(Error::InvalidArgument("cap is 0".into()));
        }
        RECV_BATCH.with(|batch| {
            let mut batch = batch.borrow_mut();
            batch.clear();
            let n = hub.try_recv_batch(conn, &mut batch, cap)?;
            if n == 0 {
                return Err(Error::Empty);
            }
            for (i, message) in batch.drain(..).enumerate() {
                *out_messages.add(i) = cbx_message::into_raw(message);
            }
            if batch.capacity() > KEPT_BATCH_CAPACITY {
                *batch = Vec::new();
            }
            *n_out = n;
            Ok(())
        })
    })
}

/// Why a connection was closed: writes one of the `CBX_CLOSE_*` codes to
/// `*out_code`, the host's own code to `*out_host_code` (the `code` given to
/// the Rust API's `Hub::disconnect` with `CloseReason::Host`; 0 for every
/// other reason) and a text for people to `*out_text` (free it with
/// `cbx_string_free`), e.g. `"slow consumer: outbound queue full (3
/// messages, 9 bytes)"` or `"connection expired (ttl)"`.
///
/// A connection that is still open gives `CBX_CLOSE_NONE`, 0 and `""`. An id
/// released by `cbx_conn_close` is `CBX_NO_SUCH_CONNECTION`. Every pointer
/// is required; nothing is written unless the call succeeds.
#[no_mangle]
pub unsafe extern "C" fn cbx_conn_close_reason(
    hub: *mut cbx_hub,
    conn: u64,
    out_code: *mut cbx_close_code,
    out_host_code: *mut u32,
    out_text: *mut *mut c_char,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let out_code = out_ptr(out_code, "out_code")?;
        let out_host_code = out_ptr(out_host_code, "out_host_code")?;
        let out_text = out_ptr(out_text, "out_text")?;
        let reason = hub.connection(conn)?.close_reason();
        let (code, host_code, text) = match &reason {
            None => (CBX_CLOSE_NONE, 0, String::new()),
            Some(reason) => (
                close_code(reason),
                host_close_code(reason),
                reason.to_string(),
            ),
        };
        *out_text = string_out(text)?;
        *out_code = code;
        *out_host_code = host_code;
        Ok(())
    })
}
