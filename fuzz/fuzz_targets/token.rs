//! Token parsing and verification (`channelbox_hub::auth`): a well-formed,
//! correctly signed HS256 JWT built from fuzzed claims, then mutated
//! (bytes flipped, inserted or cut, segments swapped or replaced, other
//! algorithms in the header), verified from a bearer header and from a
//! percent-encoded `?token=`.
//!
//! What must hold, besides no crash or ASan report: a token that verifies
//! has exactly the signed `header.payload` of the original (the signature
//! is what makes it valid), carries a `sub` of 1 to 100 bytes and a
//! username of at most 128, and is not long expired.

#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use channelbox_hub::auth::{percent_decode, query_param, Auth, Claims};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Mutation {
    /// XOR one byte (position modulo the length).
    Flip {
        at: u16,
        mask: u8,
    },
    Insert {
        at: u16,
        byte: u8,
    },
    Cut {
        from: u16,
        len: u8,
    },
    /// Replaces segment `which` (header, payload, signature) with the
    /// base64url of these bytes.
    Segment {
        which: u8,
        bytes: Vec<u8>,
    },
    /// Replaces segment `which` with this text as it is.
    RawSegment {
        which: u8,
        text: String,
    },
    /// Header `{"alg": <alg>, "typ": "JWT"}` (keeps the old signature).
    Alg(String),
    /// Swaps two segments.
    Swap(u8, u8),
    /// Appends `.` and this text (a fourth segment, a JWE-like shape).
    Extra(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    secret: Vec<u8>,
    sub: String,
    username: String,
    roles: Vec<String>,
    /// Seconds from now (negative: already expired).
    exp_from_now: i32,
    mutations: Vec<Mutation>,
    /// Extra query text around `token=`.
    query_prefix: String,
    query_suffix: String,
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn mutate(token: &str, m: &Mutation) -> String {
    let mut bytes = token.as_bytes().to_vec();
    match m {
        Mutation::Flip { at, mask } if !bytes.is_empty() => {
            let i = *at as usize % bytes.len();
            bytes[i] ^= mask;
        }
        Mutation::Insert { at, byte } => {
            let i = *at as usize % (bytes.len() + 1);
            bytes.insert(i, *byte);
        }
        Mutation::Cut { from, len } if !bytes.is_empty() => {
            let i = *from as usize % bytes.len();
            let end = (i + *len as usize).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Segment { which, bytes: b } => {
            let mut s = segments(token);
            let i = *which as usize % s.len();
            s[i] = URL_SAFE_NO_PAD.encode(b);
            return s.join(".");
        }
        Mutation::RawSegment { which, text } => {
            let mut s = segments(token);
            let i = *which as usize % s.len();
            s[i] = text.clone();
            return s.join(".");
        }
        Mutation::Alg(alg) => {
            let mut s = segments(token);
            let header = serde_json::json!({"alg": alg, "typ": "JWT"});
            s[0] = URL_SAFE_NO_PAD.encode(header.to_string());
            return s.join(".");
        }
        Mutation::Swap(a, b) => {
            let mut s = segments(token);
            let n = s.len();
            s.swap(*a as usize % n, *b as usize % n);
            return s.join(".");
        }
        Mutation::Extra(text) => return format!("{token}.{text}"),
        _ => {}
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the signature covers: everything before the last `.`.
fn signed_part(token: &str) -> Option<&str> {
    token.rsplit_once('.').map(|(signed, _)| signed)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn check_verified(original: &str, token: &str, claims: &Claims, now: u64) {
    assert_eq!(
        signed_part(original),
        signed_part(token),
        "a token whose signed part changed was accepted: {token}"
    );
    assert!(
        !claims.sub.is_empty() && claims.sub.len() <= 100,
        "{claims:?}"
    );
    assert!(
        !claims.username.is_empty() && claims.username.len() <= 128,
        "{claims:?}"
    );
    assert!(
        claims.exp + 30 >= now,
        "an expired token was accepted: {claims:?}"
    );
}

fuzz_target!(|input: Input| {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let auth = Auth::new(&input.secret, false);
    let claims = Claims {
        sub: input.sub,
        username: input.username,
        roles: input.roles,
        exp: now.saturating_add_signed(i64::from(input.exp_from_now)),
    };
    let original = auth.mint(&claims);

    // The unmutated token: valid exactly when its claims are. The leeway
    // is inclusive: `exp` 30 s in the past is still accepted.
    let fresh = i64::from(input.exp_from_now) >= -30;
    let sane =
        !claims.sub.is_empty() && claims.sub.len() <= 100 && claims.username.len() <= 128 && fresh;
    match auth.verify(&original) {
        Ok(verified) => {
            assert!(sane, "accepted {claims:?}");
            assert_eq!(verified.sub, claims.sub);
            check_verified(&original, &original, &verified, now);
        }
        // Within a second of the leeway's edge the clock decides.
        Err(why) => assert!(
            !sane || input.exp_from_now <= -29,
            "refused {claims:?}: {}",
            why.0
        ),
    }

    let mut token = original.clone();
    for m in input.mutations.iter().take(8) {
        token = mutate(&token, m);
    }
    let verified = auth.verify(&token);
    if let Ok(c) = &verified {
        check_verified(&original, &token, c, now);
    }

    // The same token from a bearer header and from the query string must
    // get the same answer.
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(axum::http::header::AUTHORIZATION, value);
        let from_header = auth.verify_request(&headers, None);
        if token.trim() == token && !token.is_empty() {
            assert_eq!(
                from_header.is_ok(),
                verified.is_ok(),
                "header vs direct: {token:?}"
            );
        }
    }
    let query = format!(
        "{}&token={}&{}",
        input.query_prefix,
        percent_encode(&token),
        input.query_suffix
    );
    let from_query = auth.verify_request(&HeaderMap::new(), Some(&query));
    if let Ok(c) = &from_query {
        // Whatever token the query held (the prefix may carry its own):
        // it verified, so its signed part is the original's.
        let found = query_param(&query, "token").expect("a token was found");
        check_verified(&original, &found, c, now);
    }
    if !input.query_prefix.contains("token") && percent_decode(&input.query_prefix).is_some() {
        // The prefix could still decode to a `token` key in other ways;
        // only compare when it holds no `=`-separated key at all.
        if !input.query_prefix.contains('=') && !input.query_prefix.contains('%') {
            assert_eq!(
                from_query.is_ok(),
                verified.is_ok(),
                "query vs direct: {query:?}"
            );
        }
    }
});
