//! Listening sockets on VIP:port. They are bound with IP_FREEBIND before the VIP is on the
//! interface, so becoming master needs no rebind; the accept loop is ours (not pingora's server)
//! so listeners come and go at run time without a restart.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use buoy_crds::{AccessLogFormat, ListenerProtocol};
use socket2::{Domain, Socket, Type};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use super::{
    access_log::{AccessLogSink, AccessLogger, Entry},
    http::{HttpProxy, PoolSlot},
    metrics::{ListenerMetrics, ProxyMetrics},
    route::{RouteConfig, Routes},
    tcp,
    tls::{ServerTls, TlsConfig},
    udp,
};

/// What a listener serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// `namespace/virtualip/listener@address`, for logs and metrics.
    pub name: String,
    /// Where to listen.
    pub addr: SocketAddr,
    /// HTTP or TCP.
    pub protocol: ListenerProtocol,
    /// `namespace/pool`: what no route takes (without it, HTTP answers 404).
    pub pool: Option<String>,
    /// HTTP: the routes by host and path, in the configuration's order.
    pub routes: Vec<RouteConfig>,
    /// What is wrong with its routes (each affects only its route), for status.
    pub problems: Vec<String>,
    /// At this many open client connections, a new one takes the place of the connection that
    /// has waited longest for a request header, or is refused when none waits.
    pub max_connections: u32,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Idle time allowed to a client (TCP: either direction).
    pub idle_timeout: Duration,
    /// HTTP: the whole first request header must arrive within this (slow clients are cut).
    pub header_timeout: Duration,
    /// A write to the client that makes no progress for this long ends the connection (nginx
    /// `send_timeout`).
    pub send_timeout: Duration,
    /// The largest request header accepted (larger: 431).
    pub max_header_bytes: u32,
    /// 0: unlimited.
    pub max_body_bytes: u64,
    /// The access log's format; `None`: no access log.
    pub access_log: Option<AccessLogFormat>,
    /// Connections start with a PROXY protocol header that names the client.
    pub proxy_protocol: bool,
    /// HTTPS: TLS termination.
    pub tls: Option<TlsConfig>,
}

/// The addresses of a client connection: the client's, and the one it connected to (from a
/// PROXY protocol header when the listener takes one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientAddr {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

impl ClientAddr {
    /// The connection's addresses: with `proxy_protocol`, those its header names (or, when it
    /// names none, the connection's own); `None` when it has no valid header (the connection
    /// must close).
    async fn of(
        tcp: &mut tokio::net::TcpStream,
        peer: SocketAddr,
        config: &ListenerConfig,
        timeout: Duration,
    ) -> Option<ClientAddr> {
        let own = ClientAddr {
            peer,
            local: config.addr,
        };
        if !config.proxy_protocol {
            return Some(own);
        }
        match super::proxy_protocol::read(tcp, timeout).await {
            Ok(Some((peer, local))) => Some(ClientAddr { peer, local }),
            Ok(None) => Some(own),
            Err(e) => {
                debug!(listener = %config.name, %peer, error = %e, "closing a connection without a PROXY protocol header");
                None
            }
        }
    }
}

impl ListenerConfig {
    /// Every pool it names (`namespace/pool`): its own, then its routes' (a name may repeat).
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.pool
            .as_deref()
            .into_iter()
            .chain(self.routes.iter().map(|r| r.pool.as_str()))
    }
}

/// A socket of `kind` for `addr` that may bind before the address is on any interface
/// (IP_FREEBIND), so that becoming master needs no rebind; IPv6 sockets are IPv6 only.
pub(super) fn freebind_socket(addr: SocketAddr, kind: Type) -> std::io::Result<Socket> {
    let socket = Socket::new(
        if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        },
        kind,
        None,
    )?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Binds `addr` even if the address is not (yet) on any interface.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = freebind_socket(addr, Type::STREAM)?;
    socket.set_reuse_address(true)?;
    // Transparent: connections keep sending after the VIP left the interface, so a master that
    // just handed over still answers the requests it already read (their source address is no
    // longer local; without it the replies are never sent). Needs CAP_NET_ADMIN; without it
    // those few requests fail at a handover, nothing else changes.
    let transparent = if addr.is_ipv4() {
        socket.set_ip_transparent_v4(true)
    } else {
        socket.set_ip_transparent_v6(true)
    };
    if let Err(e) = transparent {
        debug!(%addr, error = %e, "IP_TRANSPARENT unavailable");
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// A running listener; dropping it stops accepting (established connections finish).
pub(crate) struct Listener {
    pub config: ListenerConfig,
    /// The listener's own pool, if it has one.
    pub pool: Option<PoolSlot>,
    /// Each route's pool, by route.
    pub route_pools: Vec<PoolSlot>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    pub open_connections: Arc<AtomicUsize>,
    /// HTTPS: the acceptor, whose certificates rotate in place.
    tls: Option<Arc<ServerTls>>,
}

impl Listener {
    /// Starts serving `config` with its own pool's slot and its routes' (one per route).
    pub(crate) fn start(
        config: ListenerConfig,
        pool: Option<PoolSlot>,
        route_pools: Vec<PoolSlot>,
        metrics: &ProxyMetrics,
        access_log: &AccessLogSink,
    ) -> std::io::Result<Listener> {
        let log = access_log.logger(config.access_log).map(|l| LogTo {
            logger: l,
            listener: config.name.as_str().into(),
            protocol: config.protocol,
        });
        let (stop, stop_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let metrics = Arc::new(metrics.listener(&config.name));
        let tls = match (&config.tls, config.protocol) {
            (Some(t), ListenerProtocol::HTTPS) => {
                Some(Arc::new(ServerTls::new(t).map_err(std::io::Error::other)?))
            }
            (None, ListenerProtocol::HTTPS) => {
                return Err(std::io::Error::other("an HTTPS listener without tls"));
            }
            _ => None,
        };
        let task = match config.protocol {
            ListenerProtocol::HTTP | ListenerProtocol::HTTPS => {
                let socket = bind(config.addr)?;
                let proxy = Arc::new(HttpProxy {
                    pool: pool.clone(),
                    routes: Routes::compile(&config.routes),
                    route_pools: route_pools.clone(),
                    metrics: metrics.clone(),
                    keepalive: config.keepalive_timeout,
                    header_timeout: config.header_timeout,
                    body_timeout: config.idle_timeout,
                    send_timeout: config.send_timeout,
                    max_header_bytes: config.max_header_bytes as usize,
                    max_body_bytes: config.max_body_bytes,
                    idle: Default::default(),
                    log,
                    https: config.protocol == ListenerProtocol::HTTPS,
                });
                tokio::spawn(accept_http(
                    socket,
                    proxy,
                    tls.clone(),
                    config.clone(),
                    stop_rx,
                    open.clone(),
                    metrics,
                ))
            }
            ListenerProtocol::UDP => tokio::spawn(udp::serve(
                udp::bind(config.addr)?,
                stream_pool(&config, pool.as_ref())?,
                config.clone(),
                stop_rx,
                open.clone(),
                metrics,
                log,
            )),
            ListenerProtocol::TCP => tokio::spawn(accept_tcp(
                bind(config.addr)?,
                stream_pool(&config, pool.as_ref())?,
                config.clone(),
                stop_rx,
                open.clone(),
                metrics,
                log,
            )),
        };
        info!(listener = %config.name, addr = %config.addr, protocol = ?config.protocol, "listening");
        Ok(Listener {
            config,
            pool,
            route_pools,
            stop,
            task: Some(task),
            open_connections: open,
            tls,
        })
    }

    /// Whether `desired` differs from what runs only in its certificates: then
    /// [`Listener::rotate`] makes the change without reopening the listener.
    pub(crate) fn only_certificates_differ(&self, desired: &ListenerConfig) -> bool {
        let (Some(now), Some(next)) = (&self.config.tls, &desired.tls) else {
            return false;
        };
        now != next
            && now.same_settings(next)
            && ListenerConfig {
                tls: None,
                problems: Vec::new(),
                ..self.config.clone()
            } == ListenerConfig {
                tls: None,
                problems: Vec::new(),
                ..desired.clone()
            }
    }

    /// Handshakes from now on use `desired`'s certificates (open connections keep theirs).
    pub(crate) fn rotate(&mut self, desired: &ListenerConfig) {
        if let (Some(tls), Some(next)) = (&self.tls, &desired.tls) {
            tls.rotate(&next.certificates);
            info!(listener = %self.config.name, certificates = next.certificates.len(), "certificates rotated");
        }
        self.config = desired.clone();
    }

    /// The pools whose health is the listener's: its own, or without one, its routes'.
    pub(crate) fn health_pools(&self) -> &[PoolSlot] {
        match &self.pool {
            Some(p) => std::slice::from_ref(p),
            None => &self.route_pools,
        }
    }

    /// Stops accepting; returns once the accept loop has ended.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The pool of a TCP or UDP listener: validation refuses one without (routes are HTTP's).
fn stream_pool(config: &ListenerConfig, pool: Option<&PoolSlot>) -> std::io::Result<PoolSlot> {
    pool.cloned().ok_or_else(|| {
        std::io::Error::other(format!(
            "a {:?} listener needs an upstreamPool",
            config.protocol
        ))
    })
}

/// Where a listener's access log goes, and the listener's name in it.
#[derive(Clone)]
pub(crate) struct LogTo {
    pub logger: AccessLogger,
    pub listener: Arc<str>,
    pub protocol: ListenerProtocol,
}

/// Counts a connection (a UDP flow) while it lives.
pub(super) struct OpenGuard(Arc<AtomicUsize>, Arc<ListenerMetrics>);

impl OpenGuard {
    pub(super) fn new(open: &Arc<AtomicUsize>, metrics: &Arc<ListenerMetrics>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        metrics.connection_opened();
        OpenGuard(open.clone(), metrics.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.connection_closed();
    }
}

/// One client connection, as its listener's limit sees it: whether it waits for a request
/// header (and since when), the header's byte budget, and the signal that evicts it.
#[derive(Default)]
pub(crate) struct ClientConnection {
    /// Milliseconds since the listener started at which it began waiting for a request header
    /// (plus one, so that 0 means busy with a request).
    waiting_since: AtomicU64,
    evict: Notify,
    /// Bytes the request header may still take (`usize::MAX`: no header is being read).
    header_budget: AtomicUsize,
    /// The budget the current header began with.
    header_limit: AtomicUsize,
    /// The header ran past its budget.
    header_too_large: AtomicBool,
}

impl ClientConnection {
    /// The connection waits for its next request header from `epoch_ms`, at most `budget`
    /// bytes of it.
    pub(crate) fn waiting(&self, epoch_ms: u64, budget: usize) {
        self.header_too_large.store(false, Ordering::Relaxed);
        self.header_budget.store(budget, Ordering::Relaxed);
        self.header_limit.store(budget, Ordering::Relaxed);
        self.waiting_since.store(epoch_ms + 1, Ordering::Relaxed);
    }

    /// Whether a byte of the request header being waited for has been read.
    pub(crate) fn header_started(&self) -> bool {
        self.header_budget.load(Ordering::Relaxed) != self.header_limit.load(Ordering::Relaxed)
    }

    /// A request header arrived (or the wait ended).
    pub(crate) fn busy(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
        self.header_budget.store(usize::MAX, Ordering::Relaxed);
    }

    /// Resolves when the listener evicts this connection to admit another.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Whether the last header read ran past its budget.
    pub(crate) fn header_too_large(&self) -> bool {
        self.header_too_large.load(Ordering::Relaxed)
    }

    /// How many of `wanted` bytes a read may take now; `None`: the header budget is spent (the
    /// read must fail: the header is too large).
    pub(crate) fn admit_read(&self, wanted: usize) -> Option<usize> {
        let budget = self.header_budget.load(Ordering::Relaxed);
        if budget == usize::MAX {
            return Some(wanted);
        }
        if budget == 0 {
            self.header_too_large.store(true, Ordering::Relaxed);
            return None;
        }
        Some(wanted.min(budget))
    }

    /// `n` bytes were read.
    pub(crate) fn consumed(&self, n: usize) {
        let budget = self.header_budget.load(Ordering::Relaxed);
        if budget != usize::MAX {
            self.header_budget
                .store(budget.saturating_sub(n), Ordering::Relaxed);
        }
    }
}

/// The client connections of a listener, so that at its limit the one that has waited longest
/// for a request header (an idle keep-alive client, or a slowloris one trickling its header)
/// makes room, as nginx reuses idle connections when it runs out. Registered once per
/// connection; a request costs two atomic stores.
pub(crate) struct Connections {
    epoch: Instant,
    next_id: AtomicU64,
    all: Mutex<HashMap<u64, Arc<ClientConnection>>>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            all: Mutex::default(),
        }
    }
}

impl Connections {
    /// Milliseconds since the listener started (for [`ClientConnection::waiting`]).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn add(&self) -> (u64, Arc<ClientConnection>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(ClientConnection {
            header_budget: AtomicUsize::new(usize::MAX),
            ..ClientConnection::default()
        });
        self.lock().insert(id, c.clone());
        (id, c)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ClientConnection>>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evicts the connection that has waited longest for a request header; returns whether
    /// there was one. Runs only at the limit: a scan of the connections is fine.
    pub(crate) fn evict_longest_waiting(&self) -> bool {
        let all = self.lock();
        let oldest = all
            .values()
            .filter(|c| c.waiting_since.load(Ordering::Relaxed) != 0)
            .min_by_key(|c| c.waiting_since.load(Ordering::Relaxed));
        match oldest {
            Some(c) => {
                // Not evicted twice: it counts as busy until it is gone.
                c.waiting_since.store(0, Ordering::Relaxed);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The listen backlog: how many handshaken clients the kernel queues for `accept`.
const BACKLOG: i32 = 4096;

/// The next client to serve, or `None` once the listener is stopped. Accept errors (EMFILE and
/// friends) back off instead of spinning; a client beyond `maxConnections` takes the place of
/// the connection (among `connections`) that has waited longest for a request, or is refused
/// when every connection is busy. At the
/// stop, clients whose handshake the kernel has already completed are still taken (closing the
/// socket would reset them): a client whose SYN reached this node just before its VIP moved
/// gets its answer, as one accepted a moment earlier does. At most a backlog's worth: clients
/// that keep connecting must not keep a stopped listener open.
async fn next_client(
    socket: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    config: &ListenerConfig,
    open: &AtomicUsize,
    connections: Option<&Connections>,
    taken_after_stop: &mut i32,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        let accepted = if *stop.borrow() {
            if *taken_after_stop >= BACKLOG {
                return None;
            }
            *taken_after_stop += 1;
            queued(socket)?
        } else {
            tokio::select! {
                a = socket.accept() => a,
                // A dropped sender is a stop too (the listener's drop sends one first).
                changed = stop.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return None,
                },
            }
        };
        match accepted {
            Ok((client, peer)) => {
                let full = open.load(Ordering::Relaxed) >= config.max_connections as usize;
                if !full || connections.is_some_and(Connections::evict_longest_waiting) {
                    return Some((client, peer));
                }
                debug!(listener = %config.name, %peer, "at maxConnections, every connection busy; refusing");
            }
            // One queued client that went away (or a signal) says nothing of the others.
            Err(e)
                if *stop.borrow()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                    ) =>
            {
                debug!(listener = %config.name, error = %e, "a queued client went away");
            }
            Err(e) if *stop.borrow() => {
                debug!(listener = %config.name, error = %e, "accept failed while stopping");
                return None;
            }
            Err(e) => {
                warn!(listener = %config.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection already waiting in the accept queue, without waiting for one; `None` when the
/// queue is empty. (tokio's `accept` would wait for the reactor's readiness, which may not have
/// seen the latest arrivals yet.)
fn queued(socket: &TcpListener) -> Option<std::io::Result<(tokio::net::TcpStream, SocketAddr)>> {
    let accepted = socket2::SockRef::from(socket)
        .accept()
        .and_then(|(s, peer)| {
            s.set_nonblocking(true)?;
            let peer = peer
                .as_socket()
                .ok_or_else(|| std::io::Error::other("not an IP peer"))?;
            Ok((tokio::net::TcpStream::from_std(s.into())?, peer))
        });
    match accepted {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        other => Some(other),
    }
}

async fn accept_http(
    socket: TcpListener,
    proxy: Arc<HttpProxy>,
    tls: Option<Arc<ServerTls>>,
    config: ListenerConfig,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    metrics: Arc<ListenerMetrics>,
) {
    // Flips when this listener stops, so that idle keep-alive connections end.
    let (stopped_tx, stopped) = watch::channel(false);
    let connections = Arc::new(Connections::default());
    let shared = Arc::new(config.clone());
    let mut late = 0;
    while let Some((tcp, peer)) = next_client(
        &socket,
        &mut stop,
        &config,
        &open,
        Some(&connections),
        &mut late,
    )
    .await
    {
        let guard = OpenGuard::new(&open, &metrics);
        let (proxy, stopped, connections) = (proxy.clone(), stopped.clone(), connections.clone());
        let shared = shared.clone();
        if let Some(tls) = &tls {
            let tls = tls.clone();
            tokio::spawn(async move {
                let _guard = guard;
                serve_tls(tcp, peer, &tls, &proxy, &shared, stopped, &connections).await;
            });
            continue;
        }
        let task = async move {
            let _guard = guard;
            let mut tcp = tcp;
            let Some(client) = ClientAddr::of(&mut tcp, peer, &shared, proxy.header_timeout).await
            else {
                return;
            };
            let (id, conn) = connections.add();
            // Nothing but the socket is held until the client sends something, and again while
            // a keep-alive connection rests between requests (nginx, too, holds a connection's
            // buffers only while a request is under way): idle clients cost about a kilobyte.
            // The session and its future are allocated when bytes arrive.
            let mut until = tokio::time::Instant::now() + proxy.header_timeout;
            let mut first = true;
            loop {
                conn.waiting(connections.now_ms(), usize::MAX);
                // A peek, not `readable()`: a socket just accepted reads as ready before any
                // byte has come (tokio's readiness starts unknown).
                let mut byte = [0u8; 1];
                let mut stop = stopped.clone();
                let data = tokio::select! {
                    biased;
                    ready = tcp.peek(&mut byte) => ready.is_ok_and(|n| n > 0),
                    () = tokio::time::sleep_until(until) => false,
                    () = conn.evicted() => false,
                    // A connection accepted before the stop gets its first request answered.
                    _ = stop.wait_for(|s| *s), if !first => false,
                };
                if !data {
                    break;
                }
                // h2c with prior knowledge: the connection is HTTP/2 from its first byte.
                if first && super::http::prior_knowledge(&tcp, byte[0], until).await {
                    let stream = Box::new(super::buffered::Buffered::new(tcp));
                    let serve = proxy.clone().serve_h2(
                        stream,
                        client,
                        stopped.clone(),
                        &conn,
                        &connections,
                    );
                    Box::pin(serve).await;
                    break;
                }
                let stream = Box::new(super::buffered::Buffered::limited(tcp, conn.clone()));
                let serve =
                    proxy.serve(stream, client, stopped.clone(), &conn, &connections, first);
                match Box::pin(serve).await {
                    Some(rest) => {
                        (tcp, until) = (rest.tcp, rest.until);
                        first = false;
                    }
                    None => break,
                }
            }
            connections.remove(id);
        };
        tokio::spawn(task);
    }
    let _ = stopped_tx.send(true);
}

/// One HTTPS client: its PROXY protocol header if the listener takes one, the handshake (within
/// the header timeout), then requests until it closes. The handshake is the slow client's
/// first chance to hold a connection, so it counts against the header timeout.
async fn serve_tls(
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: &ServerTls,
    proxy: &Arc<HttpProxy>,
    config: &ListenerConfig,
    stopped: watch::Receiver<bool>,
    connections: &Connections,
) {
    let started = tokio::time::Instant::now();
    let Some(client) = ClientAddr::of(&mut tcp, peer, config, proxy.header_timeout).await else {
        return;
    };
    let (id, conn) = connections.add();
    conn.waiting(connections.now_ms(), usize::MAX);
    let plain = super::buffered::Buffered::limited(tcp, conn.clone());
    let handshake = tokio::select! {
        h = tokio::time::timeout_at(started + proxy.header_timeout, tls.acceptor.tls_handshake(plain)) => h,
        () = conn.evicted() => {
            connections.remove(id);
            return;
        }
    };
    match handshake {
        Ok(Ok(stream)) => {
            use pingora_core::protocols::{ALPN, Ssl};
            let h2 = stream.selected_alpn_proto() == Some(ALPN::H2);
            let stream: pingora_core::protocols::Stream = Box::new(stream);
            if h2 {
                proxy
                    .clone()
                    .serve_h2(stream, client, stopped, &conn, connections)
                    .await;
            } else {
                proxy
                    .serve(stream, client, stopped, &conn, connections, true)
                    .await;
            }
        }
        Ok(Err(e)) => {
            proxy.metrics.handshake_failed();
            debug!(listener = %config.name, %peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            proxy.metrics.handshake_failed();
            debug!(listener = %config.name, %peer, "TLS handshake timed out");
        }
    }
    connections.remove(id);
}

async fn accept_tcp(
    socket: TcpListener,
    pool: PoolSlot,
    config: ListenerConfig,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    metrics: Arc<ListenerMetrics>,
    log: Option<LogTo>,
) {
    let shared = Arc::new(config.clone());
    let mut late = 0;
    while let Some((client, peer)) =
        next_client(&socket, &mut stop, &config, &open, None, &mut late).await
    {
        let guard = OpenGuard::new(&open, &metrics);
        let Ok(current) = pool.lock().map(|p| p.clone()) else {
            continue;
        };
        let timeouts = tcp::Timeouts {
            idle: config.idle_timeout.min(current.config.timeouts.idle),
            client_write: config.send_timeout,
            backend_write: current.config.timeouts.write,
        };
        let (metrics, log) = (metrics.clone(), log.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let started = std::time::Instant::now();
            let mut client = client;
            let Some(peer) = ClientAddr::of(&mut client, peer, &shared, timeouts.idle).await else {
                return;
            };
            let done = tcp::serve(current, client, peer, timeouts).await;
            let elapsed = started.elapsed();
            metrics.observe(0, elapsed, 0);
            if let Some(log) = log {
                log.logger.log(Entry {
                    time: std::time::SystemTime::now(),
                    client: peer.peer,
                    listener: log.listener,
                    protocol: ListenerProtocol::TCP,
                    request: None,
                    status: if done.upstream.is_some() { 200 } else { 502 },
                    bytes_in: done.bytes_in,
                    bytes_out: done.bytes_out,
                    duration: elapsed,
                    upstream: done.upstream,
                    upstream_status: None,
                    attempts: done.attempts,
                });
            }
        });
    }
}
