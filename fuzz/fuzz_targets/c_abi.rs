//! The C ABI as a C host would drive it: a sequence of calls decoded from
//! the input, through the `extern "C"` functions only, with stale ids, NULL
//! pointers, strings that are not UTF-8 and lengths far past any buffer.
//!
//! What must hold, besides no crash, leak or ASan report: no call returns
//! `CBX_PANIC`; every code has a name; every failure leaves a message in
//! `cbx_last_error()`; every JSON the library hands out parses; a failed
//! call leaves its out-parameters as they were.
//!
//! Arguments that break the C contract itself (a dangling hub, a buffer
//! shorter than the length given for it while that length is within the
//! hub's limit) are not generated: no library can survive those.

#![no_main]

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

use arbitrary::Arbitrary;
use channelbox::ffi::*;
use libfuzzer_sys::fuzz_target;

/// A C string argument.
#[derive(Arbitrary, Debug)]
enum Text {
    Null,
    /// Raw bytes, NULs removed (so possibly not UTF-8).
    Bytes(Vec<u8>),
    /// One of a few names, so sequences meet on the same group or user.
    Known(u8),
}

/// A connection id argument.
#[derive(Arbitrary, Debug)]
enum ConnRef {
    /// One this run opened (possibly closed since: a stale id).
    Opened(u8),
    /// Any number.
    Raw(u64),
}

/// A payload argument.
#[derive(Arbitrary, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    /// A JSON document (often valid).
    Json(JsonValue),
    /// NULL with a length.
    Null(u32),
    /// A one-byte buffer with a length past the hub's `max_payload_bytes`
    /// (refused before a byte is read), or `usize::MAX`.
    Huge(u64),
}

/// A small JSON value, so JSON payloads are mostly valid.
#[derive(Arbitrary, Debug)]
enum JsonValue {
    Null,
    Bool(bool),
    Number(i64),
    Float(f64),
    Str(String),
    Array(Vec<JsonValue>),
    Object(Vec<(String, JsonValue)>),
}

impl JsonValue {
    fn to_value(&self, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        if depth > 16 {
            return Value::Null;
        }
        match self {
            JsonValue::Null => Value::Null,
            JsonValue::Bool(b) => Value::Bool(*b),
            JsonValue::Number(n) => Value::from(*n),
            JsonValue::Float(f) => Value::from(*f),
            JsonValue::Str(s) => Value::from(s.as_str()),
            JsonValue::Array(a) => Value::Array(a.iter().map(|v| v.to_value(depth + 1)).collect()),
            JsonValue::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), v.to_value(depth + 1)))
                    .collect(),
            ),
        }
    }
}

/// A hub configuration.
#[derive(Arbitrary, Debug)]
enum HubConfig {
    Null,
    Defaults,
    /// Any bytes as the config text.
    Raw(Vec<u8>),
    /// Known keys with fuzzed values.
    Fields(Vec<(u8, u64)>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    HubNew(HubConfig),
    ConnOpen {
        user: Text,
        ttl: u8,
    },
    ConnClose(ConnRef),
    GroupAdd(ConnRef, Text),
    GroupRemove(ConnRef, Text),
    GroupSend {
        group: Text,
        kind: u32,
        data: Payload,
        flags: u32,
        report: bool,
    },
    UserSend {
        user: Text,
        kind: u32,
        data: Payload,
        report: bool,
    },
    ConnSend {
        conn: ConnRef,
        kind: u32,
        data: Payload,
    },
    /// `wait == 255` waits 1 ms (rarely: a wait on an empty queue costs
    /// the whole millisecond).
    Recv {
        conn: ConnRef,
        wait: u8,
    },
    RecvBatch {
        conn: ConnRef,
        cap: u8,
    },
    HistoryJson {
        group: Text,
        since: u64,
        limit: u32,
    },
    HistoryReplace {
        group: Text,
        offset: u64,
        kind: u32,
        data: Payload,
    },
    HistoryFlush(Text),
    CloseReason(ConnRef),
    CloseAll,
    GroupsFlush,
    GroupsJson,
    StatsJson,
    ReadyFd,
    TakeReady {
        cap: u8,
    },
    /// Reads one received message through every accessor.
    Accessors(u8),
    /// `cbx_message_views` over some received messages (a NULL entry when
    /// `with_null`).
    Views {
        count: u8,
        with_null: bool,
    },
    MessageFree(u8),
    /// Every entry point with NULL where a pointer is required.
    Nulls,
    /// Counts no array can hold.
    HugeCounts,
    ResultName(i32),
}

#[derive(Arbitrary, Debug)]
struct Script {
    config: HubConfig,
    ops: Vec<Op>,
}

const NAMES: [&str; 4] = ["room:a", "room:b", "alice", "dm:alice|bob"];

const CONFIG_KEYS: [&str; 9] = [
    "history_max_messages",
    "history_max_bytes",
    "history_ttl_seconds",
    "queue_max_messages",
    "queue_max_bytes",
    "max_payload_bytes",
    "max_group_name_bytes",
    "max_user_bytes",
    "slow_consumer",
];

/// The run's state: the current hub, ids it handed out, messages held.
struct Host {
    hub: *mut cbx_hub,
    /// The current hub's `max_payload_bytes`, to make "huge" lengths.
    max_payload: usize,
    conns: Vec<u64>,
    messages: Vec<*mut cbx_message>,
}

/// Checks what every call promises about its result.
fn check(r: cbx_result) -> cbx_result {
    assert_ne!(
        r,
        CBX_PANIC,
        "a panic crossed into the boundary: {}",
        last_error()
    );
    let name = unsafe { CStr::from_ptr(cbx_result_name(r)) };
    assert_ne!(name.to_bytes(), b"CBX_UNKNOWN", "unnamed result code {r}");
    if r != CBX_OK {
        assert!(!last_error().is_empty(), "{name:?} without a message");
    } else {
        assert!(last_error().is_empty(), "CBX_OK left {:?}", last_error());
    }
    r
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(cbx_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Takes a string the library allocated: checks it is JSON (when `json`)
/// and frees it.
unsafe fn take_string(s: *mut c_char, json: bool) {
    assert!(!s.is_null());
    let text = CStr::from_ptr(s)
        .to_str()
        .expect("the library's strings are UTF-8");
    if json {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
            panic!("not JSON ({e}): {text}");
        }
    }
    cbx_string_free(s);
}

impl Text {
    fn to_c(&self) -> Option<CString> {
        match self {
            Text::Null => None,
            Text::Bytes(b) => {
                let b: Vec<u8> = b.iter().copied().filter(|&c| c != 0).collect();
                Some(CString::new(b).unwrap())
            }
            Text::Known(i) => Some(CString::new(NAMES[*i as usize % NAMES.len()]).unwrap()),
        }
    }
}

fn ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(null(), |s| s.as_ptr())
}

/// A payload as (pointer, length), with the storage that keeps it alive.
fn payload(p: &Payload, max_payload: usize) -> Option<(Vec<u8>, *const u8, usize)> {
    match p {
        Payload::Bytes(b) => {
            let v = b.clone();
            let ptr = v.as_ptr();
            let len = v.len();
            Some((v, ptr, len))
        }
        Payload::Json(j) => {
            let v = serde_json::to_vec(&j.to_value(0)).unwrap();
            let ptr = v.as_ptr();
            let len = v.len();
            Some((v, ptr, len))
        }
        Payload::Null(len) => Some((Vec::new(), null(), *len as usize)),
        Payload::Huge(extra) => {
            // Only a length past the limit is refused before reading: with a
            // limit near usize::MAX no such length exists, so skip.
            let len = max_payload.checked_add(1 + (*extra as usize % (1 << 40)))?;
            let v = vec![0u8; 1];
            let ptr = v.as_ptr();
            Some((v, ptr, len))
        }
    }
}

impl Host {
    fn conn(&self, c: &ConnRef) -> u64 {
        match c {
            ConnRef::Opened(i) if !self.conns.is_empty() => {
                self.conns[*i as usize % self.conns.len()]
            }
            ConnRef::Opened(i) => u64::from(*i),
            ConnRef::Raw(id) => *id,
        }
    }

    /// Replaces the hub (the old one is freed) when `config` builds one.
    unsafe fn hub_new(&mut self, config: &HubConfig) {
        let text: Option<Vec<u8>> = match config {
            HubConfig::Null => None,
            HubConfig::Defaults => Some(b"{}".to_vec()),
            HubConfig::Raw(b) => Some(b.iter().copied().filter(|&c| c != 0).collect()),
            HubConfig::Fields(fields) => {
                let mut object = serde_json::Map::new();
                for (key, value) in fields {
                    let key = CONFIG_KEYS[*key as usize % CONFIG_KEYS.len()];
                    let value = if key == "slow_consumer" {
                        let policies = ["disconnect", "drop_oldest", "drop_newest", "nope"];
                        serde_json::Value::from(policies[*value as usize % 4])
                    } else {
                        // Small values mostly: the interesting edges are
                        // 0, 1 and just past a payload's size.
                        serde_json::Value::from(value % 4096)
                    };
                    object.insert(key.into(), value);
                }
                Some(serde_json::to_vec(&object).unwrap())
            }
        };
        // A Redis engine would reach for a server: not this target's job.
        if let Some(text) = &text {
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(text) {
                if o.get("engine").is_some_and(|e| e != "memory") {
                    return;
                }
            }
        }
        let c = text.map(|t| CString::new(t).unwrap());
        let mut out: *mut cbx_hub = null_mut();
        let r = check(cbx_hub_new(ptr(&c), &mut out));
        if r != CBX_OK {
            assert!(out.is_null(), "out written on failure");
            return;
        }
        let config = c.as_ref().map_or("", |c| c.to_str().unwrap());
        let parsed = channelbox::Config::from_json(config).expect("cbx_hub_new accepted it");
        self.free_hub();
        self.hub = out;
        self.max_payload = parsed.max_payload_bytes;
    }

    unsafe fn free_hub(&mut self) {
        cbx_hub_free(self.hub);
        self.hub = null_mut();
        self.conns.clear();
    }

    fn keep(&mut self, m: *mut cbx_message) {
        assert!(!m.is_null());
        // Bounded, so a long script does not hold every message.
        if self.messages.len() >= 64 {
            unsafe { cbx_message_free(self.messages.remove(0)) };
        }
        self.messages.push(m);
    }

    unsafe fn apply(&mut self, op: &Op) {
        let hub = self.hub;
        match op {
            Op::HubNew(config) => self.hub_new(config),
            Op::ConnOpen { user, ttl } => {
                let user = user.to_c();
                let ttl = [0, 1, 3600, u32::MAX][*ttl as usize % 4];
                let mut id = 7u64;
                if check(cbx_conn_open(hub, ptr(&user), ttl, &mut id)) == CBX_OK {
                    assert!(!self.conns.contains(&id), "id {id} reused");
                    self.conns.push(id);
                } else {
                    assert_eq!(id, 7);
                }
            }
            Op::ConnClose(c) => {
                check(cbx_conn_close(hub, self.conn(c)));
            }
            Op::GroupAdd(c, g) => {
                let g = g.to_c();
                check(cbx_group_add(hub, self.conn(c), ptr(&g)));
            }
            Op::GroupRemove(c, g) => {
                let g = g.to_c();
                check(cbx_group_remove(hub, self.conn(c), ptr(&g)));
            }
            Op::GroupSend {
                group,
                kind,
                data,
                flags,
                report,
            } => {
                let g = group.to_c();
                let Some((_keep, p, len)) = payload(data, self.max_payload) else {
                    return;
                };
                let mut rep = cbx_send_report::default();
                let out = if *report {
                    &mut rep as *mut _
                } else {
                    null_mut()
                };
                let r = check(cbx_group_send(
                    hub,
                    ptr(&g),
                    kind % 5,
                    p,
                    len,
                    flags % 4,
                    out,
                ));
                if r != CBX_OK {
                    assert_eq!(
                        (rep.delivered, rep.offset),
                        (0, 0),
                        "report written on failure"
                    );
                }
            }
            Op::UserSend {
                user,
                kind,
                data,
                report,
            } => {
                let u = user.to_c();
                let Some((_keep, p, len)) = payload(data, self.max_payload) else {
                    return;
                };
                let mut rep = cbx_send_report::default();
                let out = if *report {
                    &mut rep as *mut _
                } else {
                    null_mut()
                };
                check(cbx_user_send(hub, ptr(&u), kind % 5, p, len, out));
            }
            Op::ConnSend { conn, kind, data } => {
                let Some((_keep, p, len)) = payload(data, self.max_payload) else {
                    return;
                };
                check(cbx_conn_send(hub, self.conn(conn), kind % 5, p, len));
            }
            Op::Recv { conn, wait } => {
                let mut m: *mut cbx_message = null_mut();
                let r = check(cbx_conn_recv(
                    hub,
                    self.conn(conn),
                    i32::from(*wait == 255),
                    &mut m,
                ));
                if r == CBX_OK {
                    self.keep(m);
                } else {
                    assert!(m.is_null());
                }
            }
            Op::RecvBatch { conn, cap } => {
                let cap = usize::from(*cap % 33);
                let mut out = vec![null_mut::<cbx_message>(); cap.max(1)];
                let mut n = usize::MAX;
                let r = check(cbx_conn_recv_batch(
                    hub,
                    self.conn(conn),
                    out.as_mut_ptr(),
                    cap,
                    &mut n,
                ));
                if r == CBX_OK {
                    assert!(n >= 1 && n <= cap, "n {n} cap {cap}");
                    for m in &out[..n] {
                        self.keep(*m);
                    }
                    assert!(out[n..].iter().all(|m| m.is_null()));
                } else {
                    assert_eq!(n, usize::MAX);
                }
            }
            Op::HistoryJson {
                group,
                since,
                limit,
            } => {
                let g = group.to_c();
                let mut s: *mut c_char = null_mut();
                if check(cbx_history_json(hub, ptr(&g), *since, *limit, &mut s)) == CBX_OK {
                    take_string(s, true);
                } else {
                    assert!(s.is_null());
                }
            }
            Op::HistoryReplace {
                group,
                offset,
                kind,
                data,
            } => {
                let g = group.to_c();
                let Some((_keep, p, len)) = payload(data, self.max_payload) else {
                    return;
                };
                check(cbx_history_replace(
                    hub,
                    ptr(&g),
                    *offset % 64,
                    kind % 5,
                    p,
                    len,
                ));
            }
            Op::HistoryFlush(g) => {
                let g = g.to_c();
                check(cbx_history_flush(hub, ptr(&g)));
            }
            Op::CloseReason(c) => {
                let (mut code, mut host, mut text) = (99u32, 99u32, null_mut::<c_char>());
                let r = check(cbx_conn_close_reason(
                    hub,
                    self.conn(c),
                    &mut code,
                    &mut host,
                    &mut text,
                ));
                if r == CBX_OK {
                    assert!(code <= CBX_CLOSE_ENGINE_MISSED_MESSAGES);
                    take_string(text, false);
                } else {
                    assert_eq!((code, host), (99, 99));
                    assert!(text.is_null());
                }
            }
            Op::CloseAll => {
                check(cbx_close_all(hub));
            }
            Op::GroupsFlush => {
                check(cbx_groups_flush(hub));
            }
            Op::GroupsJson => {
                let mut s: *mut c_char = null_mut();
                if check(cbx_groups_json(hub, &mut s)) == CBX_OK {
                    take_string(s, true);
                }
            }
            Op::StatsJson => {
                let mut s: *mut c_char = null_mut();
                if check(cbx_stats_json(hub, &mut s)) == CBX_OK {
                    take_string(s, true);
                }
            }
            Op::ReadyFd => {
                let fd = cbx_hub_ready_fd(hub);
                assert_eq!(fd < 0, hub.is_null());
            }
            Op::TakeReady { cap } => {
                let cap = usize::from(*cap % 17);
                let mut ids = vec![0u64; cap.max(1)];
                let mut n = usize::MAX;
                let r = check(cbx_hub_take_ready(hub, ids.as_mut_ptr(), cap, &mut n));
                if r == CBX_OK {
                    assert!(n <= cap);
                }
            }
            Op::Accessors(i) => {
                let m = if self.messages.is_empty() {
                    null_mut()
                } else {
                    self.messages[*i as usize % self.messages.len()]
                };
                let mut len = 12345usize;
                let data = cbx_message_data(m, &mut len);
                if m.is_null() {
                    assert!(data.is_null() && len == 0);
                } else if len > 0 {
                    // Touch every byte, so ASan sees a short buffer.
                    let bytes = std::slice::from_raw_parts(data, len);
                    std::hint::black_box(bytes.iter().fold(0u8, |a, b| a ^ b));
                }
                cbx_message_data(m, null_mut());
                let kind = cbx_message_kind(m);
                assert!(if m.is_null() {
                    kind == 0
                } else {
                    (1..=3).contains(&kind)
                });
                CStr::from_ptr(cbx_message_group(m))
                    .to_str()
                    .expect("group names are UTF-8");
                cbx_message_offset(m);
                cbx_message_ts_ms(m);
            }
            Op::Views { count, with_null } => {
                let n = (*count as usize).min(self.messages.len());
                let mut list: Vec<*const cbx_message> =
                    self.messages[..n].iter().map(|m| m.cast_const()).collect();
                if *with_null {
                    list.push(null());
                }
                let mut views = Vec::with_capacity(list.len());
                let r = check(cbx_message_views(
                    list.as_ptr(),
                    list.len(),
                    views.as_mut_ptr(),
                ));
                if r == CBX_OK {
                    views.set_len(list.len());
                    for v in &views {
                        let v: &cbx_message_view = v;
                        if v.len > 0 {
                            let bytes = std::slice::from_raw_parts(v.data, v.len);
                            std::hint::black_box(bytes.iter().fold(0u8, |a, b| a ^ b));
                        }
                        CStr::from_ptr(v.group).to_str().unwrap();
                    }
                } else {
                    assert!(*with_null || list.is_empty());
                }
            }
            Op::MessageFree(i) => {
                if !self.messages.is_empty() {
                    let m = self.messages.remove(*i as usize % self.messages.len());
                    cbx_message_free(m);
                }
            }
            Op::Nulls => self.nulls(),
            Op::HugeCounts => {
                let mut views = [std::mem::MaybeUninit::<cbx_message_view>::uninit(); 1];
                let one = [null::<cbx_message>()];
                check(cbx_message_views(
                    one.as_ptr(),
                    usize::MAX,
                    views.as_mut_ptr().cast(),
                ));
                check(cbx_message_views(
                    null(),
                    usize::MAX / 2,
                    views.as_mut_ptr().cast(),
                ));
                cbx_messages_free(null_mut(), usize::MAX);
                let mut none = [null_mut::<cbx_message>()];
                cbx_messages_free(none.as_mut_ptr(), usize::MAX);
                // A cap larger than any batch: the library writes only what
                // it has, and there is nothing pending on an unknown id.
                let mut out = [null_mut::<cbx_message>(); 1];
                let mut n = 0usize;
                check(cbx_conn_recv_batch(
                    hub,
                    u64::MAX,
                    out.as_mut_ptr(),
                    usize::MAX,
                    &mut n,
                ));
            }
            Op::ResultName(code) => {
                let name = CStr::from_ptr(cbx_result_name(*code));
                assert!(name.to_str().unwrap().starts_with("CBX_"));
            }
        }
    }

    /// NULL for every required pointer of every entry point.
    unsafe fn nulls(&mut self) {
        let hub = self.hub;
        let g = c"room:a".as_ptr();
        let d = b"{}".as_ptr();
        let mut id = 0u64;
        let mut s: *mut c_char = null_mut();
        let mut m: *mut cbx_message = null_mut();
        let mut n = 0usize;
        let (mut code, mut host) = (0u32, 0u32);
        let mut ids = [0u64; 1];
        let expect_null =
            |r: cbx_result| assert_eq!(check(r), CBX_NULL_POINTER, "{}", last_error());
        expect_null(cbx_hub_new(null(), null_mut()));
        expect_null(cbx_conn_open(null_mut(), null(), 0, &mut id));
        expect_null(cbx_conn_open(hub, null(), 0, null_mut()));
        expect_null(cbx_conn_close(null_mut(), 1));
        expect_null(cbx_group_add(null_mut(), 1, g));
        expect_null(cbx_group_remove(null_mut(), 1, g));
        expect_null(cbx_group_send(null_mut(), g, CBX_JSON, d, 2, 0, null_mut()));
        expect_null(cbx_user_send(null_mut(), g, CBX_JSON, d, 2, null_mut()));
        expect_null(cbx_conn_send(null_mut(), 1, CBX_JSON, d, 2));
        expect_null(cbx_conn_recv(null_mut(), 1, 0, &mut m));
        expect_null(cbx_conn_recv(hub, 1, 0, null_mut()));
        expect_null(cbx_conn_recv_batch(null_mut(), 1, &mut m, 1, &mut n));
        expect_null(cbx_conn_recv_batch(hub, 1, null_mut(), 1, &mut n));
        expect_null(cbx_conn_recv_batch(hub, 1, &mut m, 1, null_mut()));
        expect_null(cbx_history_json(null_mut(), g, 0, 0, &mut s));
        expect_null(cbx_history_json(hub, g, 0, 0, null_mut()));
        expect_null(cbx_history_replace(null_mut(), g, 1, CBX_JSON, d, 2));
        expect_null(cbx_history_flush(null_mut(), g));
        expect_null(cbx_conn_close_reason(
            null_mut(),
            1,
            &mut code,
            &mut host,
            &mut s,
        ));
        expect_null(cbx_conn_close_reason(hub, 1, null_mut(), &mut host, &mut s));
        expect_null(cbx_conn_close_reason(hub, 1, &mut code, null_mut(), &mut s));
        expect_null(cbx_conn_close_reason(
            hub,
            1,
            &mut code,
            &mut host,
            null_mut(),
        ));
        expect_null(cbx_close_all(null_mut()));
        expect_null(cbx_groups_flush(null_mut()));
        expect_null(cbx_groups_json(null_mut(), &mut s));
        expect_null(cbx_stats_json(null_mut(), &mut s));
        expect_null(cbx_hub_take_ready(null_mut(), ids.as_mut_ptr(), 1, &mut n));
        expect_null(cbx_hub_take_ready(hub, ids.as_mut_ptr(), 1, null_mut()));
        assert_eq!(cbx_hub_ready_fd(null_mut()), -1);
        assert!(s.is_null() && m.is_null());
        cbx_hub_free(null_mut());
        cbx_string_free(null_mut());
        cbx_message_free(null_mut());
        cbx_messages_free(null_mut(), 3);
        if !hub.is_null() {
            // Required strings and payloads, NULL on a real hub.
            expect_null(cbx_group_add(hub, 1, null()));
            expect_null(cbx_group_send(hub, null(), CBX_JSON, d, 2, 0, null_mut()));
            if self.max_payload >= 2 {
                expect_null(cbx_group_send(hub, g, CBX_JSON, null(), 2, 0, null_mut()));
            }
            expect_null(cbx_user_send(hub, null(), CBX_JSON, d, 2, null_mut()));
            expect_null(cbx_history_replace(hub, null(), 1, CBX_JSON, d, 2));
        }
    }
}

fuzz_target!(|script: Script| {
    let mut host = Host {
        hub: null_mut(),
        max_payload: 0,
        conns: Vec::new(),
        messages: Vec::new(),
    };
    unsafe {
        host.hub_new(&script.config);
        for op in script.ops.iter().take(256) {
            host.apply(op);
        }
        // Messages outlive their hub: free the hub first, then read them.
        host.free_hub();
        for m in &host.messages {
            let mut len = 0;
            let data = cbx_message_data(*m, &mut len);
            if len > 0 {
                std::hint::black_box(
                    std::slice::from_raw_parts(data, len)
                        .iter()
                        .fold(0u8, |a, b| a ^ b),
                );
            }
        }
        let mut batch = std::mem::take(&mut host.messages);
        cbx_messages_free(batch.as_mut_ptr(), batch.len());
        assert!(batch.iter().all(|m| m.is_null()));
    }
});
