//! The one seam between the hub and where groups live: [`Backend`].
//!
//! `Local` is the in-memory engine: this node's groups, history and
//! presence are the whole truth, and a send pushes straight into members'
//! queues. `Shared` hands sends, history and presence to an engine that
//! several nodes share (Redis), and delivers what it hands back through
//! `sink`. Each public method of the hub matches on the backend once;
//! membership changes tell the backend through the hooks below, which do
//! nothing locally.

use std::sync::{Arc, Weak};

use super::HubInner;
use crate::config::{Config, EngineKind};
use crate::engine::{Engine, Topic};
use crate::error::Result;

/// Where fan-out, history and presence live.
pub(crate) enum Backend {
    /// This node's memory; no engine object at all, so the in-memory hub
    /// pays one branch per operation and nothing per delivery.
    Local,
    /// An engine shared by several nodes.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Shared(Arc<dyn Engine>),
}

impl Backend {
    /// The backend `config` asks for; a shared engine reaches the hub
    /// through `hub` (weak: the engine never keeps a dropped hub alive).
    pub(crate) fn start(config: &Config, hub: Weak<HubInner>) -> Result<Backend> {
        match config.engine {
            EngineKind::Memory => Ok(Backend::Local),
            #[cfg(feature = "redis")]
            EngineKind::Redis => {
                let sink = Box::new(super::sink::HubSink(hub));
                let engine = crate::engine::redis::RedisEngine::start(config, sink)?;
                Ok(Backend::Shared(Arc::new(engine)))
            }
            #[cfg(not(feature = "redis"))]
            EngineKind::Redis => {
                let _ = hub;
                Err(crate::error::Error::InvalidArgument(
                    "config: engine \"redis\": this channelbox was built without the redis \
                     feature (cargo feature `redis`, on by default)"
                        .into(),
                ))
            }
        }
    }

    /// True with a shared engine: membership must be told to it.
    #[inline]
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Backend::Shared(_))
    }

    /// A first local member or connection of `topic`. Never blocks
    /// (callers hold the lock that orders membership changes).
    pub(crate) fn want(&self, topic: Topic<'_>) {
        if let Backend::Shared(engine) = self {
            engine.want(topic);
        }
    }

    /// The last local member or connection of `topic` is gone. Never blocks.
    pub(crate) fn unwant(&self, topic: Topic<'_>) {
        if let Backend::Shared(engine) = self {
            engine.unwant(topic);
        }
    }

    /// Returns once the engine delivers `topic`'s messages here, so nothing
    /// sent after a join or an open is missed.
    pub(crate) fn wait_subscribed(&self, topic: Topic<'_>) -> Result<()> {
        match self {
            Backend::Local => Ok(()),
            Backend::Shared(engine) => engine.wait_subscribed(topic),
        }
    }

    /// `user` opened a first connection on this node.
    pub(crate) fn user_online(&self, user: &str) {
        if let Backend::Shared(engine) = self {
            engine.user_online(user);
        }
    }

    /// `user` closed its last connection on this node.
    pub(crate) fn user_offline(&self, user: &str) {
        if let Backend::Shared(engine) = self {
            engine.user_offline(user);
        }
    }

    /// `user` has a first connection on this node in `group`.
    pub(crate) fn presence_join(&self, group: &str, user: &str) {
        if let Backend::Shared(engine) = self {
            engine.presence_join(group, user);
        }
    }

    /// `user`'s last connection on this node left `group`.
    pub(crate) fn presence_leave(&self, group: &str, user: &str) {
        if let Backend::Shared(engine) = self {
            engine.presence_leave(group, user);
        }
    }
}
