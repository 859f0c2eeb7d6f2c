//! HTTPS listeners end to end, in a LAN of network namespaces (client, proxy, web) with the
//! standalone agent: certificates chosen by SNI (checked with curl and openssl s_client),
//! broken Secrets reported and affecting only themselves, the minimum version, and a renewed
//! certificate served within 2 s while a connection opened before keeps working.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::parse_reply,
    netlab::{Lab, in_netns},
    tls::{self, certificate, fingerprint, secret},
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");
const VIP: &str = "10.77.0.100";

/// The VirtualIP (listeners `https` on 443 and `modern` on 8443 with `minVersion: "1.3"`, both
/// with `certificates`) and its pool on the web host's echo backend.
fn vip_yaml(web: IpAddr, certificates: &[&str]) -> String {
    let certs = certificates
        .iter()
        .map(|c| format!("{{secretName: {c}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: web}}\nspec:\n  addresses: [{VIP}]\n  interface: eth0\n  virtualRouterID: 41\n  vrrp: {{advertisementInterval: 100ms}}\n  listeners:\n    - name: https\n      port: 443\n      protocol: HTTPS\n      upstreamPool: web\n      tls:\n        certificates: [{certs}]\n    - name: modern\n      port: 8443\n      protocol: HTTPS\n      upstreamPool: web\n      tls:\n        certificates: [{certs}]\n        minVersion: \"1.3\"\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: web}}\nspec:\n  backends: [{{address: {web}, port: 80}}]\n  http: {{xForwardedProto: true}}\n"
    )
}

/// The lab with an echo backend `web` on the web host and the agent on the proxy host, from
/// the files `write` puts in the config directory; waits for the VIP.
fn start(write: impl FnOnce(&Path, IpAddr)) -> (Lab, buoy_tests::backend::Backend) {
    let mut lab = Lab::new(&["client", "proxy", "web"]).unwrap();
    let web = lab.host("web").ipv4;
    let backend = lab.echo_backend("web", "0.0.0.0:80", "web");
    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    write(&config, IpAddr::V4(web));
    let config = config.to_str().unwrap().to_string();
    lab.spawn_standalone("proxy", std::path::Path::new(&config))
        .unwrap();
    assert!(
        lab.wait_sole_holder(VIP.parse().unwrap(), "proxy", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    (lab, backend)
}

/// curl over HTTP/1.1 to `https://NAME:PORT/`, the VIP standing for NAME, trusting `ca` only.
fn curl(lab: &Lab, name: &str, port: u16, ca: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["--http1.1"];
    args.extend(extra);
    tls::curl(&lab.host("client").ns, VIP, name, port, ca, &args)
}

/// The fingerprint of the certificate the listener on `port` presents for SNI `name`.
fn presented(lab: &Lab, port: u16, name: Option<&str>) -> String {
    tls::presented(&lab.host("client").ns, &format!("{VIP}:{port}"), name)
}

/// The agent's `/status` and `/metrics`.
fn admin(lab: &Lab, path: &'static str) -> String {
    let ns = lab.host("proxy").ns.clone();
    in_netns(&ns, move || {
        buoy_tests::backend::request("127.0.0.1:9901".parse().unwrap(), "GET", path, &[], "")
            .map(|r| r.body)
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap_or_default()
}

#[test]
fn each_name_gets_its_certificate_and_broken_secrets_affect_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let (a_crt, a_key) = certificate(dir.path(), "a", &["a.example.com"]);
    let (b_crt, b_key) = certificate(dir.path(), "b", &["*.b.example.com"]);
    let (c_crt, _) = certificate(dir.path(), "c", &["c.example.com"]);
    let (lab, _backend) = start(|config, web| {
        let mut yaml = vip_yaml(web, &["a", "missing", "wrong-key", "b"]);
        yaml.push_str(&secret("a", &a_crt, &a_key));
        yaml.push_str(&secret("b", &b_crt, &b_key));
        // c's certificate with a's key.
        yaml.push_str(&secret("wrong-key", &c_crt, &a_key));
        std::fs::write(config.join("buoy.yaml"), yaml).unwrap();
    });

    let (ok, text) = curl(&lab, "a.example.com", 443, &a_crt, &[]);
    assert!(
        ok && text.starts_with("web"),
        "a.example.com: {text}\n{}",
        lab.logs()
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "the backend is told the client came over TLS: {text}"
    );
    let (ok, text) = curl(&lab, "x.b.example.com", 443, &b_crt, &[]);
    assert!(
        ok && text.starts_with("web"),
        "x.b.example.com by wildcard: {text}"
    );
    let (ok, text) = curl(&lab, "x.b.example.com", 443, &a_crt, &[]);
    assert!(!ok, "b's name is not served a's certificate: {text}");

    assert_eq!(
        presented(&lab, 443, Some("a.example.com")),
        fingerprint(&a_crt)
    );
    assert_eq!(
        presented(&lab, 443, Some("y.B.Example.com")),
        fingerprint(&b_crt)
    );
    assert_eq!(
        presented(&lab, 443, None),
        fingerprint(&a_crt),
        "no SNI: the first"
    );
    assert_eq!(
        presented(&lab, 443, Some("unknown.example.net")),
        fingerprint(&a_crt),
        "an unknown name: the first"
    );

    // TLS 1.2 on the default listener, not on the one that requires 1.3.
    let max12 = ["--tlsv1.2", "--tls-max", "1.2"];
    let (ok, text) = curl(&lab, "a.example.com", 443, &a_crt, &max12);
    assert!(ok, "TLS 1.2 where minVersion is 1.2: {text}");
    let (ok, text) = curl(&lab, "a.example.com", 8443, &a_crt, &max12);
    assert!(!ok, "TLS 1.2 where minVersion is 1.3: {text}");
    let (ok, text) = curl(&lab, "a.example.com", 8443, &a_crt, &[]);
    assert!(ok && text.starts_with("web"), "TLS 1.3: {text}");

    // The broken Secrets are said in the status; the others serve.
    let status = admin(&lab, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let why = status["default/web"]["notServing"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("certificate Secret missing: not found; not served")
            && why.contains(
                "certificate Secret wrong-key: tls.key does not match the certificate in tls.crt"
            ),
        "{status}"
    );
    assert_eq!(status["default/web"]["state"], "MASTER", "{status}");
    // `buoy-agent check` says the same of the files.
    let check = Command::new(AGENT)
        .args(["check", "--config"])
        .arg(lab.dir().join("config"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("spec.listeners[0]: certificate Secret missing: not found; not served")
            && said.contains(
                "spec.listeners[1]: certificate Secret wrong-key: tls.key does not match"
            ),
        "{said}"
    );

    let metrics = admin(&lab, "/metrics");
    let expiry = metrics
        .lines()
        .find(|l| {
            l.starts_with("buoy_tls_certificate_expiry_timestamp_seconds{")
                && l.contains("secret=\"default/a\"")
                && l.contains("/https@")
        })
        .unwrap_or_else(|| panic!("no expiry series for default/a:\n{metrics}"));
    let at: f64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (at - now - 30.0 * 86_400.0).abs() < 2.0 * 86_400.0,
        "expires in about 30 days: {expiry}"
    );
}

#[test]
fn a_renewed_certificate_is_served_within_2s_and_open_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (old_crt, old_key) = certificate(dir.path(), "old", &["a.example.com"]);
    let (new_crt, new_key) = certificate(dir.path(), "new", &["a.example.com"]);
    let config_file = std::sync::Arc::new(std::sync::Mutex::new(PathBuf::new()));
    let at = config_file.clone();
    let (lab, _backend) = start(move |config, web| {
        std::fs::write(config.join("vip.yaml"), vip_yaml(web, &["a"])).unwrap();
        std::fs::write(config.join("a.yaml"), secret("a", &old_crt, &old_key)).unwrap();
        *at.lock().unwrap() = config.join("a.yaml");
    });
    let old = fingerprint(&dir.path().join("old.crt"));
    assert_eq!(presented(&lab, 443, Some("a.example.com")), old);

    // A keep-alive connection opened on the old certificate.
    let connect = format!("{VIP}:443");
    let mut open = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.host("client").ns,
            "openssl",
            "s_client",
        ])
        .args([
            "-quiet",
            "-connect",
            &connect,
            "-servername",
            "a.example.com",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_server = open.stdin.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let from_server = open.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(from_server).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ask = |n: u32| -> bool {
        let request = format!("GET /{n} HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
        if to_server.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) => {
                    got.push_str(&line);
                    got.push_str("\r\n");
                    if let Some((reply, _)) = parse_reply(got.as_bytes())
                        && reply.body.starts_with("web")
                    {
                        return reply.status == 200;
                    }
                }
                Err(_) => break,
            }
        }
        false
    };
    assert!(
        ask(1),
        "a request on the connection before the renewal\n{}",
        lab.logs()
    );

    let path = config_file.lock().unwrap().clone();
    std::fs::write(&path, secret("a", &new_crt, &new_key)).unwrap();
    let renewed = Instant::now();
    let new = fingerprint(&new_crt);
    let mut seen = String::new();
    while renewed.elapsed() < Duration::from_secs(5) && seen != new {
        seen = presented(&lab, 443, Some("a.example.com"));
    }
    let took = renewed.elapsed();
    assert_eq!(
        seen,
        new,
        "the renewed certificate is served\n{}",
        lab.logs()
    );
    assert!(
        took < Duration::from_secs(3),
        "within 2 s (+ a handshake): {took:?}"
    );
    println!("renewed certificate served after {} ms", took.as_millis());

    assert!(
        ask(2),
        "the connection opened before the renewal still serves\n{}",
        lab.logs()
    );
    assert!(
        lab.logs().contains("certificates rotated"),
        "rotated in place, not by reopening the listener\n{}",
        lab.logs()
    );
    let _ = open.kill();
    let _ = open.wait();
}
