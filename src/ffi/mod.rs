//! The C ABI: a thin skin over the Rust API. Each function converts its
//! arguments, calls one method of [`crate::Hub`], and converts the result.
//!
//! Every exported function runs inside `boundary()`, which catches panics
//! (`CBX_PANIC`), records this thread's error message for
//! `cbx_last_error()`, and maps [`Error`] to a result code. Out-parameters
//! are written only on success.

#![allow(non_camel_case_types)]
// The safety contract of every exported function is the C one, stated once
// in the header's preamble and per argument in its doc comment (pointers
// are NULL or valid as described); a Rust-style `# Safety` section on each
// would only repeat it in the generated header.
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::close::CloseReason;
use crate::error::Error;
use crate::hub::{Hub, SendReport};
use crate::message::Kind;

mod conn;
mod group;
mod history;
mod hub;
mod message;

pub use conn::*;
pub use group::*;
pub use history::*;
pub use hub::*;
pub use message::*;

/// Result of every fallible call: `CBX_OK` (0) or one of the `CBX_*` codes.
/// Codes start at 7000 so they never collide with errno values.
pub type cbx_result = i32;

/// Success.
pub const CBX_OK: cbx_result = 0;
/// Nothing was pending (or nothing arrived before the timeout).
pub const CBX_EMPTY: cbx_result = 7001;
/// The connection is closed and its queue drained.
pub const CBX_CLOSED: cbx_result = 7002;
/// An argument is out of range or malformed (bad config, empty name, ...).
pub const CBX_INVALID_ARGUMENT: cbx_result = 7100;
/// A required pointer was NULL.
pub const CBX_NULL_POINTER: cbx_result = 7101;
/// A string or text payload is not valid UTF-8.
pub const CBX_INVALID_UTF8: cbx_result = 7102;
/// A JSON payload or config does not parse.
pub const CBX_INVALID_JSON: cbx_result = 7103;
/// A payload, name or count is larger than the hub allows.
pub const CBX_TOO_LARGE: cbx_result = 7104;
/// The connection id is unknown or was closed by the host (ids are never
/// reused).
pub const CBX_NO_SUCH_CONNECTION: cbx_result = 7200;
// 7201 was CBX_NO_SUCH_GROUP, never returned; retired, never reused.
/// No history entry has that offset (never saved, or evicted).
pub const CBX_NO_SUCH_MESSAGE: cbx_result = 7202;
/// The scale-out engine (e.g. Redis) cannot be reached.
pub const CBX_ENGINE_UNAVAILABLE: cbx_result = 7300;
/// The durable history store (`history_dir`) cannot be opened or cannot
/// write, e.g. the disk is full; `cbx_last_error()` names the file and the
/// OS error. Saved sends are refused while it cannot write.
pub const CBX_STORAGE: cbx_result = 7400;
/// A bug in channelbox: a panic was caught at the boundary.
pub const CBX_PANIC: cbx_result = 7999;

/// Payload kind: how a payload is checked and framed.
pub type cbx_kind = u32;
/// Valid JSON, sent as a text frame. Invalid JSON is refused with
/// `CBX_INVALID_JSON`.
pub const CBX_JSON: cbx_kind = 1;
/// Valid UTF-8 text, sent as a text frame. Refused with `CBX_INVALID_UTF8`
/// otherwise.
pub const CBX_TEXT: cbx_kind = 2;
/// Arbitrary bytes, sent as a binary frame.
pub const CBX_BINARY: cbx_kind = 3;

/// Why a connection was closed (`cbx_conn_close_reason`). The numbers are
/// stable across versions; new reasons may be added, so treat an unknown
/// one like a generic close.
pub type cbx_close_code = u32;
/// The connection is open.
pub const CBX_CLOSE_NONE: cbx_close_code = 0;
/// The host released it (`Hub::close`; in C the id is gone after
/// `cbx_conn_close`, so only Rust hosts holding a handle see this one).
pub const CBX_CLOSE_CLOSED_BY_HOST: cbx_close_code = 1;
/// The host disconnected it with a code of its own (the host code
/// out-parameter of `cbx_conn_close_reason` carries it).
pub const CBX_CLOSE_HOST: cbx_close_code = 2;
/// Its outbound queue was full under the `disconnect` slow-consumer policy.
pub const CBX_CLOSE_SLOW_CONSUMER: cbx_close_code = 3;
/// Its time to live ran out.
pub const CBX_CLOSE_EXPIRED: cbx_close_code = 4;
/// `cbx_close_all` closed it.
pub const CBX_CLOSE_HUB_CLOSED: cbx_close_code = 5;
/// The shared engine lost its subscription; messages may have been missed
/// (the client should reconnect and recover by offset).
pub const CBX_CLOSE_ENGINE_LOST_SUBSCRIPTION: cbx_close_code = 6;
/// The shared engine saw messages go missing (the client should reconnect
/// and recover by offset).
pub const CBX_CLOSE_ENGINE_MISSED_MESSAGES: cbx_close_code = 7;

/// `cbx_group_send` flag: save the message to the group's history, giving it
/// the group's next offset.
pub const CBX_SAVE_HISTORY: u32 = 1;

/// What a send did.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct cbx_send_report {
    /// Receivers whose queue took the message.
    pub delivered: u64,
    /// Messages refused or evicted by full queues.
    pub dropped: u64,
    /// The message's history offset, 0 when it was not saved.
    pub offset: u64,
    /// Receivers closed by this send for being too slow.
    pub disconnected: u64,
}

impl From<SendReport> for cbx_send_report {
    fn from(r: SendReport) -> Self {
        cbx_send_report {
            delivered: r.delivered,
            dropped: r.dropped,
            offset: r.offset,
            disconnected: r.disconnected,
        }
    }
}

/// A hub. Create with `cbx_hub_new`, free with `cbx_hub_free`. Every
/// function may be called on it from any thread at once.
pub struct cbx_hub {
    pub(crate) hub: Hub,
}

thread_local! {
    /// This thread's last error as NUL-terminated bytes. A `Vec` rather
    /// than a `CString` so that setting it reuses the buffer: hosts that
    /// drain until `CBX_EMPTY` set an error on every last call.
    static LAST_ERROR: RefCell<Vec<u8>> = RefCell::new(vec![0]);
}

fn set_last_error(message: &dyn std::fmt::Display) {
    use std::io::Write;
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        // Writing to a Vec cannot fail.
        let _ = write!(e, "{message}");
        if e.contains(&0) {
            let escaped = String::from_utf8_lossy(&e).replace('\0', "\\0");
            e.clear();
            e.extend_from_slice(escaped.as_bytes());
        }
        e.push(0);
    });
}

/// Sets the last error to a fixed text without formatting: for
/// `CBX_EMPTY`, which a host draining until empty meets on every last call.
fn set_last_error_str(message: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        e.extend_from_slice(message.as_bytes());
        e.push(0);
    });
}

/// `Error::Empty`'s text (a test keeps the two equal).
const EMPTY_MESSAGE: &str = "no message pending";

fn clear_last_error() {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        if e.len() > 1 {
            e.clear();
            e.push(0);
        }
    });
}

/// The pointer to this thread's last error message (valid until the next
/// call on this thread).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr().cast())
}

/// The result code for an error.
pub(crate) fn code(e: &Error) -> cbx_result {
    match e {
        Error::InvalidArgument(_) => CBX_INVALID_ARGUMENT,
        Error::NullPointer(_) => CBX_NULL_POINTER,
        Error::InvalidUtf8(_) => CBX_INVALID_UTF8,
        Error::InvalidJson(_) => CBX_INVALID_JSON,
        Error::TooLarge(_) => CBX_TOO_LARGE,
        Error::NoSuchConnection(_) => CBX_NO_SUCH_CONNECTION,
        Error::NoSuchMessage { .. } => CBX_NO_SUCH_MESSAGE,
        Error::Empty => CBX_EMPTY,
        Error::Closed(_) => CBX_CLOSED,
        Error::EngineUnavailable(_) => CBX_ENGINE_UNAVAILABLE,
        Error::Storage(_) => CBX_STORAGE,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs `f` at the ABI boundary: no panic escapes, the thread's last error
/// is set (or cleared on success), and the result becomes a code. Always
/// inlined: whether LLVM inlined it into a receive came and went with
/// unrelated changes elsewhere (about 100 instructions a call).
#[inline(always)]
pub(crate) fn boundary<F: FnOnce() -> Result<(), Error>>(f: F) -> cbx_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            clear_last_error();
            CBX_OK
        }
        Ok(Err(Error::Empty)) => {
            set_last_error_str(EMPTY_MESSAGE);
            CBX_EMPTY
        }
        Ok(Err(e)) => {
            set_last_error(&e);
            code(&e)
        }
        Err(payload) => {
            set_last_error(&format_args!(
                "internal error (panic): {}",
                panic_message(&*payload)
            ));
            CBX_PANIC
        }
    }
}

/// Like [`boundary`] for functions that return a value instead of a code:
/// a panic yields `fallback`.
pub(crate) fn boundary_value<T, F: FnOnce() -> T>(fallback: T, f: F) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Borrows the hub behind a pointer.
///
/// # Safety
/// `hub` is NULL or a pointer from `cbx_hub_new` not yet freed.
pub(crate) unsafe fn hub_ref<'a>(hub: *const cbx_hub) -> Result<&'a Hub, Error> {
    hub.as_ref()
        .map(|h| &h.hub)
        .ok_or(Error::NullPointer("hub"))
}

/// Checks an out-pointer.
pub(crate) fn out_ptr<T>(p: *mut T, what: &'static str) -> Result<*mut T, Error> {
    if p.is_null() {
        Err(Error::NullPointer(what))
    } else {
        Ok(p)
    }
}

/// Reads a required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &'static str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::NullPointer(what));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|e| Error::InvalidUtf8(format!("{what}: {e}")))
}

/// Reads an optional NUL-terminated UTF-8 string (NULL = None).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn opt_str_arg<'a>(
    p: *const c_char,
    what: &'static str,
) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, what).map(Some)
    }
}

/// Borrows `len` bytes at `data`, refusing NULL with a length and lengths
/// over `max` before the slice is formed (a huge length is an error, never
/// a read out of bounds).
///
/// # Safety
/// When `len` is within `max`, `data` points to `len` readable bytes.
pub(crate) unsafe fn bytes_arg<'a>(
    data: *const u8,
    len: usize,
    max: usize,
) -> Result<&'a [u8], Error> {
    if len > max {
        return Err(Error::TooLarge(format!(
            "payload is {len} bytes, the limit is {max}"
        )));
    }
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Error::NullPointer("data"));
    }
    Ok(std::slice::from_raw_parts(data, len))
}

/// The most elements a C array of `T` can hold (a slice's limit): larger
/// counts are refused before a slice is formed.
pub(crate) fn max_count<T>() -> usize {
    isize::MAX as usize / std::mem::size_of::<T>().max(1)
}

/// Converts a C kind to the Rust one.
pub(crate) fn kind_arg(kind: cbx_kind) -> Result<Kind, Error> {
    match kind {
        CBX_JSON => Ok(Kind::Json),
        CBX_TEXT => Ok(Kind::Text),
        CBX_BINARY => Ok(Kind::Binary),
        other => Err(Error::InvalidArgument(format!(
            "unknown kind {other} (expected CBX_JSON, CBX_TEXT or CBX_BINARY)"
        ))),
    }
}

/// The C value of a Rust kind.
pub(crate) fn kind_code(kind: Kind) -> cbx_kind {
    match kind {
        Kind::Json => CBX_JSON,
        Kind::Text => CBX_TEXT,
        Kind::Binary => CBX_BINARY,
    }
}

/// The C code of a close reason.
pub(crate) fn close_code(reason: &CloseReason) -> cbx_close_code {
    match reason {
        CloseReason::ClosedByHost => CBX_CLOSE_CLOSED_BY_HOST,
        CloseReason::Host { .. } => CBX_CLOSE_HOST,
        CloseReason::SlowConsumer { .. } => CBX_CLOSE_SLOW_CONSUMER,
        CloseReason::Expired => CBX_CLOSE_EXPIRED,
        CloseReason::HubClosed => CBX_CLOSE_HUB_CLOSED,
        CloseReason::EngineLostSubscription => CBX_CLOSE_ENGINE_LOST_SUBSCRIPTION,
        CloseReason::EngineMissedMessages => CBX_CLOSE_ENGINE_MISSED_MESSAGES,
    }
}

/// The host's own code of a [`CloseReason::Host`], 0 for the others.
pub(crate) fn host_close_code(reason: &CloseReason) -> u32 {
    match reason {
        CloseReason::Host { code, .. } => *code,
        _ => 0,
    }
}

/// Hands a string to C; freed with `cbx_string_free`.
pub(crate) fn string_out(s: String) -> Result<*mut c_char, Error> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| Error::InvalidArgument("string contains NUL".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_says_what_the_error_says() {
        assert_eq!(EMPTY_MESSAGE, Error::Empty.to_string());
        assert_eq!(boundary(|| Err(Error::Empty)), CBX_EMPTY);
        // SAFETY: this thread's message, NUL-terminated.
        let text = unsafe { std::ffi::CStr::from_ptr(last_error_ptr()) };
        assert_eq!(text.to_str().unwrap(), EMPTY_MESSAGE);
    }

    #[test]
    fn close_codes_are_the_rust_ones() {
        let reasons = [
            CloseReason::ClosedByHost,
            CloseReason::Host {
                code: 4003,
                text: "banned".into(),
            },
            CloseReason::SlowConsumer {
                messages: 1,
                bytes: 2,
            },
            CloseReason::Expired,
            CloseReason::HubClosed,
            CloseReason::EngineLostSubscription,
            CloseReason::EngineMissedMessages,
        ];
        for (i, reason) in reasons.iter().enumerate() {
            assert_eq!(close_code(reason), reason.code());
            assert_eq!(close_code(reason), i as u32 + 1, "{reason}");
        }
    }
}
