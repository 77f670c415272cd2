//! The engine's way back into the hub: broadcasts from any node land
//! here, lost subscriptions close what depended on them, and the presence
//! heartbeat reads this node's view. Only a shared engine uses it.

use std::sync::Weak;

use bytes::Bytes;

use super::{Hub, HubInner};
use crate::close::CloseReason;
use crate::engine::{EngineSink, LocalPresence};
use crate::message::{Kind, Message};

/// The hub as its engine sees it. Weak, so the engine never keeps a
/// dropped hub alive.
pub(super) struct HubSink(pub(super) Weak<HubInner>);

impl HubSink {
    fn hub(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl EngineSink for HubSink {
    fn deliver_group(&self, group: &str, kind: Kind, data: Bytes, offset: u64, ts_ms: u64) {
        if let Some(hub) = self.hub() {
            hub.deliver_broadcast(group, kind, data, offset, ts_ms);
        }
    }

    fn deliver_user(&self, user: &str, kind: Kind, data: Bytes, ts_ms: u64) {
        if let Some(hub) = self.hub() {
            // The sending node counted the send.
            hub.deliver_to_user(user, Message::new(kind, data, None, 0, ts_ms), None);
        }
    }

    fn lost(&self, groups: &[String], users: &[String], reason: CloseReason) -> u64 {
        self.hub()
            .map_or(0, |hub| hub.close_lost(groups, users, reason))
    }

    fn local_presence(&self) -> LocalPresence {
        self.hub()
            .map(|hub| hub.local_presence())
            .unwrap_or_default()
    }
}
