//! TLS helpers for tests: certificates made with openssl, `kubernetes.io/tls` Secret documents,
//! and which certificate a server presents (openssl s_client in a network namespace).

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// openssl's `-newkey` arguments for an ECDSA P-256 key.
pub const ECDSA_P256: &[&str] = &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// A self-signed ECDSA P-256 certificate for `names` (the first also its CN) and its key,
/// written to `dir/NAME.crt` and `dir/NAME.key`.
pub fn certificate(dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    certificate_with(dir, name, names, ECDSA_P256)
}

/// Like [`certificate`], with the key made by openssl's `-newkey KEY…` (`&["rsa:2048"]`).
pub fn certificate_with(
    dir: &Path,
    name: &str,
    names: &[&str],
    key: &[&str],
) -> (PathBuf, PathBuf) {
    let (crt, key_file) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey"])
        .args(key)
        .args([
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/CN={}", names[0]),
        ])
        .args(["-addext", &format!("subjectAltName={san}")])
        .arg("-keyout")
        .arg(&key_file)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (crt, key_file)
}

/// Runs `program args` in network namespace `ns` (cut after 10 s, no input): whether it
/// succeeded, and its stdout then stderr.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "10", program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// curl from `ns` to `https://NAME:PORT/`, `address` standing for NAME, trusting `ca` only,
/// with `extra` arguments: (success, output).
pub fn curl(
    ns: &str,
    address: &str,
    name: &str,
    port: u16,
    ca: &Path,
    extra: &[&str],
) -> (bool, String) {
    let resolve = format!("{name}:{port}:{address}");
    let url = format!("https://{name}:{port}/");
    let mut args = vec![
        "-sS",
        "--resolve",
        &resolve,
        "--cacert",
        ca.to_str().unwrap(),
    ];
    args.extend(extra);
    args.push(&url);
    run_in(ns, "curl", &args)
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
    let (_, text) = run_in(ns, "openssl", &args);
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
