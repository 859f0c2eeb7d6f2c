//! A TCP connection with a write buffer, for pingora's HTTP sessions, client and backend side.
//! pingora's own listener gives its streams buffers during the handshake; streams from our accept
//! loop (FREEBIND, listeners that come and go) would otherwise write the response header and body
//! in separate syscalls; a request header and a small body leave in one write too.
//!
//! It wraps tokio's socket rather than pingora's `l4::Stream`: that one reads the clock twice
//! around every read and write that waits, to time them, and nothing here reads those timings.

use std::{
    io,
    os::fd::AsRawFd,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use async_trait::async_trait;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, raw_connect::ProxyDigest,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf},
    net::TcpStream,
};
use tracing::debug;

use super::listener::ClientConnection;

/// No read buffer (BufWriter reads straight through): pingora reads requests into its own buffer, and a second one would only add
/// a copy per read (it showed in profiles). The write buffer is pingora's default (one MSS),
/// enough to send a small response's header and body in one syscall.
const WRITE: usize = 1460;

pub(crate) struct Buffered(BufWriter<TcpStream>, Option<Arc<ClientConnection>>);

impl std::fmt::Debug for Buffered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Returned by a read once a request header has used its byte budget (the session's read
/// fails with it; the proxy answers 431).
#[derive(Debug, thiserror::Error)]
#[error("request header larger than the listener's limit")]
pub(crate) struct HeaderTooLarge;

impl Buffered {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Buffered(BufWriter::with_capacity(WRITE, stream), None)
    }

    /// A client connection whose request headers are held to `conn`'s budget while they are
    /// read: pingora's parser would otherwise buffer up to 1 MiB before it checks a size.
    pub(crate) fn limited(stream: TcpStream, conn: Arc<ClientConnection>) -> Self {
        Buffered(BufWriter::with_capacity(WRITE, stream), Some(conn))
    }

    /// The socket, once what was written has been flushed (a resting connection keeps only
    /// it).
    pub(crate) fn into_inner(self) -> TcpStream {
        self.0.into_inner()
    }
}

impl AsyncRead for Buffered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (inner, conn) = (&mut this.0, &this.1);
        let Some(conn) = conn else {
            return Pin::new(inner).poll_read(cx, buf);
        };
        let Some(allowed) = conn.admit_read(buf.remaining()) else {
            return Poll::Ready(Err(io::Error::other(HeaderTooLarge)));
        };
        if allowed == buf.remaining() {
            let before = buf.filled().len();
            let polled = Pin::new(inner).poll_read(cx, buf);
            if polled.is_ready() {
                conn.consumed(buf.filled().len() - before);
            }
            return polled;
        }
        // Read at most what the budget allows.
        let mut limited = buf.take(allowed);
        let polled = Pin::new(inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        if polled.is_ready() {
            // SAFETY: `limited` borrows the unfilled part of `buf`, and the read initialised
            // and filled its first `n` bytes.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            conn.consumed(n);
        }
        polled
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        // Flushes, then sends FIN.
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.0).await {
            debug!(error = %e, "shutting a connection down");
        }
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.0.get_ref().as_raw_fd()
    }
}

impl Ssl for Buffered {}

impl GetTimingDigest for Buffered {
    /// None: nothing reads connection timings, and pingora asks for them (an allocated Vec) for
    /// every request.
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

/// No PROXY protocol on these connections.
impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

/// None: addresses are known to the proxy without asking the socket (a syscall each).
impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}

#[async_trait]
impl Peek for Buffered {}
