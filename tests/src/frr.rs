//! Debian's FRR (zebra, bgpd, bfdd) run in a lab host, for the BGP tests: a router's side, or
//! the daemons a node's agent drives. Each host's daemons have their own pathspace (`-N`, the
//! host's namespace name: unique between tests and runs) and keep their vty sockets, pid files
//! and zebra's socket in the lab's directory, so that several run at once without sharing a
//! file under /var/run/frr. They are the lab's children (killed when it is dropped). They run
//! as root, which FRR allows only when root is in its `frrvty` group (`scripts/setup` sees to
//! it).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::netlab::Lab;

/// Where Debian's FRR keeps its run-time files and configuration, each pathspace in a
/// subdirectory.
const RUN_DIR: &str = "/var/run/frr";
const CONF_DIR: &str = "/etc/frr";
const DAEMONS: &str = "/usr/lib/frr";
/// The tests' hosts are named by the lab (`buoyt<pid>x<n>-<i>`): what a killed run left is
/// found by its pid.
const PREFIX: &str = "buoyt";

/// One host's FRR.
pub struct Frr {
    pub host: String,
    /// `-N`: the daemons' pathspace.
    pub pathspace: String,
    /// vtysh's `--vty_socket`: with `-N`, vtysh looks in its `pathspace` subdirectory, [`dir`].
    pub vty_socket: PathBuf,
    /// The daemons' vty sockets (their `--vty_socket`), pid files, zebra's socket and
    /// configuration files.
    pub dir: PathBuf,
    /// The daemons' process indices in the lab.
    pub zebra: usize,
    pub bgpd: usize,
    pub bfdd: usize,
}

impl Frr {
    /// Starts zebra, then bgpd and bfdd, on `host` with the `datacenter` profile (the one
    /// Buoy's configuration names) and no configuration; returns once bgpd and bfdd answer
    /// vtysh (fails after 10 s).
    pub fn start(lab: &mut Lab, host: &str) -> Result<Frr> {
        sweep_stale();
        let pathspace = lab.host(host).ns.clone();
        let vty_socket = lab.dir().join("frr");
        let dir = vty_socket.join(&pathspace);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let empty = dir.join("empty.conf");
        std::fs::write(&empty, "").context("an empty configuration")?;
        let zserv = dir.join("zserv.api");
        let d = |p: &Path| p.display().to_string();
        let common = |daemon: &str| -> Vec<String> {
            [
                "-N",
                &pathspace,
                "--vty_socket",
                &d(&dir),
                "-u",
                "root",
                "-g",
                "root",
                "-F",
                "datacenter",
                "-i",
                &d(&dir.join(format!("{daemon}.pid"))),
                "-f",
                &d(&empty),
                "-z",
                &d(&zserv),
                // No vty on TCP: vtysh goes through the sockets.
                "-P",
                "0",
                "--log",
                "stdout",
                "--log-level",
                "info",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let mut frr = Frr {
            host: host.to_string(),
            pathspace: pathspace.clone(),
            vty_socket,
            dir: dir.clone(),
            zebra: 0,
            bgpd: 0,
            bfdd: 0,
        };
        frr.zebra = spawn(lab, host, "zebra", common("zebra"))?;
        frr.wait_for("zebra", lab)?;
        let mut bfdd = common("bfdd");
        bfdd.extend(["--bfdctl".to_string(), d(&dir.join("bfdd.sock"))]);
        frr.bfdd = spawn(lab, host, "bfdd", bfdd)?;
        frr.bgpd = spawn(lab, host, "bgpd", common("bgpd"))?;
        frr.wait_for("bfdd", lab)?;
        frr.wait_for("bgpd", lab)?;
        Ok(frr)
    }

    /// Waits until `daemon` answers vtysh.
    fn wait_for(&self, daemon: &str, lab: &Lab) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.vtysh_in(daemon, "show version") {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "{daemon} on {} does not answer: {e:#}\n{}",
                        self.host,
                        lab.logs()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("vtysh");
        cmd.args(["-N", &self.pathspace])
            .arg("--vty_socket")
            .arg(&self.vty_socket);
        cmd
    }

    /// Runs `cmd` in every daemon (vtysh's usual way); fails with what vtysh printed.
    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        let mut c = self.command();
        c.args(["-c", cmd]);
        run(c, cmd)
    }

    /// Runs `cmd` in one daemon.
    pub fn vtysh_in(&self, daemon: &str, cmd: &str) -> Result<String> {
        let mut c = self.command();
        c.args(["-d", daemon, "-c", cmd]);
        run(c, cmd)
    }

    /// A `show … json` command's answer (from the daemon that answers it).
    pub fn json(&self, cmd: &str) -> Result<serde_json::Value> {
        let text = self.vtysh(cmd)?;
        serde_json::from_str(&text).with_context(|| format!("{cmd} printed {text}"))
    }

    /// The communities this router received with `prefix` (FRR's text, such as
    /// `graceful-shutdown`); `None` when it has no route to it.
    pub fn communities(&self, prefix: &str) -> Option<Vec<String>> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let route = self
            .json(&format!("show bgp {family} unicast {prefix} json"))
            .ok()?;
        let paths = route.get("paths")?.as_array()?;
        Some(
            paths
                .iter()
                .filter_map(|p| p.pointer("/community/string").and_then(|s| s.as_str()))
                .flat_map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
                .collect(),
        )
    }

    /// Whether this router's BFD session with `peer` is up.
    pub fn bfd_up(&self, peer: &str) -> bool {
        self.json("show bfd peers json")
            .ok()
            .and_then(|v| {
                v.as_array().map(|peers| {
                    peers.iter().any(|p| {
                        p.get("peer").and_then(|a| a.as_str()) == Some(peer)
                            && p.get("status").and_then(|s| s.as_str()) == Some("up")
                    })
                })
            })
            .unwrap_or(false)
    }

    /// Applies configuration commands (`frr.conf` syntax) on top of what runs, as `vtysh -f`.
    pub fn configure(&self, config: &str) -> Result<()> {
        let file = self.dir.join("configure.conf");
        std::fs::write(&file, config).context("writing the commands")?;
        let mut c = self.command();
        c.arg("-f").arg(&file);
        run(c, "vtysh -f").map(drop)
    }

    /// What `frr-reload.py` would change to make the running configuration `file`: the lines
    /// it would remove, and those it would add (each with its context, as it prints them).
    pub fn reload_diff(&self, file: &Path) -> Result<(Vec<String>, Vec<String>)> {
        let mut c = Command::new(format!("{DAEMONS}/frr-reload.py"));
        c.args(["--test", "--pathspace", &self.pathspace])
            .arg("--vty_socket")
            .arg(&self.vty_socket)
            .arg("--confdir")
            .arg(file.parent().unwrap_or(Path::new(CONF_DIR)))
            .arg(file);
        let out = c.output().context("running frr-reload.py")?;
        if !out.status.success() {
            bail!(
                "frr-reload.py --test: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (mut delete, mut add, mut section) = (Vec::new(), Vec::new(), None);
        for line in text.lines() {
            match line.trim() {
                "Lines To Delete" => section = Some(true),
                "Lines To Add" => section = Some(false),
                "" => {}
                l if l.chars().all(|c| c == '=') => {}
                _ => match section {
                    Some(true) => delete.push(line.to_string()),
                    Some(false) => add.push(line.to_string()),
                    None => {}
                },
            }
        }
        Ok((delete, add))
    }

    /// The directories Debian's FRR would use for this pathspace: nothing of this host's may be
    /// left there.
    pub fn shared_dirs(&self) -> [PathBuf; 2] {
        [
            Path::new(RUN_DIR).join(&self.pathspace),
            Path::new(CONF_DIR).join(&self.pathspace),
        ]
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        // The daemons' own files are in the lab's directory; frr-reload.py and the daemons
        // may still make these.
        for d in self.shared_dirs() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn spawn(lab: &mut Lab, host: &str, daemon: &str, args: Vec<String>) -> Result<usize> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(host, &format!("{DAEMONS}/{daemon}"), &args)
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().context("running vtysh")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // vtysh exits 0 with "% Unknown command" or "is not running" on its standard output.
    if !out.status.success()
        || stdout.contains("is not running")
        || stdout.lines().any(|l| l.starts_with('%'))
    {
        bail!(
            "vtysh {what}: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout)
}

/// Removes what the pathspaces of test runs that no longer exist left under FRR's directories.
fn sweep_stale() {
    for base in [RUN_DIR, CONF_DIR] {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The nexthops of `host`'s kernel route to `prefix` (what the router really forwards by),
/// sorted; empty without a route.
pub fn kernel_nexthops(lab: &Lab, host: &str, prefix: &str) -> Vec<String> {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    let out = crate::netlab::ip(&["-n", &lab.host(host).ns, family, "route", "show", prefix])
        .unwrap_or_default();
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut hops: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    hops.sort();
    hops
}

/// Makes `router` the way from `client` to `prefix` on the lab's one LAN: it forwards, sends
/// no redirects that would let the client skip it, and hashes ECMP flows on ports too (so that
/// one client's connections spread over the nodes); the client takes no redirects.
pub fn route_through(lab: &Lab, router: &str, client: &str, prefix: &str) -> Result<()> {
    let sysctl =
        |host: &str, kv: &str| crate::netlab::ns_exec(&lab.host(host).ns, &["sysctl", "-qw", kv]);
    for kv in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.eth0.send_redirects=0",
        "net.ipv4.fib_multipath_hash_policy=1",
    ] {
        sysctl(router, kv)?;
    }
    sysctl(client, "net.ipv4.conf.all.accept_redirects=0")?;
    let via = lab.host(router).ipv4.to_string();
    crate::netlab::ip(&[
        "-n",
        &lab.host(client).ns,
        "route",
        "add",
        prefix,
        "via",
        &via,
    ])?;
    Ok(())
}

/// The backend of a BGP node: nginx on its loopback port 8081 answering `/` with its name,
/// and `/big` with its name then 256 KiB more (a transfer that lasts while the client reads
/// slowly). Returns its process index.
pub fn backend(lab: &mut Lab, node: &str) -> Result<usize> {
    let dir = lab.dir().to_path_buf();
    let big = dir.join(format!("big-{node}"));
    let mut body = format!("{node}\n").into_bytes();
    body.resize(body.len() + 256 * 1024, b'.');
    std::fs::write(&big, body).context("the large response")?;
    crate::nginx::spawn(
        lab,
        node,
        &dir,
        &format!("backend-{node}"),
        "1",
        &format!(
            "events {{}}\nhttp {{ access_log off; server {{ listen 127.0.0.1:8081; location / {{ return 200 \"{node}\\n\"; }} location = /big {{ default_type text/plain; alias {}; }} }} }}\n",
            big.display()
        ),
    )
}

/// A BGP node: FRR on `node`, nginx on its loopback port 8081 answering its name, and
/// `buoy-agent standalone` from `config` driving that FRR (with `extra` flags). Returns the FRR
/// and the process indices of the agent and the backend.
pub fn node(
    lab: &mut Lab,
    node: &str,
    config: &Path,
    extra: &[&str],
) -> Result<(Frr, usize, usize)> {
    let frr = Frr::start(lab, node)?;
    let backend = backend(lab, node)?;
    let etc = frr.dir.join("etc");
    std::fs::create_dir_all(&etc).context("FRR's configuration directory")?;
    let (etc, vty) = (
        etc.display().to_string(),
        frr.vty_socket.display().to_string(),
    );
    let mut args = vec![
        "--frr-config-dir",
        &etc,
        "--frr-pathspace",
        &frr.pathspace,
        "--frr-vty-socket",
        &vty,
    ];
    args.extend(extra);
    let agent = lab.spawn_standalone_with(node, config, &args)?;
    Ok((frr, agent, backend))
}

/// The kubelet's part for an agent pod with FRR beside it (the operator's `--agent-frr-image`,
/// docs/bgp.md): each of the pod's `emptyDir` volumes is a directory of the lab, bind-mounted at
/// its mount path in a mount namespace of the pod's own; the init container's command runs there
/// with its environment; then FRR starts as its image's entrypoint starts it (`frrinit.sh
/// start`: watchfrr on the `daemons` file the init container wrote; Debian's FRR, the version
/// the chart's image names); then the agent. Stops FRR's daemons, by their pid files, when
/// dropped.
pub(crate) struct FrrPod {
    run_dirs: Vec<PathBuf>,
}

impl FrrPod {
    /// The pod's FRR and the shell script that sets it up and then runs its arguments (the
    /// agent); `None` for a pod without an `frr` container.
    pub(crate) fn of(pod: &serde_json::Value, dir: &Path) -> Result<Option<(FrrPod, String)>> {
        let spec = &pod["spec"];
        let Some(frr) = spec["containers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "frr"))
        else {
            return Ok(None);
        };
        let text = |v: &serde_json::Value| {
            v.as_str()
                .map(str::to_string)
                .with_context(|| format!("not a string: {v}"))
        };
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut script = String::from("set -e\n");
        let mut run_dirs = Vec::new();
        for volume in spec["volumes"].as_array().into_iter().flatten() {
            let name = volume["name"].as_str().unwrap_or_default();
            let Some(mount) = frr["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["name"] == name)
            else {
                continue;
            };
            if volume.get("emptyDir").is_none() {
                bail!("FRR's volumes are emptyDirs: {volume}");
            }
            let path = text(&mount["mountPath"])?;
            let host = dir.join(name);
            std::fs::create_dir_all(&host).context("the volume's directory")?;
            if path.starts_with("/var/run") || path.starts_with("/run") {
                run_dirs.push(host.clone());
            }
            script.push_str(&format!(
                "mkdir -p {p}\nmount --bind {h} {p}\n",
                p = q(&path),
                h = q(&host.display().to_string())
            ));
        }
        for init in spec["initContainers"].as_array().into_iter().flatten() {
            let env = init["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| Ok(format!("{}={}", text(&e["name"])?, q(&text(&e["value"])?))))
                .collect::<Result<Vec<String>>>()?;
            let command = init["command"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| Ok(q(&text(c)?)))
                .collect::<Result<Vec<String>>>()?;
            script.push_str(&format!("env {} {}\n", env.join(" "), command.join(" ")));
        }
        script.push_str(
            "chown -R frr:frr /etc/frr /var/run/frr\n/usr/lib/frr/frrinit.sh start\nexec \"$@\"\n",
        );
        Ok(Some((FrrPod { run_dirs }, script)))
    }
}

impl Drop for FrrPod {
    fn drop(&mut self) {
        // watchfrr first, or it starts the others again.
        for first in [true, false] {
            for dir in &self.run_dirs {
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".pid") || (name == "watchfrr.pid") != first {
                        continue;
                    }
                    let pid = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        // SAFETY: kill(2) on a pid FRR wrote for this test's pod.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
    }
}
