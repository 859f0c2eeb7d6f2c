//! Listening sockets on VIP:port. They are bound with IP_FREEBIND before the VIP is on the
//! interface, so becoming master needs no rebind; the accept loop is ours (not pingora's server)
//! so listeners come and go at run time without a restart.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use buoy_crds::ListenerProtocol;
use socket2::{Domain, Socket, Type};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};

use super::{
    http::{HttpProxy, PoolSlot},
    metrics::ListenerMetrics,
    tcp,
};

/// What a listener serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// `namespace/virtualip/listener@address`, for logs and metrics.
    pub name: String,
    pub addr: SocketAddr,
    pub protocol: ListenerProtocol,
    /// `namespace/pool`.
    pub pool: String,
    pub max_connections: Option<u32>,
    pub keepalive_timeout: Duration,
    pub idle_timeout: Duration,
    /// HTTP: the whole first request header must arrive within this (slow clients are cut).
    pub header_timeout: Duration,
    pub max_header_bytes: u32,
    /// 0: unlimited.
    pub max_body_bytes: u64,
}

/// Binds `addr` even if the address is not (yet) on any interface.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(
        if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        },
        Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    // Transparent: connections keep sending after the VIP left the interface, so a master that
    // just handed over still answers the requests it already read (their source address is no
    // longer local; without it the replies are never sent). Needs CAP_NET_ADMIN; without it
    // those few requests fail at a handover, nothing else changes.
    let transparent = if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
        socket.set_ip_transparent_v4(true)
    } else {
        socket.set_freebind_v6(true)?;
        socket.set_only_v6(true)?;
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
pub struct Listener {
    pub config: ListenerConfig,
    pub pool: PoolSlot,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    pub open_connections: Arc<AtomicUsize>,
}

impl Listener {
    pub fn start(config: ListenerConfig, pool: PoolSlot) -> std::io::Result<Listener> {
        let socket = bind(config.addr)?;
        let (stop, stop_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let metrics = Arc::new(ListenerMetrics::new(&config.name));
        let task = match config.protocol {
            ListenerProtocol::HTTP => {
                let proxy = Arc::new(HttpProxy {
                    pool: pool.clone(),
                    metrics: metrics.clone(),
                    keepalive: config.keepalive_timeout,
                    header_timeout: config.header_timeout,
                    body_timeout: config.idle_timeout,
                    max_header_bytes: config.max_header_bytes as usize,
                    max_body_bytes: config.max_body_bytes,
                    idle: Default::default(),
                });
                tokio::spawn(accept_http(
                    socket,
                    proxy,
                    config.clone(),
                    stop_rx,
                    open.clone(),
                    metrics,
                ))
            }
            ListenerProtocol::TCP => tokio::spawn(accept_tcp(
                socket,
                pool.clone(),
                config.clone(),
                stop_rx,
                open.clone(),
                metrics,
            )),
        };
        info!(listener = %config.name, addr = %config.addr, protocol = ?config.protocol, "listening");
        Ok(Listener {
            config,
            pool,
            stop,
            task: Some(task),
            open_connections: open,
        })
    }

    /// Stops accepting; returns once the accept loop has ended.
    pub async fn stop(mut self) {
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

/// Counts a connection while it lives.
struct OpenGuard(Arc<AtomicUsize>, Arc<ListenerMetrics>);

impl OpenGuard {
    fn new(open: &Arc<AtomicUsize>, metrics: &Arc<ListenerMetrics>) -> Self {
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

/// The listen backlog: how many handshaken clients the kernel queues for `accept`.
const BACKLOG: i32 = 4096;

/// The next client to serve, or `None` once the listener is stopped. Accept errors (EMFILE and
/// friends) back off instead of spinning; clients beyond `maxConnections` are refused. At the
/// stop, clients whose handshake the kernel has already completed are still taken (closing the
/// socket would reset them): a client whose SYN reached this node just before its VIP moved
/// gets its answer, as one accepted a moment earlier does. At most a backlog's worth: clients
/// that keep connecting must not keep a stopped listener open.
async fn next_client(
    socket: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    config: &ListenerConfig,
    open: &AtomicUsize,
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
                let full = config
                    .max_connections
                    .is_some_and(|max| open.load(Ordering::Relaxed) >= max as usize);
                if !full {
                    return Some((client, peer));
                }
                debug!(listener = %config.name, %peer, "at maxConnections; refusing");
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
    config: ListenerConfig,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    metrics: Arc<ListenerMetrics>,
) {
    // Flips when this listener stops, so that idle keep-alive connections end.
    let (stopped_tx, stopped) = watch::channel(false);
    let mut late = 0;
    while let Some((tcp, peer)) = next_client(&socket, &mut stop, &config, &open, &mut late).await {
        let guard = OpenGuard::new(&open, &metrics);
        let (proxy, stopped) = (proxy.clone(), stopped.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let stream = Box::new(super::buffered::Buffered::new(tcp));
            proxy.serve(stream, peer, stopped).await;
        });
    }
    let _ = stopped_tx.send(true);
}

async fn accept_tcp(
    socket: TcpListener,
    pool: PoolSlot,
    config: ListenerConfig,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    metrics: Arc<ListenerMetrics>,
) {
    let mut late = 0;
    while let Some((client, peer)) =
        next_client(&socket, &mut stop, &config, &open, &mut late).await
    {
        let guard = OpenGuard::new(&open, &metrics);
        let Ok(current) = pool.lock().map(|p| p.clone()) else {
            continue;
        };
        let idle = config.idle_timeout.min(current.config.timeouts.idle);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let started = std::time::Instant::now();
            tcp::serve(current, client, peer, idle).await;
            metrics.observe(0, started.elapsed(), 0);
        });
    }
}
