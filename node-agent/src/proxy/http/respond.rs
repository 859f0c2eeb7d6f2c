//! Answers to the client: the backend's response passed on (and a WebSocket tunnel after
//! `101`), Buoy's own error responses with their reason, and the lingering close after them.

use std::{net::SocketAddr, pin::Pin, time::Duration};

use bytes::Bytes;
use http::header;
use pingora_core::protocols::http::v1::{
    client::HttpSession as UpstreamSession, server::HttpSession as ClientSession,
};
use pingora_error::{Error, ErrorType};
use pingora_http::ResponseHeader;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::Sleep,
};
use tracing::debug;

use super::{HttpProxy, REASON_HEADER, session::Downstream, within};
use crate::proxy::pool::Timeouts;

/// After an error response, how long unread request bytes are drained so that closing does not
/// reset the connection before the client has read the response (nginx's lingering close).
pub(super) const LINGER: Duration = Duration::from_millis(500);

impl HttpProxy {
    /// Passes the backend's response on to the client; returns whether all of it went through
    /// (then the client connection can carry another request, and the backend's may be reused).
    /// The session is borrowed, not moved: it is a large value.
    pub(super) async fn respond_from<S: Downstream>(
        &self,
        session: &mut S,
        up: &mut UpstreamSession,
        addr: SocketAddr,
        t: &Timeouts,
        mut timer: Pin<&mut Sleep>,
    ) -> bool {
        let Some(mut resp) = up.resp_header().cloned() else {
            return false;
        };
        resp.set_version(S::VERSION);
        // The backend's keep-alive terms are its own (pingora writes our Connection header).
        if resp.headers.keys().any(|k| k.as_str() == "keep-alive") {
            resp.remove_header("keep-alive");
        }
        let upgrade = resp.status.as_u16() == 101;
        if upgrade && session.as_h1().is_none() {
            // Only an HTTP/1 request asks for one (see `upstream_request`): a backend that
            // switches anyway cannot be passed on.
            respond(session, 502, "backend switched protocols").await;
            return false;
        }
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
            if let Some(session) = session.as_h1() {
                tunnel(session, up, t, send).await;
            }
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

/// The answer for an attempt that failed with `e` and is not retried.
pub(super) async fn error_response<S: Downstream>(session: &mut S, e: &Error) -> u16 {
    let (status, reason) = error_answer(e);
    respond(session, status, &reason).await
}

/// The status and reason that answer an attempt that failed with `e`.
pub(super) fn error_answer(e: &Error) -> (u16, String) {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            (504, "backend timed out".to_string())
        }
        // Why, in rustls's words: a certificate that does not verify is a configuration to fix.
        ErrorType::TLSHandshakeFailure => {
            let why = e
                .context
                .as_ref()
                .map_or("TLS handshake failed", |c| c.as_str());
            (502, printable(&format!("backend {why}")))
        }
        t => (502, format!("backend failed: {}", t.as_str())),
    }
}

/// `text` as a header value can carry it: printable ASCII, at most 300 characters.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect()
}

/// Buoy's own answer, with the reason in a header and the body; returns the status (0 if the
/// client could not be told).
pub(super) async fn respond<S: Downstream>(session: &mut S, code: u16, reason: &str) -> u16 {
    if session.response_written().is_some() {
        return 0;
    }
    let body = Bytes::from(format!("{code} {reason}\n"));
    answer(session, code, (REASON_HEADER, reason), body).await
}

/// nginx's answer to `/api` where a proxied location is `/api/`: a 301 to the path with the
/// slash (and the query), relative to the host asked.
pub(super) async fn add_slash<S: Downstream>(session: &mut S) -> u16 {
    let uri = &session.req_header().uri;
    let location = match uri.query() {
        Some(q) => format!("{}/?{q}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let body = Bytes::from_static(b"301 Moved Permanently\n");
    answer(session, 301, (header::LOCATION, &location), body).await
}

/// Writes a short plain-text response of the proxy's own, with one more header, and closes the
/// connection after it; returns `code` (0 if the client could not be told).
async fn answer<S: Downstream>(
    session: &mut S,
    code: u16,
    (name, value): (impl pingora_http::IntoCaseHeaderName, &str),
    body: Bytes,
) -> u16 {
    // The connection closes after it.
    session.close_after_response();
    let Ok(mut resp) = ResponseHeader::build(code, Some(3)) else {
        return 0;
    };
    let _ = resp.insert_header(name, value);
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
pub(super) async fn linger(session: ClientSession) {
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
