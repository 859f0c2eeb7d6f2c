//! Client-side measurement: a TCP probe every few milliseconds through the VIP, and small
//! responders on the hosts that answer with their name, so the probe also sees who served it.
//! Every loop is bounded in time and count.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::netlab::in_netns;

/// A TCP server in a namespace that writes `name\n` to every connection.
pub struct Responder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn start(ns: &str, port: u16, name: &str) -> Result<Responder> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), format!("{name}\n"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = in_netns(ns, move || {
            // [::] with IPV6_V6ONLY off (Linux default) accepts IPv4 too; the VIP may not exist
            // yet, and a wildcard bind needs none.
            let listener = match TcpListener::bind(("::", port)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = listener.set_nonblocking(true);
            let _ = ready_tx.send(Ok(()));
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(name.as_bytes());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Responder {
                stop,
                handle: Some(handle),
            }),
            Ok(Err(e)) => anyhow::bail!("responder on port {port}: {e}"),
            Err(_) => anyhow::bail!("responder thread died"),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One probe: when it started (since the probe began) and who answered (None: it failed).
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Duration,
    pub served_by: Option<String>,
}

/// Probes `target` every `every` from namespace `ns` until stopped or `max` elapsed.
pub struct Probe {
    stop: Arc<AtomicBool>,
    started: Instant,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Probe {
    pub fn start(ns: &str, target: SocketAddr, every: Duration, max: Duration) -> Result<Probe> {
        Probe::start_with(ns, target, every, max, probe_once)
    }

    /// Like [`Probe::start`], with an HTTP GET per probe (a new connection each, as a browser
    /// without keep-alive); a sample succeeds on a 200, answered by the body's first line.
    pub fn start_http(
        ns: &str,
        target: SocketAddr,
        every: Duration,
        max: Duration,
    ) -> Result<Probe> {
        Probe::start_with(ns, target, every, max, probe_once_http)
    }

    fn start_with(
        ns: &str,
        target: SocketAddr,
        every: Duration,
        max: Duration,
        once: fn(SocketAddr, Duration) -> Option<String>,
    ) -> Result<Probe> {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = in_netns(ns, move || {
            let start = started;
            let mut samples = Vec::new();
            let mut next = start;
            let max_count = (max.as_micros() / every.as_micros().max(1)) as usize + 1;
            while !s.load(Ordering::Relaxed) && start.elapsed() < max && samples.len() < max_count {
                let now = Instant::now();
                if now < next {
                    thread::sleep(next - now);
                }
                let at = start.elapsed();
                samples.push(Sample {
                    at,
                    served_by: once(target, every.max(Duration::from_millis(50))),
                });
                next += every;
                // A slow probe skips the slots it overran rather than bursting to catch up.
                while next < Instant::now() {
                    next += every;
                }
            }
            samples
        })?;
        Ok(Probe {
            stop,
            started,
            handle: Some(handle),
        })
    }

    /// When the probe started: samples' `at` count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops and returns the samples.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn probe_once(target: SocketAddr, timeout: Duration) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&target, timeout).ok()?;
    conn.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
    let s = String::from_utf8(got).ok()?;
    let name = s.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// One GET with its own connection. The connect timeout is short (a dead address must not hide
/// the moment it comes back); an established request gets longer (300 ms: a LAN answer takes
/// milliseconds), but not so long that a request lost with a dead master stalls the probe past
/// the failover it measures. Like curl or a browser, it is done once `Content-Length` bytes of body
/// have arrived: a reset after a complete response (the client's last ACK reaching the node that
/// just took the VIP over) is not a failed request.
fn probe_once_http(target: SocketAddr, timeout: Duration) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&target, timeout).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    conn.write_all(
        format!("GET / HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).ok()?;
        raw.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(&raw) {
            let length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                });
            let complete = match length {
                Some(len) => raw.len() >= head + len,
                None => n == 0,
            };
            if complete {
                if resp.code != Some(200) {
                    return None;
                }
                let body = String::from_utf8_lossy(&raw[head..]);
                return body.lines().next().map(str::to_string);
            }
        }
        if n == 0 {
            return None;
        }
    }
}

/// Keep-alive HTTP clients that read slowly: `connections` connections, each asking for `path`
/// again `pause` after its previous answer, reading `chunk` bytes every `read_every` (so that a
/// large response stays in flight, its ACKs flowing, for a while). Like curl or a browser, a
/// client whose idle connection the server closed (a FIN before any byte of the answer, or a
/// `Connection: close`) opens a new one and asks again; a reset, a timeout or a cut answer is a
/// failed request.
pub struct KeepAliveProbe {
    stop: Arc<AtomicBool>,
    started: Instant,
    handles: Vec<JoinHandle<Vec<Sample>>>,
}

/// How [`KeepAliveProbe`] clients behave.
#[derive(Clone, Debug)]
pub struct KeepAliveLoad {
    pub connections: usize,
    pub path: String,
    pub pause: Duration,
    pub chunk: usize,
    pub read_every: Duration,
    /// How long the probe runs at most.
    pub max: Duration,
}

impl KeepAliveProbe {
    pub fn start(ns: &str, target: SocketAddr, load: &KeepAliveLoad) -> Result<KeepAliveProbe> {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..load.connections {
            let (s, load) = (stop.clone(), load.clone());
            handles.push(in_netns(ns, move || {
                keep_alive_client(target, &load, &s, started)
            })?);
        }
        Ok(KeepAliveProbe {
            stop,
            started,
            handles,
        })
    }

    /// When the probe started: samples' `at` count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops and returns every client's samples, in time order.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Sample> = self
            .handles
            .drain(..)
            .filter_map(|h| h.join().ok())
            .flatten()
            .collect();
        all.sort_by_key(|s| s.at);
        all
    }
}

impl Drop for KeepAliveProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// What one request on a keep-alive connection came to.
enum Answer {
    /// Answered by `String`; `true`: the server closes the connection after it.
    Served(String, bool),
    /// The server had closed the (reused) connection before the request: ask again elsewhere.
    Closed,
    Failed,
}

fn keep_alive_client(
    target: SocketAddr,
    load: &KeepAliveLoad,
    stop: &AtomicBool,
    started: Instant,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut conn: Option<TcpStream> = None;
    let max_count = (load.max.as_millis() / load.pause.as_millis().max(1)) as usize + 1;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < load.max && samples.len() < max_count
    {
        let at = started.elapsed();
        let mut served_by = None;
        // A reused connection the server closed meanwhile is asked again on a new one, once.
        for _ in 0..2 {
            let reused = conn.is_some();
            let c = match conn.take() {
                Some(c) => c,
                None => match small_window_connect(target) {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            match ask(&c, target, load) {
                Answer::Served(name, close) => {
                    served_by = Some(name);
                    if !close {
                        conn = Some(c);
                    }
                    break;
                }
                Answer::Closed if reused => continue,
                Answer::Closed | Answer::Failed => break,
            }
        }
        samples.push(Sample { at, served_by });
        thread::sleep(load.pause);
    }
    samples
}

/// A connection with a small receive buffer: a slow reader then holds the transfer on the
/// wire (the server sends as the window opens), not in its kernel's buffer.
fn small_window_connect(target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_recv_buffer_size(4096)?;
    socket.connect_timeout(&target.into(), Duration::from_millis(300))?;
    Ok(socket.into())
}

/// One GET on `conn`, read `load.chunk` bytes at a time.
fn ask(mut conn: &TcpStream, target: SocketAddr, load: &KeepAliveLoad) -> Answer {
    // Closed by the server while idle: a FIN waiting to be read (as curl checks before reuse).
    let _ = conn.set_nonblocking(true);
    let mut probe = [0u8; 1];
    let idle_closed = matches!(conn.peek(&mut probe), Ok(0));
    let _ = conn.set_nonblocking(false);
    if idle_closed {
        return Answer::Closed;
    }
    if conn.set_read_timeout(Some(Duration::from_secs(2))).is_err()
        || conn
            .write_all(format!("GET {} HTTP/1.1\r\nHost: {target}\r\n\r\n", load.path).as_bytes())
            .is_err()
    {
        return Answer::Failed;
    }
    let mut raw = Vec::new();
    let mut buf = vec![0u8; load.chunk.max(1)];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) if raw.is_empty() => return Answer::Closed,
            Ok(n) => n,
            Err(_) => return Answer::Failed,
        };
        raw.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(&raw) {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::trim)
            };
            let Some(length) = header("content-length").and_then(|l| l.parse::<usize>().ok())
            else {
                return Answer::Failed;
            };
            if raw.len() >= head + length {
                if resp.code != Some(200) {
                    return Answer::Failed;
                }
                let close = header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
                let body = String::from_utf8_lossy(&raw[head..]);
                return match body.lines().next() {
                    Some(name) => Answer::Served(name.to_string(), close),
                    None => Answer::Failed,
                };
            }
        }
        if n == 0 {
            return Answer::Failed;
        }
        thread::sleep(load.read_every);
    }
}

/// Summary of a probe run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub total: usize,
    pub failed: usize,
    /// The longest stretch without an answer: from the last success before a failure to the
    /// first success after it.
    pub longest_outage: Duration,
    /// The longest time between two consecutive answers, failures or not: the probe's own
    /// interval when nothing was held up.
    pub widest_between_answers: Duration,
}

/// How long after `event` (counted like the samples' `at`) the last probe failed: the time
/// until every path answered again, when some paths kept answering meanwhile (ECMP: the flows
/// hashed to a live node succeed throughout, so the longest outage says little). Zero when
/// nothing failed after it.
pub fn failing_for_after(samples: &[Sample], event: Duration) -> Duration {
    samples
        .iter()
        .filter(|s| s.served_by.is_none() && s.at >= event)
        .map(|s| s.at - event)
        .max()
        .unwrap_or(Duration::ZERO)
}

pub fn report(samples: &[Sample]) -> Report {
    let mut longest = Duration::ZERO;
    let mut last_ok: Option<Duration> = None;
    let mut in_outage = false;
    let mut widest = Duration::ZERO;
    for s in samples {
        if s.served_by.is_some()
            && let Some(ok) = last_ok
        {
            widest = widest.max(s.at.saturating_sub(ok));
        }
        match (&s.served_by, in_outage) {
            (Some(_), true) => {
                longest = longest.max(s.at - last_ok.unwrap_or(Duration::ZERO));
                in_outage = false;
                last_ok = Some(s.at);
            }
            (Some(_), false) => last_ok = Some(s.at),
            (None, _) => in_outage = true,
        }
    }
    if in_outage && let Some(last) = samples.last() {
        longest = longest.max(last.at - last_ok.unwrap_or(Duration::ZERO));
    }
    Report {
        total: samples.len(),
        failed: samples.iter().filter(|s| s.served_by.is_none()).count(),
        longest_outage: longest,
        widest_between_answers: widest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64, ok: bool) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            served_by: ok.then(|| "n1".to_string()),
        }
    }

    #[test]
    fn outage_is_measured_between_successes() {
        let r = report(&[
            s(0, true),
            s(10, false),
            s(20, false),
            s(30, true),
            s(40, true),
        ]);
        assert_eq!(
            r,
            Report {
                total: 5,
                failed: 2,
                longest_outage: Duration::from_millis(30),
                widest_between_answers: Duration::from_millis(30),
            }
        );
        let steady = report(&[s(0, true), s(10, true), s(25, true), s(35, true)]);
        assert_eq!(steady.longest_outage, Duration::ZERO);
        assert_eq!(steady.widest_between_answers, Duration::from_millis(15));
        assert_eq!(
            report(&[s(0, true), s(10, true)]).longest_outage,
            Duration::ZERO
        );
        assert_eq!(
            report(&[s(0, true), s(10, false)]).longest_outage,
            Duration::from_millis(10)
        );
    }
}
