//! Where the two halves meet: nginx's servers become listeners of keepalived's VirtualIPs.
//!
//! nginx listens on every address of the host, so a `listen 80;` server becomes a listener on
//! every IPv4 VirtualIP (`listen [::]:80;` on every IPv6 one), and `listen 192.168.60.88:80;` only
//! on the VirtualIP that holds 192.168.60.88. Without keepalived files, the addresses of
//! `listen ADDRESS:PORT` make the VirtualIP, or a documentation address (192.0.2.1) stands in
//! with a warning that it must be replaced. The listeners then decide the VirtualIPs' upstream
//! tracking and names. A port where any server has `listen … ssl` becomes an HTTPS listener
//! (nginx turns TLS on for the address), with the certificates of all its servers.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use buoy_crds::{
    AccessLog, AlpnProtocol, CertificateRef, Listener, ListenerProtocol, ListenerTls, PathMatch,
    Route, RouteHost, RoutePath, TlsVersion, VirtualIPSpec,
};

use crate::{
    certificates::PemSecrets,
    diagnostics::{Loc, Warnings},
    draft::VipDraft,
    names::dns_label,
    nginx,
};

/// A listener on a VirtualIP, and the comment that says which nginx server it comes from.
pub(crate) struct AttachedListener {
    pub(crate) listener: Listener,
    pub(crate) comment: String,
}

/// The listeners of each VirtualIP draft, by its key.
#[derive(Default)]
pub(crate) struct Listeners(BTreeMap<usize, Vec<AttachedListener>>);

impl Listeners {
    /// The listeners of the VirtualIP draft `key`.
    pub(crate) fn of(&self, key: usize) -> &[AttachedListener] {
        self.0.get(&key).map_or(&[], Vec::as_slice)
    }
}

/// A port of a VirtualIP: its key, the port, and whether UDP (apart from TCP's ports).
type PortKey = (usize, u16, bool);

/// Puts every nginx server on the VirtualIPs whose addresses it listens on. HTTP servers that
/// share a port of a VirtualIP become one listener: the default server's `location /` is its
/// `upstreamPool`, and every server's names and locations its routes.
pub(crate) fn attach(
    vips: &mut Vec<VipDraft>,
    web: &nginx::Config,
    have_keepalived: bool,
    pem: &mut PemSecrets,
    warnings: &mut Warnings,
) -> Listeners {
    if !have_keepalived && !web.servers.is_empty() {
        stub_vips(vips, web, warnings);
    }
    // The servers on each port of each VirtualIP, in nginx's order, with their `listen`.
    let mut on_port: BTreeMap<PortKey, Vec<(usize, &nginx::Listen)>> = BTreeMap::new();
    let mut order: Vec<PortKey> = Vec::new();
    for (si, server) in web.servers.iter().enumerate() {
        for listen in &server.listens {
            let targets: Vec<usize> = vips
                .iter()
                .filter(|v| match listen.address {
                    nginx::ListenAddress::Any { ipv6 } => first_is_ipv6(&v.spec) == ipv6,
                    nginx::ListenAddress::Ip(ip) => v
                        .spec
                        .addresses
                        .iter()
                        .any(|a| address_ip(&a.0) == Some(ip)),
                })
                .map(|v| v.key)
                .collect();
            if targets.is_empty() {
                let why = match listen.address {
                    nginx::ListenAddress::Any { ipv6: true } => {
                        "no virtual address is IPv6; a listener needs a VirtualIP".to_string()
                    }
                    nginx::ListenAddress::Any { ipv6: false } => {
                        "no virtual address is IPv4; a listener needs a VirtualIP".to_string()
                    }
                    nginx::ListenAddress::Ip(ip) => format!(
                        "{ip} is not a virtual address of the keepalived configuration; Buoy listens only on virtual addresses"
                    ),
                };
                warnings.add(&listen.at, "listen", why);
                continue;
            }
            for key in targets {
                let protocol = if listen.udp {
                    ListenerProtocol::UDP
                } else {
                    server.protocol
                };
                // UDP ports are apart from TCP ones (DNS listens on both).
                let list = on_port.entry((key, listen.port, listen.udp)).or_default();
                if list.is_empty() {
                    order.push((key, listen.port, listen.udp));
                }
                // Another `listen` of the same server on another address of this VirtualIP.
                if list.iter().any(|(other, _)| *other == si) {
                    continue;
                }
                let first = list.first().map(|(i, _)| &web.servers[*i]);
                if let Some(first) = first
                    && (first.protocol != ListenerProtocol::HTTP
                        || protocol != ListenerProtocol::HTTP)
                {
                    warnings.add(
                        &listen.at,
                        "listen",
                        format!(
                            "port {} of this VirtualIP is already served by the nginx server at {}; a TCP or UDP listener has one pool",
                            listen.port, first.at
                        ),
                    );
                    continue;
                }
                list.push((si, listen));
            }
        }
    }
    let mut out = Listeners::default();
    for (key, port, udp) in order {
        let servers = &on_port[&(key, port, udp)];
        if let Some(l) = listener(web, servers, port, udp, pem, warnings) {
            out.0.entry(key).or_default().push(l);
        }
    }
    out
}

/// The listener of the servers on one port of a VirtualIP; `None` when they proxy nowhere.
fn listener(
    web: &nginx::Config,
    servers: &[(usize, &nginx::Listen)],
    port: u16,
    udp: bool,
    pem: &mut PemSecrets,
    warnings: &mut Warnings,
) -> Option<AttachedListener> {
    // nginx's default server: the one marked so, else the first.
    let d = servers
        .iter()
        .position(|(_, l)| l.default_server)
        .unwrap_or(0);
    let &(di, dlisten) = servers.get(d)?;
    let default = &web.servers[di];
    let routes = routes_of(web, servers, d, port, warnings);
    if default.pool.is_none() && routes.is_empty() {
        return None;
    }
    let https = default.protocol == ListenerProtocol::HTTP && servers.iter().any(|(_, l)| l.ssl);
    // HTTP/2 without TLS (`listen … http2`, `http2 on` on a plain port) needs nothing: every HTTP
    // listener takes h2c with prior knowledge next to HTTP/1.
    let tls = if https {
        Some(listener_tls(web, servers, d, port, pem, warnings)?)
    } else {
        None
    };
    let protocol = if udp {
        ListenerProtocol::UDP
    } else if https {
        ListenerProtocol::HTTPS
    } else {
        default.protocol
    };
    let name = match (protocol, port) {
        (ListenerProtocol::HTTP, 80) => "http".to_string(),
        (ListenerProtocol::HTTP, p) => format!("http-{p}"),
        (ListenerProtocol::HTTPS, 443) => "https".to_string(),
        (ListenerProtocol::HTTPS, p) => format!("https-{p}"),
        (ListenerProtocol::TCP, p) => format!("tcp-{p}"),
        (ListenerProtocol::UDP, p) => format!("udp-{p}"),
    };
    let kind = if default.protocol != ListenerProtocol::HTTP {
        "stream"
    } else {
        "http"
    };
    let (access_log, proxy_protocol) = connection_settings(default, dlisten, warnings);
    let listener = Listener {
        name,
        port,
        protocol,
        upstream_pool: default.pool.clone(),
        routes,
        client: default.client.clone(),
        access_log,
        proxy_protocol,
        tls,
    };
    for conflict in listener.route_conflicts() {
        warnings.add(&default.at, "server_name", conflict);
    }
    let at: Vec<String> = servers
        .iter()
        .map(|(si, _)| web.servers[*si].at.to_string())
        .collect();
    Some(AttachedListener {
        listener,
        comment: format!(
            "nginx {kind} server{} at {} (listen {})",
            if at.len() > 1 { "s" } else { "" },
            at.join(", "),
            dlisten.text
        ),
    })
}

/// The TLS of an HTTPS listener: the certificates of the servers on its port, the default
/// server's first (nginx's certificate for clients without SNI) and each distinct pair once;
/// the default server's lowest version and HTTP/2. None when no server there has a certificate
/// (warned: the listener is left out).
fn listener_tls(
    web: &nginx::Config,
    servers: &[(usize, &nginx::Listen)],
    d: usize,
    port: u16,
    pem: &mut PemSecrets,
    warnings: &mut Warnings,
) -> Option<ListenerTls> {
    let (di, dlisten) = servers[d];
    let default = &web.servers[di];
    let version = |s: &nginx::Server| s.tls.min_version.as_ref().map_or(TlsVersion::V1_2, |v| v.0);
    // `listen … http2` turns HTTP/2 on for the address, `http2 on` for the server.
    let port_h2 = servers.iter().any(|(_, l)| l.http2);
    let h2 = |s: &nginx::Server| port_h2 || s.tls.http2.as_ref().is_some_and(|h| h.0);
    let mut certificates: Vec<CertificateRef> = Vec::new();
    let mut without: Vec<&Loc> = Vec::new();
    let order = std::iter::once(d).chain((0..servers.len()).filter(|&i| i != d));
    for i in order {
        let s = &web.servers[servers[i].0];
        if s.tls.certificates.is_empty() {
            without.push(&s.at);
        }
        for c in &s.tls.certificates {
            let r = CertificateRef {
                secret_name: pem.tls(&c.certificate, &c.key, &c.at),
            };
            if !certificates.contains(&r) {
                certificates.push(r);
            }
        }
        if i == d {
            continue;
        }
        if version(s) != version(default) {
            let at = s.tls.min_version.as_ref().map_or(&s.at, |v| &v.1);
            warnings.add(
                at,
                "ssl_protocols",
                format!("a listener has one lowest TLS version: the default server's (at {}) is used on port {port}", default.at),
            );
        }
        if h2(s) != h2(default) {
            let at = s.tls.http2.as_ref().map_or(&s.at, |v| &v.1);
            warnings.add(
                at,
                "http2",
                format!("a listener offers one ALPN list: the default server's (at {}, HTTP/2 {}) is used on port {port}", default.at, if h2(default) { "on" } else { "off" }),
            );
        }
    }
    if certificates.is_empty() {
        warnings.add(
            &dlisten.at,
            "listen",
            format!("{}: no server on port {port} has an ssl_certificate, and an HTTPS listener needs one; not translated", dlisten.text),
        );
        return None;
    }
    for at in without {
        warnings.add(
            at,
            "server",
            format!(
                "no ssl_certificate for port {port}, where TLS is on: nginx fails its handshakes; Buoy answers its names with the listener's certificate that holds them, else the first"
            ),
        );
    }
    if certificates.len() > 64 {
        warnings.add(
            &dlisten.at,
            "listen",
            format!(
                "{} certificates on port {port}: a listener takes 64; the first 64 are used",
                certificates.len()
            ),
        );
        certificates.truncate(64);
    }
    Some(ListenerTls {
        certificates,
        min_version: version(default),
        // nginx offers HTTP/2 only where it is turned on.
        alpn: if h2(default) {
            vec![AlpnProtocol::H2, AlpnProtocol::Http11]
        } else {
            vec![AlpnProtocol::Http11]
        },
    })
}

/// The routes of the servers on one port, `d` the default server among them: its locations
/// without hosts (and with its names, which must win over other servers' wildcards), then each
/// other server's names with its locations.
fn routes_of(
    web: &nginx::Config,
    servers: &[(usize, &nginx::Listen)],
    d: usize,
    port: u16,
    warnings: &mut Warnings,
) -> Vec<Route> {
    let default = &web.servers[servers[d].0];
    let mut routes: Vec<Route> = Vec::new();
    if !default.names.is_empty() && servers.len() > 1 {
        add_routes(&mut routes, &default.names, &locations_of(default, true));
    }
    add_routes(&mut routes, &[], &locations_of(default, false));
    for (i, (si, listen)) in servers.iter().enumerate() {
        if i == d {
            continue;
        }
        let s = &web.servers[*si];
        if s.names.is_empty() {
            warnings.add(
                &listen.at,
                "listen",
                format!(
                    "the nginx server at {} has no server_name on port {port}: the default server at {} takes its requests; not translated",
                    s.at, default.at
                ),
            );
            continue;
        }
        if s.access_log != default.access_log {
            warnings.add(
                &s.at,
                "access_log",
                format!(
                    "a listener has one access log: the default server's (at {}) is used for every server on port {port}",
                    default.at
                ),
            );
        }
        if s.pool.is_none() && default.pool.is_some() {
            warnings.add(
                &s.at,
                "server",
                format!(
                    "no `location /`: nginx answers 404 for its other paths; in Buoy they go to the listener's upstreamPool (location / of the server at {})",
                    default.at
                ),
            );
        }
        add_routes(&mut routes, &s.names, &locations_of(s, true));
    }
    routes
}

/// A server's locations as (match, path, pool), `location /` first when `with_root`.
fn locations_of(s: &nginx::Server, with_root: bool) -> Vec<(PathMatch, String, String)> {
    let root = s
        .pool
        .iter()
        .filter(|_| with_root)
        .map(|p| (PathMatch::Prefix, "/".to_string(), p.clone()));
    root.chain(
        s.locations
            .iter()
            .map(|l| (l.kind, l.path.clone(), l.pool.clone())),
    )
    .collect()
}

/// Routes for `hosts` and `locations`: one per pool, its paths in nginx's order.
fn add_routes(
    routes: &mut Vec<Route>,
    hosts: &[String],
    locations: &[(PathMatch, String, String)],
) {
    let mut pools: Vec<&str> = Vec::new();
    for (_, _, pool) in locations {
        if !pools.contains(&pool.as_str()) {
            pools.push(pool);
        }
    }
    for pool in pools {
        routes.push(Route {
            hosts: hosts.iter().map(|h| RouteHost(h.clone())).collect(),
            paths: locations
                .iter()
                .filter(|(_, _, p)| p == pool)
                .map(|(kind, path, _)| RoutePath {
                    match_type: *kind,
                    value: path.clone(),
                })
                .collect(),
            upstream_pool: pool.to_string(),
        });
    }
}

/// A listener's access log and PROXY protocol setting; a UDP listener takes no PROXY protocol
/// header (warned).
fn connection_settings(
    server: &nginx::Server,
    listen: &nginx::Listen,
    warnings: &mut Warnings,
) -> (Option<AccessLog>, bool) {
    if !listen.udp {
        return (server.access_log.clone(), listen.proxy_protocol);
    }
    if listen.proxy_protocol {
        warnings.add(
            &listen.at,
            "listen",
            "a UDP listener takes no PROXY protocol header: proxy_protocol is left out for it",
        );
    }
    (server.access_log.clone(), false)
}

/// Without keepalived, the VirtualIPs come from the addresses nginx listens on, or a placeholder.
fn stub_vips(vips: &mut Vec<VipDraft>, web: &nginx::Config, warnings: &mut Warnings) {
    for ipv6 in [false, true] {
        let mut explicit: Vec<IpAddr> = Vec::new();
        let mut wildcard: Option<&Loc> = None;
        for l in web.servers.iter().flat_map(|s| s.listens.iter()) {
            match l.address {
                nginx::ListenAddress::Ip(ip) if ip.is_ipv6() == ipv6 && !explicit.contains(&ip) => {
                    explicit.push(ip);
                }
                nginx::ListenAddress::Any { ipv6: v6 } if v6 == ipv6 => {
                    wildcard = wildcard.or(Some(&l.at));
                }
                _ => {}
            }
        }
        let mut addresses: Vec<String> =
            explicit.iter().take(16).map(ToString::to_string).collect();
        let mut comments = vec![
            "No keepalived configuration was given: this VirtualIP only carries nginx's listeners."
                .to_string(),
        ];
        if let Some(at) = wildcard
            && addresses.is_empty()
        {
            let placeholder = if ipv6 { "2001:db8::1" } else { "192.0.2.1" };
            addresses.push(placeholder.into());
            comments.push(format!(
                "REPLACE {placeholder} (a documentation address) with the virtual address(es) to serve."
            ));
            warnings.add(
                at,
                "listen",
                format!(
                    "nginx listens on every address and no keepalived file says which one is virtual; the VirtualIP gets the placeholder {placeholder}: replace it"
                ),
            );
        }
        if addresses.is_empty() {
            continue;
        }
        let spec: Result<VirtualIPSpec, _> =
            serde_json::from_value(serde_json::json!({ "addresses": addresses }));
        if let Ok(spec) = spec {
            vips.push(VipDraft {
                key: vips.len(),
                name: if ipv6 {
                    "nginx-ipv6".into()
                } else {
                    "nginx".into()
                },
                spec,
                password: None,
                track_upstreams: None,
                comments,
            });
        }
    }
}

/// Whether the VirtualIP's first address is IPv6 (its family: the API refuses mixed ones).
fn first_is_ipv6(spec: &VirtualIPSpec) -> bool {
    spec.addresses
        .first()
        .and_then(|a| address_ip(&a.0))
        .is_some_and(|ip| ip.is_ipv6())
}

/// The IP of `192.168.60.88/24`.
fn address_ip(a: &str) -> Option<IpAddr> {
    a.split('/').next()?.parse().ok()
}

/// `track.upstreams` needs listeners (the API's rule): without them, keepalived's nginx check has
/// nothing left to watch.
pub(crate) fn set_tracking(vips: &mut [VipDraft], listeners: &Listeners, warnings: &mut Warnings) {
    for v in vips {
        let Some((weight, at)) = v.track_upstreams.clone() else {
            continue;
        };
        if !listeners.of(v.key).is_empty() {
            v.spec.track.get_or_insert_with(Default::default).upstreams =
                Some(buoy_crds::TrackWeight { weight });
        } else {
            warnings.add(
                &at,
                "track_script",
                "the nginx check becomes track.upstreams, which needs listeners, and this VirtualIP has none (give the nginx.conf with --nginx)",
            );
        }
    }
}

/// Names each VirtualIP after the pool of its first listener when no other VirtualIP would take
/// that name (the seed names its VirtualIP after the service, `test-web`); otherwise after the
/// keepalived instance. Names are made unique with a numeric suffix.
pub(crate) fn name_vips(vips: &mut [VipDraft], listeners: &Listeners) {
    let candidate = |v: &VipDraft| {
        listeners
            .of(v.key)
            .first()
            .and_then(|l| l.listener.pool_names().next().map(str::to_string))
    };
    let candidates: Vec<Option<String>> = vips.iter().map(candidate).collect();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for (i, v) in vips.iter_mut().enumerate() {
        let base = match &candidates[i] {
            Some(c) if candidates.iter().filter(|o| o.as_ref() == Some(c)).count() == 1 => {
                dns_label(c)
            }
            _ => v.name.clone(),
        };
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(name.clone());
        v.name = name;
    }
}
