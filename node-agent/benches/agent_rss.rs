//! Agent memory: `buoy-agent standalone` with 10 VirtualIPs, each with an HTTP listener, idle,
//! against keepalived (10 vrrp_instances) + nginx (10 servers, an upstream each) doing the same
//! job on the same machine. Prints RSS in MB. Needs root (network namespaces).
//!
//! cargo bench -p buoy-agent --bench agent_rss
#![allow(clippy::unwrap_used)]

use std::{thread, time::Duration};

use buoy_tests::{keepalived, netlab::Lab, process::rss_mb};

const AGENT: &str = env!("CARGO_BIN_EXE_buoy-agent");
const VIPS: u8 = 10;

fn main() {
    let settle: u64 = buoy_tests::bench_flag("--settle", 5);
    let mut lab = Lab::new(&["buoy", "classic"]).unwrap();
    let dir = lab.dir().to_path_buf();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let d = dir.display().to_string();

    // Buoy: 10 VirtualIPs on the `buoy` host, one HTTP listener each, a static pool.
    let mut yaml = String::from(
        "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: app}\nspec:\n  backends: [{address: 10.77.0.2, port: 8080}]\n",
    );
    for i in 0..VIPS {
        yaml.push_str(&format!(
            "---\napiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {{name: vip{i}}}\nspec:\n  addresses: [10.77.0.{}]\n  interface: eth0\n  virtualRouterID: {}\n  listeners: [{{name: web, port: 80, protocol: HTTP, upstreamPool: app}}]\n",
            100 + i,
            100 + i
        ));
    }
    std::fs::write(dir.join("buoy.yaml"), yaml).unwrap();
    let buoy = lab
        .spawn(
            "buoy",
            AGENT,
            &[
                "standalone",
                "--config",
                &format!("{d}/buoy.yaml"),
                "--node-name",
                "buoy",
                "--metrics-address",
                "127.0.0.1:9901",
            ],
        )
        .unwrap();

    // keepalived + nginx: the same 10 VIPs (other addresses) and 10 proxied servers.
    let instances: Vec<keepalived::Instance> = (0..VIPS)
        .map(|i| keepalived::Instance {
            interface: "eth0".into(),
            vrid: 150 + i,
            priority: 100,
            advert_int: 1.0,
            addresses: vec![format!("10.77.0.{}", 150 + i)],
            password: None,
            unicast: None,
        })
        .collect();
    let (ka, _) = keepalived::start(
        &mut lab,
        "classic",
        &keepalived::config(3, &instances),
        false,
    )
    .unwrap();
    let servers: String = (0..VIPS)
        .map(|i| {
            format!(
                "  server {{ listen 10.77.0.{}:80; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }}\n",
                150 + i
            )
        })
        .collect();
    // nginx binds the VIPs, which keepalived adds a few seconds later: bind them non-locally.
    buoy_tests::netlab::ns_exec(
        &lab.host("classic").ns,
        &["sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"],
    )
    .unwrap();
    let nginx = buoy_tests::nginx::spawn(
        &mut lab,
        "classic",
        &dir,
        "nginx",
        "auto",
        &format!(
            "events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  upstream app {{ server 10.77.0.1:8080 max_fails=2 fail_timeout=15s; keepalive 16; }}\n{servers}}}\n"
        ),
    )
    .unwrap();

    thread::sleep(Duration::from_secs(settle));
    let holds = |host: &str, base: u8| {
        (0..VIPS)
            .filter(|i| {
                lab.holders(format!("10.77.0.{}", base + i).parse().unwrap())
                    .contains(&host.to_string())
            })
            .count()
    };
    let (buoy_vips, classic_vips) = (holds("buoy", 100), holds("classic", 150));
    let b = rss_mb(lab.proc(buoy).pid());
    let k = rss_mb(lab.proc(ka).pid());
    let n = rss_mb(lab.proc(nginx).pid());
    println!("Idle memory, {VIPS} VIPs with an HTTP listener each ({settle} s after start)");
    println!("| | VIPs held | RSS | × keepalived+nginx |");
    println!("|---|---|---|---|");
    println!(
        "| keepalived + nginx (worker_processes auto) | {classic_vips} | {:.1} MB ({k:.1} + {n:.1}) | 1.00 |",
        k + n
    );
    println!(
        "| buoy-agent standalone (default threads) | {buoy_vips} | {b:.1} MB | {:.2} |",
        b / (k + n).max(0.001)
    );
    println!("target: buoy-agent ≤ 30 MB");
}
