//! TLS to backends (UpstreamPool `tls`) end to end, in a LAN of network namespaces (client,
//! proxy, web) with the standalone agent and Debian's nginx as the HTTPS backend, whose
//! certificate (for `backend.test` and the web host's IP address) a test CA made with openssl
//! signed. nginx answers with the SNI name it saw, its connection number and that connection's
//! request count: the right CA serves (by name and by IP address), a wrong CA and a name the
//! certificate lacks fail with 502 and rustls's reason, `insecureSkipVerify` serves, backend
//! connections are reused, TCP listeners speak TLS to the backend too, and a missing CA Secret
//! leaves its pool without backends (503 with the reason, and `buoy-agent check` says so).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use buoy_tests::netlab::Lab;

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");
const VIP: &str = "10.77.0.100";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`dir/NAME-ca.crt`, `.key`): ECDSA P-256, self-signed.
fn ca(dir: &Path, name: &str) -> PathBuf {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
    crt
}

/// A server certificate for `backend.test` and `ip`, signed by the CA `ca_name`:
/// (`dir/leaf.crt`, `dir/leaf.key`).
fn leaf(dir: &Path, ca_name: &str, ip: IpAddr) -> (PathBuf, PathBuf) {
    let (crt, key, csr, ext) = (
        dir.join("leaf.crt"),
        dir.join("leaf.key"),
        dir.join("leaf.csr"),
        dir.join("leaf.ext"),
    );
    let p = |p: &Path| p.to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=backend.test",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]);
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=DNS:backend.test,IP:{ip}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&dir.join(format!("{ca_name}.crt"))),
        "-CAkey",
        &p(&dir.join(format!("{ca_name}.key"))),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&crt),
    ]);
    (crt, key)
}

/// A Secret document whose `ca.crt` is this PEM file.
fn ca_secret(name: &str, crt: &Path) -> String {
    let pem: String = std::fs::read_to_string(crt)
        .unwrap()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  ca.crt: |\n{pem}"
    )
}

/// One listener per case on the VIP, each with its own pool on the web host's nginx (port 443),
/// `tls` as given; `extra` goes into the pool's spec.
const CASES: &[(&str, u16, &str, &str, &str)] = &[
    // name, port, protocol, tls, extra
    (
        "verified",
        80,
        "HTTP",
        "{serverName: backend.test, caSecretName: backend-ca}",
        "",
    ),
    ("by-ip", 81, "HTTP", "{caSecretName: backend-ca}", ""),
    (
        "wrong-ca",
        82,
        "HTTP",
        "{serverName: backend.test, caSecretName: other-ca}",
        "  healthCheck: {passive: {maxFails: 0}}\n",
    ),
    (
        "insecure",
        83,
        "HTTP",
        "{serverName: other.test, insecureSkipVerify: true}",
        "",
    ),
    (
        "wrong-name",
        84,
        "HTTP",
        "{serverName: wrong.test, caSecretName: backend-ca}",
        "",
    ),
    ("missing-ca", 85, "HTTP", "{caSecretName: missing-ca}", ""),
    (
        "tcp",
        86,
        "TCP",
        "{serverName: backend.test, caSecretName: backend-ca}",
        "",
    ),
    // Active checks over the pool's TLS, verified as its traffic is: the right CA keeps the
    // backend in, the wrong one takes it out (no request is tried: "no healthy backend").
    (
        "checked",
        88,
        "HTTP",
        "{serverName: backend.test, caSecretName: backend-ca}",
        "  healthCheck: {active: {protocol: HTTP, path: /, interval: 200ms, timeout: 200ms}}\n",
    ),
    (
        "checked-wrong-ca",
        89,
        "HTTP",
        "{serverName: backend.test, caSecretName: other-ca}",
        "  healthCheck: {active: {protocol: HTTPS, path: /, interval: 200ms, timeout: 200ms}, passive: {maxFails: 0}}\n",
    ),
    // nginx's port 444 closes every connection after one request: each is a new handshake.
    (
        "resumed",
        87,
        "HTTP",
        "{serverName: backend.test, caSecretName: backend-ca}",
        "",
    ),
];

fn config_yaml(web: IpAddr) -> String {
    let listeners: String = CASES
        .iter()
        .map(|(name, port, protocol, _, _)| {
            // The wrong CA's requests are looked for in the access log.
            let log = if *name == "wrong-ca" {
                ", accessLog: {format: JSON}"
            } else {
                ""
            };
            format!(
                "    - {{name: {name}, port: {port}, protocol: {protocol}, upstreamPool: {name}{log}}}\n"
            )
        })
        .collect();
    let pools: String = CASES
        .iter()
        .map(|(name, _, _, tls, extra)| {
            let port = if *name == "resumed" { 444 } else { 443 };
            format!(
                "---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: {name}}}\nspec:\n  backends: [{{address: {web}, port: {port}}}]\n  tls: {tls}\n{extra}"
            )
        })
        .collect();
    format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: web}}\nspec:\n  addresses: [{VIP}]\n  interface: eth0\n  virtualRouterID: 42\n  vrrp: {{advertisementInterval: 100ms}}\n  listeners:\n{listeners}{pools}"
    )
}

/// `curl -i` from the client to each URL in turn on one connection: the status, headers and
/// body of the last.
fn get(lab: &Lab, port: u16, times: usize) -> (u16, String) {
    let url = format!("http://{VIP}:{port}/");
    let mut args = vec!["-sS", "-i", "--max-time", "10"];
    for _ in 0..times {
        args.push(&url);
    }
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.host("client").ns, "curl"])
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let last = text
        .rfind("HTTP/1.1 ")
        .map_or(String::new(), |i| text[i..].to_string());
    let status = last
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, last)
}

/// nginx's `key=value` in a response body.
fn field<'a>(response: &'a str, key: &str) -> &'a str {
    response
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or("?")
}

#[test]
fn backends_over_tls_are_verified_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(&["client", "proxy", "web"]).unwrap();
    let web = IpAddr::V4(lab.host("web").ipv4);
    ca(dir.path(), "backend-ca");
    let other = ca(dir.path(), "other-ca");
    let (crt, key) = leaf(dir.path(), "backend-ca", web);
    let nginx_conf = format!(
        "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 443 ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    keepalive_requests 1000;\n    location / {{ return 200 \"sni=$ssl_server_name conn=$connection requests=$connection_requests\\n\"; }}\n  }}\n  server {{\n    listen 444 ssl;\n    ssl_certificate {crt};\n    ssl_certificate_key {key};\n    keepalive_requests 1;\n    location / {{ return 200 \"sni=$ssl_server_name reused=$ssl_session_reused\\n\"; }}\n  }}\n}}\n",
        crt.display(),
        key.display(),
        crt = crt.display(),
        key = key.display(),
    );
    buoy_tests::nginx::spawn(
        &mut lab,
        "web",
        &dir.path().join("nginx"),
        "tls",
        "1",
        &nginx_conf,
    )
    .unwrap();

    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut yaml = config_yaml(web);
    yaml.push_str(&ca_secret("backend-ca", &dir.path().join("backend-ca.crt")));
    yaml.push_str(&ca_secret("other-ca", &other));
    std::fs::write(config.join("buoy.yaml"), yaml).unwrap();
    let config = config.to_str().unwrap().to_string();
    let agent = lab
        .spawn_standalone("proxy", std::path::Path::new(&config))
        .unwrap();
    assert!(
        lab.wait_sole_holder(VIP.parse().unwrap(), "proxy", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );

    // The right CA: served, and the backend saw the pool's serverName by SNI.
    let (status, text) = get(&lab, 80, 1);
    assert_eq!(status, 200, "verified: {text}\n{}", lab.logs());
    assert_eq!(field(&text, "sni"), "backend.test", "{text}");

    // Keep-alive: three requests on one client connection, one backend connection.
    let (status, text) = get(&lab, 80, 3);
    assert_eq!(status, 200, "{text}");
    let requests: u32 = field(&text, "requests").parse().unwrap_or(0);
    assert!(
        requests >= 3,
        "the backend connection carried {requests} requests: {text}"
    );
    // And the listener's idle cache: a new client connection gets the same backend connection.
    let conn = field(&text, "conn").to_string();
    let (_, again) = get(&lab, 80, 1);
    assert_eq!(
        field(&again, "conn"),
        conn,
        "reused from the cache: {again}"
    );
    assert!(field(&again, "requests").parse::<u32>().unwrap_or(0) > requests);

    // No serverName, an IP address backend: verified against the certificate's IP address
    // SAN, and no SNI sent (SNI carries names only).
    let (status, text) = get(&lab, 81, 1);
    assert_eq!(status, 200, "by IP: {text}");
    assert_eq!(field(&text, "sni"), "", "{text}");

    // The wrong CA: every request fails, 502 with rustls's reason.
    for _ in 0..3 {
        let (status, text) = get(&lab, 82, 1);
        assert_eq!(status, 502, "wrong CA: {text}");
        assert!(
            text.contains("X-Buoy-Error: backend TLS handshake with backend.test failed: invalid peer certificate: UnknownIssuer"),
            "{text}"
        );
    }
    // The access log has them, with the backend tried.
    let output = lab.proc(agent).output();
    let logged = output
        .iter()
        .filter(|l| {
            l.contains("\"status\":502") && l.contains(&format!("\"upstream\":\"{web}:443\""))
        })
        .count();
    assert!(logged >= 3, "access log lines: {}", output.join("\n"));

    // insecureSkipVerify: any certificate, any name.
    let (status, text) = get(&lab, 83, 1);
    assert_eq!(status, 200, "insecure: {text}");
    assert_eq!(field(&text, "sni"), "other.test", "{text}");

    // A name the certificate lacks: 502 with the reason; it counts against the backend
    // (passive health, maxFails 1), which is then out.
    let (status, text) = get(&lab, 84, 1);
    assert_eq!(status, 502, "wrong name: {text}");
    assert!(
        text.contains("X-Buoy-Error: backend TLS handshake with wrong.test failed: invalid peer certificate: certificate not valid for name"),
        "{text}"
    );
    let (status, text) = get(&lab, 84, 1);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("X-Buoy-Error: no healthy backend"), "{text}");

    // A missing CA Secret: no usable backend, and the reason.
    let (status, text) = get(&lab, 85, 1);
    assert_eq!(status, 503, "missing CA: {text}");
    assert!(
        text.contains("X-Buoy-Error: no usable backend: tls.caSecretName missing-ca: not found; no backend is used, as none could be verified"),
        "{text}"
    );

    // A TCP listener: plain from the client, TLS to the backend (nginx stream's proxy_ssl).
    let (status, text) = get(&lab, 86, 1);
    assert_eq!(status, 200, "TCP: {text}\n{}", lab.logs());
    assert_eq!(field(&text, "sni"), "backend.test", "{text}");

    // Sessions are resumed: a backend that closes every connection after one request sees
    // the next handshake resume the session of the one before.
    let (status, text) = get(&lab, 87, 1);
    assert_eq!((status, field(&text, "reused")), (200, "."), "{text}");
    let (status, text) = get(&lab, 87, 1);
    assert_eq!(
        (status, field(&text, "reused")),
        (200, "r"),
        "resumed: {text}"
    );

    // Health checks over the pool's TLS: passing with the right CA, failing with the wrong one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut checked, mut wrong) = (get(&lab, 88, 1), get(&lab, 89, 1));
    while std::time::Instant::now() < deadline
        && (checked.0 != 200 || !wrong.1.contains("X-Buoy-Error: no healthy backend"))
    {
        std::thread::sleep(Duration::from_millis(200));
        (checked, wrong) = (get(&lab, 88, 1), get(&lab, 89, 1));
    }
    assert_eq!(
        checked.0,
        200,
        "checked over verified TLS: {}\n{}",
        checked.1,
        lab.logs()
    );
    assert!(
        wrong.0 == 502 && wrong.1.contains("X-Buoy-Error: no healthy backend"),
        "failing its checks (wrong CA), the backend is out: {}",
        wrong.1
    );

    // `buoy-agent check` warns of the missing CA and of insecureSkipVerify.
    let check = Command::new(AGENT)
        .args(["check", "--config", &config])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("(UpstreamPool default/missing-ca): spec.tls: tls.caSecretName missing-ca: not found; no backend is used")
            && said.contains("(UpstreamPool default/insecure): spec.tls: tls.insecureSkipVerify: backend certificates are not verified"),
        "{said}"
    );
}

#[test]
fn check_refuses_a_ca_with_insecure_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pool.yaml"),
        "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: p}\nspec:\n  backends: [{address: 10.0.0.1, port: 443}]\n  tls: {caSecretName: ca, insecureSkipVerify: true}\n",
    )
    .unwrap();
    let check = Command::new(AGENT)
        .args(["check", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{said}");
    assert!(
        said.contains("spec.tls.insecureSkipVerify: caSecretName and insecureSkipVerify: true cannot be used together"),
        "{said}"
    );
}
