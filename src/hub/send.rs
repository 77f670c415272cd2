//! Sends and delivery: group sends (here, or through the shared engine),
//! user and connection sends, and the push of one message into members'
//! queues under the slow-consumer policy.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use super::backend::Backend;
use super::{Hub, SendFuture, SendReport};
use crate::conn::{ConnId, ConnState, Push};
use crate::engine::{self, Engine, GroupPublish};
use crate::error::{Error, Result};
use crate::message::{Kind, Message};
use crate::ready::Listed;
use crate::stats::Counters;
use crate::store::{Admit, Commit};

impl Hub {
    /// Sends a payload to every member of a group, optionally saving it to
    /// the group's history. The payload is checked against its kind first:
    /// a refused payload is neither delivered nor saved.
    ///
    /// With the Redis engine the group's members on every node receive it,
    /// in one order; the report's `delivered` is 0 (delivery happens when
    /// Redis hands the message back, on every node at once), and while
    /// Redis is unreachable the send fails with `EngineUnavailable`.
    pub fn group_send(
        &self,
        group: &str,
        kind: Kind,
        data: impl Into<Bytes>,
        save_history: bool,
    ) -> Result<SendReport> {
        let data = data.into();
        self.check_payload(kind, &data)?;
        self.send(group, kind, save_history, false, |_| Ok(data))
    }

    /// Like [`Hub::group_send`], but builds the payload once the history
    /// offset is known, under the group's lock: a server can put the offset
    /// (its message id) inside the frame it sends. `build` gets 0 when
    /// `save_history` is false.
    ///
    /// With the Redis engine the offset is assigned inside Redis: `build`
    /// gets `u64::MAX` (digits `18446744073709551615`), and the first
    /// occurrence of those digits in the payload is replaced by the real
    /// offset before anyone receives or saves it. Put the offset early in
    /// the frame (the example hub's `"id"` comes first).
    pub fn group_send_with<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<SendReport>
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        self.send(group, kind, save_history, true, build)
    }

    /// [`Hub::group_send_with`] for async hosts: with the Redis engine it
    /// awaits Redis' answer instead of blocking the calling thread (an
    /// executor thread keeps serving other tasks meanwhile). With the
    /// in-memory engine it is the same as the blocking call, which never
    /// waits on I/O. The future does not borrow the hub.
    pub fn group_send_with_async<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> SendFuture
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        self.send_async(group, kind, save_history, true, build)
    }

    /// [`Hub::group_send_with_async`] in two steps, for a host that keeps
    /// reading a client's next messages while earlier ones are made
    /// durable. With the in-memory engine the send happens now (offset,
    /// history, fan-out, under the group's lock as always) and
    /// [`Staged::Sent`] carries its report and a future for its commit
    /// to the durable store: a host acknowledges the message once that
    /// resolves, so an acknowledged message survives a crash, and one
    /// client's messages still get their offsets in the order it sent
    /// them. With the shared engine the offset is known only once the
    /// engine answered: [`Staged::Engine`] is the same future
    /// [`Hub::group_send_with_async`] returns.
    pub fn group_send_with_staged<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<super::Staged>
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        self.send_staged(group, kind, save_history, build)
    }

    /// [`Hub::group_send_with_staged`] for a payload the caller built
    /// itself and vouches for (e.g. serialized by `serde_json`): only its
    /// size is checked, not its content, so a host does not pay for parsing
    /// again, on every message, the JSON it has just written. A payload
    /// that is not what its kind says reaches members and history as it
    /// is: use the checked call for anything taken from a client.
    pub fn group_send_built_staged<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<super::Staged>
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_size(&data)?;
            Ok(data)
        };
        self.send_staged(group, kind, save_history, build)
    }

    /// [`Hub::group_send_built_staged`] with the commit as a
    /// [`super::CommitSeq`] rather than a boxed future: nothing allocated
    /// or locked per message for it. A host checks it with
    /// [`Hub::commit_outcome`] and waits with [`Hub::commit_wait`], once
    /// per commit for every message it holds. Same checks and semantics.
    pub fn group_send_built_saved<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<super::Saved>
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_size(&data)?;
            Ok(data)
        };
        self.send_saved(group, kind, save_history, build)
    }

    /// [`Hub::group_send_with_staged`] with the commit as a
    /// [`super::CommitSeq`] (see [`Hub::group_send_built_saved`]); the
    /// payload is checked as there.
    pub fn group_send_with_saved<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<super::Saved>
    where
        F: FnOnce(u64) -> Bytes,
    {
        let build = |offset| {
            let data = build(offset);
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        self.send_saved(group, kind, save_history, build)
    }

    /// The send behind both calls above.
    fn send_saved<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<super::Saved>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        match &self.inner.backend {
            Backend::Local => {
                let (report, commit) = self.send_local_start(group, kind, save_history, build)?;
                Ok(super::Saved::Sent(
                    report,
                    super::CommitSeq(commit.unwrap_or(0)),
                ))
            }
            Backend::Shared(_) => Ok(super::Saved::Engine(self.send_async(
                group,
                kind,
                save_history,
                true,
                build,
            ))),
        }
    }

    /// The staged send behind both calls above: the saved send, its commit
    /// as a future.
    fn send_staged<F>(
        &self,
        group: &str,
        kind: Kind,
        save_history: bool,
        build: F,
    ) -> Result<super::Staged>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        Ok(match self.send_saved(group, kind, save_history, build)? {
            // Commit 0 (nothing went to disk) is done at once.
            super::Saved::Sent(report, commit) => {
                super::Staged::Sent(report, Box::pin(self.commit_wait(commit)))
            }
            super::Saved::Engine(send) => super::Staged::Engine(send),
        })
    }

    /// [`Hub::group_send`] for async hosts (see
    /// [`Hub::group_send_with_async`]).
    pub fn group_send_async(
        &self,
        group: &str,
        kind: Kind,
        data: impl Into<Bytes>,
        save_history: bool,
    ) -> SendFuture {
        let data = data.into();
        let build = |_| {
            self.check_payload(kind, &data)?;
            Ok(data)
        };
        self.send_async(group, kind, save_history, false, build)
    }

    /// Sends to every connection of a user, wherever they are. Not saved.
    pub fn user_send(&self, user: &str, kind: Kind, data: impl Into<Bytes>) -> Result<SendReport> {
        self.check_user(user)?;
        let data = data.into();
        self.check_payload(kind, &data)?;
        let sends = &self.inner.counters.direct_sends;
        match &self.inner.backend {
            Backend::Local => {
                let message = Message::new(kind, data, None, 0, self.now_ms());
                Ok(self.deliver_to_user(user, message, Some(sends)))
            }
            Backend::Shared(engine) => {
                engine.publish_user(user, kind, &data, self.now_ms())?;
                Counters::add(sends, 1);
                Ok(SendReport::default())
            }
        }
    }

    /// Sends to one connection. Not saved.
    pub fn conn_send(&self, id: ConnId, kind: Kind, data: impl Into<Bytes>) -> Result<SendReport> {
        let conn = self.conn(id)?;
        let data = data.into();
        self.check_payload(kind, &data)?;
        let message = Message::new(kind, data, None, 0, self.now_ms());
        let mut report = SendReport::default();
        let mut slow = Vec::new();
        let mut listed = Vec::new();
        self.deliver(&conn, &message, &mut report, &mut slow, &mut listed);
        self.inner.ready.list_all(&mut listed);
        if report.delivered == 0 && report.disconnected == 0 && report.dropped == 0 {
            // Nothing happened: it was closed before this send.
            if let Some(reason) = conn.close_reason() {
                return Err(Error::Closed(reason));
            }
        }
        self.finish(&report, slow, Some(&self.inner.counters.direct_sends));
        Ok(report)
    }

    /// A group send, here or through the shared engine. `placeholder`: the
    /// payload may carry the placeholder offset for the engine to replace.
    fn send<F>(
        &self,
        group: &str,
        kind: Kind,
        save: bool,
        placeholder: bool,
        build: F,
    ) -> Result<SendReport>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        match &self.inner.backend {
            Backend::Local => self.send_local(group, kind, save, build),
            Backend::Shared(engine) => {
                let publish = self.build_publish(group, kind, save, placeholder, build)?;
                let offset = engine.publish_group(publish.as_publish(group))?;
                Ok(self.published(offset))
            }
        }
    }

    /// Starts a send now (builds, checks, hands it to the engine) and
    /// returns what is left to await.
    fn send_async<F>(
        &self,
        group: &str,
        kind: Kind,
        save: bool,
        placeholder: bool,
        build: F,
    ) -> SendFuture
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        let engine: &Arc<dyn Engine> = match &self.inner.backend {
            Backend::Local => {
                return match self.send_local_start(group, kind, save, build) {
                    Ok((report, None)) => super::ready(Ok(report)),
                    Ok((report, Some(commit))) => {
                        let done = self.commit_wait(super::CommitSeq(commit));
                        Box::pin(async move { done.await.map(|()| report) })
                    }
                    Err(e) => super::ready(Err(e)),
                }
            }
            Backend::Shared(engine) => engine,
        };
        let publish = match self.build_publish(group, kind, save, placeholder, build) {
            Ok(publish) => engine.publish_group_async(publish.as_publish(group)),
            Err(e) => return super::ready(Err(e)),
        };
        let hub = self.clone();
        Box::pin(async move { Ok(hub.published(publish.await?)) })
    }

    /// Builds the payload of a send through the shared engine: with the
    /// placeholder offset when saved, and where the placeholder sits.
    fn build_publish<F>(
        &self,
        group: &str,
        kind: Kind,
        save: bool,
        placeholder: bool,
        build: F,
    ) -> Result<Built>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        self.check_group(group)?;
        let given = if save { engine::OFFSET_PLACEHOLDER } else { 0 };
        let data = build(given)?;
        let placeholder_at = if placeholder && save {
            engine::placeholder_at(&data)
        } else {
            None
        };
        Ok(Built {
            kind,
            save,
            data,
            placeholder_at,
            ts_ms: self.now_ms(),
        })
    }

    /// A group send the shared engine took: it assigned the offset, saved
    /// and broadcast; delivery to members (here too) comes back through
    /// [`Hub::deliver_broadcast`], so `delivered` is 0 in the report.
    fn published(&self, offset: u64) -> SendReport {
        Counters::add(&self.inner.counters.group_sends, 1);
        SendReport {
            offset,
            ..SendReport::default()
        }
    }

    /// A group send with the in-memory engine: offset, history and fan-out
    /// under the group's lock; with a durable store, returns once the
    /// commit that holds the saved message is done.
    fn send_local<F>(&self, group: &str, kind: Kind, save: bool, build: F) -> Result<SendReport>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        let (report, commit) = self.send_local_start(group, kind, save, build)?;
        if let (Some(commit), Some(store)) = (commit, &self.inner.store) {
            store.wait(commit)?;
        }
        Ok(report)
    }

    /// [`Hub::send_local`] up to the durable store's commit, which it
    /// returns for the caller to await (`None` when nothing was queued).
    fn send_local_start<F>(
        &self,
        group: &str,
        kind: Kind,
        save: bool,
        build: F,
    ) -> Result<(SendReport, Option<Commit>)>
    where
        F: FnOnce(u64) -> Result<Bytes>,
    {
        self.check_group(group)?;
        let now = self.now_ms();
        let mut build = Some(build);
        loop {
            let g = if save {
                self.group_or_create(group)
            } else {
                match self.group(group) {
                    Some(g) => g,
                    None => {
                        // Nobody to deliver to and nothing to save; still
                        // check the payload so bad input is always refused.
                        let build = build.take().expect("built once");
                        build(0)?;
                        Counters::add(&self.inner.counters.group_sends, 1);
                        return Ok((SendReport::default(), None));
                    }
                }
            };
            let mut st = g.state.lock();
            if st.dead {
                continue;
            }
            let store = if save {
                self.inner.store.as_ref()
            } else {
                None
            };
            if let Some(store) = store {
                if let Admit::Wait(commit) = store.admit(&g.name, &mut st.history)? {
                    // The group's offsets are not reserved on disk yet:
                    // wait for that commit without holding the lock.
                    drop(st);
                    store.wait(commit)?;
                    continue;
                }
            }
            let offset = if save { st.history.next_offset() } else { 0 };
            let build = build.take().expect("built once");
            let data = build(offset)?;
            let message = Message::new(kind, data, Some(g.name.clone()), offset, now);
            let mut commit = None;
            if save {
                st.history.push(message.clone(), self.inner.bounds, now);
                if let Some(store) = store {
                    commit = Some(store.put(&message, st.history.first_offset()));
                }
            }
            let mut report = SendReport {
                offset,
                ..SendReport::default()
            };
            let mut slow = Vec::new();
            self.fan_out(&st.members, &message, &mut report, &mut slow);
            drop(st);
            self.finish(&report, slow, Some(&self.inner.counters.group_sends));
            return Ok((report, commit));
        }
    }

    /// Delivers a broadcast from the shared engine to this node's members.
    #[cfg(feature = "redis")]
    pub(super) fn deliver_broadcast(
        &self,
        group: &str,
        kind: Kind,
        data: Bytes,
        offset: u64,
        ts_ms: u64,
    ) {
        let Some(g) = self.group(group) else { return };
        let st = g.state.lock();
        if st.dead || st.members.is_empty() {
            return;
        }
        let message = Message::new(kind, data, Some(g.name.clone()), offset, ts_ms);
        let mut report = SendReport::default();
        let mut slow = Vec::new();
        self.fan_out(&st.members, &message, &mut report, &mut slow);
        drop(st);
        // The sending node counted the send.
        self.finish(&report, slow, None);
    }

    /// Delivers a user message to this node's connections of `user`;
    /// `send` counts it as a send of this node.
    pub(super) fn deliver_to_user(
        &self,
        user: &str,
        message: Message,
        send: Option<&AtomicU64>,
    ) -> SendReport {
        let mut report = SendReport::default();
        let mut slow = Vec::new();
        let mut listed = Vec::new();
        for conn in &self.user_conns(user) {
            self.deliver(conn, &message, &mut report, &mut slow, &mut listed);
        }
        self.inner.ready.list_all(&mut listed);
        self.finish(&report, slow, send);
        report
    }

    /// Pushes one message to every member. The common case (queued,
    /// nothing evicted) only bumps a local counter; a member whose queue
    /// was empty, with the ready fd on, is marked under its queue's lock
    /// and kept in a local list, and the members marked go onto the hub's
    /// ready list under one lock after the loop (the fd signalled at most
    /// once a send): this loop is the cost of a delivery.
    #[inline]
    fn fan_out(
        &self,
        members: &[Arc<ConnState>],
        message: &Message,
        report: &mut SendReport,
        slow: &mut Vec<Arc<ConnState>>,
    ) {
        let len = message.len();
        let ready = &self.inner.ready;
        let mut delivered = 0;
        let mut listed: Vec<Listed> = Vec::new();
        // One count increment for every member's reference; those the
        // slow path or a closed queue leaves go back when this drops.
        let mut copies = message.reserve(members.len());
        for member in members {
            match member.try_push(len, ready, || Message::take(&mut copies)) {
                Ok(pushed) => {
                    delivered += 1;
                    if pushed.list {
                        if listed.capacity() == 0 {
                            // Once a send: room for every member.
                            listed.reserve_exact(members.len());
                        }
                        listed.push(Listed::new(member));
                    }
                }
                Err(q) => {
                    let push = member.push_slow(q, message, len, ready);
                    self.account(member, push, report, slow, &mut listed);
                }
            }
        }
        report.delivered += delivered;
        ready.list_all(&mut listed);
    }

    #[inline]
    fn deliver(
        &self,
        conn: &Arc<ConnState>,
        message: &Message,
        report: &mut SendReport,
        slow: &mut Vec<Arc<ConnState>>,
        listed: &mut Vec<Listed>,
    ) {
        let push = conn.push(message, &self.inner.ready);
        self.account(conn, push, report, slow, listed);
    }

    /// Records what one push did: counts, connections marked for the
    /// ready list (into `listed`, for [`crate::ready::Ready::list_all`]),
    /// slow consumers.
    fn account(
        &self,
        conn: &Arc<ConnState>,
        push: Push,
        report: &mut SendReport,
        slow: &mut Vec<Arc<ConnState>>,
        listed: &mut Vec<Listed>,
    ) {
        match push {
            Push::Queued {
                list,
                dropped_oldest,
                ..
            } => {
                report.delivered += 1;
                report.dropped += dropped_oldest;
                if list {
                    listed.push(Listed::new(conn));
                }
            }
            Push::Dropped => report.dropped += 1,
            Push::Disconnected => {
                report.dropped += 1;
                report.disconnected += 1;
                if conn.mark_if_pending(&self.inner.ready) {
                    listed.push(Listed::new(conn));
                }
                slow.push(conn.clone());
            }
            Push::Closed => {}
        }
    }

    /// Counts what a delivery did (and the send, when it was one of this
    /// node's: `send` is its counter) and takes slow consumers out of
    /// their groups.
    fn finish(&self, report: &SendReport, slow: Vec<Arc<ConnState>>, send: Option<&AtomicU64>) {
        let c = &self.inner.counters;
        if let Some(send) = send {
            Counters::add(send, 1);
        }
        Counters::add(&c.deliveries, report.delivered);
        Counters::add(&c.dropped, report.dropped);
        Counters::add(&c.slow_consumer_disconnects, report.disconnected);
        for conn in slow {
            self.detach(&conn);
        }
    }
}

/// A payload built for the shared engine, owned until it is handed over.
struct Built {
    kind: Kind,
    save: bool,
    data: Bytes,
    placeholder_at: Option<usize>,
    ts_ms: u64,
}

impl Built {
    fn as_publish<'a>(&'a self, group: &'a str) -> GroupPublish<'a> {
        GroupPublish {
            group,
            kind: self.kind,
            save: self.save,
            data: &self.data,
            placeholder_at: self.placeholder_at,
            ts_ms: self.ts_ms,
        }
    }
}
