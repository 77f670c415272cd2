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
}

impl Stream {
    /// Reads `chunk` bytes at a time (at least 64, at most 1 MiB).
    pub fn new(tcp: TcpStream, chunk: usize) -> Stream {
        Stream {
            tcp,
            ahead: Vec::new(),
            taken: 0,
            chunk: chunk.clamp(64, 1 << 20) as u32,
        }
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
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
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
}
