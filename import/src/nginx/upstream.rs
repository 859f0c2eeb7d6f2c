//! nginx's `upstream` blocks, and the `host:port` of a `proxy_pass` without one, into pools to
//! be: backends, balancing, keep-alive.

use std::{collections::BTreeMap, path::PathBuf};

use buoy_crds::{
    Algorithm, Backend, HashKey, HttpSettings, LoadBalancing, Retry, UpstreamPoolSpec,
};

use super::{
    parse::Directive,
    untranslated::untranslated,
    values::{first, host_port, number, one, time},
};
use crate::{
    diagnostics::{ImportError, Loc, Warnings},
    names::dns_label,
};

/// An upstream block, before the locations that use it add their proxy settings.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pub(crate) at: Loc,
    pub(crate) nginx_name: String,
    pub(crate) spec: UpstreamPoolSpec,
    /// How many servers it has (nginx tries each once by default).
    pub(crate) servers: u32,
    /// The first proxy_pass to it: its location's settings are the pool's.
    pub(crate) used_by: Option<Loc>,
    /// Made for a `proxy_pass http://host:port` without an upstream block.
    pub(crate) implicit: bool,
    /// `proxy_ssl_trusted_certificate` of the first `proxy_pass https://` to it (resolved).
    pub(crate) ca: Option<(PathBuf, Loc)>,
}

/// The pool a proxy_pass names: an upstream, or a new one-backend pool for `host:port`.
pub(crate) fn proxy_pass(
    target: &str,
    at: &Loc,
    stream: bool,
    upstreams: &mut BTreeMap<String, Upstream>,
    warnings: &mut Warnings,
) -> Result<Option<String>, ImportError> {
    if target.contains('$') {
        warnings.add(
            at,
            "proxy_pass",
            format!("{target}: variables cannot be evaluated; the server is not translated"),
        );
        return Ok(None);
    }
    let (rest, default_port) = if stream {
        (target, None)
    } else if let Some(r) = target.strip_prefix("http://") {
        (r, Some(80))
    } else if let Some(r) = target.strip_prefix("https://") {
        (r, Some(443))
    } else {
        warnings.add(
            at,
            "proxy_pass",
            format!(
                "{target}: Buoy proxies to http:// and https:// backends; the server is not translated"
            ),
        );
        return Ok(None);
    };
    let (hostport, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !uri.is_empty() && uri != "/" {
        warnings.add(
            at,
            "proxy_pass",
            format!(
                "the URI part {uri:?} is not translated: Buoy forwards the request path unchanged"
            ),
        );
    }
    if upstreams.contains_key(hostport) {
        return Ok(Some(hostport.to_string()));
    }
    // A single backend, written in place: a pool of its own.
    let (host, port) = host_port(hostport, default_port, at)?;
    let spec = UpstreamPoolSpec {
        backends: Some(vec![Backend {
            address: host.clone(),
            port,
            weight: 1,
            backup: false,
            down: false,
            max_fails: None,
            fail_timeout: None,
        }]),
        ..blank_pool()
    };
    let name = format!("{host}-{port}");
    upstreams.insert(
        dns_label(&name),
        Upstream {
            at: at.clone(),
            nginx_name: dns_label(&name),
            spec,
            servers: 1,
            used_by: None,
            implicit: true,
            ca: None,
        },
    );
    Ok(Some(dns_label(&name)))
}

/// A pool with the API's defaults and no backends.
fn blank_pool() -> UpstreamPoolSpec {
    UpstreamPoolSpec {
        backends: None,
        service: None,
        load_balancing: LoadBalancing::default(),
        health_check: Default::default(),
        retry: Retry::default(),
        timeouts: Default::default(),
        http: HttpSettings::default(),
        proxy_protocol: None,
        tls: None,
    }
}

/// An `upstream` block.
pub(crate) fn upstream(
    d: &Directive,
    stream: bool,
    warnings: &mut Warnings,
) -> Result<Upstream, ImportError> {
    let name = one(d)?.to_string();
    let mut spec = blank_pool();
    let mut backends = Vec::new();
    let mut hashing: Option<Loc> = None;
    for s in d.block.iter().flatten() {
        match s.name.as_str() {
            "server" => {
                if let Some(b) = upstream_server(s, stream, warnings)? {
                    backends.push((b, s.at.clone()));
                }
            }
            "least_conn" => spec.load_balancing.algorithm = Algorithm::LeastConnections,
            "ip_hash" => {
                spec.load_balancing = LoadBalancing {
                    algorithm: Algorithm::ConsistentHash,
                    hash_key: Some(HashKey::ClientIp),
                    hash_key_name: None,
                };
                hashing = Some(s.at.clone());
            }
            "hash" => {
                if let Some(lb) = hash(s, warnings)? {
                    spec.load_balancing = lb;
                    hashing = Some(s.at.clone());
                }
            }
            "keepalive" => spec.http.keepalive_connections = number(s, one(s)?, 0, 10_000)? as u32,
            "keepalive_timeout" => spec.timeouts.idle = time(s, one(s)?)?,
            "zone" => warnings.add(
                &s.at,
                "zone",
                "not needed: the agent's workers share backend state without a shared memory zone",
            ),
            _ => untranslated(warnings, s),
        }
    }
    if let Some(at) = &hashing
        && let Some((_, bat)) = backends.iter().find(|(b, _)| b.backup)
    {
        return Err(ImportError::at(
            bat,
            format!(
                "\"backup\" cannot be used with the hash balancing of {at} (nginx refuses it too)"
            ),
        ));
    }
    if backends.is_empty() {
        return Err(ImportError::at(
            &d.at,
            format!("upstream {name} has no server"),
        ));
    }
    let servers = backends.len() as u32;
    spec.backends = Some(backends.into_iter().map(|(b, _)| b).collect());
    // nginx's default proxy_next_upstream tries every server once.
    spec.retry.attempts = servers.clamp(1, 10);
    Ok(Upstream {
        at: d.at.clone(),
        nginx_name: name,
        spec,
        servers,
        used_by: None,
        implicit: false,
        ca: None,
    })
}

/// `hash KEY [consistent]`: consistent hashing on the client IP, a header or a cookie; None for
/// another key (warned: the pool balances round robin).
fn hash(s: &Directive, warnings: &mut Warnings) -> Result<Option<LoadBalancing>, ImportError> {
    let key = first(s)?;
    if !matches!(s.args.get(1..), Some([] | [_]))
        || s.args.get(1).is_some_and(|c| c != "consistent")
    {
        return Err(ImportError::at(
            &s.at,
            "hash takes a key and optionally \"consistent\"",
        ));
    }
    let lb = if key == "$remote_addr" || key == "$binary_remote_addr" {
        Some((HashKey::ClientIp, None))
    } else if let Some(h) = key.strip_prefix("$http_") {
        Some((HashKey::Header, Some(h.replace('_', "-"))))
    } else {
        key.strip_prefix("$cookie_")
            .map(|c| (HashKey::Cookie, Some(c.to_string())))
    };
    match lb {
        Some((k, n)) => Ok(Some(LoadBalancing {
            algorithm: Algorithm::ConsistentHash,
            hash_key: Some(k),
            hash_key_name: n,
        })),
        None => {
            warnings.add(
                &s.at,
                "hash",
                format!(
                    "Buoy hashes the client IP, a header or a cookie, not {key:?}; the pool balances round robin"
                ),
            );
            Ok(None)
        }
    }
}

/// A `server` of an upstream block; None when it cannot be translated (warned).
fn upstream_server(
    s: &Directive,
    stream: bool,
    warnings: &mut Warnings,
) -> Result<Option<Backend>, ImportError> {
    let addr = first(s)?;
    if addr.starts_with("unix:") {
        warnings.add(
            &s.at,
            "server",
            format!("{addr}: Buoy connects to backends over TCP only"),
        );
        return Ok(None);
    }
    let (host, port) = host_port(addr, if stream { None } else { Some(80) }, &s.at)?;
    let mut b = Backend {
        address: host,
        port,
        weight: 1,
        backup: false,
        down: false,
        max_fails: None,
        fail_timeout: None,
    };
    for p in &s.args[1..] {
        let (k, v) = p.split_once('=').unwrap_or((p.as_str(), ""));
        match k {
            "weight" => {
                let w = number(s, v, 1, 1_000_000)?;
                if w > 100 {
                    warnings.add(&s.at, "weight", format!("{w} is above Buoy's maximum, 100; 100 is used (scale the other weights to keep the ratios)"));
                }
                b.weight = w.min(100) as u32;
            }
            "max_fails" => b.max_fails = Some(number(s, v, 0, 1000)? as u32),
            "fail_timeout" => b.fail_timeout = Some(time(s, v)?),
            "backup" => b.backup = true,
            "down" => b.down = true,
            _ => warnings.add(
                &s.at,
                "server",
                format!("the parameter {p} has no equivalent"),
            ),
        }
    }
    Ok(Some(b))
}
