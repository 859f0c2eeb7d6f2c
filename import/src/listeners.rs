//! Where the two halves meet: nginx's servers become listeners of keepalived's VirtualIPs.
//!
//! nginx listens on every address of the host, so a `listen 80;` server becomes a listener on
//! every IPv4 VirtualIP (`listen [::]:80;` on every IPv6 one), and `listen 192.168.60.88:80;` only
//! on the VirtualIP that holds 192.168.60.88. Without keepalived files, the addresses of
//! `listen ADDRESS:PORT` make the VirtualIP, or a documentation address (192.0.2.1) stands in
//! with a warning that it must be replaced. The listeners then decide the VirtualIPs' upstream
//! tracking and names.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use buoy_crds::{AccessLog, Listener, ListenerProtocol, VirtualIPSpec};

use crate::{
    diagnostics::{Loc, Warnings},
    draft::VipDraft,
    names::dns_label,
    nginx,
};

/// A listener on a VirtualIP, and the comment that says which nginx server it comes from.
pub(crate) struct AttachedListener {
    /// Index of the nginx server it comes from.
    server: usize,
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

/// Puts every nginx server on the VirtualIPs whose addresses it listens on.
pub(crate) fn attach(
    vips: &mut Vec<VipDraft>,
    web: &nginx::Config,
    have_keepalived: bool,
    warnings: &mut Warnings,
) -> Listeners {
    if !have_keepalived && !web.servers.is_empty() {
        stub_vips(vips, web, warnings);
    }
    let mut out = Listeners::default();
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
                let list = out.0.entry(key).or_default();
                let protocol = if listen.udp {
                    ListenerProtocol::UDP
                } else {
                    server.protocol
                };
                // UDP ports are apart from TCP ones (DNS listens on both).
                let udp = |p: ListenerProtocol| p == ListenerProtocol::UDP;
                if let Some(other) = list.iter().find(|l| {
                    l.listener.port == listen.port && udp(l.listener.protocol) == listen.udp
                }) {
                    // Another `listen` of the same server on another address of this VirtualIP.
                    if other.server == si {
                        continue;
                    }
                    warnings.add(
                        &listen.at,
                        "listen",
                        format!(
                            "port {} of this VirtualIP is already served by {}; Buoy routes by port, not by server_name",
                            listen.port, other.comment
                        ),
                    );
                    continue;
                }
                let name = match (protocol, listen.port) {
                    (ListenerProtocol::HTTP, 80) => "http".to_string(),
                    (ListenerProtocol::HTTP, p) => format!("http-{p}"),
                    (ListenerProtocol::TCP, p) => format!("tcp-{p}"),
                    (ListenerProtocol::UDP, p) => format!("udp-{p}"),
                };
                let (access_log, proxy_protocol) = connection_settings(server, listen, warnings);
                list.push(AttachedListener {
                    server: si,
                    listener: Listener {
                        name,
                        port: listen.port,
                        protocol,
                        upstream_pool: server.pool.clone(),
                        client: server.client.clone(),
                        access_log,
                        proxy_protocol,
                    },
                    comment: format!(
                        "nginx {} server at {} (listen {})",
                        if server.protocol != ListenerProtocol::HTTP {
                            "stream"
                        } else {
                            "http"
                        },
                        server.at,
                        listen.text
                    ),
                });
            }
        }
    }
    out
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
            .map(|l| l.listener.upstream_pool.clone())
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
