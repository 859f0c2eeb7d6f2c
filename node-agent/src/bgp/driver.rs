//! The IO shell around FRR: writes the rendered `frr.conf` and applies it to the running
//! daemons with `frr-reload.py` (a diff of the running configuration, no restart: sessions that
//! did not change stay up), and reads the sessions back through `vtysh`. Nothing here decides
//! what FRR should run ([`super::config`]) or what its JSON means ([`super::state`]).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{process::Command, sync::Mutex};

use super::{
    config::{ConfigError, FrrConfig, render, withdrawals},
    state::{ParseError, SessionState, parse_bfd_peers, parse_neighbors},
};

/// What went wrong talking to FRR.
#[derive(Debug, thiserror::Error)]
pub enum FrrError {
    /// vtysh cannot reach bgpd: FRR is not running, or not where we look for it (pathspace,
    /// vty socket directory).
    #[error("FRR is not running: {0}")]
    NotRunning(String),
    /// frr-reload.py could not apply the configuration.
    #[error("FRR did not take the configuration: {0}")]
    Reload(String),
    /// FRR's JSON was not what we read.
    #[error("unexpected answer from FRR: {0}")]
    Parse(String),
    /// The configuration cannot be rendered.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file or a program of FRR's could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// vtysh or frr-reload.py did not finish in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
}

impl From<ParseError> for FrrError {
    fn from(e: ParseError) -> FrrError {
        FrrError::Parse(e.0)
    }
}

/// FRR as Buoy drives it: where its configuration goes and how vtysh reaches its daemons.
pub struct Frr {
    /// `-N`: the daemons' pathspace, when FRR runs as one of several on the host.
    pathspace: Option<String>,
    /// `--vty_socket`: the directory of the daemons' vty sockets, when not FRR's default.
    vty_socket: Option<PathBuf>,
    /// Where `frr.conf` is written (FRR's configuration directory: FRR reads it at start).
    config_dir: PathBuf,
    /// vtysh (its directory is frr-reload.py's `--bindir`).
    vtysh: PathBuf,
    /// frr-reload.py.
    reload: PathBuf,
    /// What one vtysh or frr-reload.py run may take.
    timeout: Duration,
    /// The configuration last applied, and its text: the same one again is not reloaded.
    applied: Mutex<Option<(FrrConfig, String)>>,
}

impl std::fmt::Debug for Frr {
    /// Without the configuration applied: it holds the peers' passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frr")
            .field("pathspace", &self.pathspace)
            .field("vty_socket", &self.vty_socket)
            .field("config_dir", &self.config_dir)
            .field("vtysh", &self.vtysh)
            .field("reload", &self.reload)
            .finish_non_exhaustive()
    }
}

/// Debian's paths.
const VTYSH: &str = "/usr/bin/vtysh";
const RELOAD: &str = "/usr/lib/frr/frr-reload.py";

impl Frr {
    /// FRR with its configuration in `config_dir` (`/etc/frr` for Debian's service), Debian's
    /// vtysh and frr-reload.py, and the default pathspace and vty sockets.
    pub fn new(config_dir: impl Into<PathBuf>) -> Frr {
        Frr {
            pathspace: None,
            vty_socket: None,
            config_dir: config_dir.into(),
            vtysh: PathBuf::from(VTYSH),
            reload: PathBuf::from(RELOAD),
            timeout: Duration::from_secs(60),
            applied: Mutex::new(None),
        }
    }

    /// The daemons run with `-N name`.
    pub fn pathspace(mut self, name: impl Into<String>) -> Frr {
        self.pathspace = Some(name.into());
        self
    }

    /// vtysh finds the daemons' vty sockets in `dir` (`--vty_socket`), such as a volume
    /// shared with FRR's container; with a pathspace, in its subdirectory `dir/NAME` (where
    /// the daemons were given `--vty_socket dir/NAME`).
    pub fn vty_socket(mut self, dir: impl Into<PathBuf>) -> Frr {
        self.vty_socket = Some(dir.into());
        self
    }

    /// Another vtysh and frr-reload.py than Debian's.
    pub fn programs(mut self, vtysh: impl Into<PathBuf>, reload: impl Into<PathBuf>) -> Frr {
        self.vtysh = vtysh.into();
        self.reload = reload.into();
        self
    }

    /// The file `apply` writes.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("frr.conf")
    }

    /// Renders `config`, writes it and has FRR take it without a restart; does nothing when
    /// it is the configuration last applied. Returns whether FRR was reloaded.
    pub async fn apply(&self, config: &FrrConfig) -> Result<bool, FrrError> {
        let text = render(config)?;
        let mut applied = self.applied.lock().await;
        if applied.as_ref().is_some_and(|(_, t)| *t == text) {
            return Ok(false);
        }
        let started = Instant::now();
        // Written first: an FRR that starts later reads it.
        self.write(&text).await?;
        // frr-reload.py succeeds without bgpd: vtysh leaves out the daemons it cannot reach.
        self.bgpd_answers().await?;
        if let Some(commands) = applied
            .as_ref()
            .and_then(|(old, _)| withdrawals(old, config))
        {
            // Best effort: what is left, frr-reload.py removes.
            if let Err(e) = self.vtysh_file(&commands).await {
                tracing::debug!(error = %e, "FRR: withdrawing in one run failed");
            }
        }
        let file = self.config_file();
        let mut cmd = Command::new(&self.reload);
        cmd.args(["--reload", "--stdout", "--log-level", "warning"])
            .arg("--bindir")
            .arg(self.vtysh.parent().unwrap_or(Path::new("/usr/bin")))
            .arg("--confdir")
            .arg(&self.config_dir);
        if let Some(n) = &self.pathspace {
            cmd.args(["--pathspace", n]);
        }
        if let Some(d) = &self.vty_socket {
            cmd.arg("--vty_socket").arg(d);
        }
        cmd.arg(&file);
        let out = self.run(cmd, "frr-reload.py").await?;
        if !out.status.success() {
            // Forget what was applied: part of the configuration may have been.
            *applied = None;
            self.bgpd_answers().await?;
            return Err(FrrError::Reload(failure(&out)));
        }
        tracing::debug!(elapsed = ?started.elapsed(), "FRR reloaded");
        *applied = Some((config.clone(), text));
        Ok(true)
    }

    /// Runs configuration commands in one vtysh run (`vtysh -f`).
    async fn vtysh_file(&self, commands: &str) -> Result<(), FrrError> {
        let file = self.config_dir.join(".withdraw.buoy");
        tokio::fs::write(&file, commands)
            .await
            .map_err(|source| FrrError::Io {
                what: format!("writing {}", file.display()),
                source,
            })?;
        let mut cmd = self.vtysh_command();
        cmd.arg("-f").arg(&file);
        let out = self.run(cmd, "vtysh").await;
        let _ = tokio::fs::remove_file(&file).await;
        let out = out?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FrrError::Reload(failure(&out)))
        }
    }

    /// Every BGP session and its state, BFD's included when bfdd runs.
    pub async fn sessions(&self) -> Result<Vec<SessionState>, FrrError> {
        let neighbors = self.show("bgpd", "show bgp neighbors json").await?;
        let mut sessions = parse_neighbors(&neighbors)?;
        // Without bfdd the sessions are still reported, without their BFD state.
        if let Ok(peers) = self.show("bfdd", "show bfd peers json").await {
            let bfd = parse_bfd_peers(&peers)?;
            for s in &mut sessions {
                if s.bfd.is_some() {
                    s.bfd = bfd.get(&s.address).copied().or(s.bfd);
                }
            }
        }
        Ok(sessions)
    }

    /// Runs a `show` command in one daemon; `NotRunning` when vtysh cannot reach it.
    async fn show(&self, daemon: &str, command: &str) -> Result<String, FrrError> {
        let mut cmd = self.vtysh_command();
        cmd.args(["-d", daemon, "-c", command]);
        let out = self.run(cmd, "vtysh").await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // The commands are ours and valid: a failure means vtysh did not reach the daemon.
        if !out.status.success() || not_running(&stdout) {
            return Err(FrrError::NotRunning(format!(
                "vtysh cannot reach {daemon} ({})",
                failure(&out)
            )));
        }
        Ok(stdout)
    }

    /// Ok when bgpd answers vtysh.
    async fn bgpd_answers(&self) -> Result<(), FrrError> {
        self.show("bgpd", "show version").await.map(drop)
    }

    fn vtysh_command(&self) -> Command {
        let mut cmd = Command::new(&self.vtysh);
        if let Some(n) = &self.pathspace {
            cmd.args(["-N", n]);
        }
        if let Some(d) = &self.vty_socket {
            cmd.arg("--vty_socket").arg(d);
        }
        cmd
    }

    async fn run(&self, mut cmd: Command, what: &str) -> Result<std::process::Output, FrrError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| FrrError::Io {
            what: format!("running {what}"),
            source,
        })?;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => Err(FrrError::Timeout(what.to_string(), self.timeout)),
            Ok(r) => r.map_err(|source| FrrError::Io {
                what: format!("running {what}"),
                source,
            }),
        }
    }

    /// Writes `frr.conf` whole (a new file renamed over the old one): FRR starting meanwhile
    /// reads the old configuration or the new one, never half of one. Readable by its owner
    /// and group only: it holds the peers' passwords.
    async fn write(&self, text: &str) -> Result<(), FrrError> {
        use std::os::unix::fs::PermissionsExt as _;
        let (file, tmp) = (self.config_file(), self.config_dir.join(".frr.conf.buoy"));
        let io = |what: &str, path: &Path| {
            let what = format!("{what} {}", path.display());
            move |source| FrrError::Io { what, source }
        };
        tokio::fs::create_dir_all(&self.config_dir)
            .await
            .map_err(io("creating", &self.config_dir))?;
        tokio::fs::write(&tmp, text)
            .await
            .map_err(io("writing", &tmp))?;
        tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))
            .await
            .map_err(io("setting the mode of", &tmp))?;
        tokio::fs::rename(&tmp, &file)
            .await
            .map_err(io("replacing", &file))
    }
}

/// vtysh's words for a daemon it cannot reach.
fn not_running(text: &str) -> bool {
    text.contains("is not running")
        || text.contains("failed to connect to any daemons")
        || text.contains("Connection refused")
}

/// What a failed program said, on one line, without the colours frr-reload.py gives errors.
fn failure(out: &std::process::Output) -> String {
    let text = format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // vtysh run with a pathspace complains of the vtysh.conf it lacks: not the failure.
    let text: Vec<&str> = text
        .lines()
        .filter(|l| {
            !l.trim_start()
                .starts_with("% Can't open configuration file")
        })
        .collect();
    let text = text.join("\n");
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An SGR sequence: ESC [ parameters m.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let text = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        format!("exited with {}", out.status)
    } else {
        text
    }
}
