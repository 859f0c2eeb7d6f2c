//! Child processes that never outlive the test that started them.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// A running child whose stderr and stdout are collected line by line. Killed (SIGKILL) on drop
/// unless it already exited, with its own children: nginx's workers outlive a killed master
/// otherwise (re-parented to init, and found still running after the tests). It stays in the
/// test's process group, so that Ctrl-C on a test run still reaches it.
pub struct Proc {
    pub name: String,
    child: Child,
    /// Set once the child is reaped: from then on its pid may be another process's.
    status: Option<ExitStatus>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> std::io::Result<Proc> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            status: None,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until a printed line contains `needle`; returns that line.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.output().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal (e.g. `libc::SIGTERM`), unless the child has been reaped (its pid may be
    /// another process's by then).
    pub fn signal(&self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe {
                libc::kill(self.child.id() as i32, signal);
            }
        }
    }

    /// Waits for the child to exit; returns its exit code (None when killed by a signal or still
    /// running at the timeout).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_reap() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn running(&mut self) -> bool {
        self.try_reap().is_none()
    }

    /// The child's exit status once it has exited (and is reaped).
    fn try_reap(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Its children are read while they are still its own, then all are killed.
            for pid in with_children(self.child.id()).into_iter().rev() {
                // SAFETY: kill(2) on our unreaped child and on its children.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            let _ = self.child.wait();
        }
    }
}

/// `buoy-agent proxy` (the binary at `agent`) serving a YAML configuration, for the proxy's
/// tests: started, and ready to accept, when returned.
pub struct ProxyProcess {
    pub process: Proc,
    /// Holds the configuration file; removed after the process (fields drop in order).
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Runs `agent proxy --threads 2` on `yaml`; waits until it listens (panics after 10 s
    /// with its output). `BUOY_TEST_AGENT` names another build of the agent to run instead (the
    /// profile-guided release build: scripts/test runs the proxy's tests on it too).
    pub fn start(agent: &str, yaml: &str) -> ProxyProcess {
        let agent = std::env::var("BUOY_TEST_AGENT").unwrap_or_else(|_| agent.to_string());
        let dir = tempfile::Builder::new()
            .prefix("buoy-proxy-")
            .tempdir()
            .expect("a temporary directory");
        let file = dir.path().join("buoy.yaml");
        std::fs::write(&file, yaml).expect("the configuration written");
        let mut cmd = Command::new(&agent);
        cmd.args(["proxy", "--threads", "2", "--config"]).arg(&file);
        let p = Proc::spawn("proxy", cmd).expect("the proxy started");
        assert!(
            p.wait_for_line("proxy ready", Duration::from_secs(10))
                .is_some(),
            "{:?}",
            p.output()
        );
        ProxyProcess {
            process: p,
            _dir: dir,
        }
    }
}

/// Path of a workspace binary built next to the running program (`target/<profile>/NAME`), from
/// a test (`target/<profile>/deps/test-binary`) or another binary (`target/<profile>/demo`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent();
    if dir.and_then(|d| d.file_name()).is_some_and(|n| n == "deps") {
        dir = dir.and_then(|d| d.parent());
    }
    dir.map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A process and its direct children (nginx's master and workers, keepalived's parent and VRRP
/// child).
fn with_children(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    all.extend(
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok()),
    );
    all
}

/// Resident memory of a process and its direct children, in MB.
pub fn rss_mb(pid: u32) -> f64 {
    let rss = |p: u32| -> f64 {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("VmRSS:").map(|v| {
                        v.trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<f64>()
                            .unwrap_or(0.0)
                    })
                })
            })
            .unwrap_or(0.0)
    };
    with_children(pid).into_iter().map(rss).sum::<f64>() / 1024.0
}

/// CPU time (user, system) used so far by a process and its direct children, in seconds.
pub fn cpu_seconds(pid: u32) -> (f64, f64) {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    with_children(pid)
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the command name (which may contain spaces): utime is the 12th.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((
                f.get(11)?.parse::<f64>().ok()?,
                f.get(12)?.parse::<f64>().ok()?,
            ))
        })
        .fold((0.0, 0.0), |(u, s), (pu, ps)| {
            (u + pu / ticks, s + ps / ticks)
        })
}
