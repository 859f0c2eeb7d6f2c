//! The Debian package for plain hosts, as a user gets it: `cargo deb` packages the agent (and
//! the `kubectl buoy` plugin) this suite was built with, `systemd-analyze verify` checks the
//! installed unit, `dpkg -i` installs and `dpkg -r` / `dpkg -P` remove it cleanly, the installed
//! plugin checks as the agent does, and the installed binary, run with the installed
//! unit's command line (its `--config` pointed at the lab's files, plus a node name and a state
//! directory per lab host, which share one machine here), fails over in network namespaces.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use buoy_tests::backend::served_by_from;
use buoy_tests::netlab::Lab;
use buoy_tests::probe::{Probe, report};
use buoy_tests::seed::VIP;

const UNIT: &str = "/usr/lib/systemd/system/buoy-agent.service";
const EXAMPLE: &str = "/etc/buoy/buoy.yaml.example";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `program args`; its exit status, stdout and stderr.
fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Purges the package when the test ends, whatever happened.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-P", "buoy-agent"]).output();
    }
}

/// Builds the package from the agent binary of this build; its path.
fn package(out: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The dev profile: the binary the tests use (CI builds once). cargo-deb warns that it is
    // meant for release builds; the package is the same apart from the binary's optimisation.
    let (ok, stdout, stderr) = run(
        &cargo,
        &[
            "deb",
            "-p",
            "buoy-agent",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        ok,
        "cargo deb failed (scripts/test installs cargo-deb):\n{stderr}"
    );
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(deb.exists(), "no package at {deb:?}:\n{stdout}\n{stderr}");
    deb
}

/// The unit's `KEY=` values (the last one of each key).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} is not set in the unit"))
}

#[test]
fn the_package_installs_verifies_fails_over_and_removes_cleanly() {
    let out = tempfile::tempdir().unwrap();
    let deb = package(out.path());
    let (ok, listing, _) = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    assert!(ok);
    for path in [
        "./usr/bin/buoy-agent",
        "./usr/bin/kubectl-buoy",
        &format!(".{UNIT}"),
        &format!(".{EXAMPLE}"),
    ] {
        assert!(
            listing.contains(path),
            "{path} is not in the package:\n{listing}"
        );
    }

    let _purge = Installed;
    let (ok, _, err) = run("dpkg", &["-i", deb.to_str().unwrap()]);
    assert!(ok, "dpkg -i: {err}");
    let (ok, _, err) = run("systemd-analyze", &["verify", UNIT]);
    assert!(ok, "systemd-analyze verify {UNIT}: {err}");
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert_eq!(unit_value(&unit, "Restart"), "always");
    assert_eq!(unit_value(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(
        unit_value(&unit, "CapabilityBoundingSet"),
        "CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(unit_value(&unit, key), value, "{key}");
    }
    // The example is a valid configuration, as the installed binary checks it.
    let (ok, stdout, err) = run("/usr/bin/buoy-agent", &["check", "--config", EXAMPLE]);
    assert!(ok, "buoy-agent check {EXAMPLE}: {stdout}{err}");
    // So does the installed kubectl plugin, with the same words.
    let (ok, plugin_stdout, err) = run("/usr/bin/kubectl-buoy", &["check", EXAMPLE]);
    assert!(ok, "kubectl-buoy check {EXAMPLE}: {plugin_stdout}{err}");
    assert_eq!(plugin_stdout, stdout);
    let (ok, help, _) = run("/usr/bin/buoy-agent", &["--help"]);
    assert!(
        ok && help.contains("standalone") && help.contains("check"),
        "{help}"
    );

    failover_with_the_units_command_line(unit_value(&unit, "ExecStart"));

    let (ok, _, err) = run("dpkg", &["-r", "buoy-agent"]);
    assert!(ok, "dpkg -r: {err}");
    assert!(!Path::new("/usr/bin/buoy-agent").exists());
    assert!(!Path::new("/usr/bin/kubectl-buoy").exists());
    assert!(!Path::new(UNIT).exists());
    // Removal keeps the configuration (Debian's way); a purge takes it too.
    assert!(Path::new(EXAMPLE).exists());
    let (ok, _, err) = run("dpkg", &["-P", "buoy-agent"]);
    assert!(ok, "dpkg -P: {err}");
    assert!(
        !Path::new("/etc/buoy").exists(),
        "/etc/buoy is left after a purge"
    );
}

/// The reference architecture on two lab hosts, each running `exec_start` (with the lab's
/// configuration): the master's link is cut and the backup serves.
fn failover_with_the_units_command_line(exec_start: &str) {
    let mut lab = Lab::new(&["lb1", "lb2", "web1", "web2", "client"]).unwrap();
    let config = buoy_tests::seed::lab_config(lab.dir()).unwrap();
    let _backends = lab.web_backends(&["web1", "web2"], false);
    let mut words: Vec<String> = exec_start.split_whitespace().map(String::from).collect();
    assert_eq!(
        words.first().map(String::as_str),
        Some("/usr/bin/buoy-agent")
    );
    let config_arg = words
        .iter()
        .position(|w| w == "--config")
        .expect("the unit names its configuration");
    words[config_arg + 1] = config.display().to_string();
    let mut agents = Vec::new();
    for node in ["lb1", "lb2"] {
        let state = lab.dir().join("state").join(node);
        let mut argv = words.clone();
        argv.extend([
            "--node-name".into(),
            node.into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--metrics-address".into(),
            "127.0.0.1:9901".into(),
        ]);
        let refs: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        agents.push(lab.spawn(node, &argv[0], &refs).unwrap());
    }
    let vip: IpAddr = VIP.parse().unwrap();
    let target = SocketAddr::new(vip, 80);
    assert!(
        lab.wait_sole_holder(vip, "lb1", Duration::from_secs(15)),
        "{}",
        lab.logs()
    );
    assert_eq!(served_by_from(&lab.host("client").ns, target, 2).len(), 2);
    let probe = Probe::start_http(
        &lab.host("client").ns,
        target,
        Duration::from_millis(10),
        Duration::from_secs(20),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lab.cut("lb1").unwrap();
    assert!(
        lab.wait_sole_holder(vip, "lb2", Duration::from_secs(8)),
        "{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    let samples = probe.finish();
    let r = report(&samples);
    eprintln!(
        "the installed package's agent: failover after a link cut, longest outage {:?} ({} probes, {} failed)",
        r.longest_outage, r.total, r.failed
    );
    assert!(
        samples
            .last()
            .is_some_and(|s| s.served_by.as_deref() == Some("web1")
                || s.served_by.as_deref() == Some("web2")),
        "served again after the cut\n{}",
        lab.logs()
    );
    // Master_Down_Interval at 1 s adverts: 3 s + skew, plus margin.
    assert!(r.longest_outage <= Duration::from_millis(3800), "{r:?}");
    for agent in agents {
        lab.proc(agent).signal(libc::SIGTERM);
        assert_eq!(lab.proc(agent).wait_exit(Duration::from_secs(20)), Some(0));
    }
}
