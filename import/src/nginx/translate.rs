//! The `events`, `http` and `stream` contexts of an nginx.conf into pools and servers (the
//! blocks of other contexts are warned about).

use std::{collections::BTreeMap, path::Path};

use super::{
    config::{Config, Pool, Server},
    parse::{self, Directive},
    server::{Context, http_server, stream_server},
    settings::{
        Client, Proxy, client_setting, is_client_setting, is_proxy_setting, json_formats,
        proxy_setting,
    },
    tls::{Ssl, is_ssl_setting, ssl_setting},
    untranslated::untranslated,
    upstream::{Upstream, upstream},
    values::{number, one},
};
use crate::{
    diagnostics::{ImportError, Warnings},
    names::dns_name,
};

/// Reads and translates one nginx.conf and the files it includes.
pub(crate) fn parse_file(path: &Path, warnings: &mut Warnings) -> Result<Config, ImportError> {
    let main = parse::read(path, warnings)?;
    // Relative paths (certificates) are resolved as the includes are: against the main file's
    // directory, nginx's configuration prefix.
    let base = path.parent().unwrap_or(Path::new("."));
    // `events` first: worker_connections applies to every listener.
    let max_connections = events(&main, warnings)?;
    let mut config = Config::default();
    for d in &main {
        match d.name.as_str() {
            "events" => {}
            "http" => http(d, base, max_connections, &mut config, warnings)?,
            "stream" => stream(d, base, max_connections, &mut config, warnings)?,
            _ => untranslated(warnings, d),
        }
    }
    Ok(config)
}

/// The connection limit of the `events` blocks (`worker_connections`), for every listener.
fn events(main: &[Directive], warnings: &mut Warnings) -> Result<Option<u32>, ImportError> {
    let mut max_connections = None;
    for d in main {
        if d.name == "events" {
            for e in d.block.iter().flatten() {
                match e.name.as_str() {
                    "worker_connections" => {
                        max_connections = Some(number(e, one(e)?, 1, 1_000_000)? as u32)
                    }
                    _ => untranslated(warnings, e),
                }
            }
        }
    }
    Ok(max_connections)
}

/// The `http` block: its settings, upstreams and servers.
fn http(
    block: &Directive,
    base: &Path,
    max_connections: Option<u32>,
    config: &mut Config,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    let mut proxy = Proxy::default();
    let body = block.block.as_deref().unwrap_or_default();
    let mut client = Client::default();
    client.json_formats = json_formats(body);
    let mut ssl = Ssl::default();
    let mut upstreams: BTreeMap<String, Upstream> = BTreeMap::new();
    for d in body {
        if !proxy_setting(d, &mut proxy, false, warnings)?
            && !client_setting(d, &mut client, warnings)?
            && !ssl_setting(d, &mut ssl, warnings)?
            && d.name == "upstream"
        {
            let u = upstream(d, false, warnings)?;
            upstreams.insert(u.nginx_name.clone(), u);
        }
    }
    let mut servers = Vec::new();
    for d in body {
        match d.name.as_str() {
            "upstream" => {}
            "server" => {
                let mut cx = Context {
                    upstreams: &mut upstreams,
                    max_connections,
                    base,
                    warnings: &mut *warnings,
                };
                if let Some(s) = http_server(d, &proxy, &client, &ssl, &mut cx)? {
                    servers.push(s);
                }
            }
            _ if is_proxy_setting(&d.name, false)
                || is_client_setting(&d.name)
                || is_ssl_setting(&d.name) => {}
            _ => untranslated(warnings, d),
        }
    }
    finish(upstreams, servers, config);
    Ok(())
}

/// The `stream` block: its settings, upstreams and servers.
fn stream(
    block: &Directive,
    base: &Path,
    max_connections: Option<u32>,
    config: &mut Config,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    let body = block.block.as_deref().unwrap_or_default();
    let mut proxy = Proxy::default();
    proxy.json_formats = json_formats(body);
    let mut upstreams: BTreeMap<String, Upstream> = BTreeMap::new();
    for d in body {
        if !proxy_setting(d, &mut proxy, true, warnings)? && d.name == "upstream" {
            let u = upstream(d, true, warnings)?;
            upstreams.insert(u.nginx_name.clone(), u);
        }
    }
    let mut servers = Vec::new();
    for d in body {
        match d.name.as_str() {
            "upstream" => {}
            "server" => {
                let mut cx = Context {
                    upstreams: &mut upstreams,
                    max_connections,
                    base,
                    warnings: &mut *warnings,
                };
                if let Some(s) = stream_server(d, &proxy, &mut cx)? {
                    servers.push(s);
                }
            }
            _ if is_proxy_setting(&d.name, true) => {}
            _ => untranslated(warnings, d),
        }
    }
    finish(upstreams, servers, config);
    Ok(())
}

/// Adds a block's upstreams as pools (under names unique across http and stream) and its servers.
fn finish(upstreams: BTreeMap<String, Upstream>, servers: Vec<Server>, config: &mut Config) {
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut ordered: Vec<Upstream> = upstreams.into_values().collect();
    ordered.sort_by_key(|u| (u.at.file.to_path_buf(), u.at.line));
    for u in ordered {
        let base = dns_name(&u.nginx_name);
        let mut name = base.clone();
        let mut n = 2;
        while config.pools.iter().any(|p| p.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        renamed.insert(u.nginx_name.clone(), name.clone());
        let mut comments = vec![if u.implicit {
            format!("nginx proxy_pass to a single server ({})", u.at)
        } else {
            format!("nginx upstream {} ({})", u.nginx_name, u.at)
        }];
        match &u.used_by {
            Some(at) => comments.push(format!("proxy settings from {at}")),
            None => comments.push("no server proxies to it: no listener uses this pool".into()),
        }
        if name != u.nginx_name {
            comments.push(format!(
                "(named {name}: Kubernetes names allow only lower case letters, digits, '-' and '.')"
            ));
        }
        config.pools.push(Pool {
            name,
            spec: u.spec,
            comments,
            at: u.at,
            ca: u.ca,
        });
    }
    let rename = |pool: &mut String| {
        if let Some(n) = renamed.get(pool) {
            *pool = n.clone();
        }
    };
    for mut s in servers {
        if let Some(p) = &mut s.pool {
            rename(p);
        }
        for l in &mut s.locations {
            rename(&mut l.pool);
        }
        config.servers.push(s);
    }
}
