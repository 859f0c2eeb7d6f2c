//! Connections to backends and the keep-alive cache that reuses them (nginx's `keepalive` in an
//! upstream block). A client connection keeps the backend connection of its last request while
//! its requests go to the same backend, which costs no lock and no lookup; it hands the
//! connection to its listener's cache when a request goes elsewhere or the client leaves.
//! Connections are cached by [`Key`]: a plain connection and a TLS one to the same address, or
//! TLS connections made with other settings (name, CA), are never taken for one another.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    pin::Pin,
    sync::Mutex,
    task::{Context, Waker},
    time::{Duration, Instant},
};

use pingora_core::protocols::Stream;

use super::{buffered::Buffered, tls::client::Connector};
use pingora_error::{Error, ErrorType};
use tokio::{
    io::{AsyncRead, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

/// Idle connections kept per backend and listener (nginx's reference `keepalive 64`).
const MAX_IDLE_PER_BACKEND: usize = 64;

/// What a backend connection is: its address, and its TLS (0: plain; else
/// [`Connector::key`]). Connections of one key are interchangeable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub addr: SocketAddr,
    pub tls: u64,
}

/// The TLS of a new backend connection: the pool's connector (or why it has none) and the
/// name the backend's certificate is verified for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tls<'a> {
    pub connector: Result<&'a Connector, &'a str>,
    pub name: &'a str,
}

/// A connection to a backend, idle since `since`, kept at most `max_idle` (its pool's).
pub(crate) struct Idle {
    pub key: Key,
    pub stream: Stream,
    pub since: Instant,
    pub max_idle: Duration,
    /// It carried a PROXY protocol header (its pool's `proxyProtocol`): never shared.
    pub private: bool,
}

/// Idle keep-alive connections of one listener, by backend address, most recent last.
#[derive(Default)]
pub(crate) struct IdleCache {
    conns: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    by_backend: HashMap<Key, VecDeque<(Instant, Stream)>>,
    swept: Option<Instant>,
}

impl IdleCache {
    /// Keeps `conn` for the next request to its backend, as long as its `max_idle`.
    pub(crate) fn put(&self, conn: Idle) {
        let max_idle = conn.max_idle;
        let mut cache = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // Connections to backends nobody asks for any more (removed from the pool) would stay
        // until the listener stops: drop what has waited too long, at most once a second.
        if cache
            .swept
            .is_none_or(|t| conn.since.duration_since(t) > Duration::from_secs(1))
        {
            cache.swept = Some(conn.since);
            cache.by_backend.retain(|_, q| {
                q.retain(|(since, _)| conn.since.duration_since(*since) < max_idle);
                !q.is_empty()
            });
        }
        let q = cache.by_backend.entry(conn.key).or_default();
        if q.len() >= MAX_IDLE_PER_BACKEND {
            q.pop_front();
        }
        q.push_back((conn.since, conn.stream));
    }

    /// The most recently used live connection of `key` that has not waited past `max_idle`.
    pub(crate) fn take(&self, key: Key, now: Instant, max_idle: Duration) -> Option<Stream> {
        let mut cache = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let q = cache.by_backend.get_mut(&key)?;
        while let Some((since, mut stream)) = q.pop_back() {
            if now.duration_since(since) < max_idle && still_open(&mut stream) {
                return Some(stream);
            }
        }
        None
    }
}

/// Whether an idle connection is still usable: the backend neither closed it nor sent anything
/// (pingora's pool makes the same test). One non-blocking read, and no syscall when tokio already
/// knows the socket is quiet. A wrong "usable" (tokio's task budget ran out) only costs the retry
/// on a fresh connection that every reused connection gets.
pub(crate) fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(stream).poll_read(&mut cx, &mut buf).is_pending()
}

/// A TCP connection to a backend within `timeout` (`TimedOut` past it), Nagle off, that starts
/// with `hello` (a PROXY protocol header) when there is one; for both proxies, HTTP and TCP.
pub(crate) async fn open(
    addr: SocketAddr,
    timeout: Duration,
    hello: Option<&[u8]>,
) -> std::io::Result<TcpStream> {
    let connect = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        if let Some(hello) = hello {
            tcp.write_all(hello).await?;
        }
        Ok(tcp)
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Opens a connection to a backend within `timeout` (the TLS handshake included, as nginx's
/// `proxy_connect_timeout`), as pingora's connector reports failures: a handshake that fails
/// is a `TLSHandshakeFailure` that says why.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    hello: Option<&[u8]>,
    tls: Option<Tls<'_>>,
) -> Result<Stream, Box<Error>> {
    let started = tokio::time::Instant::now();
    match open(addr, timeout, hello).await {
        Ok(tcp) => {
            let Some(tls) = tls else {
                return Ok(Box::new(Buffered::new(tcp)));
            };
            let stream = handshake(addr, tcp, tls, started + timeout).await?;
            Ok(Box::new(stream))
        }
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::TimedOut => ErrorType::ConnectTimedout,
                std::io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                    ErrorType::ConnectNoRoute
                }
                _ => ErrorType::ConnectError,
            };
            Err(Error::because(kind, format!("connecting to {addr}"), e))
        }
    }
}

/// The TLS handshake of a new backend connection, by `deadline`.
pub(crate) async fn handshake(
    addr: SocketAddr,
    tcp: TcpStream,
    tls: Tls<'_>,
    deadline: tokio::time::Instant,
) -> Result<pingora_core::protocols::tls::TlsStream<Buffered>, Box<Error>> {
    let connector = tls.connector.map_err(|why| {
        Error::explain(
            ErrorType::TLSHandshakeFailure,
            format!("no TLS to {addr}: {why}"),
        )
    })?;
    let handshake = connector.handshake(tls.name, Buffered::new(tcp));
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(done) => done,
        Err(_) => Error::e_explain(
            ErrorType::ConnectTimedout,
            format!("TLS handshake with {} ({addr}) timed out", tls.name),
        ),
    }
}
