//! Messages handed to the host: read-only accessors and one free function.

use std::ffi::c_char;

use super::*;
use crate::message::{Envelope, Message};
use crate::shared::Shared;

/// A received message. Owned by the host: free with `cbx_message_free`.
/// Its data stays valid until then, whatever happens to the hub.
///
/// The pointer handed out is the message's shared body itself (one
/// reference of its `Shared`): receiving allocates nothing and freeing is a
/// reference-count decrement.
pub struct cbx_message {
    /// Never made: a `*cbx_message` is a `*Envelope` under a C name.
    _opaque: [u8; 0],
}

impl cbx_message {
    /// Hands one reference to the host.
    pub(crate) fn into_raw(message: Message) -> *mut cbx_message {
        Shared::into_raw(message.0).cast_mut().cast()
    }

    /// Takes back the reference `into_raw` handed out.
    ///
    /// # Safety
    /// `m` came from `into_raw` and is not used again.
    unsafe fn from_raw(m: *mut cbx_message) -> Message {
        Message(Shared::from_raw(m.cast_const().cast::<Envelope>()))
    }

    /// Gives back `refs` references `into_raw` handed out for one message
    /// (none when `refs` is 0).
    ///
    /// # Safety
    /// `m` came from `into_raw` at least `refs` times and none of those is
    /// used again.
    unsafe fn free_many(m: *mut cbx_message, refs: usize) {
        Shared::drop_raw(m.cast_const().cast::<Envelope>(), refs);
    }

    /// The body behind a pointer from `into_raw` (NULL: None).
    ///
    /// # Safety
    /// `m` is NULL or came from `into_raw` and was not freed.
    unsafe fn body<'a>(m: *const cbx_message) -> Option<&'a Envelope> {
        m.cast::<Envelope>().as_ref()
    }
}

/// Everything about a message in one struct, for hosts that read batches
/// (see `cbx_message_views`). Pointers borrow from the message.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cbx_message_view {
    /// The payload's kind.
    pub kind: cbx_kind,
    /// The payload bytes (not NUL-terminated).
    pub data: *const u8,
    /// The payload length in bytes.
    pub len: usize,
    /// The group name, `""` for direct and user sends.
    pub group: *const c_char,
    /// History offset, 0 when not saved.
    pub offset: u64,
    /// When the hub accepted it, ms since the Unix epoch.
    pub ts_ms: u64,
}

/// The message's kind; 0 for a NULL message.
#[no_mangle]
pub unsafe extern "C" fn cbx_message_kind(m: *const cbx_message) -> cbx_kind {
    boundary_value(0, || cbx_message::body(m).map_or(0, |m| kind_code(m.kind)))
}

/// The payload bytes, with their length in `*len` (when `len` is not NULL).
/// Not NUL-terminated. NULL (and length 0) for a NULL message.
#[no_mangle]
pub unsafe extern "C" fn cbx_message_data(m: *const cbx_message, len: *mut usize) -> *const u8 {
    boundary_value(std::ptr::null(), || {
        let (ptr, n) = match cbx_message::body(m) {
            Some(m) => (m.data.as_ptr(), m.data.len()),
            None => (std::ptr::null(), 0),
        };
        if !len.is_null() {
            *len = n;
        }
        ptr
    })
}

/// The group the message was sent to, `""` for direct and user sends (and
/// for a NULL message). Valid until the message is freed.
#[no_mangle]
pub unsafe extern "C" fn cbx_message_group(m: *const cbx_message) -> *const c_char {
    boundary_value(c"".as_ptr(), || {
        cbx_message::body(m).map_or(c"".as_ptr(), |m| m.group_c().as_ptr())
    })
}

/// The message's history offset in its group, 0 when it was not saved.
#[no_mangle]
pub unsafe extern "C" fn cbx_message_offset(m: *const cbx_message) -> u64 {
    boundary_value(0, || cbx_message::body(m).map_or(0, |m| m.offset))
}

/// When the hub accepted the message, in ms since the Unix epoch.
#[no_mangle]
pub unsafe extern "C" fn cbx_message_ts_ms(m: *const cbx_message) -> u64 {
    boundary_value(0, || cbx_message::body(m).map_or(0, |m| m.ts_ms))
}

/// Fills `views[i]` for each of the `n` messages: one call instead of five
/// per message for hosts that drain batches.
#[no_mangle]
pub unsafe extern "C" fn cbx_message_views(
    messages: *const *const cbx_message,
    n: usize,
    views: *mut cbx_message_view,
) -> cbx_result {
    boundary(|| {
        if n == 0 {
            return Ok(());
        }
        if n > max_count::<cbx_message_view>() {
            return Err(Error::TooLarge(format!(
                "n is {n}, more views than memory can hold"
            )));
        }
        let messages = out_ptr(messages.cast_mut(), "messages")?;
        let views = out_ptr(views, "views")?;
        let messages = std::slice::from_raw_parts(messages, n);
        // Grown as the messages are read, not reserved for `n` up front.
        let mut filled = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let m = cbx_message::body(*m)
                .ok_or_else(|| Error::InvalidArgument(format!("messages[{i}] is NULL")))?;
            filled.push(cbx_message_view {
                kind: kind_code(m.kind),
                data: m.data.as_ptr(),
                len: m.data.len(),
                group: m.group_c().as_ptr(),
                offset: m.offset,
                ts_ms: m.ts_ms,
            });
        }
        std::ptr::copy_nonoverlapping(filled.as_ptr(), views, n);
        Ok(())
    })
}

/// Frees a message. NULL is fine.
#[no_mangle]
pub unsafe extern "C" fn cbx_message_free(m: *mut cbx_message) {
    boundary_value((), || {
        if !m.is_null() {
            drop(cbx_message::from_raw(m));
        }
    })
}

/// Frees `n` messages from a batch receive (NULL entries are skipped) and
/// sets each entry to NULL.
#[no_mangle]
pub unsafe extern "C" fn cbx_messages_free(messages: *mut *mut cbx_message, n: usize) {
    boundary_value((), || {
        // A count no array can hold is a caller's mistake: free nothing
        // rather than form an impossible slice.
        if messages.is_null() || n > max_count::<*mut cbx_message>() {
            return;
        }
        // A broadcast drained from many connections sits in a row many
        // times: each run of one message is given back in one decrement.
        let mut run: (*mut cbx_message, usize) = (std::ptr::null_mut(), 0);
        for m in std::slice::from_raw_parts_mut(messages, n) {
            if m.is_null() {
                continue;
            }
            if *m == run.0 {
                run.1 += 1;
            } else {
                cbx_message::free_many(run.0, run.1);
                run = (*m, 1);
            }
            *m = std::ptr::null_mut();
        }
        cbx_message::free_many(run.0, run.1);
    })
}
