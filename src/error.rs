//! The error type of the Rust API; each variant maps to one C result code.

use crate::close::CloseReason;

/// Everything a hub operation can refuse or fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A setting, name or value is out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A required pointer was NULL (C ABI only).
    #[error("null pointer: {0}")]
    NullPointer(&'static str),
    /// Text that must be UTF-8 is not.
    #[error("invalid UTF-8: {0}")]
    InvalidUtf8(String),
    /// A JSON payload does not parse.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A payload, name or buffer is larger than the hub allows.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The connection id is unknown, or belongs to a closed connection.
    #[error("no such connection: {0}")]
    NoSuchConnection(u64),
    /// No history entry has that offset (never saved, or evicted).
    #[error("no such message: offset {offset} in group {group}")]
    NoSuchMessage {
        /// The group that was asked.
        group: String,
        /// The offset that was asked.
        offset: u64,
    },
    /// Nothing arrived before the timeout.
    #[error("no message pending")]
    Empty,
    /// The connection is closed and its queue drained.
    #[error("connection closed: {0}")]
    Closed(CloseReason),
    /// The scale-out engine (e.g. Redis) cannot be reached.
    #[error("engine unavailable: {0}")]
    EngineUnavailable(String),
    /// The durable history store cannot be opened or cannot write (the
    /// text names the file and the OS error). Saved sends, replacements and
    /// flushes are refused while it cannot write.
    #[error("history store: {0}")]
    Storage(String),
}

/// Shorthand for results of the Rust API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
