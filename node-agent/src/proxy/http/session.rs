//! The client side of one request, as the request path sees it: a pingora HTTP/1 session or one
//! HTTP/2 stream. The request path is generic over it, so each kind gets its own compiled copy
//! (no dynamic dispatch, nothing added per HTTP/1 request).

use std::time::Duration;

use bytes::Bytes;
use http::Version;
use pingora_core::protocols::http::{
    v1::server::HttpSession as H1Session, v2::server::HttpSession as H2Session,
};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

/// What the request path reads from and writes to a client, whatever the protocol.
pub(super) trait Downstream: Send {
    /// The version of the responses this client gets.
    const VERSION: Version;

    /// The request, as the client sent it.
    fn req_header(&self) -> &RequestHeader;

    /// Whether the request has no body.
    fn is_body_empty(&mut self) -> bool;

    /// The next piece of the request body; `None` at its end.
    fn read_body_bytes(&mut self) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Answers a client that waits for `100 Continue` before it sends its body.
    fn write_continue_response(&mut self) -> impl Future<Output = Result<()>> + Send;

    fn write_response_header(
        &mut self,
        header: Box<ResponseHeader>,
    ) -> impl Future<Output = Result<()>> + Send;

    fn write_body(&mut self, data: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// Ends the response.
    fn finish_body(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// The response header written, if any.
    fn response_written(&self) -> Option<&ResponseHeader>;

    /// Nothing more follows this response from the client's connection (HTTP/1 closes it; an
    /// HTTP/2 stream ends with its response anyway).
    fn close_after_response(&mut self);

    /// The HTTP/1 session, for what only HTTP/1 does (a `101` and the tunnel after it).
    fn as_h1(&mut self) -> Option<&mut H1Session>;

    fn body_bytes_read(&self) -> usize;

    fn body_bytes_sent(&self) -> usize;
}

impl Downstream for H1Session {
    const VERSION: Version = Version::HTTP_11;

    fn req_header(&self) -> &RequestHeader {
        H1Session::req_header(self)
    }

    fn is_body_empty(&mut self) -> bool {
        H1Session::is_body_empty(self)
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        H1Session::read_body_bytes(self).await
    }

    async fn write_continue_response(&mut self) -> Result<()> {
        H1Session::write_continue_response(self).await
    }

    async fn write_response_header(&mut self, header: Box<ResponseHeader>) -> Result<()> {
        H1Session::write_response_header(self, header).await
    }

    async fn write_body(&mut self, data: &[u8]) -> Result<()> {
        H1Session::write_body(self, data).await.map(drop)
    }

    async fn finish_body(&mut self) -> Result<()> {
        H1Session::finish_body(self).await.map(drop)
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        H1Session::response_written(self)
    }

    fn close_after_response(&mut self) {
        // pingora writes the Connection header from this.
        self.set_server_keepalive(None);
    }

    fn as_h1(&mut self) -> Option<&mut H1Session> {
        Some(self)
    }

    fn body_bytes_read(&self) -> usize {
        H1Session::body_bytes_read(self)
    }

    fn body_bytes_sent(&self) -> usize {
        H1Session::body_bytes_sent(self)
    }
}

/// One HTTP/2 stream: pingora's session, with the wait allowed between two pieces of the
/// request body (pingora's HTTP/2 reads have no timeout of their own).
pub(super) struct H2Stream {
    pub(super) session: H2Session,
    pub(super) body_timeout: Duration,
}

impl Downstream for H2Stream {
    const VERSION: Version = Version::HTTP_2;

    fn req_header(&self) -> &RequestHeader {
        self.session.req_header()
    }

    fn is_body_empty(&mut self) -> bool {
        self.session.is_body_empty()
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        let t = self.body_timeout;
        loop {
            let read = match tokio::time::timeout(t, self.session.read_body_bytes()).await {
                Ok(read) => read?,
                Err(_) => {
                    return Error::e_explain(
                        ErrorType::ReadTimedout,
                        format!("client sent no body for {t:?}"),
                    );
                }
            };
            // An empty DATA frame (often the one that ends the stream) is no piece of the body:
            // an empty chunk would end a chunked body to the backend.
            if read.as_ref().is_none_or(|b| !b.is_empty()) {
                return Ok(read);
            }
        }
    }

    /// HTTP/2 has no interim responses here (h2 cannot send them): the client sends its body
    /// after a short wait of its own (RFC 9110 10.1.1).
    async fn write_continue_response(&mut self) -> Result<()> {
        Ok(())
    }

    async fn write_response_header(&mut self, header: Box<ResponseHeader>) -> Result<()> {
        self.session.write_response_header(header, false)
    }

    async fn write_body(&mut self, data: &[u8]) -> Result<()> {
        // The frame owns its bytes until the connection sends it.
        self.session
            .write_body(Bytes::copy_from_slice(data), false)
            .await
    }

    async fn finish_body(&mut self) -> Result<()> {
        self.session.finish()
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        self.session.response_written()
    }

    fn close_after_response(&mut self) {}

    fn as_h1(&mut self) -> Option<&mut H1Session> {
        None
    }

    fn body_bytes_read(&self) -> usize {
        self.session.body_bytes_read()
    }

    fn body_bytes_sent(&self) -> usize {
        self.session.body_bytes_sent()
    }
}
