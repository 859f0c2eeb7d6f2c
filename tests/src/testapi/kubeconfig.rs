//! The kubeconfig that points kube-rs and kubectl at the test server (plain HTTP on loopback, or
//! HTTPS without verifying the server's self-signed certificate; a dummy token: nothing is
//! authenticated).

use std::{net::SocketAddr, path::Path};

use serde_json::json;

pub const CONTEXT: &str = "buoy-testapi";

pub fn render(addr: SocketAddr, https: bool) -> String {
    let cluster = if https {
        json!({"server": format!("https://{addr}"), "insecure-skip-tls-verify": true})
    } else {
        json!({"server": format!("http://{addr}")})
    };
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": CONTEXT, "user": {"token": "buoy-testapi"}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}}],
        "current-context": CONTEXT,
        "preferences": {},
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

pub fn write(path: &Path, addr: SocketAddr, https: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render(addr, https))
}
