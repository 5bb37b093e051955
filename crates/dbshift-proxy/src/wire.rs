//! One side of a connection (client or backend): a plain or TLS stream with a read buffer
//! that packets are framed in place, so that relayed bytes are written out of the very buffer
//! they were read into.
//!
//! [`Wire::fill`] is one `read` call and therefore safe to cancel in a `select!`: nothing read
//! is ever lost, it stays in the buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::protocol::{frame, MAX_PAYLOAD};

const INITIAL_BUFFER: usize = 32 * 1024;
/// A client may not send a command larger than this (the servers' own maximum is 1 GiB).
const MAX_BUFFERED: usize = 1 << 30;

/// A plain or TLS stream, either direction.
pub enum Stream {
    Plain(TcpStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while a stream is being upgraded.
    Empty,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Empty => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Empty => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Empty => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Empty => Poll::Ready(Ok(())),
        }
    }
}

/// A complete packet in the read buffer: `at` is its header's offset.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub at: usize,
    pub len: usize,
    pub seq: u8,
}

impl Frame {
    pub fn end(&self) -> usize {
        self.at + 4 + self.len
    }
    pub fn payload(&self) -> std::ops::Range<usize> {
        self.at + 4..self.end()
    }
}

pub struct Wire {
    pub stream: Stream,
    pub buf: Vec<u8>,
    /// Bytes before `start` are consumed.
    pub start: usize,
    pub end: usize,
}

impl Wire {
    pub fn new(stream: Stream) -> Wire {
        Wire {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// One read into the buffer (moving unconsumed bytes to the front, growing when full).
    /// `Ok(0)` is the peer's end of stream.
    pub async fn fill(&mut self) -> Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_BUFFERED {
                return Err(Error::protocol("packet larger than the proxy accepts"));
            }
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The packet at `at`, when it is complete in the buffer.
    pub fn frame_at(&self, at: usize) -> Option<Frame> {
        let h = self.buf.get(at..at + 4).filter(|_| at + 4 <= self.end)?;
        let len = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
        if at + 4 + len > self.end {
            return None;
        }
        Some(Frame { at, len, seq: h[3] })
    }

    /// A whole logical packet (a chain of MAX_PAYLOAD packets and its last one) at `start`,
    /// as the range of bytes it takes, the first frame, and whether it was split.
    pub fn logical_at_start(&self) -> Option<(Frame, usize)> {
        let first = self.frame_at(self.start)?;
        let mut f = first;
        while f.len == MAX_PAYLOAD {
            f = self.frame_at(f.end())?;
        }
        Some((first, f.end()))
    }

    /// Read one packet (owned, joined when split). For handshake-time traffic only.
    pub async fn read_packet(&mut self) -> Result<(u8, Vec<u8>)> {
        loop {
            if let Some((first, end)) = self.logical_at_start() {
                let mut payload = Vec::new();
                let mut at = first.at;
                let mut seq = first.seq;
                while at < end {
                    let f = self.frame_at(at).expect("frames inside a complete chain");
                    payload.extend_from_slice(&self.buf[f.payload()]);
                    seq = f.seq;
                    at = f.end();
                }
                self.start = end;
                return Ok((seq, payload));
            }
            if self.fill().await? == 0 {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Read one packet without reading a byte past it (before a TLS upgrade, where the
    /// client's TLS hello may follow in the same segment).
    pub async fn read_packet_exact(&mut self) -> Result<(u8, Vec<u8>)> {
        if !self.is_drained() {
            return self.read_packet().await;
        }
        let mut h = [0u8; 4];
        self.stream.read_exact(&mut h).await?;
        let len = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await?;
        Ok((h[3], payload))
    }

    /// Write one packet (framed, split when large) and flush. Returns the next seq.
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> Result<u8> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        let next = frame(&mut out, seq, payload);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(next)
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.stream.flush().await?;
        Ok(())
    }

    /// Nothing is buffered that was not consumed (checked before a TLS upgrade).
    pub fn is_drained(&self) -> bool {
        self.start == self.end
    }
}
