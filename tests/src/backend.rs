//! Small HTTP and TCP backends for tests and benchmarks: they answer with their name and echo the
//! request headers they received, or misbehave on purpose (502s, slowness, dropped connections).
//! Loopback or namespace addresses only; every connection is served on its own thread.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

/// How an HTTP backend answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with `name\n` and one `header: value` line per request header.
    Echo,
    /// Answers with this status (and the same echo body).
    Status(u16),
    /// Waits this long before answering 200.
    Slow(Duration),
    /// Answers 200, and closes a keep-alive connection that stays idle this long without saying
    /// so beforehand (a backend with a short `keepalive_timeout`).
    DropIdle(Duration),
    /// Sends `100 Continue` interim responses back to back for this long, then 200: a backend
    /// that keeps a proxy reading without ever answering.
    Continues(Duration),
    /// Answers 200 with a body of this many bytes (zeros), written as fast as the connection
    /// takes them: a large download.
    Large(usize),
}

/// A running backend; stops (and closes its listening socket) on drop.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Methods seen, in order.
    pub methods: Arc<Mutex<Vec<String>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Open HTTP connections (by a serial number), for [`Backend::kill`].
    open: Arc<Mutex<HashMap<u64, TcpStream>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Backend {
    /// Starts an HTTP backend on `addr` (port 0 picks one).
    pub fn http(addr: &str, name: &str, behaviour: Behaviour) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let methods = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let open: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let (s, h, m, b, o, name) = (
            stop.clone(),
            hits.clone(),
            methods.clone(),
            behaviour.clone(),
            open.clone(),
            name.to_string(),
        );
        let handle = thread::spawn(move || {
            let mut serial = 0u64;
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        serial += 1;
                        let id = serial;
                        if let (Ok(clone), Ok(mut open)) = (conn.try_clone(), o.lock()) {
                            open.insert(id, clone);
                        }
                        let (h, m, b, o, name, s) = (
                            h.clone(),
                            m.clone(),
                            b.clone(),
                            o.clone(),
                            name.clone(),
                            s.clone(),
                        );
                        thread::spawn(move || {
                            serve_http(conn, &name, &h, &m, &b, &s);
                            // The clone would keep the socket open after we are done with it.
                            if let Ok(mut open) = o.lock() {
                                open.remove(&id);
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(Backend {
            addr,
            hits,
            methods,
            connections,
            stop,
            behaviour,
            open,
            handle: Some(handle),
        })
    }

    /// Starts a TCP echo backend (bytes back until the client half-closes).
    pub fn tcp_echo(addr: &str) -> std::io::Result<Backend> {
        Backend::tcp(addr, |mut conn| {
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = conn.shutdown(std::net::Shutdown::Write);
        })
    }

    /// Starts a TCP backend that sends zeros as fast as each connection takes them, until the
    /// connection breaks (a download a client may stop reading).
    pub fn tcp_firehose(addr: &str) -> std::io::Result<Backend> {
        Backend::tcp(addr, |mut conn| {
            let chunk = [0u8; 64 * 1024];
            while conn.write_all(&chunk).is_ok() {}
        })
    }

    /// A TCP backend running `serve` for each connection, on a thread of its own.
    fn tcp(addr: &str, serve: fn(TcpStream)) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (stop.clone(), hits.clone());
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        h.fetch_add(1, Ordering::Relaxed);
                        thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            serve(conn);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(Backend {
            addr,
            hits,
            methods: Arc::default(),
            connections: Arc::default(),
            stop,
            behaviour: Arc::new(Mutex::new(Behaviour::Echo)),
            open: Arc::default(),
            handle: Some(handle),
        })
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        if let Ok(mut cur) = self.behaviour.lock() {
            *cur = b;
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Stops as a killed process does: the listening socket closes (connections are refused)
    /// and every open connection is cut at once, also kept-alive ones between requests (a plain
    /// drop would answer one more request on each).
    pub fn kill(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let open = self
            .open
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for conn in open.values() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_http(
    conn: TcpStream,
    name: &str,
    hits: &AtomicUsize,
    methods: &Mutex<Vec<String>>,
    behaviour: &Mutex<Behaviour>,
    stop: &AtomicBool,
) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(conn);
    // Keep-alive: one request after another until the client closes or we stop.
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first && let Ok(Behaviour::DropIdle(idle)) = behaviour.lock().map(|b| *b) {
            let _ = reader.get_ref().set_read_timeout(Some(idle));
        }
        first = false;
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let _ = reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(5)));
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let Some(request_line) = head.first() else {
            return;
        };
        let method = request_line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let mut body_len = 0usize;
        let mut chunked = false;
        let mut upgrade = false;
        let mut echo = format!("{name}\n");
        for h in &head[1..] {
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => body_len = v.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "upgrade" => upgrade = v.eq_ignore_ascii_case("websocket"),
                    _ => {}
                }
                echo.push_str(&format!("{k}: {v}\n"));
            }
        }
        let body = if chunked {
            read_chunked(&mut reader)
        } else {
            let mut body = vec![0u8; body_len];
            reader.read_exact(&mut body).ok().map(|()| body)
        };
        let Some(body) = body else {
            return;
        };
        if !body.is_empty() {
            echo.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
        }
        hits.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = methods.lock() {
            m.push(method);
        }
        if upgrade {
            // A WebSocket handshake: 101, then every byte back until the client closes its
            // side, then a last line (which only arrives if half-closes pass through).
            if out
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .is_err()
            {
                return;
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    let _ = out.write_all(b"closed\n");
                    return;
                }
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            return;
        }
        let b = behaviour.lock().map(|b| *b).unwrap_or(Behaviour::Echo);
        if let Behaviour::Large(n) = b {
            let head = format!("HTTP/1.1 200 X\r\nContent-Length: {n}\r\n\r\n");
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![0u8; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                // Fails once the proxy gives up on a client that does not read.
                if out.write_all(&chunk[..k]).is_err() {
                    return;
                }
                left -= k;
            }
            continue;
        }
        let status = match b {
            Behaviour::Echo | Behaviour::DropIdle(_) => 200,
            Behaviour::Status(s) => s,
            Behaviour::Slow(d) => {
                thread::sleep(d);
                200
            }
            Behaviour::Large(_) => 200,
            Behaviour::Continues(d) => {
                let started = std::time::Instant::now();
                while started.elapsed() < d {
                    // Fails once the proxy gives up and closes.
                    if out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                        return;
                    }
                }
                200
            }
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{echo}",
            echo.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A chunked request body, decoded; `None` if the connection broke or the framing is wrong.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

impl crate::netlab::Lab {
    /// An echo HTTP backend named `name` on `addr` (`0.0.0.0:80`, `[::]:80`) inside `host`'s
    /// namespace; panics if it cannot listen.
    pub fn echo_backend(&self, host: &str, addr: &str, name: &str) -> Backend {
        echo_in(&self.host(host).ns, addr, name)
            .unwrap_or_else(|e| panic!("a backend on {host} {addr}: {e}"))
    }

    /// The lab's web servers: an echo backend on port 80 of each of `hosts` (on every IPv4
    /// address, or every IPv6 one with `ipv6`), named after its host.
    pub fn web_backends(&self, hosts: &[&str], ipv6: bool) -> Vec<Backend> {
        let addr = if ipv6 { "[::]:80" } else { "0.0.0.0:80" };
        hosts
            .iter()
            .map(|h| self.echo_backend(h, addr, h))
            .collect()
    }
}

/// An echo HTTP backend named `name` on `addr`, inside the network namespace `ns` (a lab host).
pub fn echo_in(ns: &str, addr: &str, name: &str) -> std::io::Result<Backend> {
    let (addr, name) = (addr.to_string(), name.to_string());
    crate::netlab::in_netns(ns, move || Backend::http(&addr, &name, Behaviour::Echo))
        .map_err(std::io::Error::other)?
        .join()
        .map_err(|_| std::io::Error::other("the backend's thread panicked"))?
}

/// `n` GETs of `/` to `target` from the namespace `ns`, a connection each: the backend that
/// answered each, `"failed"` where none did.
pub fn served_by_from(ns: &str, target: SocketAddr, n: usize) -> Vec<String> {
    crate::netlab::in_netns(ns, move || {
        (0..n)
            .map(|_| {
                request(target, "GET", "/", &[], "")
                    .map_or_else(|| "failed".to_string(), |r| r.served_by().to_string())
            })
            .collect()
    })
    .ok()
    .and_then(|h| h.join().ok())
    .unwrap_or_else(|| vec!["failed".to_string(); n])
}

/// A free TCP port on 127.0.0.1 (racy by nature; good enough for tests on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A response as a test sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The backend that answered (first body line of an echo backend).
    pub fn served_by(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }

    /// A request header as the backend received it (lower-case name).
    pub fn echoed(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .skip(1)
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }
}

/// One HTTP/1.1 request with `Connection: close`; `None` on any transport failure.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut all: Vec<(&str, &str)> = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    conn.write_all(request_bytes(addr, method, path, &all, body).as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    parse_reply(&raw).map(|(reply, _)| reply)
}

fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// A response in `raw` and the bytes it took: the body is what follows the headers, up to
/// Content-Length when there is one. `None` while incomplete.
pub fn parse_reply(raw: &[u8]) -> Option<(Reply, usize)> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    let httparse::Status::Complete(n) = resp.parse(raw).ok()? else {
        return None;
    };
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let end = match headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
    {
        Some(len) if raw.len() >= n + len => n + len,
        Some(_) => return None,
        None => raw.len(),
    };
    Some((
        Reply {
            status: resp.code?,
            headers,
            body: String::from_utf8_lossy(&raw[n..end]).into_owned(),
        },
        end,
    ))
}

/// A client connection kept open between requests (HTTP/1.1 keep-alive), as browsers and
/// connection pools hold them.
pub struct KeepAlive {
    addr: SocketAddr,
    conn: TcpStream,
}

impl KeepAlive {
    /// Connects to `addr` from the network namespace `ns`.
    pub fn connect_in(ns: &str, addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let conn = crate::netlab::in_netns(ns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        })
        .map_err(std::io::Error::other)?
        .join()
        .map_err(|_| std::io::Error::other("the connecting thread panicked"))??;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(KeepAlive { addr, conn })
    }

    /// Connects to `addr` from this process's own network namespace.
    pub fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(KeepAlive { addr, conn })
    }

    /// GET `path` on this connection; the error says how the connection failed (a reset, a
    /// close, a timeout).
    pub fn get(&mut self, path: &str) -> std::io::Result<Reply> {
        self.send("GET", path, "")
    }

    /// A last GET that closes the connection; returns once the proxy has closed its side too.
    pub fn close(mut self, path: &str) -> std::io::Result<Reply> {
        self.conn.write_all(
            request_bytes(self.addr, "GET", path, &[("Connection", "close")], "").as_bytes(),
        )?;
        let mut raw = Vec::new();
        self.conn.read_to_end(&mut raw)?;
        parse_reply(&raw)
            .map(|(reply, _)| reply)
            .ok_or_else(|| std::io::Error::other("no complete response before the close"))
    }

    /// Waits up to `limit` for the server to close the connection; returns how long that took,
    /// `None` if it stayed open. Bytes from the server are an error: none were asked for. The
    /// connection's read timeout stays at `limit`.
    pub fn wait_closed(&mut self, limit: Duration) -> std::io::Result<Option<Duration>> {
        let started = std::time::Instant::now();
        self.conn.set_read_timeout(Some(limit))?;
        let mut byte = [0u8; 1];
        match self.conn.read(&mut byte) {
            Ok(0) => Ok(Some(started.elapsed())),
            Ok(_) => Err(std::io::Error::other(
                "unexpected bytes on an idle connection",
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Any request on this connection, with a body (Content-Length).
    pub fn send(&mut self, method: &str, path: &str, body: &str) -> std::io::Result<Reply> {
        self.conn
            .write_all(request_bytes(self.addr, method, path, &[], body).as_bytes())?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.conn.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a complete response",
                ));
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some((reply, _)) = parse_reply(&raw) {
                return Ok(reply);
            }
        }
    }
}
