//! The hub's handling of client text frames: the input is a session (its
//! first byte: endpoint and admin role) and then frames, one a line, each
//! handed to the endpoint's own handler on a fresh hub
//! (`channelbox_hub::fuzzing::FrameHarness`).
//!
//! What must hold, besides no crash or ASan report: every frame the hub
//! queues for the socket is a JSON object with a string `type`, and an
//! `error` frame carries a `code`.

#![no_main]

use std::sync::OnceLock;

use channelbox_hub::fuzzing::{FrameHarness, FuzzEndpoint};
use libfuzzer_sys::fuzz_target;

fn harness() -> &'static FrameHarness {
    static HARNESS: OnceLock<FrameHarness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cbx-fuzz-hub-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch data dir");
        FrameHarness::new(&dir).expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&session, rest)) = data.split_first() else {
        return;
    };
    let endpoint = match session % 3 {
        0 => FuzzEndpoint::Chat,
        1 => FuzzEndpoint::Presence,
        _ => FuzzEndpoint::Dm,
    };
    let admin = session & 0x80 != 0;
    let frames: Vec<&[u8]> = rest.split(|&b| b == b'\n').take(64).collect();
    for sent in harness().run(endpoint, admin, &frames) {
        let value: serde_json::Value = match serde_json::from_slice(&sent) {
            Ok(v) => v,
            Err(e) => panic!("the hub queued a frame that is not JSON ({e}): {sent:?}"),
        };
        let ty = value["type"].as_str();
        assert!(ty.is_some(), "a frame without a type: {value}");
        if ty == Some("error") {
            assert!(
                value["code"].is_string(),
                "an error without a code: {value}"
            );
        }
    }
});
