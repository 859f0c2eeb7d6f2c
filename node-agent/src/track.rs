//! `track.httpGet`: a VirtualIP's HTTP(S) GET probe (kubelet's `httpGet` probe), run by the agent
//! beside the VIP's VRRP instance. Every interval the URL is fetched ([`crate::probe`]); the
//! result goes through the rise/fall thresholds of the pools' active checks
//! ([`crate::proxy::active`]) and the condition reaches the instance with the data path. It fails
//! until the first success: a node whose API server never answered does not take the VIP.

use tokio::{net::TcpStream, sync::watch, task::JoinHandle, time::timeout};
use tracing::info;

use crate::{
    probe::{self, HttpGetTrack},
    proxy::active::{ActiveState, Thresholds},
};

/// A running probe: its condition, and the task, stopped when this is dropped.
pub(crate) struct RunningProbe {
    /// Whether the condition holds now.
    pub(crate) ok: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Drop for RunningProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts probing `track` for the VirtualIP `key`.
pub(crate) fn start(key: &str, track: HttpGetTrack) -> RunningProbe {
    let (tx, ok) = watch::channel(false);
    let key = key.to_string();
    let task = tokio::spawn(async move {
        let thresholds = Thresholds {
            healthy: track.success_threshold,
            unhealthy: track.failure_threshold,
        };
        let mut state = ActiveState::starting(false);
        let mut ticker = tokio::time::interval(track.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let passed = once(&track).await;
            if let Some(now) = state.record(&thresholds, passed) {
                info!(virtualip = %key, url = %track.url, ok = now, "tracked HTTP GET changed");
                let _ = tx.send(now);
            }
        }
    });
    RunningProbe { ok, task }
}

/// One request; true when it answered in time with a passing status.
async fn once(track: &HttpGetTrack) -> bool {
    let request = async {
        let stream = TcpStream::connect(track.addr).await.ok()?;
        probe::get(stream, track.addr, &track.get).await
    };
    timeout(track.timeout, request)
        .await
        .ok()
        .flatten()
        .is_some_and(HttpGetTrack::passes)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicU16, Ordering},
        },
        time::Duration,
    };

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTP server that answers every request with the status in `status`.
    async fn server(status: Arc<AtomicU16>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let code = status.load(Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = tcp.read(&mut buf).await;
                    let answer = format!("HTTP/1.1 {code} X\r\nConnection: close\r\n\r\n");
                    let _ = tcp.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn wait_for(ok: &mut watch::Receiver<bool>, want: bool) -> bool {
        tokio::time::timeout(Duration::from_secs(5), ok.wait_for(|v| *v == want))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn fails_until_it_first_passes_then_falls_after_the_threshold() {
        let status = Arc::new(AtomicU16::new(503));
        let addr = server(status.clone()).await;
        let spec = buoy_crds::TrackHttpGet {
            url: format!("http://{addr}/livez"),
            interval: buoy_crds::Duration::from_millis(100),
            timeout: buoy_crds::Duration::from_millis(100),
            failure_threshold: 3,
            success_threshold: 2,
            weight: 0,
        };
        let mut probe = start("t/vip", HttpGetTrack::from_spec(&spec).unwrap());
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(!*probe.ok.borrow(), "a 503 never passes");
        status.store(200, Ordering::Relaxed);
        let since = std::time::Instant::now();
        assert!(wait_for(&mut probe.ok, true).await);
        assert!(
            since.elapsed() >= Duration::from_millis(100),
            "two successes, 100 ms apart"
        );
        status.store(500, Ordering::Relaxed);
        let since = std::time::Instant::now();
        assert!(wait_for(&mut probe.ok, false).await);
        assert!(
            since.elapsed() >= Duration::from_millis(200),
            "three failures, 100 ms apart"
        );
    }
}
