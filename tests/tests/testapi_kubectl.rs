//! kubectl (Debian's kubernetes-client) against the standalone `buoy-testapi` binary: apply
//! Buoy's CRDs and the seed example, get with the CRDs' printer columns, and delete.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use buoy_tests::{kubectl::Kubectl, process::Proc};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn kubectl_applies_gets_and_deletes_buoy_objects() {
    let dir = tempfile::Builder::new()
        .prefix("buoy-testapi-kubectl-")
        .tempdir()
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
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
    let k = Kubectl::new(kubeconfig);

    // As the README says: the whole directory.
    let crds = repo().join("crds");
    let out = k.ok(&["apply", "-f", crds.to_str().unwrap()]);
    for crd in ["virtualips", "upstreampools", "addresspools"] {
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
        "addresspool.buoy.io/lan created",
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
        r#"{"status": {"addresses": ["192.168.60.88"], "addressPool": "lan"}}"#,
    ]);
    let pools = k.ok(&["get", "apool"]);
    assert!(
        pools.starts_with("NAME") && pools.contains("ADDRESSES") && pools.contains("lan"),
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
