//! The HTTP (L7) proxy of one listener, on pingora's HTTP/1 sessions (this module's connection
//! loop) and HTTP/2 streams (`h2`): a backend chosen per attempt from the pool, request headers as
//! nginx sets them in the reference config, nginx's `proxy_next_upstream` retries, passive health
//! accounting, and clear 502/503 responses when no backend can serve.
//!
//! The loop is ours rather than pingora-proxy's: pingora-proxy runs each request through a dozen
//! boxed filter callbacks, two task channels and a shared connection pool, which cost more CPU per
//! request than the proxying itself. Parsing, framing and serialising stay pingora's.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::Poll,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use pingora_core::protocols::{Stream, http::v1::server::HttpSession as ClientSession};
use pingora_error::{Error, ErrorType};
use tokio::{io::AsyncWriteExt, sync::watch, time::Sleep};
use tracing::debug;

use self::{
    request::{Outcome, Peer},
    respond::{linger, respond},
    session::Downstream,
};
use super::{
    access_log::{Entry, Request},
    listener::{ClientAddr, ClientConnection, Connections, LogTo},
    metrics::ListenerMetrics,
    pool::Pool,
    route::Routes,
    upstream::{Idle, IdleCache},
};

mod h2;
mod headers;
mod request;
mod respond;
mod session;

pub(crate) use self::h2::prior_knowledge;

/// Header that says why Buoy itself answered with an error.
pub(crate) const REASON_HEADER: &str = "X-Buoy-Error";

/// The pool a listener uses now; swapped atomically on reconfiguration.
pub(crate) type PoolSlot = Arc<Mutex<Arc<Pool>>>;

/// A keep-alive connection whose next request has not begun this long after the last response
/// rests: its session, buffers and this future are dropped, and only the socket waits (as
/// nginx frees a request's buffers between keep-alive requests). Clients that send their next
/// request at once (any client under load) never rest.
const REST_AFTER: Duration = Duration::from_millis(100);

/// A keep-alive connection resting between requests: its socket, and when it closes.
pub(crate) struct Resting {
    pub tcp: tokio::net::TcpStream,
    pub until: tokio::time::Instant,
}

/// What ended a wait for a request header.
enum HeaderWait {
    Read(pingora_error::Result<Option<usize>>),
    Timer,
    Evicted,
}

pub(crate) struct HttpProxy {
    /// What no route takes (without it: 404).
    pub pool: Option<PoolSlot>,
    /// The listener's routes, compiled once.
    pub routes: Routes,
    /// Each route's pool, by route.
    pub route_pools: Vec<PoolSlot>,
    pub metrics: Arc<ListenerMetrics>,
    /// How long an idle client connection is kept for its next request (nginx keepalive_timeout).
    pub keepalive: Duration,
    /// The first request header must be complete within this (slow clients are cut).
    pub header_timeout: Duration,
    /// Between two reads of a request body (nginx client_body_timeout).
    pub body_timeout: Duration,
    /// A write to the client that makes no progress for this long ends the connection (nginx
    /// send_timeout).
    pub send_timeout: Duration,
    pub max_header_bytes: usize,
    /// 0: unlimited.
    pub max_body_bytes: u64,
    pub idle: IdleCache,
    /// The listener's access log, if it keeps one.
    pub log: Option<LogTo>,
    /// Its clients come over TLS (an HTTPS listener).
    pub https: bool,
}

/// The connection's two timers, each moved to its next deadline (see [`within`]): one for the
/// client's next request header, one for waits on backends.
struct Timers<'a> {
    header: Pin<&'a mut Sleep>,
    backend: Pin<&'a mut Sleep>,
    /// While the header timer stands for the rest delay: the keep-alive deadline.
    rests_until: Option<tokio::time::Instant>,
    /// The connection can rest (a plain socket; a TLS session's state cannot be set aside).
    can_rest: bool,
}

impl HttpProxy {
    /// Serves one client connection until the client closes it, it idles out, the listener
    /// stops, the listener evicts it (at its limit, while it waits for a request header), or it
    /// rests between keep-alive requests (then its socket is returned, see [`REST_AFTER`]).
    /// `first`: no request has been read on the connection yet.
    pub(crate) async fn serve(
        &self,
        stream: Stream,
        client: ClientAddr,
        mut stopped: watch::Receiver<bool>,
        conn: &ClientConnection,
        connections: &Connections,
        first: bool,
    ) -> Option<Resting> {
        let peer = Peer::new(client, self.https);
        let client = client.peer;
        let mut stream = stream;
        // Bytes of the next request read with the previous one (a pipelining client).
        let mut pipelined: Option<BytesMut> = None;
        // Backend connection of the previous request, reused while requests go to its backend.
        let mut attached: Option<Idle> = None;
        let header = std::pin::pin!(tokio::time::sleep(self.header_timeout));
        // Its deadline is set before each use.
        let backend = std::pin::pin!(tokio::time::sleep(self.header_timeout));
        let mut timers = Timers {
            header,
            backend,
            rests_until: None,
            can_rest: stream.as_any().is::<super::buffered::Buffered>(),
        };
        let mut first = first;
        loop {
            let mut session = self.session(stream, pipelined.take(), conn, connections);
            let read = wait_for_header(&mut session, conn, &mut timers);
            let read = if first {
                // A connection accepted before the listener stopped gets its first request
                // answered, as pingora's loop does; only idle keep-alive waits are cut short.
                read.await
            } else {
                tokio::select! {
                    // A request already waiting is read without arming the stop notification.
                    biased;
                    read = read => read,
                    _ = stopped.changed() => break,
                }
            };
            first = false;
            // Only with nothing of the next request read: dropping the read loses no byte.
            let rest = matches!(read, HeaderWait::Timer)
                && !conn.header_started()
                && timers
                    .rests_until
                    .is_some_and(|u| tokio::time::Instant::now() < u);
            conn.busy();
            let header_bytes = match read {
                // The next request has not begun: the connection rests.
                HeaderWait::Timer if rest => {
                    return self.rest(session, &mut attached, timers.rests_until).await;
                }
                HeaderWait::Read(Ok(Some(n))) => n,
                // Closed, or idle or slow past its time, or evicted.
                HeaderWait::Read(Ok(None)) | HeaderWait::Timer | HeaderWait::Evicted => break,
                HeaderWait::Read(Err(e)) => {
                    refuse_header(session, conn, &e, client).await;
                    break;
                }
            };
            session.set_read_timeout(Some(self.body_timeout));
            if *stopped.borrow() {
                // Said in the response, so that the client opens its next request elsewhere
                // rather than racing our close.
                session.close_after_response();
            }
            let started = Instant::now();
            let outcome = self
                .request(
                    &mut session,
                    &peer,
                    header_bytes,
                    started,
                    &mut attached,
                    timers.backend.as_mut(),
                )
                .await;
            let done = Instant::now();
            self.finished(&session, client, header_bytes, &outcome, done - started);
            let next = self
                .next_request(session, &outcome, &stopped, &mut attached)
                .await;
            let Some(next) = next else { break };
            (stream, pipelined) = next;
            timers.after_response(done, self.keepalive, pipelined.as_ref());
        }
        if let Some(conn) = attached {
            self.keep_idle(conn);
        }
        None
    }

    /// A session for the connection's next request, with what the client already sent of it,
    /// the connection counted as waiting for a header.
    fn session(
        &self,
        stream: Stream,
        pipelined: Option<BytesMut>,
        conn: &ClientConnection,
        connections: &Connections,
    ) -> ClientSession {
        let mut session = ClientSession::new(stream);
        session.set_pipelining_enabled(true);
        let mut prefix_len = 0;
        if let Some(prefix) = pipelined {
            prefix_len = prefix.len();
            session.set_pipelined_prefix(prefix);
        }
        // One deadline for the whole header (the header timer), not one per read: a client
        // trickling a byte at a time never trips a per-read timeout. Its size is held to the
        // limit as it is read (a header that fills the budget fails the read: 431), and the
        // listener may evict the connection while it waits.
        session.set_read_timeout(None);
        conn.waiting(
            connections.now_ms(),
            self.max_header_bytes.saturating_sub(prefix_len),
        );
        session
    }

    /// After a response: the session's stream for the client's next request (with what it
    /// already sent of it), or `None` when the connection ends here.
    async fn next_request(
        &self,
        mut session: ClientSession,
        outcome: &Outcome,
        stopped: &watch::Receiver<bool>,
        attached: &mut Option<Idle>,
    ) -> Option<(Stream, Option<BytesMut>)> {
        // The backend connection goes to the cache before the client learns that this
        // connection ends, so that its next connection finds it there.
        let more = outcome.keep && session.will_keepalive() && !*stopped.borrow();
        if !more && let Some(conn) = attached.take() {
            self.keep_idle(conn);
        }
        if !outcome.keep {
            linger(session).await;
            return None;
        }
        if !more && *stopped.borrow() {
            // The node is stopping, and may release its address once this task ends: the
            // response's tail must have reached the client by then, not sit in our kernel.
            linger(session).await;
            return None;
        }
        if !more {
            session.shutdown().await;
            return None;
        }
        match session.reuse().await {
            Ok(Some(next)) => Some(next.into_parts()),
            _ => None,
        }
    }

    /// The connection rests: its backend connection goes to the cache, and only its socket is
    /// returned, until `until`.
    async fn rest(
        &self,
        session: ClientSession,
        attached: &mut Option<Idle>,
        until: Option<tokio::time::Instant>,
    ) -> Option<Resting> {
        if let Some(idle) = attached.take() {
            self.keep_idle(idle);
        }
        let mut stream = session.into_inner();
        if stream.flush().await.is_err() {
            return None;
        }
        let tcp = stream
            .into_any()
            .downcast::<super::buffered::Buffered>()
            .ok()?
            .into_inner();
        until.map(|until| Resting { tcp, until })
    }

    /// A request is done: its metrics, and its access log line.
    fn finished<S: Downstream>(
        &self,
        session: &S,
        client: SocketAddr,
        header_bytes: usize,
        outcome: &request::Outcome,
        elapsed: Duration,
    ) {
        self.metrics
            .observe(outcome.status, elapsed, outcome.retries);
        if let Some(log) = &self.log {
            log_request(log, session, client, header_bytes, outcome, elapsed);
        }
    }

    /// Puts a backend connection in the listener's cache, unless it began with a client's
    /// PROXY protocol header: such a connection is that client's alone (closed here).
    fn keep_idle(&self, conn: Idle) {
        // A connection that carried a PROXY header is its client's alone.
        if !conn.private {
            self.idle.put(conn);
        }
    }
}

impl Timers<'_> {
    /// Arms the header timer for the next request after a response at `done`: with nothing of
    /// it read yet, the rest delay first (the timer is moved once either way), else the
    /// keep-alive time.
    fn after_response(&mut self, done: Instant, keepalive: Duration, pipelined: Option<&BytesMut>) {
        let keepalive_until = deadline(done, keepalive);
        let waiting = pipelined.is_none_or(|p| p.is_empty());
        if waiting && self.can_rest && keepalive > REST_AFTER {
            self.header.as_mut().reset(deadline(done, REST_AFTER));
            self.rests_until = Some(keepalive_until);
        } else {
            self.header.as_mut().reset(keepalive_until);
            self.rests_until = None;
        }
    }
}

/// Waits for the next request header: read, or the header timer (the rest delay, or the time
/// allowed), or eviction by the listener.
async fn wait_for_header(
    session: &mut ClientSession,
    conn: &ClientConnection,
    timers: &mut Timers<'_>,
) -> HeaderWait {
    let mut reading = std::pin::pin!(session.read_request());
    loop {
        tokio::select! {
            biased;
            read = &mut reading => return HeaderWait::Read(read),
            () = tokio::task::unconstrained(timers.header.as_mut()) => {
                // The rest delay is over, but the next request has begun: it gets the rest of
                // the keep-alive time (its bytes are in the read).
                if conn.header_started() && let Some(until) = timers.rests_until.take() {
                    timers.header.as_mut().reset(until);
                    continue;
                }
                return HeaderWait::Timer;
            }
            () = conn.evicted() => return HeaderWait::Evicted,
        }
    }
}

/// Queues the access log entry of the request `session` has just served.
fn log_request<S: Downstream>(
    log: &LogTo,
    session: &S,
    client: SocketAddr,
    header_bytes: usize,
    outcome: &request::Outcome,
    elapsed: Duration,
) {
    let req = session.req_header();
    let field = |name: http::header::HeaderName| {
        req.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (upstream, upstream_status) = outcome.upstream.map_or((None, None), |(a, s)| (Some(a), s));
    log.logger.log(Entry {
        time: std::time::SystemTime::now(),
        client,
        listener: log.listener.clone(),
        protocol: log.protocol,
        request: Some(Request {
            method: req.method.as_str().to_string(),
            path: String::from_utf8_lossy(req.raw_path()).into_owned(),
            version: format!("{:?}", req.version),
            host: field(http::header::HOST).or_else(|| req.uri.host().map(str::to_string)),
            referer: field(http::header::REFERER),
            user_agent: field(http::header::USER_AGENT),
        }),
        // nginx's 499: the client went away before an answer.
        status: if outcome.status == 0 {
            499
        } else {
            outcome.status
        },
        bytes_in: (header_bytes + session.body_bytes_read()) as u64,
        bytes_out: session.body_bytes_sent() as u64,
        duration: elapsed,
        upstream,
        upstream_status,
        attempts: outcome.attempts,
    });
}

/// A request header that could not be read: `431` when it ran past its budget, `400` when it
/// is not HTTP, nothing when the client went away.
async fn refuse_header(
    mut session: ClientSession,
    conn: &ClientConnection,
    e: &Error,
    client: SocketAddr,
) {
    if conn.header_too_large() {
        respond(&mut session, 431, "request header too large").await;
        linger(session).await;
        return;
    }
    debug!(%client, error = %e, "bad request");
    if *e.etype() == ErrorType::InvalidHTTPHeader {
        respond(&mut session, 400, "bad request").await;
        linger(session).await;
    }
}

/// A backend read or write within `t`, else `kind`. Polled once before any timer is set: most
/// complete at once (a small body comes with its header, writes land in the buffer). `timer` is
/// the connection's, moved to each new deadline: moving a tokio timer that has not fired to a
/// later deadline is one atomic update, where a timer made for each wait takes the timer wheel's
/// lock to register and again when it is dropped. Without one (the tunnel, whose two directions
/// wait at once) the wait makes its own.
pub(super) async fn within<T>(
    timer: Option<Pin<&mut Sleep>>,
    t: Duration,
    kind: ErrorType,
    io: impl Future<Output = pingora_error::Result<T>>,
) -> pingora_error::Result<T> {
    let mut io = std::pin::pin!(io);
    if let Poll::Ready(done) = futures::poll!(io.as_mut()) {
        return done;
    }
    let silent = || Error::e_explain(kind, format!("backend silent for {t:?}"));
    let Some(mut timer) = timer else {
        return tokio::time::timeout(t, io)
            .await
            .unwrap_or_else(|_| silent());
    };
    timer.as_mut().reset(deadline(Instant::now(), t));
    tokio::select! {
        biased;
        done = io => done,
        // Outside tokio's task budget, as `tokio::time::timeout` polls its timer: a backend that
        // keeps the budget spent (an endless stream of 100 Continue) still runs out of time.
        () = tokio::task::unconstrained(timer) => silent(),
    }
}

/// `t` after `since`; where that overflows (a timeout near `Duration::MAX`), 30 years, as far
/// as tokio's own timers go.
fn deadline(since: Instant, t: Duration) -> tokio::time::Instant {
    let since = tokio::time::Instant::from_std(since);
    since
        .checked_add(t)
        .unwrap_or_else(|| since + Duration::from_secs(86400 * 365 * 30))
}
