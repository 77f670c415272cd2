//! Hub configuration: limits, history bounds and the slow-consumer policy.

use serde::Deserialize;

use crate::error::{Error, Result};

/// What happens when a connection's outbound queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumer {
    /// Close the connection with a reason; what it already queued can still
    /// be drained, and its client recovers the rest from history by offset.
    Disconnect,
    /// Drop the oldest queued message to make room for the new one.
    DropOldest,
    /// Drop the new message; the queue keeps what it has.
    DropNewest,
}

/// Where fan-out across nodes, history and presence live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// In this process only: the default, and the fastest.
    #[default]
    Memory,
    /// Shared through Redis, so several hubs (nodes) serve one set of groups
    /// (see `src/engine/redis/`).
    Redis,
}

/// Hub settings. Every field has a default suited to a chat server; a JSON
/// config names only what it changes, and an unknown key is an error.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most messages kept in one group's history (0 = no count bound).
    pub history_max_messages: usize,
    /// Most payload bytes kept in one group's history (0 = no byte bound).
    pub history_max_bytes: usize,
    /// Age after which a history entry is evicted (0 = no age bound).
    pub history_ttl_seconds: u64,
    /// Most messages waiting in one connection's outbound queue.
    pub queue_max_messages: usize,
    /// Most payload bytes waiting in one connection's outbound queue.
    pub queue_max_bytes: usize,
    /// What a full outbound queue does.
    pub slow_consumer: SlowConsumer,
    /// Largest payload accepted by a send.
    pub max_payload_bytes: usize,
    /// Longest group name accepted, in bytes.
    pub max_group_name_bytes: usize,
    /// Longest user id accepted, in bytes.
    pub max_user_bytes: usize,
    /// `memory` (default) or `redis`.
    pub engine: EngineKind,
    /// The Redis server of the `redis` engine (`redis://host:port/db`).
    pub redis_url: String,
    /// This node's name in Redis (presence entries, logs); empty = generated
    /// from the process id. Must be unique among the nodes.
    pub node_name: String,
    /// How long a node's presence entries outlive its last heartbeat, so a
    /// node that dies without saying goodbye drops out within this time.
    pub presence_ttl_seconds: u64,
    /// Start even when Redis cannot be reached, and keep retrying; by
    /// default an unreachable Redis is an error at start-up.
    pub redis_lazy_connect: bool,
    /// Prefix of every Redis key and channel, so hubs of different
    /// deployments can share one Redis.
    pub redis_key_prefix: String,
    /// How long one Redis operation may take before it fails with
    /// `EngineUnavailable`.
    pub redis_timeout_ms: u64,
    /// Directory of the durable history store (created if missing; the
    /// store is one file in it, `history.redb`). Empty (the default): history lives in
    /// memory only and is gone when the process ends. With a directory,
    /// every saved message, replacement, flush and eviction is also written
    /// to disk by one writer thread that commits whatever arrived meanwhile
    /// in one transaction (group commit); offsets, epochs and each group's
    /// window come back on the next start. A saved send returns once the
    /// commit that holds it is done. Ignored by the `redis` engine (history
    /// lives in Redis). A store that cannot be opened is an error at start.
    pub history_dir: String,
    /// With `history_dir`: true (default) makes every commit wait for
    /// fsync, so an acknowledged message survives a power loss. False
    /// leaves the writing to the OS (the speed option): a crash of the
    /// process still loses nothing acknowledged, a power loss or OS crash
    /// may lose the last commits the OS had not written back yet (on Linux,
    /// up to about 30 s by default: `vm.dirty_expire_centisecs`).
    pub history_fsync: bool,
    /// With `history_dir`: how long the writer lets changes gather after
    /// the first one arrives before it commits them together, in
    /// milliseconds (0 to 1000). 0 commits at once, but under load no
    /// sooner than 2 ms after the previous commit started, 32 ms under
    /// sustained load (each commit carries what arrived meanwhile). A few milliseconds make commits
    /// larger and fewer when many senders are active (less CPU and disk
    /// work per message) at the cost of that much latency per saved send.
    pub history_commit_interval_ms: u64,
}

/// 1 MiB, the unit most defaults are counted in.
const MIB: usize = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            history_max_messages: 0,
            history_max_bytes: MIB,
            history_ttl_seconds: 0,
            queue_max_messages: 10_000,
            queue_max_bytes: MIB,
            slow_consumer: SlowConsumer::Disconnect,
            max_payload_bytes: MIB,
            max_group_name_bytes: 256,
            max_user_bytes: 256,
            engine: EngineKind::Memory,
            redis_url: "redis://127.0.0.1:6379/".into(),
            node_name: String::new(),
            presence_ttl_seconds: 30,
            redis_lazy_connect: false,
            redis_key_prefix: "cbx".into(),
            redis_timeout_ms: 2000,
            history_dir: String::new(),
            history_fsync: true,
            history_commit_interval_ms: 0,
        }
    }
}

impl Config {
    /// Parses a JSON object of settings; an empty string or `{}` gives the
    /// defaults. Unknown keys and values of the wrong type are refused.
    pub fn from_json(text: &str) -> Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::InvalidJson(format!("config: {e}")))?;
        if !value.is_object() {
            return Err(Error::InvalidArgument(
                "config: expected a JSON object".into(),
            ));
        }
        let config: Config = serde_json::from_value(value)
            .map_err(|e| Error::InvalidArgument(format!("config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that would make the hub unusable.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("queue_max_messages", self.queue_max_messages),
            ("queue_max_bytes", self.queue_max_bytes),
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_group_name_bytes", self.max_group_name_bytes),
            ("max_user_bytes", self.max_user_bytes),
            ("presence_ttl_seconds", self.presence_ttl_seconds as usize),
            ("redis_timeout_ms", self.redis_timeout_ms as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::InvalidArgument(format!(
                    "config: {name} must be greater than 0"
                )));
            }
        }
        if self.history_commit_interval_ms > 1000 {
            return Err(Error::InvalidArgument(
                "config: history_commit_interval_ms must be at most 1000".into(),
            ));
        }
        if self.history_dir.contains('\0') {
            return Err(Error::InvalidArgument(
                "config: history_dir contains a NUL byte".into(),
            ));
        }
        if self.engine == EngineKind::Redis {
            if self.redis_url.trim().is_empty() {
                return Err(Error::InvalidArgument("config: redis_url is empty".into()));
            }
            // The separator of presence entries (`user\x1fnode`).
            if self.node_name.contains('\x1f') || self.redis_key_prefix.contains('\x1f') {
                return Err(Error::InvalidArgument(
                    "config: node_name and redis_key_prefix may not contain \\x1f".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_braces_give_defaults() {
        assert_eq!(Config::from_json("").unwrap(), Config::default());
        assert_eq!(Config::from_json("{}").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = Config::from_json(r#"{"history_max_mesages": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn wrong_type_and_zero_limits_are_refused() {
        assert!(Config::from_json(r#"{"queue_max_bytes": "big"}"#).is_err());
        assert!(Config::from_json(r#"{"queue_max_bytes": 0}"#).is_err());
        assert!(Config::from_json(r#"{"slow_consumer": "explode"}"#).is_err());
        assert!(Config::from_json("[1]").is_err());
    }

    #[test]
    fn keys_are_read() {
        let c = Config::from_json(r#"{"history_max_messages": 5, "slow_consumer": "drop_oldest"}"#)
            .unwrap();
        assert_eq!(c.history_max_messages, 5);
        assert_eq!(c.slow_consumer, SlowConsumer::DropOldest);
    }

    #[test]
    fn engine_keys_are_read() {
        let c = Config::from_json(
            r#"{"engine": "redis", "redis_url": "redis://127.0.0.1:7000/", "node_name": "a",
                "presence_ttl_seconds": 5, "redis_lazy_connect": true}"#,
        )
        .unwrap();
        assert_eq!(c.engine, EngineKind::Redis);
        assert_eq!((c.node_name.as_str(), c.presence_ttl_seconds), ("a", 5));
        assert!(c.redis_lazy_connect);
        assert!(Config::from_json(r#"{"engine": "etcd"}"#).is_err());
        assert!(Config::from_json(r#"{"engine": "redis", "redis_url": ""}"#).is_err());
        assert!(Config::from_json(r#"{"presence_ttl_seconds": 0}"#).is_err());
    }

    #[test]
    fn history_store_keys_are_read() {
        let c = Config::from_json(r#"{"history_dir": "/var/lib/hub", "history_fsync": false}"#)
            .unwrap();
        assert_eq!(c.history_dir, "/var/lib/hub");
        assert!(!c.history_fsync);
        let d = Config::default();
        assert!(d.history_dir.is_empty() && d.history_fsync);
        assert!(Config::from_json(r#"{"history_fsync": "yes"}"#).is_err());
        assert!(Config::from_json(r#"{"history_dir": 3}"#).is_err());
        assert!(Config::from_json(r#"{"history_dir": "a\u0000b"}"#).is_err());
        let c = Config::from_json(r#"{"history_commit_interval_ms": 5}"#).unwrap();
        assert_eq!(c.history_commit_interval_ms, 5);
        assert!(Config::from_json(r#"{"history_commit_interval_ms": 1001}"#).is_err());
        assert!(Config::from_json(r#"{"history_commit_interval_ms": -1}"#).is_err());
    }
}
