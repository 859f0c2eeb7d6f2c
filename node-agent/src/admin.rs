//! The agent's admin endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz` and `/status`
//! (this node's VirtualIPs as JSON, what `buoy-agent` users look at instead of keepalived's
//! notify scripts). Served by pingora, like the proxy.
//!
//! It is for the node's operators, not the VIPs' clients: it listens on the node's own address
//! by default (127.0.0.1 standalone, the pod's host IP in a cluster), a connection that arrives
//! on a VIP is closed even if it listens on every address, connections are capped, and
//! `/status` says what an operator needs (states, reasons, the foreign routers' addresses)
//! and never a password or a Secret.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::{
    apps::{ServerApp, http_app::ServeHttp},
    protocols::{http::ServerSession, l4::stream::Stream},
};
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, warn};

use crate::{agent::NodeStatus, metrics::Registry};

pub(crate) struct Admin {
    /// Set once the first configuration has been applied.
    pub ready: AtomicBool,
    pub status: watch::Receiver<NodeStatus>,
    /// What `/metrics` serves.
    registry: Registry,
    open: AtomicUsize,
}

/// Concurrent admin connections (Prometheus and a probe or two need a handful).
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// A request must arrive within this, and the connection closes after this much idling.
const IDLE: Duration = Duration::from_secs(10);

impl Admin {
    pub(crate) fn new(status: watch::Receiver<NodeStatus>, registry: Registry) -> Admin {
        Admin {
            ready: AtomicBool::new(false),
            status,
            registry,
            open: AtomicUsize::new(0),
        }
    }
}

fn status_json(status: &NodeStatus) -> serde_json::Value {
    status
        .iter()
        .map(|(key, s)| {
            let since = s
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (
                key.clone(),
                serde_json::json!({
                    "state": s.state.name(),
                    "priority": s.priority,
                    "reason": s.reason,
                    "sinceUnixSeconds": since,
                    "serving": s.serving,
                    "notServing": s.not_serving,
                    "warnings": s.warnings,
                    "collisions": s.collisions.iter().map(|(ip, why)| (ip.to_string(), serde_json::Value::from(why.clone()))).collect::<serde_json::Map<_, _>>(),
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&r.body().len().to_string()) {
        r.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    r
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        const TEXT: &str = "text/plain; charset=utf-8";
        match session.req_header().uri.path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::metrics::encode(&self.registry).into_bytes(),
            ),
            "/healthz" => reply(StatusCode::OK, TEXT, b"ok\n".to_vec()),
            "/readyz" if self.ready.load(Ordering::Relaxed) => {
                reply(StatusCode::OK, TEXT, b"ok\n".to_vec())
            }
            "/readyz" => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                b"configuration not applied yet\n".to_vec(),
            ),
            "/status" => {
                let body = status_json(&self.status.borrow());
                reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_vec_pretty(&body).unwrap_or_default(),
                )
            }
            _ => reply(StatusCode::NOT_FOUND, TEXT, b"not found\n".to_vec()),
        }
    }
}

/// Serves `admin` on `addr` until the process ends. Connections to an address in `vips` (the
/// VIPs this node serves) are closed at once.
pub(crate) async fn serve(
    addr: SocketAddr,
    admin: Arc<Admin>,
    vips: watch::Receiver<BTreeSet<IpAddr>>,
) -> std::io::Result<()> {
    let socket = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        let (_shutdown_tx, shutdown) = watch::channel(false);
        loop {
            match socket.accept().await {
                Ok((tcp, peer)) => {
                    let to = tcp.local_addr().map(|a| a.ip()).ok();
                    if to.is_some_and(|to| vips.borrow().contains(&to)) {
                        debug!(%peer, "admin endpoint: a connection to a VIP, closed");
                        continue;
                    }
                    if admin.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                        debug!(%peer, "admin endpoint: at its connection limit, closed");
                        continue;
                    }
                    admin.open.fetch_add(1, Ordering::Relaxed);
                    let (admin, shutdown) = (admin.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        let mut stream: pingora_core::protocols::Stream =
                            Box::new(Stream::from(tcp));
                        // A client that sends nothing (or trickles) is not kept.
                        while let Ok(Some(s)) =
                            tokio::time::timeout(IDLE, admin.process_new(stream, &shutdown)).await
                        {
                            stream = s;
                        }
                        admin.open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "admin endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}
