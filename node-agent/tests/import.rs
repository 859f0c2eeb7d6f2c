//! `buoy-agent import` as a user runs it: the reference tutorial's configs print examples/seed
//! and their warnings, the output passes `buoy-agent check` and loads as standalone mode's
//! configuration; a MetalLB configuration with its Services and a kube-vip one become
//! AddressPools and Services as kubectl (YAML 1.1) reads them, which `check` accepts; malformed
//! input fails with file and line; and docs/migration.md shows the real output. The importer's
//! own fixtures are tested against the library in import/tests/import.rs.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[path = "../../import/tests/support/mod.rs"]
mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};

use support::{assert_same, examples_seed, fixtures, parse_yaml};

/// The binary prints the same objects on stdout and the warnings on stderr, and its output passes
/// `buoy-agent check` and loads as standalone mode's configuration on both nodes.
#[test]
fn the_binary_prints_yaml_and_warnings() {
    let dir = fixtures().join("seed");
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .current_dir(&dir)
        .args([
            "import",
            "--keepalived",
            "lb1.conf",
            "lb2.conf",
            "--nginx",
            "nginx.conf",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_same(&parse_yaml("stdout", &stdout), &examples_seed(), "binary");
    assert!(
        stdout.contains("kubectl"),
        "the Secret tells how to create it in a cluster"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() > 10);
    for l in &lines {
        assert!(
            l.starts_with("warning: ")
                && l.contains(": directive \"")
                && l.contains("\" is not translated: "),
            "{l}"
        );
    }
    assert!(lines.contains(&"warning: lb1.conf:17: directive \"state\" is not translated: MASTER is only keepalived's initial state; in Buoy every node starts in Initialize and the priorities decide (lb1: 100)"));

    let tmp = tempfile::Builder::new()
        .prefix("buoy-import-")
        .tempdir()
        .unwrap();
    let file = tmp.path().join("seed.yaml");
    std::fs::write(&file, &stdout).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .args(["check", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for node in ["lb1", "lb2"] {
        let files = buoy_agent::files::Files {
            paths: vec![file.clone()],
            node: buoy_agent::node::NodeIdentity {
                name: node.into(),
                labels: Default::default(),
            },
        };
        let desired = files.load().unwrap();
        assert_eq!(desired.vips.len(), 1, "{node}");
        assert_eq!(desired.proxy.listeners.len(), 1, "{node}");
    }
}

/// The binary exits non-zero with `error: FILE:LINE: …` on malformed input.
#[test]
fn the_binary_fails_on_malformed_input() {
    let dir = fixtures().join("malformed/nginx-missing-semicolon");
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .current_dir(&dir)
        .args(["import", "--nginx", "nginx.conf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(out.stdout, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: nginx.conf:"), "{stderr}");
}

/// `buoy-agent ARGS` in `cwd`: stdout and stderr, which must succeed.
fn run(args: &[&str], cwd: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "buoy-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The documents of `file` as kubectl reads them (YAML 1.1: `tests/yaml11.py`, PyYAML made to
/// read as go-yaml v2 does), which must be what Buoy (serde_yaml) reads.
fn read_as_kubectl(file: &Path) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/yaml11.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3 runs (the YAML 1.1 reader needs python3 with PyYAML)");
    assert!(
        out.status.success(),
        "tests/yaml11.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text = std::fs::read_to_string(file).unwrap();
    let buoys: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(
        docs,
        buoys,
        "kubectl and Buoy read {} alike",
        file.display()
    );
    docs
}

/// The object of `kind` named `name` (in namespace `namespace` if given) among `docs`.
fn object<'a>(docs: &'a [Value], kind: &str, namespace: Option<&str>, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns)
        })
        .unwrap_or_else(|| panic!("no {kind} {namespace:?}/{name} in {docs:#?}"))
}

/// Writes `yaml` to a file of its own and runs `buoy-agent check` on it: what it says.
fn check(yaml: &str) -> String {
    let tmp = tempfile::Builder::new()
        .prefix("buoy-import-check-")
        .tempdir()
        .unwrap();
    std::fs::write(tmp.path().join("buoy.yaml"), yaml).unwrap();
    run(&["check", "--config", "buoy.yaml"], tmp.path()).0
}

/// The warnings of stderr, each `warning: FILE:LINE: directive "…" is not translated: …`.
fn warnings(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr.lines().collect();
    for l in &lines {
        assert!(
            l.starts_with("warning: ")
                && l.contains(": directive \"")
                && l.contains("\" is not translated: "),
            "{l}"
        );
    }
    lines
}

/// Asserts that one warning starts with `start` and contains `part`.
fn warned(lines: &[&str], start: &str, part: &str) {
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with(start) && l.contains(part))
            .count(),
        1,
        "{start} … {part} in {lines:#?}"
    );
}

fn case(name: &str) -> PathBuf {
    fixtures().join("cases").join(name)
}

/// A MetalLB configuration as a cluster has it (two pools on the LAN, one announced by BGP, two
/// L2Advertisements, a BGPAdvertisement and a BGPPeer) and `kubectl get services -A -o yaml`:
/// the AddressPools, the BGPPeer and the Services handed over, read as kubectl reads them; the
/// rest warned; and `buoy-agent check` accepts it all.
#[test]
fn the_binary_translates_metallb_and_its_services() {
    let (yaml, stderr) = run(
        &["import", "--metallb", "metallb.yaml", "services.yaml"],
        &case("24-metallb-l2"),
    );
    let tmp = tempfile::Builder::new()
        .prefix("buoy-import-metallb-")
        .tempdir()
        .unwrap();
    let file = tmp.path().join("buoy.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let docs = read_as_kubectl(&file);

    let kinds: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("AddressPool", "production"),
            ("AddressPool", "internal"),
            ("AddressPool", "public"),
            ("BGPPeer", "edge-router"),
            ("Service", "ingress-nginx-controller"),
            ("Service", "dns-tcp"),
            ("Service", "dns-udp"),
            ("Service", "api"),
            ("Service", "www"),
        ],
        "the ClusterIP Service is left out"
    );
    assert_eq!(
        object(&docs, "AddressPool", None, "public")["spec"],
        json!({"addresses": ["203.0.113.0/28"], "namespaceSelector": {}, "announcement": "BGP"})
    );
    assert_eq!(
        object(&docs, "BGPPeer", None, "edge-router")["spec"],
        json!({"peerAddress": "192.168.1.1", "peerASN": 64501, "myASN": 64512})
    );
    assert_eq!(
        object(&docs, "AddressPool", None, "production")["spec"],
        json!({
            "addresses": ["192.168.10.0/26", "192.168.10.100-192.168.10.120"],
            "avoidBuggyIPs": true,
            "namespaces": ["ingress-nginx", "shop"],
            "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/edge": ""}},
            "interfaces": ["eth0"],
        })
    );
    assert_eq!(
        object(&docs, "AddressPool", None, "internal")["spec"],
        json!({
            "addresses": ["10.20.0.0/24", "fd00:20::/120"],
            "autoAssign": false,
            "namespaceSelector": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["internal", "platform"]}]},
        })
    );
    let annotations = |ns: &str, name: &str| {
        let svc = object(&docs, "Service", Some(ns), name);
        assert_eq!(
            svc["spec"]["loadBalancerClass"], "buoy.io/vrrp",
            "{ns}/{name}"
        );
        assert_eq!(svc["spec"]["type"], "LoadBalancer", "{ns}/{name}");
        assert_eq!(svc.get("status"), None, "{ns}/{name}");
        svc["metadata"]["annotations"].clone()
    };
    // The address MetalLB gave is asked for; kubectl's and the server's fields are gone.
    assert_eq!(
        annotations("ingress-nginx", "ingress-nginx-controller"),
        json!({"buoy.io/load-balancer-ips": "192.168.10.1"})
    );
    let ingress = object(
        &docs,
        "Service",
        Some("ingress-nginx"),
        "ingress-nginx-controller",
    );
    assert_eq!(ingress["metadata"].get("uid"), None);
    assert_eq!(ingress["metadata"].get("resourceVersion"), None);
    assert_eq!(ingress["spec"]["externalTrafficPolicy"], "Local");
    for name in ["dns-tcp", "dns-udp"] {
        assert_eq!(
            annotations("infra", name),
            json!({"buoy.io/load-balancer-ips": "10.20.0.53", "buoy.io/address-pool": "internal",
                   "buoy.io/allow-shared-ip": "dns"}),
            "{name}: metallb.io's annotations win over metallb.universe.tf's"
        );
    }
    assert_eq!(
        annotations("shop", "api"),
        json!({"buoy.io/load-balancer-ips": "192.168.10.2", "buoy.io/address-pool": "production"})
    );

    let lines = warnings(&stderr);
    warned(&lines, "warning: metallb.yaml:13: ", "priority");
    warned(
        &lines,
        "warning: services.yaml:",
        "metallb.universe.tf/address-pool",
    );
    warned(
        &lines,
        "warning: services.yaml:",
        "metallb.universe.tf/loadBalancerIP]",
    );
    warned(
        &lines,
        "warning: services.yaml:",
        "Service default/kubernetes",
    );
    assert_eq!(lines.len(), 4, "{lines:#?}");

    assert_eq!(
        check(&yaml),
        "configuration OK: 0 VirtualIP(s), 0 UpstreamPool(s), 3 AddressPool(s), 0 Secret(s), \
         1 BGPPeer(s), 5 Service(s)\n"
    );
}

/// MetalLB's BGP mode in a routed data centre (two pools, two top-of-rack peers with BFD
/// profiles, one password in a Secret and one in plain text, advertisements with communities
/// and aliases): the BGP AddressPools, the BGPPeers with BFD, communities and localPref, the
/// password's Secret and the Services, read as kubectl reads them; what Buoy lacks warned at
/// its line; and `buoy-agent check` accepts it all.
#[test]
fn the_binary_translates_metallb_bgp() {
    let (yaml, stderr) = run(
        &[
            "import",
            "--metallb",
            "metallb.yaml",
            "services.yaml",
            "--namespace",
            "network",
        ],
        &case("30-metallb-bgp"),
    );
    let tmp = tempfile::Builder::new()
        .prefix("buoy-import-metallb-bgp-")
        .tempdir()
        .unwrap();
    let file = tmp.path().join("buoy.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let docs = read_as_kubectl(&file);
    for name in ["public", "internal"] {
        assert_eq!(
            object(&docs, "AddressPool", None, name)["spec"]["announcement"],
            "BGP",
            "{name}"
        );
    }
    assert_eq!(
        object(&docs, "BGPPeer", None, "tor-a")["spec"],
        json!({
            "peerAddress": "10.10.0.1", "peerASN": 64512, "myASN": 64512,
            "holdTime": "9s", "keepaliveTime": "3s",
            "nodeSelector": {"matchLabels": {"rack": "a"}},
            "bfd": {"receiveInterval": "100ms", "transmitInterval": "100ms", "detectMultiplier": 3},
            "passwordSecretRef": {"name": "tor-a-bgp", "namespace": "metallb-system", "key": "password"},
            "communities": ["64512:100:1", "64512:100", "65535:65281"],
            "localPref": 200,
        })
    );
    assert_eq!(
        object(&docs, "BGPPeer", None, "tor-b")["spec"],
        json!({
            "peerAddress": "10.20.0.1", "peerASN": 64600, "myASN": 64512,
            "holdTime": "30s", "keepaliveTime": "10s",
            "nodeSelector": {"matchLabels": {"rack": "b"}},
            "bfd": {"receiveInterval": "300ms", "transmitInterval": "500ms", "detectMultiplier": 5},
            "passwordSecretRef": {"name": "tor-b-bgp-password", "namespace": "network", "key": "password"},
            "communities": ["64512:100:1", "64512:100"],
        })
    );
    // The plain-text password `"on"` stays a string for kubectl (YAML 1.1).
    assert_eq!(
        object(&docs, "Secret", Some("network"), "tor-b-bgp-password")["stringData"],
        json!({"password": "on"})
    );
    assert_eq!(
        object(&docs, "Service", Some("web"), "www")["metadata"]["annotations"],
        json!({"buoy.io/load-balancer-ips": "198.51.100.5"})
    );

    let lines = warnings(&stderr);
    for (start, part) in [
        (
            "warning: metallb.yaml:49: ",
            "the addresses of IPAddressPool internal get them too",
        ),
        ("warning: metallb.yaml:53: ", "as a /128, not the /124"),
        (
            "warning: metallb.yaml:65: ",
            "the addresses of IPAddressPool public get them too",
        ),
        ("warning: metallb.yaml:90: ", "single-hop"),
        (
            "warning: metallb.yaml:126: ",
            "the password is now in a file",
        ),
        ("warning: metallb.yaml:127: ", "eBGP multihop"),
        ("warning: metallb.yaml:128: ", "source address"),
    ] {
        warned(&lines, start, part);
    }
    assert_eq!(lines.len(), 7, "{lines:#?}");

    assert_eq!(
        check(&yaml),
        "configuration OK: 0 VirtualIP(s), 0 UpstreamPool(s), 2 AddressPool(s), 1 Secret(s), \
         2 BGPPeer(s), 2 Service(s)\n"
    );
}

/// kube-vip-cloud-provider's ConfigMap and its Services: AddressPools per namespace and a
/// global one, the Services keeping their addresses, read as kubectl reads them, accepted by
/// `buoy-agent check`.
#[test]
fn the_binary_translates_kube_vip_and_its_services() {
    let (yaml, stderr) = run(
        &["import", "--kube-vip", "kubevip.yaml", "services.yaml"],
        &case("25-kube-vip"),
    );
    let tmp = tempfile::Builder::new()
        .prefix("buoy-import-kube-vip-")
        .tempdir()
        .unwrap();
    let file = tmp.path().join("buoy.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let docs = read_as_kubectl(&file);
    assert_eq!(
        object(&docs, "AddressPool", None, "kubevip-global")["spec"]["namespaceSelector"],
        json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
            "values": ["development", "production"]}]})
    );
    assert_eq!(
        object(&docs, "AddressPool", None, "kubevip-production")["spec"]["addresses"],
        json!(["192.168.20.65-192.168.20.94"])
    );
    let web = object(&docs, "Service", Some("development"), "web");
    assert_eq!(
        web["metadata"]["annotations"],
        json!({"buoy.io/load-balancer-ips": "192.168.20.100"})
    );
    assert_eq!(web["spec"].get("loadBalancerIP"), None);
    assert_eq!(
        object(&docs, "Service", Some("development"), "dns-udp")["metadata"]["annotations"]["buoy.io/allow-shared-ip"],
        "192.168.20.101"
    );
    let lines = warnings(&stderr);
    warned(
        &lines,
        "warning: kubevip.yaml:10: ",
        "data.range-production",
    );
    warned(&lines, "warning: services.yaml:", "kube-vip.io/egress");
    assert_eq!(
        check(&yaml),
        "configuration OK: 0 VirtualIP(s), 0 UpstreamPool(s), 3 AddressPool(s), 0 Secret(s), \
         5 Service(s)\n"
    );
}

/// A transcript of the guide: `buoy-agent import ARGS > buoy.yaml` run in `dir`, its warnings,
/// `check`, and the YAML, verbatim; the guide's block that starts with the same command must be
/// it. `BUOY_BLESS=1` rewrites the block.
fn guide_shows(args: &[&str], dir: &Path) {
    let mut import = vec!["import"];
    import.extend_from_slice(args);
    let (yaml, warnings) = run(&import, dir);
    let tmp = tempfile::Builder::new()
        .prefix("buoy-guide-")
        .tempdir()
        .unwrap();
    std::fs::write(tmp.path().join("buoy.yaml"), &yaml).unwrap();
    let (checked, _) = run(&["check", "--config", "buoy.yaml"], tmp.path());
    let start = format!("$ buoy-agent import {} > buoy.yaml\n", args.join(" "));
    let block = format!(
        "{start}{warnings}$ buoy-agent check --config buoy.yaml\n{checked}$ cat buoy.yaml\n{yaml}"
    );
    let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/migration.md");
    let guide = std::fs::read_to_string(&guide_path).unwrap();
    let at = guide
        .find(&start)
        .unwrap_or_else(|| panic!("the guide shows {start}"));
    let end = at + guide[at..].find("```\n").expect("the block ends");
    if std::env::var_os("BUOY_BLESS").is_some() {
        let rewritten = format!("{}{block}{}", &guide[..at], &guide[end..]);
        std::fs::write(&guide_path, rewritten).unwrap();
        return;
    }
    assert!(
        guide[at..end] == block,
        "docs/migration.md shows another output than the importer's for {start}; run \
         BUOY_BLESS=1 cargo test -p buoy-agent --test import the_migration_guide to rewrite it"
    );
}

/// The migration guide shows the imports as they really run: the tutorial's keepalived and
/// nginx files, the MetalLB configuration and the kube-vip one (the importer's fixtures).
#[test]
fn the_migration_guide_shows_the_real_output() {
    guide_shows(
        &[
            "--keepalived",
            "lb1.conf",
            "lb2.conf",
            "--nginx",
            "nginx.conf",
        ],
        &fixtures().join("seed"),
    );
    guide_shows(
        &["--metallb", "metallb.yaml", "services.yaml"],
        &case("24-metallb-l2"),
    );
    guide_shows(
        &["--kube-vip", "kubevip.yaml", "services.yaml"],
        &case("25-kube-vip"),
    );
}

/// A key and a self-signed certificate for `name` made by openssl in `dir` (`KEY` is
/// `ec -pkeyopt ec_paramgen_curve:P-256` or `rsa:2048`); with `ca`, a CA certificate.
fn openssl_certificate(dir: &Path, stem: &str, subject: &str, key: &[&str], ca: bool) {
    let mut args = vec!["req", "-x509", "-newkey"];
    args.extend_from_slice(key);
    let (keyfile, certfile) = (format!("{stem}.key"), format!("{stem}.crt"));
    let subj = format!("/CN={subject}");
    let san = format!("subjectAltName=DNS:{subject}");
    args.extend_from_slice(&[
        "-nodes", "-days", "30", "-subj", &subj, "-keyout", &keyfile, "-out", &certfile,
    ]);
    if ca {
        args.extend_from_slice(&["-addext", "basicConstraints=critical,CA:TRUE"]);
    } else {
        args.extend_from_slice(&["-addext", &san]);
    }
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(&args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nginx's TLS as users write it: two HTTPS servers on 443 (an ECDSA and an RSA certificate made
/// by openssl, one path relative to nginx.conf and one absolute), routes, a `proxy_pass https://`
/// verified against a CA, a stream UDP server. The binary turns them into an HTTPS listener whose
/// certificates are `kubernetes.io/tls` Secrets holding the files (the default server's first),
/// a pool with `tls` and a `ca.crt` Secret, a UDP listener; kubectl (YAML 1.1) reads it as Buoy
/// does, and `buoy-agent check` serves every certificate. With --secrets-as-references the keys
/// stay out and the comments say how to create them.
#[test]
fn the_binary_translates_tls_into_secrets_that_check_accepts() {
    let tmp = tempfile::Builder::new()
        .prefix("buoy-import-tls-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    openssl_certificate(&certs, "a.example.com", "a.example.com", &ec, false);
    openssl_certificate(&certs, "internal-ca", "Internal CA", &ec, true);
    let elsewhere = dir.join("etc-ssl");
    std::fs::create_dir(&elsewhere).unwrap();
    openssl_certificate(&elsewhere, "b", "b.example.com", &["rsa:2048"], false);
    let nginx = format!(
        "events {{ worker_connections 512; }}
http {{
    http2 on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    upstream web {{ server 10.0.0.11:80; }}
    upstream api {{ server 10.0.0.21:8443; server 10.0.0.22:8443; }}
    server {{
        listen 192.0.2.10:443 ssl;
        server_name a.example.com;
        ssl_certificate certs/a.example.com.crt;
        ssl_certificate_key certs/a.example.com.key;
        location / {{ proxy_pass http://web; }}
        location = /health {{ proxy_pass http://web; }}
        location /api/ {{
            proxy_pass https://api;
            proxy_ssl_server_name on;
            proxy_ssl_name api.internal.example;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate certs/internal-ca.crt;
        }}
    }}
    server {{
        listen 192.0.2.10:443 ssl default_server;
        server_name b.example.com;
        ssl_certificate {b}/b.crt;
        ssl_certificate_key {b}/b.key;
        location / {{ proxy_pass http://web; }}
    }}
}}
stream {{
    upstream dns {{ server 10.0.0.53:53; server 10.0.0.54:53; }}
    server {{
        listen 192.0.2.10:53 udp;
        access_log /var/log/nginx/dns.log;
        proxy_pass dns;
    }}
}}
",
        b = elsewhere.display()
    );
    std::fs::write(dir.join("nginx.conf"), nginx).unwrap();
    let (yaml, stderr) = run(&["import", "--nginx", "nginx.conf"], dir);
    let lines = warnings(&stderr);
    warned(
        &lines,
        "warning: nginx.conf:5: directive \"ssl_session_cache\"",
        "tickets",
    );
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        yaml.contains("# THIS DOCUMENT HOLDS A PRIVATE KEY"),
        "{yaml}"
    );
    let out = dir.join("buoy.yaml");
    std::fs::write(&out, &yaml).unwrap();
    let docs = read_as_kubectl(&out);

    // The Secrets hold the files as they are.
    let file = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let a = object(&docs, "Secret", Some("default"), "a.example.com-tls");
    assert_eq!(a["type"], "kubernetes.io/tls");
    assert_eq!(
        a["stringData"]["tls.crt"],
        file(certs.join("a.example.com.crt"))
    );
    assert_eq!(
        a["stringData"]["tls.key"],
        file(certs.join("a.example.com.key"))
    );
    let b = object(&docs, "Secret", Some("default"), "b-tls");
    assert_eq!(b["stringData"]["tls.crt"], file(elsewhere.join("b.crt")));
    assert_eq!(b["stringData"]["tls.key"], file(elsewhere.join("b.key")));
    let ca = object(&docs, "Secret", Some("default"), "internal-ca");
    assert_eq!(
        ca["stringData"]["ca.crt"],
        file(certs.join("internal-ca.crt"))
    );

    let api = object(&docs, "UpstreamPool", Some("default"), "api");
    assert_eq!(
        api["spec"]["tls"],
        json!({"serverName": "api.internal.example", "caSecretName": "internal-ca"})
    );
    let vip = object(&docs, "VirtualIP", Some("default"), "web");
    let listeners = vip["spec"]["listeners"].as_array().unwrap();
    let https = &listeners[0];
    assert_eq!(
        (&https["name"], &https["port"], &https["protocol"]),
        (&json!("https"), &json!(443), &json!("HTTPS"))
    );
    // The default server's certificate first; TLS 1.2 and HTTP/2 are the API's defaults.
    assert_eq!(
        https["tls"],
        json!({"certificates": [{"secretName": "b-tls"}, {"secretName": "a.example.com-tls"}]})
    );
    assert_eq!(https["upstreamPool"], "web");
    assert_eq!(
        https["routes"],
        json!([
            {"hosts": ["b.example.com"], "paths": [{"type": "Prefix", "value": "/"}],
             "upstreamPool": "web"},
            {"hosts": ["a.example.com"], "paths": [
                {"type": "Prefix", "value": "/"}, {"type": "Exact", "value": "/health"}
            ], "upstreamPool": "web"},
            {"hosts": ["a.example.com"], "paths": [{"type": "Prefix", "value": "/api/"}],
             "upstreamPool": "api"}
        ])
    );
    let udp = &listeners[1];
    assert_eq!(
        (&udp["name"], &udp["protocol"], &udp["upstreamPool"]),
        (&json!("udp-53"), &json!("UDP"), &json!("dns"))
    );
    assert_eq!(udp["accessLog"], json!({"format": "Combined"}));

    // `check` reads every certificate and key and has nothing to say about them.
    let check = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .current_dir(dir)
        .args(["check", "--config", "buoy.yaml"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");
    assert_eq!(said, "", "check finds no broken certificate");
    assert!(
        String::from_utf8_lossy(&check.stdout).starts_with(
            "configuration OK: 1 VirtualIP(s), 3 UpstreamPool(s), 1 AddressPool(s), 3 Secret(s)"
        ),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Keys as references: no key in the output, the commands that make the Secrets instead.
    let (yaml, _) = run(
        &["import", "--nginx", "nginx.conf", "--secrets-as-references"],
        dir,
    );
    assert!(!yaml.contains("PRIVATE KEY"), "{yaml}");
    assert!(
        yaml.contains(&format!(
            "#   kubectl -n default create secret tls b-tls --cert={b}/b.crt --key={b}/b.key\n",
            b = elsewhere.display()
        )),
        "{yaml}"
    );
    assert!(
        yaml.contains(
            "#   kubectl -n default create secret tls a.example.com-tls --cert=certs/a.example.com.crt --key=certs/a.example.com.key\n"
        ),
        "{yaml}"
    );
    assert!(yaml.contains("name: internal-ca"), "the CA is no secret");
}
