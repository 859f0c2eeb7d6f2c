//! The agent's admin endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz` and `/status`
//! (this node's VirtualIPs as JSON, what `buoy-agent` users look at instead of keepalived's
//! notify scripts). Served by pingora, like the proxy.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::{
    apps::{ServerApp, http_app::ServeHttp},
    protocols::{http::ServerSession, l4::stream::Stream},
};
use tokio::{net::TcpListener, sync::watch};
use tracing::warn;

use crate::agent::NodeStatus;

pub struct Admin {
    /// Set once the first configuration has been applied.
    pub ready: AtomicBool,
    pub status: watch::Receiver<NodeStatus>,
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
                    "state": s.state,
                    "priority": s.priority,
                    "reason": s.reason,
                    "sinceUnixSeconds": since,
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
                crate::proxy::metrics::encode().into_bytes(),
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

/// Serves `admin` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, admin: Arc<Admin>) -> std::io::Result<()> {
    let socket = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        let (_shutdown_tx, shutdown) = watch::channel(false);
        loop {
            match socket.accept().await {
                Ok((tcp, _)) => {
                    let (admin, shutdown) = (admin.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        let mut next = admin
                            .process_new(Box::new(Stream::from(tcp)), &shutdown)
                            .await;
                        while let Some(s) = next {
                            next = admin.process_new(s, &shutdown).await;
                        }
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
