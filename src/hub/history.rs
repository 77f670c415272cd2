//! Group history: reads by offset, the last offset, in-place edits and
//! flushes, from this node's memory or the shared engine. Each blocking
//! read has an `_async` twin that awaits the engine instead of blocking.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::backend::Backend;
use super::{ready, Hub, HubFuture};
use crate::error::{Error, Result};
use crate::history::{HistoryPage, HistoryQuery};
use crate::message::{Kind, Message};
use crate::store::Commit;

impl Hub {
    /// Reads part of one group's history (see [`HistoryQuery`]). A group
    /// that never saved anything reads as empty.
    pub fn history(&self, group: &str, query: HistoryQuery) -> Result<HistoryPage> {
        self.check_group(group)?;
        match &self.inner.backend {
            Backend::Local => Ok(self.local_history(group, query)),
            Backend::Shared(engine) => engine.read(group, query, self.now_ms()),
        }
    }

    /// [`Hub::history`] for async hosts (see [`HubFuture`]).
    pub fn history_async(
        &self,
        group: &str,
        query: HistoryQuery,
    ) -> HubFuture<Result<HistoryPage>> {
        if let Err(e) = self.check_group(group) {
            return ready(Err(e));
        }
        match &self.inner.backend {
            Backend::Local => ready(Ok(self.local_history(group, query))),
            Backend::Shared(engine) => engine.read_async(group, query, self.now_ms()),
        }
    }

    /// The newest offset `group` ever assigned to a saved message, 0 when it
    /// saved nothing: the `last_offset` of [`Hub::history`] without reading
    /// any message. Flushes and evictions do not lower it (offsets keep
    /// counting up), so an offset above it was never handed out.
    pub fn last_offset(&self, group: &str) -> Result<u64> {
        self.check_group(group)?;
        match &self.inner.backend {
            Backend::Local => Ok(self.local_last_offset(group)),
            Backend::Shared(engine) => engine.last_offset(group),
        }
    }

    /// [`Hub::last_offset`] for async hosts (see [`HubFuture`]).
    pub fn last_offset_async(&self, group: &str) -> HubFuture<Result<u64>> {
        if let Err(e) = self.check_group(group) {
            return ready(Err(e));
        }
        match &self.inner.backend {
            Backend::Local => ready(Ok(self.local_last_offset(group))),
            Backend::Shared(engine) => engine.last_offset_async(group),
        }
    }

    /// Every group's history that holds at least one message, by name.
    pub fn history_all(&self, query: HistoryQuery) -> BTreeMap<String, HistoryPage> {
        let now = self.now_ms();
        let mut out = BTreeMap::new();
        match &self.inner.backend {
            Backend::Local => {
                for group in self.all_groups() {
                    let mut st = group.state.lock();
                    st.history.evict(self.inner.bounds, now);
                    if st.history.len() > 0 {
                        out.insert(group.name.to_string(), st.history.read(&group.name, query));
                    }
                }
            }
            Backend::Shared(engine) => {
                // Redis unreachable reads as empty, like a hub that saved
                // nothing.
                for name in engine.groups_with_history().unwrap_or_default() {
                    if let Ok(page) = engine.read(&name, query, now) {
                        if page.first_offset > 0 {
                            out.insert(name, page);
                        }
                    }
                }
            }
        }
        out
    }

    /// The history entry saved at `offset`, if still kept.
    pub fn history_get(&self, group: &str, offset: u64) -> Result<Message> {
        self.check_group(group)?;
        match &self.inner.backend {
            Backend::Local => self.local_history_get(group, offset),
            Backend::Shared(engine) => {
                let page = engine.read(group, entry_query(offset), self.now_ms())?;
                entry_in(page, offset)
            }
        }
    }

    /// [`Hub::history_get`] for async hosts (see [`HubFuture`]).
    pub fn history_get_async(&self, group: &str, offset: u64) -> HubFuture<Result<Message>> {
        if let Err(e) = self.check_group(group) {
            return ready(Err(e));
        }
        match &self.inner.backend {
            Backend::Local => ready(self.local_history_get(group, offset)),
            Backend::Shared(engine) => {
                let page = engine.read_async(group, entry_query(offset), self.now_ms());
                Box::pin(async move { entry_in(page.await?, offset) })
            }
        }
    }

    /// Replaces the history entry at `offset` in place (an edit, a
    /// tombstone, a reaction count). It keeps its offset and timestamp;
    /// nothing is delivered. Returns the new entry.
    pub fn history_replace(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: impl Into<Bytes>,
    ) -> Result<Message> {
        let data = data.into();
        self.check_group(group)?;
        self.check_payload(kind, &data)?;
        match &self.inner.backend {
            Backend::Local => {
                let (message, commit) = self.local_history_replace(group, offset, kind, data)?;
                if let (Some(commit), Some(store)) = (commit, &self.inner.store) {
                    store.wait(commit)?;
                }
                Ok(message)
            }
            Backend::Shared(engine) => engine
                .replace(group, offset, kind, data)?
                .ok_or_else(|| no_such_message(group, offset)),
        }
    }

    /// [`Hub::history_replace`] for async hosts (see [`HubFuture`]).
    pub fn history_replace_async(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: impl Into<Bytes>,
    ) -> HubFuture<Result<Message>> {
        let data = data.into();
        if let Err(e) = self
            .check_group(group)
            .and_then(|()| self.check_payload(kind, &data))
        {
            return ready(Err(e));
        }
        match &self.inner.backend {
            Backend::Local => match self.local_history_replace(group, offset, kind, data) {
                Ok((message, None)) => ready(Ok(message)),
                Ok((message, Some(commit))) => {
                    let done = self.commit_wait(super::CommitSeq(commit));
                    Box::pin(async move { done.await.map(|()| message) })
                }
                Err(e) => ready(Err(e)),
            },
            Backend::Shared(engine) => {
                let replaced = engine.replace_async(group, offset, kind, data);
                let group = group.to_owned();
                Box::pin(async move {
                    replaced
                        .await?
                        .ok_or_else(|| no_such_message(&group, offset))
                })
            }
        }
    }

    /// Forgets one group's history (or every group's) and gives it a new
    /// epoch. Offsets keep counting up.
    pub fn history_flush(&self, group: Option<&str>) -> Result<()> {
        if let Some(name) = group {
            self.check_group(name)?;
        }
        match &self.inner.backend {
            Backend::Local => {
                let groups = match group {
                    Some(name) => self.group(name).into_iter().collect(),
                    None => self.all_groups(),
                };
                let mut commits = Vec::new();
                for g in groups {
                    let mut st = g.state.lock();
                    if let Some(store) = &self.inner.store {
                        store.check_writable()?;
                        st.history.flush();
                        commits.push(store.flush(&g.name, st.history.epoch));
                    } else {
                        st.history.flush();
                    }
                }
                // One commit usually holds them all; wait for each anyway.
                if let Some(store) = &self.inner.store {
                    for commit in commits {
                        store.wait(commit)?;
                    }
                }
            }
            Backend::Shared(engine) => {
                let names = match group {
                    Some(name) => vec![name.to_owned()],
                    None => engine.groups_with_history()?,
                };
                for name in names {
                    engine.flush(&name)?;
                }
            }
        }
        Ok(())
    }

    fn local_history(&self, group: &str, query: HistoryQuery) -> HistoryPage {
        let Some(g) = self.group(group) else {
            return HistoryPage {
                group: group.to_owned(),
                epoch: 0,
                first_offset: 0,
                last_offset: 0,
                messages: Vec::new(),
            };
        };
        let mut st = g.state.lock();
        st.history.evict(self.inner.bounds, self.now_ms());
        st.history.read(group, query)
    }

    fn local_last_offset(&self, group: &str) -> u64 {
        self.group(group)
            .map_or(0, |g| g.state.lock().history.next_offset() - 1)
    }

    fn local_history_get(&self, group: &str, offset: u64) -> Result<Message> {
        self.group(group)
            .and_then(|g| g.state.lock().history.get(offset).cloned())
            .ok_or_else(|| no_such_message(group, offset))
    }

    fn local_history_replace(
        &self,
        group: &str,
        offset: u64,
        kind: Kind,
        data: Bytes,
    ) -> Result<(Message, Option<Commit>)> {
        let missing = || no_such_message(group, offset);
        let g = self.group(group).ok_or_else(missing)?;
        let mut st = g.state.lock();
        let ts = st.history.get(offset).ok_or_else(missing)?.ts_ms();
        if let Some(store) = &self.inner.store {
            store.check_writable()?;
        }
        let message = Message::new(kind, data, Some(g.name.clone()), offset, ts);
        st.history
            .replace(offset, message.clone(), self.inner.bounds, self.now_ms());
        let commit = self
            .inner
            .store
            .as_ref()
            .map(|store| store.put(&message, st.history.first_offset()));
        Ok((message, commit))
    }
}

/// The query that reads the one entry at `offset`.
fn entry_query(offset: u64) -> HistoryQuery {
    HistoryQuery {
        since: offset.saturating_sub(1),
        before: offset.saturating_add(1),
        limit: 1,
    }
}

/// The entry at `offset` in a page read with [`entry_query`].
fn entry_in(page: HistoryPage, offset: u64) -> Result<Message> {
    let group = page.group;
    page.messages
        .into_iter()
        .find(|m| m.offset() == offset && offset > 0)
        .ok_or_else(|| no_such_message(&group, offset))
}

fn no_such_message(group: &str, offset: u64) -> Error {
    Error::NoSuchMessage {
        group: group.to_owned(),
        offset,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Hub, Kind};

    /// A replacement that grows a history past `history_max_bytes` evicts
    /// the oldest entries at once, as a send would: the bound holds right
    /// after the call, before any read (C and Python callers of
    /// `cbx_history_replace` get the same).
    #[test]
    fn a_growing_replacement_keeps_the_byte_bound() {
        let hub = Hub::new(Config {
            history_max_bytes: 1000,
            ..Config::default()
        })
        .unwrap();
        for _ in 0..10 {
            hub.group_send("g", Kind::Binary, vec![0u8; 50], true)
                .unwrap();
        }
        assert_eq!(hub.stats().history_bytes, 500);
        for offset in 1..=10 {
            // Each entry grows from 50 to 400 bytes, one after the other.
            let _ = hub.history_replace("g", offset, Kind::Binary, vec![1u8; 400]);
            let bytes = hub.stats().history_bytes;
            assert!(bytes <= 1000, "{bytes} bytes after replacing {offset}");
        }
        // The newest entries are kept, the oldest went.
        assert_eq!(hub.history_get("g", 10).unwrap().len(), 400);
        assert!(hub.history_get("g", 1).is_err());
    }
}
