//! nginx's `server` blocks into servers to be listeners: their `listen`s, the pool their
//! `proxy_pass` names, and the settings in force where it is (for HTTP, `location /`).

use std::{collections::BTreeMap, net::IpAddr};

use buoy_crds::ListenerProtocol;

use super::{
    config::{Listen, ListenAddress, Server},
    parse::Directive,
    settings::{
        Client, Proxy, client_setting, client_settings, is_client_setting, is_proxy_setting,
        pool_settings, proxy_setting,
    },
    untranslated::untranslated,
    upstream::{Upstream, proxy_pass},
    values::{first, one},
};
use crate::diagnostics::{ImportError, Loc, Warnings};

/// What a block of the `http` or `stream` context has read before its servers: its upstreams,
/// and the connection limit of `events`.
pub(crate) struct Context<'a> {
    pub(crate) upstreams: &'a mut BTreeMap<String, Upstream>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) warnings: &'a mut Warnings,
}

/// An HTTP server block's own settings (over those of `http`) and its listens.
struct HttpScope {
    proxy: Proxy,
    client: Client,
    listens: Vec<Listen>,
    /// A `listen` that cannot be translated was seen (warned).
    skipped: bool,
}

/// A `location /`: its proxy_pass, and the settings in force there.
struct Location {
    pass: Option<(String, Loc)>,
    proxy: Proxy,
    client: Client,
}

/// Where a server proxies to: a proxy_pass, and the settings in force where it is written.
struct Target {
    pass: String,
    at: Loc,
    proxy: Proxy,
    client: Client,
}

/// A `server` of `http`; None when it proxies nowhere that can be translated (warned).
pub(crate) fn http_server(
    d: &Directive,
    outer_proxy: &Proxy,
    outer_client: &Client,
    cx: &mut Context,
) -> Result<Option<Server>, ImportError> {
    let body = d.block.as_deref().unwrap_or_default();
    let mut scope = http_scope(body, outer_proxy, outer_client, cx.warnings)?;
    let Some(target) = http_target(body, &scope, cx.warnings)? else {
        cx.warnings.add(
            &d.at,
            "server",
            "no `location /` with proxy_pass, so nothing to proxy",
        );
        return Ok(None);
    };
    if scope.skipped && scope.listens.is_empty() {
        return Ok(None);
    }
    if scope.listens.is_empty() {
        // nginx's default: `listen *:80`.
        scope.listens.push(Listen {
            at: d.at.clone(),
            address: ListenAddress::Any { ipv6: false },
            port: 80,
            udp: false,
            text: "80 (nginx's default)".into(),
            proxy_protocol: false,
        });
    }
    let Some(pool) = proxy_pass(&target.pass, &target.at, false, cx.upstreams, cx.warnings)? else {
        return Ok(None);
    };
    use_pool(&pool, &target, false, cx);
    let client = client_settings(&target.client, cx.max_connections, ListenerProtocol::HTTP);
    Ok(Some(Server {
        at: d.at.clone(),
        protocol: ListenerProtocol::HTTP,
        listens: scope.listens,
        pool,
        access_log: target.client.access_log.clone(),
        client,
    }))
}

/// The settings and listens of an HTTP server block.
fn http_scope(
    body: &[Directive],
    outer_proxy: &Proxy,
    outer_client: &Client,
    warnings: &mut Warnings,
) -> Result<HttpScope, ImportError> {
    let mut proxy = outer_proxy.clone();
    proxy.headers = None;
    let mut client = outer_client.clone();
    let mut listens = Vec::new();
    let mut skipped = false;
    let mut own_headers = false;
    for s in body {
        if s.name == "proxy_set_header" {
            own_headers = true;
        }
        if proxy_setting(s, &mut proxy, false, warnings)?
            || client_setting(s, &mut client, warnings)?
        {
            continue;
        }
        if s.name == "listen" {
            match listen(s, false, warnings)? {
                Some(l) => listens.push(l),
                None => skipped = true,
            }
        }
    }
    if !own_headers {
        proxy.headers = outer_proxy.headers.clone();
    }
    Ok(HttpScope {
        proxy,
        client,
        listens,
        skipped,
    })
}

/// The `location /` of an HTTP server block that proxies; the other directives are warned about.
fn http_target(
    body: &[Directive],
    scope: &HttpScope,
    warnings: &mut Warnings,
) -> Result<Option<Target>, ImportError> {
    let mut target: Option<Target> = None;
    for s in body {
        match s.name.as_str() {
            "listen" => {}
            _ if is_proxy_setting(&s.name, false) || is_client_setting(&s.name) => {}
            "location" if s.args == ["/"] => {
                let location = root_location(s, scope, warnings)?;
                if let Some(first) = &target {
                    return Err(ImportError::at(
                        &s.at,
                        format!("duplicate location \"/\" (the first is at {})", first.at),
                    ));
                }
                match location.pass {
                    Some((pass, at)) => {
                        target = Some(Target {
                            pass,
                            at,
                            proxy: location.proxy,
                            client: location.client,
                        });
                    }
                    None => warnings.add(&s.at, "location", "no proxy_pass: Buoy only proxies"),
                }
            }
            "location" => warnings.add(
                &s.at,
                "location",
                format!(
                    "{}: a listener sends every request to one pool (only `location /` is translated)",
                    s.args.join(" ")
                ),
            ),
            _ => untranslated(warnings, s),
        }
    }
    Ok(target)
}

/// A `location /` block, over the server's settings.
fn root_location(
    s: &Directive,
    scope: &HttpScope,
    warnings: &mut Warnings,
) -> Result<Location, ImportError> {
    let mut proxy = scope.proxy.clone();
    let mut client = scope.client.clone();
    let mut pass = None;
    let inner = s.block.as_deref().unwrap_or_default();
    if inner.iter().any(|x| x.name == "proxy_set_header") {
        proxy.headers = None;
    }
    for x in inner {
        if proxy_setting(x, &mut proxy, false, warnings)?
            || client_setting(x, &mut client, warnings)?
        {
            continue;
        }
        match x.name.as_str() {
            "proxy_pass" => pass = Some((one(x)?.to_string(), x.at.clone())),
            _ => untranslated(warnings, x),
        }
    }
    if proxy.headers.is_none() && !inner.iter().any(|x| x.name == "proxy_set_header") {
        proxy.headers = scope.proxy.headers.clone();
    }
    Ok(Location {
        pass,
        proxy,
        client,
    })
}

/// A `server` of `stream`; None when it proxies nowhere that can be translated (warned).
pub(crate) fn stream_server(
    d: &Directive,
    outer: &Proxy,
    cx: &mut Context,
) -> Result<Option<Server>, ImportError> {
    let mut proxy = outer.clone();
    let mut listens = Vec::new();
    let mut pass = None;
    let mut skip = false;
    for s in d.block.iter().flatten() {
        if proxy_setting(s, &mut proxy, true, cx.warnings)? {
            continue;
        }
        match s.name.as_str() {
            "listen" => match listen(s, true, cx.warnings)? {
                Some(l) => listens.push(l),
                None => skip = true,
            },
            "proxy_pass" => pass = Some((one(s)?.to_string(), s.at.clone())),
            _ => untranslated(cx.warnings, s),
        }
    }
    let Some((pass, pass_at)) = pass else {
        cx.warnings
            .add(&d.at, "server", "no proxy_pass, so nothing to proxy");
        return Ok(None);
    };
    if listens.is_empty() {
        if !skip {
            return Err(ImportError::at(&d.at, "stream server without listen"));
        }
        return Ok(None);
    }
    let Some(pool) = proxy_pass(&pass, &pass_at, true, cx.upstreams, cx.warnings)? else {
        return Ok(None);
    };
    let client = Client::stream(&proxy);
    let target = Target {
        pass,
        at: pass_at,
        proxy,
        client,
    };
    use_pool(&pool, &target, true, cx);
    Ok(Some(Server {
        at: d.at.clone(),
        protocol: ListenerProtocol::TCP,
        listens,
        pool,
        access_log: target.client.access_log.clone(),
        client: client_settings(&target.client, cx.max_connections, ListenerProtocol::TCP),
    }))
}

/// Gives `pool` the proxy settings of the first target that uses it; a later one with other
/// settings is warned about.
fn use_pool(pool: &str, target: &Target, stream: bool, cx: &mut Context) {
    let Some(u) = cx.upstreams.get_mut(pool) else {
        return;
    };
    let spec = pool_settings(&u.spec, u.servers, &target.proxy, stream, cx.warnings);
    match &u.used_by {
        None => {
            u.spec = spec;
            u.used_by = Some(target.at.clone());
        }
        Some(first) if spec != u.spec => {
            let which = if stream {
                "the first are used"
            } else {
                "a pool has one set: the first is used"
            };
            cx.warnings.add(
                &target.at,
                "proxy_pass",
                format!(
                    "upstream {} is also used at {first} with other proxy settings; {which}",
                    u.nginx_name
                ),
            );
        }
        Some(_) => {}
    }
}

/// `listen`; None when the listener cannot be translated (warned).
fn listen(
    s: &Directive,
    stream: bool,
    warnings: &mut Warnings,
) -> Result<Option<Listen>, ImportError> {
    let spec = first(s)?;
    if spec.starts_with("unix:") {
        warnings.add(
            &s.at,
            "listen",
            format!("{spec}: Buoy listens on TCP ports of the virtual addresses only"),
        );
        return Ok(None);
    }
    let bad = || ImportError::at(&s.at, format!("listen: invalid port in {spec:?}"));
    let port_of = |p: &str| match p.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad()),
    };
    let (address, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None if stream => return Err(bad()),
            None => 80,
        };
        let ip: IpAddr = h.parse().map_err(|_| bad())?;
        if ip.is_unspecified() {
            (ListenAddress::Any { ipv6: true }, port)
        } else {
            (ListenAddress::Ip(ip), port)
        }
    } else if spec.bytes().all(|b| b.is_ascii_digit()) {
        (ListenAddress::Any { ipv6: false }, port_of(spec)?)
    } else {
        let (h, p) = match spec.rsplit_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None if stream => return Err(bad()),
            None => (spec, 80),
        };
        if h == "*" || h == "0.0.0.0" {
            (ListenAddress::Any { ipv6: false }, p)
        } else {
            match h.parse::<IpAddr>() {
                Ok(ip) => (ListenAddress::Ip(ip), p),
                Err(_) => {
                    warnings.add(&s.at, "listen", format!("{h} is a host name; Buoy listens on the virtual addresses, so give the VirtualIP the address it resolves to"));
                    return Ok(None);
                }
            }
        }
    };
    let mut proxy_protocol = false;
    let mut udp = false;
    for p in &s.args[1..] {
        match p.as_str() {
            "default_server" | "default" => {}
            "proxy_protocol" => proxy_protocol = true,
            "ssl" => {
                warnings.add(&s.at, "listen", format!("{spec} ssl: Buoy does not terminate TLS (a TCP listener can pass TLS through to backends that terminate it); not translated"));
                return Ok(None);
            }
            "udp" if stream => udp = true,
            "udp" => {
                warnings.add(
                    &s.at,
                    "listen",
                    format!("{spec} udp: udp applies to stream servers only; not translated"),
                );
                return Ok(None);
            }
            other => warnings.add(
                &s.at,
                "listen",
                format!("the parameter {other} has no equivalent"),
            ),
        }
    }
    Ok(Some(Listen {
        at: s.at.clone(),
        address,
        port,
        udp,
        text: s.args.join(" "),
        proxy_protocol,
    }))
}
