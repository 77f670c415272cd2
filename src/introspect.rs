//! JSON renderings of groups and history, the shapes the C API and the
//! Python package hand out.
//!
//! Json payloads are embedded as the exact text that was sent (a
//! `RawValue`), so whatever the send accepted reads back unchanged: no
//! precision lost on big numbers, no re-encoding.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::history::HistoryPage;
use crate::hub::GroupInfo;
use crate::message::{Kind, Message};

/// A payload as history shows it.
#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a RawValue),
    Text(std::borrow::Cow<'a, str>),
}

/// One history entry: `{"offset","ts_ms","kind","payload"}`.
#[derive(Serialize)]
struct Entry<'a> {
    offset: u64,
    ts_ms: u64,
    kind: &'static str,
    payload: Payload<'a>,
}

impl<'a> Entry<'a> {
    fn new(m: &'a Message) -> Entry<'a> {
        let text = || String::from_utf8_lossy(m.data());
        let payload = match m.kind() {
            // Accepted payloads are valid JSON text; fall back to a string
            // rather than ever failing to render.
            Kind::Json => std::str::from_utf8(m.data())
                .ok()
                .and_then(|t| serde_json::from_str::<&RawValue>(t).ok())
                .map_or_else(|| Payload::Text(text()), Payload::Json),
            Kind::Text => Payload::Text(text()),
            Kind::Binary => Payload::Text(
                base64::engine::general_purpose::STANDARD
                    .encode(m.data())
                    .into(),
            ),
        };
        Entry {
            offset: m.offset(),
            ts_ms: m.ts_ms(),
            kind: m.kind().as_str(),
            payload,
        }
    }
}

/// One group's history page.
#[derive(Serialize)]
struct Page<'a> {
    group: &'a str,
    /// A decimal string: a random 64-bit value that JavaScript numbers could
    /// not hold exactly.
    epoch: String,
    first_offset: u64,
    last_offset: u64,
    messages: Vec<Entry<'a>>,
}

impl<'a> Page<'a> {
    fn new(page: &'a HistoryPage) -> Page<'a> {
        Page {
            group: &page.group,
            epoch: page.epoch.to_string(),
            first_offset: page.first_offset,
            last_offset: page.last_offset,
            messages: page.messages.iter().map(Entry::new).collect(),
        }
    }
}

fn to_string<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

/// One history entry as JSON: `{"offset","ts_ms","kind","payload"}`, the
/// payload being the JSON value for json, a string for text and base64 for
/// binary.
pub fn message_json(m: &Message) -> String {
    to_string(&Entry::new(m))
}

/// `{"group","epoch","first_offset","last_offset","messages":[..]}`; the
/// epoch is a decimal string.
pub fn history_json(page: &HistoryPage) -> String {
    to_string(&Page::new(page))
}

/// `{"<group>": {history_json}, ...}`.
pub fn history_all_json(pages: &BTreeMap<String, HistoryPage>) -> String {
    let pages: BTreeMap<&str, Page<'_>> = pages
        .iter()
        .map(|(name, page)| (name.as_str(), Page::new(page)))
        .collect();
    to_string(&pages)
}

/// `{"chat_1": {"connections": [ids], "users": ["alice"]}}`.
pub fn groups_json(groups: &BTreeMap<String, GroupInfo>) -> String {
    to_string(groups)
}
