//! A test LAN made of network namespaces: one namespace holds a bridge (never the root
//! namespace), every host is a namespace with `eth0` attached to it by a veth pair. Addresses:
//! host i (from 1) has 10.77.0.i/24 and fd77::i/64. Everything is removed on drop, also when the
//! test fails; namespaces left by a killed test run are swept at the next start.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use anyhow::{Context, Result, bail};

use crate::process::Proc;

/// Prefix of every namespace the lab creates: `buoyt<pid>x<n>-…`.
const PREFIX: &str = "buoyt";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` with arguments; fails with its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside a namespace and returns its stdout.
pub fn ns_exec(ns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .context("ip netns exec")?;
    if !out.status.success() {
        bail!(
            "{} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sweep_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: u32 = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        if pid != 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

pub struct Host {
    pub name: String,
    pub ns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The bridge-side end of this host's cable, in the LAN namespace.
    port: String,
}

pub struct Lab {
    pub lan: String,
    pub hosts: Vec<Host>,
    procs: Vec<Proc>,
    /// Files of this lab's run (configurations, logs), removed with the lab.
    dir: tempfile::TempDir,
}

impl Lab {
    /// A LAN with these hosts (names are for humans; namespaces get unique names).
    pub fn new(hosts: &[&str]) -> Result<Lab> {
        Lab::with_links(hosts, 1)
    }

    /// Like [`Lab::new`], with `links` cables per host (`eth0`, `eth1`, …); `ethK` of every host
    /// is on its own segment (bridge `brK`, like a VLAN) with 10.(77+K).0.n/24, for tests that need
    /// many VRIDs.
    pub fn with_links(hosts: &[&str], links: usize) -> Result<Lab> {
        if unsafe { libc::geteuid() } != 0 {
            bail!("network-namespace tests need root (CI runs them as root)");
        }
        sweep_stale();
        let id = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lan = format!("{id}-lan");
        let mut lab = Lab {
            dir: tempfile::Builder::new()
                .prefix(&format!("{lan}-"))
                .tempdir()
                .context("creating the lab's directory")?,
            lan: lan.clone(),
            hosts: Vec::new(),
            procs: Vec::new(),
        };
        ip(&["netns", "add", &lan])?;
        for k in 0..links.max(1) {
            let br = format!("br{k}");
            ip(&["-n", &lan, "link", "add", &br, "type", "bridge"])?;
            // Forward frames at once (no STP listening delay) and never snoop multicast away.
            ip(&[
                "-n",
                &lan,
                "link",
                "set",
                &br,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ])?;
            ip(&["-n", &lan, "link", "set", &br, "up"])?;
        }
        for (i, name) in hosts.iter().enumerate() {
            lab.add_host(&id, i + 1, name, links)?;
        }
        Ok(lab)
    }

    fn add_host(&mut self, id: &str, n: usize, name: &str, links: usize) -> Result<()> {
        let ns = format!("{id}-{n}");
        ip(&["netns", "add", &ns])?;
        // No duplicate address detection: addresses are usable at once.
        let _ = ns_exec(
            &ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        );
        let ipv4 = Ipv4Addr::new(10, 77, 0, n as u8);
        let ipv6: Ipv6Addr = format!("fd77::{n}").parse()?;
        for k in 0..links.max(1) {
            let (port, dev) = (
                if k == 0 {
                    format!("p{n}")
                } else {
                    format!("p{n}l{k}")
                },
                format!("eth{k}"),
            );
            ip(&[
                "-n", &self.lan, "link", "add", &port, "type", "veth", "peer", "name", &dev,
                "netns", &ns,
            ])?;
            ip(&[
                "-n",
                &self.lan,
                "link",
                "set",
                &port,
                "master",
                &format!("br{k}"),
                "up",
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.{}.0.{n}/24", 77 + k),
                "dev",
                &dev,
            ])?;
            if k == 0 {
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{ipv6}/64"),
                    "dev",
                    &dev,
                    "nodad",
                ])?;
            }
            ip(&["-n", &ns, "link", "set", &dev, "up"])?;
        }
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        self.hosts.push(Host {
            name: name.to_string(),
            ns,
            ipv4,
            ipv6,
            port: format!("p{n}"),
        });
        Ok(())
    }

    /// A directory for this lab's files; it goes when the lab does, after its processes.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// The Kubernetes API test server with Buoy's CRDs, on `host`'s LAN address (a free port),
    /// its kubeconfig written to `kubeconfig`. Started from a thread in that namespace: the
    /// server's thread and socket live there.
    pub fn start_api(
        &self,
        host: &str,
        kubeconfig: &std::path::Path,
    ) -> Result<crate::testapi::TestApi> {
        let listen = std::net::SocketAddr::new(IpAddr::V4(self.host(host).ipv4), 0);
        let kubeconfig = kubeconfig.to_path_buf();
        let api = in_netns(&self.host(host).ns, move || {
            crate::testapi::TestApi::start_with(crate::testapi::Options {
                listen,
                kubeconfig: Some(kubeconfig),
                ..crate::testapi::Options::default()
            })
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the API server's thread panicked"))??;
        api.install_buoy_crds()?;
        Ok(api)
    }

    /// Unplugs the host's cable (its eth0 loses carrier).
    pub fn cut(&self, name: &str) -> Result<()> {
        ip(&[
            "-n",
            &self.lan,
            "link",
            "set",
            &self.host(name).port,
            "down",
        ])
        .map(drop)
    }

    /// Plugs the cable back in.
    pub fn restore(&self, name: &str) -> Result<()> {
        ip(&["-n", &self.lan, "link", "set", &self.host(name).port, "up"]).map(drop)
    }

    /// Drops VRRP (IP protocol 112) between this host and the others, but nothing else: a
    /// partition of the election path only.
    pub fn block_vrrp(&self, name: &str, blocked: bool) -> Result<()> {
        let ns = &self.host(name).ns;
        let op = if blocked { "-A" } else { "-D" };
        for tool in ["iptables", "ip6tables"] {
            ns_exec(ns, &[tool, op, "INPUT", "-p", "112", "-j", "DROP"])?;
            ns_exec(ns, &[tool, op, "OUTPUT", "-p", "112", "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Random loss of `percent` of the IP packets every host receives (0: none), as a lossy LAN
    /// would drop them on the way to each host, independently. iptables' `statistic` match in a
    /// chain of each host's own: the kernels this runs on may lack netem (sch_netem).
    pub fn set_loss(&self, percent: u32) -> Result<()> {
        let probability = format!("{:.4}", f64::from(percent.min(100)) / 100.0);
        for h in &self.hosts {
            for tool in ["iptables", "ip6tables"] {
                // The chain and the jump to it are made once; a new percentage replaces the rule.
                if ns_exec(&h.ns, &[tool, "-n", "-L", "lab-loss"]).is_err() {
                    ns_exec(&h.ns, &[tool, "-N", "lab-loss"])?;
                    ns_exec(&h.ns, &[tool, "-I", "INPUT", "-j", "lab-loss"])?;
                }
                ns_exec(&h.ns, &[tool, "-F", "lab-loss"])?;
                if percent > 0 {
                    ns_exec(
                        &h.ns,
                        &[
                            tool,
                            "-A",
                            "lab-loss",
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            &probability,
                            "-j",
                            "DROP",
                        ],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The hosts whose interfaces hold `addr` now.
    pub fn holders(&self, addr: IpAddr) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| {
                ip(&["-n", &h.ns, "-o", "addr", "show"])
                    .map(|out| {
                        out.split_whitespace()
                            .any(|w| w.split('/').next() == Some(addr.to_string().as_str()))
                    })
                    .unwrap_or(false)
            })
            .map(|h| h.name.clone())
            .collect()
    }

    /// Waits until `host` alone holds `addr`, three checks in a row; false if `within` passes.
    pub fn wait_sole_holder(&self, addr: IpAddr, host: &str, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        let mut stable = 0;
        while std::time::Instant::now() < deadline {
            stable = if self.holders(addr) == [host] {
                stable + 1
            } else {
                0
            };
            if stable == 3 {
                return true;
            }
            thread::sleep(std::time::Duration::from_millis(30));
        }
        false
    }

    /// Starts `program args…` inside the host's namespace; it is killed when the lab is dropped.
    pub fn spawn(&mut self, host: &str, program: &str, args: &[&str]) -> Result<usize> {
        let ns = self.host(host).ns.clone();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, program]).args(args);
        // Each host's agents keep their ledger (crash cleanup) in the lab's directory: the
        // host's /run/buoy stays untouched, and what a killed agent left goes with the lab.
        cmd.env("BUOY_STATE_DIR", self.dir().join("state").join(host));
        let p = Proc::spawn(&format!("{host}:{program}"), cmd)
            .with_context(|| format!("starting {program} in {host}"))?;
        self.procs.push(p);
        Ok(self.procs.len() - 1)
    }

    /// Starts the standalone agent on `host` as the namespace tests run it: `buoy-agent
    /// standalone --config CONFIG --node-name HOST --threads 1 --metrics-address
    /// 127.0.0.1:9901` (the admin endpoint on the host's own loopback).
    pub fn spawn_standalone(&mut self, host: &str, config: &std::path::Path) -> Result<usize> {
        self.spawn_standalone_with(host, config, &[])
    }

    /// [`Lab::spawn_standalone`] with `extra` flags after the usual ones.
    pub fn spawn_standalone_with(
        &mut self,
        host: &str,
        config: &std::path::Path,
        extra: &[&str],
    ) -> Result<usize> {
        let agent = crate::process::workspace_bin("buoy-agent");
        let (agent, config) = (agent.display().to_string(), config.display().to_string());
        let mut args = vec![
            "standalone",
            "--config",
            &config,
            "--node-name",
            host,
            "--threads",
            "1",
            "--metrics-address",
            "127.0.0.1:9901",
        ];
        args.extend(extra);
        self.spawn(host, &agent, &args)
    }

    pub fn proc(&mut self, index: usize) -> &mut Proc {
        &mut self.procs[index]
    }

    /// Every line printed by every process, for failure messages.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .flat_map(|p| {
                p.output()
                    .into_iter()
                    .map(move |l| format!("[{}] {l}", p.name))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.clear();
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.lan]);
    }
}

/// Runs `f` on a thread that lives in namespace `ns` (sockets it creates belong there).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<thread::JoinHandle<T>> {
    let file = File::open(format!("/var/run/netns/{ns}"))
        .with_context(|| format!("opening namespace {ns}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        // SAFETY: setns(2) on a namespace file we hold open; it affects only this thread.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        let _ = tx.send(r);
        if r != 0 {
            panic!("setns failed");
        }
        f()
    });
    match rx.recv() {
        Ok(0) => Ok(handle),
        _ => bail!("cannot enter namespace {ns}"),
    }
}
