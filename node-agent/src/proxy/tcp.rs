//! The TCP (L4) proxy: one backend per connection (retrying the connect on the next backend as
//! the pool's retry policy allows), bytes copied both ways, half-close passed on, and the
//! connection cut after the idle timeout, or when a write to either side makes no progress for
//! its write timeout (a peer that stops reading cannot hold the connection). A pool with `tls`
//! gets TLS to its backends (nginx stream's `proxy_ssl on`); a handshake that fails is a failed
//! connect, retried on the next backend.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use pingora_core::protocols::tls::TlsStream;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tracing::debug;

use super::{
    buffered::Buffered,
    listener::ClientAddr,
    pool::Pool,
    retry::{Failure, should_retry},
};

/// What a TCP connection did, for the access log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Done {
    /// The backend it was proxied to (`None`: none could be reached).
    pub upstream: Option<SocketAddr>,
    /// Backends tried.
    pub attempts: u32,
    /// Bytes read from the client.
    pub bytes_in: u64,
    /// Bytes sent to the client.
    pub bytes_out: u64,
}

/// A connection to a backend: plain, or TLS.
enum Backend {
    Plain(TcpStream),
    Tls(Box<TlsStream<Buffered>>),
}

/// Connects to a backend of `pool` for a client at `client` (the TLS handshake included, within
/// the connect timeout); returns the stream and the backend's index (already counted as in
/// flight). Counts the attempts in `done`.
async fn connect(pool: &Pool, client: ClientAddr, done: &mut Done) -> Option<(Backend, usize)> {
    let mut tried = Vec::new();
    let hello = hello(pool, client)?;
    loop {
        let key = client.peer.ip().to_string();
        let i = pool.select(Some(key.as_bytes()), &tried).ok()?;
        tried.push(i);
        done.attempts += 1;
        let addr = pool.address(i)?;
        let connect = pool.config.timeouts.connect;
        let deadline = Instant::now() + connect;
        let failure = match super::upstream::open(addr, connect, hello.as_deref()).await {
            Ok(s) => match pool.tls(i) {
                None => {
                    done.upstream = Some(addr);
                    return Some((Backend::Plain(s), i));
                }
                Some(tls) => match super::upstream::handshake(addr, s, tls, deadline).await {
                    Ok(s) => {
                        done.upstream = Some(addr);
                        return Some((Backend::Tls(Box::new(s)), i));
                    }
                    Err(e) => {
                        debug!(backend = %addr, error = %e, "TCP backend TLS handshake failed");
                        if *e.etype() == pingora_error::ErrorType::ConnectTimedout {
                            Failure::Timeout
                        } else {
                            Failure::Connect
                        }
                    }
                },
            },
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Failure::Timeout,
            Err(e) => {
                debug!(backend = %addr, error = %e, "TCP backend connect failed");
                Failure::Connect
            }
        };
        pool.finished(i, true);
        // A TCP connection carries no method: the connect never sent anything, so it is safe.
        if !should_retry(
            &pool.config.retry,
            tried.len() as u32,
            "CONNECT",
            failure,
            false,
        ) {
            return None;
        }
    }
}

/// The PROXY protocol header of the pool's backend connections for `client`, if it sends one;
/// `None` if it cannot be written.
pub(crate) fn hello(pool: &Pool, client: ClientAddr) -> Option<Option<Vec<u8>>> {
    let Some(version) = pool.config.proxy_protocol else {
        return Some(None);
    };
    match super::proxy_protocol::header(version, Some((client.peer, client.local))) {
        Ok(h) => Some(Some(h)),
        Err(e) => {
            debug!(error = %e, "no PROXY protocol header for this client");
            None
        }
    }
}

/// The time limits of one TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// No byte either way for this long ends it (the pool's idle timeout, or the listener's,
    /// whichever is shorter).
    pub idle: Duration,
    /// A write to the client that makes no progress (the listener's send timeout).
    pub client_write: Duration,
    /// A write to the backend that makes no progress (the pool's write timeout).
    pub backend_write: Duration,
}

/// Proxies one client connection until both directions are closed, it has been idle, or a
/// write stalls.
pub(crate) async fn serve(
    pool: Arc<Pool>,
    mut client: TcpStream,
    peer: ClientAddr,
    t: Timeouts,
) -> Done {
    let _ = client.set_nodelay(true);
    let mut done = Done::default();
    let Some((backend, i)) = connect(&pool, peer, &mut done).await else {
        // Nothing to say to a TCP client: closing is the error.
        return done;
    };
    let piped = match backend {
        Backend::Plain(mut backend) => {
            let (r, w) = backend.split();
            pipe(&mut client, r, w, t, &mut done).await
        }
        Backend::Tls(backend) => {
            let (r, w) = tokio::io::split(backend);
            pipe(&mut client, r, w, t, &mut done).await
        }
    };
    if !piped {
        debug!(peer = %peer.peer, "TCP connection ended with an IO error");
    }
    // As nginx's stream module: only failing to connect counts against a backend; what happens
    // on an established stream is between the client and the backend.
    pool.finished(i, false);
    done
}

/// Copies both ways between the client `a` and a backend's halves, counting the bytes in
/// `done`; returns false on an IO error or a stalled write (not on idle timeout or clean
/// closes).
async fn pipe(
    a: &mut TcpStream,
    mut br: impl AsyncRead + Unpin,
    mut bw: impl AsyncWrite + Unpin,
    t: Timeouts,
    done: &mut Done,
) -> bool {
    let idle = t.idle;
    let (mut ar, mut aw) = a.split();
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let mut deadline = Instant::now() + idle;
    while a_open || b_open {
        tokio::select! {
            r = ar.read(&mut buf_a), if a_open => match r {
                Ok(0) => {
                    // Half-close: the client finished sending; tell the backend, keep reading it.
                    a_open = false;
                    let _ = bw.shutdown().await;
                }
                Ok(n) => {
                    done.bytes_in += n as u64;
                    // Flushed: a TLS stream's records wait in its buffer otherwise (a plain
                    // socket's flush does nothing).
                    let write = async {
                        bw.write_all(&buf_a[..n]).await?;
                        bw.flush().await
                    };
                    if !within(t.backend_write, write).await {
                        return false;
                    }
                    deadline = Instant::now() + idle;
                }
                Err(_) => return false,
            },
            r = br.read(&mut buf_b), if b_open => match r {
                Ok(0) => {
                    b_open = false;
                    let _ = aw.shutdown().await;
                }
                Ok(n) => {
                    if !within(t.client_write, aw.write_all(&buf_b[..n])).await {
                        return false;
                    }
                    done.bytes_out += n as u64;
                    deadline = Instant::now() + idle;
                }
                Err(_) => return false,
            },
            _ = tokio::time::sleep_until(deadline) => {
                debug!("TCP connection idle for {idle:?}; closing");
                return true;
            }
        }
    }
    true
}

/// Whether `write` completed within `t`.
async fn within(t: Duration, write: impl Future<Output = std::io::Result<()>>) -> bool {
    matches!(tokio::time::timeout(t, write).await, Ok(Ok(())))
}
