//! A way into the hub's handling of client text frames without a socket,
//! for the fuzz target `fuzz/fuzz_targets/hub_frames.rs`.
//!
//! [`FrameHarness::run`] builds a fresh [`AppState`] (so a run depends on
//! its input only), opens one session on the chosen endpoint and hands each
//! frame to that endpoint's own handler, the one `socket::serve_frames`
//! calls; it returns what the socket would have been sent. What it leaves
//! out is the socket: tungstenite's UTF-8 check, the frame size limit
//! (applied here as the socket applies it) and the rate limit.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::Claims;
use crate::server::AppState;
use crate::session::{Endpoint, Session};
use crate::{chat, dm, features, frames, presence, Config};

/// The endpoint a fuzzed session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuzzEndpoint {
    /// `/chat/lobby`.
    Chat,
    /// `/presence`.
    Presence,
    /// `/dm/peer`.
    Dm,
}

/// One runtime and one configuration, reused by every run of a process.
pub struct FrameHarness {
    /// Runs each handler to completion on this thread.
    runtime: tokio::runtime::Runtime,
    /// The hub's defaults, with `data_dir` pointed at the caller's directory.
    config: Config,
}

impl FrameHarness {
    /// A harness whose hubs keep their files (the state store `hub.redb`,
    /// uploads) in `data_dir`. History stays in memory (each run's hub
    /// starts with none; the fuzzer is after the frame handlers, not the
    /// disk); rooms, bans and receipts in `hub.redb` carry over from one
    /// run to the next, as they would in a long-lived hub.
    pub fn new(data_dir: &Path) -> anyhow::Result<FrameHarness> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let config = Config {
            data_dir: data_dir.to_path_buf(),
            jwt_secret: Some("fuzzing-secret-of-32-bytes-length".into()),
            history_store: crate::config::HistoryStore::Memory,
            ..Config::default()
        };
        Ok(FrameHarness { runtime, config })
    }

    /// Serves `frames` (raw bytes as a client sent them, in order) to one
    /// session on `endpoint`, as user `alice` (an admin when `admin`), on a
    /// fresh hub (see [`FrameHarness::new`] for what carries over); returns every frame queued for that session's socket.
    /// Frames that are not UTF-8 or are over `--max-frame-bytes` are
    /// skipped, as the socket never hands them to the handler.
    pub fn run(&self, endpoint: FuzzEndpoint, admin: bool, frames: &[&[u8]]) -> Vec<Bytes> {
        let state = match AppState::new(self.config.clone()) {
            Ok(state) => state,
            Err(e) => panic!("the hub's defaults build a hub: {e}"),
        };
        let claims = Claims {
            sub: "alice".into(),
            username: "alice".into(),
            roles: if admin { vec!["admin".into()] } else { vec![] },
            exp: u64::MAX,
        };
        let Ok(conn) = state.hub.open(Some(&claims.sub), None) else {
            return Vec::new();
        };
        let endpoint = match endpoint {
            FuzzEndpoint::Chat => {
                let group = frames::room_group("lobby");
                let _ = conn.join(&group);
                Endpoint::Chat {
                    room: "lobby".into(),
                    group: group.into(),
                }
            }
            FuzzEndpoint::Presence => Endpoint::Presence,
            FuzzEndpoint::Dm => {
                let _ = conn.join(&frames::dm_inbox_group(&claims.sub));
                Endpoint::Dm {
                    peer: "peer".into(),
                }
            }
        };
        let Some(user_slot) = state.user_slot(&claims.sub) else {
            return Vec::new();
        };
        let session = Session {
            pending_acks: std::sync::OnceLock::new(),
            user_slot,
            state: Arc::clone(&state),
            claims,
            endpoint,
            conn,
        };
        let max = state.config.max_frame_bytes;
        let mut sent = Vec::new();
        for frame in frames {
            let Ok(text) = std::str::from_utf8(frame) else {
                continue;
            };
            if text.len() > max {
                continue;
            }
            self.runtime.block_on(async {
                handle(&session, text).await;
                // Let the tasks the frame spawned (a saved message's ack
                // waits for its commit in a task of its own) run to their
                // end, as the server's runtime would, before looking.
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
            });
            drain(&session, &mut sent);
        }
        if let Endpoint::Chat { .. } = session.endpoint {
            features::on_leave(&session);
        }
        let _ = state.hub.close(session.conn.id());
        sent
    }
}

/// The endpoint's own handler for one text frame.
async fn handle(session: &Session, text: &str) {
    match &session.endpoint {
        Endpoint::Chat { room, group } => {
            let room = features::ChatRoom { id: room, group };
            chat::handle_text(session, room, text).await;
        }
        Endpoint::Presence => presence::handle_text(session, text).await,
        Endpoint::Dm { peer } => {
            let pair = frames::dm_pair_group(&session.claims.sub, peer);
            dm::handle_text(session, peer, &pair, text).await;
        }
    }
}

/// Takes what the session's queue holds, as its socket writer would.
fn drain(session: &Session, sent: &mut Vec<Bytes>) {
    let mut batch = Vec::new();
    while let Ok(n) = session
        .state
        .hub
        .try_recv_batch(session.conn.id(), &mut batch, 256)
    {
        if n == 0 {
            break;
        }
        sent.extend(batch.drain(..).map(|m| m.data().clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harness() -> (FrameHarness, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (FrameHarness::new(dir.path()).unwrap(), dir)
    }

    fn types(sent: &[Bytes]) -> Vec<String> {
        sent.iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_slice(f).unwrap();
                v["type"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_chat_message_comes_back_to_its_sender() {
        let (h, _dir) = harness();
        let sent = h.run(FuzzEndpoint::Chat, false, &[br#"{"message":"hi"}"#]);
        assert_eq!(types(&sent), ["message"]);
    }

    #[test]
    fn bad_frames_are_refused_with_error_frames() {
        let (h, _dir) = harness();
        let sent = h.run(
            FuzzEndpoint::Chat,
            false,
            &[b"not json", br#"{"type":7}"#, br#"{"type":"nope"}"#],
        );
        assert_eq!(types(&sent), ["error", "error", "error"]);
    }

    #[test]
    fn frames_the_socket_would_not_deliver_are_skipped() {
        let (h, _dir) = harness();
        let huge = vec![b' '; Config::default().max_frame_bytes + 1];
        let sent = h.run(FuzzEndpoint::Dm, false, &[b"\xff\xfe", &huge]);
        assert!(sent.is_empty(), "{sent:?}");
    }
}
