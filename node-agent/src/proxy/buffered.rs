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

/// No read buffer (BufWriter reads straight through): pingora reads requests into its own buffer, and a second one would only add
/// a copy per read (it showed in profiles). The write buffer is pingora's default (one MSS),
/// enough to send a small response's header and body in one syscall.
const WRITE: usize = 1460;

#[derive(Debug)]
pub struct Buffered(BufWriter<TcpStream>);

impl Buffered {
    pub fn new(stream: TcpStream) -> Self {
        Buffered(BufWriter::with_capacity(WRITE, stream))
    }
}

impl AsyncRead for Buffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
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
