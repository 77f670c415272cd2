//! The TCP stream under a WebSocket, with the read buffer on the thread
//! instead of on the socket.
//!
//! tungstenite keeps its read buffer for the socket's whole life, and
//! reads into it at most its size at a time. Given a small one (64 bytes:
//! a short chat frame), it would read a longer frame in many small system
//! calls; so this stream serves those reads from one larger read of the
//! kernel's socket (`--read-buffer-bytes`, 16 KiB: every frame waiting)
//! into a per-thread scratch buffer, and keeps only what tungstenite has
//! not taken yet (usually nothing: an idle socket holds no read buffer at
//! all, and a frame's leftover lives only until it is read).
//!
//! It also follows the client's frames in what it hands over (headers and
//! payload lengths, not their contents): [`Stream::between_messages`] says
//! when the reader has been given whole messages only, so that `Ws` can
//! drop tungstenite's state while the socket is idle.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

thread_local! {
    /// Where a socket's bytes land first: per thread, not per socket.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads of at least this many bytes go straight into the caller's buffer.
const DIRECT: usize = 1024;

/// A [`TcpStream`] whose reads go through the thread's scratch buffer.
pub struct Stream {
    tcp: TcpStream,
    /// Read from the kernel, not yet taken by the reader; empty (and not
    /// allocated) between frames.
    ahead: Vec<u8>,
    /// How far `ahead` was taken.
    taken: u32,
    /// Most bytes read from the kernel at a time (`--read-buffer-bytes`).
    chunk: u32,
    /// Where the bytes handed over so far end in the client's frames.
    frames: Frames,
}

/// Where a stream of client frames (RFC 6455, 5.2) stands: in a header, in
/// a payload, or between frames; and whether a data message has begun
/// whose last frame has not come yet. Only lengths and flags are read: the
/// frames themselves are tungstenite's to check.
#[derive(Debug, Default)]
struct Frames {
    /// Payload bytes of the current frame not handed over yet.
    payload_left: u64,
    /// The current frame's header so far, without its masking key (the
    /// first two bytes and up to eight of extended length).
    head: [u8; 10],
    /// Header bytes seen of the current frame, masking key included
    /// (0 between frames).
    head_len: u8,
    /// A data frame without FIN came, and no final continuation since.
    open_message: bool,
}

impl Frames {
    /// Follows `bytes`, the next ones of the stream.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            let have = self.head_len as usize;
            if have < self.head.len() {
                self.head[have] = bytes[0];
            }
            self.head_len += 1;
            bytes = &bytes[1..];
            if self.head_len < 2 || usize::from(self.head_len) < self.header_len() {
                continue;
            }
            // The header is complete.
            let extended = self.header_len() - 2 - self.mask_len();
            let payload = match extended {
                0 => u64::from(self.head[1] & 0x7F),
                n => self.head[2..2 + n]
                    .iter()
                    .fold(0u64, |len, b| (len << 8) | u64::from(*b)),
            };
            // Control frames (opcode 8 and up) never interrupt a message's
            // state; data frames open one without FIN and close it with.
            if self.head[0] & 0x08 == 0 {
                self.open_message = self.head[0] & 0x80 == 0;
            }
            self.payload_left = payload;
            self.head_len = 0;
        }
    }

    /// The current header's whole length (known from its second byte on).
    fn header_len(&self) -> usize {
        let extended = match self.head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + extended + self.mask_len()
    }

    fn mask_len(&self) -> usize {
        if self.head[1] & 0x80 != 0 {
            4
        } else {
            0
        }
    }

    /// Between frames, and not inside a message in pieces.
    fn between_messages(&self) -> bool {
        self.head_len == 0 && self.payload_left == 0 && !self.open_message
    }
}

impl Stream {
    /// Reads `chunk` bytes at a time (at least 64, at most 1 MiB).
    pub fn new(tcp: TcpStream, chunk: usize) -> Stream {
        Stream {
            tcp,
            ahead: Vec::new(),
            taken: 0,
            chunk: chunk.clamp(64, 1 << 20) as u32,
            frames: Frames::default(),
        }
    }

    /// True when everything handed over so far ends with a whole message
    /// (a whole frame, no data message in pieces) and nothing read from the
    /// kernel waits here: a reader that took it all holds nothing of the
    /// client's frames.
    pub fn between_messages(&self) -> bool {
        self.taken as usize == self.ahead.len() && self.frames.between_messages()
    }

    /// Bytes read from the kernel and not taken yet.
    #[cfg(test)]
    pub fn ahead_len(&self) -> usize {
        self.ahead.len() - self.taken as usize
    }

    /// The TCP stream, for writes that bypass the read side.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let taken = this.taken as usize;
        if taken < this.ahead.len() {
            let n = buf.remaining().min(this.ahead.len() - taken);
            buf.put_slice(&this.ahead[taken..taken + n]);
            this.frames.feed(&this.ahead[taken..taken + n]);
            if taken + n == this.ahead.len() {
                // All taken: an idle socket keeps no buffer.
                this.ahead = Vec::new();
                this.taken = 0;
            } else {
                this.taken = (taken + n) as u32;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= DIRECT {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
            this.frames.feed(&buf.filled()[before..]);
            return Poll::Ready(Ok(()));
        }
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let chunk = this.chunk as usize;
            if scratch.len() < chunk {
                scratch.resize(chunk, 0);
            }
            let mut into = ReadBuf::new(&mut scratch[..chunk]);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut into))?;
            let got = into.filled();
            let n = buf.remaining().min(got.len());
            buf.put_slice(&got[..n]);
            this.frames.feed(&got[..n]);
            if n < got.len() {
                this.ahead = got[n..].to_vec();
                this.taken = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small reads are served from one read of the socket, in order, and
    /// nothing is kept once everything was taken.
    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_keep_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream = Stream::new(server, 256);
        let sent: Vec<u8> = (0..200u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut small = [0u8; 14];
        // Bounded: 200 bytes in reads of at most 14.
        for _ in 0..1000 {
            if got.len() == sent.len() {
                break;
            }
            let n = stream.read(&mut small).await.unwrap();
            assert!(n > 0, "the stream ended early");
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(
            stream.ahead.capacity(),
            0,
            "a drained stream keeps a buffer"
        );
        // A large read goes straight to the caller's buffer.
        client.write_all(b"hello").await.unwrap();
        let mut big = vec![0u8; 4096];
        let n = stream.read(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"hello");
        drop(client);
        assert_eq!(stream.read(&mut small).await.unwrap(), 0);
    }

    /// Frame boundaries are found however the bytes are cut: headers with
    /// 7-, 16- and 64-bit lengths, masked or not, empty payloads, control
    /// frames inside a message in pieces.
    #[test]
    fn frames_are_followed_across_any_cut() {
        fn frame(first: u8, masked: bool, len: usize) -> Vec<u8> {
            let mask = if masked { 0x80 } else { 0 };
            let mut out = vec![first];
            match len {
                n if n < 126 => out.push(mask | n as u8),
                n if n <= 0xFFFF => {
                    out.push(mask | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(mask | 127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            if masked {
                out.extend_from_slice(&[9, 8, 7, 6]);
            }
            out.extend(std::iter::repeat_n(0x55, len));
            out
        }
        // (frame, whole messages once it is in)
        let frames = [
            (frame(0x81, true, 5), true),
            (frame(0x82, true, 0), true),
            (frame(0x01, true, 300), false),
            (frame(0x89, true, 2), false),
            (frame(0x00, true, 70_000), false),
            (frame(0x80, false, 1), true),
            (frame(0x8A, true, 125), true),
            (frame(0x81, true, 126), true),
        ];
        for cut in [1, 2, 3, 7, 64, 1000, 100_000] {
            let mut f = Frames::default();
            for (bytes, whole) in &frames {
                for (i, piece) in bytes.chunks(cut).enumerate() {
                    f.feed(piece);
                    let last = (i + 1) * cut >= bytes.len();
                    assert_eq!(f.between_messages(), last && *whole, "cut {cut}");
                }
            }
        }
    }
}
