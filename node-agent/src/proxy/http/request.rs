//! One request through the proxy: admitted against the listener's limits, then tried on backends
//! chosen from the pool, attempt by attempt, with nginx's `proxy_next_upstream` retries and
//! passive health accounting; a backend connection of the client's, of the cache or new.

use std::{
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use buoy_crds::Algorithm;
use bytes::Bytes;
use http::{HeaderValue, Method, header};
use pingora_core::protocols::{Stream, http::v1::client::HttpSession as UpstreamSession};
use pingora_error::{Error, ErrorType, RetryType};
use pingora_http::RequestHeader;
use smallvec::SmallVec;
use tokio::time::Sleep;
use tracing::debug;

use super::{
    HttpProxy,
    headers::{expects_continue, hash_key, upstream_request},
    respond::{add_slash, error_answer, error_response, respond},
    session::Downstream,
    within,
};
use crate::proxy::{
    listener::ClientAddr,
    pool::{NoBackend, Pool, Timeouts},
    retry::{Failure, should_retry},
    route::Choice,
    upstream::{self, Idle},
};

/// Request body bytes kept to replay on the next backend (pingora-proxy's limit; nginx spools
/// to disk). A longer body is not retried once its start has been sent.
const RETRY_BUFFER: usize = 64 * 1024;

/// How one request ended, for metrics and for the client connection.
pub(super) struct Outcome {
    /// Status sent to the client (0: none).
    pub(super) status: u16,
    pub(super) retries: u32,
    /// Whether the client connection can carry another request.
    pub(super) keep: bool,
    /// The backend of the last attempt, and its response's status (for the access log).
    pub(super) upstream: Option<(SocketAddr, Option<u16>)>,
    /// Backends tried.
    pub(super) attempts: u32,
}

/// The client of a connection: its address, and that address as a header value.
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    /// The address it connected to.
    pub(super) local: SocketAddr,
    pub(super) header: Option<HeaderValue>,
    /// It came over TLS (`X-Forwarded-Proto: https`).
    pub(super) https: bool,
}

impl Peer {
    /// The client of a connection with these addresses, over TLS or not.
    pub(super) fn new(client: ClientAddr, https: bool) -> Peer {
        Peer {
            addr: client.peer,
            local: client.local,
            header: HeaderValue::from_str(&client.peer.ip().to_string()).ok(),
            https,
        }
    }
}

/// The request's path needs a `/` added (a 301, as nginx answers).
struct AddSlash;

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

/// A request on its way: what every attempt needs, and what the attempts so far did.
struct Attempts<'a> {
    pool: &'a Pool,
    peer: &'a Peer,
    /// The request for the first attempt (built again for a retry rather than cloned for
    /// every first attempt).
    first_req: Option<RequestHeader>,
    has_body: bool,
    /// Consistent hashing's key (the key costs an allocation; only that algorithm reads it).
    key: Option<Vec<u8>>,
    method: Method,
    body: Body,
    /// Backends tried, in order (inline: most requests try one, and a heap vector was an
    /// allocation per request).
    tried: SmallVec<[usize; 4]>,
    retries: u32,
    /// A reused connection that failed before any answer was closed by the backend meanwhile:
    /// the same backend again on a fresh connection, not an attempt.
    fresh: bool,
    started: Instant,
    /// The backend of the last attempt, and its response's status.
    upstream: Option<(SocketAddr, Option<u16>)>,
    /// The PROXY protocol header that new backend connections start with (the pool sends it).
    hello: Option<Vec<u8>>,
    /// The answer the last failed attempt would have had (said when no backend is left to
    /// try, as nginx answers with the last error).
    last_failure: Option<(u16, String)>,
}

impl Attempts<'_> {
    /// nginx's proxy_next_upstream for an attempt that failed: allowed by the policy, and the
    /// body sent so far can be sent again.
    fn next_upstream(&self, failure: Failure) -> bool {
        self.body.replayable()
            && should_retry(
                &self.pool.config.retry,
                self.tried.len() as u32,
                self.method.as_str(),
                failure,
                false,
            )
    }

    /// The request header for an attempt on backend `i`; `None` if the client's cannot be sent.
    fn request_for(&mut self, original: &RequestHeader, i: usize) -> Option<RequestHeader> {
        let req = match self.first_req.take() {
            Some(r) => Ok(r),
            None => upstream_request(original, self.pool, self.peer, self.has_body),
        };
        let mut req = req.ok()?;
        if !self.pool.config.headers.preserve_host {
            let host = self.pool.host(i)?.clone();
            let _ = req.insert_header(header::HOST, host);
        }
        Some(req)
    }

    fn outcome(&self, status: u16, keep: bool) -> Outcome {
        Outcome {
            status,
            retries: self.retries,
            keep,
            upstream: None,
            attempts: 0,
        }
    }
}

/// What an attempt leads to.
enum Step {
    /// Another attempt (a retry, or the same backend on a fresh connection).
    Again,
    Done(Outcome),
}

impl HttpProxy {
    /// Proxies the request whose header `session` has just read.
    pub(super) async fn request<S: Downstream>(
        &self,
        session: &mut S,
        peer: &Peer,
        header_bytes: usize,
        started: Instant,
        attached: &mut Option<Idle>,
        mut timer: Pin<&mut Sleep>,
    ) -> Outcome {
        let pool = match self.admit(session, header_bytes).await {
            Ok(pool) => pool,
            Err(refused) => return refused,
        };
        let has_body = !session.is_body_empty();
        let original = session.req_header();
        let first_req = match upstream_request(original, &pool, peer, has_body) {
            Ok(r) => Some(r),
            Err(_) => return refused(respond(session, 400, "bad request").await, 0),
        };
        if has_body && expects_continue(session.req_header()) {
            // Answered here (nginx does too): the backend never sees the Expect.
            let _ = session.write_continue_response().await;
        }
        let mut a = Attempts {
            pool: &pool,
            peer,
            first_req,
            has_body,
            key: (pool.config.algorithm == Algorithm::ConsistentHash)
                .then(|| hash_key(&pool, session.req_header(), peer.addr))
                .flatten(),
            method: session.req_header().method.clone(),
            body: Body {
                done: !has_body,
                ..Body::default()
            },
            tried: SmallVec::new(),
            retries: 0,
            fresh: false,
            started,
            upstream: None,
            hello: None,
            last_failure: None,
        };
        if let Some(version) = pool.config.proxy_protocol {
            let client = Some((peer.addr, peer.local));
            match crate::proxy::proxy_protocol::header(version, client) {
                Ok(h) => a.hello = Some(h),
                Err(_) => return refused(respond(session, 500, "internal error").await, 0),
            }
        }
        loop {
            match self
                .attempt(session, &mut a, attached, timer.as_mut())
                .await
            {
                Step::Again => {}
                Step::Done(mut outcome) => {
                    outcome.upstream = a.upstream;
                    outcome.attempts = a.tried.len() as u32;
                    return outcome;
                }
            }
        }
    }

    /// The listener's limits on the request header and the declared body; the pool to use.
    async fn admit<S: Downstream>(
        &self,
        session: &mut S,
        header_bytes: usize,
    ) -> Result<std::sync::Arc<Pool>, Outcome> {
        if header_bytes > self.max_header_bytes {
            return Err(refused(
                respond(session, 431, "request header too large").await,
                0,
            ));
        }
        let declared: Option<u64> = session
            .req_header()
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        if self.max_body_bytes > 0 && declared.is_some_and(|n| n > self.max_body_bytes) {
            return Err(refused(
                respond(session, 413, "request body too large").await,
                0,
            ));
        }
        let slot = match self.route(session.req_header()) {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                return Err(refused(
                    respond(session, 404, "no route for this host and path").await,
                    0,
                ));
            }
            Err(AddSlash) => return Err(refused(add_slash(session).await, 0)),
        };
        // Taken before any await: the guard must not be held across one.
        let pool = slot.lock().map(|p| p.clone()).ok();
        match pool {
            Some(pool) => Ok(pool),
            None => Err(refused(respond(session, 500, "internal error").await, 0)),
        }
    }

    /// The pool that takes the request: its route's, else the listener's own; `Err` when the
    /// answer is nginx's redirect to the path with a slash.
    fn route(&self, req: &RequestHeader) -> Result<Option<&super::PoolSlot>, AddSlash> {
        if self.routes.is_empty() {
            return Ok(self.pool.as_ref());
        }
        // The request line's host wins over the header's, as in nginx.
        let host = match req.uri.host() {
            Some(h) => Some(h.as_bytes()),
            None => req.headers.get(header::HOST).map(HeaderValue::as_bytes),
        };
        match self.routes.select(host, req.uri.path()) {
            Choice::Route(i) => Ok(self.route_pools.get(i)),
            Choice::None => Ok(self.pool.as_ref()),
            Choice::AddSlash => Err(AddSlash),
        }
    }

    /// One attempt: a backend chosen, the request sent, the response passed on, or why another
    /// attempt follows.
    async fn attempt<S: Downstream>(
        &self,
        session: &mut S,
        a: &mut Attempts<'_>,
        attached: &mut Option<Idle>,
        mut timer: Pin<&mut Sleep>,
    ) -> Step {
        let pool = a.pool;
        let i = match pool.select(a.key.as_deref(), &a.tried) {
            Ok(i) => i,
            Err(reason) => {
                let (status, why) = match a.last_failure.take() {
                    // Every backend left was tried: the last one's failure says why.
                    Some(failure) => failure,
                    None if reason == NoBackend::Empty => (503, pool.why(reason)),
                    None => (502, pool.why(reason)),
                };
                return Step::Done(refused(respond(session, status, &why).await, a.retries));
            }
        };
        a.tried.push(i);
        let mut pick = Pick {
            pool,
            i,
            done: false,
        };
        let Some(addr) = pool.address(i).inspect(|&u| a.upstream = Some((u, None))) else {
            return Step::Done(refused(
                respond(session, 500, "internal error").await,
                a.retries,
            ));
        };
        let t = &pool.config.timeouts;
        let key = pool.key(i).unwrap_or(upstream::Key { addr, tls: 0 });
        let connected = self.connection(attached, key, pool.tls(i), t, a).await;
        let (stream, reused) = match connected {
            Ok(c) => c,
            Err(e) => {
                pick.finish(true);
                debug!(backend = %addr, error = %e, "backend connection failed");
                return self.failed(session, a, &e).await;
            }
        };
        a.fresh = false;
        // Timeouts are `within`'s, not pingora's (which reads the clock for every call).
        let mut up = UpstreamSession::new(stream);
        let Some(req) = a.request_for(session.req_header(), i) else {
            return Step::Done(refused(
                respond(session, 400, "bad request").await,
                a.retries,
            ));
        };
        let sent = self.send(session, &mut up, req, &mut a.body, t, timer.as_mut());
        match sent.await {
            Ok(()) => {}
            Err(Fault::Client(e)) => {
                debug!(client = %a.peer.addr, error = %e, "client went away");
                return Step::Done(refused(0, a.retries));
            }
            Err(Fault::BodyTooLarge) => {
                let status = respond(session, 413, "request body too large").await;
                return Step::Done(refused(status, a.retries));
            }
            Err(Fault::Backend(e)) => {
                if reused && stale(&e) && a.body.replayable() {
                    drop(pick);
                    a.tried.pop();
                    a.fresh = true;
                    return Step::Again;
                }
                pick.finish(true);
                debug!(backend = %addr, error = %e, "attempt failed");
                return self.failed(session, a, &e).await;
            }
        }
        // A response header arrived.
        let status = up.resp_header().map_or(0, |r| r.status.as_u16());
        a.upstream = Some((addr, Some(status)));
        let failure = Failure::Status(status);
        pick.finish(failure.counts_against_backend(&pool.config.retry.on));
        if a.next_upstream(failure) {
            // Its body is never read: the connection goes.
            a.retries += 1;
            return Step::Again;
        }
        let keep = self
            .respond_from(session, &mut up, addr, t, timer.as_mut())
            .await;
        if keep {
            // Keep-alive as the backend's response says (HTTP/1.1 default, Connection).
            up.respect_keepalive();
            if let Some(stream) = up.reuse().await {
                *attached = Some(kept(pool, key, stream, a.started));
            }
        }
        Step::Done(a.outcome(status, keep))
    }

    /// An attempt failed with `e` before a response: the next backend, or the error's answer.
    async fn failed<S: Downstream>(
        &self,
        session: &mut S,
        a: &mut Attempts<'_>,
        e: &Error,
    ) -> Step {
        if a.next_upstream(failure_of(e)) {
            a.retries += 1;
            a.last_failure = Some(error_answer(e));
            return Step::Again;
        }
        Step::Done(refused(error_response(session, e).await, a.retries))
    }

    /// The connection for an attempt on the backend of `key`: the client's own if it went there
    /// last, else one from the cache, else a new one (starting with the attempt's PROXY header,
    /// if any, then `tls`'s handshake, if any). Returns whether it was reused. The request's
    /// start stands for "now" (one clock read less).
    async fn connection(
        &self,
        attached: &mut Option<Idle>,
        key: upstream::Key,
        tls: Option<upstream::Tls<'_>>,
        t: &Timeouts,
        a: &Attempts<'_>,
    ) -> Result<(Stream, bool), Box<Error>> {
        let (now, fresh, hello) = (a.started, a.fresh, a.hello.as_deref());
        if let Some(conn) = attached.take() {
            if fresh {
                drop(conn);
            } else if conn.key == key {
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
        // A connection that starts with a client's PROXY header is never shared (nor taken from
        // the cache, which may hold connections opened before the pool sent headers).
        if !fresh
            && hello.is_none()
            && let Some(stream) = self.idle.take(key, now, t.idle)
        {
            return Ok((stream, true));
        }
        let stream = upstream::connect(key.addr, t.connect, hello, tls).await?;
        Ok((stream, false))
    }

    /// Sends the request header and body to the backend and reads the response header.
    async fn send<S: Downstream>(
        &self,
        session: &mut S,
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
}

/// A backend connection of `pool` kept after its response, for the client's next request.
fn kept(pool: &Pool, key: upstream::Key, stream: Stream, since: Instant) -> Idle {
    Idle {
        key,
        stream,
        since,
        max_idle: pool.config.timeouts.idle,
        // A connection that carried a PROXY header is its client's alone.
        private: pool.config.proxy_protocol.is_some(),
    }
}

/// An answer after which the client connection closes.
fn refused(status: u16, retries: u32) -> Outcome {
    Outcome {
        status,
        retries,
        keep: false,
        upstream: None,
        attempts: 0,
    }
}

/// An error of a reused connection that says the backend had closed it before our request.
fn stale(e: &Error) -> bool {
    matches!(e.retry, RetryType::ReusedOnly)
        || matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ConnectionClosed
        )
}

/// The retry condition an error stands for.
fn failure_of(e: &Error) -> Failure {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            Failure::Timeout
        }
        // A handshake that failed (a certificate that does not verify): nothing was sent.
        ErrorType::ConnectError
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectProxyFailure
        | ErrorType::TLSHandshakeFailure => Failure::Connect,
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error => Failure::InvalidHeader,
        ErrorType::HTTPStatus(code) => Failure::Status(*code),
        _ => Failure::Broken,
    }
}
