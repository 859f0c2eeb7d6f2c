//! TLS helpers for tests: certificates made with openssl, `kubernetes.io/tls` Secret documents,
//! and which certificate a server presents (openssl s_client in a network namespace).

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// A self-signed ECDSA P-256 certificate for `names` (the first also its CN) and its key,
/// written to `dir/NAME.crt` and `dir/NAME.key`.
pub fn certificate(dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/CN={}", names[0]),
        ])
        .args(["-addext", &format!("subjectAltName={san}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (crt, key)
}

/// A `kubernetes.io/tls` Secret document with this certificate and key.
pub fn secret(name: &str, crt: &Path, key: &Path) -> String {
    let indent = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        indent(key)
    )
}

/// The SHA-256 fingerprint of the certificate that `connect` (`ADDRESS:PORT`) presents, from
/// network namespace `ns`, for SNI `name` (`None`: no SNI).
pub fn presented(ns: &str, connect: &str, name: Option<&str>) -> String {
    let mut args = vec!["s_client", "-connect", connect];
    match name {
        Some(n) => args.extend(["-servername", n]),
        None => args.push("-noservername"),
    }
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "10", "openssl"])
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let pem: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .take_while(|l| !l.starts_with("-----END CERTIFICATE"))
        .chain(std::iter::once("-----END CERTIFICATE-----"))
        .map(|l| format!("{l}\n"))
        .collect();
    fingerprint_of(pem.as_bytes())
}

/// The SHA-256 fingerprint of a PEM certificate.
pub fn fingerprint_of(pem: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The SHA-256 fingerprint of the PEM certificate in `crt`.
pub fn fingerprint(crt: &Path) -> String {
    fingerprint_of(&std::fs::read(crt).unwrap())
}
