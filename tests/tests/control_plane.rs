//! The control-plane VIP (`buoy-agent manifest control-plane`, announce and proxy modes) in
//! network namespaces: three control-plane nodes, each with `buoy-testapi` serving HTTPS on port 6443 of
//! all its addresses as the API server stand-in and `buoy-agent standalone` on the generated
//! configuration; a client runs `kubectl` through the VIP while the master's link is cut and
//! then while the new master's API server is killed. Prints the longest outage of each. Needs
//! root (CI runs it as root), kubectl and openssl.
#![allow(clippy::unwrap_used)]

use std::{
    net::IpAddr,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use buoy_tests::{
    kubectl::Kubectl,
    netlab::{Lab, ip},
    process::workspace_bin,
};
use serde_json::Value;

const VIP: &str = "10.77.0.100";
const NODES: [&str; 3] = ["cp1", "cp2", "cp3"];

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

/// A self-signed certificate for the API servers (the client skips verification, as a
/// kubeconfig with `insecure-skip-tls-verify` does).
fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=kube-apiserver"])
        .args(["-addext", &format!("subjectAltName=IP:{VIP}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

/// `buoy-agent manifest control-plane` into `dir`: the configuration's directory, and the static
/// Pod (parsed).
fn manifest(dir: &Path, mode: Mode) -> (std::path::PathBuf, Value) {
    let nodes: Vec<String> = NODES
        .iter()
        .zip([100, 99, 98])
        .enumerate()
        .map(|(i, (node, priority))| match mode {
            Mode::Announce => format!("{node}={priority}"),
            Mode::Proxy => format!("{node}={priority}@10.77.0.{}", i + 1),
        })
        .collect();
    let out = Command::new(workspace_bin("buoy-agent"))
        .args([
            "manifest",
            "control-plane",
            "--address",
            &format!("{VIP}/24"),
        ])
        .args(["--interface", "eth0", "--mode", mode.flag()])
        .args(nodes.iter().flat_map(|n| ["--node", n.as_str()]))
        .arg("--output-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "buoy-agent manifest control-plane: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod: Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("manifests/buoy-control-plane.yaml")).unwrap(),
    )
    .unwrap();
    (dir.join("config"), pod)
}

/// The static Pod's shape: the host's network, three capabilities, the configuration from
/// the host's /etc/buoy/control-plane, no service account token.
fn check_pod(pod: &Value) {
    let spec = &pod["spec"];
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    let container = &spec["containers"][0];
    let mut added: Vec<&str> = container["securityContext"]["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    added.sort_unstable();
    assert_eq!(added, ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        &args[..3],
        ["standalone", "--config", "/etc/buoy/control-plane"]
    );
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/buoy/control-plane")
        .expect("the configuration is mounted");
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["hostPath"]["path"], "/etc/buoy/control-plane");
}

/// `kubectl get --raw /livez` from the client in a loop until stopped: when each call ended, and
/// whether it succeeded.
fn kubectl_loop(
    kubectl: Kubectl,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<(Instant, bool)>> {
    thread::spawn(move || {
        let mut samples = Vec::new();
        // Bounded: at most 2 minutes even if nobody stops it.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let (ok, out, _) =
                kubectl.run(&["get", "--raw", "/livez", "--request-timeout=1s"], None);
            samples.push((Instant::now(), ok && out.trim() == "ok"));
        }
        samples
    })
}

/// The longest time between two successful calls from `from` on (the first success after
/// `from` ends the first gap), and whether calls succeeded again at the end.
fn longest_outage(samples: &[(Instant, bool)], from: Instant) -> (Duration, bool) {
    let mut last_ok = from;
    let mut longest = Duration::ZERO;
    for (at, ok) in samples.iter().filter(|(at, _)| *at >= from) {
        if *ok {
            longest = longest.max(at.duration_since(last_ok));
            last_ok = *at;
        }
    }
    let recovered = samples.iter().rev().take(3).all(|(_, ok)| *ok);
    (longest, recovered)
}

/// Waits until one node alone holds the VIP; its name.
fn wait_master(lab: &Lab, not: &[&str], within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let holders = lab.holders(vip());
        if let [one] = &holders[..]
            && !not.contains(&one.as_str())
            && lab.wait_sole_holder(vip(), one, Duration::from_secs(1))
        {
            return Some(one.clone());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits until `n` calls in a row after `from` succeeded (or `within` passed).
fn wait_served(samples_ok: impl Fn() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if samples_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The two ways to the API servers, and the port clients use on the VIP in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Announce,
    Proxy,
}

impl Mode {
    fn flag(self) -> &'static str {
        match self {
            Mode::Announce => "announce",
            Mode::Proxy => "proxy",
        }
    }

    /// The command's default: the API server's own port when it answers on the VIP, 8443
    /// beside it when Buoy's listener does.
    fn port(self) -> u16 {
        match self {
            Mode::Announce => 6443,
            Mode::Proxy => 8443,
        }
    }
}

#[test]
fn announce_kubectl_through_the_vip_survives_a_cut_link_and_a_dead_api_server() {
    survives(Mode::Announce);
}

#[test]
fn proxy_kubectl_through_the_vip_survives_a_cut_link_and_a_dead_api_server() {
    survives(Mode::Proxy);
}

fn survives(mode: Mode) {
    let mut lab = Lab::new(&["cp1", "cp2", "cp3", "client"]).unwrap();
    let dir = lab.dir().to_path_buf();
    let (cert, key) = certificate(&dir);
    let (config, pod) = manifest(&dir, mode);
    check_pod(&pod);

    let mut apis = Vec::new();
    for node in NODES {
        // On every address of the node: its own, the VIP when it holds it, and 127.0.0.1 (the
        // agent's track), as a kube-apiserver with the default --bind-address.
        let kubeconfig = dir.join(format!("{node}.kubeconfig"));
        let kubeconfig = kubeconfig.display().to_string();
        let bin = workspace_bin("buoy-testapi");
        let args = [
            "--listen",
            "0.0.0.0:6443",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--kubeconfig",
            &kubeconfig,
        ];
        let api = lab.spawn(node, bin.to_str().unwrap(), &args).unwrap();
        assert!(
            lab.proc(api)
                .wait_for_line("listening on", Duration::from_secs(10))
                .is_some(),
            "{node}'s test API server did not start\n{}",
            lab.logs()
        );
        apis.push(api);
    }
    for node in NODES {
        lab.spawn(
            node,
            workspace_bin("buoy-agent").to_str().unwrap(),
            &[
                "standalone",
                "--config",
                config.to_str().unwrap(),
                "--node-name",
                node,
            ],
        )
        .unwrap();
    }
    let first = wait_master(&lab, &[], Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no node took the VIP\n{}", lab.logs()));

    let kubeconfig = dir.join("client.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: vip\n  cluster:\n    server: https://{VIP}:{}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: buoy-testapi\ncontexts:\n- name: vip\n  context: {{cluster: vip, user: u}}\ncurrent-context: vip\n",
            mode.port()
        ),
    )
    .unwrap();
    let client = lab.host("client").ns.clone();
    let kubectl = Kubectl::in_netns(kubeconfig.clone(), &client);
    let (ok, out, err) = kubectl.run(&["get", "--raw", "/livez"], None);
    assert!(
        ok && out.trim() == "ok",
        "kubectl through the VIP: {out} {err}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let looping = kubectl_loop(Kubectl::in_netns(kubeconfig.clone(), &client), stop.clone());
    thread::sleep(Duration::from_secs(2));

    // 1. The master's link is cut.
    let cut_at = Instant::now();
    let first_ns = lab.host(&first).ns.clone();
    ip(&["-n", &first_ns, "link", "set", "eth0", "down"]).unwrap();
    let second = wait_master(&lab, &[first.as_str()], Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the VIP did not move from {first}\n{}", lab.logs()));
    // Served again: a few seconds of calls through the new master.
    thread::sleep(Duration::from_secs(4));
    ip(&["-n", &first_ns, "link", "set", "eth0", "up"]).unwrap();
    thread::sleep(Duration::from_secs(4));

    // 2. The new master's API server dies.
    let killed_at = Instant::now();
    let index = NODES.iter().position(|n| *n == second).unwrap();
    lab.proc(apis[index]).signal(libc::SIGKILL);
    let third =
        wait_master(&lab, &[second.as_str()], Duration::from_secs(20)).unwrap_or_else(|| {
            panic!(
                "the VIP stayed on {second}, whose API server is dead\n{}",
                lab.logs()
            )
        });
    let served = wait_served(
        || {
            let (ok, out, _) =
                kubectl.run(&["get", "--raw", "/livez", "--request-timeout=1s"], None);
            ok && out.trim() == "ok"
        },
        Duration::from_secs(20),
    );
    thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let samples = looping.join().unwrap();

    let during_cut: Vec<(Instant, bool)> = samples
        .iter()
        .copied()
        .filter(|(at, _)| *at < killed_at)
        .collect();
    let (link_cut, recovered_after_cut) = longest_outage(&during_cut, cut_at);
    let (killed, recovered_after_kill) = longest_outage(&samples, killed_at);
    println!(
        "control-plane outage ({}): link cut {} ms, API server killed {} ms ({} kubectl calls; VIP {first} -> {second} -> {third})",
        mode.flag(),
        link_cut.as_millis(),
        killed.as_millis(),
        samples.len()
    );
    assert!(
        served,
        "kubectl did not recover after {second}'s API server died\n{}",
        lab.logs()
    );
    assert!(
        recovered_after_cut,
        "kubectl failed at the end of the link cut\n{}",
        lab.logs()
    );
    assert!(
        recovered_after_kill,
        "kubectl failed at the end\n{}",
        lab.logs()
    );
    assert_ne!(
        third, second,
        "a node whose API server is down holds no VIP"
    );
    // Bounds: a backup takes over after 3 one-second adverts plus the skew; a master whose API
    // server fails two 1 s probes gives the VIP up at once (priority 0).
    assert!(link_cut < Duration::from_secs(8), "link cut: {link_cut:?}");
    assert!(
        killed < Duration::from_secs(8),
        "API server killed: {killed:?}"
    );
}
