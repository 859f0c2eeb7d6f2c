//! Debian's nginx as a test backend and benchmark peer, run in the foreground in a lab host.

use std::path::Path;

use anyhow::{Context, Result};

use crate::netlab::Lab;

/// Writes `DIR/NAME.conf` (the pid file and error log under `DIR`, then `rest`: the `events`
/// and `http` blocks) and runs nginx with it on `host`; returns the process index in the lab.
pub fn spawn(
    lab: &mut Lab,
    host: &str,
    dir: &Path,
    name: &str,
    worker_processes: &str,
    rest: &str,
) -> Result<usize> {
    let d = dir.display().to_string();
    std::fs::create_dir_all(dir.join("logs")).context("nginx log directory")?;
    let conf = format!("{d}/{name}.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes {worker_processes};\npid {d}/{name}.pid;\nerror_log {d}/logs/{name}.log;\n{rest}"
        ),
    )
    .with_context(|| format!("writing {conf}"))?;
    lab.spawn(host, "nginx", &["-p", &d, "-c", &conf, "-g", "daemon off;"])
}
