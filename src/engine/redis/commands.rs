//! The command connection: one multiplexed Redis connection shared by every
//! caller (requests pipeline on it), reconnected with back-off when it
//! breaks. While Redis is unreachable, calls fail at once instead of
//! queueing: a caller is never held for more than one connection attempt.

use std::future::Future;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};

use crate::error::{Error, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(crate) struct Commands {
    client: Client,
    timeout: Duration,
    slot: Mutex<Option<MultiplexedConnection>>,
    /// One connection attempt at a time; the others wait for its outcome.
    connecting: tokio::sync::Mutex<()>,
    /// After a failed attempt: no new attempt before `.0`; `.1` the next delay.
    backoff: Mutex<(Option<Instant>, Duration)>,
}

fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

pub(crate) fn unavailable(what: impl std::fmt::Display) -> Error {
    Error::EngineUnavailable(format!("redis: {what}"))
}

impl Commands {
    pub(crate) fn new(client: Client, timeout: Duration) -> Commands {
        Commands {
            client,
            timeout,
            slot: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            backoff: Mutex::new((None, FIRST_BACKOFF)),
        }
    }

    /// True while a connection is up (as far as the last call knows).
    pub(crate) fn is_connected(&self) -> bool {
        self.slot.lock().is_some()
    }

    async fn connection(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.slot.lock().clone() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.slot.lock().clone() {
            return Ok(c);
        }
        if let (Some(at), _) = *self.backoff.lock() {
            if Instant::now() < at {
                return Err(unavailable("unreachable (reconnecting with back-off)"));
            }
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let attempt = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => {
                *self.backoff.lock() = (None, FIRST_BACKOFF);
                *self.slot.lock() = Some(c.clone());
                Ok(c)
            }
            failed => {
                let mut b = self.backoff.lock();
                let delay = b.1;
                *b = (Some(Instant::now() + delay), (delay * 2).min(MAX_BACKOFF));
                Err(match failed {
                    Ok(Err(e)) => unavailable(e),
                    _ => unavailable("connection attempt timed out"),
                })
            }
        }
    }

    /// Runs `op` on the shared connection within the timeout. A broken
    /// connection is dropped so the next call reconnects.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if breaks_connection(&e) {
                    self.slot.lock().take();
                }
                Err(unavailable(e))
            }
            Err(_) => {
                self.slot.lock().take();
                Err(unavailable(
                    "no answer in time (the operation may still have been applied)",
                ))
            }
        }
    }
}
