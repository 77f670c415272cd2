//! tungstenite's WebSocket state machine on [`Stream`], polled with the
//! socket task's own waker.
//!
//! tungstenite parses every frame (masking, fragmentation, control frames,
//! UTF-8, size limits); this only adapts its blocking-style `Read`/`Write`
//! calls to the task: a `Pending` of the stream is tungstenite's
//! `WouldBlock`, and the task's waker is already registered by then.
//!
//! What tokio-tungstenite's `WebSocketStream` does the same way, with a
//! cost per socket and per read that the hub does not need: it wraps the
//! stream in two `Arc`ed waker proxies (two heap allocations per socket,
//! kept for its whole life) and builds a proxy waker for every read
//! tungstenite makes, several per frame.
//!
//! tungstenite's state (`WebSocketContext`: 256 bytes, and its read buffer)
//! exists only while the client's bytes are being read: it is made when the
//! socket becomes readable and dropped once the reader is waiting again
//! with every message whole ([`Stream::between_messages`]) and no pong
//! owed. An idle socket keeps none of it (issue 14 item 3); a busy one
//! makes it once per wake-up that finds bytes, not once per frame.

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, WebSocketContext,
};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Stream;

/// A server-side WebSocket over [`Stream`].
pub struct Ws {
    /// tungstenite's state while the client's bytes are read; `None` while
    /// the socket is idle (between messages, nothing owed).
    ctx: Option<Box<WebSocketContext>>,
    stream: Stream,
    /// What a new `ctx` is made with (one per hub, shared).
    config: Arc<WebSocketConfig>,
    /// A ping was read: tungstenite holds its pong until it is written.
    pong_owed: bool,
}

/// The stream as tungstenite sees it while one poll lasts.
struct Io<'a, 'b> {
    stream: &'a mut Stream,
    cx: &'a mut Context<'b>,
}

impl Read for Io<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.stream).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Io<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.stream).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.stream).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// tungstenite's `WouldBlock` (the stream was `Pending`, the waker is
/// registered) as `Pending`.
fn pending_on_block<T>(r: Result<T, WsError>) -> Poll<Result<T, WsError>> {
    match r {
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        r => Poll::Ready(r),
    }
}

impl Ws {
    /// A WebSocket whose handshake is done (the hub answers upgrades).
    pub fn new(stream: Stream, config: Arc<WebSocketConfig>) -> Ws {
        Ws {
            ctx: None,
            stream,
            config,
            pong_owed: false,
        }
    }

    /// True while tungstenite's state exists (bytes of the client's are
    /// being read, or a pong is owed).
    #[cfg(test)]
    pub fn is_reading(&self) -> bool {
        self.ctx.is_some()
    }

    pub fn get_ref(&self) -> &Stream {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocketContext, &mut Io<'_, '_>) -> Result<T, WsError>,
    ) -> Poll<Result<T, WsError>> {
        let config = &self.config;
        let ctx = self
            .ctx
            .get_or_insert_with(|| Box::new(WebSocketContext::new(Role::Server, Some(**config))));
        let mut io = Io {
            stream: &mut self.stream,
            cx,
        };
        pending_on_block(f(ctx, &mut io))
    }

    /// The reader waits for more bytes: drops tungstenite's state if it
    /// holds nothing of the client's (every message whole) and owes
    /// nothing (a pending pong is written first, if the socket takes it).
    fn release_if_idle(&mut self, cx: &mut Context<'_>) {
        if self.ctx.is_none() || !self.stream.between_messages() {
            return;
        }
        if self.pong_owed {
            match self.poll_with(cx, |ctx, io| ctx.flush(io)) {
                Poll::Ready(Ok(())) => self.pong_owed = false,
                _ => return,
            }
        }
        self.ctx = None;
    }

    /// The next message (`None` once the connection closed). Cancel-safe:
    /// a partly read frame stays in tungstenite's buffer.
    // Not an iterator, nor a futures Stream: one method is all it needs.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> impl Future<Output = Option<Result<Message, WsError>>> + '_ {
        poll_fn(move |cx| {
            if self.ctx.is_none() {
                // Idle: tungstenite's state is made only once there is
                // something to read (or the socket closed).
                if let Err(e) = ready!(self.stream.tcp().poll_read_ready(cx)) {
                    return Poll::Ready(Some(Err(WsError::Io(e))));
                }
            }
            match self.poll_with(cx, |ctx, io| ctx.read(io)) {
                Poll::Pending => {
                    self.release_if_idle(cx);
                    Poll::Pending
                }
                Poll::Ready(r) => {
                    // tungstenite queued the answer (written on the next
                    // read or flush).
                    self.pong_owed |= matches!(r, Ok(Message::Ping(_)));
                    Poll::Ready(match r {
                        Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => None,
                        r => Some(r),
                    })
                }
            }
        })
    }

    /// Writes what tungstenite holds (a pong, a close frame).
    pub fn flush(&mut self) -> impl Future<Output = Result<(), WsError>> + '_ {
        poll_fn(move |cx| {
            if self.ctx.is_none() {
                // Nothing is held.
                return Poll::Ready(Ok(()));
            }
            let flushed = self.poll_with(cx, |ctx, io| match ctx.flush(io) {
                Err(WsError::ConnectionClosed) => Ok(()),
                r => r,
            });
            if let Poll::Ready(Ok(())) = flushed {
                self.pong_owed = false;
            }
            flushed
        })
    }

    /// Sends a close frame (once) and writes it.
    pub fn close(
        &mut self,
        frame: Option<CloseFrame>,
    ) -> impl Future<Output = Result<(), WsError>> + '_ {
        let mut frame = Some(frame);
        poll_fn(move |cx| {
            self.poll_with(cx, |ctx, io| {
                // The first call queues the frame; later ones (after a
                // blocked write) only write it.
                let r = match frame.take() {
                    Some(frame) => ctx.close(io, frame),
                    None => ctx.flush(io),
                };
                match r {
                    Err(WsError::ConnectionClosed) => Ok(()),
                    r => r,
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::WebSocketStream;

    /// A server `Ws` reading `chunk` bytes a time, and its client, on
    /// loopback.
    async fn pair(chunk: usize, config: WebSocketConfig) -> (Ws, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let client = WebSocketStream::from_raw_socket(tcp, Role::Client, None).await;
        let ws = Ws::new(Stream::new(server, chunk), Arc::new(config));
        (ws, client)
    }

    /// The next message, which must come within 10 s.
    async fn next_message(ws: &mut Ws) -> Message {
        tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("the stream is open")
            .expect("a valid message")
    }

    /// A client frame may arrive in pieces, fragmented, between pings:
    /// every message comes out whole and in order, pings are answered once
    /// flushed, a close is answered and the stream ends.
    #[tokio::test]
    async fn messages_come_out_whole_and_in_order_and_pings_are_answered() {
        let config = WebSocketConfig::default()
            .read_buffer_size(24)
            .write_buffer_size(0);
        // Chunks smaller than a frame: a frame takes several kernel reads.
        let (mut ws, mut client) = pair(64, config).await;

        let long = "é".repeat(3000);
        client.send(Message::text("hello")).await.unwrap();
        client
            .send(Message::Ping(b"p1".to_vec().into()))
            .await
            .unwrap();
        client.send(Message::text(long.clone())).await.unwrap();
        client.send(Message::binary(vec![7u8; 300])).await.unwrap();
        // A message in two fragments.
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        let mut first = Frame::message(b"frag".to_vec(), OpCode::Data(Data::Text), false);
        first.header_mut().is_final = false;
        let second = Frame::message(b"mented".to_vec(), OpCode::Data(Data::Continue), true);
        client.send(Message::Frame(first)).await.unwrap();
        client.send(Message::Frame(second)).await.unwrap();

        let mut got = Vec::new();
        for _ in 0..5 {
            let m = next_message(&mut ws).await;
            got.push(m);
        }
        assert_eq!(got[0], Message::text("hello"));
        assert_eq!(got[1], Message::Ping(b"p1".to_vec().into()));
        assert_eq!(got[2], Message::text(long));
        assert_eq!(got[3], Message::binary(vec![7u8; 300]));
        assert_eq!(got[4], Message::text("fragmented"));

        // The pong goes out on the next flush.
        ws.flush().await.unwrap();
        let pong = tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(pong, Message::Pong(b"p1".to_vec().into()));

        // The server closes: the client sees the code, answers, and the
        // server's stream ends.
        ws.close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        let close = tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match close {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Away);
                assert_eq!(frame.reason, "bye");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        // The client's answer is written while it reads the close: the
        // server gets it (tungstenite hands it over), then the end.
        let _ = client.flush().await;
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("the answer in time");
        assert!(
            matches!(answer, Some(Ok(Message::Close(_)))),
            "not the client's close: {answer:?}"
        );
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("the end in time");
        assert!(end.is_none(), "the stream goes on after the close: {end:?}");
    }

    /// Many frames in one kernel read (the 16 KiB default chunk): all come
    /// out, in order, though tungstenite takes at most 64 bytes at a time.
    #[tokio::test]
    async fn frames_read_together_come_out_in_order() {
        let config = WebSocketConfig::default().read_buffer_size(64);
        let (mut ws, mut client) = pair(16 * 1024, config).await;
        for i in 0..200 {
            let text = format!("{{\"message\":\"{i} {}\"}}", "x".repeat(i % 90));
            client.feed(Message::text(text)).await.unwrap();
        }
        client.flush().await.unwrap();
        for i in 0..200 {
            let m = next_message(&mut ws).await;
            let want = format!("{{\"message\":\"{i} {}\"}}", "x".repeat(i % 90));
            assert_eq!(m, Message::text(want));
        }
        assert_eq!(
            ws.get_ref().ahead_len(),
            0,
            "bytes left after the last frame"
        );
    }

    /// A frame over the size limit is an error, not a message.
    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused() {
        let config = WebSocketConfig::default()
            .read_buffer_size(24)
            .max_message_size(Some(100))
            .max_frame_size(Some(100));
        let (mut ws, mut client) = pair(256, config).await;
        client.send(Message::text("x".repeat(101))).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time");
        assert!(
            matches!(got, Some(Err(WsError::Capacity(_)))),
            "not a capacity error: {got:?}"
        );
    }

    /// A client frame as a client sends it: masked (key 1, 2, 3, 4).
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let key = [1u8, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    /// Polls `ws` until it waits for more bytes (the client sent none).
    async fn wait_idle(ws: &mut Ws) {
        let more = tokio::time::timeout(std::time::Duration::from_millis(20), ws.next()).await;
        assert!(more.is_err(), "a message nobody sent: {:?}", more.ok());
    }

    /// An idle socket holds no tungstenite state: it is made when bytes
    /// come and dropped once every message read is whole, never inside a
    /// frame or a message in pieces, and not while a pong is owed.
    #[tokio::test]
    async fn an_idle_socket_keeps_no_reader_state() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let config = WebSocketConfig::default().read_buffer_size(64);
        let mut ws = Ws::new(Stream::new(server, 256), Arc::new(config));
        wait_idle(&mut ws).await;
        assert!(!ws.is_reading(), "state made before any byte came");

        // A frame in two pieces: the state lives while it is cut.
        let hello = client_frame(0x81, b"hello");
        client.write_all(&hello[..3]).await.unwrap();
        wait_idle(&mut ws).await;
        assert!(ws.is_reading(), "state dropped inside a frame");
        client.write_all(&hello[3..]).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("hello"));
        wait_idle(&mut ws).await;
        assert!(!ws.is_reading(), "state kept after a whole message");

        // A message in two frames: kept between them.
        let mut first = client_frame(0x01, b"frag");
        client.write_all(&first).await.unwrap();
        wait_idle(&mut ws).await;
        assert!(ws.is_reading(), "state dropped inside a message in pieces");
        first = client_frame(0x80, b"mented");
        client.write_all(&first).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("fragmented"));
        wait_idle(&mut ws).await;
        assert!(!ws.is_reading());

        // Long frames (16- and 64-bit lengths), sent together with a
        // short one, in pieces of 1000 bytes.
        let medium = "m".repeat(300);
        let long = "l".repeat(70_000);
        let mut bytes = client_frame(0x81, medium.as_bytes());
        bytes.extend(client_frame(0x82, long.as_bytes()));
        bytes.extend(client_frame(0x81, b"after"));
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(1000) {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        assert_eq!(next_message(&mut ws).await, Message::text(medium));
        assert_eq!(next_message(&mut ws).await, Message::binary(long));
        assert_eq!(next_message(&mut ws).await, Message::text("after"));
        let mut client = writer.await.unwrap();
        wait_idle(&mut ws).await;
        assert!(!ws.is_reading());

        // A ping: answered, then the state goes.
        client.write_all(&client_frame(0x89, b"p1")).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Message::Ping(b"p1".to_vec().into())
        );
        wait_idle(&mut ws).await;
        assert!(!ws.is_reading(), "state kept after the pong was written");
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 2, b'p', b'1']);

        // Still a working socket.
        client
            .write_all(&client_frame(0x81, b"again"))
            .await
            .unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("again"));
    }
}
