//! Who is where: groups and their members, presence by user, users
//! overall; this node's view, or every node's through the shared engine.

use std::collections::BTreeMap;

use super::backend::Backend;
use super::{ready, shard, GroupInfo, Hub, HubFuture, HubInner, USER_SHARDS};
use crate::conn::ConnId;
use crate::engine::LocalPresence;

impl Hub {
    /// Every group with at least one member: its connections and users.
    pub fn groups(&self) -> BTreeMap<String, GroupInfo> {
        let mut out = BTreeMap::new();
        for shard in &self.inner.groups {
            for (name, group) in shard.read().iter() {
                let st = group.state.lock();
                if st.members.is_empty() {
                    continue;
                }
                let mut connections: Vec<ConnId> = st.members.iter().map(|c| c.id).collect();
                connections.sort_unstable();
                out.insert(
                    name.to_string(),
                    GroupInfo {
                        connections,
                        users: st.presence.users(),
                    },
                );
            }
        }
        out
    }

    /// The distinct users in a group (empty when it has no members). With
    /// the Redis engine: on every node (this node's view if Redis is down).
    pub fn presence(&self, group: &str) -> Vec<String> {
        match &self.inner.backend {
            Backend::Local => self.local_presence_of(group),
            Backend::Shared(engine) => engine
                .group_users(group)
                .unwrap_or_else(|_| self.local_presence_of(group)),
        }
    }

    /// True when `user` has a connection in `group` (with the Redis engine:
    /// on any node).
    pub fn is_present(&self, group: &str, user: &str) -> bool {
        let local = self.is_present_here(group, user);
        match &self.inner.backend {
            Backend::Shared(engine) if !local => engine
                .group_users(group)
                .is_ok_and(|users| users.iter().any(|u| u == user)),
            _ => local,
        }
    }

    /// [`Hub::presence`] for async hosts: with Redis it awaits the engine
    /// instead of blocking the calling thread.
    pub fn presence_async(&self, group: &str) -> HubFuture<Vec<String>> {
        match &self.inner.backend {
            Backend::Local => ready(self.local_presence_of(group)),
            Backend::Shared(engine) => {
                let users = engine.group_users_async(group);
                let (hub, group) = (self.clone(), group.to_owned());
                Box::pin(async move {
                    users
                        .await
                        .unwrap_or_else(|_| hub.local_presence_of(&group))
                })
            }
        }
    }

    /// [`Hub::is_present`] for async hosts: with Redis it awaits the engine
    /// instead of blocking the calling thread.
    pub fn is_present_async(&self, group: &str, user: &str) -> HubFuture<bool> {
        let local = self.is_present_here(group, user);
        match &self.inner.backend {
            Backend::Shared(engine) if !local => {
                let users = engine.group_users_async(group);
                let user = user.to_owned();
                Box::pin(async move { users.await.is_ok_and(|users| users.contains(&user)) })
            }
            _ => ready(local),
        }
    }

    /// False when an unsaved send to `group` would reach nobody: no member
    /// on this node, and no other node to hear it (the local engine). A
    /// host can then skip building the frame (the example hub's unread
    /// `activity` frame comes with every message, and most rooms have no
    /// watcher). With a shared engine (Redis) always true: other nodes'
    /// members are not known here without a round trip. A saved send is
    /// never wasted (history keeps it), so this is for unsaved sends.
    pub fn group_has_listeners(&self, group: &str) -> bool {
        match &self.inner.backend {
            Backend::Local => self
                .group(group)
                .is_some_and(|g| !g.state.lock().members.is_empty()),
            Backend::Shared(_) => true,
        }
    }

    /// How many open connections carry `user`.
    pub fn user_connections(&self, user: &str) -> usize {
        self.inner.users[shard(user, USER_SHARDS)]
            .lock()
            .get(user)
            .map_or(0, super::ConnList::len)
    }

    /// Distinct users with at least one open connection, sorted. With the
    /// Redis engine: on every node (this node's view if Redis is down).
    pub fn users(&self) -> Vec<String> {
        match &self.inner.backend {
            Backend::Local => self.local_users(),
            Backend::Shared(engine) => engine.users().unwrap_or_else(|_| self.local_users()),
        }
    }

    /// [`Hub::users`] for async hosts: with Redis it awaits the engine
    /// instead of blocking the calling thread.
    pub fn users_async(&self) -> HubFuture<Vec<String>> {
        match &self.inner.backend {
            Backend::Local => ready(self.local_users()),
            Backend::Shared(engine) => {
                let users = engine.users_async();
                let hub = self.clone();
                Box::pin(async move { users.await.unwrap_or_else(|_| hub.local_users()) })
            }
        }
    }

    fn local_presence_of(&self, group: &str) -> Vec<String> {
        self.group(group)
            .map(|g| g.state.lock().presence.users())
            .unwrap_or_default()
    }

    fn is_present_here(&self, group: &str, user: &str) -> bool {
        self.group(group)
            .is_some_and(|g| g.state.lock().presence.contains(user))
    }

    fn local_users(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .inner
            .users
            .iter()
            .flat_map(|s| s.lock().keys().map(|u| u.to_string()).collect::<Vec<_>>())
            .collect();
        out.sort_unstable();
        out
    }

    /// This node's presence, for the shared engine's heartbeat.
    #[cfg(feature = "redis")]
    pub(super) fn local_presence(&self) -> LocalPresence {
        local_presence(&self.inner)
    }
}

/// Who is connected to this node: users per group and users overall.
pub(super) fn local_presence(inner: &HubInner) -> LocalPresence {
    let mut out = LocalPresence::default();
    for shard in &inner.groups {
        for (name, group) in shard.read().iter() {
            let users = group.state.lock().presence.users();
            if !users.is_empty() {
                out.groups.push((name.to_string(), users));
            }
        }
    }
    for shard in &inner.users {
        out.users.extend(shard.lock().keys().map(|u| u.to_string()));
    }
    out
}
