//! Routes by host and path, against nginx: in a LAN of network namespaces (client, proxy,
//! web), Buoy and nginx serve the same virtual hosts and locations from the proxy host, and the
//! same requests from the client host must reach the same backend (or get the same 404) through
//! both. Then bad routes in the standalone agent: reported in `/status`, each affecting only
//! itself.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use buoy_tests::{
    backend::{Reply, parse_reply},
    netlab::{Lab, in_netns},
};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");

/// Backends on the web host: (pool, port); each echo backend answers with its pool's name.
const POOLS: [(&str, u16); 7] = [
    ("default", 8001),
    ("shop", 8002),
    ("api", 8003),
    ("login", 8004),
    ("login-prefix", 8005),
    ("wild", 8006),
    ("static", 8007),
];

/// Routes of both listeners: (hosts, paths as `=` exact or prefix, pool).
const ROUTES: [(&[&str], &[&str], &str); 7] = [
    (&["shop.example.com"], &["/"], "shop"),
    (&["shop.example.com"], &["/api/"], "api"),
    (&["shop.example.com"], &["=/api/login"], "login"),
    (&["shop.example.com"], &["/api/login"], "login-prefix"),
    (&["*.example.com"], &["/"], "wild"),
    (
        &["*.eu.example.com", "eu.example.org"],
        &["/shop/", "=/"],
        "shop",
    ),
    (&[], &["/static/"], "static"),
];

/// Buoy's configuration: listener `with-default` (port 8080) whose own pool takes what no
/// route does, and `routes-only` (port 8090) without one.
fn buoy_yaml(proxy: &str, web: &str) -> String {
    let mut routes = String::new();
    for (hosts, paths, pool) in ROUTES {
        routes.push_str(&format!("        - upstreamPool: {pool}\n"));
        if !hosts.is_empty() {
            routes.push_str(&format!("          hosts: [{}]\n", quoted(hosts)));
        }
        routes.push_str("          paths:\n");
        for p in paths {
            let (kind, value) = match p.strip_prefix('=') {
                Some(v) => ("Exact", v),
                None => ("Prefix", *p),
            };
            routes.push_str(&format!(
                "            - {{type: {kind}, value: \"{value}\"}}\n"
            ));
        }
    }
    let mut yaml = format!(
        "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: web}}\nspec:\n  addresses: [{proxy}]\n  listeners:\n    - name: with-default\n      port: 8080\n      upstreamPool: default\n      routes:\n{routes}    - name: routes-only\n      port: 8090\n      routes:\n{routes}"
    );
    for (pool, port) in POOLS {
        yaml.push_str(&format!(
            "---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: {pool}}}\nspec:\n  backends: [{{address: {web}, port: {port}}}]\n"
        ));
    }
    yaml
}

fn quoted(hosts: &[&str]) -> String {
    hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// nginx's configuration of the same routes: one `server` per host name (its locations from
/// every route naming it), the routes without hosts in the default server; `with_default`: every
/// server's `location /` goes to the default pool, as the listener's own pool in Buoy.
fn nginx_server_blocks(proxy: &str, port: u16, with_default: bool) -> String {
    let mut servers: Vec<(String, Vec<String>)> = vec![("_".to_string(), Vec::new())];
    for (hosts, paths, pool) in ROUTES {
        let names: Vec<String> = if hosts.is_empty() {
            vec!["_".to_string()]
        } else {
            hosts.iter().map(|h| h.to_string()).collect()
        };
        for name in names {
            let i = match servers.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    servers.push((name.clone(), Vec::new()));
                    servers.len() - 1
                }
            };
            for p in paths {
                let location = match p.strip_prefix('=') {
                    Some(v) => format!("= {v}"),
                    None => p.to_string(),
                };
                servers[i].1.push(format!(
                    "location {location} {{ proxy_pass http://{pool}; }}"
                ));
            }
        }
    }
    let mut out = String::new();
    for (name, mut locations) in servers {
        let has_root = locations.iter().any(|l| l.starts_with("location / "));
        if !has_root {
            locations.push(if with_default {
                "location / { proxy_pass http://default; }".to_string()
            } else {
                "location / { return 404; }".to_string()
            });
        }
        let default = if name == "_" { " default_server" } else { "" };
        out.push_str(&format!(
            "  server {{ listen {proxy}:{port}{default}; server_name {name}; {} }}\n",
            locations.join(" ")
        ));
    }
    out
}

fn nginx_conf(proxy: &str, web: &str) -> String {
    let mut upstreams = String::new();
    for (pool, port) in POOLS {
        upstreams.push_str(&format!("  upstream {pool} {{ server {web}:{port}; }}\n"));
    }
    format!(
        "events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n{upstreams}{}{}}}\n",
        nginx_server_blocks(proxy, 8081, true),
        nginx_server_blocks(proxy, 8091, false)
    )
}

/// One request with this `Host` (none when empty) for `path`, a connection of its own.
fn get(target: SocketAddr, host: &str, path: &str) -> Option<Reply> {
    let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("Host: {host}\r\n")
    };
    let req = format!("GET {path} HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    parse_reply(&raw).map(|(r, _)| r)
}

/// What answered: the pool's name, or the status when the proxy answered itself.
fn answer(r: Option<Reply>) -> String {
    match r {
        Some(r) if r.status == 200 => r.served_by().to_string(),
        Some(r) => format!("status {}", r.status),
        None => "failed".to_string(),
    }
}

/// Requests (host, path) and where they must go through the listener with a default pool.
const REQUESTS: [(&str, &str, &str); 25] = [
    ("shop.example.com", "/", "shop"),
    ("shop.example.com", "/cart", "shop"),
    ("shop.example.com", "/api/orders", "api"),
    ("shop.example.com", "/api/login", "login"),
    ("shop.example.com", "/api/login?next=/", "login"),
    ("shop.example.com", "/api/loginx", "login-prefix"),
    ("shop.example.com", "/api/login/x", "login-prefix"),
    ("SHOP.Example.COM:8080", "/api/orders", "api"),
    ("shop.example.com.", "/api/orders", "api"),
    ("shop.example.com", "//api///orders", "api"),
    ("shop.example.com", "/%61pi/login", "login"),
    ("shop.example.com", "/static/app.js", "shop"),
    // nginx redirects a proxied prefix's path without its slash.
    ("shop.example.com", "/api", "status 301"),
    ("shop.example.com", "/api?x=1", "status 301"),
    ("x.eu.example.com", "/shop", "status 301"),
    ("www.example.com", "/anything", "wild"),
    ("a.b.example.com", "/", "wild"),
    ("x.eu.example.com", "/shop/cart", "shop"),
    ("x.eu.example.com", "/", "shop"),
    ("x.eu.example.com", "/other", "default"),
    ("eu.example.org", "/shop/", "shop"),
    ("example.com", "/static/app.js", "static"),
    ("example.com", "/", "default"),
    ("other.test", "/static/x/../app.js", "static"),
    ("10.77.0.2", "/static/app.js", "static"),
];

#[test]
fn routes_pick_the_same_backends_as_nginx() {
    let mut lab = Lab::new(&["client", "proxy", "web"]).unwrap();
    let proxy = lab.host("proxy").ipv4.to_string();
    let web = lab.host("web").ipv4.to_string();
    let client = lab.host("client").ns.clone();
    let _backends: Vec<_> = POOLS
        .iter()
        .map(|(pool, port)| lab.echo_backend("web", &format!("0.0.0.0:{port}"), pool))
        .collect();
    let dir = lab.dir().to_path_buf();
    let buoy = dir.join("buoy.yaml");
    std::fs::write(&buoy, buoy_yaml(&proxy, &web)).unwrap();
    let check = std::process::Command::new(AGENT)
        .args(["check", "--config"])
        .arg(&buoy)
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let agent = lab
        .spawn(
            "proxy",
            AGENT,
            &[
                "proxy",
                "--threads",
                "1",
                "--config",
                buoy.to_str().unwrap(),
            ],
        )
        .unwrap();
    assert!(
        lab.proc(agent)
            .wait_for_line("proxy ready", Duration::from_secs(10))
            .is_some(),
        "{}",
        lab.logs()
    );
    let nginx = buoy_tests::nginx::spawn(
        &mut lab,
        "proxy",
        &dir.join("nginx"),
        "routes",
        "1",
        &nginx_conf(&proxy, &web),
    )
    .unwrap();
    let at = |port: u16| SocketAddr::new(proxy.parse().unwrap(), port);
    let (buoy_default, nginx_default, buoy_only, nginx_only) =
        (at(8080), at(8081), at(8090), at(8091));
    // nginx is up once it answers.
    let up = (0..50).any(|_| {
        let r = in_netns(&client, move || get(nginx_default, "example.com", "/"))
            .unwrap()
            .join()
            .unwrap();
        r.is_some() || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(up, "nginx did not start: {:?}", lab.proc(nginx).output());

    let results = in_netns(&client, move || {
        REQUESTS
            .iter()
            .map(|(host, path, _)| {
                (
                    answer(get(buoy_default, host, path)),
                    answer(get(nginx_default, host, path)),
                    get(buoy_only, host, path),
                    answer(get(nginx_only, host, path)),
                )
            })
            .collect::<Vec<_>>()
    })
    .unwrap()
    .join()
    .unwrap();
    let mut differences = Vec::new();
    for ((host, path, want), (buoy, nginx, buoy_only, nginx_only)) in REQUESTS.iter().zip(results) {
        if buoy != *want || nginx != *want {
            differences.push(format!(
                "{host} {path} with a default pool: Buoy {buoy}, nginx {nginx}, expected {want}"
            ));
        }
        // Without the listener's own pool, what no route takes is a 404, as in nginx.
        let want_only = if *want == "default" {
            "status 404"
        } else {
            want
        };
        let reason = buoy_only
            .as_ref()
            .and_then(|r| r.header("X-Buoy-Error"))
            .map(str::to_string);
        let buoy_only = answer(buoy_only);
        if buoy_only != want_only || nginx_only != want_only {
            differences.push(format!(
                "{host} {path} without a default pool: Buoy {buoy_only}, nginx {nginx_only}, expected {want_only}"
            ));
        }
        if want_only == "status 404" && reason.as_deref() != Some("no route for this host and path")
        {
            differences.push(format!("{host} {path}: X-Buoy-Error {reason:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let location = in_netns(&client, move || {
        get(buoy_default, "shop.example.com", "/api?x=1")
            .and_then(|r| r.header("Location").map(str::to_string))
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(location.as_deref(), Some("/api/?x=1"));
}

/// `buoy-agent standalone` with a route to a pool that does not exist and a host and path that
/// two routes name: both said in `/status`'s `notServing`, each affecting only its route.
#[test]
fn bad_routes_are_reported_and_affect_only_themselves() {
    let mut lab = Lab::new(&["client", "proxy", "web"]).unwrap();
    let web = lab.host("web").ipv4.to_string();
    let client = lab.host("client").ns.clone();
    let _backends: Vec<_> = [("shop", 8002), ("api", 8003)]
        .iter()
        .map(|(pool, port)| lab.echo_backend("web", &format!("0.0.0.0:{port}"), pool))
        .collect();
    let vip = "10.77.0.100";
    let config = lab.dir().join("buoy.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: web}}\nspec:\n  addresses: [{vip}]\n  interface: eth0\n  virtualRouterID: 40\n  vrrp: {{advertisementInterval: 100ms}}\n  listeners:\n    - name: http\n      port: 80\n      routes:\n        - {{hosts: [shop.example.com], upstreamPool: shop}}\n        - {{hosts: [shop.example.com], upstreamPool: api}}\n        - {{hosts: [api.example.com], upstreamPool: api}}\n        - {{hosts: [gone.example.com], upstreamPool: missing}}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: shop}}\nspec:\n  backends: [{{address: {web}, port: 8002}}]\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: api}}\nspec:\n  backends: [{{address: {web}, port: 8003}}]\n"
        ),
    )
    .unwrap();
    lab.spawn_standalone("proxy", &config).unwrap();
    let vip_ip: std::net::IpAddr = vip.parse().unwrap();
    assert!(
        lab.wait_sole_holder(vip_ip, "proxy", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    let target = SocketAddr::new(vip_ip, 80);
    let answers = in_netns(&client, move || {
        [
            "shop.example.com",
            "api.example.com",
            "gone.example.com",
            "other.test",
        ]
        .iter()
        .map(|h| {
            let r = get(target, h, "/");
            let reason = r
                .as_ref()
                .and_then(|r| r.header("X-Buoy-Error"))
                .unwrap_or_default()
                .to_string();
            (answer(r), reason)
        })
        .collect::<Vec<_>>()
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(
        answers,
        [
            ("shop".to_string(), String::new()),
            ("api".to_string(), String::new()),
            (
                "status 503".to_string(),
                "no usable backend: UpstreamPool default/missing not found".to_string()
            ),
            (
                "status 404".to_string(),
                "no route for this host and path".to_string()
            ),
        ],
        "{}",
        lab.logs()
    );
    let proxy_ns = lab.host("proxy").ns.clone();
    let status = in_netns(&proxy_ns, || {
        get("127.0.0.1:9901".parse().unwrap(), "localhost", "/status").map(|r| r.body)
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let entry = &status["default/web"];
    assert_eq!(entry["serving"], false, "{status}\n{}", lab.logs());
    let why = entry["notServing"].as_str().unwrap_or_default();
    assert!(
        why.contains(
            "routes[1]: host shop.example.com, Prefix path /: already in routes[0]; ignored here"
        ) && why.contains("routes[3]: UpstreamPool default/missing not found"),
        "{status}"
    );
    assert_eq!(entry["state"], "MASTER", "{status}");
}
