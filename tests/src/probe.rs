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
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Probe {
    pub fn start(ns: &str, target: SocketAddr, every: Duration, max: Duration) -> Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = in_netns(ns, move || {
            let start = Instant::now();
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
                    served_by: probe_once(target, every.max(Duration::from_millis(50))),
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
            handle: Some(handle),
        })
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

/// Summary of a probe run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub total: usize,
    pub failed: usize,
    /// The longest stretch without an answer: from the last success before a failure to the
    /// first success after it.
    pub longest_outage: Duration,
}

pub fn report(samples: &[Sample]) -> Report {
    let mut longest = Duration::ZERO;
    let mut last_ok: Option<Duration> = None;
    let mut in_outage = false;
    for s in samples {
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
                longest_outage: Duration::from_millis(30)
            }
        );
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
