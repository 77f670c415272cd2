//! `--jwt-jwks`: an identity provider's JWK Set, from a file or an
//! `http(s)` URL, with keys chosen by `kid`.
//!
//! Read once at start (a set that cannot be read or holds no usable key
//! stops the hub). A token whose `kid` the set lacks (a provider rotated
//! its keys) starts a reload in a task of its own, at most one per
//! [`KeySet::min_interval`] (30 s by default) so a storm of made-up kids
//! cannot hammer the provider; token checks never wait for it (they run
//! inside the WebSocket handshake, which cannot wait), so that token is
//! refused and the client's next attempt finds the new key. A URL is
//! fetched with a timeout; a failed reload keeps the old keys, is logged
//! and counted (`/metrics`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::keys::{self, KeysById, VerifyingKey};

/// Largest key set document read: real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where the key set comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Url(url) => f.write_str(url),
        }
    }
}

/// A JWK Set that reloads itself when a token names a key it lacks.
pub struct KeySet {
    /// The file or URL given to `--jwt-jwks`.
    source: Source,
    /// The keys now in use; replaced whole by a successful reload.
    keys: RwLock<Arc<KeysById>>,
    /// When the last reload started (`None`: none since start), so
    /// reloads are at least `min_interval` apart.
    last_reload: Mutex<Option<Instant>>,
    /// Shortest time between two reloads.
    min_interval: Duration,
    /// Longest a fetch (or a file read) may take.
    timeout: Duration,
    /// Reloads that replaced the keys, for `/metrics`.
    pub reloads: AtomicU64,
    /// Reloads that failed (old keys kept), for `/metrics`.
    pub reload_failures: AtomicU64,
}

impl KeySet {
    /// Reads the set from `location` (a path, or an `http://`/`https://`
    /// URL); `Err` says why it cannot be used. Blocks the calling thread
    /// for the first read (at start, before the hub serves anything).
    pub fn open(
        location: &str,
        min_interval: Duration,
        timeout: Duration,
    ) -> Result<Arc<KeySet>, String> {
        let source = if location.starts_with("http://") || location.starts_with("https://") {
            let url = reqwest::Url::parse(location).map_err(|e| format!("bad URL: {e}"))?;
            let loopback = url.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
                    || h == "[::1]"
            });
            if url.scheme() == "http" && !loopback {
                tracing::warn!(
                    %url,
                    "--jwt-jwks over plain http: whoever sits on the path can replace the keys; use https"
                );
            }
            Source::Url(location.to_owned())
        } else {
            Source::File(PathBuf::from(location))
        };
        // A thread of its own with its own runtime: the caller may be a
        // runtime's worker (`AppState::new` inside `run`).
        let first = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(read(&source, timeout))
                })
                .join()
                .unwrap_or_else(|_| Err("the key set reader panicked".into()))
        });
        let (keys, skipped) = first.and_then(|body| keys::parse_jwks(&body))?;
        for why in &skipped {
            tracing::warn!(%source, %why, "--jwt-jwks: key skipped");
        }
        tracing::info!(%source, keys = keys.len(), "--jwt-jwks: key set loaded");
        Ok(Arc::new(KeySet {
            source,
            keys: RwLock::new(Arc::new(keys)),
            last_reload: Mutex::new(None),
            min_interval,
            timeout,
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        }))
    }

    /// The key named `kid`, if the set has it.
    pub fn get(&self, kid: &str) -> Option<VerifyingKey> {
        self.keys.read().get(kid).cloned()
    }

    /// Keys in the set now.
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    /// True when the set holds no key (never after a successful start).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A token named a `kid` the set lacks: starts a reload in a task
    /// unless one started less than `min_interval` ago. Returns at once.
    pub fn unknown_kid(self: &Arc<Self>, kid: &str) {
        {
            let mut last = self.last_reload.lock();
            if last.is_some_and(|t| t.elapsed() < self.min_interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(kid, "--jwt-jwks: no runtime to reload the key set in");
            return;
        };
        tracing::info!(kid, source = %self.source, "--jwt-jwks: unknown kid, reloading the key set");
        let set = self.clone();
        runtime.spawn(async move { set.reload().await });
    }

    /// Reads the set again; on failure the old keys stay.
    async fn reload(&self) {
        let result = read(&self.source, self.timeout)
            .await
            .and_then(|body| keys::parse_jwks(&body));
        match result {
            Ok((keys, skipped)) => {
                for why in &skipped {
                    tracing::warn!(source = %self.source, %why, "--jwt-jwks: key skipped");
                }
                tracing::info!(source = %self.source, keys = keys.len(), "--jwt-jwks: key set reloaded");
                *self.keys.write() = Arc::new(keys);
                self.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(source = %self.source, %error, "--jwt-jwks: reload failed, the previous keys stay");
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The document at `source`, within `timeout`, at most [`MAX_JWKS_BYTES`].
async fn read(source: &Source, timeout: Duration) -> Result<Vec<u8>, String> {
    let read = async {
        match source {
            Source::File(path) => {
                let body = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if body.len() > MAX_JWKS_BYTES {
                    return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
                }
                Ok(body)
            }
            Source::Url(url) => fetch(url).await,
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// GETs `url` and reads its body. A client per fetch: reloads are rare,
/// and a pooled connection would outlive the start-up runtime.
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("channelbox-hub/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", with_causes(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("GET {url}: larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `error: cause: cause...`: reqwest's own message alone says only "error
/// sending request".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
