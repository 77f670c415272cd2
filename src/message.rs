//! Payload kinds and the message handed to receivers.
//!
//! A message is built once per send and shared: every recipient's queue and
//! the group's history hold the same reference-counted body, and the payload bytes themselves
//! are a `Bytes` that a server can hand to its socket writer without a copy.

use std::ffi::{CStr, CString};
use std::sync::{Arc, OnceLock};

use crate::shared::{Reserved, Shared};

use bytes::Bytes;

use crate::error::{Error, Result};

/// How a payload is checked and how a server should frame it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Valid JSON (sent as a text frame).
    Json,
    /// Valid UTF-8 text (sent as a text frame).
    Text,
    /// Arbitrary bytes (sent as a binary frame).
    Binary,
}

impl Kind {
    /// The lowercase name used in JSON introspection: `json`, `text`, `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Text => "text",
            Kind::Binary => "binary",
        }
    }

    /// Checks that `data` is what this kind promises.
    pub fn validate(self, data: &[u8]) -> Result<()> {
        match self {
            Kind::Json => {
                // serde_json skips string contents without checking UTF-8
                // when it ignores them: check the text first.
                let text = std::str::from_utf8(data)
                    .map_err(|e| Error::InvalidJson(format!("not UTF-8: {e}")))?;
                serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .map(|_| ())
                    .map_err(|e| Error::InvalidJson(e.to_string()))
            }
            Kind::Text => std::str::from_utf8(data)
                .map(|_| ())
                .map_err(|e| Error::InvalidUtf8(e.to_string())),
            Kind::Binary => Ok(()),
        }
    }
}

/// One message as receivers and history see it. Cloning is a reference-count
/// increment; a broadcast raises the count once for all its members
/// ([`Message::reserve`]).
#[derive(Clone, Debug)]
pub struct Message(pub(crate) Shared<Envelope>);

/// The shared body of a [`Message`].
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) kind: Kind,
    pub(crate) data: Bytes,
    /// `None` for direct and user sends.
    pub(crate) group: Option<Arc<str>>,
    /// History offset, 0 when the message was not saved.
    pub(crate) offset: u64,
    /// Milliseconds since the Unix epoch when the hub accepted it.
    pub(crate) ts_ms: u64,
    /// The group name NUL-terminated, made on a C host's first ask: once a
    /// message, not once a delivery. (`OnceLock`, 24 bytes: once_cell's
    /// one-pointer `OnceBox` saves 16 but moves the envelope into the
    /// allocator's size class of a 100 B payload, and a send to a group of
    /// 1 then costs 30 instructions more in malloc.)
    c_group: OnceLock<CString>,
}

impl Envelope {
    /// The group name as a C string, `""` for direct and user sends (and
    /// for a name with a NUL inside, which C could not read anyway).
    pub(crate) fn group_c(&self) -> &CStr {
        self.c_group
            .get_or_init(|| CString::new(self.group.as_deref().unwrap_or("")).unwrap_or_default())
    }
}

impl Message {
    pub(crate) fn new(
        kind: Kind,
        data: Bytes,
        group: Option<Arc<str>>,
        offset: u64,
        ts_ms: u64,
    ) -> Message {
        Message(Shared::new(Envelope {
            kind,
            data,
            group,
            offset,
            ts_ms,
            c_group: OnceLock::new(),
        }))
    }

    /// The payload's kind.
    pub fn kind(&self) -> Kind {
        self.0.kind
    }

    /// The payload bytes (cheap to clone: shared, not copied).
    pub fn data(&self) -> &Bytes {
        &self.0.data
    }

    /// The payload as text, for json and text messages.
    pub fn text(&self) -> Option<&str> {
        match self.0.kind {
            // Validated when the message was accepted.
            Kind::Json | Kind::Text => std::str::from_utf8(&self.0.data).ok(),
            Kind::Binary => None,
        }
    }

    /// The group it was sent to; `None` for direct and user sends.
    pub fn group(&self) -> Option<&str> {
        self.0.group.as_deref()
    }

    /// Its history offset in the group, or 0 when it was not saved.
    pub fn offset(&self) -> u64 {
        self.0.offset
    }

    /// When the hub accepted it, in milliseconds since the Unix epoch.
    pub fn ts_ms(&self) -> u64 {
        self.0.ts_ms
    }

    /// Payload size in bytes, what queue and history bounds count.
    pub fn len(&self) -> usize {
        self.0.data.len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.0.data.is_empty()
    }

    /// True when both handles share one body (no copy was made).
    pub fn ptr_eq(&self, other: &Message) -> bool {
        Shared::ptr_eq(&self.0, &other.0)
    }

    /// `n` references to this message for a fan-out, the count raised once:
    /// each [`Message::take`] is a clone without a locked instruction.
    #[inline]
    pub(crate) fn reserve(&self, n: usize) -> Reserved<'_, Envelope> {
        self.0.reserve(n)
    }

    /// One reference from [`Message::reserve`].
    #[inline]
    pub(crate) fn take(reserved: &mut Reserved<'_, Envelope>) -> Message {
        Message(reserved.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_validate_their_payloads() {
        assert!(Kind::Json.validate(br#"{"a":1}"#).is_ok());
        assert!(matches!(
            Kind::Json.validate(b"{nope"),
            Err(Error::InvalidJson(_))
        ));
        assert!(matches!(
            Kind::Json.validate(b""),
            Err(Error::InvalidJson(_))
        ));
        assert!(Kind::Text.validate("h\u{e9}".as_bytes()).is_ok());
        assert!(matches!(
            Kind::Text.validate(&[0xff, 0xfe]),
            Err(Error::InvalidUtf8(_))
        ));
        assert!(Kind::Binary.validate(&[0xff, 0]).is_ok());
    }
}
