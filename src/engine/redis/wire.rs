//! Names in Redis and the broadcast envelope.
//!
//! Keys of one group share the `<prefix>:g:<group>:` stem and end in a fixed
//! suffix without `:`, so no two groups' keys collide whatever their names:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `g:<group>:off` | string | last offset given (INCR) |
//! | `g:<group>:epoch` | string | history epoch; missing = lost, a new one is made |
//! | `g:<group>:log` | stream | history, entry id `<offset>-0`, fields `k` kind, `t` ms, `d` payload |
//! | `g:<group>:bytes` | string | payload bytes in `log`, for the byte bound |
//! | `g:<group>:edits` | hash | offset -> kind byte + payload, replacements of `log` entries |
//! | `g:<group>:pres` | zset | `user\x1fnode` -> ms until which the entry is alive |
//! | `groups` | set | groups that ever saved history |
//! | `users` | zset | `user\x1fnode` -> ms until which the entry is alive |
//! | `nodes` | zset | node -> last heartbeat ms |
//!
//! Channels: `<prefix>:c:g:<group>` and `<prefix>:c:u:<user>`. A broadcast
//! is `cbx1\n<kind>\n<offset>\n<ts_ms>\n<epoch>\n<payload>` (payload raw).

use bytes::Bytes;

use crate::message::Kind;

/// The first bytes of every broadcast, versioned.
const MAGIC: &[u8] = b"cbx1\n";

/// Separates user and node in presence entries.
pub(crate) const SEP: char = '\x1f';

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    group_channels: String,
    user_channels: String,
}

/// A channel, parsed back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Channel<'a> {
    Group(&'a str),
    User(&'a str),
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            group_channels: format!("{prefix}:c:g:"),
            user_channels: format!("{prefix}:c:u:"),
        }
    }

    /// `<prefix>:g:<group>:<suffix>`.
    pub(crate) fn group(&self, group: &str, suffix: &str) -> String {
        format!("{}:g:{group}:{suffix}", self.prefix)
    }

    /// `<prefix>:<name>` for the deployment-wide keys.
    pub(crate) fn global(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    pub(crate) fn group_channel(&self, group: &str) -> String {
        format!("{}{group}", self.group_channels)
    }

    pub(crate) fn user_channel(&self, user: &str) -> String {
        format!("{}{user}", self.user_channels)
    }

    pub(crate) fn parse_channel<'a>(&self, channel: &'a str) -> Option<Channel<'a>> {
        if let Some(g) = channel.strip_prefix(&self.group_channels) {
            Some(Channel::Group(g))
        } else {
            channel.strip_prefix(&self.user_channels).map(Channel::User)
        }
    }
}

/// The one-letter code of a kind, in the stream and in broadcasts.
pub(crate) fn kind_code(kind: Kind) -> &'static str {
    match kind {
        Kind::Json => "j",
        Kind::Text => "t",
        Kind::Binary => "b",
    }
}

pub(crate) fn kind_from_code(code: &[u8]) -> Option<Kind> {
    match code {
        b"j" => Some(Kind::Json),
        b"t" => Some(Kind::Text),
        b"b" => Some(Kind::Binary),
        _ => None,
    }
}

/// A broadcast, decoded.
#[derive(Debug)]
pub(crate) struct Broadcast {
    pub(crate) kind: Kind,
    pub(crate) offset: u64,
    pub(crate) ts_ms: u64,
    pub(crate) epoch: u64,
    pub(crate) payload: Bytes,
}

/// Builds a broadcast (user sends; group sends are built by the Lua script).
pub(crate) fn encode(kind: Kind, offset: u64, ts_ms: u64, epoch: u64, payload: &[u8]) -> Vec<u8> {
    let head = format!("{}\n{offset}\n{ts_ms}\n{epoch}\n", kind_code(kind));
    let mut out = Vec::with_capacity(MAGIC.len() + head.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses a broadcast; `None` for anything malformed (counted and skipped
/// by the caller). The payload shares `raw`'s buffer.
pub(crate) fn decode(raw: Bytes) -> Option<Broadcast> {
    let rest = raw.strip_prefix(MAGIC)?;
    let mut fields = rest.splitn(5, |&b| b == b'\n');
    let kind = kind_from_code(fields.next()?)?;
    let offset = parse_u64(fields.next()?)?;
    let ts_ms = parse_u64(fields.next()?)?;
    let epoch = parse_u64(fields.next()?)?;
    let payload = fields.next()?;
    let start = raw.len() - payload.len();
    Some(Broadcast {
        kind,
        offset,
        ts_ms,
        epoch,
        payload: raw.slice(start..),
    })
}

pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Splits `user\x1fnode` into the user; `None` when malformed.
pub(crate) fn presence_user(entry: &[u8]) -> Option<&str> {
    let entry = std::str::from_utf8(entry).ok()?;
    let (user, _node) = entry.rsplit_once(SEP)?;
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_round_trip_and_garbage_is_refused() {
        let raw = encode(Kind::Text, 7, 1000, 42, b"a\nb");
        let b = decode(Bytes::from(raw)).unwrap();
        assert_eq!(
            (b.kind, b.offset, b.ts_ms, b.epoch),
            (Kind::Text, 7, 1000, 42)
        );
        assert_eq!(&b.payload[..], b"a\nb");
        for bad in [
            &b""[..],
            b"cbx1\n",
            b"cbx1\nz\n1\n2\n3\nx",
            b"cbx1\nj\nx\n2\n3\n{}",
            b"nope",
        ] {
            assert!(decode(Bytes::copy_from_slice(bad)).is_none());
        }
    }

    #[test]
    fn channels_parse_back() {
        let k = Keys::new("cbx");
        assert_eq!(
            k.parse_channel(&k.group_channel("a:b")),
            Some(Channel::Group("a:b"))
        );
        assert_eq!(
            k.parse_channel(&k.user_channel("bob")),
            Some(Channel::User("bob"))
        );
        assert_eq!(k.parse_channel("other"), None);
        assert_eq!(presence_user(b"al\x1fice\x1fnode-1"), Some("al\x1fice"));
        assert_eq!(presence_user(b"nosep"), None);
    }
}
