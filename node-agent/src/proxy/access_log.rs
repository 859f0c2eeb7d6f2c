//! Access logs (nginx `access_log`): one line per request (HTTP) or connection (TCP) on the
//! agent's standard output, in nginx's `combined` format or as JSON. The request path never
//! waits for the log: entries go into a bounded channel drained by one writer task, and an entry
//! that finds the channel full is dropped and counted.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use buoy_crds::{AccessLogFormat, ListenerProtocol};
use chrono::{DateTime, SecondsFormat, Utc};
use prometheus::IntCounter;
use serde::Serialize;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

/// Entries waiting for the writer; past this, new ones are dropped (a few MB at most).
const QUEUE: usize = 8192;

/// What one request or connection did.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    /// When it ended.
    pub time: SystemTime,
    pub client: SocketAddr,
    pub listener: Arc<str>,
    pub protocol: ListenerProtocol,
    /// HTTP only, as the client sent them.
    pub request: Option<Request>,
    /// The status sent to the client (HTTP; nginx's 499 when the client went away first), or
    /// for TCP as nginx's stream module has it: 200, or 502 when no backend could be reached.
    pub status: u16,
    /// Bytes read from the client: the request header and body (HTTP), the stream (TCP).
    pub bytes_in: u64,
    /// Bytes sent to the client: the response body (HTTP, nginx's `$body_bytes_sent`), the
    /// stream (TCP).
    pub bytes_out: u64,
    pub duration: Duration,
    /// The backend of the last attempt.
    pub upstream: Option<SocketAddr>,
    /// The status of the last backend response (HTTP).
    pub upstream_status: Option<u16>,
    /// Backends tried.
    pub attempts: u32,
}

/// The parts of an HTTP request that are logged.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    pub host: Option<String>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

/// The JSON form of an entry: field names as in the docs.
#[derive(Serialize)]
struct Json<'a> {
    time: String,
    client: String,
    listener: &'a str,
    protocol: &'static str,
    host: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    /// The request's protocol, nginx's `$server_protocol` (`HTTP/1.1`, `HTTP/2.0`).
    version: Option<&'a str>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration: f64,
    upstream: Option<String>,
    upstream_status: Option<u16>,
    attempts: u32,
    referer: Option<&'a str>,
    user_agent: Option<&'a str>,
}

impl Entry {
    /// The line (without its newline) in `format`.
    pub(crate) fn line(&self, format: AccessLogFormat) -> String {
        match format {
            AccessLogFormat::Combined => self.combined(),
            AccessLogFormat::JSON => self.json(),
        }
    }

    /// nginx's `combined`: `$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent"`. A TCP connection has no request:
    /// `"-"`, as nginx logs a request it could not read.
    fn combined(&self) -> String {
        let time: DateTime<Utc> = self.time.into();
        let (request, referer, agent) = match &self.request {
            Some(r) => (
                escape(&format!("{} {} {}", r.method, r.path, r.version)),
                r.referer.as_deref().map_or_else(|| "-".into(), escape),
                r.user_agent.as_deref().map_or_else(|| "-".into(), escape),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        format!(
            "{} - - [{}] \"{request}\" {} {} \"{referer}\" \"{agent}\"",
            self.client.ip(),
            time.format("%d/%b/%Y:%H:%M:%S %z"),
            self.status,
            self.bytes_out,
        )
    }

    fn json(&self) -> String {
        let time: DateTime<Utc> = self.time.into();
        let r = self.request.as_ref();
        let json = Json {
            time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
            client: self.client.to_string(),
            listener: &self.listener,
            protocol: match self.protocol {
                ListenerProtocol::HTTP => "HTTP",
                ListenerProtocol::HTTPS => "HTTPS",
                ListenerProtocol::TCP => "TCP",
                // UDP listeners keep no access log (refused by validation).
                ListenerProtocol::UDP => "UDP",
            },
            host: r.and_then(|r| r.host.as_deref()),
            method: r.map(|r| r.method.as_str()),
            path: r.map(|r| r.path.as_str()),
            version: r.map(|r| r.version.as_str()),
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration: self.duration.as_secs_f64(),
            upstream: self.upstream.map(|u| u.to_string()),
            upstream_status: self.upstream_status,
            attempts: self.attempts,
            referer: r.and_then(|r| r.referer.as_deref()),
            user_agent: r.and_then(|r| r.user_agent.as_deref()),
        };
        // Only strings and numbers: serialising cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }
}

/// nginx's escaping of logged variables: `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => out.push_str(&format!("\\x{b:02X}")),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    out
}

/// The node's access log: the queue every listener writes to, and its writer, started with the
/// first listener that logs.
pub struct AccessLogSink {
    tx: mpsc::Sender<(AccessLogFormat, Entry)>,
    rx: Mutex<Option<mpsc::Receiver<(AccessLogFormat, Entry)>>>,
    dropped: IntCounter,
}

impl AccessLogSink {
    /// A sink whose dropped entries count in `dropped`.
    pub fn new(dropped: IntCounter) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        AccessLogSink {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped,
        }
    }

    /// The logger of one listener (`None`: it does not log). Starts the writer on the first
    /// call that logs (inside the runtime).
    pub(crate) fn logger(&self, format: Option<AccessLogFormat>) -> Option<AccessLogger> {
        let format = format?;
        if let Some(rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(write(rx, tokio::io::stdout()));
        }
        Some(AccessLogger {
            format,
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        })
    }
}

/// A listener's handle on the access log.
#[derive(Clone)]
pub(crate) struct AccessLogger {
    format: AccessLogFormat,
    tx: mpsc::Sender<(AccessLogFormat, Entry)>,
    dropped: IntCounter,
}

impl AccessLogger {
    /// Queues `entry`; drops (and counts) it when the writer is behind.
    pub(crate) fn log(&self, entry: Entry) {
        if self.tx.try_send((self.format, entry)).is_err() {
            self.dropped.inc();
        }
    }
}

/// Writes the queued entries to `out`, as many as are waiting per write.
async fn write(mut rx: mpsc::Receiver<(AccessLogFormat, Entry)>, mut out: impl AsyncWrite + Unpin) {
    let mut batch = Vec::with_capacity(64);
    let mut buf = String::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        buf.clear();
        for (format, entry) in batch.drain(..) {
            buf.push_str(&entry.line(format));
            buf.push('\n');
        }
        // A closed stdout loses the log, never the traffic.
        if out.write_all(buf.as_bytes()).await.is_err() || out.flush().await.is_err() {
            tracing::warn!("access log: standard output is closed; entries are dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_entry() -> Entry {
        Entry {
            // 2026-12-06T09:17:28.250Z
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_548_648_250),
            client: "192.0.2.7:40000".parse().unwrap(),
            listener: "default/web/http@192.0.2.1".into(),
            protocol: ListenerProtocol::HTTP,
            request: Some(Request {
                method: "GET".into(),
                path: "/a?b=\"c\"".into(),
                version: "HTTP/1.1".into(),
                host: Some("example.org".into()),
                referer: None,
                user_agent: Some("curl/8.0".into()),
            }),
            status: 200,
            bytes_in: 78,
            bytes_out: 5,
            duration: Duration::from_micros(2500),
            upstream: Some("10.0.0.2:8080".parse().unwrap()),
            upstream_status: Some(200),
            attempts: 2,
        }
    }

    #[test]
    fn combined_is_nginx_combined() {
        assert_eq!(
            http_entry().line(AccessLogFormat::Combined),
            r#"192.0.2.7 - - [06/Dec/2026:09:17:28 +0000] "GET /a?b=\x22c\x22 HTTP/1.1" 200 5 "-" "curl/8.0""#
        );
        let tcp = Entry {
            protocol: ListenerProtocol::TCP,
            request: None,
            status: 502,
            upstream_status: None,
            ..http_entry()
        };
        assert_eq!(
            tcp.line(AccessLogFormat::Combined),
            r#"192.0.2.7 - - [06/Dec/2026:09:17:28 +0000] "-" 502 5 "-" "-""#
        );
    }

    #[test]
    fn json_has_every_field() {
        let line = http_entry().line(AccessLogFormat::JSON);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-12-06T09:17:28.250Z",
                "client": "192.0.2.7:40000",
                "listener": "default/web/http@192.0.2.1",
                "protocol": "HTTP",
                "host": "example.org",
                "method": "GET",
                "path": "/a?b=\"c\"",
                "version": "HTTP/1.1",
                "status": 200,
                "bytes_in": 78,
                "bytes_out": 5,
                "duration": 0.0025,
                "upstream": "10.0.0.2:8080",
                "upstream_status": 200,
                "attempts": 2,
                "referer": null,
                "user_agent": "curl/8.0",
            })
        );
        assert!(!line.contains('\n'));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let sink = AccessLogSink::new(dropped.clone());
        // The writer is not started: nothing drains the queue.
        let rx = sink.rx.lock().unwrap().take();
        let logger = AccessLogger {
            format: AccessLogFormat::JSON,
            tx: sink.tx.clone(),
            dropped: dropped.clone(),
        };
        for _ in 0..QUEUE + 3 {
            logger.log(http_entry());
        }
        assert_eq!(dropped.get(), 3);
        let (w, mut r) = tokio::io::duplex(8 << 20);
        drop(logger);
        drop(sink);
        write(rx.unwrap(), w).await;
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut r, &mut text)
            .await
            .unwrap();
        assert_eq!(text.lines().count(), QUEUE);
    }
}
