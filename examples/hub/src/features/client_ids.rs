//! Resends: a message sent again with the same `client_id` (a client that
//! lost its socket before the `ack`) is acked with the first copy's id and
//! saved once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Refusal;
use crate::store::{now_ms, Claim, Store};

/// Longest client id, in bytes.
const MAX_CLIENT_ID_BYTES: usize = 128;
/// A client id whose message was not saved within this long is free again.
const PENDING: Duration = Duration::from_secs(10);

/// What to do with a chat message that carries a `client_id`.
pub enum Decision {
    /// Save and send it.
    Send,
    /// A resend of a message already saved with this id: ack, save nothing.
    Duplicate(u64),
    /// A resend of a message being saved right now: drop it.
    InFlight,
}

/// Recent client ids, in the hub's state store, keyed by room, user and
/// client id (so a resend through another hub, or after a restart, is
/// still recognised). Each is kept [`KEEP`]: Redis expires them; the
/// embedded store sweeps them every [`SWEEP_EVERY`], off the workers.
#[derive(Debug)]
pub struct ClientIds {
    store: Arc<Store>,
    /// When the last sweep began (ms since the epoch).
    last_sweep_ms: AtomicU64,
}

/// How long a saved client id is remembered.
pub const KEEP: Duration = Duration::from_secs(3600);
/// How often expired client ids are swept from `hub.redb`.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The store key of a client id: lengths first, so no two triples meet.
fn key(room: &str, sub: &str, client_id: &str) -> String {
    format!("{}:{}:{room}{sub}{client_id}", room.len(), sub.len())
}

impl ClientIds {
    /// Client ids kept in `store`.
    pub fn new(store: Arc<Store>) -> ClientIds {
        ClientIds {
            store,
            last_sweep_ms: AtomicU64::new(now_ms()),
        }
    }

    /// Before saving: a new client id is marked as being saved.
    pub async fn check(&self, room: &str, sub: &str, client_id: &str) -> Result<Decision, Refusal> {
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(Refusal::bad_request("client_id must be 1-128 bytes"));
        }
        self.maybe_sweep();
        Ok(
            match self
                .store
                .claim(&key(room, sub, client_id), PENDING)
                .await?
            {
                Claim::Fresh => Decision::Send,
                Claim::Saved(id) => Decision::Duplicate(id),
                Claim::InFlight => Decision::InFlight,
            },
        )
    }

    /// After saving: the client id's message is `id`.
    pub async fn saved(&self, room: &str, sub: &str, client_id: &str, id: u64) {
        if let Err(e) = self
            .store
            .settle(&key(room, sub, client_id), id, KEEP)
            .await
        {
            tracing::warn!(error = %e, room, "could not remember a client id");
        }
    }

    /// The message of `client_id` (`id`) was refused after all (its
    /// commit failed): a resend is saved anew, not acked as `id`.
    pub async fn failed(&self, room: &str, sub: &str, client_id: &str, id: u64) {
        if let Err(e) = self.store.release(&key(room, sub, client_id), id).await {
            tracing::warn!(error = %e, room, "could not free a refused message's client id");
        }
    }

    /// Starts a sweep of expired ids when the last one is old enough.
    fn maybe_sweep(&self) {
        if self.store.is_shared() {
            return;
        }
        let now = now_ms();
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || match store.sweep_client_ids(KEEP) {
            Ok(gone) if gone > 0 => tracing::debug!(gone, "expired client ids swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "client id sweep failed"),
        });
    }
}
