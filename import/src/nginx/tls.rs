//! nginx's TLS directives: `ssl_certificate`, `ssl_certificate_key`, `ssl_protocols` and `http2`
//! of HTTP servers (inherited from `http` as nginx does), and `proxy_ssl_name`,
//! `proxy_ssl_server_name`, `proxy_ssl_verify` and `proxy_ssl_trusted_certificate` of a
//! `proxy_pass https://`. What they become: a server's certificates, lowest version and HTTP/2;
//! a pool's `tls`. The other `ssl_*` directives are warned about in `untranslated`.

use std::path::{Path, PathBuf};

use buoy_crds::{TlsVersion, UpstreamTls};

use super::{
    config::{CertificatePair, ServerTls},
    parse::Directive,
    values::{on_off, one},
};
use crate::diagnostics::{ImportError, Loc, Warnings};

/// The `ssl_*` and `http2` settings of `http` and of a server.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ssl {
    /// `ssl_certificate`s: a level that has any replaces the outer list (nginx's array merge).
    certificates: Option<Vec<(String, Loc)>>,
    keys: Option<Vec<(String, Loc)>>,
    min_version: Option<(TlsVersion, Loc)>,
    http2: Option<(bool, Loc)>,
    /// `ssl on` (removed in nginx 1.25.1): every `listen` of the server is TLS.
    pub(crate) on: bool,
}

impl Ssl {
    /// The settings of a block whose directives are `body`, inside these: the certificate and key
    /// lists it writes replace the outer ones.
    pub(crate) fn enter(&self, body: &[Directive]) -> Ssl {
        let mut inner = self.clone();
        if body.iter().any(|d| d.name == "ssl_certificate") {
            inner.certificates = None;
        }
        if body.iter().any(|d| d.name == "ssl_certificate_key") {
            inner.keys = None;
        }
        inner
    }
}

/// The directives that [`ssl_setting`] reads.
pub(crate) fn is_ssl_setting(name: &str) -> bool {
    matches!(
        name,
        "ssl_certificate" | "ssl_certificate_key" | "ssl_protocols" | "http2" | "ssl"
    )
}

/// Reads an `ssl_*` or `http2` setting into `s`; false if `d` is not one.
pub(crate) fn ssl_setting(
    d: &Directive,
    s: &mut Ssl,
    warnings: &mut Warnings,
) -> Result<bool, ImportError> {
    match d.name.as_str() {
        "ssl_certificate" => s
            .certificates
            .get_or_insert_with(Vec::new)
            .push((one(d)?.to_string(), d.at.clone())),
        "ssl_certificate_key" => s
            .keys
            .get_or_insert_with(Vec::new)
            .push((one(d)?.to_string(), d.at.clone())),
        "ssl_protocols" => s.min_version = Some((protocols(d, warnings)?, d.at.clone())),
        "http2" => s.http2 = Some((on_off(d)?, d.at.clone())),
        "ssl" => {
            s.on = on_off(d)?;
            warnings.add(
                &d.at,
                "ssl",
                "`ssl on` is obsolete (removed in nginx 1.25.1): every listen of the server is taken as `listen … ssl`",
            );
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `ssl_protocols`: the lowest version Buoy accepts, `"1.3"` only when TLSv1.2 is not listed.
/// Versions before 1.2 are warned about: Buoy never offers them.
fn protocols(d: &Directive, warnings: &mut Warnings) -> Result<TlsVersion, ImportError> {
    let (mut v12, mut v13) = (false, false);
    let mut old = Vec::new();
    for a in &d.args {
        match a.as_str() {
            "TLSv1.2" => v12 = true,
            "TLSv1.3" => v13 = true,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => old.push(a.as_str()),
            other => {
                return Err(ImportError::at(
                    &d.at,
                    format!("ssl_protocols: unknown protocol {other:?}"),
                ));
            }
        }
    }
    if !old.is_empty() {
        warnings.add(
            &d.at,
            "ssl_protocols",
            format!(
                "{}: Buoy never offers versions before TLS 1.2",
                old.join(" ")
            ),
        );
    }
    if v12 && !v13 {
        warnings.add(
            &d.at,
            "ssl_protocols",
            "Buoy offers TLS 1.3 as well as 1.2 (1.3 cannot be turned off)",
        );
    }
    Ok(if v12 {
        TlsVersion::V1_2
    } else if v13 {
        TlsVersion::V1_3
    } else {
        warnings.add(
            &d.at,
            "ssl_protocols",
            "neither TLSv1.2 nor TLSv1.3 is listed: Buoy offers both (minVersion 1.2)",
        );
        TlsVersion::V1_2
    })
}

/// A server's TLS settings: its certificates paired with their keys in order (as nginx pairs
/// them), paths resolved against `base`; what cannot be read from files is warned about.
pub(crate) fn server_tls(s: &Ssl, base: &Path, warnings: &mut Warnings) -> ServerTls {
    let certificates = s.certificates.as_deref().unwrap_or_default();
    let keys = s.keys.as_deref().unwrap_or_default();
    let mut pairs = Vec::new();
    for (i, (cert, at)) in certificates.iter().enumerate() {
        let Some((key, key_at)) = keys.get(i) else {
            warnings.add(
                at,
                "ssl_certificate",
                format!("{cert} has no ssl_certificate_key (nginx refuses that): not translated"),
            );
            continue;
        };
        let Some(certificate) = pem_path(cert, at, "ssl_certificate", base, warnings) else {
            continue;
        };
        let Some(key) = pem_path(key, key_at, "ssl_certificate_key", base, warnings) else {
            continue;
        };
        pairs.push(CertificatePair {
            certificate,
            key,
            at: at.clone(),
        });
    }
    for (key, at) in keys.iter().skip(certificates.len()) {
        warnings.add(
            at,
            "ssl_certificate_key",
            format!("{key} belongs to no ssl_certificate: not translated"),
        );
    }
    ServerTls {
        certificates: pairs,
        min_version: s.min_version.clone(),
        http2: s.http2.clone(),
    }
}

/// The file a PEM directive names, resolved as nginx does (relative to the configuration's
/// directory); None for what is not a file (warned).
pub(crate) fn pem_path(
    value: &str,
    at: &Loc,
    directive: &str,
    base: &Path,
    warnings: &mut Warnings,
) -> Option<PathBuf> {
    let why = if value.contains('$') {
        "variables cannot be evaluated (a listener's certificates are chosen by the names they hold)"
    } else if value.starts_with("data:") {
        "an inline PEM (data:) is not read: put it in a file"
    } else if value.starts_with("engine:") {
        "keys in an OpenSSL engine cannot be exported into a Secret"
    } else {
        let path = Path::new(value);
        return Some(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        });
    };
    warnings.add(at, directive, format!("{value}: {why}; not translated"));
    None
}

/// The `proxy_ssl_*` settings of `http`, a server and a location, inherited as nginx does.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProxySsl {
    name: Option<(String, Loc)>,
    server_name: Option<bool>,
    verify: Option<(bool, Loc)>,
    trusted: Option<(String, Loc)>,
}

/// The directives that [`proxy_ssl_setting`] reads.
pub(crate) fn is_proxy_ssl_setting(name: &str) -> bool {
    matches!(
        name,
        "proxy_ssl_name"
            | "proxy_ssl_server_name"
            | "proxy_ssl_verify"
            | "proxy_ssl_trusted_certificate"
    )
}

/// Reads a `proxy_ssl_*` setting into `p`; false if `d` is not one.
pub(crate) fn proxy_ssl_setting(d: &Directive, p: &mut ProxySsl) -> Result<bool, ImportError> {
    match d.name.as_str() {
        "proxy_ssl_name" => p.name = Some((one(d)?.to_string(), d.at.clone())),
        "proxy_ssl_server_name" => p.server_name = Some(on_off(d)?),
        "proxy_ssl_verify" => p.verify = Some((on_off(d)?, d.at.clone())),
        "proxy_ssl_trusted_certificate" => p.trusted = Some((one(d)?.to_string(), d.at.clone())),
        _ => return Ok(false),
    }
    Ok(true)
}

/// A pool's `tls` for a `proxy_pass https://` at `at` to `proxy_host` (nginx's `$proxy_host`
/// without its port: the upstream's name or the host), and the CA file
/// (`proxy_ssl_trusted_certificate`, as written) that its `caSecretName` is to hold.
pub(crate) fn upstream_tls(
    p: &ProxySsl,
    proxy_host: &str,
    at: &Loc,
    warnings: &mut Warnings,
) -> (UpstreamTls, Option<(String, Loc)>) {
    let verify = p.verify.as_ref().is_some_and(|(v, _)| *v);
    let mut tls = UpstreamTls::default();
    // nginx sends and verifies proxy_ssl_name (default $proxy_host) with either switch on; it
    // sends no SNI for an address.
    if p.server_name == Some(true) || verify {
        let (name, name_at) = match &p.name {
            Some((n, a)) => (n.as_str(), a),
            None => (proxy_host, at),
        };
        let lower = name.to_ascii_lowercase();
        if name.contains('$') {
            warnings.add(
                name_at,
                "proxy_ssl_name",
                format!("{name}: variables cannot be evaluated; the backends are verified against their address"),
            );
        } else if lower.parse::<std::net::IpAddr>().is_err() {
            if is_host_name(&lower) {
                tls.server_name = Some(lower);
            } else {
                warnings.add(
                    name_at,
                    if p.name.is_some() {
                        "proxy_ssl_name"
                    } else {
                        "proxy_pass"
                    },
                    format!("nginx sends and verifies the name {name:?}, which is not a host name; Buoy uses the backends' addresses (set proxy_ssl_name to the certificates' name)"),
                );
            }
        }
    }
    if verify {
        if p.trusted.is_none() {
            warnings.add(
                p.verify.as_ref().map_or(at, |(_, a)| a),
                "proxy_ssl_verify",
                "without proxy_ssl_trusted_certificate nginx trusts no CA; Buoy trusts the system's roots",
            );
        }
        return (tls, p.trusted.clone());
    }
    tls.insecure_skip_verify = true;
    let (directive, where_) = match &p.verify {
        Some((_, a)) => ("proxy_ssl_verify", a),
        None => ("proxy_pass", at),
    };
    let unused = match &p.trusted {
        Some((file, a)) => {
            format!(" (proxy_ssl_trusted_certificate {file} at {a} goes unused, as in nginx)")
        }
        None => String::new(),
    };
    warnings.add(
        where_,
        directive,
        format!("nginx does not verify the backends' certificates (proxy_ssl_verify off, its default) and Buoy would: the pool gets tls.insecureSkipVerify: true; remove it once they verify (tls.caSecretName, tls.serverName){unused}"),
    );
    (tls, None)
}

/// A DNS name a certificate can be verified against (lower case).
fn is_host_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    fn d(name: &str, args: &[&str]) -> Directive {
        Directive {
            at: Loc {
                file: Rc::from(Path::new("n.conf")),
                line: 7,
            },
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            block: None,
        }
    }

    #[test]
    fn ssl_protocols_give_the_lowest_version() {
        let version = |args: &[&str]| {
            let mut w = Warnings::default();
            let v = protocols(&d("ssl_protocols", args), &mut w).ok();
            (v, w.sorted().into_iter().map(|w| w.why).collect::<Vec<_>>())
        };
        assert_eq!(
            version(&["TLSv1.2", "TLSv1.3"]),
            (Some(TlsVersion::V1_2), vec![])
        );
        assert_eq!(version(&["TLSv1.3"]), (Some(TlsVersion::V1_3), vec![]));
        let (v, why) = version(&["TLSv1", "TLSv1.1", "TLSv1.2"]);
        assert_eq!(v, Some(TlsVersion::V1_2));
        assert_eq!(
            why,
            [
                "TLSv1 TLSv1.1: Buoy never offers versions before TLS 1.2",
                "Buoy offers TLS 1.3 as well as 1.2 (1.3 cannot be turned off)"
            ]
        );
        assert_eq!(version(&["TLSv1.4"]).0, None);
    }

    #[test]
    fn proxy_ssl_settings_give_the_pools_tls() {
        let at = d("proxy_pass", &[]).at;
        let tls = |settings: &[Directive], host: &str| {
            let mut p = ProxySsl::default();
            for s in settings {
                assert!(proxy_ssl_setting(s, &mut p).unwrap_or(false));
            }
            let mut w = Warnings::default();
            let (tls, ca) = upstream_tls(&p, host, &at, &mut w);
            (tls, ca.map(|c| c.0), w.sorted().len())
        };
        // nginx's defaults: no SNI, no verification (warned).
        let (t, ca, warned) = tls(&[], "backend");
        assert_eq!(
            (t.server_name, t.insecure_skip_verify, ca, warned),
            (None, true, None, 1)
        );
        // Verification against proxy_ssl_name and a CA.
        let (t, ca, warned) = tls(
            &[
                d("proxy_ssl_verify", &["on"]),
                d("proxy_ssl_name", &["API.example.com"]),
                d("proxy_ssl_trusted_certificate", &["ca.pem"]),
            ],
            "api",
        );
        assert_eq!(t.server_name.as_deref(), Some("api.example.com"));
        assert!(!t.insecure_skip_verify);
        assert_eq!((ca.as_deref(), warned), (Some("ca.pem"), 0));
        // SNI of $proxy_host; an upstream name that is no host name is warned about.
        let (t, _, _) = tls(&[d("proxy_ssl_server_name", &["on"])], "shop.internal");
        assert_eq!(t.server_name.as_deref(), Some("shop.internal"));
        let (t, _, warned) = tls(&[d("proxy_ssl_server_name", &["on"])], "shop_pool");
        assert_eq!((t.server_name, warned), (None, 2));
        // No SNI for an address.
        let (t, _, _) = tls(&[d("proxy_ssl_server_name", &["on"])], "10.0.0.1");
        assert_eq!(t.server_name, None);
    }
}
