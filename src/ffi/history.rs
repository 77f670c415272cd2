//! History reads, in-place replacement and flushes.

use std::ffi::c_char;

use super::*;
use crate::history::HistoryQuery;
use crate::introspect;

/// Reads history as JSON. With a group:
/// `{"group","epoch","first_offset","last_offset","messages":[{"offset","ts_ms","kind","payload"}]}`,
/// the newest `limit` messages (0 = all) with offset greater than
/// `since_offset`, oldest first; `payload` is the JSON value for json, a
/// string for text and base64 for binary; `epoch` is a decimal string that
/// changes when the history is flushed; `first_offset` is the oldest offset
/// still kept, so `since_offset + 1 < first_offset` means a gap. With a NULL
/// group: `{"<group>": {...}, ...}` for every group with history. Free
/// `*out` with `cbx_string_free`.
#[no_mangle]
pub unsafe extern "C" fn cbx_history_json(
    hub: *mut cbx_hub,
    group: *const c_char,
    since_offset: u64,
    limit: u32,
    out: *mut *mut c_char,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let group = opt_str_arg(group, "group")?;
        let out = out_ptr(out, "out")?;
        let query = HistoryQuery {
            since: since_offset,
            before: 0,
            limit: limit as usize,
        };
        let json = match group {
            Some(g) => introspect::history_json(&hub.history(g, query)?),
            None => introspect::history_all_json(&hub.history_all(query)),
        };
        *out = string_out(json)?;
        Ok(())
    })
}

/// Replaces the history entry at `offset` in place (an edit, a tombstone,
/// updated reactions): it keeps its offset and timestamp and nothing is
/// delivered. `CBX_NO_SUCH_MESSAGE` when that offset is not kept.
#[no_mangle]
pub unsafe extern "C" fn cbx_history_replace(
    hub: *mut cbx_hub,
    group: *const c_char,
    offset: u64,
    kind: cbx_kind,
    data: *const u8,
    len: usize,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let group = str_arg(group, "group")?;
        let kind = kind_arg(kind)?;
        let data = bytes_arg(data, len, hub.config().max_payload_bytes)?;
        hub.history_replace(group, offset, kind, data.to_vec())?;
        Ok(())
    })
}

/// Forgets one group's history (NULL = every group's) and starts a new
/// epoch. Offsets keep counting up.
#[no_mangle]
pub unsafe extern "C" fn cbx_history_flush(hub: *mut cbx_hub, group: *const c_char) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        hub.history_flush(opt_str_arg(group, "group")?)
    })
}
