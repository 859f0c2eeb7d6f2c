//! The `kubectl-buoy` binary on its own (kubectl runs it with the arguments after `buoy`): its
//! help, its usage errors, and its errors when it cannot connect, each said once. Through the
//! real kubectl and against an API server: `tests/tests/kubectl_plugin.rs`. (This test also makes
//! `cargo test --workspace` build the binary that those tests put on PATH.)

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::process::Command;

/// Runs `kubectl-buoy ARGS` without a kubeconfig in reach; (exit code, stdout, stderr).
fn plugin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-buoy"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_help_names_the_commands_and_kubectls_flags() {
    let (code, out, _) = plugin(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Usage: kubectl buoy [OPTIONS] <COMMAND>"),
        "{out}"
    );
    for word in [
        "status",
        "events",
        "check",
        "--kubeconfig <FILE>",
        "--context <NAME>",
        "-n, --namespace <NAMESPACE>",
    ] {
        assert!(out.contains(word), "{word} is not in the help:\n{out}");
    }
    let (code, out, _) = plugin(&["status", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("-A, --all-namespaces"), "{out}");
}

#[test]
fn usage_errors_exit_2_before_anything_is_asked() {
    let (code, _, err) = plugin(&["status", "-A", "web"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("'--all-namespaces' cannot be used with '[NAME]'"),
        "{err}"
    );
    let (code, _, err) = plugin(&["check"]);
    assert_eq!(code, 2);
    assert!(err.contains("<FILE>..."), "{err}");
    let (code, _, err) = plugin(&["events"]);
    assert_eq!(code, 2);
    assert!(err.contains("<NAME>"), "{err}");
}

#[test]
fn a_kubeconfig_that_cannot_be_read_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("kubeconfig");
    let (code, out, err) = plugin(&["--kubeconfig", missing.to_str().unwrap(), "status"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: connecting to the cluster: the kubeconfig: "),
        "{err}"
    );
    // kube-rs repeats its cause in its own message; said once here.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    // No kubeconfig anywhere and not in a cluster.
    let (code, _, err) = plugin(&["events", "web"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "error: connecting to the cluster: no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a cluster: "
        ),
        "{err}"
    );
}
