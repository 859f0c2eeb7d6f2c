//! The HTTP (L7) proxy of one listener, on pingora's HTTP/1 sessions: a backend chosen per
//! attempt from the pool, request headers as nginx sets them in the reference config, nginx's
//! `proxy_next_upstream` retries, passive health accounting, and clear 502/503 responses when no
//! backend can serve.
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

use buoy_crds::{Algorithm, HashKey};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Version, header};
use pingora_core::protocols::{
    Stream,
    http::v1::{client::HttpSession as UpstreamSession, server::HttpSession as ClientSession},
};
use pingora_error::{Error, ErrorType, OrErr, RetryType};
use pingora_http::{RequestHeader, ResponseHeader};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
    time::Sleep,
};
use tracing::debug;

use super::{
    listener::{ClientConnection, Connections},
    metrics::ListenerMetrics,
    pool::{NoBackend, Pool, Timeouts},
    retry::{Failure, should_retry},
    upstream::{self, Idle, IdleCache},
};

/// Header that says why Buoy itself answered with an error.
pub const REASON_HEADER: &str = "X-Buoy-Error";

/// The pool a listener uses now; swapped atomically on reconfiguration.
pub type PoolSlot = Arc<Mutex<Arc<Pool>>>;

/// Request body bytes kept to replay on the next backend (pingora-proxy's limit; nginx spools
/// to disk). A longer body is not retried once its start has been sent.
const RETRY_BUFFER: usize = 64 * 1024;

/// After an error response, how long unread request bytes are drained so that closing does not
/// reset the connection before the client has read the response (nginx's lingering close).
const LINGER: Duration = Duration::from_millis(500);

/// A keep-alive connection whose next request has not begun this long after the last response
/// rests: its session, buffers and this future are dropped, and only the socket waits (as
/// nginx frees a request's buffers between keep-alive requests). Clients that send their next
/// request at once (any client under load) never rest.
const REST_AFTER: Duration = Duration::from_millis(100);

/// A keep-alive connection resting between requests: its socket, and when it closes.
pub struct Resting {
    pub tcp: tokio::net::TcpStream,
    pub until: tokio::time::Instant,
}

/// What ended a wait for a request header.
enum HeaderWait {
    Read(pingora_error::Result<Option<usize>>),
    Timer,
    Evicted,
}

pub struct HttpProxy {
    pub pool: PoolSlot,
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
}

/// How one request ended, for metrics and for the client connection.
struct Outcome {
    /// Status sent to the client (0: none).
    status: u16,
    retries: u32,
    /// Whether the client connection can carry another request.
    keep: bool,
}

/// The client of a connection: its address, and that address as a header value.
struct Peer {
    addr: SocketAddr,
    header: Option<HeaderValue>,
}

/// Which side an error came from.
enum Fault {
    Client(Box<Error>),
    Backend(Box<Error>),
    /// The request body grew past the limit.
    BodyTooLarge,
}

/// A backend chosen for one attempt, counted in flight until it reports.
struct Pick<'a> {
    pool: &'a Pool,
    i: usize,
    done: bool,
}

impl Pick<'_> {
    /// The attempt's verdict on the backend (passive checks).
    fn finish(&mut self, failed: bool) {
        if !self.done {
            self.pool.finished(self.i, failed);
            self.done = true;
        }
    }
}

impl Drop for Pick<'_> {
    /// Ended without a verdict: a stale keep-alive connection, or the client went away.
    fn drop(&mut self) {
        if !self.done {
            self.pool.abandoned(self.i);
        }
    }
}

/// A request body as it is read from the client, with the start kept for a retry.
#[derive(Default)]
struct Body {
    kept: Vec<Bytes>,
    kept_bytes: usize,
    /// More was read than kept: an attempt that sent some of it cannot be retried.
    truncated: bool,
    /// All of it has been read from the client.
    done: bool,
    total: u64,
}

impl Body {
    /// Whether the body read so far can be sent again.
    fn replayable(&self) -> bool {
        !self.truncated
    }
}

impl HttpProxy {
    /// Serves one client connection until the client closes it, it idles out, the listener
    /// stops, the listener evicts it (at its limit, while it waits for a request header), or it
    /// rests between keep-alive requests (then its socket is returned, see [`REST_AFTER`]).
    /// `first`: no request has been read on the connection yet.
    pub async fn serve(
        &self,
        stream: Stream,
        client: SocketAddr,
        mut stopped: watch::Receiver<bool>,
        conn: &ClientConnection,
        connections: &Connections,
        first: bool,
    ) -> Option<Resting> {
        let peer = Peer {
            addr: client,
            header: HeaderValue::from_str(&client.ip().to_string()).ok(),
        };
        let mut stream = stream;
        // Bytes of the next request read with the previous one (a pipelining client).
        let mut pipelined: Option<bytes::BytesMut> = None;
        // Backend connection of the previous request, reused while requests go to its backend.
        let mut attached: Option<Idle> = None;
        // The connection's two timers, each moved to its next deadline (see `within`): one
        // for the client's next request header, one for waits on backends.
        let mut header_timer = std::pin::pin!(tokio::time::sleep(self.header_timeout));
        // Its deadline is set before each use.
        let mut backend_timer = std::pin::pin!(tokio::time::sleep(self.header_timeout));
        let mut first = first;
        // While the header timer stands for the rest delay: the keep-alive deadline.
        let mut rests_until: Option<tokio::time::Instant> = None;
        loop {
            let mut session = ClientSession::new(stream);
            session.set_pipelining_enabled(true);
            let mut prefix_len = 0;
            if let Some(prefix) = pipelined.take() {
                prefix_len = prefix.len();
                session.set_pipelined_prefix(prefix);
            }
            // One deadline for the whole header (below), not one per read: a client trickling a
            // byte at a time never trips a per-read timeout. Its size is held to the limit as
            // it is read (a header that fills the budget fails the read: 431), and the listener
            // may evict the connection while it waits.
            session.set_read_timeout(None);
            conn.waiting(
                connections.now_ms(),
                self.max_header_bytes.saturating_sub(prefix_len),
            );
            let read = async {
                let mut reading = std::pin::pin!(session.read_request());
                loop {
                    tokio::select! {
                        biased;
                        read = &mut reading => return HeaderWait::Read(read),
                        () = tokio::task::unconstrained(header_timer.as_mut()) => {
                            // The rest delay is over, but the next request has begun: it gets
                            // the rest of the keep-alive time (its bytes are in the read).
                            if conn.header_started() && let Some(until) = rests_until.take() {
                                header_timer.as_mut().reset(until);
                                continue;
                            }
                            return HeaderWait::Timer;
                        }
                        () = conn.evicted() => return HeaderWait::Evicted,
                    }
                }
            };
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
                && rests_until.is_some_and(|u| tokio::time::Instant::now() < u);
            conn.busy();
            let header_bytes = match read {
                // The next request has not begun: the connection rests.
                HeaderWait::Timer if rest => {
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
                    return rests_until.map(|until| Resting { tcp, until });
                }
                HeaderWait::Read(Ok(Some(n))) => n,
                // Closed, or idle or slow past its time, or evicted.
                HeaderWait::Read(Ok(None)) | HeaderWait::Timer | HeaderWait::Evicted => break,
                HeaderWait::Read(Err(_)) if conn.header_too_large() => {
                    respond(&mut session, 431, "request header too large").await;
                    linger(session).await;
                    break;
                }
                HeaderWait::Read(Err(e)) => {
                    debug!(%client, error = %e, "bad request");
                    if *e.etype() == ErrorType::InvalidHTTPHeader {
                        respond(&mut session, 400, "bad request").await;
                        linger(session).await;
                    }
                    break;
                }
            };
            session.set_read_timeout(Some(self.body_timeout));
            let started = Instant::now();
            let outcome = self
                .request(
                    &mut session,
                    &peer,
                    header_bytes,
                    started,
                    &mut attached,
                    backend_timer.as_mut(),
                )
                .await;
            let done = Instant::now();
            self.metrics
                .observe(outcome.status, done - started, outcome.retries);
            // The backend connection goes to the cache before the client learns that this
            // connection ends, so that its next connection finds it there.
            let more = outcome.keep && session.will_keepalive() && !*stopped.borrow();
            if !more && let Some(conn) = attached.take() {
                self.keep_idle(conn);
            }
            if !outcome.keep {
                linger(session).await;
                break;
            }
            if !more {
                session.shutdown().await;
                break;
            }
            let keepalive_until = deadline(done, self.keepalive);
            match session.reuse().await {
                Ok(Some(next)) => (stream, pipelined) = next.into_parts(),
                _ => break,
            }
            // Nothing of the next request yet: wait the rest delay first (the timer is moved
            // once either way).
            let waiting = pipelined.as_ref().is_none_or(|p| p.is_empty());
            if waiting && self.keepalive > REST_AFTER {
                header_timer.as_mut().reset(deadline(done, REST_AFTER));
                rests_until = Some(keepalive_until);
            } else {
                header_timer.as_mut().reset(keepalive_until);
                rests_until = None;
            }
        }
        if let Some(conn) = attached {
            self.keep_idle(conn);
        }
        None
    }

    fn keep_idle(&self, conn: Idle) {
        let max_idle = self
            .pool
            .lock()
            .map_or(Duration::ZERO, |p| p.config.timeouts.idle);
        self.idle.put(conn, max_idle);
    }

    /// Proxies the request whose header `session` has just read.
    async fn request(
        &self,
        session: &mut ClientSession,
        peer: &Peer,
        header_bytes: usize,
        started: Instant,
        attached: &mut Option<Idle>,
        mut timer: Pin<&mut Sleep>,
    ) -> Outcome {
        let refuse = |status, retries| Outcome {
            status,
            retries,
            keep: false,
        };
        if header_bytes > self.max_header_bytes {
            return refuse(respond(session, 431, "request header too large").await, 0);
        }
        let declared: Option<u64> = session
            .req_header()
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        if self.max_body_bytes > 0 && declared.is_some_and(|n| n > self.max_body_bytes) {
            return refuse(respond(session, 413, "request body too large").await, 0);
        }
        let Ok(pool) = self.pool.lock().map(|p| p.clone()) else {
            return refuse(respond(session, 500, "internal error").await, 0);
        };
        let has_body = !session.is_body_empty();
        // Built again for a retry rather than cloned for every first attempt.
        let mut first_req = match upstream_request(session, &pool, peer.header.as_ref(), has_body) {
            Ok(r) => Some(r),
            Err(_) => return refuse(respond(session, 400, "bad request").await, 0),
        };
        if has_body && expects_continue(session.req_header()) {
            // Answered here (nginx does too): the backend never sees the Expect.
            let _ = session.write_continue_response().await;
        }
        // The key costs an allocation; only consistent hashing reads it.
        let key = (pool.config.algorithm == Algorithm::ConsistentHash)
            .then(|| hash_key(&pool, session, peer.addr))
            .flatten();
        let method = session.req_header().method.clone();
        let mut body = Body {
            done: !has_body,
            ..Body::default()
        };
        let mut tried: Vec<usize> = Vec::new();
        let mut retries = 0;
        // A reused connection that fails before any answer was closed by the backend meanwhile:
        // the same backend again on a fresh connection, not an attempt.
        let mut fresh = false;
        // nginx's proxy_next_upstream for an attempt that failed: allowed by the policy, and the
        // body sent so far can be sent again.
        let next_upstream = |failure, tried: &[usize], body: &Body| {
            body.replayable()
                && should_retry(
                    &pool.config.retry,
                    tried.len() as u32,
                    method.as_str(),
                    failure,
                    false,
                )
        };
        loop {
            let i = match pool.select(key.as_deref(), &tried) {
                Ok(i) => i,
                Err(reason) => {
                    let status = if reason == NoBackend::Empty { 503 } else { 502 };
                    return refuse(respond(session, status, &pool.why(reason)).await, retries);
                }
            };
            tried.push(i);
            let mut pick = Pick {
                pool: &pool,
                i,
                done: false,
            };
            let Some(addr) = pool.address(i) else {
                return refuse(respond(session, 500, "internal error").await, retries);
            };
            let t = &pool.config.timeouts;
            // The request's start stands for "now" (one clock read less per request).
            let (stream, reused) = match self.connection(attached, addr, t, started, fresh).await {
                Ok(c) => c,
                Err(e) => {
                    pick.finish(true);
                    if next_upstream(failure_of(&e), &tried, &body) {
                        retries += 1;
                        continue;
                    }
                    return refuse(error_response(session, &e).await, retries);
                }
            };
            fresh = false;
            // Timeouts are `within`'s, not pingora's (which reads the clock for every call).
            let mut up = UpstreamSession::new(stream);
            let req = match first_req.take() {
                Some(r) => Ok(r),
                None => upstream_request(session, &pool, peer.header.as_ref(), has_body),
            };
            let Ok(mut req) = req else {
                return refuse(respond(session, 400, "bad request").await, retries);
            };
            if !pool.config.headers.preserve_host {
                let _ = req.insert_header(header::HOST, addr.to_string());
            }
            let sent = self.send(session, &mut up, req, &mut body, t, timer.as_mut());
            let fault = match sent.await {
                Ok(()) => None,
                Err(Fault::Client(e)) => {
                    debug!(client = %peer.addr, error = %e, "client went away");
                    return refuse(0, retries);
                }
                Err(Fault::BodyTooLarge) => {
                    return refuse(
                        respond(session, 413, "request body too large").await,
                        retries,
                    );
                }
                Err(Fault::Backend(e)) => Some(e),
            };
            if let Some(e) = fault {
                if reused && stale(&e) && body.replayable() {
                    drop(pick);
                    tried.pop();
                    fresh = true;
                    continue;
                }
                pick.finish(true);
                debug!(backend = %addr, error = %e, "attempt failed");
                if next_upstream(failure_of(&e), &tried, &body) {
                    retries += 1;
                    continue;
                }
                return refuse(error_response(session, &e).await, retries);
            }
            // A response header arrived.
            let status = up.resp_header().map_or(0, |r| r.status.as_u16());
            let failure = Failure::Status(status);
            pick.finish(failure.counts_against_backend(&pool.config.retry.on));
            if next_upstream(failure, &tried, &body) {
                // Its body is never read: the connection goes.
                retries += 1;
                continue;
            }
            let keep = self
                .respond_from(session, &mut up, addr, t, timer.as_mut())
                .await;
            if keep {
                // Keep-alive as the backend's response says (HTTP/1.1 default, Connection).
                up.respect_keepalive();
                if let Some(stream) = up.reuse().await {
                    *attached = Some(Idle {
                        addr,
                        stream,
                        since: started,
                    });
                }
            }
            return Outcome {
                status,
                retries,
                keep,
            };
        }
    }

    /// The connection for an attempt on `addr`: the client's own if it went there last, else one
    /// from the cache, else a new one. Returns whether it was reused.
    async fn connection(
        &self,
        attached: &mut Option<Idle>,
        addr: SocketAddr,
        t: &Timeouts,
        now: Instant,
        fresh: bool,
    ) -> Result<(Stream, bool), Box<Error>> {
        if let Some(conn) = attached.take() {
            if fresh {
                drop(conn);
            } else if conn.addr == addr {
                let mut stream = conn.stream;
                // A connection that just served a request is trusted without a look; one that
                // sat idle is checked as the cache checks its own.
                if now.duration_since(conn.since) < Duration::from_secs(1)
                    || upstream::still_open(&mut stream)
                {
                    return Ok((stream, true));
                }
            } else {
                self.keep_idle(conn);
            }
        }
        if !fresh && let Some(stream) = self.idle.take(addr, now, t.idle) {
            return Ok((stream, true));
        }
        Ok((upstream::connect(addr, t.connect).await?, false))
    }

    /// Sends the request header and body to the backend and reads the response header.
    async fn send(
        &self,
        session: &mut ClientSession,
        up: &mut UpstreamSession,
        req: RequestHeader,
        body: &mut Body,
        t: &Timeouts,
        mut timer: Pin<&mut Sleep>,
    ) -> Result<(), Fault> {
        use ErrorType::WriteTimedout as W;
        let sent = up.write_request_header(Box::new(req));
        within(Some(timer.as_mut()), t.write, W, sent)
            .await
            .map_err(Fault::Backend)?;
        for chunk in &body.kept {
            within(Some(timer.as_mut()), t.write, W, up.write_body(chunk))
                .await
                .map_err(Fault::Backend)?;
        }
        while !body.done {
            let Some(chunk) = session.read_body_bytes().await.map_err(Fault::Client)? else {
                body.done = true;
                break;
            };
            body.total += chunk.len() as u64;
            if self.max_body_bytes > 0 && body.total > self.max_body_bytes {
                return Err(Fault::BodyTooLarge);
            }
            if !body.truncated && body.kept_bytes + chunk.len() <= RETRY_BUFFER {
                body.kept_bytes += chunk.len();
                body.kept.push(chunk.clone());
            } else {
                body.truncated = true;
                body.kept.clear();
            }
            within(Some(timer.as_mut()), t.write, W, up.write_body(&chunk))
                .await
                .map_err(Fault::Backend)?;
        }
        within(Some(timer.as_mut()), t.write, W, up.finish_body())
            .await
            .map_err(Fault::Backend)?;
        // One deadline for the whole response header, however many reads it takes.
        let header = async {
            loop {
                up.read_response().await?;
                match up.resp_header().map(|r| r.status.as_u16()) {
                    // 100 Continue and 103 Early Hints: the final answer follows.
                    Some(s) if (100..200).contains(&s) && s != 101 => continue,
                    _ => return Ok(()),
                }
            }
        };
        within(Some(timer), t.read, ErrorType::ReadTimedout, header)
            .await
            .map_err(Fault::Backend)
    }

    /// Passes the backend's response on to the client; returns whether all of it went through
    /// (then the client connection can carry another request, and the backend's may be reused).
    /// The session is borrowed, not moved: it is a large value.
    async fn respond_from(
        &self,
        session: &mut ClientSession,
        up: &mut UpstreamSession,
        addr: SocketAddr,
        t: &Timeouts,
        mut timer: Pin<&mut Sleep>,
    ) -> bool {
        let Some(mut resp) = up.resp_header().cloned() else {
            return false;
        };
        resp.set_version(Version::HTTP_11);
        // The backend's keep-alive terms are its own (pingora writes our Connection header).
        if resp.headers.keys().any(|k| k.as_str() == "keep-alive") {
            resp.remove_header("keep-alive");
        }
        let upgrade = resp.status.as_u16() == 101;
        // Writes to the client are held to the send timeout: a client that stops reading its
        // response must not hold this connection and its backend forever.
        let send = self.send_timeout;
        let written = session.write_response_header(Box::new(resp));
        if within(
            Some(timer.as_mut()),
            send,
            ErrorType::WriteTimedout,
            written,
        )
        .await
        .is_err()
        {
            return false;
        }
        if upgrade {
            tunnel(session, up, t, send).await;
            return false;
        }
        loop {
            let chunk = up.read_body_ref();
            match within(Some(timer.as_mut()), t.read, ErrorType::ReadTimedout, chunk).await {
                Ok(Some(chunk)) => {
                    let written = session.write_body(chunk);
                    if within(
                        Some(timer.as_mut()),
                        send,
                        ErrorType::WriteTimedout,
                        written,
                    )
                    .await
                    .is_err()
                    {
                        return false;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The response has started: nothing to retry, the client sees a cut.
                    debug!(backend = %addr, error = %e, "backend broke off a response");
                    return false;
                }
            }
        }
        within(
            Some(timer),
            send,
            ErrorType::WriteTimedout,
            session.finish_body(),
        )
        .await
        .is_ok()
    }
}

/// After a 101 Switching Protocols: bytes both ways until both sides have closed, or either
/// breaks or is silent past its timeout. A side that closes its half is passed on as a
/// half-close (FIN), and what the other side still sends gets through.
async fn tunnel(
    session: &mut ClientSession,
    up: &mut UpstreamSession,
    t: &Timeouts,
    send: Duration,
) {
    // The request's (empty) body is finished: what the client sends now passes as it is.
    up.maybe_upgrade_body_writer();
    let (mut client_open, mut backend_open) = (true, true);
    while client_open || backend_open {
        tokio::select! {
            from_client = session.read_body_bytes(), if client_open => match from_client {
                Ok(Some(b)) => {
                    if within(None, t.write, ErrorType::WriteTimedout, up.write_body(&b)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    client_open = false;
                    up.shutdown().await;
                }
                Err(_) => return,
            },
            from_backend = within(None, t.read, ErrorType::ReadTimedout, up.read_body_ref()), if backend_open => match from_backend {
                Ok(Some(b)) => {
                    if within(None, send, ErrorType::WriteTimedout, session.write_body(b)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    backend_open = false;
                    session.shutdown().await;
                }
                Err(_) => return,
            },
        }
    }
}

/// A backend read or write within `t`, else `kind`. Polled once before any timer is set: most
/// complete at once (a small body comes with its header, writes land in the buffer). `timer` is
/// the connection's, moved to each new deadline: moving a tokio timer that has not fired to a
/// later deadline is one atomic update, where a timer made for each wait takes the timer wheel's
/// lock to register and again when it is dropped. Without one (the tunnel, whose two directions
/// wait at once) the wait makes its own.
async fn within<T>(
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

/// An error of a reused connection that says the backend had closed it before our request.
fn stale(e: &Error) -> bool {
    matches!(e.retry, RetryType::ReusedOnly)
        || matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ConnectionClosed
        )
}

fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Hop-by-hop fields a proxy must not forward (RFC 9110 7.6.1), as pingora-proxy strips them.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// The request as the backend gets it: the client's, without hop-by-hop fields, with the headers
/// the reference nginx config sets. `Host` is added per attempt when it names the backend.
fn upstream_request(
    session: &ClientSession,
    pool: &Pool,
    client_ip: Option<&HeaderValue>,
    has_body: bool,
) -> pingora_error::Result<RequestHeader> {
    let original = session.req_header();
    // Edited as plain `http` parts, without pingora's case-preserving second map (half the work
    // of every copy and insert, and pingora's insert parses each name again): names reach the
    // backend in canonical case for common fields and in lower case otherwise, as HAProxy sends
    // them (field names are case-insensitive). Clients get the backend's case.
    //
    // Fields the client's Connection header names are hop-by-hop too.
    let nominated: Vec<String> = original
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    // A new map with room for the fields added below, filled without the hop-by-hop ones, in
    // the client's order. Removing them from a copy moved the last field into each hole, and
    // the copy, often at its usable capacity, grew and rehashed when our fields were added.
    let mut headers = HeaderMap::with_capacity(original.headers.len() + 6);
    for (name, value) in &original.headers {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !nominated.iter().any(|t| t == n) {
            // No more fields than the client's map held: cannot reach its limit.
            let _ = headers.try_append(name.clone(), value.clone());
        }
    }
    let websocket = original.version == Version::HTTP_11
        && original
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    if has_body && !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let h = &pool.config.headers;
    if h.preserve_host
        && let Some(host) = original.headers.get(header::HOST)
    {
        // nginx's `proxy_set_header Host $host`: the client's host, lower case, no port.
        headers.insert(header::HOST, nginx_host_value(host));
    }
    let ip = client_ip
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""));
    if h.x_real_ip {
        // Never trust a client's X-Real-IP.
        headers.insert(const { HeaderName::from_static("x-real-ip") }, ip.clone());
    }
    if h.x_forwarded_for {
        // nginx's $proxy_add_x_forwarded_for: the client's header, then the client address.
        let name = const { HeaderName::from_static("x-forwarded-for") };
        let mut prior = original.headers.get_all(&name).iter().peekable();
        let value = if prior.peek().is_none() {
            ip
        } else {
            let mut joined = Vec::new();
            for v in prior {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(ip.as_bytes());
            HeaderValue::try_from(joined).or_err(
                ErrorType::InvalidHTTPHeader,
                "invalid X-Forwarded-For value",
            )?
        };
        headers.insert(name, value);
    }
    if h.x_forwarded_proto {
        headers.insert(
            const { HeaderName::from_static("x-forwarded-proto") },
            HeaderValue::from_static("http"),
        );
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = original.method.clone();
    parts.uri = original.uri.clone();
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    let mut req = RequestHeader::from(parts);
    let target = original.raw_path();
    if req.raw_path() != target {
        // Kept verbatim (absolute-form, non-UTF-8), as the client sent it.
        req.set_raw_path(target)?;
    }
    Ok(req)
}

/// nginx's `$host` as a header value; the client's own value when it already is one.
fn nginx_host_value(v: &HeaderValue) -> HeaderValue {
    let raw = v.as_bytes();
    // The usual `name` or `name:port`, lower case, plain ASCII: sliced, no string built.
    let simple = !raw
        .iter()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii_graphic() || *b == b'[');
    if simple {
        let host = match raw.iter().rposition(|b| *b == b':') {
            Some(i) if raw[i + 1..].iter().all(u8::is_ascii_digit) => &raw[..i],
            _ => return v.clone(),
        };
        if let Ok(h) = HeaderValue::from_bytes(host) {
            return h;
        }
    }
    v.to_str()
        .ok()
        .map(nginx_host)
        .and_then(|h| HeaderValue::from_str(&h).ok())
        .unwrap_or_else(|| v.clone())
}

fn hash_key(pool: &Pool, session: &ClientSession, client: SocketAddr) -> Option<Vec<u8>> {
    match pool.config.hash_key {
        HashKey::ClientIp => Some(client.ip().to_string().into_bytes()),
        HashKey::Header => {
            let name = pool.config.hash_key_name.as_deref()?;
            session
                .req_header()
                .headers
                .get(name)
                .map(|v| v.as_bytes().to_vec())
        }
        HashKey::Cookie => {
            let name = pool.config.hash_key_name.as_deref()?;
            session
                .req_header()
                .headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (k, v) = c.trim().split_once('=')?;
                    (k == name).then(|| v.as_bytes().to_vec())
                })
        }
    }
}

/// nginx's `$host` from a Host header: lower case, without the port (IPv6 keeps its brackets).
pub fn nginx_host(header: &str) -> String {
    let h = header.trim();
    let without_port = if h.starts_with('[') {
        h.find(']').map_or(h, |end| &h[..=end])
    } else {
        h.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map_or(h, |(host, _)| host)
    };
    without_port.to_ascii_lowercase()
}

fn failure_of(e: &Error) -> Failure {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            Failure::Timeout
        }
        ErrorType::ConnectError
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectProxyFailure => Failure::Connect,
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error => Failure::InvalidHeader,
        ErrorType::HTTPStatus(code) => Failure::Status(*code),
        _ => Failure::Broken,
    }
}

/// The answer for an attempt that failed with `e` and is not retried.
async fn error_response(session: &mut ClientSession, e: &Error) -> u16 {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            respond(session, 504, "backend timed out").await
        }
        t => respond(session, 502, &format!("backend failed: {}", t.as_str())).await,
    }
}

/// Buoy's own answer, with the reason in a header and the body; returns the status (0 if the
/// client could not be told).
async fn respond(session: &mut ClientSession, code: u16, reason: &str) -> u16 {
    if session.response_written().is_some() {
        return 0;
    }
    let body = Bytes::from(format!("{code} {reason}\n"));
    // The connection closes after it (pingora writes the Connection header from this).
    session.set_server_keepalive(None);
    let Ok(mut resp) = ResponseHeader::build(code, Some(3)) else {
        return 0;
    };
    let _ = resp.insert_header(REASON_HEADER, reason);
    let _ = resp.insert_header(header::CONTENT_TYPE, "text/plain");
    let _ = resp.insert_header(header::CONTENT_LENGTH, body.len().to_string());
    if session.write_response_header(Box::new(resp)).await.is_err()
        || session.write_body(&body).await.is_err()
        || session.finish_body().await.is_err()
    {
        return 0;
    }
    code
}

/// Closes a client connection that will carry no more requests: our side first, then whatever
/// the client still sends is read and dropped for a moment, so that the kernel does not answer
/// it with a reset that could destroy the response before the client read it.
async fn linger(session: ClientSession) {
    let mut stream = session.into_inner();
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_like_nginx() {
        assert_eq!(nginx_host("Example.COM:8080"), "example.com");
        assert_eq!(nginx_host("example.com"), "example.com");
        assert_eq!(nginx_host("[fd00::1]:80"), "[fd00::1]");
        assert_eq!(nginx_host("10.0.0.1:80"), "10.0.0.1");
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(nginx_host_value(&v("example.com")), "example.com");
        assert_eq!(nginx_host_value(&v("Example.com:80")), "example.com");
        assert_eq!(nginx_host_value(&v("[fd00::1]:80")), "[fd00::1]");
        assert_eq!(nginx_host_value(&v("10.0.0.1:8080")), "10.0.0.1");
        assert_eq!(nginx_host_value(&v("example.com:")), "example.com");
        assert_eq!(nginx_host_value(&v("example.com:x1")), "example.com:x1");
        assert_eq!(nginx_host_value(&v("a b:80")), "a b");
        // The fast path and the general one agree.
        for h in ["example.com:80", "a:1:2", "x.y", "x:"] {
            assert_eq!(nginx_host_value(&v(h)), nginx_host(h), "{h}");
        }
    }
}
