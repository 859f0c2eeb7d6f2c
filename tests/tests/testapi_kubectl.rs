//! kubectl (Debian's kubernetes-client) against the standalone `buoy-testapi` binary: apply
//! Buoy's CRDs and the seed example, get with the CRDs' printer columns, and delete; and the
//! typed imperative commands (`kubectl create namespace|secret|configmap|service`), which send
//! protobuf.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine as _;
use buoy_tests::{kubectl::Kubectl, process::Proc};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts `buoy-testapi` with its kubeconfig in `dir`; kubectl pointed at it.
fn start_server(dir: &Path) -> (Proc, Kubectl) {
    let kubeconfig = dir.join("kubeconfig");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_buoy-testapi"));
    cmd.args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig);
    let server = Proc::spawn("buoy-testapi", cmd).unwrap();
    let line = server
        .wait_for_line("listening on ", Duration::from_secs(10))
        .expect("the server announces its address");
    let addr = line.trim_start_matches("listening on ").trim();
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!("server: http://{addr}"))
    );
    (server, Kubectl::new(kubeconfig))
}

#[test]
fn kubectl_applies_gets_and_deletes_buoy_objects() {
    let dir = tempfile::Builder::new()
        .prefix("buoy-testapi-kubectl-")
        .tempdir()
        .unwrap();
    let (server, k) = start_server(dir.path());

    // As the README says: the whole directory.
    let crds = repo().join("crds");
    let out = k.ok(&["apply", "-f", crds.to_str().unwrap()]);
    for crd in ["virtualips", "upstreampools", "addresspools", "bgppeers"] {
        assert!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd}.buoy.io created"
            )),
            "{out}"
        );
    }

    let seed = repo().join("examples/seed");
    let seed = seed.to_str().unwrap();
    let out = k.ok(&["apply", "-f", seed]);
    for created in [
        "addresspool.buoy.io/default-vips created",
        "secret/vrrp-auth created",
        "upstreampool.buoy.io/test-web created",
        "virtualip.buoy.io/test-web created",
    ] {
        assert!(out.contains(created), "{out}");
    }
    let again = k.ok(&["apply", "-f", seed]);
    assert!(
        again.contains("virtualip.buoy.io/test-web unchanged"),
        "{again}"
    );
    // The addresses column shows the addresses the operator admitted (status.addresses); here
    // kubectl writes them as the operator would.
    k.ok(&[
        "patch",
        "vip",
        "test-web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"addresses": ["192.168.60.88"], "addressPool": "default-vips"}}"#,
    ]);
    let pools = k.ok(&["get", "apool"]);
    assert!(
        pools.starts_with("NAME") && pools.contains("ADDRESSES") && pools.contains("default-vips"),
        "{pools}"
    );

    // The CRD's printer columns, in a Table the server builds.
    let table = k.ok(&["get", "virtualips"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        vec!["NAME", "ADDRESSES", "VRID", "MASTER", "READY", "AGE"],
        "{table}"
    );
    assert_eq!(
        &lines[1][..2],
        &["test-web", "[\"192.168.60.88\"]"],
        "{table}"
    );
    // `get -w` gets its events as Tables too.
    let mut watch = Command::new("kubectl");
    watch
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .args(["get", "virtualips", "--watch"]);
    let watch = Proc::spawn("kubectl-watch", watch).unwrap();
    let row = watch
        .wait_for_line("test-web", Duration::from_secs(10))
        .expect("the watch shows the VirtualIP");
    assert!(row.contains("[\"192.168.60.88\"]"), "{row}");
    drop(watch);
    let short = k.ok(&[
        "get",
        "vip",
        "test-web",
        "-o",
        "jsonpath={.spec.vrrp.version} {.spec.vrrp.gratuitousARP.repeat}",
    ]);
    assert_eq!(short, "2 5", "stored with the schema's defaults");

    // A change is applied (a merge patch for custom resources).
    let changed = std::fs::read_to_string(repo().join("examples/seed/virtualip.yaml"))
        .unwrap()
        .replace("virtualRouterID: 51", "virtualRouterID: 52");
    let (ok, out, err) = k.run(&["apply", "-f", "-"], Some(&changed));
    assert!(
        ok && out.contains("virtualip.buoy.io/test-web configured"),
        "{out}{err}"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "vip",
            "test-web",
            "-o",
            "jsonpath={.spec.virtualRouterID}"
        ]),
        "52"
    );

    // An invalid object is refused with its field path.
    let bad = changed.replace("virtualRouterID: 52", "virtualRouterID: 300");
    let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(&bad));
    assert!(
        !ok && err.contains(
            "spec.virtualRouterID: Invalid value: 300: must be less than or equal to 255"
        ),
        "{err}"
    );

    let out = k.ok(&["delete", "-f", seed]);
    assert!(
        out.contains("virtualip.buoy.io \"test-web\" deleted"),
        "{out}"
    );
    let (_, out, err) = k.run(&["get", "virtualips,upstreampools"], None);
    assert!(
        out.is_empty() && err.contains("No resources found"),
        "{out}{err}"
    );
    drop(server);
}

/// The commands Buoy's docs and examples suggest, verbatim: kubectl sends these objects as
/// protobuf, and reads them back as JSON.
#[test]
fn kubectl_creates_built_in_objects_imperatively() {
    let dir = tempfile::Builder::new()
        .prefix("buoy-testapi-kubectl-create-")
        .tempdir()
        .unwrap();
    let (server, k) = start_server(dir.path());

    for (args, created) in [
        ("create namespace web", "namespace/web created"),
        (
            "create secret generic vrrp-auth -n web --from-literal=password=1111",
            "secret/vrrp-auth created",
        ),
        (
            "create configmap c -n web --from-literal=a=b",
            "configmap/c created",
        ),
        (
            "create service loadbalancer lb -n web --tcp=80:8080",
            "service/lb created",
        ),
        ("label namespace web team=a", "namespace/web labeled"),
    ] {
        let args: Vec<&str> = args.split(' ').collect();
        let out = k.ok(&args);
        assert!(out.contains(created), "kubectl {args:?}: {out}");
    }

    let ns = k.json(&["get", "namespace", "web"]);
    assert_eq!(ns["metadata"]["labels"]["team"], "a", "{ns}");
    assert_eq!(ns["status"]["phase"], "Active", "{ns}");

    let secret = k.json(&["get", "secret", "vrrp-auth", "-n", "web"]);
    let password = secret["data"]["password"].as_str().unwrap();
    let password = base64::engine::general_purpose::STANDARD
        .decode(password)
        .unwrap();
    assert_eq!(password, b"1111", "{secret}");

    let cm = k.json(&["get", "configmap", "c", "-n", "web"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "b"}), "{cm}");

    let svc = k.json(&["get", "service", "lb", "-n", "web"]);
    assert_eq!(svc["spec"]["type"], "LoadBalancer", "{svc}");
    let port = &svc["spec"]["ports"][0];
    assert_eq!(
        (&port["port"], &port["targetPort"], &port["protocol"]),
        (
            &serde_json::json!(80),
            &serde_json::json!(8080),
            &serde_json::json!("TCP")
        ),
        "{svc}"
    );
    assert_eq!(svc["spec"]["selector"]["app"], "lb", "{svc}");

    // A kind the server cannot read from protobuf is refused by name, not misread.
    let (ok, _, err) = k.run(
        &["create", "deployment", "d", "-n", "web", "--image=nginx"],
        None,
    );
    assert!(
        !ok && err.contains("cannot decode apps/v1 Deployment from protobuf"),
        "{err}"
    );
    drop(server);
}
