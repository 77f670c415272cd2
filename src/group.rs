//! A group: its members, the users behind them (presence), and its history.
//! One lock per group orders every send to it, so all members see one order.

use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::conn::{ConnId, ConnState};
use crate::history::History;
use crate::presence::Presence;

/// A group's shared state; lives in the hub's sharded group map.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: Arc<str>,
    pub(crate) state: Mutex<GroupState>,
}

#[derive(Debug)]
pub(crate) struct GroupState {
    /// Members in join order; a send walks this vector.
    pub(crate) members: Vec<Arc<ConnState>>,
    /// Member id -> index in `members`, for O(1) leave and idempotent join.
    index: FxHashMap<ConnId, usize>,
    pub(crate) presence: Presence,
    pub(crate) history: History,
    /// Set when the hub removed the group from its map; a caller holding a
    /// stale `Arc` must look the group up again.
    pub(crate) dead: bool,
}

impl Group {
    pub(crate) fn new(name: Arc<str>) -> Group {
        Group {
            name,
            state: Mutex::new(GroupState {
                members: Vec::new(),
                index: FxHashMap::default(),
                presence: Presence::default(),
                history: History::new(),
                dead: false,
            }),
        }
    }
}

impl Group {
    /// A group read back from the durable history store.
    pub(crate) fn restored(name: Arc<str>, history: History) -> Group {
        let g = Group::new(name);
        g.state.lock().history = history;
        g
    }
}

impl GroupState {
    /// Adds a member; false when it already was one.
    pub(crate) fn join(&mut self, conn: &Arc<ConnState>) -> bool {
        if self.index.contains_key(&conn.id) {
            return false;
        }
        self.index.insert(conn.id, self.members.len());
        self.members.push(conn.clone());
        if let Some(user) = &conn.user {
            self.presence.add(user);
        }
        true
    }

    /// Removes a member; false when it was not one.
    pub(crate) fn leave(&mut self, id: ConnId) -> bool {
        let Some(i) = self.index.remove(&id) else {
            return false;
        };
        let conn = self.members.swap_remove(i);
        if let Some(moved) = self.members.get(i) {
            self.index.insert(moved.id, i);
        }
        if let Some(user) = &conn.user {
            self.presence.remove(user);
        }
        true
    }

    /// True when nothing would be lost by forgetting the group.
    pub(crate) fn is_disposable(&self) -> bool {
        self.members.is_empty() && self.history.len() == 0 && self.history.never_used()
    }
}
