//! Groups: membership, group sends and user sends.

use std::ffi::c_char;

use super::*;

/// Adds a connection to a group (created on first use). Idempotent. Empty
/// or over-long names are refused.
#[no_mangle]
pub unsafe extern "C" fn cbx_group_add(
    hub: *mut cbx_hub,
    conn: u64,
    group: *const c_char,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        hub.group_add(conn, str_arg(group, "group")?)
    })
}

/// Removes a connection from a group; removing a non-member changes nothing.
#[no_mangle]
pub unsafe extern "C" fn cbx_group_remove(
    hub: *mut cbx_hub,
    conn: u64,
    group: *const c_char,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        hub.group_remove(conn, str_arg(group, "group")?)
    })
}

/// Sends a payload to every member of a group. With `CBX_SAVE_HISTORY` in
/// `flags` it is saved to the group's history with the next offset, which
/// every delivered copy carries. The payload is checked first (JSON must
/// parse, text must be UTF-8, size within `max_payload_bytes`): a refused
/// payload is neither delivered nor saved. Never blocks: a full receiver
/// queue applies the slow-consumer policy. `report` (nullable) gets what
/// happened.
#[no_mangle]
pub unsafe extern "C" fn cbx_group_send(
    hub: *mut cbx_hub,
    group: *const c_char,
    kind: cbx_kind,
    data: *const u8,
    len: usize,
    flags: u32,
    report: *mut cbx_send_report,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let group = str_arg(group, "group")?;
        let kind = kind_arg(kind)?;
        if flags & !CBX_SAVE_HISTORY != 0 {
            return Err(Error::InvalidArgument(format!("unknown flags {flags:#x}")));
        }
        let data = bytes_arg(data, len, hub.config().max_payload_bytes)?;
        let r = hub.group_send(group, kind, data.to_vec(), flags & CBX_SAVE_HISTORY != 0)?;
        if let Some(report) = report.as_mut() {
            *report = r.into();
        }
        Ok(())
    })
}

/// Sends a payload to every connection of a user (not saved). `report`
/// (nullable) gets what happened; a user with no connection gets nothing
/// and the call still succeeds.
#[no_mangle]
pub unsafe extern "C" fn cbx_user_send(
    hub: *mut cbx_hub,
    user: *const c_char,
    kind: cbx_kind,
    data: *const u8,
    len: usize,
    report: *mut cbx_send_report,
) -> cbx_result {
    boundary(|| {
        let hub = hub_ref(hub)?;
        let user = str_arg(user, "user")?;
        let kind = kind_arg(kind)?;
        let data = bytes_arg(data, len, hub.config().max_payload_bytes)?;
        let r = hub.user_send(user, kind, data.to_vec())?;
        if let Some(report) = report.as_mut() {
            *report = r.into();
        }
        Ok(())
    })
}
