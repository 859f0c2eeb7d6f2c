//! kubectl (Debian's kubernetes-client, or any kubectl on PATH) against a test API server, from
//! the test's own namespace or from inside a lab namespace (where the server listens on the
//! lab's LAN).

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

pub struct Kubectl {
    pub kubeconfig: PathBuf,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Kubectl {
    pub fn new(kubeconfig: PathBuf) -> Kubectl {
        Kubectl {
            kubeconfig,
            netns: None,
        }
    }

    pub fn in_netns(kubeconfig: PathBuf, ns: &str) -> Kubectl {
        Kubectl {
            kubeconfig,
            netns: Some(ns.to_string()),
        }
    }

    /// Runs kubectl with `stdin`; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "kubectl"]);
                c
            }
            None => Command::new("kubectl"),
        };
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("kubectl is installed (.ci/run installs kubernetes-client)");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .expect("writing kubectl's standard input");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("waiting for kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl, which must succeed; returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args, None);
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    /// `kubectl ARGS -o json`, which must succeed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl printed JSON")
    }
}
