//! What goes over the socket: message bodies and their markers, the frame each protocol
//! publishes, and the JWT each connection presents.

use crate::cli::Protocol;
use serde_json::json;

/// Every benchmark message body starts with `B|<runid>|`, then `round|seq|sent_ns|`.
pub fn marker_prefix(run_id: u32) -> String {
    format!("B|{run_id:08x}|")
}

/// A message body: the marker, then `pad` (`--payload-bytes`).
pub fn body(run_id: u32, round: usize, seq: usize, sent_ns: u64, pad: &str) -> String {
    format!("B|{run_id:08x}|{round}|{seq}|{sent_ns}|{pad}")
}

/// What a subscriber reads back from a body.
pub struct Marker {
    pub round: usize,
    pub seq: usize,
    pub sent_ns: u64,
}

/// Parse `round|seq|sent_ns|` (the bytes right after the run-id prefix).
#[inline]
pub fn parse_marker(b: &[u8]) -> Option<Marker> {
    let mut it = b.split(|&c| c == b'|');
    let round = num(it.next()?)? as usize;
    let seq = num(it.next()?)? as usize;
    let sent_ns = num(it.next()?)?;
    it.next()?; // the closing '|' must be there
    Some(Marker {
        round,
        seq,
        sent_ns,
    })
}

/// The marker of any run in `b` (`B|<8 hex digits>|round|seq|sent_ns|`), for receivers that
/// do not know the sender's run id.
pub fn any_marker(b: &[u8]) -> Option<Marker> {
    let mut from = 0;
    while let Some(p) = find(&b[from..], b"B|") {
        let s = from + p;
        let id = b.get(s + 2..s + 10)?;
        if id.iter().all(u8::is_ascii_hexdigit) && b.get(s + 10) == Some(&b'|') {
            if let Some(m) = parse_marker(&b[s + 11..]) {
                return Some(m);
            }
        }
        from = s + 1;
    }
    None
}

#[inline]
fn num(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Position of `needle` in `hay` (first byte scan, then compare). Frames are small and the
/// marker sits near the start of `content`, so this is as fast as a SIMD finder here.
#[inline]
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    if hay.len() < needle.len() {
        return None;
    }
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&c| c == first) {
            None => return None,
            Some(p) => {
                let s = i + p;
                if &hay[s + 1..s + needle.len()] == rest {
                    return Some(s);
                }
                i = s + 1;
            }
        }
    }
    None
}

/// A frame whose top-level "type" is "history" (its replayed messages must not count).
/// Fast path: `{"type":"history"` / `{"type": "history"` within the first 48 bytes. A server
/// that puts "type" after other keys (e.g. sorted: `{"epoch":..,"messages":[..],"type":"history"}`)
/// is caught by parsing the frame, which happens only when `"history"` occurs in it at all.
#[inline]
pub fn is_history(b: &[u8]) -> bool {
    let head = &b[..b.len().min(48)];
    if find(head, b"\"history\"").is_some() {
        return true;
    }
    if b.first() != Some(&b'{') || find(b, b"\"history\"").is_none() {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(b)
        .ok()
        .is_some_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("history"))
}

/// The frame a publisher sends to put `body` in its room under `protocol`.
pub fn publish_frame(protocol: Protocol, body: String) -> String {
    match protocol {
        Protocol::Seed => json!({ "message": body }).to_string(),
        Protocol::Socketio => format!("42{}", json!(["chat", { "message": body }])),
        Protocol::Rawws => body,
    }
}

/// A run id: tells this run's messages from any other's in the same rooms.
pub fn random_u32() -> u32 {
    rand::random::<u32>()
}

/// HS256 JWT with claims {sub, username, exp: now + 1 h}.
pub fn mint_jwt(secret: &str, user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 3600;
    let claims = serde_json::json!({ "sub": user, "username": user, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 encoding cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_roundtrip() {
        let b = body(0xdeadbeef, 2, 17, 123456789, "xx");
        let p = marker_prefix(0xdeadbeef);
        assert!(b.starts_with(&p));
        let m = parse_marker(&b.as_bytes()[p.len()..]).unwrap();
        assert_eq!((m.round, m.seq, m.sent_ns), (2, 17, 123456789));
    }

    #[test]
    fn any_runs_marker_is_found_in_a_frame() {
        let frame = format!(
            r#"{{"type":"message","id":3,"user":"B|x","content":"{}"}}"#,
            body(0xab, 0, 7, 99, "pad")
        );
        let m = any_marker(frame.as_bytes()).unwrap();
        assert_eq!((m.round, m.seq, m.sent_ns), (0, 7, 99));
        assert!(any_marker(br#"{"content":"B|12345678|1|x|"}"#).is_none());
        assert!(any_marker(b"B|1234").is_none());
    }

    #[test]
    fn finder() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"xxB|1|", b"B|1|"), Some(2));
        assert_eq!(find(b"B|1", b"B|1|"), None);
    }

    #[test]
    fn history_detection() {
        assert!(is_history(br#"{"type": "history", "messages": []}"#));
        assert!(is_history(br#"{"type":"history","messages":[]}"#));
        assert!(!is_history(
            br#"{"type":"message","user":"u","content":"B|"}"#
        ));
        assert!(is_history(
            br#"{"epoch":"e1","messages":[{"id":1,"content":"B|x|0|1|2|"}],"type":"history"}"#
        ));
        assert!(!is_history(
            br#"{"type":"message","user":"u","content":"the \"history\" of B|"}"#
        ));
    }

    #[test]
    fn each_protocol_publishes_its_frame() {
        let b = body(1, 0, 2, 3, "");
        assert_eq!(b, "B|00000001|0|2|3|");
        assert_eq!(
            publish_frame(Protocol::Seed, b.clone()),
            r#"{"message":"B|00000001|0|2|3|"}"#
        );
        assert_eq!(
            publish_frame(Protocol::Socketio, b.clone()),
            r#"42["chat",{"message":"B|00000001|0|2|3|"}]"#
        );
        assert_eq!(publish_frame(Protocol::Rawws, b.clone()), b);
    }

    #[test]
    fn a_marker_needs_its_closing_bar_and_plain_digits() {
        assert!(parse_marker(b"1|2|3").is_none());
        assert!(parse_marker(b"1|x|3|").is_none());
        assert!(parse_marker(b"1|2|99999999999999999999999|").is_none());
    }

    #[test]
    fn jwt_roundtrip() {
        let t = mint_jwt("secret", "alice");
        assert_eq!(t.split('.').count(), 3);
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_required_spec_claims(&["exp"]);
        let d = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"secret"),
            &v,
        )
        .unwrap();
        assert_eq!(d.claims["sub"], "alice");
        assert_eq!(d.claims["username"], "alice");
    }
}
