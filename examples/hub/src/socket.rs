//! One WebSocket: its single task waits on the socket and on the core queue
//! at once, and writes every pending frame with one write.
//!
//! Reading goes through tungstenite (masking, control frames, size limits).
//! Writing does not: the core hands over `Bytes` shared by all recipients,
//! and the writer frames a whole batch (header + payload, server frames are
//! unmasked) into one buffer that lives only until the kernel took it. An
//! idle socket keeps no write buffer, and a busy room costs one `sendto`
//! per socket per batch instead of one per frame.
//!
//! Every `--ping-interval` the socket pings its client, at the ticks of
//! its slot of the hub's one ping clock ([`crate::server::PingClock`]); a
//! client that sent nothing (no pong, no frame) through two pings in a row
//! is gone, and the socket is closed with 1001. Closes are prompt: the close frame, then FIN,
//! then at most [`CLOSE_DRAIN`] for the client's answer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use channelbox::{CloseReason, Connection, Error as HubError, Kind, Message};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};

use crate::config::Config;
use crate::error::Refusal;
use crate::rate_limit::{FrameLimit, Verdict};
use crate::server::PingClock;
use crate::session::Session;

mod stream;
mod ws;
pub use stream::Stream;
pub use ws::Ws;

/// What an endpoint does with one client text frame (boxed, so the
/// session's future does not carry the handler's state).
pub type Handled<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Serves client frames until the socket ends, writing queued frames
/// meanwhile: rate limit on every data frame, text or binary
/// (`rate_limited` errors, then 4008), binary frames refused, text frames
/// to `handle`. Returns how the socket ended.
///
/// Not an `async fn`, here and on the rest of the idle path (`Socket::next`,
/// `chat::serve`, `upgrade::route`): an `async fn` keeps its arguments in
/// its future twice (as passed and as moved into its body), an `async move`
/// block once. Every idle socket's task holds this future.
pub fn serve_frames<'a, 's>(
    session: &'a Session,
    socket: &'s mut Socket,
    mut handle: impl FnMut(Utf8Bytes) -> Handled<'a> + 's,
) -> impl Future<Output = Event> + 's
where
    'a: 's,
{
    async move {
        let config = &session.state.config;
        let mut rate = FrameLimit::new(config.messages_per_second, config.burst);
        loop {
            let event = socket.next().await;
            if !matches!(event, Event::Text(_) | Event::Binary) {
                return event;
            }
            match rate.check() {
                Verdict::Allow => {}
                Verdict::Refuse => {
                    session.refuse(&Refusal::rate_limited("slow down"));
                    continue;
                }
                Verdict::Close => {
                    session
                        .state
                        .counters
                        .rate_limit_closes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Event::Closed {
                        code: 4008,
                        reason: "rate limited".into(),
                    };
                }
            }
            match event {
                Event::Text(text) => handle(text).await,
                _ => session.refuse(&Refusal::bad_request("frames are JSON text")),
            }
        }
    }
}

thread_local! {
    /// Where a batch is framed before its one write: per thread, not per
    /// socket, so an idle socket keeps no buffer and a busy one allocates
    /// nothing per batch.
    static WRITE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest write buffer a thread keeps between batches.
const MAX_KEPT_WRITE_BUF: usize = 1 << 20;

/// How long a socket may take to send its close frame (and how long a
/// write blocked by a client that stopped reading outlives the hub's
/// decision to drop it).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a closed socket (close frame and FIN sent) waits for the
/// client's answer, so unread data does not turn the close into a reset.
pub const CLOSE_DRAIN: Duration = Duration::from_millis(250);
/// Pings a client may leave unanswered; at the next one it is closed.
const MAX_UNANSWERED_PINGS: u8 = 2;
/// How often a blocked write checks whether the hub gave up on the socket.
const STALL_CHECK: Duration = Duration::from_millis(250);

/// What the session loop gets from [`Socket::next`].
pub enum Event {
    /// A text frame from the client.
    Text(Utf8Bytes),
    /// A binary frame (the protocol is JSON text; answered with an error).
    Binary,
    /// A frame over `--max-frame-bytes`: close 1009.
    TooBig,
    /// The client left or the socket failed: nothing more to send.
    Gone,
    /// The hub closed the core connection: close the socket with `code`.
    Closed { code: u16, reason: String },
}

/// A WebSocket served by one task.
pub struct Socket {
    ws: Ws,
    /// The core connection whose queue this socket drains.
    conn: Connection,
    /// Messages taken from the queue, reused across batches.
    batch: Vec<Message>,
    /// Most frames per write.
    batch_max: usize,
    /// Saved frames of this group up to this offset were already sent in
    /// the `history` frame: skip their live copies.
    skip: Option<(Arc<str>, u64)>,
    /// tungstenite may hold unsent control frames (a pong): flush them
    /// before writing data frames directly.
    control_pending: bool,
    /// Counts this group's frames as they are written, where the send
    /// report cannot (a shared engine delivers when the publication comes
    /// back); `None` costs the writer nothing.
    deliveries: Option<Box<Deliveries>>,
    /// Its pings (`--ping-interval`); `None` when pings are off.
    ping: Option<Ping>,
    /// Bytes and messages of this socket's own queue past which it is
    /// written before the next read (see [`Socket::next`]).
    write_first: (u32, u32),
}

/// What the echo of a client's frame adds to it: the frame's own fields
/// (id, user, timestamp, thread, mentions). Its content is the client's,
/// escaped no longer than it came.
const ECHO_OVERHEAD: usize = 4096;

/// The heartbeat of one socket: no timer of its own (a boxed `Sleep` was
/// 112 bytes a socket), the hub's clock wakes it through its queue.
struct Ping {
    clock: Arc<PingClock>,
    /// Its slot's tick when it last pinged (or started): it pings when the
    /// slot's tick moves on.
    seen: u32,
    /// Pings sent since the client last sent anything.
    unanswered: u8,
}

/// A group whose written frames are counted, and where the count goes.
struct Deliveries {
    group: Arc<str>,
    record: Box<dyn Fn(u64) + Send + Sync>,
}

impl Socket {
    /// `pings`: the hub's ping clock (`None`: pings are off).
    pub fn new(
        ws: Ws,
        conn: Connection,
        config: &Config,
        pings: Option<&Arc<PingClock>>,
    ) -> Socket {
        let ping = pings.map(|clock| Ping {
            clock: clock.clone(),
            seen: clock.tick(conn.id()),
            unanswered: 0,
        });
        Socket {
            ws,
            conn,
            batch: Vec::new(),
            batch_max: config.write_batch.max(1),
            skip: None,
            control_pending: false,
            deliveries: None,
            ping,
            write_first: write_first(config),
        }
    }

    /// True when this socket's queue is so full that the echo of one more
    /// client frame might not fit: it is written before the next read.
    fn writes_due(&self) -> bool {
        let (messages, bytes) = self.conn.pending();
        messages > 0
            && (bytes > self.write_first.0 as usize || messages > self.write_first.1 as usize)
    }

    /// Ready once the socket's slot of the ping clock ticked since its last
    /// ping (never when pings are off). It registers no waker: the clock
    /// wakes the socket's task through its queue (`Hub::wake`), whose
    /// waker the same `select!` registered.
    fn ping_due<'p>(ping: &'p Option<Ping>, conn: &'p Connection) -> impl Future<Output = ()> + 'p {
        std::future::poll_fn(move |_| match ping {
            Some(p) if p.clock.tick(conn.id()) != p.seen => std::task::Poll::Ready(()),
            _ => std::task::Poll::Pending,
        })
    }

    /// A ping is due: the frame to write, or the close event for a client
    /// that left the last [`MAX_UNANSWERED_PINGS`] unanswered.
    fn ping_now(&mut self) -> Result<(Vec<u8>, usize), Event> {
        let Some(ping) = &mut self.ping else {
            return Ok((Vec::new(), 0));
        };
        if ping.unanswered >= MAX_UNANSWERED_PINGS {
            return Err(Event::Closed {
                code: 1001,
                reason: "ping timeout".into(),
            });
        }
        ping.unanswered += 1;
        ping.seen = ping.clock.tick(self.conn.id());
        // Its vector for batches goes back too (empty between batches):
        // an idle socket keeps none, a busy one allocates it again once
        // an interval.
        if self.batch.is_empty() {
            self.batch = Vec::new();
        }
        // An unmasked ping with no payload, written like data frames.
        Ok((vec![0x89, 0x00], 0))
    }

    /// Calls `record` with the number of `group`'s frames each write
    /// carried to this socket.
    pub fn count_deliveries(
        &mut self,
        group: Arc<str>,
        record: impl Fn(u64) + Send + Sync + 'static,
    ) {
        self.deliveries = Some(Box::new(Deliveries {
            group,
            record: Box::new(record),
        }));
    }

    /// Skips live copies of `group`'s saved frames up to `offset` (they were
    /// in the history frame).
    pub fn skip_saved(&mut self, group: Arc<str>, offset: u64) {
        self.skip = (offset > 0).then_some((group, offset));
    }

    /// Writes queued frames as they come until the client sends something
    /// or the socket or the core connection ends.
    // Deliberately not `async fn` (see `serve_frames`); not an iterator.
    #[allow(clippy::manual_async_fn, clippy::should_implement_trait)]
    pub fn next(&mut self) -> impl Future<Output = Event> + '_ {
        async move {
            // The queue's batch waits one scheduler turn (`gather`).
            let mut gather = false;
            loop {
                if std::mem::take(&mut gather) {
                    // At this await only a flag and the one-byte `YieldNow`
                    // are kept: the socket task's future keeps its size
                    // (a batch kept across it was 32 bytes more, past the
                    // 512-byte cell; `a_socket_task_is_small`).
                    tokio::task::yield_now().await;
                    match self.gather() {
                        Ok(None) => {}
                        Ok(Some(rest)) => {
                            let write = Box::pin(self.write_rest(rest));
                            if write.await.is_err() {
                                return Event::Gone;
                            }
                        }
                        Err(event) => return event,
                    }
                    continue;
                }
                if self.writes_due() {
                    if let Ok(1..) = self.conn.try_recv_batch(&mut self.batch, self.batch_max) {
                        if let Some(rest) = self.write_batch_now() {
                            let write = Box::pin(self.write_rest(rest));
                            if write.await.is_err() {
                                return Event::Gone;
                            }
                        }
                    }
                }
                // No await inside the branches: the select's output (a
                // tungstenite result, large) would then be kept in the future.
                //
                // Reads first: a sender's frames already in the socket are all
                // taken before its own queue (the echoes of what it sent) is
                // written, so those go out in one write instead of one each.
                // A client that never stops sending still gets its queue
                // written: tokio's cooperative budget makes the read return
                // Pending after 128 reads in one poll. And a queue that
                // might not take the echo of one more frame is written
                // first (above): reading first must not make a client that
                // reads its socket a slow consumer.
                let rest = tokio::select! {
                    biased;
                    frame = self.ws.next() => match frame {
                        Some(Ok(message)) if self.answered(&message) => continue,
                        Some(Ok(WsMessage::Text(text))) => return Event::Text(text),
                        Some(Ok(WsMessage::Binary(_))) => return Event::Binary,
                        // tungstenite answers pings itself (sent on the next read
                        // or flush).
                        Some(Ok(WsMessage::Ping(_))) => {
                            self.control_pending = true;
                            continue;
                        }
                        Some(Ok(WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
                        Some(Ok(WsMessage::Close(_))) | None => return Event::Gone,
                        Some(Err(WsError::Capacity(_))) => return Event::TooBig,
                        Some(Err(WsError::Utf8(_))) => return Event::Closed {
                            code: 1007,
                            reason: "text frame is not UTF-8".into(),
                        },
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "websocket read failed");
                            return Event::Gone;
                        }
                    },
                    received = self.conn.recv_batch_async(&mut self.batch, self.batch_max) => {
                        match received {
                            // Less than a batch: gather a turn's worth first.
                            Ok(n) if n < self.batch_max => {
                                gather = true;
                                continue;
                            }
                            Ok(_) => match self.write_batch_now() {
                                Some(rest) => rest,
                                None => continue,
                            },
                            Err(HubError::Closed(reason)) => return closed_event(reason),
                            Err(_) => return Event::Gone,
                        }
                    }
                    _ = Self::ping_due(&self.ping, &self.conn) => match self.ping_now() {
                        Ok(frame) => frame,
                        Err(event) => return event,
                    },
                };
                // Boxed: a blocked write's state exists only while blocked.
                let write = Box::pin(self.write_rest(rest));
                if write.await.is_err() {
                    return Event::Gone;
                }
            }
        }
    }

    /// Writes the batch taken from the queue one turn of the scheduler
    /// later (called after a `yield_now`), with whatever was queued for
    /// this socket in that turn: tokio's `yield_now` runs the task again
    /// after the tasks already ready and the I/O driver's next poll, so
    /// frames that senders read in the meantime go out in this write, not
    /// one write each. Under load that is fewer and larger writes (the
    /// referee's scenario a: 20-24 -> 13 `sendto` a 1000 deliveries); an
    /// idle hub's turn is one `epoll_wait` that returns at once, and the
    /// frames wait no timer. Returns what the socket did not take, or the
    /// close event of a connection that closed with nothing left to write.
    fn gather(&mut self) -> Result<Option<(Vec<u8>, usize)>, Event> {
        let room = self.batch_max.saturating_sub(self.batch.len());
        match self.conn.try_recv_batch(&mut self.batch, room) {
            // Closed: what was taken still goes; the next receive reports it.
            Err(HubError::Closed(reason)) if self.batch.is_empty() => {
                return Err(closed_event(reason))
            }
            _ => {}
        }
        Ok(self.write_batch_now())
    }

    /// The client sent `message`, so it is alive: the ping count starts
    /// over. True for a pong, which needs nothing more.
    fn answered(&mut self, message: &WsMessage) -> bool {
        if let Some(ping) = &mut self.ping {
            ping.unanswered = 0;
        }
        matches!(message, WsMessage::Pong(_))
    }

    /// Writes one frame now, ahead of anything still queued (the `history`
    /// frame of a join).
    pub async fn send_now(&mut self, frame: &Bytes) -> io::Result<()> {
        self.send_now_all(std::slice::from_ref(frame)).await
    }

    /// Writes these frames now, in order and in one write, ahead of
    /// anything still queued (a join's `history` and `reads` frames).
    pub async fn send_now_all(&mut self, frames: &[Bytes]) -> io::Result<()> {
        self.send_answer_and(&[], frames).await
    }

    /// Writes `answer` (an upgrade's 101, written by the hub and not yet
    /// sent) and then these frames, in one write: the client reads frames
    /// only after the 101 anyway, so a join's first bytes cost one
    /// `sendto`, not two.
    pub async fn send_answer_and(&mut self, answer: &[u8], frames: &[Bytes]) -> io::Result<()> {
        let rest = WRITE_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            buf.extend_from_slice(answer);
            for frame in frames {
                push_frame(&mut buf, Kind::Json, frame);
            }
            self.write_now(&mut buf)
        });
        match rest {
            None => Ok(()),
            Some(rest) => {
                let write = Box::pin(self.write_rest(rest));
                write.await
            }
        }
    }

    /// Frames the batch taken from the queue into the thread's write
    /// buffer and writes it; returns what the socket did not take.
    fn write_batch_now(&mut self) -> Option<(Vec<u8>, usize)> {
        WRITE_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            self.frame_batch(&mut buf);
            self.write_now(&mut buf)
        })
    }

    /// Writes as much of `buf` as the socket takes now (the common case:
    /// all of it, one `sendto`, no future); returns a copy of what is left,
    /// with any write error deferred to [`Socket::write_rest`].
    fn write_now(&mut self, buf: &mut Vec<u8>) -> Option<(Vec<u8>, usize)> {
        let mut written = 0;
        if !buf.is_empty() && !self.control_pending {
            if let Ok(n) = self.ws.get_ref().tcp().try_write(buf) {
                written = n;
            }
        }
        let rest = (written < buf.len()).then(|| (buf[written..].to_vec(), 0));
        if buf.capacity() > MAX_KEPT_WRITE_BUF {
            *buf = Vec::new();
        }
        rest
    }

    /// Writes the rest of a buffer [`Socket::write_now`] could not.
    async fn write_rest(&mut self, (buf, written): (Vec<u8>, usize)) -> io::Result<()> {
        self.write_buf(&buf[written..]).await
    }

    /// Frames everything in `batch` into `buf`.
    fn frame_batch(&mut self, buf: &mut Vec<u8>) {
        let size: usize = self.batch.iter().map(|m| m.len() + 10).sum();
        buf.reserve(size);
        let mut skip_over = false;
        let mut delivered = 0;
        for m in self.batch.drain(..) {
            if let Some((group, upto)) = &self.skip {
                if m.offset() != 0 && m.group() == Some(&**group) {
                    if m.offset() <= *upto {
                        continue;
                    }
                    // Saved frames come in offset order: the rest are new.
                    skip_over = true;
                }
            }
            if let Some(counted) = &self.deliveries {
                delivered += u64::from(m.group() == Some(&*counted.group));
            }
            push_frame(buf, m.kind(), m.data());
        }
        if skip_over {
            self.skip = None;
        }
        if let (Some(counted), true) = (&self.deliveries, delivered > 0) {
            (counted.record)(delivered);
        }
        if self.batch.capacity() > 4 * self.batch_max.min(64) {
            // A burst made it large: do not keep that on an idle socket.
            self.batch = Vec::new();
        }
    }

    /// Writes `buf` after anything tungstenite still holds (a pong, a
    /// close), so frames never interleave. A write blocked by a client that
    /// stopped reading is abandoned once the hub closed the connection
    /// (the slow-consumer policy), after a grace period.
    async fn write_buf(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.control_pending {
            self.ws.flush().await.map_err(io::Error::other)?;
            self.control_pending = false;
        }
        let conn = &self.conn;
        let stream = self.ws.get_mut();
        let mut write = std::pin::pin!(stream.write_all(buf));
        let mut abandon_at = None;
        loop {
            tokio::select! {
                biased;
                done = &mut write => return done,
                _ = tokio::time::sleep(STALL_CHECK) => {
                    if conn.is_closed() {
                        let at = *abandon_at.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_GRACE);
                        if tokio::time::Instant::now() >= at {
                            return Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading"));
                        }
                    }
                }
            }
        }
    }

    /// Sends a close frame with `code` and a FIN, waits at most
    /// [`CLOSE_DRAIN`] for the client's answer (reading and discarding, so
    /// no unread data turns the close into a reset), then drops the socket.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let close = Box::pin(self.close_inner(code, reason));
        close.await
    }

    async fn close_inner(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let sent = tokio::time::timeout(CLOSE_GRACE, self.ws.close(Some(frame))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let drain = async {
            use tokio::io::AsyncReadExt;
            let stream = self.ws.get_mut();
            // The server ends the TCP connection first (RFC 6455, 7.1.1):
            // the client sees the end at once, whether it answers or not.
            let _ = stream.shutdown().await;
            let mut scratch = vec![0u8; 512];
            loop {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
    }

    /// Closes as [`Event::Closed`], [`Event::TooBig`] or after a flood says.
    pub fn finish<'a>(&'a mut self, event: &'a Event) -> Handled<'a> {
        // Boxed (and only for a close): the session futures that end with
        // it stay sized by their idle state.
        match event {
            Event::Closed { code, reason } => Box::pin(self.close_inner(*code, reason)),
            Event::TooBig => Box::pin(self.close_inner(1009, "frame too large")),
            _ => Box::pin(std::future::ready(())),
        }
    }
}

/// [`Socket::write_first`]: room in the queue for the echo of the largest
/// frame a client may send (0 for no bound).
fn write_first(config: &Config) -> (u32, u32) {
    let clamp = |n: usize| n.min(u32::MAX as usize) as u32;
    let bytes = match config.queue_max_bytes {
        0 => u32::MAX,
        max => clamp(max.saturating_sub(config.max_frame_bytes + ECHO_OVERHEAD)),
    };
    let messages = match config.queue_max_messages {
        0 => u32::MAX,
        max => clamp(max.saturating_sub(1)),
    };
    (bytes, messages)
}

/// The close code and reason for a core connection the hub closed: a
/// leading code from [`crate::server::AppState::close_connection`], 4008 for
/// slow consumers, 1012 (reconnect) when the Redis engine lost messages,
/// 1001 when the hub shuts down.
fn closed_event(reason: CloseReason) -> Event {
    match reason {
        CloseReason::Host { code, text } => match u16::try_from(code) {
            Ok(code) if (1000..5000).contains(&code) => Event::Closed { code, reason: text },
            _ => shutting_down(),
        },
        CloseReason::SlowConsumer { .. } => Event::Closed {
            code: 4008,
            reason: "too slow: outbound queue full".into(),
        },
        // The shared engine (Redis) lost messages for this socket: 1012
        // asks the client to reconnect; it recovers with `?since=`.
        reason if reason.is_engine() => Event::Closed {
            code: 1012,
            reason: reason.to_string(),
        },
        _ => shutting_down(),
    }
}

fn shutting_down() -> Event {
    Event::Closed {
        code: 1001,
        reason: "server shutting down".into(),
    }
}

/// Appends one unmasked server frame (FIN set) to `buf`.
fn push_frame(buf: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    let opcode = match kind {
        Kind::Binary => 0x2,
        Kind::Json | Kind::Text => 0x1,
    };
    buf.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        buf.push(len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(reason: CloseReason) -> u16 {
        match closed_event(reason) {
            Event::Closed { code, .. } => code,
            _ => 0,
        }
    }

    fn host(code: u32, text: &str) -> CloseReason {
        CloseReason::Host {
            code,
            text: text.into(),
        }
    }

    #[test]
    fn hub_close_reasons_become_close_codes() {
        assert_eq!(code(host(4003, "banned from this room")), 4003);
        assert_eq!(
            code(CloseReason::SlowConsumer {
                messages: 3,
                bytes: 9
            }),
            4008
        );
        assert_eq!(code(CloseReason::EngineLostSubscription), 1012);
        assert_eq!(code(CloseReason::EngineMissedMessages), 1012);
        assert_eq!(code(CloseReason::HubClosed), 1001);
        assert_eq!(code(CloseReason::Expired), 1001);
        assert_eq!(code(CloseReason::ClosedByHost), 1001);
        assert_eq!(code(host(99, "problems")), 1001);
        assert_eq!(code(host(70_000, "not a close code")), 1001);
    }

    #[test]
    fn frames_carry_their_length() {
        let mut buf = Vec::new();
        push_frame(&mut buf, Kind::Json, b"hi");
        assert_eq!(buf, [0x81, 2, b'h', b'i']);
        buf.clear();
        push_frame(&mut buf, Kind::Binary, &[0u8; 300]);
        assert_eq!(&buf[..4], &[0x82, 126, 1, 44]);
        buf.clear();
        push_frame(&mut buf, Kind::Text, &vec![0u8; 70_000]);
        assert_eq!(&buf[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
