//! Fields of client frames that several features read: a message id, a
//! bounded text, a page size.

use serde_json::Value;

use crate::error::Refusal;

/// `message_id`: a message id (the room's history offset).
pub fn message_id(frame: &Value) -> Result<u64, Refusal> {
    frame
        .get("message_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| Refusal::bad_request("message_id must be a message id"))
}

/// A non-empty string field of at most `max` bytes.
pub fn text<'a>(frame: &'a Value, name: &str, max: usize) -> Result<&'a str, Refusal> {
    match frame.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= max => Ok(s),
        Some(Value::String(s)) if s.len() > max => Err(Refusal::too_large(format!(
            "{name} is longer than {max} bytes"
        ))),
        _ => Err(Refusal::bad_request(format!(
            "{name} must be a non-empty string"
        ))),
    }
}

/// `limit`: `default` when absent, at most `max`.
pub fn limit(frame: &Value, default: usize, max: usize) -> Result<usize, Refusal> {
    match frame.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok((n as usize).min(max)),
            _ => Err(Refusal::bad_request("limit must be a positive number")),
        },
    }
}
