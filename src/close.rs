//! Why a connection was closed: one typed reason from the core to every
//! host, with a stable number (C's `CBX_CLOSE_*`) and a text, so no host
//! parses strings to tell a slow consumer from a TTL expiry.

use std::fmt;

/// Why the hub, or the host through it, closed a connection.
///
/// [`CloseReason::code`] is stable across versions and equals C's
/// `CBX_CLOSE_*` constants; [`fmt::Display`] gives a text for people.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The host released it ([`crate::Hub::close`], `cbx_conn_close`).
    ClosedByHost,
    /// The host disconnected it with a code and text of its own
    /// ([`crate::Hub::disconnect`]); the example hub passes a WebSocket close
    /// code here.
    Host {
        /// The host's code, handed back as given.
        code: u32,
        /// The host's text, handed back as given.
        text: String,
    },
    /// Its outbound queue was full under the `disconnect` policy.
    SlowConsumer {
        /// Messages queued when it was closed.
        messages: usize,
        /// Payload bytes queued when it was closed.
        bytes: usize,
    },
    /// Its time to live ran out.
    Expired,
    /// The host closed every connection ([`crate::Hub::close_all`]).
    HubClosed,
    /// The shared engine lost its subscription: messages for this
    /// connection may have been missed, so the client should reconnect and
    /// recover by offset.
    EngineLostSubscription,
    /// The shared engine saw a gap in a group's offsets (messages were
    /// missed); the client should reconnect and recover by offset.
    EngineMissedMessages,
}

impl CloseReason {
    /// The reason's stable number, the same as C's `CBX_CLOSE_*`.
    pub fn code(&self) -> u32 {
        match self {
            CloseReason::ClosedByHost => 1,
            CloseReason::Host { .. } => 2,
            CloseReason::SlowConsumer { .. } => 3,
            CloseReason::Expired => 4,
            CloseReason::HubClosed => 5,
            CloseReason::EngineLostSubscription => 6,
            CloseReason::EngineMissedMessages => 7,
        }
    }

    /// True for the reasons that come from the shared engine (the client
    /// should reconnect and recover what it missed).
    pub fn is_engine(&self) -> bool {
        matches!(
            self,
            CloseReason::EngineLostSubscription | CloseReason::EngineMissedMessages
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClosedByHost => f.write_str("closed by the host"),
            CloseReason::Host { text, .. } => f.write_str(text),
            CloseReason::SlowConsumer { messages, bytes } => write!(
                f,
                "slow consumer: outbound queue full ({messages} messages, {bytes} bytes)"
            ),
            CloseReason::Expired => f.write_str("connection expired (ttl)"),
            CloseReason::HubClosed => f.write_str("hub closed all connections"),
            CloseReason::EngineLostSubscription => f.write_str("engine: lost subscription"),
            CloseReason::EngineMissedMessages => f.write_str("engine: missed messages"),
        }
    }
}
