//! nginx's `server` blocks into servers to be listeners: their `listen`s and `server_name`s,
//! the pool their `proxy_pass` names and the settings in force where it is (for HTTP,
//! `location /`), their exact and prefix `location`s with a `proxy_pass` (to be routes), and
//! their TLS (`listen … ssl`, certificates).

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use buoy_crds::{ListenerProtocol, PathMatch};

use super::{
    config::{Listen, ListenAddress, Location as Route, Server, ServerTls},
    parse::Directive,
    settings::{
        Client, Proxy, client_setting, client_settings, is_client_setting, is_proxy_setting,
        pool_settings, proxy_setting,
    },
    tls::{Ssl, is_ssl_setting, pem_path, server_tls, ssl_setting},
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
    /// The main nginx.conf's directory, against which relative file names are resolved.
    pub(crate) base: &'a Path,
    pub(crate) warnings: &'a mut Warnings,
}

/// An HTTP server block's own settings (over those of `http`) and its listens.
struct HttpScope {
    proxy: Proxy,
    client: Client,
    listens: Vec<Listen>,
    /// A `listen` that cannot be translated was seen (warned).
    skipped: bool,
    tls: ServerTls,
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
    outer_ssl: &Ssl,
    cx: &mut Context,
) -> Result<Option<Server>, ImportError> {
    let body = d.block.as_deref().unwrap_or_default();
    let scope = http_scope(body, outer_proxy, outer_client, outer_ssl, cx)?;
    let found = http_targets(body, &scope, cx.warnings)?;
    let mut locations = Vec::new();
    for (kind, path, target) in &found.others {
        let Some(pool) = proxy_pass(&target.pass, &target.at, false, cx.upstreams, cx.warnings)?
        else {
            continue;
        };
        if let Some((_, uri)) = target
            .pass
            .strip_prefix("http://")
            .or_else(|| target.pass.strip_prefix("https://"))
            .and_then(|r| r.split_once('/'))
        {
            // `/` is silently fine at `location /` only: elsewhere it replaces the prefix.
            if uri.is_empty() {
                cx.warnings.add(
                    &target.at,
                    "proxy_pass",
                    format!("the URI part \"/\" replaces the location's {path} in nginx; Buoy forwards the request path unchanged"),
                );
            }
        }
        use_pool(&pool, target, false, cx);
        locations.push(Route {
            at: target.at.clone(),
            kind: *kind,
            path: path.clone(),
            pool,
        });
    }
    let Some(target) = found.root else {
        if locations.is_empty() {
            cx.warnings.add(
                &d.at,
                "server",
                "no `location` with proxy_pass, so nothing to proxy",
            );
            return Ok(None);
        }
        return Ok(finish_http(d, scope, found.names, None, locations, cx));
    };
    if scope.skipped && scope.listens.is_empty() {
        return Ok(None);
    }
    let Some(pool) = proxy_pass(&target.pass, &target.at, false, cx.upstreams, cx.warnings)? else {
        return Ok(None);
    };
    use_pool(&pool, &target, false, cx);
    Ok(finish_http(
        d,
        scope,
        found.names,
        Some((pool, &target)),
        locations,
        cx,
    ))
}

/// The server, once its pools are known; `None` when none of its `listen`s can be translated.
/// `root`: the pool of `location /` and its target, whose client settings are the listener's
/// (else the server's).
fn finish_http(
    d: &Directive,
    mut scope: HttpScope,
    names: Vec<String>,
    root: Option<(String, &Target)>,
    locations: Vec<Route>,
    cx: &mut Context,
) -> Option<Server> {
    if scope.skipped && scope.listens.is_empty() {
        return None;
    }
    if scope.listens.is_empty() {
        // nginx's default: `listen *:80`.
        scope.listens.push(Listen {
            at: d.at.clone(),
            address: ListenAddress::Any { ipv6: false },
            port: 80,
            udp: false,
            text: "80 (nginx's default)".into(),
            default_server: false,
            proxy_protocol: false,
            ssl: false,
            http2: false,
        });
    }
    let (pool, settings) = match root {
        Some((pool, target)) => (Some(pool), &target.client),
        None => (None, &scope.client),
    };
    let client = client_settings(settings, cx.max_connections, ListenerProtocol::HTTP);
    let access_log = settings.access_log.clone();
    Some(Server {
        at: d.at.clone(),
        protocol: ListenerProtocol::HTTP,
        listens: scope.listens,
        names,
        pool,
        locations,
        access_log,
        client,
        tls: scope.tls,
    })
}

/// What an HTTP server block proxies: its `location /`, its other translatable locations,
/// and its names.
struct Targets {
    root: Option<Target>,
    others: Vec<(PathMatch, String, Target)>,
    names: Vec<String>,
}

/// A `location`'s match: `/` is the root; `None` for what routes cannot say (warned).
fn location_match(s: &Directive, warnings: &mut Warnings) -> Option<(PathMatch, String)> {
    let (kind, path) = match s.args.as_slice() {
        [m, p] if m == "=" => (PathMatch::Exact, p.clone()),
        [m, p] if m == "^~" => (PathMatch::Prefix, p.clone()),
        [p] if p.starts_with("=/") => (PathMatch::Exact, p[1..].to_string()),
        [p] if p.starts_with("^~/") => (PathMatch::Prefix, p[2..].to_string()),
        [p] if p.starts_with('/') => (PathMatch::Prefix, p.clone()),
        _ => {
            let why = if s.args.first().is_some_and(|a| a.starts_with('~')) {
                "regular expression locations are not translated: routes match exact paths and prefixes"
            } else if s.args.first().is_some_and(|a| a.starts_with('@')) {
                "named locations (error_page, try_files targets) are not translated"
            } else {
                "not a path that a route can match"
            };
            warnings.add(&s.at, "location", format!("{}: {why}", s.args.join(" ")));
            return None;
        }
    };
    if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace) {
        warnings.add(
            &s.at,
            "location",
            format!(
                "{}: a route's path starts with / and has no ?, # or blanks",
                s.args.join(" ")
            ),
        );
        return None;
    }
    Some((kind, path))
}

/// `server_name`'s names as routes' hosts; what a host cannot say is warned.
fn server_names(s: &Directive, names: &mut Vec<String>, warnings: &mut Warnings) {
    let plain = |n: &str| {
        !n.is_empty()
            && n.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    for name in &s.args {
        let n = name.to_ascii_lowercase();
        let hosts = if n.is_empty() || n == "_" {
            // The catch-all of the examples: the default server takes what no name does.
            continue;
        } else if let Some(rest) = n.strip_prefix('.')
            && plain(rest)
        {
            vec![rest.to_string(), format!("*.{rest}")]
        } else if let Some(rest) = n.strip_prefix("*.")
            && plain(rest)
        {
            vec![n.clone()]
        } else if plain(&n) {
            vec![n.clone()]
        } else {
            let why = if n.starts_with('~') {
                "regular expression names are not translated"
            } else if n.ends_with(".*") {
                "wildcards on the right are not translated (a route's host is exact or *.suffix)"
            } else {
                "not a host name a route can match"
            };
            warnings.add(&s.at, "server_name", format!("{name}: {why}"));
            continue;
        };
        for h in hosts {
            if !names.contains(&h) {
                names.push(h);
            }
        }
    }
}

/// The settings, listens and TLS of an HTTP server block.
fn http_scope(
    body: &[Directive],
    outer_proxy: &Proxy,
    outer_client: &Client,
    outer_ssl: &Ssl,
    cx: &mut Context,
) -> Result<HttpScope, ImportError> {
    let warnings = &mut *cx.warnings;
    let mut proxy = outer_proxy.clone();
    proxy.headers = None;
    let mut client = outer_client.clone();
    let mut ssl = outer_ssl.enter(body);
    let mut listens = Vec::new();
    let mut skipped = false;
    let mut own_headers = false;
    for s in body {
        if s.name == "proxy_set_header" {
            own_headers = true;
        }
        if proxy_setting(s, &mut proxy, false, warnings)?
            || client_setting(s, &mut client, warnings)?
            || ssl_setting(s, &mut ssl, warnings)?
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
    if ssl.on {
        for l in &mut listens {
            l.ssl = true;
        }
    }
    let tls = server_tls(&ssl, cx.base, warnings);
    Ok(HttpScope {
        proxy,
        client,
        listens,
        skipped,
        tls,
    })
}

/// The locations of an HTTP server block that proxy, and its names; the other directives are
/// warned about.
fn http_targets(
    body: &[Directive],
    scope: &HttpScope,
    warnings: &mut Warnings,
) -> Result<Targets, ImportError> {
    let mut found = Targets {
        root: None,
        others: Vec::new(),
        names: Vec::new(),
    };
    let mut seen: Vec<(PathMatch, String, Loc)> = Vec::new();
    for s in body {
        match s.name.as_str() {
            "listen" => {}
            "server_name" => server_names(s, &mut found.names, warnings),
            _ if is_proxy_setting(&s.name, false)
                || is_client_setting(&s.name)
                || is_ssl_setting(&s.name) => {}
            "location" => {
                let Some((kind, path)) = location_match(s, warnings) else {
                    continue;
                };
                if let Some((_, _, first)) = seen.iter().find(|(k, p, _)| *k == kind && *p == path)
                {
                    return Err(ImportError::at(
                        &s.at,
                        format!("duplicate location \"{path}\" (the first is at {first})"),
                    ));
                }
                seen.push((kind, path.clone(), s.at.clone()));
                let location = root_location(s, scope, warnings)?;
                let Some((pass, at)) = location.pass else {
                    warnings.add(&s.at, "location", "no proxy_pass: Buoy only proxies");
                    continue;
                };
                let target = Target {
                    pass,
                    at,
                    proxy: location.proxy,
                    client: location.client,
                };
                if kind == PathMatch::Prefix && path == "/" {
                    found.root = Some(target);
                } else {
                    if target.client != scope.client {
                        warnings.add(
                            &s.at,
                            "location",
                            format!("{path}: its client settings are not translated: a listener has one set (from location /)"),
                        );
                    }
                    found.others.push((kind, path, target));
                }
            }
            _ => untranslated(warnings, s),
        }
    }
    Ok(found)
}

/// A `location` block, over the server's settings.
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
        names: Vec::new(),
        pool: Some(pool),
        locations: Vec::new(),
        access_log: target.client.access_log.clone(),
        client: client_settings(&target.client, cx.max_connections, ListenerProtocol::TCP),
        tls: ServerTls::default(),
    }))
}

/// Gives `pool` the proxy settings of the first target that uses it; a later one with other
/// settings is warned about.
fn use_pool(pool: &str, target: &Target, stream: bool, cx: &mut Context) {
    let Some(u) = cx.upstreams.get_mut(pool) else {
        return;
    };
    let https = (!stream)
        .then(|| target.pass.strip_prefix("https://"))
        .flatten()
        .map(|rest| (proxy_host(rest), &target.at));
    let (spec, ca) = pool_settings(
        &u.spec,
        u.servers,
        &target.proxy,
        stream,
        https,
        cx.warnings,
    );
    let ca = ca.and_then(|(file, at)| {
        pem_path(
            &file,
            &at,
            "proxy_ssl_trusted_certificate",
            cx.base,
            cx.warnings,
        )
        .map(|p| (p, at))
    });
    match &u.used_by {
        None => {
            u.spec = spec;
            u.ca = ca;
            u.used_by = Some(target.at.clone());
        }
        Some(first)
            if spec != u.spec || ca.as_ref().map(|c| &c.0) != u.ca.as_ref().map(|c| &c.0) =>
        {
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

/// nginx's `$proxy_host` without its port (the name it sends by SNI): the upstream's name or the
/// host of `rest`, a proxy_pass after its scheme.
fn proxy_host(rest: &str) -> &str {
    let hostport = rest.split('/').next().unwrap_or_default();
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    hostport.split(':').next().unwrap_or_default()
}

/// Why a `listen` with parameter `p` (not taken in its context) cannot be translated.
fn refused(p: &str) -> Option<&'static str> {
    Some(match p {
        "quic" => "Buoy does not offer HTTP/3 (QUIC); clients use HTTP/2 or HTTP/1.1 over TLS",
        "ssl" => {
            "Buoy terminates TLS for HTTP servers only (a TCP listener can pass TLS through to backends that terminate it)"
        }
        "udp" => "udp applies to stream servers only",
        _ => return None,
    })
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
    let mut default_server = false;
    let mut proxy_protocol = false;
    let mut udp = false;
    let mut ssl = false;
    let mut http2 = false;
    for p in &s.args[1..] {
        match p.as_str() {
            "default_server" | "default" => default_server = true,
            "proxy_protocol" => proxy_protocol = true,
            "ssl" if !stream => ssl = true,
            "http2" if !stream => http2 = true,
            "udp" if stream => udp = true,
            p if let Some(why) = refused(p) => {
                warnings.add(
                    &s.at,
                    "listen",
                    format!("{spec} {p}: {why}; not translated"),
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
        default_server,
        proxy_protocol,
        ssl,
        http2,
    }))
}
