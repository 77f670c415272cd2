//! JSON renderings of groups and history, the shapes the C API and the
//! Python package hand out.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::history::HistoryPage;
use crate::hub::GroupInfo;
use crate::message::{Kind, Message};

/// One history entry: `{"offset","ts_ms","kind","payload"}`, the payload
/// being the JSON value for json, a string for text and base64 for binary.
pub fn message_json(m: &Message) -> Value {
    let payload = match m.kind() {
        Kind::Json => serde_json::from_slice(m.data()).unwrap_or(Value::Null),
        Kind::Text => Value::String(String::from_utf8_lossy(m.data()).into_owned()),
        Kind::Binary => Value::String(base64::engine::general_purpose::STANDARD.encode(m.data())),
    };
    json!({
        "offset": m.offset(),
        "ts_ms": m.ts_ms(),
        "kind": m.kind().as_str(),
        "payload": payload,
    })
}

/// `{"group","epoch","first_offset","last_offset","messages":[..]}`. The
/// epoch is a decimal string: it is a random 64-bit value that JavaScript
/// numbers could not hold exactly.
pub fn history_json(page: &HistoryPage) -> Value {
    json!({
        "group": page.group,
        "epoch": page.epoch.to_string(),
        "first_offset": page.first_offset,
        "last_offset": page.last_offset,
        "messages": page.messages.iter().map(message_json).collect::<Vec<_>>(),
    })
}

/// `{"<group>": {history_json}, ...}`.
pub fn history_all_json(pages: &BTreeMap<String, HistoryPage>) -> Value {
    Value::Object(
        pages
            .iter()
            .map(|(name, page)| (name.clone(), history_json(page)))
            .collect::<Map<_, _>>(),
    )
}

/// `{"chat_1": {"connections": [ids], "users": ["alice"]}}`.
pub fn groups_json(groups: &BTreeMap<String, GroupInfo>) -> Value {
    serde_json::to_value(groups).unwrap_or(Value::Null)
}
