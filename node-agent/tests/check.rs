//! `buoy-agent check` accepts the examples and rejects bad files with file, document and path,
//! like `nginx -t`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::process::Command;

fn check(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .arg("check")
        .args(args)
        .output()
        .expect("run buoy-agent");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn accepts_the_seed_example() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed");
    let (ok, stdout, stderr) = check(&["--config", dir]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "configuration OK: 1 VirtualIP(s), 1 UpstreamPool(s), 1 AddressPool(s), 1 Secret(s)"
    );
}

#[test]
fn rejects_a_bad_file_with_every_error_located() {
    let dir = std::env::temp_dir().join(format!("buoy-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web}\nspec:\n  addresses: [192.168.60.88, fd00::1]\n  vrrp: {version: 2, advertisementInterval: 1s}\n").unwrap();
    let (ok, stdout, stderr) = check(&["--config", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!ok);
    assert_eq!(stdout, "");
    let f = file.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "error: {f}: document 1 (VirtualIP default/web): spec.addresses: all addresses must be of one family (all IPv4 or all IPv6)"
            ),
            format!(
                "error: {f}: document 1 (VirtualIP default/web): spec.vrrp.version: VRRP version 2 supports IPv4 only; use version 3 for IPv6 addresses"
            ),
            "configuration invalid: 2 error(s)".to_string(),
        ]
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let (ok, _, stderr) = check(&["--config", "/nonexistent/buoy.yaml"]);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: /nonexistent/buoy.yaml: document 0: cannot read: No such file"),
        "{stderr}"
    );
}

/// The route checks of the API server (CEL) and those it cannot make (other objects, route
/// against route): the first reject the file, the others are warnings with the agent's words.
#[test]
fn routes_bad_input_errors_and_warnings() {
    let dir = std::env::temp_dir().join(format!("buoy-check-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web}\nspec:\n  addresses: [192.168.60.88]\n  listeners:\n    - {name: http, port: 80}\n    - {name: db, port: 5432, protocol: TCP, upstreamPool: db, routes: [{hosts: [db.example.com], upstreamPool: db2}]}\n").unwrap();
    let (ok, _, stderr) = check(&["--config", bad.to_str().unwrap()]);
    let f = bad.display();
    assert!(!ok);
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "error: {f}: document 1 (VirtualIP default/web): spec.listeners[0].upstreamPool: a listener needs an upstreamPool or at least one route"
            ),
            format!(
                "error: {f}: document 1 (VirtualIP default/web): spec.listeners[1].routes: routes apply only to HTTP and HTTPS listeners (TCP and UDP listeners send everything to their upstreamPool)"
            ),
            "configuration invalid: 2 error(s)".to_string(),
        ]
    );
    let warned = dir.join("warned.yaml");
    std::fs::write(&warned, "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web}\nspec:\n  addresses: [192.168.60.88]\n  listeners:\n    - name: http\n      port: 80\n      routes:\n        - {hosts: [shop.example.com], paths: [{type: Exact, value: /login}], upstreamPool: shop}\n        - {hosts: [Shop.Example.com], paths: [{type: Exact, value: /login}], upstreamPool: missing}\n---\napiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: shop}\nspec:\n  backends: [{address: 192.168.60.91, port: 80}]\n").unwrap();
    let (ok, stdout, stderr) = check(&["--config", warned.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    let f = warned.display();
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("configuration OK: 1 VirtualIP(s), 1 UpstreamPool(s)"));
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "warning: {f}: document 1 (VirtualIP default/web): spec.listeners[0]: routes[1]: host shop.example.com, Exact path /login: already in routes[0]; ignored here"
            ),
            format!(
                "warning: {f}: document 1 (VirtualIP default/web): spec.listeners[0]: routes[1]: UpstreamPool default/missing not found"
            ),
        ]
    );
}

/// BGPPeers are checked as the API server checks them (schema and CEL rules), each error at its
/// field path; good ones are counted.
#[test]
fn bgp_peers_are_validated_with_field_paths() {
    let dir = std::env::temp_dir().join(format!("buoy-check-bgp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, "apiVersion: buoy.io/v1alpha1\nkind: AddressPool\nmetadata: {name: routed}\nspec: {addresses: [10.96.0.0/28], namespaces: [default], announcement: BGP}\n---\napiVersion: buoy.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor1}\nspec:\n  peerAddress: 192.168.60.1\n  peerASN: 64512\n  myASN: 64513\n  bfd: {transmitInterval: 100ms, receiveInterval: 100ms}\n  communities: ['64512:100', no-export]\n").unwrap();
    let (ok, stdout, stderr) = check(&["--config", good.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "configuration OK: 0 VirtualIP(s), 0 UpstreamPool(s), 1 AddressPool(s), 0 Secret(s), 1 BGPPeer(s)"
    );
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: buoy.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor1}\nspec:\n  peerAddress: 192.168.60.1\n  peerASN: 64512\n  myASN: 64512\n  bfd: {detectMultiplier: 1}\n---\napiVersion: buoy.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor2}\nspec:\n  peerAddress: 192.168.60.2/24\n  peerASN: 64512\n  myASN: 64513\n  holdTime: 9s\n  keepaliveTime: 10s\n").unwrap();
    let (ok, stdout, stderr) = check(&["--config", bad.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!ok);
    assert_eq!(stdout, "");
    let f = bad.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "error: {f}: document 1 (BGPPeer tor1): spec.bfd.detectMultiplier: Invalid value: 1: must be greater than or equal to 2"
            ),
            format!(
                "error: {f}: document 2 (BGPPeer tor2): spec.keepaliveTime: keepaliveTime must be less than holdTime (unless holdTime is 0s)"
            ),
            format!(
                "error: {f}: document 2 (BGPPeer tor2): spec.peerAddress: must be an IP address without a prefix length"
            ),
            "configuration invalid: 3 error(s)".to_string(),
        ]
    );
}
