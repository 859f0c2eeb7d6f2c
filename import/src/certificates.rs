//! The Secrets made from the PEM files nginx.conf names: a `kubernetes.io/tls` Secret for each
//! distinct `ssl_certificate` / `ssl_certificate_key` pair of an HTTPS listener, and one with
//! `ca.crt` for each `proxy_ssl_trusted_certificate`. Each gets a name from its file (unique, a
//! DNS subdomain) when a listener or pool first refers to it; the files are read when the Secrets
//! are written, and one that cannot be read leaves its Secret out with a warning (whatever
//! refers to it still does).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use buoy_crds::secret_keys::{self, CA_CERTIFICATE as CA_CERTIFICATE_KEY};
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use crate::{
    diagnostics::{Loc, Warnings},
    names::dns_name,
};

/// What a Secret is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// `ssl_certificate` and `ssl_certificate_key`.
    Tls { certificate: PathBuf, key: PathBuf },
    /// `proxy_ssl_trusted_certificate`.
    Ca { file: PathBuf },
}

/// A Secret to be, named, and the directive that asked for it.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    source: Source,
    at: Loc,
}

/// The Secrets of PEM files, in the order they were first referred to.
#[derive(Debug, Default)]
pub(crate) struct PemSecrets {
    entries: Vec<Entry>,
    /// Names of other Secrets of the import, which these must not take.
    reserved: Vec<String>,
}

/// File names that say nothing of what they hold (Let's Encrypt's `live/example.com/fullchain.pem`):
/// their directory names the Secret instead.
const GENERIC: &[&str] = &[
    "fullchain",
    "cert",
    "certificate",
    "chain",
    "privkey",
    "server",
    "tls",
    "ca",
    "bundle",
];

impl PemSecrets {
    /// Secrets that will not take the names in `reserved`.
    pub(crate) fn new(reserved: &[&str]) -> Self {
        PemSecrets {
            entries: Vec::new(),
            reserved: reserved.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The name of the `kubernetes.io/tls` Secret of `certificate` and `key` (`at`: the
    /// `ssl_certificate`): `<file>-tls`.
    pub(crate) fn tls(&mut self, certificate: &Path, key: &Path, at: &Loc) -> String {
        let source = Source::Tls {
            certificate: certificate.to_path_buf(),
            key: key.to_path_buf(),
        };
        self.name(source, certificate, "tls", at)
    }

    /// The name of the Secret whose `ca.crt` is `file` (`at`: the
    /// `proxy_ssl_trusted_certificate`): `<file>-ca`.
    pub(crate) fn ca(&mut self, file: &Path, at: &Loc) -> String {
        let source = Source::Ca {
            file: file.to_path_buf(),
        };
        self.name(source, file, "ca", at)
    }

    fn name(&mut self, source: Source, file: &Path, suffix: &str, at: &Loc) -> String {
        if let Some(e) = self.entries.iter().find(|e| e.source == source) {
            return e.name.clone();
        }
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let word = if GENERIC.contains(&stem.to_ascii_lowercase().as_str()) {
            file.parent()
                .and_then(Path::file_name)
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or(stem)
        } else {
            stem
        };
        let mut base = dns_name(&word);
        if !base.ends_with(&format!("-{suffix}")) {
            // 63 characters at most, as the names of the other objects.
            base.truncate(62 - suffix.len());
            base = format!("{}-{suffix}", base.trim_end_matches(['-', '.']));
        }
        let mut name = base.clone();
        let mut n = 2;
        while self.reserved.contains(&name) || self.entries.iter().any(|e| e.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.entries.push(Entry {
            name: name.clone(),
            source,
            at: at.clone(),
        });
        name
    }

    /// The `kubectl` command that creates Secret `name` from its files.
    pub(crate) fn kubectl(&self, namespace: &str, name: &str) -> Option<String> {
        let e = self.entries.iter().find(|e| e.name == name)?;
        Some(match &e.source {
            Source::Tls { certificate, key } => format!(
                "kubectl -n {namespace} create secret tls {name} --cert={} --key={}",
                certificate.display(),
                key.display()
            ),
            Source::Ca { file } => format!(
                "kubectl -n {namespace} create secret generic {name} --from-file={CA_CERTIFICATE_KEY}={}",
                file.display()
            ),
        })
    }

    /// The Secrets in namespace `namespace`, read from their files, each with the comments
    /// printed above it; those whose files cannot be read are left out (warned). With
    /// `keys_as_references`, the Secrets that hold private keys are left out too (whoever
    /// refers to them gives their [`kubectl`](Self::kubectl) command).
    pub(crate) fn secrets(
        &self,
        namespace: &str,
        keys_as_references: bool,
        warnings: &mut Warnings,
    ) -> Vec<(Secret, Vec<String>)> {
        let mut out = Vec::new();
        for e in &self.entries {
            let kubectl = self.kubectl(namespace, &e.name).unwrap_or_default();
            let (type_, files, comments) = match &e.source {
                Source::Tls { certificate, key } => {
                    if keys_as_references {
                        continue;
                    }
                    (
                        "kubernetes.io/tls",
                        vec![
                            (secret_keys::CERTIFICATE, certificate, "ssl_certificate"),
                            (secret_keys::KEY, key, "ssl_certificate_key"),
                        ],
                        vec![
                            format!(
                                "The certificate and key of nginx's ssl_certificate {} ({}).",
                                certificate.display(),
                                e.at
                            ),
                            "THIS DOCUMENT HOLDS A PRIVATE KEY: keep this output private. In a cluster, do not commit it:".into(),
                            format!("create it with `{kubectl}`"),
                            "instead (or import with --secrets-as-references, which leaves keys out).".into(),
                        ],
                    )
                }
                Source::Ca { file } => (
                    "Opaque",
                    vec![(CA_CERTIFICATE_KEY, file, "proxy_ssl_trusted_certificate")],
                    vec![format!(
                        "The CA certificates of nginx's proxy_ssl_trusted_certificate {} ({}).",
                        file.display(),
                        e.at
                    )],
                ),
            };
            let mut data = BTreeMap::new();
            for (key, file, directive) in files {
                match read_pem(file) {
                    Ok(text) => {
                        data.insert(key.to_string(), text);
                    }
                    Err(why) => {
                        warnings.add(
                            &e.at,
                            directive,
                            format!(
                                "{}: {why}; the Secret {} is not written, though the objects refer to it: create it with `{kubectl}`",
                                file.display(),
                                e.name
                            ),
                        );
                        break;
                    }
                }
            }
            if data.len() < type_files(type_) {
                continue;
            }
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(e.name.clone()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                type_: Some(type_.into()),
                string_data: Some(data),
                ..Default::default()
            };
            out.push((secret, comments));
        }
        out
    }
}

/// How many files a Secret of `type_` is made from.
fn type_files(type_: &str) -> usize {
    if type_ == "kubernetes.io/tls" { 2 } else { 1 }
}

/// A PEM file's text; why not, for a file that cannot be read or is not PEM.
fn read_pem(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot be read ({e})"))?;
    if !text.contains("-----BEGIN ") {
        return Err("is not PEM".into());
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err("is an encrypted key (Buoy reads unencrypted keys only)".into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    fn at() -> Loc {
        Loc {
            file: Rc::from(Path::new("nginx.conf")),
            line: 1,
        }
    }

    #[test]
    fn names_come_from_the_files_and_are_unique() {
        let mut s = PemSecrets::new(&["vrrp-auth", "a.example.com-tls"]);
        let p = Path::new;
        assert_eq!(
            s.tls(p("/etc/ssl/a.example.com.crt"), p("/etc/ssl/a.key"), &at()),
            "a.example.com-tls-2"
        );
        // The same pair again: the same Secret.
        assert_eq!(
            s.tls(p("/etc/ssl/a.example.com.crt"), p("/etc/ssl/a.key"), &at()),
            "a.example.com-tls-2"
        );
        // Another key with the same certificate: another Secret.
        assert_eq!(
            s.tls(p("/etc/ssl/a.example.com.crt"), p("/etc/ssl/b.key"), &at()),
            "a.example.com-tls-3"
        );
        assert_eq!(
            s.tls(
                p("/etc/letsencrypt/live/Shop.Example.org/fullchain.pem"),
                p("/etc/letsencrypt/live/Shop.Example.org/privkey.pem"),
                &at()
            ),
            "shop.example.org-tls"
        );
        assert_eq!(
            s.tls(p("site_cert.pem"), p("k.pem"), &at()),
            "site-cert-tls"
        );
        assert_eq!(s.ca(p("/etc/nginx/internal-ca.pem"), &at()), "internal-ca");
        assert_eq!(s.ca(p("/etc/nginx/ca.pem"), &at()), "nginx-ca");
        let long = format!("/x/{}.pem", "a".repeat(80));
        let name = s.tls(p(&long), p("k"), &at());
        assert!(name.len() <= 63 && name.ends_with("-tls"), "{name}");
    }

    #[test]
    fn unreadable_files_leave_their_secret_out_with_a_warning() {
        let dir = std::env::temp_dir().join(format!("buoy-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let cert = dir.join("good.crt");
        let key = dir.join("good.key");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .ok();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n",
        )
        .ok();
        std::fs::write(dir.join("text.crt"), "not a certificate").ok();
        let mut s = PemSecrets::new(&[]);
        s.tls(&cert, &key, &at());
        s.tls(&dir.join("missing.crt"), &key, &at());
        s.tls(&dir.join("text.crt"), &key, &at());
        s.ca(&cert, &at());
        let mut warnings = Warnings::default();
        let secrets = s.secrets("web", false, &mut warnings);
        let got: Vec<(Option<String>, Option<String>, Vec<String>)> = secrets
            .iter()
            .map(|(s, _)| {
                (
                    s.metadata.name.clone(),
                    s.type_.clone(),
                    s.string_data
                        .iter()
                        .flat_map(|d| d.keys().cloned())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    Some("good-tls".into()),
                    Some("kubernetes.io/tls".into()),
                    vec!["tls.crt".into(), "tls.key".into()]
                ),
                (
                    Some("good-ca".into()),
                    Some("Opaque".into()),
                    vec!["ca.crt".into()]
                ),
            ]
        );
        assert!(secrets[0].1.iter().any(|c| c.contains("PRIVATE KEY")));
        let w = warnings.sorted();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].why.contains("missing.crt: cannot be read"),
            "{}",
            w[0].why
        );
        assert!(
            w[0].why.contains("the Secret missing-tls is not written"),
            "{}",
            w[0].why
        );
        assert!(w[1].why.contains("text.crt: is not PEM"), "{}", w[1].why);
        // Keys as references: the TLS Secrets are left out, their commands given.
        let secrets = s.secrets("web", true, &mut Warnings::default());
        assert_eq!(secrets.len(), 1);
        let kubectl = s.kubectl("web", "good-tls").unwrap_or_default();
        assert_eq!(
            kubectl,
            format!(
                "kubectl -n web create secret tls good-tls --cert={} --key={}",
                cert.display(),
                key.display()
            )
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
