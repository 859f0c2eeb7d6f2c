//! The UDP (L4) proxy, as nginx's `stream` module with `listen … udp`: datagrams from one client
//! address are a flow; a flow gets a backend by the pool's algorithm (keyed by the client's
//! address and port) and a socket connected to it, the backend's replies go back to the client
//! from the listener's socket (so from the VIP), and a flow ends after its idle timeout without a
//! datagram either way. Passive health as nginx: an ICMP error from the backend (a refused
//! port) counts against it, and so does a flow whose datagrams never got a reply.
//!
//! With an access log, each flow is one line when it ends (as nginx's stream module logs a UDP
//! session): 200 when the backend answered, 502 when it did not.
//!
//! Flows are bounded by the listener's `maxConnections`; a datagram beyond that from a new client
//! is dropped and counted, so that spoofed source addresses cannot grow the table or open
//! sockets without bound.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use socket2::Type;
use tokio::{net::UdpSocket, sync::watch, task::JoinHandle, time::Instant};
use tracing::{debug, warn};

use buoy_crds::ListenerProtocol;

use super::{
    access_log::Entry,
    http::PoolSlot,
    listener::{ListenerConfig, LogTo, OpenGuard, freebind_socket},
    metrics::ListenerMetrics,
    pool::Pool,
};

/// The largest datagram relayed (the UDP maximum).
const DATAGRAM: usize = 65_535;

/// Binds `addr` for datagrams even if the address is not (yet) on any interface: replies leave
/// from it, so from the VIP.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = freebind_socket(addr, Type::DGRAM)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// One client's flow: the socket connected to its backend, and when it last carried a datagram.
struct Flow {
    upstream: Arc<UdpSocket>,
    /// Bytes received from the client.
    bytes_in: Arc<AtomicU64>,
    /// Milliseconds since the listener started, at the last datagram either way.
    last: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// Milliseconds since `epoch`.
fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Serves the listener until it stops: relays client datagrams to their flows' backends.
pub(crate) async fn serve(
    socket: UdpSocket,
    pool: PoolSlot,
    config: ListenerConfig,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    metrics: Arc<ListenerMetrics>,
    log: Option<LogTo>,
) {
    let socket = Arc::new(socket);
    let epoch = Instant::now();
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM];
    let max = config.max_connections.max(1) as usize;
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // An ICMP error for an earlier reply to a client, or a transient error:
                    // nothing to do but go on.
                    debug!(listener = %config.name, error = %e, "UDP receive error");
                    continue;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
        };
        let datagram = &buf[..n];
        let now = ms_since(epoch);
        if let Some(f) = flows.get(&client)
            && !f.ended.load(Ordering::Relaxed)
        {
            f.last.store(now, Ordering::Relaxed);
            f.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            if let Err(e) = f.upstream.send(datagram).await {
                debug!(listener = %config.name, %client, error = %e, "UDP send to the backend failed");
            }
            continue;
        }
        flows.remove(&client);
        if flows.len() >= max {
            flows.retain(|_, f| !f.ended.load(Ordering::Relaxed));
            if flows.len() >= max {
                metrics.udp_dropped();
                debug!(listener = %config.name, %client, "at maxConnections flows; datagram dropped");
                continue;
            }
        }
        let Ok(current) = pool.lock().map(|p| p.clone()) else {
            continue;
        };
        let Some(flow) = open_flow(
            current,
            &socket,
            client,
            datagram,
            &config,
            epoch,
            OpenGuard::new(&open, &metrics),
            metrics.clone(),
            log.clone(),
        )
        .await
        else {
            continue;
        };
        flows.insert(client, flow);
    }
    // Stopped: flows end with the listener (the socket is released for a new one).
    for (_, f) in flows {
        f.task.abort();
    }
}

/// A new flow for `client`, its first datagram sent: the backend chosen by the pool, retried on
/// the next one when sending fails at once.
#[allow(clippy::too_many_arguments)]
async fn open_flow(
    pool: Arc<Pool>,
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    first: &[u8],
    config: &ListenerConfig,
    epoch: Instant,
    guard: OpenGuard,
    metrics: Arc<ListenerMetrics>,
    log: Option<LogTo>,
) -> Option<Flow> {
    // A pool with `tls` wants its traffic encrypted, which datagrams cannot be here (no DTLS):
    // none is sent in the clear (the listener says why in its status).
    if pool.config.tls.is_some() {
        return None;
    }
    let key = client.to_string();
    let mut tried = Vec::new();
    loop {
        let i = pool.select(Some(key.as_bytes()), &tried).ok()?;
        tried.push(i);
        let addr = pool.address(i)?;
        match connect(addr).await {
            Ok(upstream) if upstream.send(first).await.is_ok() => {
                let upstream = Arc::new(upstream);
                let last = Arc::new(AtomicU64::new(ms_since(epoch)));
                let ended = Arc::new(AtomicBool::new(false));
                let bytes_in = Arc::new(AtomicU64::new(first.len() as u64));
                let task = tokio::spawn(replies(Replies {
                    pool: pool.clone(),
                    backend: i,
                    upstream: upstream.clone(),
                    listener: listener.clone(),
                    client,
                    idle: config.idle_timeout,
                    epoch,
                    last: last.clone(),
                    ended: ended.clone(),
                    guard,
                    metrics,
                    log,
                    attempts: tried.len() as u32,
                    bytes_in: bytes_in.clone(),
                }));
                return Some(Flow {
                    upstream,
                    bytes_in,
                    last,
                    ended,
                    task,
                });
            }
            Ok(_) | Err(_) => {
                debug!(backend = %addr, %client, "UDP backend unusable; trying the next");
                pool.finished(i, true);
                if tried.len() >= pool.config.backends.len() {
                    return None;
                }
            }
        }
    }
}

/// A socket connected to `backend` (so that its ICMP errors are reported to us).
async fn connect(backend: SocketAddr) -> std::io::Result<UdpSocket> {
    let local = match backend.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(backend).await?;
    Ok(s)
}

/// What a flow's reply task works with.
struct Replies {
    pool: Arc<Pool>,
    backend: usize,
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    idle: Duration,
    epoch: Instant,
    last: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
    guard: OpenGuard,
    metrics: Arc<ListenerMetrics>,
    log: Option<LogTo>,
    /// Backends tried for the first datagram.
    attempts: u32,
    bytes_in: Arc<AtomicU64>,
}

/// Relays the backend's replies to the client until the flow is idle for its timeout or the
/// backend refuses (ICMP); then tells the pool how the backend did.
async fn replies(r: Replies) {
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; DATAGRAM];
    let mut replied = false;
    let mut bytes_out = 0u64;
    let failed = loop {
        let idle_for = Duration::from_millis(ms_since(r.epoch) - r.last.load(Ordering::Relaxed));
        let Some(left) = r.idle.checked_sub(idle_for).filter(|l| !l.is_zero()) else {
            // Idle: a flow whose datagrams never got an answer counts against the backend.
            break !replied;
        };
        tokio::select! {
            got = r.upstream.recv(&mut buf) => match got {
                Ok(n) => {
                    replied = true;
                    bytes_out += n as u64;
                    r.last.store(ms_since(r.epoch), Ordering::Relaxed);
                    if let Err(e) = r.listener.send_to(&buf[..n], r.client).await {
                        debug!(client = %r.client, error = %e, "UDP reply not sent");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    warn!(client = %r.client, backend = ?r.pool.address(r.backend), "UDP backend refused (ICMP port unreachable)");
                    break true;
                }
                Err(e) => {
                    debug!(client = %r.client, error = %e, "UDP receive from the backend failed");
                    break !replied;
                }
            },
            () = tokio::time::sleep(left) => {}
        }
    };
    r.ended.store(true, Ordering::Relaxed);
    r.pool.finished(r.backend, failed);
    let elapsed = started.elapsed();
    r.metrics.observe(0, elapsed, 0);
    if let Some(log) = r.log {
        log.logger.log(Entry {
            time: std::time::SystemTime::now(),
            client: r.client,
            listener: log.listener,
            protocol: ListenerProtocol::UDP,
            request: None,
            status: if replied { 200 } else { 502 },
            bytes_in: r.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            duration: elapsed,
            upstream: r.pool.address(r.backend),
            upstream_status: None,
            attempts: r.attempts,
        });
    }
    drop(r.guard);
}
