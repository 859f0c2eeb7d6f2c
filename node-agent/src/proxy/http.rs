//! The HTTP (L7) proxy of one listener, on pingora: a backend chosen per attempt from the pool,
//! request headers as nginx sets them in the reference config, nginx's `proxy_next_upstream`
//! retries, passive health accounting, and clear 502/503 responses when no backend can serve.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use buoy_crds::HashKey;
use bytes::Bytes;
use pingora_core::{
    ErrorType, prelude::HttpPeer, protocols::l4::socket::SocketAddr as PingoraAddr,
};
use pingora_error::{Error, ErrorSource, Result, RetryType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use super::{
    pool::{NoBackend, Pool},
    retry::{Failure, should_retry},
};

/// Header that says why Buoy itself answered with an error.
pub const REASON_HEADER: &str = "X-Buoy-Error";

/// The pool a listener uses now; swapped atomically on reconfiguration.
pub type PoolSlot = Arc<Mutex<Arc<Pool>>>;

pub struct HttpProxy {
    pub pool: PoolSlot,
    pub metrics: Arc<super::metrics::ListenerMetrics>,
    /// How long an idle client connection is kept for its next request (nginx keepalive_timeout).
    pub keepalive: std::time::Duration,
    pub max_header_bytes: usize,
    /// 0: unlimited.
    pub max_body_bytes: u64,
    pub watchdogs: Arc<super::listener::Watchdogs>,
}

/// State of one request.
pub struct Attempts {
    /// The pool this request started with (backends removed meanwhile drain through it).
    pool: Option<Arc<Pool>>,
    tried: Vec<usize>,
    current: Option<usize>,
    /// Set once response bytes left for the client: never retried after that.
    response_started: bool,
    /// Why the request could not be proxied, when Buoy answers itself.
    no_backend: Option<NoBackend>,
    /// Whether the current attempt already reported its outcome to the pool.
    reported: bool,
    started: std::time::Instant,
    retries: u32,
    /// Buoy refused the request itself (status, reason).
    refused: Option<(u16, &'static str)>,
    body_bytes: u64,
}

impl Attempts {
    /// Ends the current attempt without a verdict on the backend.
    fn abandon(&mut self) {
        if let (Some(pool), Some(i)) = (&self.pool, self.current)
            && !self.reported
        {
            pool.abandoned(i);
            self.reported = true;
        }
    }

    /// Ends the current attempt; only upstream errors count against the backend (a client that
    /// hung up says nothing about it).
    fn report_error(&mut self, e: &Error) {
        if e.esource() == &ErrorSource::Upstream {
            self.report(true);
        } else {
            self.abandon();
        }
    }

    fn report(&mut self, failed: bool) {
        if let (Some(pool), Some(i)) = (&self.pool, self.current)
            && !self.reported
        {
            pool.finished(i, failed);
            self.reported = true;
        }
    }

    /// Whether the attempt that just failed goes to the next backend (and counts the retry).
    fn retry_after(&mut self, session: &Session, failure: Failure) -> bool {
        let retry = self.pool.as_ref().is_some_and(|p| {
            should_retry(
                &p.config.retry,
                self.tried.len() as u32,
                session.req_header().method.as_str(),
                failure,
                self.response_started,
            )
        }) && !session.as_ref().retry_buffer_truncated();
        if retry {
            self.retries += 1;
        }
        retry
    }
}

fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(PingoraAddr::as_inet)
        .map(SocketAddr::ip)
}

fn hash_key(pool: &Pool, session: &Session) -> Option<Vec<u8>> {
    match pool.config.hash_key {
        HashKey::ClientIp => client_ip(session).map(|ip| ip.to_string().into_bytes()),
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

#[async_trait]
impl ProxyHttp for HttpProxy {
    type CTX = Attempts;

    /// No downstream modules: pingora's default adds a (disabled) compression module, which
    /// costs an allocation per request; a proxy passes bodies through as nginx does.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Attempts {
        Attempts {
            pool: None,
            tried: Vec::new(),
            current: None,
            response_started: false,
            no_backend: None,
            reported: true,
            started: std::time::Instant::now(),
            retries: 0,
            refused: None,
            body_bytes: 0,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Attempts) -> Result<()> {
        if let Some(peer) = session.client_addr().and_then(PingoraAddr::as_inet) {
            self.watchdogs.header_arrived(*peer);
        }
        session.set_keepalive(Some(self.keepalive.as_secs().max(1)));
        let req = session.req_header();
        let header_bytes = req.method.as_str().len()
            + req.raw_path().len()
            + 12
            + req
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if header_bytes > self.max_header_bytes {
            ctx.refused = Some((431, "request header too large"));
            return Err(Error::explain(
                ErrorType::HTTPStatus(431),
                "request header too large",
            ));
        }
        let declared: Option<u64> = req
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        if self.max_body_bytes > 0 && declared.is_some_and(|n| n > self.max_body_bytes) {
            ctx.refused = Some((413, "request body too large"));
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body too large",
            ));
        }
        let pool = self
            .pool
            .lock()
            .map(|p| p.clone())
            .map_err(|_| Error::new(ErrorType::InternalError))?;
        // A request body must be replayable for a retry (nginx buffers it too).
        if pool.config.retry.attempts > 1 {
            session.as_mut().enable_retry_buffering();
        }
        ctx.pool = Some(pool);
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Attempts,
    ) -> Result<()> {
        // Chunked bodies have no Content-Length to check up front: count as they arrive.
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if self.max_body_bytes > 0 && ctx.body_bytes > self.max_body_bytes {
            ctx.refused = Some((413, "request body too large"));
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body too large",
            ));
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Attempts,
    ) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .pool
            .clone()
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        // The key costs an allocation; only consistent hashing reads it.
        let key = (pool.config.algorithm == buoy_crds::Algorithm::ConsistentHash)
            .then(|| hash_key(&pool, session))
            .flatten();
        match pool.select(key.as_deref(), &ctx.tried) {
            Ok(i) => {
                ctx.tried.push(i);
                ctx.current = Some(i);
                ctx.reported = false;
                let addr = pool
                    .address(i)
                    .ok_or_else(|| Error::new(ErrorType::InternalError))?;
                let mut peer = HttpPeer::new(addr, false, String::new());
                let t = &pool.config.timeouts;
                peer.options.connection_timeout = Some(t.connect);
                peer.options.read_timeout = Some(t.read);
                peer.options.write_timeout = Some(t.write);
                peer.options.idle_timeout = Some(t.idle);
                Ok(Box::new(peer))
            }
            Err(reason) => {
                ctx.current = None;
                ctx.no_backend = Some(reason);
                Err(Error::explain(
                    ErrorType::HTTPStatus(if reason == NoBackend::Empty { 503 } else { 502 }),
                    reason.reason(),
                ))
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Attempts,
    ) -> Result<()> {
        let Some(pool) = &ctx.pool else { return Ok(()) };
        let h = &pool.config.headers;
        let ip = client_ip(session)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        if h.preserve_host {
            // nginx's `proxy_set_header Host $host`: the client's host, lower case, no port.
            if let Some(host) = session
                .req_header()
                .headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .map(nginx_host)
            {
                upstream.insert_header("Host", host)?;
            }
        } else if let Some(addr) = ctx.current.and_then(|i| pool.address(i)) {
            upstream.insert_header("Host", addr.to_string())?;
        }
        if h.x_real_ip {
            // Never trust a client's X-Real-IP.
            upstream.insert_header("X-Real-IP", &ip)?;
        }
        if h.x_forwarded_for {
            // nginx's $proxy_add_x_forwarded_for: the client's header, then the client address.
            let joined = match session
                .req_header()
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
            {
                prior if prior.is_empty() => ip.clone(),
                prior => format!("{}, {ip}", prior.join(", ")),
            };
            upstream.insert_header("X-Forwarded-For", joined)?;
        }
        if h.x_forwarded_proto {
            upstream.insert_header("X-Forwarded-Proto", "http")?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Attempts,
    ) -> Result<()> {
        let Some(pool) = ctx.pool.clone() else {
            return Ok(());
        };
        let status = response.status.as_u16();
        let failure = Failure::Status(status);
        let counts = failure.counts_against_backend(&pool.config.retry.on);
        ctx.report(counts);
        if ctx.retry_after(session, failure) {
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                "retrying on the next backend",
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        ctx: &mut Attempts,
    ) -> Result<()> {
        ctx.response_started = true;
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Attempts,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.report(true);
        let retry = ctx.retry_after(session, failure_of(&e));
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Attempts,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("backend {peer}"));
        let failure = failure_of(&e);
        if matches!(failure, Failure::Status(_)) {
            // Raised by upstream_response_filter, which already decided and reported.
            return e;
        }
        if client_reused
            && matches!(e.retry, RetryType::ReusedOnly)
            && !ctx.response_started
            && !session.as_ref().retry_buffer_truncated()
        {
            // A pooled keep-alive connection the backend had already closed: not the backend's
            // fault and not an attempt. Try the same backend again on a fresh connection.
            ctx.abandon();
            ctx.tried.pop();
            e.set_retry(true);
            return e;
        }
        if e.esource() != &ErrorSource::Upstream {
            // The client went away: nothing to retry, nothing against the backend.
            ctx.abandon();
            e.set_retry(false);
            return e;
        }
        ctx.report(true);
        let retry = ctx.retry_after(session, failure);
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Attempts,
    ) -> FailToProxy {
        ctx.report_error(e);
        let (code, reason) = match (ctx.no_backend, e.etype()) {
            _ if ctx.refused.is_some() => ctx
                .refused
                .map(|(c, r)| (c, r.to_string()))
                .unwrap_or_default(),
            (Some(reason), _) => (
                if reason == NoBackend::Empty { 503 } else { 502 },
                reason.reason().to_string(),
            ),
            (None, ErrorType::HTTPStatus(code)) => (*code, format!("backend answered {code}")),
            (
                None,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => (504, "backend timed out".to_string()),
            (None, _) if e.esource() == &pingora_error::ErrorSource::Downstream => {
                (0, String::new())
            }
            (None, t) => (502, format!("backend failed: {}", t.as_str())),
        };
        if code > 0 && !ctx.response_started {
            let body = Bytes::from(format!("{code} {reason}\n"));
            if let Ok(mut resp) = ResponseHeader::build(code, Some(3)) {
                let _ = resp.insert_header(REASON_HEADER, &reason);
                let _ = resp.insert_header("Content-Type", "text/plain");
                let _ = resp.insert_header("Content-Length", body.len().to_string());
                if session
                    .write_response_header(Box::new(resp), false)
                    .await
                    .is_ok()
                {
                    let _ = session.write_response_body(Some(body), true).await;
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Attempts) {
        // An attempt still open ended with the response: success unless an error ended it.
        match e {
            Some(e) => ctx.report_error(e),
            None => ctx.report(false),
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.metrics
            .observe(status, ctx.started.elapsed(), ctx.retries);
    }
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
    }
}
