//! What `buoy-agent import` makes of nginx's TLS, served: a keepalived.conf and an nginx.conf
//! with two HTTPS servers on one port (their certificates made by openssl) are imported, and the
//! standalone agent runs on the output as it is, in a LAN of network namespaces (client, proxy,
//! web). curl reaches each name with its own certificate and its own pool, a client without SNI
//! gets the default server's certificate, and HTTP/2 stays off as nginx had it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{path::Path, process::Command, time::Duration};

use buoy_tests::{netlab::Lab, tls};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");
const VIP: &str = "10.77.0.100";

/// A self-signed certificate for `name` in `dir/NAME.crt` and its key in `dir/NAME.key`
/// (`key`: openssl's `-newkey` arguments).
fn certificate(dir: &Path, name: &str, key: &[&str]) {
    tls::certificate_with(dir, name, &[name], key);
}

/// curl to `https://NAME/` (the VIP standing for NAME), trusting `ca` only.
fn curl(lab: &Lab, name: &str, ca: &Path, extra: &[&str]) -> (bool, String) {
    tls::curl(&lab.host("client").ns, VIP, name, 443, ca, extra)
}

#[test]
fn imported_https_servers_serve_each_name_with_its_certificate() {
    let mut lab = Lab::new(&["client", "proxy", "web"]).unwrap();
    let web = lab.host("web").ipv4;
    let _alpha = lab.echo_backend("web", "0.0.0.0:80", "alpha");
    let _beta = lab.echo_backend("web", "0.0.0.0:8080", "beta");

    // nginx's and keepalived's files, as on the load balancer (the file's name is the node's).
    let input = lab.dir().join("input");
    std::fs::create_dir_all(input.join("ssl")).unwrap();
    certificate(&input.join("ssl"), "a.example.com", tls::ECDSA_P256);
    certificate(&input.join("ssl"), "b.example.com", &["rsa:2048"]);
    std::fs::write(
        input.join("proxy.conf"),
        format!(
            "vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 41\n    priority 100\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        input.join("nginx.conf"),
        format!(
            "events {{ worker_connections 1024; }}
http {{
    ssl_protocols TLSv1.2 TLSv1.3;
    upstream alpha {{ server {web}:80; }}
    upstream beta {{ server {web}:8080; }}
    server {{
        listen {VIP}:443 ssl;
        server_name b.example.com;
        ssl_certificate ssl/b.example.com.crt;
        ssl_certificate_key ssl/b.example.com.key;
        location / {{ proxy_pass http://beta; }}
    }}
    server {{
        listen {VIP}:443 ssl default_server;
        server_name a.example.com;
        ssl_certificate ssl/a.example.com.crt;
        ssl_certificate_key ssl/a.example.com.key;
        location / {{ proxy_pass http://alpha; }}
    }}
}}
"
        ),
    )
    .unwrap();
    let out = Command::new(AGENT)
        .current_dir(&input)
        .args([
            "import",
            "--keepalived",
            "proxy.conf",
            "--nginx",
            "nginx.conf",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = lab.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("buoy.yaml"), &out.stdout).unwrap();
    let config = config.to_str().unwrap().to_string();
    lab.spawn_standalone("proxy", std::path::Path::new(&config))
        .unwrap();
    assert!(
        lab.wait_sole_holder(VIP.parse().unwrap(), "proxy", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );

    let ssl = input.join("ssl");
    let (a, b) = (ssl.join("a.example.com.crt"), ssl.join("b.example.com.crt"));
    let (ok, text) = curl(&lab, "a.example.com", &a, &[]);
    assert!(
        ok && text.starts_with("alpha"),
        "a.example.com: {text}\n{}",
        lab.logs()
    );
    let (ok, text) = curl(&lab, "b.example.com", &b, &[]);
    assert!(ok && text.starts_with("beta"), "b.example.com: {text}");
    let (ok, text) = curl(&lab, "b.example.com", &a, &[]);
    assert!(!ok, "b.example.com is not served a's certificate: {text}");

    // No SNI: the default server's certificate, as nginx gives.
    assert_eq!(
        tls::presented(&lab.host("client").ns, &format!("{VIP}:443"), None),
        tls::fingerprint(&a),
    );

    // nginx had no `http2 on`: a client that asks for HTTP/2 gets HTTP/1.1.
    let (ok, text) = curl(
        &lab,
        "a.example.com",
        &a,
        &["--http2", "-o", "/dev/null", "-w", "%{http_version}"],
    );
    assert!(ok, "{text}");
    assert_eq!(text, "1.1");
}
