//! HTTP/2 client connections: pingora's codec (`v2::server`) on any pingora [`Stream`], each
//! stream proxied as one request on the same path as HTTP/1 requests (routes, balancing,
//! retries, headers, error answers, access log, metrics), concurrently, to HTTP/1.1 backends.
//! The connection ends with a GOAWAY when it idles past the keep-alive time, when the listener
//! stops or evicts it (open streams finish first), and plain-HTTP listeners recognise it by the
//! client's preface (h2c with prior knowledge, as nginx's `listen … http2`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pingora_core::protocols::{
    Digest, Stream,
    http::v2::server::{self, H2Accept, HttpSession as H2Session},
};
use pingora_http::RequestHeader;
use tokio::{net::TcpStream, sync::watch, task::JoinSet};
use tracing::debug;

use super::{
    HttpProxy,
    request::Peer,
    session::{Downstream, H2Stream},
};
use crate::proxy::listener::{ClientAddr, ClientConnection, Connections};

/// What an HTTP/2 client sends first (RFC 9113 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams open at once on one connection (nginx's `http2_max_concurrent_streams` default).
pub(super) const MAX_STREAMS: u32 = 128;

/// Streams refused as malformed before the connection is closed (as pingora's own accept loop).
const MAX_MALFORMED: usize = 32;

/// After a GOAWAY with no stream open: how long the client has to close before the socket is
/// dropped (a peer that is gone never answers).
const DRAIN: Duration = Duration::from_secs(1);

/// Whether the client connection `tcp` starts with the HTTP/2 preface. Peeked, not read: an
/// HTTP/1 request stays in the socket. Only a connection whose first byte is `P` needs a look
/// (HTTP/1 `POST`, `PUT` and `PATCH` do too); one that sends the preface in pieces is waited for
/// until `until`.
pub(crate) async fn prior_knowledge(
    tcp: &TcpStream,
    first: u8,
    until: tokio::time::Instant,
) -> bool {
    if first != PREFACE[0] {
        return false;
    }
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = match tcp.peek(&mut buf).await {
            Ok(n) if n > 0 => n,
            _ => return false,
        };
        if buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // The rest has not come yet, and a peek of what is there returns at once: look again a
        // moment later.
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl HttpProxy {
    /// Serves one HTTP/2 connection on `stream` (h2c after the preface, or TLS whose ALPN chose
    /// `h2`) until the client closes it or it ends with a GOAWAY (idle past the keep-alive time,
    /// the listener's stop, or its eviction at `maxConnections`); open streams finish first.
    pub(crate) async fn serve_h2(
        self: Arc<Self>,
        stream: Stream,
        client: ClientAddr,
        mut stopped: watch::Receiver<bool>,
        conn: &ClientConnection,
        connections: &Connections,
    ) {
        let mut options = server::default_h2_options();
        options
            .max_concurrent_streams(MAX_STREAMS)
            // A larger header list is answered 431 by the codec.
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        let handshake = server::handshake(stream, Some(options));
        let mut h2 = match tokio::time::timeout(self.header_timeout, handshake).await {
            Ok(Ok(h2)) => h2,
            Ok(Err(e)) => {
                debug!(client = %client.peer, error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => return,
        };
        let peer = Arc::new(Peer::new(client, self.https));
        let digest = Arc::new(Digest::default());
        let mut streams = JoinSet::new();
        let mut malformed = 0;
        // GOAWAY sent: the connection ends once its streams are done and the client has closed
        // (or DRAIN later).
        let mut draining = false;
        // While no stream is open: when the connection idles out (the first request must come
        // within the header time, as on HTTP/1; then the keep-alive time applies), or while
        // draining, when the socket goes.
        let mut idle = std::pin::pin!(tokio::time::sleep(self.header_timeout));
        conn.waiting(connections.now_ms(), usize::MAX);
        loop {
            let open = !streams.is_empty();
            // What ends the connection gracefully: a GOAWAY, then the streams finish.
            let mut goaway = false;
            tokio::select! {
                biased;
                // `from_h2_conn` drives the whole connection (every stream's frames): it is
                // polled again at once after any other branch (it is cancel-safe).
                accepted = H2Session::from_h2_conn(&mut h2, digest.clone()) => match accepted {
                    Ok(Some(H2Accept::Session(session))) => {
                        conn.busy();
                        let proxy = self.clone();
                        let peer = peer.clone();
                        streams.spawn(async move { proxy.h2_stream(session, &peer).await });
                    }
                    Ok(Some(H2Accept::Rejected)) => {
                        malformed += 1;
                        goaway = malformed >= MAX_MALFORMED;
                    }
                    // Closed by the client, or after our GOAWAY once every stream is done.
                    Ok(None) => break,
                    Err(e) => {
                        debug!(client = %client.peer, error = %e, "HTTP/2 connection ended");
                        break;
                    }
                },
                Some(_) = streams.join_next(), if open => {
                    if streams.is_empty() {
                        conn.waiting(connections.now_ms(), usize::MAX);
                        let wait = if draining { DRAIN } else { self.keepalive };
                        idle.as_mut().reset(super::deadline(Instant::now(), wait));
                    }
                }
                _ = stopped.wait_for(|s| *s), if !draining => goaway = true,
                () = conn.evicted(), if !draining => goaway = true,
                () = idle.as_mut(), if !open => {
                    if draining {
                        // The client has not closed after the GOAWAY: the socket goes.
                        break;
                    }
                    debug!(client = %client.peer, "HTTP/2 connection idle");
                    goaway = true;
                }
            }
            if goaway && !draining {
                h2.graceful_shutdown();
                draining = true;
                idle.as_mut().reset(tokio::time::Instant::now() + DRAIN);
            }
        }
        // Streams still running finish on their own: each sees its client gone when it writes
        // (and its access log line says 499).
        streams.detach_all();
    }

    /// One HTTP/2 stream: one request, proxied as an HTTP/1 request is.
    async fn h2_stream(&self, session: H2Session, peer: &Peer) {
        let mut s = H2Stream {
            session,
            body_timeout: self.body_timeout,
        };
        let header_bytes = header_size(s.req_header());
        let started = Instant::now();
        // Its deadline is set before each use.
        let timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        let mut attached = None;
        let outcome = self
            .request(&mut s, peer, header_bytes, started, &mut attached, timer)
            .await;
        self.finished(&s, peer.addr, header_bytes, &outcome, started.elapsed());
        if let Some(idle) = attached {
            self.keep_idle(idle);
        }
        // Answered before the whole request body came (a 413, a 404, an error): what the client
        // still sends is read and dropped for a moment, as HTTP/1's lingering close does, so that
        // a client still uploading finishes and reads the answer, rather than meeting the reset
        // that ends an unread stream (curl 7 takes even a NO_ERROR one for a failure).
        if s.session.response_written().is_some() && !s.session.is_body_done() {
            let drain = async { while let Ok(Some(_)) = s.session.read_body_bytes().await {} };
            let _ = tokio::time::timeout(super::respond::LINGER, drain).await;
        }
        // A response cut short ends the stream with RST_STREAM (nothing if it was complete).
        s.session.shutdown();
    }
}

/// The size of a request header as HTTP/1 would carry it (request line and `name: value`
/// lines): what the listener's header limit and the access log's bytes count for an HTTP/2
/// request, whose header arrives compressed.
fn header_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + " HTTP/1.1\r\n".len() + 1;
    let host = req
        .uri
        .authority()
        .filter(|_| !req.headers.contains_key(http::header::HOST))
        .map_or(0, |a| "Host: \r\n".len() + a.as_str().len());
    let fields: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + ": \r\n".len())
        .sum();
    line + host + fields + "\r\n".len()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::AsyncWriteExt,
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A connected pair on loopback: (client, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// What the accept loop does: a first byte, then the look.
    async fn looks_h2(server: &TcpStream, wait: Duration) -> bool {
        let mut first = [0u8; 1];
        server.peek(&mut first).await.unwrap();
        let until = tokio::time::Instant::now() + wait;
        prior_knowledge(server, first[0], until).await
    }

    #[tokio::test]
    async fn the_preface_is_recognised_even_in_pieces_and_left_in_the_socket() {
        let (mut client, server) = pair().await;
        client.write_all(&PREFACE[..5]).await.unwrap();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&PREFACE[5..]).await.unwrap();
            client
        });
        assert!(looks_h2(&server, Duration::from_secs(5)).await);
        let _client = sender.await.unwrap();
        // Peeked, not read: the codec reads the preface itself.
        let mut all = [0u8; PREFACE.len()];
        assert_eq!(server.peek(&mut all).await.unwrap(), PREFACE.len());
        assert_eq!(&all, PREFACE);
    }

    #[tokio::test]
    async fn http1_requests_are_not_http2() {
        for request in [
            &b"POST / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"PUT / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            // The preface's own request line, over HTTP/1 (no `SM` part).
            b"PRI * HTTP/2.0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            let (mut client, server) = pair().await;
            client.write_all(request).await.unwrap();
            assert!(
                !looks_h2(&server, Duration::from_secs(5)).await,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        // A start of the preface that never goes on: not HTTP/2 once the time is up.
        let (mut client, server) = pair().await;
        client.write_all(b"PRI * HT").await.unwrap();
        assert!(!looks_h2(&server, Duration::from_millis(50)).await);
    }

    #[test]
    fn header_size_counts_as_http1_would() {
        let mut req = RequestHeader::build("GET", b"/a?b=1", None).unwrap();
        req.set_uri("http://example.com/a?b=1".parse().unwrap());
        req.insert_header("user-agent", "x").unwrap();
        // "GET /a?b=1 HTTP/1.1\r\n" + "Host: example.com\r\n" + "user-agent: x\r\n" + "\r\n"
        assert_eq!(header_size(&req), 21 + 19 + 15 + 2);
    }
}
